"""The circulation writes on Koha's own schema (MariaDB loaded from ``kohastructure.sql``).

The ILS write steps -- AddIssue, AddRenewal, AddReturn (MarkIssueReturned), Koha::Account's
debits, credits and offsets, holds moved to ``old_reserves``, a librarian-style restriction,
lastseen, statistics, action_logs and the search-index queues -- run against a database made by
Koha's installer files with a few rows of a library's own (as a real Koha database holds them),
and every row they write is read back. The statements must be valid for Koha's column types,
NOT NULL columns and foreign keys, and independent of MariaDB's left-to-right evaluation of
``UPDATE ... SET``.
"""

from __future__ import annotations

from datetime import datetime

import pytest

from koha_gateway.db.engine import Database
from koha_gateway.ils import accounts, checkin, checkout, circulation, holds, patrons
from koha_gateway.ils.context import CircContext
from koha_gateway.ils.sysprefs import Sysprefs
from koha_gateway.ils.sysprefs import load as load_sysprefs

mariadb = pytest.importorskip("tests.support.mariadb")

NOW = datetime(2026, 3, 10, 14, 30, 0)
NOW_SQL = "2026-03-10 14:30:00"


def _seed(txn) -> dict:
    """What a library's Koha holds besides the installer's rows: a library, a category, an item
    type, the SIP staff user and two patrons, two records with an item each, the MANUAL
    restriction type (Koha's installer adds it), a fine rule."""
    txn.execute("INSERT INTO branches (branchcode, branchname) VALUES ('WEL', 'Wellington')")
    txn.execute(
        "INSERT INTO categories (categorycode, description, category_type) "
        "VALUES ('PT', 'Patron', 'A')"
    )
    txn.execute(
        "INSERT INTO itemtypes (itemtype, description, rentalcharge) VALUES ('BK', 'Book', 0)"
    )
    txn.execute(
        "INSERT INTO restriction_types (code, display_text, is_system, is_default) "
        "VALUES ('MANUAL', 'Manual', 1, 1)"
    )
    ids = {}
    for key, card, userid in (
        ("staff", "STAFF1", "joe"),
        ("ada", "ADA1", "ada"),
        ("grace", "GRACE1", "grace"),
    ):
        ids[key] = txn.insert(
            "INSERT INTO borrowers (cardnumber, userid, surname, branchcode, categorycode) "
            "VALUES (?, ?, ?, 'WEL', 'PT')",
            (card, userid, key.title()),
            pk="borrowernumber",
        )
    for n in (1, 2):
        biblio = txn.insert(
            "INSERT INTO biblio (frameworkcode, title, datecreated) VALUES ('', ?, '2026-01-01')",
            (f"Title {n}",),
            pk="biblionumber",
        )
        biblioitem = txn.insert(
            "INSERT INTO biblioitems (biblionumber, itemtype) VALUES (?, 'BK')",
            (biblio,),
            pk="biblioitemnumber",
        )
        ids[f"item{n}"] = txn.insert(
            "INSERT INTO items (biblionumber, biblioitemnumber, barcode, homebranch, "
            "holdingbranch, itype, location, ccode, itemlost, itemlost_on) "
            "VALUES (?, ?, ?, 'WEL', 'WEL', 'BK', 'GEN', 'FIC', ?, ?)",
            (
                biblio,
                biblioitem,
                f"BC{n}",
                1 if n == 2 else 0,
                "2026-02-01 10:00:00" if n == 2 else None,
            ),
            pk="itemnumber",
        )
        ids[f"biblio{n}"] = biblio
    for name, value in (("fine", "0.25"), ("chargeperiod", "1"), ("issuelength", "14")):
        txn.execute(
            "INSERT INTO circulation_rules (branchcode, categorycode, itemtype, rule_name, "
            "rule_value) VALUES ('WEL', 'PT', 'BK', ?, ?)",
            (name, value),
        )
    return ids


@pytest.fixture
def koha(request):
    server = mariadb.server_or_skip()
    url = server.create_database(template=mariadb.KOHA_TEMPLATE)
    database = Database.from_url(url, max_connections=2)
    ids = database.run_blocking(_seed)
    prefs = dict(database.run_blocking(load_sysprefs))
    prefs["finesMode"] = "production"
    yield database, ids, prefs
    database.close()
    server.drop_database(url.rsplit("/", 1)[1].split("?")[0])


def _context(ids, prefs, **changes) -> CircContext:
    values = dict(prefs, **changes)
    return CircContext(
        branch="WEL", now=NOW, sysprefs=Sysprefs(values), staff_borrowernumber=ids["staff"]
    )


