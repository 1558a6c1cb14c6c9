"""koha_gateway.metrics and koha_gateway.logs.format_json without a running gateway."""

from __future__ import annotations

import json

from prometheus_client import generate_latest
from twisted.logger import LogLevel

from koha_gateway import logs, metrics
from koha_gateway.sip2.session import mask_text
from koha_gateway.sip2.spec import REQUESTS


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
