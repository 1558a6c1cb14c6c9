"""koha-gateway-admin: every command through ``main([...])``, errors, and once as a process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from koha_gateway.admin import main
from koha_gateway.auth.passwords import verify_password
from koha_gateway.db import schema
from koha_gateway.db.engine import Database

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def url(request, engine, tmp_path):
    """An empty database on the engine under test."""
    if engine == "sqlite":
        yield f"sqlite:///{tmp_path / 'admin.sqlite'}"
        return
    from tests.support.postgres import cluster_or_skip

    cluster = cluster_or_skip()
    created = cluster.create_database()
    yield created
    cluster.drop_database(created.rsplit("/", 1)[1])


@pytest.fixture
def admin(url, capsys):
    """``admin(*argv) -> (status, stdout, stderr)`` against the test database."""

    def run(*argv, database=True):
        status = main((["--database", url] if database else []) + list(argv))
        captured = capsys.readouterr()
        return status, captured.out, captured.err

    return run


def query(url, sql, params=()):
    db = Database.from_url(url)
    try:
        return db.run_blocking(lambda txn: txn.query(sql, params))
    finally:
        db.close()


def prepared(admin):
    assert admin("init")[0] == 0
    assert admin("add-branch", "WEL", "Wellington Central")[0] == 0
    assert admin("add-category", "S", "Staff", "--staff", "--noissuescharge", "5")[0] == 0
    assert admin("add-itemtype", "BK", "Book")[0] == 0


def test_init_creates_then_reports_up_to_date(admin, url):
    assert admin("init") == (0, f"schema upgraded: version 0 -> {schema.LATEST}\n", "")
    assert admin("init") == (0, f"schema is up to date (version {schema.LATEST})\n", "")
    versions = [row["version"] for row in query(url, "SELECT version FROM schema_version")]
    assert max(versions) == schema.LATEST


def test_commands_refuse_a_database_without_schema(admin):
    status, out, err = admin("add-branch", "WEL", "Wellington")
    assert (status, out) == (1, "")
    assert err == (
        "koha-gateway-admin: error: the database has no schema yet: "
        "run 'koha-gateway-admin init' first\n"
    )


def test_load_demo_is_idempotent(admin, url):
    status, out, err = admin("load-demo")
    assert status == 0 and err == ""
    assert out.splitlines() == [
        f"schema upgraded: version 0 -> {schema.LATEST}",
        "demo data loaded: 2 branches, 3 staff users, 4 patrons, 12 items, 3 loans, 2 holds, "
        "3 fines",
    ]
    status, out, err = admin("load-demo")
    assert status == 0
    assert out.startswith("demo data already present (branch WEL, branch KIL, staff patron joe")
    assert out.rstrip().endswith("; nothing loaded")
    assert len(query(url, "SELECT borrowernumber FROM borrowers")) == 7
    assert len(query(url, "SELECT itemnumber FROM items")) == 12


def test_add_patron_with_circulate(admin, url):
    prepared(admin)
    status, out, err = admin(
        "add-patron",
        "--cardnumber", "1001",
        "--userid", "kiosk1",
        "--surname", "Kiosk",
        "--firstname", "One",
        "--branch", "WEL",
        "--category", "S",
        "--password", "s3cret!",
        "--expiry", "2030-12-31",
        "--circulate",
    )  # fmt: skip
    assert status == 0, err
    assert out.startswith("patron 1001 (kiosk1) added as borrowernumber ")
    assert out.rstrip().endswith("with circulate")
    assert "s3cret" not in out + err
    row = query(url, "SELECT * FROM borrowers WHERE userid = 'kiosk1'")[0]
    assert row["flags"] == schema.CIRCULATE
    assert (row["cardnumber"], row["surname"], row["firstname"]) == ("1001", "Kiosk", "One")
    assert row["dateexpiry"] == "2030-12-31"
    assert row["password"].startswith("$2b$")
    assert verify_password("s3cret!", row["password"])


def test_add_patron_superlibrarian_without_circulate(admin, url):
    prepared(admin)
    status, _, _ = admin(
        "add-patron", "--cardnumber", "1", "--userid", "boss", "--surname", "Boss",
        "--branch", "WEL", "--category", "S", "--password", "x", "--expiry", "2030-01-01",
        "--superlibrarian",
    )  # fmt: skip
    assert status == 0
    assert query(url, "SELECT flags FROM borrowers")[0]["flags"] == schema.SUPERLIBRARIAN


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"--branch": "NOPE"}, "unknown branch NOPE (add it with 'koha-gateway-admin add-branch')"),
        (
            {"--category": "PT"},
            "unknown patron category PT (add it with 'koha-gateway-admin add-category')",
        ),
        ({"--expiry": "31/12/2030"}, "--expiry '31/12/2030' is not a date (YYYY-MM-DD)"),
        ({"--cardnumber": "1001"}, "a patron with cardnumber or userid 1001 already exists"),
        ({"--userid": "kiosk1"}, "a patron with cardnumber or userid kiosk1 already exists"),
        ({"--userid": "1001"}, "a patron with cardnumber or userid 1001 already exists"),
    ],
)
def test_add_patron_errors(admin, url, change, message):
    prepared(admin)
    base = {
        "--cardnumber": "1001",
        "--userid": "kiosk1",
        "--surname": "Kiosk",
        "--branch": "WEL",
        "--category": "S",
        "--password": "x",
        "--expiry": "2030-12-31",
    }
    argv = [part for pair in base.items() for part in pair]
    assert admin("add-patron", *argv)[0] == 0
    base.update({"--cardnumber": "2002", "--userid": "other"})
    base.update(change)
    argv = [part for pair in base.items() for part in pair]
    status, out, err = admin("add-patron", *argv)
    assert (status, out) == (1, "")
    assert err == f"koha-gateway-admin: error: {message}\n"
    assert len(query(url, "SELECT borrowernumber FROM borrowers")) == 1


PATRON = (
    "add-patron", "--cardnumber", "1001", "--userid", "ada", "--surname", "Lovelace",
    "--branch", "WEL", "--category", "S", "--password", "x", "--expiry", "2030-12-31",
)  # fmt: skip


def test_add_patron_with_contact_and_personal_details(admin, url):
    prepared(admin)
    status, _, err = admin(
        *PATRON,
        "--firstname", "Ada",
        "--title", "Ms",
        "--address", "12 Marine Parade",
        "--address2", "Flat 3",
        "--city", "Wellington",
        "--state", "Wellington Region",
        "--zipcode", "6011",
        "--country", "New Zealand",
        "--phone", "04 555 0101",
        "--mobile", "021 555 0101",
        "--email", "ada@example.org",
        "--dateofbirth", "1815-12-10",
        "--sex", "f",
        "--opacnote", "Please renew your card",
    )  # fmt: skip
    assert status == 0, err
    row = query(url, "SELECT * FROM borrowers WHERE userid = 'ada'")[0]
    assert {k: str(row[k]) for k in (
        "title", "address", "address2", "city", "state", "zipcode", "country", "phone",
        "mobile", "email", "dateofbirth", "sex", "opacnote",
    )} == {
        "title": "Ms",
        "address": "12 Marine Parade",
        "address2": "Flat 3",
        "city": "Wellington",
        "state": "Wellington Region",
        "zipcode": "6011",
        "country": "New Zealand",
        "phone": "04 555 0101",
        "mobile": "021 555 0101",
        "email": "ada@example.org",
        "dateofbirth": "1815-12-10",
        "sex": "F",
        "opacnote": "Please renew your card",
    }  # fmt: skip
    out = admin("show-patron", "ada")[1]
    lines = dict(
        (label.strip(), value.strip())
        for label, value in (line.split(":", 1) for line in out.splitlines() if ":" in line)
    )
    assert lines["address"] == (
        "12 Marine Parade, Flat 3, Wellington, Wellington Region, 6011, New Zealand"
    )
    assert (lines["phone"], lines["mobile"], lines["email"]) == (
        "04 555 0101",
        "021 555 0101",
        "ada@example.org",
    )
    assert (lines["date of birth"], lines["sex"], lines["title"]) == ("1815-12-10", "F", "Ms")
    assert lines["OPAC note"] == "Please renew your card"


def test_add_patron_without_details_leaves_them_empty(admin, url):
    prepared(admin)
    assert admin(*PATRON)[0] == 0
    row = query(url, "SELECT * FROM borrowers WHERE userid = 'ada'")[0]
    for column in ("address", "city", "phone", "mobile", "email", "dateofbirth", "sex"):
        assert row[column] is None, column
    out = admin("show-patron", "ada")[1]
    assert "address:" not in out and "sex:" not in out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--sex", "X"), "--sex 'X' must be one of F, M, O, N"),
        (("--sex", ""), "--sex '' must be one of F, M, O, N"),
        (("--dateofbirth", "10/12/1815"), "--dateofbirth '10/12/1815' is not a date (YYYY-MM-DD)"),
        (("--dateofbirth", "1815-02-30"), "--dateofbirth '1815-02-30' is not a date (YYYY-MM-DD)"),
        (("--dateofbirth", "9999-12-31"), "--dateofbirth '9999-12-31' is in the future"),
        (("--email", "ada-at-example"), "--email 'ada-at-example' is not an email address"),
    ],
)
def test_add_patron_detail_errors(admin, url, extra, message):
    prepared(admin)
    assert admin(*PATRON, *extra) == (1, "", f"koha-gateway-admin: error: {message}\n")
    assert query(url, "SELECT borrowernumber FROM borrowers") == []


def test_seeded_patron_and_currency_over_sip(make_gateway, demo_url, capsys):
    """What add-patron and set-currency write is what a running gateway answers with: the
    64 Patron Information answer sends BD, BE, BF, PB from the details, the OPAC note in AF
    and the active currency in BH."""
    from koha_gateway.sip2.codec import parse

    def admin(*argv):
        status = main(["--database", demo_url, *argv])
        return status, capsys.readouterr().err

    assert admin(
        "add-patron", "--cardnumber", "23529000000099", "--userid", "mary",
        "--surname", "Somerville", "--firstname", "Mary", "--branch", "WEL", "--category", "PT",
        "--password", "5678", "--expiry", "2999-12-31", "--address", "1 Main St",
        "--city", "Wellington", "--zipcode", "6011", "--phone", "04 555 0102",
        "--email", "mary@example.org", "--dateofbirth", "1780-12-26", "--sex", "F",
        "--opacnote", "Your card is ready",
    ) == (0, "")  # fmt: skip
    assert admin("set-currency", "GBP", "--symbol", "£") == (0, "")
    gateway = make_gateway()
    with gateway.logged_in() as client:
        answer = client.request(
            "63000" + "20260310    143000" + " " * 10 + "AOWEL|AA23529000000099|"
        )
    found = dict(parse(answer, responses=True).fields)
    assert found["BD"] == "1 Main St Wellington 6011"
    assert (found["BE"], found["BF"], found["PB"]) == (
        "mary@example.org",
        "04 555 0102",
        "17801226",
    )
    assert found["BH"] == "GBP"
    messages = [value for fid, value in parse(answer, responses=True).fields if fid == "AF"]
    assert any("Your card is ready" in message for message in messages), messages


def test_set_and_show_currency(admin, url):
    prepared(admin)
    assert admin("show-currency") == (
        0,
        "no active currency: SIP2 BH is USD, as Koha sends it\n",
        "",
    )
    assert admin("set-currency", "NZD", "--symbol", "$") == (
        0,
        "active currency: NZD ($); SIP2 BH NZD\n",
        "",
    )
    assert admin("set-currency", "EURO", "--isocode", "eur", "--symbol", "€")[1] == (
        "active currency: EURO (€); SIP2 BH EUR\n"
    )
    rows = query(url, "SELECT currency, symbol, isocode, active FROM currency ORDER BY currency")
    assert [(r["currency"], r["symbol"], r["isocode"], r["active"]) for r in rows] == [
        ("EURO", "€", "EUR", 1),
        ("NZD", "$", "NZD", 0),
    ]
    # Back to NZD: one active currency, the symbol kept when not given.
    assert admin("set-currency", "NZD")[1] == "active currency: NZD ($); SIP2 BH NZD\n"
    assert admin("show-currency")[1] == "  EURO       EUR   €\n* NZD        NZD   $\n"


def test_set_currency_is_what_sip_sends_in_bh(admin, url):
    from koha_gateway.acs import fields

    prepared(admin)
    assert admin("set-currency", "GBP", "--symbol", "£")[0] == 0
    db = Database.from_url(url)
    try:
        assert db.run_blocking(fields.currency_isocode) == "GBP"
    finally:
        db.close()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ("set-currency", "EURO"),
            "the ISO code 'EURO' must be 3 letters (give --isocode for currency EURO)",
        ),
        (
            ("set-currency", "NZD", "--isocode", "N1"),
            "the ISO code 'N1' must be 3 letters (give --isocode for currency NZD)",
        ),
        (("set-currency", "NZ D"), "currency 'NZ D' must be 1 to 10 letters, digits, '-' or '_'"),
        (("set-currency", "NZD", "--symbol", "dollars"), "--symbol must be 1 to 5 characters"),
    ],
)
def test_set_currency_errors(admin, url, argv, message):
    prepared(admin)
    assert admin(*argv) == (1, "", f"koha-gateway-admin: error: {message}\n")
    assert query(url, "SELECT currency FROM currency") == []


def test_add_branch_with_address(admin, url):
    prepared(admin)
    status, out, err = admin(
        "add-branch", "KIL", "Kilbirnie", "--address", "101 Bay Road", "--city", "Wellington",
        "--zipcode", "6022", "--phone", "04 555 0199", "--email", "kil@example.org",
    )  # fmt: skip
    assert (status, out, err) == (0, "branch KIL added: Kilbirnie\n", "")
    row = query(url, "SELECT * FROM branches WHERE branchcode = 'KIL'")[0]
    assert (
        row["branchaddress1"], row["branchcity"], row["branchzip"], row["branchphone"],
        row["branchemail"],
    ) == ("101 Bay Road", "Wellington", "6022", "04 555 0199", "kil@example.org")  # fmt: skip
    assert "is not an email address" in admin("add-branch", "X", "X", "--email", "nope")[2]


def test_set_password_from_option_and_from_stdin(admin, url, monkeypatch):
    admin("load-demo")
    assert admin("set-password", "joe", "--password", "newer") == (
        0,
        "password of joe changed\n",
        "",
    )
    row = query(url, "SELECT password FROM borrowers WHERE userid = 'joe'")[0]
    assert verify_password("newer", row["password"])

    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO("from-stdin\n"))
    assert admin("set-password", "23529000000001")[0] == 0
    row = query(url, "SELECT password FROM borrowers WHERE cardnumber = '23529000000001'")[0]
    assert verify_password("from-stdin", row["password"])
    assert not verify_password("1234", row["password"])


def test_set_password_errors(admin, monkeypatch):
    admin("load-demo")
    status, _, err = admin("set-password", "nobody", "--password", "x")
    assert status == 1 and err == (
        "koha-gateway-admin: error: no patron with cardnumber or userid nobody\n"
    )
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO("\n"))
    status, _, err = admin("set-password", "joe")
    assert status == 1 and err == "koha-gateway-admin: error: the password must not be empty\n"


def test_add_item(admin, url):
    prepared(admin)
    status, out, _ = admin(
        "add-item", "--barcode", "3999", "--title", "Middlemarch", "--author", "Eliot, George",
        "--branch", "WEL", "--itemtype", "BK", "--callnumber", "FIC ELI",
    )  # fmt: skip
    assert status == 0 and out.startswith("item 3999 added as itemnumber ")
    row = query(
        url,
        "SELECT i.*, b.title, b.author FROM items i JOIN biblio b "
        "ON b.biblionumber = i.biblionumber WHERE barcode = '3999'",
    )[0]
    assert (row["title"], row["author"], row["itemcallnumber"]) == (
        "Middlemarch",
        "Eliot, George",
        "FIC ELI",
    )
    assert (row["homebranch"], row["holdingbranch"], row["itype"]) == ("WEL", "WEL", "BK")
    status, _, err = admin(
        "add-item", "--barcode", "3999", "--title", "x", "--branch", "WEL", "--itemtype", "BK"
    )
    assert status == 1 and "an item with barcode 3999 already exists" in err
    status, _, err = admin(
        "add-item", "--barcode", "4000", "--title", "x", "--branch", "WEL", "--itemtype", "DVD"
    )
    assert status == 1 and "unknown item type DVD" in err


def test_add_item_with_shelving_details_and_a_second_copy(admin, url):
    prepared(admin)
    assert admin("add-branch", "KIL", "Kilbirnie")[0] == 0
    status, out, err = admin(
        "add-item", "--barcode", "5001", "--title", "Dune", "--branch", "WEL",
        "--itemtype", "BK", "--callnumber", "SF HER", "--location", "FIC", "--ccode", "ADULT",
        "--materials", "1 map", "--price", "18.5", "--replacementprice", "25",
        "--holdingbranch", "KIL",
    )  # fmt: skip
    assert status == 0, err
    first = query(url, "SELECT * FROM items WHERE barcode = '5001'")[0]
    assert out == f"item 5001 added as itemnumber {first['itemnumber']} of biblionumber " + (
        f"{first['biblionumber']}: Dune\n"
    )
    assert (first["location"], first["permanent_location"], first["ccode"]) == (
        "FIC",
        "FIC",
        "ADULT",
    )
    assert (first["materials"], first["price"], first["replacementprice"]) == ("1 map", 18.5, 25)
    assert (first["homebranch"], first["holdingbranch"]) == ("WEL", "KIL")
    assert (first["notforloan"], first["damaged"]) == (0, 0)

    biblionumber = str(first["biblionumber"])
    status, out, err = admin(
        "add-item", "--barcode", "5002", "--biblionumber", biblionumber, "--branch", "WEL",
        "--itemtype", "BK", "--notforloan", "-1", "--damaged",
    )  # fmt: skip
    assert status == 0, err
    assert out.endswith(f"of biblionumber {biblionumber}: Dune\n")
    second = query(url, "SELECT * FROM items WHERE barcode = '5002'")[0]
    assert second["biblionumber"] == first["biblionumber"]
    assert (second["notforloan"], second["damaged"], second["holdingbranch"]) == (-1, 1, "WEL")
    assert len(query(url, "SELECT biblionumber FROM biblio")) == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--biblionumber", "999"), "no title with biblionumber 999"),
        (
            ("--biblionumber", "1", "--title", "x"),
            "--biblionumber adds a copy of that title: leave out --title and --author",
        ),
        ((), "give --title for a new title, or --biblionumber for another copy"),
        (("--title", "x", "--price", "-1"), "--price must not be negative"),
        (("--title", "x", "--replacementprice", "-0.5"), "--replacementprice must not be negative"),
        (
            ("--title", "x", "--holdingbranch", "NOPE"),
            "unknown branch NOPE (add it with 'koha-gateway-admin add-branch')",
        ),
    ],
)
def test_add_item_errors(admin, url, argv, message):
    prepared(admin)
    base = ("add-item", "--barcode", "6001", "--branch", "WEL", "--itemtype", "BK")
    assert admin(*base, *argv) == (1, "", f"koha-gateway-admin: error: {message}\n")
    assert query(url, "SELECT itemnumber FROM items") == []


def test_branch_category_itemtype_errors(admin):
    prepared(admin)
    assert admin("add-branch", "WEL", "Again")[2] == (
        "koha-gateway-admin: error: branch WEL already exists\n"
    )
    assert "must be 1 to 10 letters" in admin("add-branch", "BAD CODE", "x")[2]
    assert "patron category S already exists" in admin("add-category", "S", "x")[2]
    assert "item type BK already exists" in admin("add-itemtype", "BK", "x")[2]
    assert "3-digit SIP2 media type" in admin("add-itemtype", "DVD", "x", "--media-type", "9")[2]


def test_set_syspref_and_rule(admin, url):
    prepared(admin)
    hint = (
        "a running gateway uses it within a minute, or at once after a reload (koha-sip --reload)"
    )
    assert admin("set-syspref", "noissuescharge", "10") == (
        0,
        f"noissuescharge = '10'\n{hint}\n",
        "",
    )
    assert admin("set-syspref", "MyPref", "x")[1] == f"MyPref = 'x' (new preference)\n{hint}\n"
    values = {
        r["variable"]: r["value"]
        for r in query(url, "SELECT variable, value FROM systempreferences")
    }
    assert values["noissuescharge"] == "10" and values["MyPref"] == "x"
    status, out, _ = admin("set-rule", "issuelength", "21", "--itemtype", "BK")
    assert status == 0
    assert out == "rule issuelength = '21' for branch *, category *, item type BK\n"
    assert admin("set-rule", "issuelength", "7", "--branch", "NOPE")[2] == (
        "koha-gateway-admin: error: unknown branch NOPE\n"
    )
    rows = query(url, "SELECT * FROM circulation_rules WHERE rule_name = 'issuelength'")
    assert [(r["branchcode"], r["itemtype"], r["rule_value"]) for r in rows] == [("*", "BK", "21")]


def test_show_patron(admin):
    admin("load-demo")
    status, out, _ = admin("show-patron", "grace")
    assert status == 0
    lines = dict(line.split(":", 1) for line in out.splitlines() if not line.startswith("  "))
    assert lines["cardnumber"].strip() == "23529000000002"
    assert lines["name"].strip() == "Grace Hopper"
    assert lines["standing"].strip() == "blocked by fines"
    assert lines["fines"].strip() == "12.00 (limit 5.00)"
    assert lines["password"].strip() == "set"
    assert "$2b$" not in out
    out = admin("show-patron", "joe")[1]
    assert "permissions:     circulate" in out
    out = admin("show-patron", "23529000000004")[1]
    assert "standing:        restricted (Restricted: please see the staff" in out
    assert admin("show-patron", "nobody")[0] == 1


def test_database_sources(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("KOHA_GATEWAY_DATABASE", raising=False)

    def admin(*argv, database=False):
        status = main(list(argv))
        captured = capsys.readouterr()
        return status, captured.out, captured.err

    status, _, err = admin("init", database=False)
    assert status == 1
    assert err == (
        "koha-gateway-admin: error: no database: give --database URL or --koha-conf PATH "
        "(or set KOHA_GATEWAY_DATABASE)\n"
    )
    conf = tmp_path / "koha-conf.xml"
    conf.write_text(
        "<yazgfs><config><db_scheme>sqlite</db_scheme><database>var/ils.sqlite</database>"
        "</config></yazgfs>"
    )
    (tmp_path / "var").mkdir()
    assert admin("--koha-conf", str(conf), "init", database=False)[0] == 0
    assert (tmp_path / "var" / "ils.sqlite").exists()
    assert admin("--koha-conf", str(tmp_path / "missing.xml"), "init", database=False)[0] == 1
    monkeypatch.setenv("KOHA_GATEWAY_DATABASE", f"sqlite:///{tmp_path / 'env.sqlite'}")
    assert admin("init", database=False)[0] == 0
    assert (tmp_path / "env.sqlite").exists()
    status, _, err = admin("--database", "oracle://x/y", "init", database=False)
    assert status == 1 and err.startswith("koha-gateway-admin: error: ")


def test_usage_errors_exit_2(admin):
    assert admin("no-such-command")[0] == 2
    assert admin("add-branch")[0] == 2


def test_as_a_process(tmp_path):
    database = f"sqlite:///{tmp_path / 'proc.sqlite'}"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    command = [sys.executable, "-m", "koha_gateway.admin", "--database", database]
    done = subprocess.run(
        [*command, "load-demo"], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "demo data loaded" in done.stdout
    done = subprocess.run(
        [*command, "set-password", "kilsc"],
        input="changed\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "password of kilsc changed\n"
    done = subprocess.run(
        [*command, "add-branch", "WEL", "x"], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 1
    assert done.stderr == "koha-gateway-admin: error: branch WEL already exists\n"
