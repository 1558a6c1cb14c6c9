"""The rows each circulation step writes, with the preferences that change them; every engine.

koha-circulation-writes.md: statistics (2.1), action_logs (2.2), the search-index queue (2.4),
account lines and offsets (2.6, 2.7), holds (2.11), restrictions (2.13), lastseen (2.14), and the
loan and item columns of AddIssue (3.1), AddRenewal (4.2) and AddReturn (5.3).
"""

from __future__ import annotations

import json

from koha_gateway.db.engine import IntegrityError
from koha_gateway.ils.rules import set_rule
from tests.ils.conftest import ADA, BARCODE, TS, call

BLANK = " " * 18
NOW_SQL = "2026-03-10 14:30:00"
TODAY = "2026-03-10"


def checkout(card, barcode):
    return f"11YN{TS}{BLANK}AOWEL|AA{card}|AB{barcode}|AC|"


def checkin(barcode, return_date=BLANK):
    return f"09N{TS}{return_date}APWEL|AOWEL|AB{barcode}|AC|"


def renew(card, barcode):
    return f"29NN{TS}{BLANK}AOWEL|AA{card}|AB{barcode}|"


def _query(db, sql, params=()):
    return db.run_blocking(lambda txn: [dict(row) for row in txn.query(sql, params)])


def _one(db, sql, params=()):
    rows = _query(db, sql, params)
    return rows[0] if rows else None


def _execute(db, sql, params=()):
    db.run_blocking(lambda txn: txn.execute(sql, params))


def _item(db, n):
    return _one(db, "SELECT * FROM items WHERE barcode = ?", (BARCODE[n],))


def _staff(db):
    return _one(db, "SELECT borrowernumber FROM borrowers WHERE userid = 'joe'")["borrowernumber"]


def _null_renewals(db, n):
    """``items.renewals`` NULL, as Koha's schema allows (older gateway schemas do not)."""
    try:
        _execute(db, "UPDATE items SET renewals = NULL WHERE barcode = ?", (BARCODE[n],))
    except IntegrityError:
        pass


def _fines(db, n):
    return _query(
        db,
        "SELECT * FROM accountlines WHERE debit_type_code = 'OVERDUE' AND itemnumber = ? "
        "ORDER BY accountlines_id",
        (_item(db, n)["itemnumber"],),
    )


def fining(ctx, **prefs):
    """A request context with finesMode ``production`` (Koha's default, and a Koha database's,
    is ``off``: no fines at all)."""
    return ctx(sysprefs={"finesMode": "production", **prefs})


def _logs(db, module=None):
    rows = _query(db, "SELECT * FROM action_logs ORDER BY action_id")
    return [row for row in rows if module is None or row["module"] == module]


# --- checkout ------------------------------------------------------------------------------


def test_checkout_writes_the_loan_and_the_item_as_add_issue(db, ctx):
    db.run_blocking(lambda txn: set_rule(txn, "auto_renew", "1"))
    _null_renewals(db, 1)
    assert call(db, ctx(), checkout(ADA, BARCODE[1])).startswith("121")
    item = _item(db, 1)
    loan = _one(db, "SELECT * FROM issues WHERE itemnumber = ?", (item["itemnumber"],))
    assert int(loan["auto_renew"]) == 1
    assert loan["issuer_id"] is None  # RecordStaffUserOnCheckout is off by default
    assert loan["branchcode"] == "WEL" and str(loan["issuedate"])[:19] == NOW_SQL
    assert str(item["onloan"])[:10] == str(loan["date_due"])[:10]
    assert str(item["datelastborrowed"])[:10] == TODAY
    assert str(item["datelastseen"])[:19] == NOW_SQL
    assert item["issues"] == 1 and not item["renewals"]  # AddIssue leaves renewals alone
    ada = _one(
        db, "SELECT borrowernumber, categorycode FROM borrowers WHERE cardnumber = ?", (ADA,)
    )
    stats = _query(db, "SELECT * FROM statistics")
    assert len(stats) == 1
    row = stats[0]
    assert (row["type"], row["branch"], row["other"], row["interface"]) == (
        "issue",
        "WEL",
        "",
        "sip",
    )
    assert (row["itemnumber"], row["itemtype"], row["location"], row["ccode"]) == (
        item["itemnumber"],
        "BK",
        "GEN",
        None,
    )
    assert (row["borrowernumber"], row["categorycode"]) == (
        ada["borrowernumber"],
        ada["categorycode"],
    )
    issue_log = _logs(db, "CIRCULATION")
    assert [(r["action"], r["object"], r["info"], r["user"]) for r in issue_log] == [
        ("ISSUE", ada["borrowernumber"], str(item["itemnumber"]), _staff(db))
    ]
    zebra = _query(db, "SELECT biblio_auth_number, operation, server, done FROM zebraqueue")
    assert zebra == [
        {
            "biblio_auth_number": item["biblionumber"],
            "operation": "specialUpdate",
            "server": "biblioserver",
            "done": 0,
        }
    ]


