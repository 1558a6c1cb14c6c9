"""The demo data set of issue 2, exactly: libraries, accounts, patrons, items and their states."""

# ruff: noqa: F811

from __future__ import annotations

import pytest

from koha_gateway import demo
from koha_gateway.auth.passwords import verify_password
from koha_gateway.db.schema import CIRCULATE

# The demo database fixtures of the unit tests; test parameters named ``db`` use them.
from tests.ils.conftest import (  # noqa: F401
    ADA,
    ALAN,
    BARCODE,
    EDSGER,
    GRACE,
    NOW,
    db,
    unit_demo_template,
    unit_my_template,
    unit_pg_template,
)


def rows(db, sql, params=()):
    return db.run_blocking(lambda txn: txn.query(sql, params))


def one(db, sql, params=()):
    return db.run_blocking(lambda txn: txn.one(sql, params))


def test_branches(db):
    assert [
        (r["branchcode"], r["branchname"])
        for r in rows(db, "SELECT branchcode, branchname FROM branches ORDER BY branchcode")
    ] == [("KIL", "Kilbirnie"), ("WEL", "Wellington Central")]


def test_categories_item_types_and_currency(db):
    categories = {r["categorycode"]: r for r in rows(db, "SELECT * FROM categories")}
    if "noissuescharge" in categories["PT"]:  # Koha 24.05 and later, and the gateway's schema
        assert categories["PT"]["noissuescharge"] == 5.0
        assert categories["S"]["noissuescharge"] == 5.0
    assert categories["S"]["category_type"] == "S"
    itemtypes = {r["itemtype"]: r for r in rows(db, "SELECT * FROM itemtypes")}
    assert itemtypes["BK"]["notforloan"] == 0
    assert itemtypes["REF"]["notforloan"] == 1
    currency = rows(db, "SELECT currency, isocode, active FROM currency WHERE active = 1")
    assert currency == [{"currency": "NZD", "isocode": "NZD", "active": 1}]


def test_default_circulation_rules(db):
    found = {
        r["rule_name"]: r["rule_value"]
        for r in rows(
            db,
            "SELECT rule_name, rule_value FROM circulation_rules WHERE branchcode IS NULL "
            "AND categorycode IS NULL AND itemtype IS NULL",
        )
    }
    assert found == {
        "issuelength": "14",
        "renewalsallowed": "2",
        "renewalperiod": "14",
        "maxissueqty": "10",
        "fine": "0.25",
        "chargeperiod": "1",
        "reservesallowed": "50",
    }


@pytest.mark.parametrize(
    ("userid", "password", "cardnumber", "branch", "circulate"),
    [
        ("joe", "joes", "y76t5r43", "WEL", True),
        ("kilsc", "kilsc1", "23529000009001", "KIL", True),
        ("nocirc", "nocirc1", "23529000009002", "WEL", False),
    ],
)
def test_staff_accounts(db, userid, password, cardnumber, branch, circulate):
    row = one(db, "SELECT * FROM borrowers WHERE userid = ?", (userid,))
    assert (row["cardnumber"], row["branchcode"], row["categorycode"]) == (cardnumber, branch, "S")
    assert bool(row["flags"] & CIRCULATE) is circulate
    assert verify_password(password, row["password"])
    assert not verify_password(password + "x", row["password"])


def test_patrons_share_password_1234(db):
    found = rows(
        db,
        "SELECT cardnumber, firstname, surname, branchcode, password FROM borrowers "
        "WHERE cardnumber LIKE '2352900000000%' ORDER BY cardnumber",
    )
    assert [(r["cardnumber"], r["firstname"], r["surname"], r["branchcode"]) for r in found] == [
        (ADA, "Ada", "Lovelace", "WEL"),
        (GRACE, "Grace", "Hopper", "WEL"),
        (ALAN, "Alan", "Turing", "WEL"),
        (EDSGER, "Edsger", "Dijkstra", "WEL"),
    ]
    assert len({r["password"] for r in found}) == 1  # hashed once
    assert verify_password("1234", found[0]["password"])


def test_patron_states(db):
    expiry = {
        r["cardnumber"]: r["dateexpiry"]
        for r in rows(db, "SELECT cardnumber, dateexpiry FROM borrowers")
    }
    assert expiry[ALAN] == "2026-02-08"  # 30 days before NOW: expired
    assert expiry[ADA] > "2027-01-01"
    grace = one(
        db,
        "SELECT SUM(amountoutstanding) AS owed FROM accountlines a JOIN borrowers b "
        "ON b.borrowernumber = a.borrowernumber WHERE b.cardnumber = ?",
        (GRACE,),
    )
    assert grace["owed"] == 12.0
    edsger = one(db, "SELECT * FROM borrowers WHERE cardnumber = ?", (EDSGER,))
    assert edsger["debarred"] == "9999-12-31"
    debarments = rows(
        db,
        "SELECT type, expiration FROM borrower_debarments WHERE borrowernumber = ?",
        (edsger["borrowernumber"],),
    )
    assert debarments == [{"type": "MANUAL", "expiration": None}]


def test_items_have_titles_call_numbers_and_homes(db):
    found = rows(
        db,
        "SELECT i.barcode, i.homebranch, i.itype, i.itemcallnumber, b.title FROM items i "
        "JOIN biblio b ON b.biblionumber = i.biblionumber ORDER BY i.barcode",
    )
    assert [r["barcode"] for r in found] == [BARCODE[n] for n in range(1, 13)]
    for r in found:
        assert r["title"] and r["itemcallnumber"]
    homes = {r["barcode"]: r["homebranch"] for r in found}
    assert homes[BARCODE[9]] == "KIL"
    assert {homes[BARCODE[n]] for n in range(1, 13) if n != 9} == {"WEL"}
    assert {r["itype"] for r in found if r["barcode"] == BARCODE[11]} == {"REF"}


