"""Rows Koha writes only when a system preference asks for them; every engine.

StoreLastBorrower (``items_last_borrower``, MarkIssueReturned) and RealTimeHoldsQueue (an
``update_holds_queue_for_biblios`` background job from AddIssue, AddReturn, AddRenewal,
AddReserve, ``Koha::Hold->fill`` and ``->cancel``). Both are off by Koha's default (and in the
demo data): then nothing is written. ``items_last_borrower`` is a Koha table the gateway's own
databases lack (no migration creates it): on SQLite and PostgreSQL the tests create it as
Koha's schema has it; on MariaDB it is Koha's own.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from tests.ils.conftest import ADA, BARCODE, GRACE, NOW, TS, call

BLANK = " " * 18
NOW_SQL = "2026-03-10 14:30:00"
LATER_SQL = "2026-03-10 15:30:00"


def checkout(card, barcode):
    return f"11YN{TS}{BLANK}AOWEL|AA{card}|AB{barcode}|AC|"


def checkin(barcode):
    return f"09N{TS}{BLANK}APWEL|AOWEL|AB{barcode}|AC|"


def renew(card, barcode):
    return f"29NN{TS}{BLANK}AOWEL|AA{card}|AB{barcode}|"


def _query(db, sql, params=()):
    return db.run_blocking(lambda txn: [dict(row) for row in txn.query(sql, params)])


def _item(db, n):
    return _query(db, "SELECT * FROM items WHERE barcode = ?", (BARCODE[n],))[0]


def _borrower(db, card):
    rows = _query(db, "SELECT borrowernumber FROM borrowers WHERE cardnumber = ?", (card,))
    return rows[0]["borrowernumber"]


def _staff(db):
    return _query(db, "SELECT borrowernumber FROM borrowers WHERE userid = 'joe'")[0][
        "borrowernumber"
    ]


def _last_borrower_table(db):
    """Koha's ``items_last_borrower`` (UNIQUE ``itemnumber``) where the database lacks it."""

    def create(txn):
        if txn.engine.name != "mysql":
            txn.execute(
                txn.engine.ddl(
                    "CREATE TABLE items_last_borrower (id {pk}, itemnumber INTEGER NOT NULL "
                    "UNIQUE, borrowernumber INTEGER NOT NULL, created_on {datetime} NOT NULL)"
                )
            )

    db.run_blocking(create)


def _last_borrowers(db):
    rows = _query(db, "SELECT * FROM items_last_borrower ORDER BY id")
    return [
        (r["id"], r["itemnumber"], r["borrowernumber"], str(r["created_on"])[:19]) for r in rows
    ]


# --- StoreLastBorrower ---------------------------------------------------------------------


def test_store_last_borrower_off_writes_nothing(db, ctx):
    _last_borrower_table(db)
    assert call(db, ctx(), checkout(ADA, BARCODE[1])).startswith("121")
    assert call(db, ctx(), checkin(BARCODE[1])).startswith("101")
    assert _last_borrowers(db) == []


def test_store_last_borrower_keeps_one_row_per_item(db, ctx):
    _last_borrower_table(db)
    on = {"StoreLastBorrower": "1"}
    item = _item(db, 1)["itemnumber"]
    ada, grace = _borrower(db, ADA), _borrower(db, GRACE)
    # A checkout writes nothing: Koha records the borrower when the loan is returned.
    assert call(db, ctx(sysprefs=on), checkout(ADA, BARCODE[1])).startswith("121")
    assert _last_borrowers(db) == []
    assert call(db, ctx(sysprefs=on), checkin(BARCODE[1])).startswith("101")
    [(row_id, itemnumber, borrower, created)] = _last_borrowers(db)
    assert (itemnumber, borrower, created) == (item, ada, NOW_SQL)
    # The same patron again, an hour later: the row is left as it was (no column changes).
    later = ctx(sysprefs=on, now=NOW + timedelta(hours=1))
    assert call(db, later, checkout(ADA, BARCODE[1])).startswith("121")
    assert call(db, later, checkin(BARCODE[1])).startswith("101")
    assert _last_borrowers(db) == [(row_id, item, ada, NOW_SQL)]
    # Another patron (Grace, her fines settled): the same row gets the new borrower and a new
    # created_on.
    db.run_blocking(
        lambda txn: txn.execute(
            "UPDATE accountlines SET amountoutstanding = 0 WHERE borrowernumber = ?", (grace,)
        )
    )
    assert call(db, later, checkout(GRACE, BARCODE[1])).startswith("121")
    assert call(db, later, checkin(BARCODE[1])).startswith("101")
    assert _last_borrowers(db) == [(row_id, item, grace, LATER_SQL)]


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])  # every Koha database has it
def test_store_last_borrower_without_the_table_writes_nothing(db, ctx, engine):
    on = {"StoreLastBorrower": "1"}
    assert call(db, ctx(sysprefs=on), checkout(ADA, BARCODE[1])).startswith("121")
    assert call(db, ctx(sysprefs=on), checkin(BARCODE[1])).startswith("101")
    assert _query(db, "SELECT COUNT(*) AS n FROM old_issues")[0]["n"] >= 1


