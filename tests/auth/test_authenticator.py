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
