"""koha_gateway.metrics and koha_gateway.logs.format_json without a running gateway."""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from twisted.logger import LogLevel

from koha_gateway import logs, metrics
from koha_gateway.db.engine import INLINE_FALLBACK_REASONS, Database
from koha_gateway.ils import reference
from koha_gateway.sip2.session import mask_text
from koha_gateway.sip2.spec import REQUESTS
from tests.support import ReactorThread


def test_message_labels_cover_every_request():
    labels = {code: metrics.message_label(code) for code in REQUESTS}
    assert labels["11"] == "checkout" and labels["63"] == "patron_information"
    assert labels["99"] == "sc_status" and labels["65"] == "renew_all"
    assert len(set(labels.values())) == len(labels)
    assert metrics.message_label("XX") == "unknown"


def test_counts_and_histograms():
    m = metrics.Metrics()
    m.message("11", "ok", 0.003)
    m.message("11", "unavailable", 0.2)
    m.message("ZZ", "error", 0.001)
    m.database(0.002)
    m.database(0.5, "unavailable")
    m.tls_handshake("0.0.0.0:6443/tcp", True)
    m.tls_handshake("0.0.0.0:6443/tcp", False)
    m.login(True)
    text = generate_latest(m.registry).decode()
    assert 'koha_gateway_messages_total{message="checkout",outcome="ok"} 1.0' in text
    assert 'koha_gateway_messages_total{message="checkout",outcome="unavailable"} 1.0' in text
    assert 'koha_gateway_messages_total{message="unknown",outcome="error"} 1.0' in text
    assert 'koha_gateway_message_seconds_bucket{le="0.005",message="checkout"} 1.0' in text
    assert "koha_gateway_database_seconds_count 2.0" in text
    assert 'koha_gateway_database_errors_total{kind="unavailable"} 1.0' in text
    assert (
        'koha_gateway_tls_handshakes_total{listener="0.0.0.0:6443/tcp",outcome="failed"} 1.0'
        in text
    )
    assert 'koha_gateway_logins_total{outcome="ok"} 1.0' in text
    assert "koha_gateway_database_available 1.0" in text


def _samples(m: metrics.Metrics) -> dict[tuple[str, tuple], float]:
    text = generate_latest(m.registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _read(txn):
    return txn.scalar("SELECT COUNT(*) FROM branches")


def _touch(txn):
    txn.execute("UPDATE branches SET branchname = branchname WHERE branchcode = 'WEL'")
    return _read(txn)


def test_inline_reads_and_reference_data(tmp_path, demo_template):
    """A real SQLite Database on a private reactor and a real ReferenceCache on an injected
    clock: the figures are what they keep, read when /metrics is."""
    path = tmp_path / "demo.sqlite"
    shutil.copyfile(demo_template, path)
    now = [1000.0]
    with ReactorThread() as rt:
        db = rt.call(Database.from_url, f"sqlite://{path}", reactor=rt.reactor)
        try:
            gateway = SimpleNamespace(db=db, reference=None, connections=set())
            m = metrics.Metrics(gateway)
            before = _samples(m)
            assert before[("koha_gateway_reference_cache_enabled", ())] == 0
            assert before[("koha_gateway_reference_max_age_seconds", ())] == 0
            assert before[("koha_gateway_reference_checks_total", ())] == 0
            assert before[("koha_gateway_database_inline_transactions_total", ())] == 0
            assert all(
                before[("koha_gateway_database_inline_fallbacks_total", (("reason", r),))] == 0
                for r in INLINE_FALLBACK_REASONS
            )
            assert rt.call(db.run, _read, inline=True) == 2
            assert rt.call(db.run, _touch, inline=True) == 2  # writes: ran on the pool
            gateway.reference = cache = reference.ReferenceCache(10, clock=lambda: now[0])
            db.run_blocking(cache.snapshot)
            now[0] += 4
            after = _samples(m)
        finally:
            rt.call(db.close)
    assert after[("koha_gateway_database_inline_reads_enabled", ())] == 1
    assert after[("koha_gateway_database_inline_transactions_total", ())] == 1
    assert after[("koha_gateway_database_inline_fallbacks_total", (("reason", "readonly"),))] == 1
    assert after[("koha_gateway_database_inline_fallbacks_total", (("reason", "busy"),))] == 0
    assert after[("koha_gateway_reference_cache_enabled", ())] == 1
    assert after[("koha_gateway_reference_max_age_seconds", ())] == 10
    assert after[("koha_gateway_reference_checks_total", ())] == 1
    assert after[("koha_gateway_reference_reloads_total", ())] == 1
    assert after[("koha_gateway_reference_check_errors_total", ())] == 0
    assert after[("koha_gateway_reference_age_seconds", ())] == 4
    assert after[("koha_gateway_reference_last_check_duration_seconds", ())] == 0
    # Without a snapshot (before the first check, after a SIGHUP) there is no age to tell.
    cache.flush()
    assert ("koha_gateway_reference_age_seconds", ()) not in _samples(m)


def test_without_a_database_the_families_are_still_there():
    samples = _samples(metrics.Metrics())
    assert samples[("koha_gateway_database_inline_reads_enabled", ())] == 0
    assert samples[("koha_gateway_database_inline_transactions_total", ())] == 0
    assert samples[("koha_gateway_reference_cache_enabled", ())] == 0


def test_enable_and_disable():
    try:
        m = metrics.enable()
        assert metrics.current is m
    finally:
        metrics.disable()
    assert metrics.current is None


def test_json_log_line_masks_and_parses():
    text = mask_text("9300CNjoe|COsecret|CPWEL|")
    event = {
        "log_format": "INPUT MSG: '{text}'",
        "text": text,
        "log_level": LogLevel.debug,
        "log_time": 1796400000.0,
        "log_namespace": "koha_gateway.protocol",
        "account": None,
        "peer": "10.0.0.5",
        "password": "never-copied",
    }
    line = logs.format_json(event)
    assert line.endswith("\n") and line.count("\n") == 1
    record = json.loads(line)
    assert record["message"] == "INPUT MSG: '9300CNjoe|CO****|CPWEL|'"
    assert record["level"] == "DEBUG" and record["peer"] == "10.0.0.5"
    assert record["account"] is None and record["namespace"] == "koha_gateway.protocol"
    assert "secret" not in line and "never-copied" not in line
    assert logs.format_json({"log_format": "", "log_level": LogLevel.info}) is None