def _rows(db, sql, params=()):
    return db.run_blocking(lambda txn: [dict(row) for row in txn.query(sql, params)])


def _item(txn, itemnumber):
    item = dict(txn.one("SELECT * FROM items WHERE itemnumber = ?", (itemnumber,)))
    item["title"], item["rentalcharge"] = "Title", 0.0
    return item


def _patron(txn, borrowernumber):
    return dict(txn.one("SELECT * FROM borrowers WHERE borrowernumber = ?", (borrowernumber,)))


def test_checkout_renewal_and_return_on_koha_s_schema(koha):
    db, ids, prefs = koha
    ctx = _context(ids, prefs, RenewalLog="1")

    def lend(txn):
        patron, item = _patron(txn, ids["ada"]), _item(txn, ids["item2"])
        issue_id = checkout._insert_issue(
            txn, ctx, patron=patron, item=item, due="2026-02-28 23:59:00"
        )
        loan = txn.one("SELECT * FROM issues WHERE issue_id = ?", (issue_id,))
        checkout._apply_renewal(
            txn, ctx, patron=patron, item=item, loan=dict(loan), due="2026-03-24 23:59:00"
        )
        return issue_id

    issue_id = db.run_blocking(lend)
    item = _rows(db, "SELECT * FROM items WHERE itemnumber = ?", (ids["item2"],))[0]
    # The lost item was found: itemlost_on cleared with itemlost (MariaDB evaluates SET left
    # to right; the statement must not depend on it).
    assert (item["itemlost"], item["itemlost_on"]) == (0, None)
    assert (item["issues"], item["renewals"]) == (1, 1)
    assert str(item["onloan"]) == "2026-03-24"
    assert str(item["datelastborrowed"]) == "2026-03-10"
    loan = _rows(db, "SELECT * FROM issues WHERE issue_id = ?", (issue_id,))[0]
    assert (loan["renewals_count"], loan["auto_renew"], str(loan["date_due"])) == (
        1,
        0,
        "2026-03-24 23:59:00",
    )
    # The renewal of an overdue loan charged the fine so far (10 days) and marked it RENEWED.
    fine = _rows(db, "SELECT * FROM accountlines WHERE debit_type_code = 'OVERDUE'")
    assert [(float(r["amount"]), r["status"], r["interface"]) for r in fine] == [
        (2.5, "RENEWED", "sip")
    ]

    def give_back(txn):
        return checkin.checkin(txn, ctx, item=_item(txn, ids["item2"]), return_date=NOW)

    outcome = db.run_blocking(give_back)
    assert outcome.returned
    assert _rows(db, "SELECT issue_id FROM issues") == []
    old = _rows(db, "SELECT * FROM old_issues")
    assert [(r["issue_id"], r["renewals_count"], str(r["returndate"])) for r in old] == [
        (issue_id, 1, NOW_SQL)
    ]
    stats = _rows(
        db,
        "SELECT type, branch, value, other, itemnumber, itemtype, location, borrowernumber, "
        "ccode, categorycode, interface FROM statistics ORDER BY type",
    )
    common = {
        "branch": "WEL",
        "value": 0.0,
        "other": "",
        "itemnumber": ids["item2"],
        "itemtype": "BK",
        "location": "GEN",
        "borrowernumber": ids["ada"],
        "ccode": "FIC",
        "categorycode": "PT",
        "interface": "sip",
    }
    for row in stats:
        row["value"] = float(row["value"])
    assert stats == [
        {"type": "issue", **common},
        {"type": "renew", **common},
        {"type": "return", **common},
    ]
    logs = _rows(
        db,
        "SELECT `user`, module, action, object, info, interface FROM action_logs "
        "ORDER BY action_id",
    )
    assert [(r["module"], r["action"]) for r in logs] == [
        ("CIRCULATION", "ISSUE"),
        ("FINES", "CREATE"),
        ("CIRCULATION", "RENEWAL"),
        ("CIRCULATION", "RETURN"),
    ]
    assert {r["user"] for r in logs} == {ids["staff"]} and {r["interface"] for r in logs} == {"sip"}
    queue = _rows(db, "SELECT biblio_auth_number, operation, server, done FROM zebraqueue")
    assert queue == [
        {
            "biblio_auth_number": ids["biblio2"],
            "operation": "specialUpdate",
            "server": "biblioserver",
            "done": 0,
        }
    ]


