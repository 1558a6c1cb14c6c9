"""Prometheus metrics of the gateway (served by :mod:`koha_gateway.admin_http` on ``/metrics``).

Metrics exist only when the admin listener is on (``--admin-port``): :data:`current` is then a
:class:`Metrics`, otherwise ``None`` and the SIP path pays one attribute test per message.

Kept cheap on the SIP path: every counter and histogram a message can touch is a plain Python
object bound in advance (a list of bucket counts, an integer), updated on the reactor thread with
a few additions and one :func:`bisect.bisect_left`; prometheus-client turns them into metric
families only when ``/metrics`` is read (a custom collector, also on the reactor thread). Its own
``Counter`` and ``Histogram`` take a lock per update, which measured several times dearer on the
SIP path. The LDAP figures are updated from the LDAP threads, under a lock. Gauges that describe
state (open connections per listener, certificate expiry) are computed at scrape time too, and
so are the figures of inline reads and of the reference data, read from the counters the
database (:class:`~koha_gateway.db.engine.Database`) and the reference cache keep anyway: they
cost the SIP path nothing more.

No patron data is ever a label or a value: labels are listener addresses, message types,
outcomes and error kinds.

Only APIs of prometheus-client 0.16 (Debian bookworm) are used.
"""

from __future__ import annotations

import re
import threading
import time
from bisect import bisect_left

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from koha_gateway.sip2.spec import REQUESTS

__all__ = ["Metrics", "current", "disable", "enable", "message_label"]

#: Message outcomes: answered by the ACS, database unavailable (the fallback answer was sent),
#: an internal error (the fallback answer was sent).
OUTCOMES = ("ok", "unavailable", "error")
#: Latency buckets in seconds: a SIP answer normally takes milliseconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BUCKET_LABELS = tuple(repr(float(b)) for b in LATENCY_BUCKETS) + ("+Inf",)