def test_forced_checkout_of_a_lost_item_clears_itemlost_on(db, ctx):
    """Koha's Koha::Item->store: itemlost_on becomes NULL when itemlost changes to 0 (on
    MariaDB a SET list is evaluated left to right: the statement must not depend on it). A
    kiosk lends a lost item only as a no-block (offline) checkout."""
    _execute(
        db,
        "UPDATE items SET itemlost = 1, itemlost_on = '2026-02-01 10:00:00' WHERE barcode = ?",
        (BARCODE[1],),
    )
    raw = f"11YY{TS}20260324    235900AOWEL|AA{ADA}|AB{BARCODE[1]}|AC|"
    assert call(db, ctx(), raw).startswith("121")
    item = _item(db, 1)
    assert (item["itemlost"], item["itemlost_on"]) == (0, None)
    assert str(item["onloan"])[:10] == "2026-03-24"


def test_items_not_lost_keep_itemlost_on(db, ctx):
    """Only a change of itemlost to 0 clears itemlost_on."""
    _execute(
        db,
        "UPDATE items SET itemlost_on = '2026-02-01 10:00:00' WHERE barcode = ?",
        (BARCODE[1],),
    )
    assert call(db, ctx(), checkout(ADA, BARCODE[1])).startswith("121")
    assert str(_item(db, 1)["itemlost_on"])[:19] == "2026-02-01 10:00:00"


def test_record_staff_user_on_checkout_and_no_issue_log(db, ctx):
    context = ctx(sysprefs={"RecordStaffUserOnCheckout": "1", "IssueLog": "0"})
    assert call(db, context, checkout(ADA, BARCODE[1])).startswith("121")
    loan = _one(db, "SELECT issuer_id FROM issues ORDER BY issue_id DESC")
    assert loan["issuer_id"] == _staff(db)
    assert _logs(db) == []


def test_elasticsearch_queues_a_background_job_and_zebra_too(db, ctx):
    context = ctx(sysprefs={"SearchEngine": "Elasticsearch"})
    assert call(db, context, checkout(ADA, BARCODE[1])).startswith("121")
    assert call(db, context, checkin(BARCODE[1])).startswith("101")
    biblio = _item(db, 1)["biblionumber"]
    jobs = _query(db, "SELECT * FROM background_jobs ORDER BY id")
    assert len(jobs) == 2  # one per index request: Koha does not de-duplicate jobs
    for job in jobs:
        assert (job["status"], job["type"], job["queue"], job["size"]) == (
            "new",
            "update_elastic_index",
            "elastic_index",
            1,
        )
        assert json.loads(job["data"]) == {"record_server": "biblioserver", "record_ids": [biblio]}
        assert json.loads(job["context"])["interface"] == "sip"
        assert job["borrowernumber"] == _staff(db)
        assert str(job["enqueued_on"])[:19] == NOW_SQL
    # ... and the Zebra queue still gets its single pending row.
    assert len(_query(db, "SELECT id FROM zebraqueue")) == 1


# --- renewal -------------------------------------------------------------------------------


def test_renewal_counts_on_the_item_even_from_null(db, ctx):
    _null_renewals(db, 6)
    before = _item(db, 6)
    assert call(db, ctx(), renew(ADA, BARCODE[6])).startswith("301")
    item = _item(db, 6)
    assert item["renewals"] == 1
    assert item["datelastseen"] == before["datelastseen"]  # AddRenewal does not touch it
    loan = _one(db, "SELECT * FROM issues WHERE itemnumber = ?", (item["itemnumber"],))
    assert str(item["onloan"])[:10] == str(loan["date_due"])[:10]
    assert _logs(db, "CIRCULATION") == []  # RenewalLog is off by default
    assert [row["type"] for row in _query(db, "SELECT type FROM statistics")] == ["renew"]


