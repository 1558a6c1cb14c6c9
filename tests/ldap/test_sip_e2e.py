"""End to end: a real gateway process with <useldapserver>1</useldapserver> against slapd.

SIP2 logins (93 Login) and patron passwords (AD -> CQ) are checked in LDAP first, as Koha's
C4::Auth does with C4::Auth_with_ldap (koha-sip-and-ldap §6.1, §6.3).
"""

from __future__ import annotations

import socket
import threading
import time
from xml.sax.saxutils import escape

import pytest
from lxml import etree

from koha_gateway.db.engine import Database
from koha_gateway.sip2.codec import parse
from tests.gateway import elements, sip_date, wait_for
from tests.ldap.conftest import PASSWORDS, PEOPLE
from tests.ldap.slapd import SUFFIX

NOW = sip_date()  # the pinned instant the test gateways run at

MAPPING = """
      <mapping>
        <userid is="uid"></userid>
        <cardnumber is="employeeNumber"></cardnumber>
        <firstname is="givenName"></firstname>
        <surname is="sn"></surname>
        <email is="mail"></email>
        <branchcode is="departmentNumber">WEL</branchcode>
        <categorycode is="employeeType">PT</categorycode>
        <password is="userPassword"></password>
      </mapping>
      <categorycode_mapping default="PT">
        <categorycode value="staff">S</categorycode>
      </categorycode_mapping>"""


def koha_conf(path, hosts, **elements) -> str:
    settings = {
        "base": SUFFIX,
        "replicate": "1",
        "update": "1",
        "grant_circulate": "1",
        "connect_timeout": "2",
        "response_timeout": "2",
    }
    settings.update({k: str(v) for k, v in elements.items()})
    inner = "\n".join(f"      <{k}>{escape(v)}</{k}>" for k, v in settings.items())
    path.write_text(
        f"""<yazgfs>
  <config>
    <db_scheme>sqlite</db_scheme>
    <database>unused.sqlite</database>
    <useldapserver>1</useldapserver>
    <ldapserver id="ldapserver">
      <hostname>{escape(", ".join(hosts))}</hostname>
{inner}
{MAPPING}
    </ldapserver>
  </config>
</yazgfs>
"""
    )
    return str(path)


def add_logins(*userids):
    """customise= for make_gateway: SIP accounts that exist only in LDAP."""

    def customise(tree, _process):
        accounts = elements(tree, "accounts")[0]
        namespace = etree.QName(accounts.tag).namespace
        tag = f"{{{namespace}}}login" if namespace else "login"
        for userid in userids:
            login = etree.SubElement(accounts, tag)
            login.set("id", userid)
            login.set("delimiter", "|")
            login.set("institution", "WEL")
            login.set("encoding", "utf8")
            login.set("terminator", "CRLF")

    return customise


def fields(answer: str) -> dict[str, list[str]]:
    message = parse(answer, responses=True)
    out: dict[str, list[str]] = {}
    for fid, value in message.fields:
        out.setdefault(fid, []).append(value)
    return out


def borrower(process, userid):
    db = Database.from_url(process.database_url)
    try:
        return db.run_blocking(
            lambda txn: txn.one("SELECT * FROM borrowers WHERE userid = ?", (userid,))
        )
    finally:
        db.close()


def gateway_log(process) -> str:
    text = process.read_log()
    if process.error_log.exists():
        text += process.error_log.read_text(errors="replace")
    return text


@pytest.fixture
def ldap_gateway(make_gateway, slapd, tmp_path):
    def start(hosts=None, logins=("kiosk1",), **elements):
        path = koha_conf(
            tmp_path / f"koha-conf-{time.monotonic_ns()}.xml", hosts or [slapd.url], **elements
        )
        return make_gateway(customise=add_logins(*logins), koha_conf=path)

    return start


