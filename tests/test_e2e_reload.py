"""SIGHUP re-reads SIPconfig.xml without dropping connections; a broken file changes nothing."""

from __future__ import annotations

import signal
import time

from tests.gateway import sip_date

NOW = sip_date()  # the pinned instant the test gateways run at


def _wait_for(gateway, text: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in gateway.read_log():
        assert time.monotonic() < deadline, f"{text!r} not logged:\n{gateway.read_log()}"
        time.sleep(0.05)


def test_reload_applies_new_accounts_and_policies_and_keeps_connections(gateway):
    old = gateway.logged_in()
    assert old.request("9900302.00")[2:8] == "YYYYYN"
    text = gateway.sipconfig.read_text()
    # joe's institution now refuses renewals; a new account "joe2" appears (no patron: warning)
    text = text.replace('renewal="true"', 'renewal="false"', 1)
    text = text.replace(
        '<login id="joe"',
        '<login id="joe2" password="x" institution="WEL"/>\n    <login id="joe"',
        1,
    )
    gateway.sipconfig.write_text(text)
    gateway.signal(signal.SIGHUP)
    _wait_for(gateway, f"reloaded {gateway.sipconfig}")
    # the open connection keeps working and sees the new policy
    assert old.request("9900302.00")[2:8] == "YYYNYN"
    assert "account 'joe2' has no patron" in gateway.read_log()
    with gateway.client() as client:
        assert client.login("joe", "joes") == "941"
    old.close()


def test_a_broken_file_is_refused_and_the_old_configuration_stays(gateway):
    client = gateway.logged_in()
    gateway.sipconfig.write_text("<acsconfig><listeners>")
    gateway.signal(signal.SIGHUP)
    _wait_for(gateway, "reload refused")
    assert gateway.alive()
    assert client.request("9900302.00").startswith("98YYYYYN")
    with gateway.client() as other:
        assert other.login("joe", "joes") == "941"
    client.close()
