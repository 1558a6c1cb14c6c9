"""The shared authenticator through a running gateway: permission, cache, throttling."""

import subprocess
import sys
import time

from tests.gateway import ROOT


def admin(url, *args):
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "from koha_gateway.admin import main; raise SystemExit(main())",
            "--database",
            url,
            *args,
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )


def _no_xml_passwords(tree, gateway):
    for login in tree.iter("{*}login"):
        login.attrib.pop("password", None)


def test_changed_password_invalidates_the_verified_cache(make_gateway):
    # Without a password attribute in SIPconfig.xml only the database password counts.
    gateway = make_gateway(customise=_no_xml_passwords)
    with gateway.client() as client:
        assert client.login("joe", "joes") == "941"
        assert client.login("joe", "joes") == "941"
    admin(gateway.database_url, "set-password", "joe", "--password", "newpass")
    with gateway.client() as client:
        assert client.login("joe", "joes") == "940"
        assert client.login("joe", "newpass") == "941"


def test_many_logins_at_once_share_the_bcrypt_work(gateway):
    clients = [gateway.client() for _ in range(50)]
    try:
        for client in clients:
            client.send_raw(client.frame("9300CNjoe|COjoes|CP|"))
        answers = [client.read_line() for client in clients]
    finally:
        for client in clients:
            client.close()
    assert answers == [b"941"] * 50
    # One bcrypt computation for all of them: the first check in flight is shared, later ones
    # find the verified credentials remembered. (The gateway logs each check it starts.)
    deadline = time.monotonic() + 10
    while "password hash check started" not in gateway.sip_log_text():
        assert time.monotonic() < deadline, "no bcrypt check was logged"
        time.sleep(0.05)
    assert gateway.sip_log_text().count("password hash check started") == 1


def test_repeated_failures_are_slowed_down_and_logged(gateway):
    with gateway.client(timeout=60) as client:
        for _ in range(5):
            assert client.login("kilsc", "wrong") == "940"
        started = time.monotonic()
        assert client.login("kilsc", "wrong") == "940"
        assert time.monotonic() - started >= 0.5
    gateway.wait_for_log("slowing down login")
    # another account from the same peer is slowed too, but still succeeds
    with gateway.client(timeout=60) as client:
        assert client.login("joe", "joes") == "941"


def test_failed_patron_password_counts_login_attempts(gateway):
    with gateway.logged_in() as client:
        answer = client.request("6300020261129    120000          AOWEL|AA23529000000001|ADbad|")
        assert "CQN|" in answer
    rows = gateway.query("SELECT login_attempts FROM borrowers WHERE cardnumber = '23529000000001'")
    assert rows == [{"login_attempts": 1}]


def test_null_flags_mean_no_permission(gateway):
    """Koha leaves borrowers.flags NULL for patrons without permissions: the SIP login of such
    a user is refused (940), the connection stays usable."""
    gateway.query("UPDATE borrowers SET flags = NULL WHERE userid = 'nocirc'")
    assert gateway.query("SELECT flags FROM borrowers WHERE userid = 'nocirc'") == [{"flags": None}]
    with gateway.client() as client:
        assert client.login("nocirc", "nocirc1") == "940"
        assert client.login("joe", "joes") == "941"
    assert "user lacks the circulate permission" in gateway.sip_log.read_text()


def test_the_cache_and_the_throttle_run_on_the_injected_reactor_clock():
    from twisted.internet import task

    from koha_gateway.auth.authenticator import Authenticator

    clock = task.Clock()
    auth = Authenticator(None, reactor=clock)
    key = ("ldap", "jdoe", b"mac")
    auth._remember(key, 60)
    clock.advance(59)
    assert auth._known(key)
    clock.advance(2)
    assert not auth._known(key)
    for _ in range(4):
        auth._throttle.failed("joe")
    assert auth._throttle.delay("joe") > 0
    clock.advance(901)  # failures are forgotten after 15 minutes of the same clock
    assert auth._throttle.delay("joe") == 0


def _logins_at_once(gateway, credentials):
    """Send every 93 before reading any answer; the answers in the same order."""
    clients = [gateway.client() for _ in credentials]
    try:
        for client, (userid, password) in zip(clients, credentials):
            client.send_raw(client.frame(f"9300CN{userid}|CO{password}|CP|"))
        return [client.read_line() for client in clients]
    finally:
        for client in clients:
            client.close()


def _batches(gateway):
    """(borrower rows read, password checks served) of each batch in the SIP log."""
    import re

    pattern = r"reading (\d+) borrower rows for (\d+) password checks"
    found = re.findall(pattern, gateway.sip_log_text())
    return [(int(rows), int(checks)) for rows, checks in found]


def test_logins_at_once_read_each_account_once_per_batch(make_gateway):
    gateway = make_gateway(customise=_no_xml_passwords)
    # Two wrong passwords among them (fewer than the throttle lets through unslowed).
    credentials = [("joe", "joes")] * 40 + [("kilsc", "kilsc1")] * 20
    credentials[7] = ("joe", "wrong")
    credentials[33] = ("kilsc", "wrong")
    answers = _logins_at_once(gateway, credentials)
    expected = [b"940" if password == "wrong" else b"941" for _, password in credentials]
    assert answers == expected
    batches = _batches(gateway)
    assert sum(checks for _, checks in batches) == 60
    # Concurrent checks of the same account share one row read: fewer reads than checks.
    assert sum(rows for rows, _ in batches) < 60
    assert all(rows <= 2 for rows, _ in batches)


def test_a_password_changed_by_koha_is_seen_by_the_next_batch(make_gateway):
    # Another process (Koha's staff interface) changes the password between two storms.
    gateway = make_gateway(customise=_no_xml_passwords)
    assert _logins_at_once(gateway, [("joe", "joes")] * 20) == [b"941"] * 20
    admin(gateway.database_url, "set-password", "joe", "--password", "changed")
    # The old password twice only, so that the throttle does not slow the others down.
    credentials = [("joe", "changed")] * 20
    credentials[5] = credentials[14] = ("joe", "joes")
    answers = _logins_at_once(gateway, credentials)
    assert answers == [b"940" if p == "joes" else b"941" for _, p in credentials]