current: Metrics | None = None
_WORD_BOUNDARY = re.compile(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def message_label(code: str) -> str:
    """``checkout`` for 11, ``patron_information`` for 63 (snake case of the spec's name)."""
    spec = REQUESTS.get(code)
    if spec is None:
        return "unknown"
    return _WORD_BOUNDARY.sub("_", spec.name).lower()


class _Histogram:
    """Bucket counts (not cumulative) and the sum of the observations."""

    __slots__ = ("counts", "total")

    def __init__(self):
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.total += seconds

    def buckets(self) -> list[tuple[str, float]]:
        out, running = [], 0
        for label, n in zip(_BUCKET_LABELS, self.counts):
            running += n
            out.append((label, running))
        return out


class _Counts:
    """Integer counters by outcome."""

    __slots__ = ("values",)

    def __init__(self, outcomes):
        self.values = dict.fromkeys(outcomes, 0)


class _Collector:
    """Everything in Prometheus form, built when ``/metrics`` is read."""

    def __init__(self, metrics: Metrics):
        self.metrics = metrics

    def describe(self):
        return []

    def collect(self):
        m = self.metrics
        logins = CounterMetricFamily(
            "koha_gateway_logins_total", "SIP logins (93 and telnet) by outcome", labels=["outcome"]
        )
        for outcome, n in m.logins.items():
            logins.add_metric([outcome], n)
        yield logins
        messages = CounterMetricFamily(
            "koha_gateway_messages_total",
            "SIP requests answered, by message type and outcome",
            labels=["message", "outcome"],
        )
        latency = HistogramMetricFamily(
            "koha_gateway_message_seconds",
            "Time from a request's arrival to its answer, by message type",
            labels=["message"],
        )
        for code, (counts, histogram) in m._per_code.items():
            name = "unknown" if code is None else message_label(code)
            for outcome, n in counts.values.items():
                messages.add_metric([name, outcome], n)
            latency.add_metric([name], histogram.buckets(), histogram.total)
        yield messages
        yield latency
        errors = CounterMetricFamily(
            "koha_gateway_database_errors_total",
            "Database transactions that failed, by kind (unavailable or error)",
            labels=["kind"],
        )
        for kind, n in m.db_errors.items():
            errors.add_metric([kind], n)
        yield errors
        db = HistogramMetricFamily(
            "koha_gateway_database_seconds",
            "Time of one request's database transaction, waiting for a connection included",
        )
        db.add_metric([], m.db_latency.buckets(), m.db_latency.total)
        yield db
        with m._ldap_lock:
            ldap_buckets, ldap_total, ldap_errors = (
                m.ldap_latency.buckets(),
                m.ldap_latency.total,
                m.ldap_errors,
            )
        yield CounterMetricFamily(
            "koha_gateway_ldap_errors_total",
            "LDAP checks that got no answer from any host",
            value=ldap_errors,
        )
        ldap = HistogramMetricFamily(
            "koha_gateway_ldap_seconds",
            "Time of one LDAP password check (every host tried included)",
        )
        ldap.add_metric([], ldap_buckets, ldap_total)
        yield ldap
        tls = CounterMetricFamily(
            "koha_gateway_tls_handshakes_total",
            "TLS handshakes by listener and outcome (ok, failed)",
            labels=["listener", "outcome"],
        )
        for listener, counts in sorted(m.tls.items()):
            for outcome, n in counts.items():
                tls.add_metric([listener, outcome], n)
        yield tls
        open_ = GaugeMetricFamily(
            "koha_gateway_connections_open",
            "Connections open now, per listener",
            labels=["listener"],
        )
        counts = dict.fromkeys(m.listener_names(), 0)
        for listener in m.open_connections():
            counts[listener] = counts.get(listener, 0) + 1
        for listener, n in sorted(counts.items()):
            open_.add_metric([listener], n)
        yield open_
        expiry = GaugeMetricFamily(
            "koha_gateway_tls_certificate_expiry_timestamp_seconds",
            "When the certificate a TLS listener serves expires (Unix time)",
            labels=["listener"],
        )
        for listener, not_after in m.certificates():
            if not_after is not None:
                expiry.add_metric([listener], not_after.timestamp())
        yield expiry
        up = GaugeMetricFamily(
            "koha_gateway_database_available",
            "1 while the last database transaction succeeded, 0 after one failed as unavailable",
        )
        up.add_metric([], 1 if m.database_available() else 0)
        yield up
        yield from _inline_families(m.gateway)
        yield from _reference_families(m.gateway)


def _inline_families(gateway):
    """Inline reads (SQLite, :meth:`~koha_gateway.db.engine.Database.run` with ``inline``):
    the counters :class:`~koha_gateway.db.engine.Database` keeps anyway, read as they are."""
    db = getattr(gateway, "db", None)
    on = GaugeMetricFamily(
        "koha_gateway_database_inline_reads_enabled",
        "1 while read messages are tried on the event loop thread first (SQLite in WAL mode, "
        "without inline_reads=off), else 0",
    )
    on.add_metric([], 1 if getattr(db, "inline_reads", False) else 0)
    yield on
    yield CounterMetricFamily(
        "koha_gateway_database_inline_transactions_total",
        "Transactions of read messages answered on the event loop thread (inline reads)",
        value=getattr(db, "inline_answered", 0),
    )
    fallbacks = CounterMetricFamily(
        "koha_gateway_database_inline_fallbacks_total",
        "Transactions tried inline that ran on the database threads instead, by reason",
        labels=["reason"],
    )
    for reason, n in dict(getattr(db, "inline_reasons", None) or {}).items():
        fallbacks.add_metric([reason], n)
    yield fallbacks


def _reference_families(gateway):
    """The reference data in memory (:class:`~koha_gateway.ils.reference.ReferenceCache`):
    its counters are kept by the checking thread under the check's lock; read here without."""
    cache = getattr(gateway, "reference", None)
    on = GaugeMetricFamily(
        "koha_gateway_reference_cache_enabled",
        "1 while reference data are kept in memory, 0 when read per request (max age 0)",
    )
    on.add_metric([], 0 if cache is None else 1)
    yield on
    bound = GaugeMetricFamily(
        "koha_gateway_reference_max_age_seconds",
        "Longest time reference data are used before a check for changes (0: no cache)",
    )
    bound.add_metric([], 0.0 if cache is None else cache.max_age)
    yield bound
    yield CounterMetricFamily(
        "koha_gateway_reference_checks_total",
        "Checks of the reference data against the database",
        value=0 if cache is None else cache.checks,
    )
    yield CounterMetricFamily(
        "koha_gateway_reference_reloads_total",
        "Times the reference data were read into memory (the first check, a check that found "
        "them changed, the first check after a reload)",
        value=0 if cache is None else cache.loads,
    )
    yield CounterMetricFamily(
        "koha_gateway_reference_check_errors_total",
        "Checks of the reference data that failed (the database did not answer)",
        value=0 if cache is None else cache.failures,
    )
    if cache is None:
        return
    duration = cache.last_check_seconds
    if duration is not None:
        last = GaugeMetricFamily(
            "koha_gateway_reference_last_check_duration_seconds",
            "How long the last check of the reference data took (reading them included)",
        )
        last.add_metric([], duration)
        yield last
    age = cache.age()
    if age is not None:
        gauge = GaugeMetricFamily(
            "koha_gateway_reference_age_seconds",
            "Seconds since the reference data in use were last checked against the database",
        )
        gauge.add_metric([], age)
        yield gauge


class Metrics:
    """The counters the SIP path updates and the collector that exports them."""

    def __init__(self, gateway=None, listeners=None):
        self.gateway = gateway
        self.listeners = listeners if listeners is not None else {}
        self.logins = {"ok": 0, "failed": 0}
        # code -> (counts by outcome, latency histogram); None: an unknown code
        self._per_code: dict = {}
        for code in REQUESTS:
            if code in ("93", "97"):
                continue
            self._per_code[code] = (_Counts(OUTCOMES), _Histogram())
        self._per_code[None] = (_Counts(OUTCOMES), _Histogram())
        self.db_errors = {"unavailable": 0, "error": 0}
        self.db_latency = _Histogram()
        self.tls: dict[str, dict[str, int]] = {}
        self._ldap_lock = threading.Lock()
        self.ldap_errors = 0
        self.ldap_latency = _Histogram()
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_Collector(self))

    # -- the SIP path (reactor thread) ----------------------------------------------------------

    def login(self, ok: bool) -> None:
        self.logins["ok" if ok else "failed"] += 1

    def message(self, code: str, outcome: str, seconds: float) -> None:
        counts, latency = self._per_code.get(code) or self._per_code[None]
        counts.values[outcome] += 1
        latency.observe(seconds)

    def database(self, seconds: float | None, outcome: str = "ok") -> None:
        if seconds is not None:
            self.db_latency.observe(seconds)
        if outcome != "ok":
            self.db_errors[outcome] += 1

    def tls_handshake(self, listener: str, ok: bool) -> None:
        counts = self.tls.get(listener)
        if counts is None:
            counts = self.tls[listener] = {"ok": 0, "failed": 0}
        counts["ok" if ok else "failed"] += 1

    # -- LDAP (LDAP threads) ----------------------------------------------------------------------

    def ldap(self, seconds: float, failed: bool) -> None:
        with self._ldap_lock:
            self.ldap_latency.observe(seconds)
            if failed:
                self.ldap_errors += 1

    def instrument_ldap(self, directory):
        """``directory`` with its blocking ``authenticate`` timed and its outages counted."""
        return _TimedDirectory(directory, self)

    # -- state read at scrape time ------------------------------------------------------------

    def listener_names(self) -> list[str]:
        return [name.removeprefix("sip2:") for name in self.listeners]

    def open_connections(self):
        gateway = self.gateway
        if gateway is None:
            return
        for protocol in list(gateway.connections):
            yield protocol.service.address.spec

    def certificates(self):
        for name, listener in list(self.listeners.items()):
            factory = getattr(listener, "context_factory", None)
            if factory is not None:
                yield name.removeprefix("sip2:"), getattr(factory, "not_after", None)

    def database_available(self) -> bool:
        gateway = self.gateway
        return bool(gateway is None or getattr(gateway.db, "available", True))


class _TimedDirectory:
    """An :class:`~koha_gateway.auth.ldap.LdapDirectory` whose ``authenticate`` is measured."""

    def __init__(self, directory, metrics: Metrics):
        self._directory = directory
        self._metrics = metrics

    def authenticate(self, userid: str, password: str):
        started = time.perf_counter()
        try:
            result = self._directory.authenticate(userid, password)
        except Exception:
            self._metrics.ldap(time.perf_counter() - started, True)
            raise
        failed = bool(getattr(result, "unavailable", False))
        self._metrics.ldap(time.perf_counter() - started, failed)
        return result

    def __getattr__(self, name):
        return getattr(self._directory, name)


def enable(gateway=None, listeners=None) -> Metrics:
    """Turn metrics on for this process; returns the :class:`Metrics`."""
    global current
    current = Metrics(gateway, listeners)
    return current


def disable() -> None:
    global current
    current = None