# --- RealTimeHoldsQueue --------------------------------------------------------------------


def _holds_jobs(db):
    return _query(
        db,
        "SELECT * FROM background_jobs WHERE type = 'update_holds_queue_for_biblios' ORDER BY id",
    )


def _assert_jobs(db, biblios):
    jobs = _holds_jobs(db)
    assert [json.loads(job["data"]) for job in jobs] == [{"biblio_ids": [b]} for b in biblios]
    for job in jobs:
        assert (job["status"], job["queue"], job["size"], job["progress"]) == (
            "new",
            "default",
            1,
            None,
        )
        assert job["borrowernumber"] == _staff(db)
        assert json.loads(job["context"]) == {
            "number": _staff(db),
            "branch": "WEL",
            "interface": "sip",
        }
        assert str(job["enqueued_on"])[:19] == NOW_SQL
        assert job["started_on"] is None and job["ended_on"] is None


def test_real_time_holds_queue_off_queues_nothing(db, ctx):
    context = ctx()
    assert call(db, context, checkout(ADA, BARCODE[1])).startswith("121")
    assert call(db, context, renew(ADA, BARCODE[1])).startswith("301")
    assert call(db, context, checkin(BARCODE[1])).startswith("101")
    assert call(db, context, f"15+{TS}AOWEL|AA{ADA}|AB{BARCODE[3]}|BSWEL|").startswith("161")
    assert call(db, context, f"15-{TS}AOWEL|AA{ADA}|AB{BARCODE[3]}|").startswith("161")
    assert _query(db, "SELECT * FROM background_jobs") == []


def test_real_time_holds_queue_on_checkout_renewal_and_return(db, ctx):
    context = ctx(sysprefs={"RealTimeHoldsQueue": "1"})
    biblio = _item(db, 1)["biblionumber"]
    assert call(db, context, checkout(ADA, BARCODE[1])).startswith("121")
    _assert_jobs(db, [biblio])  # the end of AddIssue
    assert call(db, context, renew(ADA, BARCODE[1])).startswith("301")
    _assert_jobs(db, [biblio] * 2)  # AddRenewal's item store
    assert call(db, context, checkin(BARCODE[1])).startswith("101")
    _assert_jobs(db, [biblio] * 3)  # AddReturn, a loan returned
    # A return of an item not on loan queues nothing (AddReturn: no checkout returned).
    assert call(db, context, checkin(BARCODE[1])).startswith("100")
    _assert_jobs(db, [biblio] * 3)


def test_real_time_holds_queue_on_holds_placed_filled_and_cancelled(db, ctx):
    context = ctx(sysprefs={"RealTimeHoldsQueue": "1"})
    biblio = _item(db, 3)["biblionumber"]
    assert call(db, context, f"15+{TS}AOWEL|AA{ADA}|AB{BARCODE[3]}|BSWEL|").startswith("161")
    _assert_jobs(db, [biblio])  # AddReserve
    assert call(db, context, f"15-{TS}AOWEL|AA{ADA}|AB{BARCODE[3]}|").startswith("161")
    _assert_jobs(db, [biblio] * 2)  # Koha::Hold->cancel
    assert call(db, context, f"15+{TS}AOWEL|AA{ADA}|AB{BARCODE[3]}|BSWEL|").startswith("161")
    assert call(db, context, checkout(ADA, BARCODE[3])).startswith("121")
    assert _query(db, "SELECT * FROM reserves WHERE biblionumber = ?", (biblio,)) == []
    # The checkout filled the hold: Koha::Hold->fill's job, then AddIssue's.
    _assert_jobs(db, [biblio] * 5)