def test_ldap_only_sip_account_logs_in_and_is_replicated(ldap_gateway):
    gateway = ldap_gateway()
    assert borrower(gateway, "kiosk1") is None
    with gateway.client() as client:
        assert client.login("kiosk1", "wrong-password").startswith("940")
    assert borrower(gateway, "kiosk1") is None
    with gateway.client() as client:
        answer = client.login("kiosk1", PASSWORDS["kiosk1"])
        assert answer.startswith("941"), gateway_log(gateway)
        assert client.request("9900302.00").startswith("98")
    row = borrower(gateway, "kiosk1")
    assert row is not None
    assert row["categorycode"] == "S"  # employeeType staff -> S
    assert row["branchcode"] == "WEL"
    assert row["flags"] & 2  # circulate (grant_circulate)
    assert row["password"].startswith("$2")
    log = gateway_log(gateway)
    assert PASSWORDS["kiosk1"] not in log
    assert "wrong-password" not in log


def test_local_accounts_still_log_in(ldap_gateway):
    """joe is not in LDAP: "not handled", so the local hash decides (Koha's fallback)."""
    gateway = ldap_gateway()
    with gateway.client() as client:
        assert client.login("joe", "joes").startswith("941")
    with gateway.client() as client:
        assert client.login("joe", "wrong").startswith("940")


def test_patron_ldap_password_gives_cq(ldap_gateway):
    gateway = ldap_gateway()
    with gateway.logged_in() as sc:
        good = fields(sc.request(f"63000{NOW}          AOWEL|AAjdoe|AD{PASSWORDS['jdoe']}|"))
        assert good["BL"] == ["Y"]
        assert good["CQ"] == ["Y"]
        assert good["AE"] == ["John Doe"]
        bad = fields(sc.request(f"63000{NOW}          AOWEL|AAjdoe|ADnot-his-password|"))
        assert bad["CQ"] == ["N"]
        status = fields(sc.request(f"23000{NOW}AOWEL|AAjdoe|AC|AD{PASSWORDS['jdoe']}|"))
        assert status["CQ"] == ["Y"]
        # Found in LDAP with the wrong password: no fallback to the local hash.
        status = fields(sc.request(f"23000{NOW}AOWEL|AAjdoe|AC|ADwrong|"))
        assert status["CQ"] == ["N"]
    row = borrower(gateway, "jdoe")
    assert (row["firstname"], row["surname"]) == ("John", "Doe")
    assert row["flags"] & 2  # this configuration grants it to every replicated borrower


def test_surname_update_shows_in_the_next_64(ldap_gateway, slapd):
    gateway = ldap_gateway(cache_minutes="0")
    request = f"63000{NOW}          AOWEL|AAasmith|AD{PASSWORDS['asmith']}|"
    with gateway.logged_in() as sc:
        assert fields(sc.request(request))["AE"] == ["Alice Smith"]
        slapd.replace(f"uid=asmith,{PEOPLE}", sn="Smith-Jones")
        try:
            answer = fields(sc.request(request))
        finally:
            slapd.replace(f"uid=asmith,{PEOPLE}", sn="Smith")
        assert answer["CQ"] == ["Y"]
        assert answer["AE"] == ["Alice Smith-Jones"]
    assert borrower(gateway, "asmith")["surname"] == "Smith-Jones"


def test_ldap_stopped_mid_run(make_gateway, own_slapd, tmp_path):
    path = koha_conf(tmp_path / "koha-conf.xml", [own_slapd.url], cache_minutes="0")
    gateway = make_gateway(customise=add_logins("kiosk1", "asmith"), koha_conf=path)
    with gateway.client() as client:
        assert client.login("kiosk1", PASSWORDS["kiosk1"]).startswith("941")
    own_slapd.stop()
    # Replicated with update_password: the local hash lets kiosk1 in while LDAP is down.
    with gateway.client() as client:
        started = time.monotonic()
        assert client.login("kiosk1", PASSWORDS["kiosk1"]).startswith("941")
        assert time.monotonic() - started < 5
    # asmith exists only in LDAP: refused, quickly.
    with gateway.client() as client:
        started = time.monotonic()
        assert client.login("asmith", PASSWORDS["asmith"]).startswith("940")
        assert time.monotonic() - started < 5
    wait_for(
        lambda: "LDAP connection failed" in gateway_log(gateway), what="the LDAP failure logged"
    )
    own_slapd.start()
    with gateway.client() as client:
        assert client.login("asmith", PASSWORDS["asmith"]).startswith("941")