def test_renewal_log_when_asked(db, ctx):
    context = ctx(sysprefs={"RenewalLog": "1"})
    assert call(db, context, renew(ADA, BARCODE[6])).startswith("301")
    item = _item(db, 6)
    logs = _logs(db, "CIRCULATION")
    assert [(r["action"], r["info"]) for r in logs] == [("RENEWAL", str(item["itemnumber"]))]


def test_renewing_an_overdue_loan_charges_the_fine_so_far_as_renewed(db, ctx):
    """AddRenewal with CalculateFinesOnReturn: the fine up to now, then _FixOverduesOnReturn
    marks it RENEWED (Ada's item 07 is ten days late at 0.25 a day)."""
    assert call(db, fining(ctx), renew(ADA, BARCODE[7])).startswith("301")
    (fine,) = _fines(db, 7)
    assert (fine["amount"], fine["amountoutstanding"], fine["status"]) == (2.5, 2.5, "RENEWED")
    assert (fine["manager_id"], fine["branchcode"], fine["interface"]) == (None, None, "sip")
    offsets = _query(
        db,
        "SELECT type, amount, credit_id FROM account_offsets WHERE debit_id = ?",
        (fine["accountlines_id"],),
    )
    assert offsets == [{"type": "CREATE", "amount": 2.5, "credit_id": None}]


# --- checkin -------------------------------------------------------------------------------


def test_return_of_an_item_not_on_loan_still_writes_a_statistic(db, ctx):
    """AddReturn's NotIssued path: a ``return`` row without patron, item seen here."""
    assert call(db, ctx(), checkin(BARCODE[1])).startswith("100")
    item = _item(db, 1)
    stats = _query(
        db, "SELECT type, branch, itemnumber, borrowernumber, categorycode FROM statistics"
    )
    assert stats == [
        {
            "type": "return",
            "branch": "WEL",
            "itemnumber": item["itemnumber"],
            "borrowernumber": None,
            "categorycode": None,
        }
    ]
    assert str(item["datelastseen"])[:19] == NOW_SQL
    assert _logs(db) == []  # ReturnLog needs a patron


def test_record_local_use_on_return(db, ctx):
    context = ctx(sysprefs={"RecordLocalUseOnReturn": "1"})
    call(db, context, checkin(BARCODE[1]))
    assert [row["type"] for row in _query(db, "SELECT type FROM statistics")] == ["localuse"]


def test_return_of_a_lost_loan_clears_itemlost_on_and_charges_no_fine(db, ctx):
    _execute(
        db,
        "UPDATE items SET itemlost = 2, itemlost_on = '2026-03-01 09:00:00' WHERE barcode = ?",
        (BARCODE[7],),
    )
    assert call(db, fining(ctx), checkin(BARCODE[7], TS)).startswith("101")
    item = _item(db, 7)
    assert (item["itemlost"], item["itemlost_on"], item["onloan"]) == (0, None, None)
    assert _fines(db, 7) == []


def test_return_updates_an_accruing_fine_and_marks_it_returned(db, ctx):
    """A fine Koha's fines job left UNRETURNED is adjusted (OVERDUE_INCREASE offset), not
    charged twice, then RETURNED."""
    loan = _one(
        db,
        "SELECT i.* FROM issues i JOIN items it ON it.itemnumber = i.itemnumber "
        "WHERE it.barcode = ?",
        (BARCODE[7],),
    )

    def accrue(txn):
        line = txn.insert(
            "INSERT INTO accountlines (borrowernumber, itemnumber, issue_id, date, amount, "
            "amountoutstanding, description, debit_type_code, status, interface) "
            "VALUES (?, ?, ?, '2026-03-09 00:00:00', 2.0, 2.0, '', 'OVERDUE', 'UNRETURNED', "
            "'cron')",
            (loan["borrowernumber"], loan["itemnumber"], loan["issue_id"]),
            pk="accountlines_id",
        )
        txn.execute(
            "INSERT INTO account_offsets (debit_id, type, amount, created_on) "
            "VALUES (?, 'CREATE', 2.0, '2026-03-09 00:00:00')",
            (line,),
        )
        return line

    line = db.run_blocking(accrue)
    assert call(db, fining(ctx), checkin(BARCODE[7], TS)).startswith("101")
    fines = _fines(db, 7)
    assert len(fines) == 1
    assert (fines[0]["amount"], fines[0]["amountoutstanding"], fines[0]["status"]) == (
        2.5,
        2.5,
        "RETURNED",
    )
    offsets = _query(
        db, "SELECT type, amount FROM account_offsets WHERE debit_id = ? ORDER BY id", (line,)
    )
    assert offsets == [
        {"type": "CREATE", "amount": 2.0},
        {"type": "OVERDUE_INCREASE", "amount": 0.5},
    ]
    assert [(r["action"]) for r in _logs(db, "FINES")] == ["UPDATE"]