def test_loans(db):
    loans = rows(
        db,
        "SELECT it.barcode, b.cardnumber, i.date_due, i.issuedate, it.onloan FROM issues i "
        "JOIN items it ON it.itemnumber = i.itemnumber "
        "JOIN borrowers b ON b.borrowernumber = i.borrowernumber ORDER BY it.barcode",
    )
    assert [(r["barcode"], r["cardnumber"], r["date_due"], r["onloan"]) for r in loans] == [
        (BARCODE[6], ADA, "2026-03-24 23:59:00", "2026-03-24"),  # due in 14 days
        (BARCODE[7], ADA, "2026-02-28 23:59:00", "2026-02-28"),  # 10 days overdue
        (BARCODE[9], GRACE, "2026-03-20 23:59:00", "2026-03-20"),
    ]


def test_holds(db):
    holds = rows(
        db,
        "SELECT b.cardnumber, it.barcode, r.found, r.branchcode, r.waitingdate, "
        "r.expirationdate, r.priority, r.biblionumber FROM reserves r "
        "JOIN borrowers b ON b.borrowernumber = r.borrowernumber "
        "LEFT JOIN items it ON it.itemnumber = r.itemnumber ORDER BY r.reserve_id",
    )
    waiting, titled = holds
    assert (waiting["cardnumber"], waiting["barcode"], waiting["found"]) == (ADA, BARCODE[8], "W")
    assert (waiting["branchcode"], waiting["waitingdate"], waiting["expirationdate"]) == (
        "WEL",
        "2026-03-09",
        "2026-03-16",
    )
    assert (titled["cardnumber"], titled["barcode"], titled["found"]) == (GRACE, None, None)
    assert titled["branchcode"] == "WEL"
    twelve = one(db, "SELECT biblionumber FROM items WHERE barcode = ?", (BARCODE[12],))
    assert titled["biblionumber"] == twelve["biblionumber"]


def test_lost_and_not_for_loan(db):
    lost = one(db, "SELECT itemlost FROM items WHERE barcode = ?", (BARCODE[10],))
    assert lost["itemlost"] == 1
    reference = one(db, "SELECT notforloan FROM items WHERE barcode = ?", (BARCODE[11],))
    assert reference["notforloan"] == 1


def test_conflicts_are_reported_and_nothing_is_loaded_twice(db):
    found = db.run_blocking(demo.conflicts)
    assert found[:3] == ["branch WEL", "branch KIL", "staff patron joe"]
    assert len(found) == 2 + 3 + 4 + 12
    assert db.run_blocking(demo.is_loaded)


def test_conflicts_on_an_empty_schema(tmp_path):
    from koha_gateway.db import schema
    from koha_gateway.db.engine import Database

    database = Database.from_url(f"sqlite:///{tmp_path / 'empty.sqlite'}")
    try:
        database.run_blocking(schema.migrate)
        assert database.run_blocking(demo.conflicts) == []
        assert not database.run_blocking(demo.is_loaded)
        counts = database.run_blocking(demo.load, NOW)
        assert counts == {
            "branches": 2,
            "patrons": 4,
            "staff": 3,
            "items": 12,
            "loans": 3,
            "holds": 2,
            "fines": 3,
        }
    finally:
        database.close()


def test_rows_are_those_koha_requires(db):
    """Every title has its biblioitems row and creation date, every item its biblioitem and
    accession date, every charge its CREATE offset; no foreign key is broken."""
    items = rows(
        db,
        "SELECT i.barcode, i.dateaccessioned, b.datecreated, bi.biblionumber AS bi_biblio "
        "FROM items i JOIN biblio b ON b.biblionumber = i.biblionumber "
        "LEFT JOIN biblioitems bi ON bi.biblioitemnumber = i.biblioitemnumber",
    )
    assert len(items) == 12
    assert all(r["dateaccessioned"] and r["datecreated"] for r in items)
    linked = rows(
        db,
        "SELECT COUNT(*) AS n FROM items i JOIN biblioitems bi "
        "ON bi.biblioitemnumber = i.biblioitemnumber AND bi.biblionumber = i.biblionumber",
    )
    assert linked == [{"n": 12}]
    debits = rows(
        db,
        "SELECT a.amount, o.type, o.amount AS created FROM accountlines a "
        "LEFT JOIN account_offsets o ON o.debit_id = a.accountlines_id",
    )
    assert sorted((r["amount"], r["type"], r["created"]) for r in debits) == [
        (1.5, "CREATE", 1.5),
        (2.5, "CREATE", 2.5),
        (8.0, "CREATE", 8.0),
    ]
    assert rows(db, "SELECT type FROM borrower_debarments") == [{"type": "MANUAL"}]
    if db.engine.name == "sqlite":
        # PostgreSQL (and MariaDB) check foreign keys on every statement; SQLite can be asked.
        assert rows(db, "PRAGMA foreign_key_check") == []


def test_staff_have_permissions_and_patrons_none(db):
    flags = {r["userid"]: r["flags"] for r in rows(db, "SELECT userid, flags FROM borrowers")}
    assert flags["joe"] == CIRCULATE and flags["nocirc"] == 0
    # Koha's default for patrons: NULL, no permission at all.
    assert flags["ada"] is None
