"""The HTTP admin listener of a running gateway (``--admin-port``): ``/metrics`` counts what
kiosks do, ``/health`` answers, ``/ready`` follows the database; ``--log-format json``."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from koha_gateway.client import SIPClient
from koha_gateway.sipclient import main as client_main
from tests.conftest import load_demo_database
from tests.gateway import free_port, shared_pki
from tests.support import server_unavailable
from tests.support.postgres import PostgresCluster, PostgresUnavailable

NOW = "20261129    120000"
BLANK = " " * 18
ADA = "23529000000001"


@pytest.fixture
def engine():
    """SQLite: the PostgreSQL outage has its own test below."""
    return "sqlite"


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    status, text = get(port, "/metrics")
    assert status == 200
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def wait_for(condition, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.fixture
def admin_gateway(make_gateway):
    port = free_port()
    process = make_gateway(extra_args=["--admin-port", str(port)])
    process.admin_port = port
    wait_for(lambda: get(port, "/health")[0] == 200, what="the admin listener")
    return process


def test_metrics_move_when_a_kiosk_logs_in_and_checks_out(admin_gateway):
    port = admin_gateway.admin_port
    raw = f"127.0.0.1:{admin_gateway.ports['raw']}/tcp"
    before = scrape(port)
    assert value(before, "koha_gateway_connections_open", listener=raw) == 0
    with SIPClient("127.0.0.1", admin_gateway.ports["raw"], error_detection=True) as client:
        assert client.login("joe", "joes").startswith("941")
        answer = client.request(f"11YN{NOW}{BLANK}AOWEL|AA{ADA}|AB39999000000001|AC|")
        assert answer.startswith("121")
        during = scrape(port)
        assert value(during, "koha_gateway_connections_open", listener=raw) == 1
    with SIPClient("127.0.0.1", admin_gateway.ports["raw"]) as client:
        assert client.login("joe", "wrong").startswith("940")
    after = wait_for(
        lambda: (
            (s := scrape(port))
            and value(s, "koha_gateway_connections_open", listener=raw) == 0
            and s
        ),
        what="the connections to close",
    )

    def moved(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("koha_gateway_logins_total", outcome="ok") == 1
    assert moved("koha_gateway_logins_total", outcome="failed") == 1
    assert moved("koha_gateway_messages_total", message="checkout", outcome="ok") == 1
    assert moved("koha_gateway_message_seconds_count", message="checkout") == 1
    assert moved("koha_gateway_message_seconds_bucket", message="checkout", le="10.0") == 1
    assert moved("koha_gateway_database_seconds_count") == 1
    assert value(after, "koha_gateway_database_errors_total", kind="unavailable") == 0
    assert value(after, "koha_gateway_database_available") == 1

    _, text = get(port, "/metrics")
    for secret in (ADA, "39999000000001", "joes", "Ada", "Lovelace"):
        assert secret not in text


def test_tls_handshakes_and_certificate_expiry(admin_gateway):
    port = admin_gateway.admin_port
    tls = f"127.0.0.1:{admin_gateway.ports['tls']}/tcp"
    pki = shared_pki()
    status = client_main(
        [
            "--port",
            str(admin_gateway.ports["tls"]),
            "--tls",
            "--cafile",
            str(pki.ca_cert),
            "--host",
            "localhost",
            "--login",
            "joe",
            "--password",
            "joes",
            "sc-status",
        ]
    )
    assert status == 0
    # a client that does not trust the server's CA: a failed handshake
    assert client_main(["--port", str(admin_gateway.ports["tls"]), "--tls", "sc-status"]) == 1
    samples = wait_for(
        lambda: (
            (s := scrape(port))
            and value(s, "koha_gateway_tls_handshakes_total", listener=tls, outcome="failed") >= 1
            and s
        ),
        what="the failed handshake to be counted",
    )
    assert value(samples, "koha_gateway_tls_handshakes_total", listener=tls, outcome="ok") == 1
    assert value(samples, "koha_gateway_messages_total", message="sc_status", outcome="ok") == 1
    expiry = value(samples, "koha_gateway_tls_certificate_expiry_timestamp_seconds", listener=tls)
    assert expiry > time.time()


def test_health_and_ready(admin_gateway):
    port = admin_gateway.admin_port
    assert get(port, "/health") == (200, "ok\n")
    assert get(port, "/ready") == (200, "ready\n")
    assert get(port, "/nothing")[0] == 404


def test_admin_port_from_koha_conf(make_gateway, tmp_path, demo_url):
    port = free_port()
    conf = tmp_path / "koha-conf.xml"
    database = demo_url.removeprefix("sqlite://")
    conf.write_text(
        "<yazgfs><config><db_scheme>sqlite</db_scheme>"
        f"<database>{database}</database><admin_port>{port}</admin_port>"
        "</config></yazgfs>"
    )
    make_gateway(koha_conf=conf)
    assert wait_for(lambda: get(port, "/health")[0] == 200, what="the admin listener")


@pytest.fixture
def pg_cluster():
    try:
        pg = PostgresCluster()
    except PostgresUnavailable as exc:
        server_unavailable(f"PostgreSQL: {exc}")
    try:
        pg.start()
    except PostgresUnavailable as exc:
        pg.destroy()
        server_unavailable(f"PostgreSQL: {exc}")
    yield pg
    pg.destroy()


def test_ready_follows_the_database(make_gateway, pg_cluster):
    url = load_demo_database(pg_cluster.create_database("ready"))
    port = free_port()
    make_gateway(database_url=url, extra_args=["--admin-port", str(port)])
    assert wait_for(lambda: get(port, "/ready")[0] == 200, what="ready")
    pg_cluster.stop()
    status, text = wait_for(
        lambda: (answer := get(port, "/ready"))[0] == 503 and answer, what="not ready"
    )
    assert text.startswith("not ready: ")
    assert get(port, "/health")[0] == 200  # the process still answers
    pg_cluster.start()
    assert wait_for(lambda: get(port, "/ready")[0] == 200, what="ready again")


def test_json_log_lines_parse_and_mask_passwords(make_gateway):
    gateway = make_gateway(extra_args=["--log-format", "json"])
    with gateway.logged_in() as client:
        client.request(f"63000{NOW}          AOWEL|AA{ADA}|AC7734|AD1234|")
    records = wait_for(
        lambda: (
            (lines := gateway.sip_log.read_text().splitlines())
            and any("OUTPUT MSG: '64" in line for line in lines)
            and [json.loads(line) for line in lines if line.strip()]
        ),
        what="the 64 in the log",
    )
    inputs = [r["message"] for r in records if r["message"].startswith("INPUT MSG")]
    login = next(m for m in inputs if "'93" in m)
    info = next(m for m in inputs if "'63" in m)
    assert "CO****" in login and "joes" not in login
    assert "AC****" in info and "AD****" in info and "7734" not in info and "1234" not in info
    for record in records:
        assert set(record) == {"time", "pid", "level", "account", "peer", "message", "namespace"}
        assert record["level"] in ("DEBUG", "INFO", "WARN", "ERROR", "FATAL")
    assert any(r["account"] == "joe" and r["peer"] == "127.0.0.1" for r in records)
    assert "joes" not in gateway.sip_log.read_text()
