"""Prometheus metrics of the gateway (served by :mod:`koha_gateway.admin_http` on ``/metrics``).

Metrics exist only when the admin listener is on (``--admin-port``): :data:`current` is then a
:class:`Metrics`, otherwise ``None`` and the SIP path pays one attribute test per message.

Kept cheap on the SIP path: every label combination a message can take is bound once, when the
registry is made (``labels()`` is a dictionary lookup under a lock; the children here are plain
attribute reads). Gauges that describe state (open connections per listener, certificate expiry)
are computed when ``/metrics`` is read, so the SIP path does not touch them at all.

No patron data is ever a label or a value: labels are listener addresses, message types,
outcomes and error kinds.

Only APIs of prometheus-client 0.16 (Debian bookworm) are used.
"""

from __future__ import annotations

import re
import time

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

from koha_gateway.sip2.spec import REQUESTS

__all__ = ["Metrics", "current", "enable", "message_label"]

#: Message outcomes: answered by the ACS, database unavailable (the fallback answer was sent),
#: an internal error (the fallback answer was sent).
OUTCOMES = ("ok", "unavailable", "error")
#: Latency buckets in seconds: a SIP answer normally takes milliseconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

current: Metrics | None = None
_WORD_BOUNDARY = re.compile(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def message_label(code: str) -> str:
    """``checkout`` for 11, ``patron_information`` for 63 (snake case of the spec's name)."""
    spec = REQUESTS.get(code)
    if spec is None:
        return "unknown"
    return _WORD_BOUNDARY.sub("_", spec.name).lower()


class _StateCollector:
    """Gauges read at scrape time from the running gateway (no cost on the SIP path)."""

    def __init__(self, metrics: Metrics):
        self.metrics = metrics

    def describe(self):
        return []

    def collect(self):
        m = self.metrics
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


class Metrics:
    """The registry and the pre-bound children the SIP path updates."""

    def __init__(self, gateway=None, listeners=None):
        self.gateway = gateway
        self.listeners = listeners if listeners is not None else {}
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._logins = Counter(
            "koha_gateway_logins_total",
            "SIP logins (93 and telnet) by outcome",
            ["outcome"],
            registry=r,
        )
        self.login_ok = self._logins.labels("ok")
        self.login_failed = self._logins.labels("failed")
        self._messages = Counter(
            "koha_gateway_messages_total",
            "SIP requests answered, by message type and outcome",
            ["message", "outcome"],
            registry=r,
        )
        self._latency = Histogram(
            "koha_gateway_message_seconds",
            "Time from a request's arrival to its answer, by message type",
            ["message"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        # code -> (ok, unavailable, error counters, latency histogram)
        self._per_code = {}
        for code in REQUESTS:
            if code in ("93", "97"):
                continue
            name = message_label(code)
            self._per_code[code] = (
                {o: self._messages.labels(name, o) for o in OUTCOMES},
                self._latency.labels(name),
            )
        self._per_code[None] = (
            {o: self._messages.labels("unknown", o) for o in OUTCOMES},
            self._latency.labels("unknown"),
        )
        self._db_errors = Counter(
            "koha_gateway_database_errors_total",
            "Database transactions that failed, by kind (unavailable or error)",
            ["kind"],
            registry=r,
        )
        self.db_unavailable = self._db_errors.labels("unavailable")
        self.db_error = self._db_errors.labels("error")
        self.db_latency = Histogram(
            "koha_gateway_database_seconds",
            "Time of one request's database transaction, waiting for a connection included",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self._ldap_errors = Counter(
            "koha_gateway_ldap_errors_total",
            "LDAP checks that got no answer from any host",
            registry=r,
        )
        self.ldap_latency = Histogram(
            "koha_gateway_ldap_seconds",
            "Time of one LDAP password check (every host tried included)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self._tls = Counter(
            "koha_gateway_tls_handshakes_total",
            "TLS handshakes by listener and outcome (ok, failed)",
            ["listener", "outcome"],
            registry=r,
        )
        self._tls_children: dict[str, tuple] = {}
        r.register(_StateCollector(self))

    # -- the SIP path ----------------------------------------------------------------------

    def message(self, code: str, outcome: str, seconds: float) -> None:
        counters, latency = self._per_code.get(code) or self._per_code[None]
        counters[outcome].inc()
        latency.observe(seconds)

    def database(self, seconds: float | None, outcome: str = "ok") -> None:
        if seconds is not None:
            self.db_latency.observe(seconds)
        if outcome == "unavailable":
            self.db_unavailable.inc()
        elif outcome == "error":
            self.db_error.inc()

    def tls_handshake(self, listener: str, ok: bool) -> None:
        children = self._tls_children.get(listener)
        if children is None:
            children = (self._tls.labels(listener, "ok"), self._tls.labels(listener, "failed"))
            self._tls_children[listener] = children
        children[0 if ok else 1].inc()

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

    # -- LDAP ------------------------------------------------------------------------------------

    def instrument_ldap(self, directory):
        """``directory`` with its blocking ``authenticate`` timed and its outages counted."""
        return _TimedDirectory(directory, self)


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
            self._metrics._ldap_errors.inc()
            raise
        finally:
            self._metrics.ldap_latency.observe(time.perf_counter() - started)
        if getattr(result, "unavailable", False):
            self._metrics._ldap_errors.inc()
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