def test_real_time_holds_queue_follows_the_elasticsearch_job_of_a_checkout(db, ctx):
    context = ctx(sysprefs={"RealTimeHoldsQueue": "1", "SearchEngine": "Elasticsearch"})
    assert call(db, context, checkout(ADA, BARCODE[1])).startswith("121")
    jobs = _query(db, "SELECT type FROM background_jobs ORDER BY id")
    assert [job["type"] for job in jobs] == [
        "update_elastic_index",
        "update_holds_queue_for_biblios",
    ]


# --- CataloguingLog ------------------------------------------------------------------------


def _lose(db, n):
    db.run_blocking(
        lambda txn: txn.execute(
            "UPDATE items SET itemlost = 2, itemlost_on = '2026-03-01 09:00:00' WHERE barcode = ?",
            (BARCODE[n],),
        )
    )


def _logs(db, module):
    return _query(db, "SELECT * FROM action_logs WHERE module = ? ORDER BY action_id", (module,))


def test_cataloguing_log_when_a_lost_item_is_returned(db, ctx):
    """ModDateLastSeen stores a found item with log_action: CATALOGUING MODIFY, the item's row
    as stored after the return, before the return's CIRCULATION row."""
    _lose(db, 7)
    assert call(db, ctx(), checkin(BARCODE[7])).startswith("101")
    item = _item(db, 7)
    [log] = _logs(db, "CATALOGUING")
    assert (log["action"], log["object"], log["interface"], log["user"]) == (
        "MODIFY",
        item["itemnumber"],
        "sip",
        _staff(db),
    )
    assert log["info"].startswith("item $VAR1 = {\n")
    lines = log["info"].splitlines()
    assert f"          'itemnumber' => {item['itemnumber']}," in lines
    assert "          'itemlost' => 0," in lines
    assert "          'itemlost_on' => undef," in lines
    assert "          'onloan' => undef," in lines
    assert f"          'datelastseen' => '{NOW_SQL}'," in lines
    keys = [line.split("'")[1] for line in lines[1:-1]]
    assert keys == sorted(keys) and set(keys) == set(item)
    circulation = _logs(db, "CIRCULATION")
    assert [r["action"] for r in circulation] == ["RETURN"]
    assert circulation[0]["action_id"] > log["action_id"]


def test_no_cataloguing_log_for_items_not_lost_or_with_the_preference_off(db, ctx):
    assert call(db, ctx(), checkout(ADA, BARCODE[1])).startswith("121")
    assert call(db, ctx(), renew(ADA, BARCODE[1])).startswith("301")
    assert call(db, ctx(), checkin(BARCODE[1])).startswith("101")
    _lose(db, 7)
    assert call(db, ctx(sysprefs={"CataloguingLog": "0"}), checkin(BARCODE[7])).startswith("101")
    assert _logs(db, "CATALOGUING") == []


def test_cataloguing_log_when_a_statistics_patron_finds_a_lost_item(db, ctx):
    def setup(txn):
        txn.execute(
            "INSERT INTO categories (categorycode, description, category_type) "
            "VALUES ('STATS', 'Statistics', 'X')"
        )
        txn.execute("UPDATE borrowers SET categorycode = 'STATS' WHERE cardnumber = ?", (ADA,))

    db.run_blocking(setup)
    _lose(db, 1)
    assert call(db, ctx(), checkout(ADA, BARCODE[1])).startswith("120")
    [log] = _logs(db, "CATALOGUING")
    assert (log["action"], log["object"]) == ("MODIFY", _item(db, 1)["itemnumber"])
    assert "          'itemlost' => 0," in log["info"].splitlines()


def test_real_time_holds_queue_when_a_no_block_checkout_reverts_a_waiting_hold(db, ctx):
    """ProcessOfflineIssue: the hold waiting for someone else goes back to the queue
    (RevertWaitingStatus queues a job), then AddIssue's."""
    context = ctx(sysprefs={"RealTimeHoldsQueue": "1"})
    biblio = _item(db, 8)["biblionumber"]
    answer = call(db, context, f"11YY{TS}20260320    120000AOWEL|AAy76t5r43|AB{BARCODE[8]}|AC|")
    assert answer.startswith("121")
    assert _query(db, "SELECT found FROM reserves WHERE biblionumber = ?", (biblio,)) == [
        {"found": None}
    ]
    _assert_jobs(db, [biblio] * 2)
