"""LDAP in the admin listener's /metrics: every password check is timed, a directory that does
not answer is counted as an LDAP error."""

from __future__ import annotations

import pytest

from tests.gateway import free_port
from tests.ldap.conftest import PASSWORDS
from tests.ldap.test_sip_e2e import add_logins, koha_conf
from tests.test_admin_http import get, scrape, value, wait_for


@pytest.fixture
def engine():
    """The database engine does not matter here: SQLite."""
    return "sqlite"


def test_ldap_latency_and_errors(make_gateway, own_slapd, tmp_path):
    path = koha_conf(tmp_path / "koha-conf.xml", [own_slapd.url], cache_minutes="0")
    port = free_port()
    gateway = make_gateway(
        customise=add_logins("kiosk1", "asmith"),
        koha_conf=path,
        extra_args=["--admin-port", str(port)],
    )
    wait_for(lambda: get(port, "/health")[0] == 200, what="the admin listener")
    with gateway.client() as client:
        assert client.login("kiosk1", PASSWORDS["kiosk1"]).startswith("941")
    samples = scrape(port)
    assert value(samples, "koha_gateway_ldap_seconds_count") == 1
    assert value(samples, "koha_gateway_ldap_errors_total") == 0
    own_slapd.stop()
    with gateway.client() as client:
        assert client.login("asmith", PASSWORDS["asmith"]).startswith("940")
    samples = scrape(port)
    assert value(samples, "koha_gateway_ldap_seconds_count") == 2
    assert value(samples, "koha_gateway_ldap_errors_total") == 1
    assert value(samples, "koha_gateway_logins_total", outcome="failed") == 1