def test_fines_log_off_writes_no_fines_rows(db, ctx):
    context = fining(ctx, FinesLog="0")
    assert call(db, context, checkin(BARCODE[7], TS)).startswith("101")
    assert _logs(db, "FINES") == []
    assert [r["action"] for r in _logs(db, "CIRCULATION")] == ["RETURN"]


# --- holds -----------------------------------------------------------------------------------


def test_holds_log_and_old_reserves_keep_the_reserve_id(db, ctx):
    context = ctx(sysprefs={"HoldsLog": "1"})
    placed = call(db, context, f"15+{TS}AOWEL|AA{ADA}|AB{BARCODE[3]}|BSWEL|")
    assert placed.startswith("161")
    hold = _one(
        db,
        "SELECT reserve_id FROM reserves WHERE biblionumber = ?",
        (_item(db, 3)["biblionumber"],),
    )
    assert call(db, context, f"15-{TS}AOWEL|AA{ADA}|AB{BARCODE[3]}|").startswith("161")
    old = _one(db, "SELECT * FROM old_reserves WHERE reserve_id = ?", (hold["reserve_id"],))
    assert str(old["cancellationdate"])[:10] == TODAY and old["priority"] == 0
    assert old["cancellation_reason"] is None
    logs = _logs(db, "HOLDS")
    assert [(r["action"], r["object"]) for r in logs] == [
        ("CREATE", hold["reserve_id"]),
        ("CANCEL", hold["reserve_id"]),
    ]
    assert logs[0]["info"].startswith("$VAR1 = {")


# --- patron --------------------------------------------------------------------------------


def test_lastseen_on_patron_information_with_triggers(db, ctx):
    context = ctx(sysprefs={"TrackLastPatronActivityTriggers": "connection"})
    call(db, context, f"63001{TS}          AOWEL|AA{ADA}|")
    seen = _one(db, "SELECT lastseen FROM borrowers WHERE cardnumber = ?", (ADA,))
    assert str(seen["lastseen"])[:19] == NOW_SQL


def test_lastseen_on_checkout_with_triggers(db, ctx):
    context = ctx(sysprefs={"TrackLastPatronActivityTriggers": "check_out"})
    call(db, context, checkout(ADA, BARCODE[1]))
    seen = _one(db, "SELECT lastseen FROM borrowers WHERE cardnumber = ?", (ADA,))
    assert str(seen["lastseen"])[:19] == NOW_SQL


def test_a_statistics_patron_records_a_local_use(db, ctx):
    """CanBookBeIssued for a category of type X: a localuse statistic, the item seen, no loan."""

    def setup(txn):
        txn.execute(
            "INSERT INTO categories (categorycode, description, category_type) "
            "VALUES ('STATS', 'Statistics', 'X')"
        )
        txn.execute("UPDATE borrowers SET categorycode = 'STATS' WHERE cardnumber = ?", (ADA,))

    db.run_blocking(setup)
    answer = call(db, ctx(), checkout(ADA, BARCODE[1]))
    assert answer.startswith("120") and "AFIssue failed : STATS|" in answer
    item = _item(db, 1)
    assert item["onloan"] is None and str(item["datelastseen"])[:19] == NOW_SQL
    stats = _query(db, "SELECT type, branch, itemnumber, categorycode, value FROM statistics")
    assert stats == [
        {
            "type": "localuse",
            "branch": "WEL",
            "itemnumber": item["itemnumber"],
            "categorycode": "STATS",
            "value": 0.0,
        }
    ]
    assert (
        _query(db, "SELECT issue_id FROM issues WHERE itemnumber = ?", (item["itemnumber"],)) == []
    )


def test_fines_mode_off_charges_nothing(db, ctx):
    """Koha's default finesMode "off": a late return writes no account line."""
    context = ctx(sysprefs={"finesMode": "off"})
    assert call(db, context, checkin(BARCODE[7], TS)).startswith("101")
    assert _fines(db, 7) == []
    assert [r["action"] for r in _logs(db)] == ["RETURN"]