def test_hung_ldap_server_answers_940_within_the_timeout(make_gateway, black_hole, tmp_path):
    path = koha_conf(
        tmp_path / "koha-conf.xml", [f"ldap://127.0.0.1:{black_hole.port}"], response_timeout="2"
    )
    gateway = make_gateway(customise=add_logins("kiosk1"), koha_conf=path)
    with gateway.client(timeout=15) as client:
        started = time.monotonic()
        assert client.login("kiosk1", PASSWORDS["kiosk1"]).startswith("940")
        elapsed = time.monotonic() - started
    assert 1.5 < elapsed < 8
    wait_for(
        lambda: "LDAP connection failed" in gateway_log(gateway), what="the LDAP failure logged"
    )


def _read_until(sock, marker: bytes, timeout: float = 10.0) -> bytes:
    sock.settimeout(timeout)
    data = b""
    while marker not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def test_telnet_login_with_the_ldap_password(ldap_gateway):
    gateway = ldap_gateway()
    with socket.create_connection(("127.0.0.1", gateway.ports["telnet"])) as sock:
        assert _read_until(sock, b"login: ").endswith(b"login: ")
        sock.sendall(b"kiosk1\r\n")
        _read_until(sock, b"password: ")
        sock.sendall(b"not-the-password\r\n")
        assert b"Invalid login" in _read_until(sock, b"login: ")
        sock.sendall(b"kiosk1\r\n")
        _read_until(sock, b"password: ")
        sock.sendall(PASSWORDS["kiosk1"].encode() + b"\r\n")
        assert b"Login OK" in _read_until(sock, b"SIP\r\n")
    assert borrower(gateway, "kiosk1")["flags"] & 2


def test_a_hung_ldap_server_never_blocks_other_connections(make_gateway, black_hole, tmp_path):
    """LDAP runs in its own threads: while one login waits for LDAP, the reactor keeps serving."""
    path = koha_conf(
        tmp_path / "koha-conf.xml", [f"ldap://127.0.0.1:{black_hole.port}"], response_timeout="3"
    )
    gateway = make_gateway(customise=add_logins("kiosk1"), koha_conf=path)
    # joe is local: LDAP times out (not handled), then the local hash lets him in.
    with gateway.client(timeout=15) as joe:
        assert joe.login("joe", "joes").startswith("941")
        waiting = {}

        def slow_login():
            with gateway.client(timeout=15) as client:
                waiting["answer"] = client.login("kiosk1", PASSWORDS["kiosk1"])

        thread = threading.Thread(target=slow_login)
        thread.start()
        # The kiosk's login reached the gateway, which now waits for LDAP.
        gateway.wait_for_log("INPUT MSG: '9300CNkiosk1")
        started = time.monotonic()
        assert joe.request("9900302.00").startswith("98")
        assert time.monotonic() - started < 1.0
        assert thread.is_alive()
        thread.join(15)
    assert waiting["answer"].startswith("940")


def test_with_ldap_every_patron_password_is_checked_before_the_message(ldap_gateway):
    """LDAP configured: no patron password is decided inside the message's transaction (the
    fast path of a remembered local password), LDAP is asked each time, as Koha does; a
    patron LDAP does not know still falls back to the local hash."""
    gateway = ldap_gateway()

    def reads():
        return gateway.sip_log_text().count("borrower rows for")

    with gateway.logged_in() as sc:
        before = reads()
        for _ in range(2):
            answer = fields(sc.request(f"63000{NOW}          AOWEL|AAjdoe|AD{PASSWORDS['jdoe']}|"))
            assert answer["CQ"] == ["Y"]
            answer = fields(sc.request(f"63000{NOW}          AOWEL|AA23529000000001|AD1234|"))
            assert answer["CQ"] == ["Y"]
        assert reads() == before + 4