def test_payments_and_offsets_on_koha_s_schema(koha):
    db, ids, prefs = koha
    ctx = _context(ids, prefs)

    def charge_and_pay(txn):
        debit = accounts.add_debit(
            txn,
            ctx,
            borrowernumber=ids["grace"],
            amount=3.0,
            debit_type="RENT",
            user_id=ids["staff"],
            library_id="WEL",
            itemnumber=ids["item1"],
        )
        outcome = accounts.pay(
            txn,
            ctx,
            borrowernumber=ids["grace"],
            amount=5.0,
            sip_payment_type="00",
            writeoff=False,
            fee_id=None,
            disallow_overpayment=False,
        )
        return debit, outcome

    debit, outcome = db.run_blocking(charge_and_pay)
    assert outcome.ok and outcome.unspent == 2.0
    lines = _rows(
        db,
        "SELECT accountlines_id, amount, amountoutstanding, debit_type_code, credit_type_code, "
        "payment_type, manager_id, branchcode, interface, status FROM accountlines "
        "ORDER BY accountlines_id",
    )
    assert [
        (
            float(r["amount"]),
            float(r["amountoutstanding"]),
            r["debit_type_code"],
            r["credit_type_code"],
        )
        for r in lines
    ] == [(3.0, 0.0, "RENT", None), (-5.0, -2.0, None, "PAYMENT")]
    offsets = _rows(db, "SELECT credit_id, debit_id, type, amount FROM account_offsets ORDER BY id")
    assert [(r["credit_id"], r["debit_id"], r["type"], float(r["amount"])) for r in offsets] == [
        (None, debit, "CREATE", 3.0),
        (outcome.credit_id, None, "CREATE", 5.0),
        (outcome.credit_id, debit, "APPLY", -3.0),
    ]
    stats = _rows(db, "SELECT type, value, branch, borrowernumber FROM statistics")
    assert [(r["type"], float(r["value"]), r["branch"]) for r in stats] == [("payment", -5.0, None)]


def test_holds_restrictions_lastseen_and_elasticsearch_on_koha_s_schema(koha):
    db, ids, prefs = koha
    ctx = _context(
        ids, prefs, HoldsLog="1", SearchEngine="Elasticsearch", TrackLastPatronActivity="1"
    )

    def work(txn):
        patron = _patron(txn, ids["grace"])
        placed = holds.place_hold(
            txn,
            ctx,
            patron=patron,
            biblionumber=ids["biblio1"],
            item=None,
            item_level=False,
            pickup="WEL",
            expiration=None,
            rules_branch="WEL",
            itemtype=None,
        )
        holds.fill_hold(txn, ctx, placed.hold, _item(txn, ids["item1"]))
        patrons.add_sip_restriction(txn, ctx, ids["ada"], "Card kept")
        patrons.update_lastseen(txn, ctx, _patron(txn, ids["ada"]), "connection")
        circulation.index_biblio(txn, ctx, ids["biblio1"])
        circulation.index_biblio(txn, ctx, ids["biblio1"])
        return placed.hold["reserve_id"]

    reserve_id = db.run_blocking(work)
    assert _rows(db, "SELECT reserve_id FROM reserves") == []
    old = _rows(db, "SELECT reserve_id, found, priority, itemnumber FROM old_reserves")
    assert old == [
        {"reserve_id": reserve_id, "found": "F", "priority": 0, "itemnumber": ids["item1"]}
    ]
    logs = _rows(db, "SELECT module, action, object FROM action_logs ORDER BY action_id")
    assert logs == [
        {"module": "HOLDS", "action": "CREATE", "object": reserve_id},
        {"module": "HOLDS", "action": "FILL", "object": reserve_id},
    ]
    ada = _rows(
        db,
        "SELECT debarred, debarredcomment, lastseen FROM borrowers WHERE borrowernumber = ?",
        (ids["ada"],),
    )[0]
    assert (str(ada["debarred"]), ada["debarredcomment"], str(ada["lastseen"])) == (
        "9999-12-31",
        "Card kept",
        NOW_SQL,
    )
    restriction = _rows(db, "SELECT type, comment, manager_id, expiration FROM borrower_debarments")
    assert restriction == [
        {"type": "MANUAL", "comment": "Card kept", "manager_id": ids["staff"], "expiration": None}
    ]
    jobs = _rows(db, "SELECT type, queue, status, size FROM background_jobs")
    assert (
        jobs
        == [{"type": "update_elastic_index", "queue": "elastic_index", "status": "new", "size": 1}]
        * 2
    )
    assert len(_rows(db, "SELECT id FROM zebraqueue")) == 1
