"""A gateway taking its SIP configuration from Koha's sip_* tables (Koha bug 37893).

Koha's tables are created on top of the demo database (its schema predates them) and filled as
Koha's staff interface would. The running gateway serves an account defined only in
``sip_accounts``, picks up an edit of that row without a restart (the poll, and SIGHUP), and
refuses a broken row with a log line naming the table and row while the running configuration
stays in force. Every test runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import signal
import time
from datetime import datetime

import pytest

from koha_gateway.db.engine import Database
from koha_gateway.sip2.codec import parse
from tests.gateway import elements, free_port
from tests.support.koha_sip_tables import create_sip_tables, insert

ADA = "23529000000001"


def run(url: str, fn, *args):
    db = Database.from_url(url)
    try:
        return db.run_blocking(fn, *args)
    finally:
        db.close()


def patron_information(client) -> dict[str, list[str]]:
    now = datetime.now().strftime("%Y%m%d    %H%M%S")
    answer = client.request(f"63001{now}          AOWEL|AA{ADA}|AD1234|")
    assert answer.startswith("64"), answer
    fields: dict[str, list[str]] = {}
    for fid, value in parse(answer, responses=True).fields:
        fields.setdefault(fid, []).append(value)
    return fields


def wait_until(condition, what: str, gateway, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        assert time.monotonic() < deadline, f"{what} did not happen:\n{gateway.read_log()}"
        time.sleep(0.1)


def koha_configuration(txn, listener_port: int | None = None) -> dict[str, int]:
    """What Koha's database update would copy from the demo SIPconfig.xml, but only joe."""
    create_sip_tables(txn)
    wel = insert(txn, "sip_institutions", name="WEL", renewal=1, status_update=0, offline=0)
    insert(txn, "sip_institutions", name="KIL")
    joe = insert(txn, "sip_accounts", sip_institution_id=wel, login_id="joe")
    ids = {"wel": wel, "joe": joe}
    if listener_port is not None:
        ids["listener"] = insert(
            txn,
            "sip_listeners",
            port=f"127.0.0.1:{listener_port}/tcp",
            protocol="SIP/2.00",
            timeout=60,
            transport="RAW",
        )
    return ids


def without_joe(tree, process):
    for login in elements(tree, "login"):
        if login.get("id") == "joe":
            login.getparent().remove(login)


@pytest.fixture
def koha_db(demo_url):
    return demo_url, run(demo_url, koha_configuration)


def test_accounts_come_from_sip_accounts_and_an_edit_is_applied_without_restart(
    make_gateway, koha_db
):
    url, ids = koha_db
    gateway = make_gateway(customise=without_joe, extra_args=["--sip-config-poll", "0.2"])
    # joe exists only in sip_accounts; the file's own logins are replaced, as in Koha
    with gateway.logged_in("joe", "joes") as client:
        assert "BE" in patron_information(client)  # e-mail sent
        assert client.request("9900302.00")[2:8] == "YYYYNN"  # WEL row: no status_update
    with gateway.client() as other:
        assert other.login("kilsc", "kilsc1") == "940"  # only in SIPconfig.xml

    # The librarian hides the e-mail field for joe in Koha's staff interface.
    run(
        url,
        lambda txn: txn.execute(
            "UPDATE sip_accounts SET hide_fields = ? WHERE sip_account_id = ?", ("BE", ids["joe"])
        ),
    )

    def hidden():
        with gateway.logged_in("joe", "joes") as client:
            return "BE" not in patron_information(client)

    wait_until(hidden, "the edit of sip_accounts taking effect", gateway)
    log = gateway.read_log()
    assert "Koha's SIP configuration tables changed; reloading" in log
    assert "(from Koha's database: accounts, institutions)" in log
    assert gateway.alive()


def test_a_broken_row_is_refused_and_the_running_configuration_stays(make_gateway, koha_db):
    url, ids = koha_db
    gateway = make_gateway(customise=without_joe, extra_args=["--sip-config-poll", "0.2"])
    client = gateway.logged_in("joe", "joes")
    row = run(
        url,
        lambda txn: insert(
            txn,
            "sip_account_screen_msg_regexs",
            sip_account_id=ids["joe"],
            find="(unclosed",
            replace="x",
        ),
    )
    expected = (
        f"sip_account_screen_msg_regexs id={row}: screen_msg_regex find='(unclosed' is not a "
        "valid regex"
    )
    wait_until(lambda: expected in gateway.read_log(), "the refusal", gateway)
    assert "reload refused, keeping the running configuration" in gateway.read_log()
    assert gateway.alive()
    assert "BE" in patron_information(client)
    with gateway.logged_in("joe", "joes") as other:
        assert "BE" in patron_information(other)
    client.close()

    # Corrected in the staff interface: applied at the next poll; the refusal was logged once.
    run(
        url,
        lambda txn: txn.execute(
            "UPDATE sip_account_screen_msg_regexs SET find = ? "
            "WHERE sip_account_screen_msg_regex_id = ?",
            ("Greetings", row),
        ),
    )
    wait_until(
        lambda: "reloaded" in gateway.read_log().split(expected, 1)[1], "the corrected row", gateway
    )
    assert gateway.log.read_text().count(expected) == 1  # twistd.log alone


def test_without_sipconfig_xml_listeners_come_from_sip_listeners_and_sighup_reloads(
    make_gateway, demo_url
):
    port = free_port()
    ids = run(demo_url, koha_configuration, port)
    gateway = make_gateway(start=False, extra_args=["--sip-config-poll", "0"])
    gateway.use_sipconfig = False
    gateway.ports = {"raw": port}
    gateway.start()
    assert "--sip-config" not in gateway.command()
    with gateway.logged_in("joe", "joes") as client:
        assert "BE" in patron_information(client)
    run(
        demo_url,
        lambda txn: txn.execute(
            "UPDATE sip_accounts SET hide_fields = ? WHERE sip_account_id = ?", ("BE", ids["joe"])
        ),
    )
    gateway.signal(signal.SIGHUP)
    wait_until(
        lambda: "reloaded Koha's sip_* tables: 1 accounts" in gateway.read_log(),
        "the SIGHUP reload",
        gateway,
    )
    with gateway.logged_in("joe", "joes") as client:
        assert "BE" not in patron_information(client)


def test_a_broken_row_at_start_up_stops_it_naming_the_row(make_gateway, koha_db):
    url, ids = koha_db
    run(
        url,
        lambda txn: txn.execute(
            "UPDATE sip_accounts SET encoding = ? WHERE sip_account_id = ?", ("klingon", ids["joe"])
        ),
    )
    gateway = make_gateway(start=False, extra_args=["--check-config"])
    with pytest.raises(RuntimeError) as err:
        gateway.start()
    assert (
        f"koha-gateway: sip_accounts id={ids['joe']} (login joe): encoding='klingon' is not a "
        "known character encoding"
    ) in str(err.value)


def test_check_config_names_the_sections_from_the_database(make_gateway, koha_db):
    gateway = make_gateway(start=False, customise=without_joe, extra_args=["--check-config"])
    gateway.ports = {}
    gateway.start()
    gateway.process.wait(30)
    output = gateway.process.stdout.read().decode()
    assert gateway.process.returncode == 0, output
    assert (
        f"{gateway.sipconfig}: 3 listeners, 1 accounts, 2 institutions: OK "
        "(from Koha's database: accounts, institutions)"
    ) in output
