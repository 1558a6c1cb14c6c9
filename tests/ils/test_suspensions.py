"""Suspensions on a late return (Koha's ``_debar_user_on_return``, koha_gateway.ils.suspensions)
and the ``MaxFine`` cap of overdue fines (Koha's ``UpdateFine``), on every engine.

As in test_fines: Ada checks book 01 out at the pinned instant (due Tuesday 24 March 2026,
23:59; 18:30 the same day for a 4-hour loan) and returns it later; the demo's rule is 0.25 a
day and has no ``finedays``.
"""

from __future__ import annotations

from datetime import date

import pytest

from koha_gateway.ils.suspensions import debarment_flags
from tests.ils.conftest import ADA, BARCODE, TS, call
from tests.ils.test_datedue import _checkout
from tests.ils.test_fines import _at, _charged, _closed, _return, _rules

BLANK = " " * 18


def _ada(db) -> dict:
    return db.run_blocking(
        lambda txn: dict(
            txn.one(
                "SELECT borrowernumber, debarred, debarredcomment FROM borrowers "
                "WHERE cardnumber = ?",
                (ADA,),
            )
        )
    )


def _restrictions(db) -> list[dict]:
    number = _ada(db)["borrowernumber"]
    return db.run_blocking(
        lambda txn: [
            {
                "id": row["borrower_debarment_id"],
                "type": row["type"],
                "expiration": None if row["expiration"] is None else str(row["expiration"])[:10],
                "comment": row["comment"],
                "manager_id": row["manager_id"],
                "created": None if row["created"] is None else str(row["created"])[:19],
                "updated": None if row["updated"] is None else str(row["updated"])[:19],
            }
            for row in txn.query(
                "SELECT * FROM borrower_debarments WHERE borrowernumber = ? "
                "ORDER BY borrower_debarment_id",
                (number,),
            )
        ]
    )


def _staff(db) -> int:
    return db.run_blocking(
        lambda txn: txn.scalar("SELECT borrowernumber FROM borrowers WHERE userid = 'joe'")
    )


def _debarred(db) -> tuple[str | None, str | None]:
    row = _ada(db)
    until = None if row["debarred"] is None else str(row["debarred"])[:10]
    return until, row["debarredcomment"]


def _suspend_ada(db, expiration: str) -> int:
    """An existing SUSPENSION of Ada (from an earlier late return), flags in step."""
    number = _ada(db)["borrowernumber"]

    def work(txn):
        new_id = txn.insert(
            "INSERT INTO borrower_debarments (borrowernumber, expiration, type, comment, "
            "manager_id, created, updated) VALUES (?, ?, 'SUSPENSION', NULL, NULL, "
            "'2026-03-01 09:00:00', NULL)",
            (number, expiration),
            pk="borrower_debarment_id",
        )
        txn.execute(
            "UPDATE borrowers SET debarred = ? WHERE borrowernumber = ?", (expiration, number)
        )
        return new_id

    return db.run_blocking(work)


# --- suspensions ---------------------------------------------------------------------------


def test_late_return_with_finedays_suspends_the_patron(db, ctx):
    _rules(db, finedays="2")
    _checkout(db, ctx())
    outcome = _return(db, ctx(), _at(28, 10))  # 4 days late: 8 days from the 28th
    assert outcome.suspended_until == "2026-04-05"
    assert _restrictions(db) == [
        {
            "id": _restrictions(db)[0]["id"],
            "type": "SUSPENSION",
            "expiration": "2026-04-05",
            "comment": None,
            "manager_id": _staff(db),
            "created": "2026-03-28 10:00:00",
            "updated": None,
        }
    ]
    assert _debarred(db) == ("2026-04-05", None)
    assert _charged(db) == [(1.0, "RETURNED")]  # the fine as before


@pytest.mark.parametrize(
    ("rules", "until"),
    [
        ({"firstremind": "1"}, "2026-04-03"),  # (4 - 1 grace) x 2
        ({"maxsuspensiondays": "5"}, "2026-04-02"),
        ({"maxsuspensiondays": ""}, "2026-04-05"),  # empty: no cap
        ({"suspension_chargeperiod": "3"}, "2026-03-30"),  # floor(8 / 3)
        ({"suspension_chargeperiod": "1"}, "2026-04-05"),
        ({"finedays": "1", "maxsuspensiondays": "0"}, "2026-03-28"),  # capped to nothing
    ],
)
def test_suspension_rules(db, ctx, rules, until):
    _rules(db, **{"finedays": "2", **rules})
    _checkout(db, ctx())
    assert _return(db, ctx(), _at(28, 10)).suspended_until == until
    assert [row["expiration"] for row in _restrictions(db)] == [until]


def test_suspension_capped_to_the_return_day_is_not_in_force(db, ctx):
    """maxsuspensiondays 0: the row expires on the return day, so the flags stay clear."""
    _rules(db, finedays="2", maxsuspensiondays="0")
    _checkout(db, ctx())
    _return(db, ctx(), _at(28, 10))
    assert _debarred(db) == (None, None)


@pytest.mark.parametrize(
    ("prefs", "until"),
    [
        ({}, "2026-04-06"),  # noSuspensionsWhenClosed (Koha's default): open days only
        ({"SuspensionsCalendar": "ignoreCalendar"}, "2026-04-05"),
    ],
)
def test_suspension_calendar(db, ctx, prefs, until):
    _rules(db, finedays="2")
    _checkout(db, ctx())
    _closed(db, date(2026, 3, 30))  # closed during the suspension
    assert _return(db, ctx(sysprefs=prefs), _at(28, 10)).suspended_until == until


def test_closed_days_while_late_do_not_count(db, ctx):
    _rules(db, finedays="2")
    _checkout(db, ctx())
    _closed(db, date(2026, 3, 26))  # 3 open days late: 6 days
    context = ctx(sysprefs={"SuspensionsCalendar": "ignoreCalendar"})
    assert _return(db, context, _at(28, 10)).suspended_until == "2026-04-03"


@pytest.mark.parametrize(
    ("cumulative", "until"),
    [
        ("1", "2026-04-18"),  # 8 days from the current expiration
        ("0", "2026-04-10"),  # the later of the two dates is kept
    ],
)
def test_cumulative_restriction_periods(db, ctx, cumulative, until):
    _rules(db, finedays="2")
    _checkout(db, ctx())
    existing = _suspend_ada(db, "2026-04-10")
    context = ctx(sysprefs={"CumulativeRestrictionPeriods": cumulative})
    outcome = _return(db, context, _at(28, 10))
    assert outcome.suspended_until == until
    assert _restrictions(db) == [
        {
            "id": existing,
            "type": "SUSPENSION",
            "expiration": until,
            "comment": None,
            "manager_id": _staff(db),
            "created": "2026-03-28 10:00:00",  # MariaDB's ON UPDATE in Koha's schema
            "updated": "2026-03-28 10:00:00",
        }
    ]
    assert _debarred(db) == (until, None)


def test_cumulative_needs_the_patron_flagged(db, ctx):
    """Koha extends only when ``borrowers.debarred`` is set (here an expired SUSPENSION left
    the flag clear): the new period starts at the return."""
    _rules(db, finedays="2")
    _checkout(db, ctx())
    _suspend_ada(db, "2026-03-20")
    number = _ada(db)["borrowernumber"]
    db.run_blocking(
        lambda txn: txn.execute(
            "UPDATE borrowers SET debarred = NULL WHERE borrowernumber = ?", (number,)
        )
    )
    context = ctx(sysprefs={"CumulativeRestrictionPeriods": "1"})
    assert _return(db, context, _at(28, 10)).suspended_until == "2026-04-05"
    assert len(_restrictions(db)) == 1


def test_other_restrictions_stay_in_the_flags(db, ctx):
    _rules(db, finedays="2")
    _checkout(db, ctx())
    number = _ada(db)["borrowernumber"]
    db.run_blocking(
        lambda txn: txn.execute(
            "INSERT INTO borrower_debarments (borrowernumber, expiration, type, comment, "
            "created) VALUES (?, NULL, 'MANUAL', 'See the desk', '2026-03-01 09:00:00')",
            (number,),
        )
    )
    _return(db, ctx(), _at(28, 10))
    assert [row["type"] for row in _restrictions(db)] == ["MANUAL", "SUSPENSION"]
    assert _debarred(db) == ("9999-12-31", "See the desk")


@pytest.mark.parametrize(
    ("rules", "returned"),
    [
        ({"finedays": "2"}, (24, 12)),  # on time
        ({"finedays": "0"}, (28, 10)),
        ({}, (28, 10)),  # no rule
        ({"finedays": "2", "firstremind": "4"}, (28, 10)),  # within the grace
    ],
)
def test_no_suspension(db, ctx, rules, returned):
    if rules:
        _rules(db, **rules)
    _checkout(db, ctx())
    assert _return(db, ctx(), _at(*returned)).suspended_until is None
    assert _restrictions(db) == []
    assert _debarred(db) == (None, None)


def test_hourly_loan_suspends_finedays_days_per_hour(db, ctx):
    _rules(db, lengthunit="hours", issuelength="4", finedays="1")
    _checkout(db, ctx())  # due 18:30
    # 3 hours late: 3 x 1 x 24 days from the 10th.
    assert _return(db, ctx(), _at(10, 21, 45)).suspended_until == "2026-05-21"


def test_hourly_loan_with_a_grace_is_not_suspended(db, ctx):
    """Koha subtracts a grace of hours from a duration of days: never positive."""
    _rules(db, lengthunit="hours", issuelength="4", finedays="1", firstremind="1")
    _checkout(db, ctx())
    assert _return(db, ctx(), _at(10, 21, 45)).suspended_until is None


def test_suspension_without_fines(db, ctx):
    """finesMode off (a Koha database's default) charges nothing but still suspends."""
    _rules(db, finedays="2")
    _checkout(db, ctx())
    assert _return(db, ctx(sysprefs={"finesMode": "off"}), _at(28, 10)).suspended_until
    assert _charged(db) == []


def test_debarment_flags():
    rows = [
        {"expiration": "2026-03-01", "comment": "old"},
        {"expiration": "2026-04-01", "comment": None},
        {"expiration": "2026-05-01", "comment": "b"},
    ]
    assert debarment_flags(rows, "2026-03-10") == ("2026-05-01", "b")
    assert debarment_flags(rows[:1], "2026-03-10") == (None, None)
    assert debarment_flags([{"expiration": None, "comment": "a"}, *rows], "2026-03-10") == (
        "9999-12-31",
        "a\nb",
    )


def test_sip_checkin_of_a_late_item_suspends_and_answers_as_before(db, ctx):
    """Through the ACS: Ada's item 07 is ten days late; the 10 is the usual one."""
    _rules(db, finedays="1")
    answer = call(db, ctx(), f"09N{TS}{BLANK}APWEL|AOWEL|AB{BARCODE[7]}|AC|")
    assert answer.startswith("101")
    assert [row["expiration"] for row in _restrictions(db)] == ["2026-03-20"]
    assert _debarred(db) == ("2026-03-20", None)
    info = call(db, ctx(), f"63000{TS}          AOWEL|AA{ADA}|")
    assert info[2] == "Y"  # charge privileges denied


# --- MaxFine -------------------------------------------------------------------------------


def _owe(db, amount: float, status: str | None = None, itemnumber_of: str | None = None):
    number = _ada(db)["borrowernumber"]
    db.run_blocking(
        lambda txn: txn.execute(
            "INSERT INTO accountlines (borrowernumber, itemnumber, date, amount, "
            "amountoutstanding, description, debit_type_code, status, interface) "
            "VALUES (?, (SELECT itemnumber FROM items WHERE barcode = ?), "
            "'2026-03-01 00:00:00', ?, ?, '', 'OVERDUE', ?, 'cron')",
            (number, itemnumber_of or BARCODE[12], amount, amount, status),
        )
    )


@pytest.mark.parametrize(
    ("max_fine", "owed", "fine"),
    [
        ("0.60", None, 0.6),  # the new fine alone
        ("1.00", 0.80, 0.2),  # with another overdue fine
        ("1", 1.00, None),  # already at the cap: nothing charged
        ("0", 5.00, 1.0),  # 0: no cap
        ("", 5.00, 1.0),
    ],
)
def test_max_fine_caps_the_fine_charged(db, ctx, max_fine, owed, fine):
    _checkout(db, ctx())
    if owed is not None:
        _owe(db, owed, "RETURNED")
    assert _return(db, ctx(sysprefs={"MaxFine": max_fine}), _at(28, 10)).fine == fine
    assert _charged(db) == ([] if fine is None else [(fine, "RETURNED")])


def test_max_fine_counts_the_accruing_line_and_raises_it_to_the_cap(db, ctx):
    """The loan's UNRETURNED line (0.50) counts in the total: 0.50 + 0.20 room = 0.70."""
    _checkout(db, ctx())
    _owe(db, 0.50, "UNRETURNED", BARCODE[1])
    assert _return(db, ctx(sysprefs={"MaxFine": "0.70"}), _at(28, 10)).fine == 0.2
    assert _charged(db) == [(0.7, "RETURNED")]


def test_max_fine_reached_leaves_the_accruing_line(db, ctx):
    """At the cap Koha returns before adjusting: the line is not even lowered."""
    _checkout(db, ctx())
    _owe(db, 1.50, "UNRETURNED", BARCODE[1])
    assert _return(db, ctx(sysprefs={"MaxFine": "1.50"}), _at(28, 10)).fine is None
    assert _charged(db) == [(1.5, "RETURNED")]


def test_max_fine_caps_a_renewal_fine(db, ctx):
    """AddRenewal's fine goes through UpdateFine too (Ada's item 07: 2.50 so far)."""
    context = ctx(sysprefs={"MaxFine": "1.25"})
    answer = call(db, context, f"29NN{TS}{BLANK}AOWEL|AA{ADA}|AB{BARCODE[7]}|")
    assert answer.startswith("301")
    amounts = db.run_blocking(
        lambda txn: [
            float(row["amount"])
            for row in txn.query(
                "SELECT amount FROM accountlines WHERE debit_type_code = 'OVERDUE' "
                "AND itemnumber = (SELECT itemnumber FROM items WHERE barcode = ?)",
                (BARCODE[7],),
            )
        ]
    )
    assert amounts == [1.25]


# --- cost ----------------------------------------------------------------------------------


def _counted(db, context, barcode: str) -> tuple[int, int]:
    from tests.support.statements import recording

    with recording() as statements:
        answer = call(db, context, f"09N{TS}{BLANK}APWEL|AOWEL|AB{barcode}|AC|")
    assert answer.startswith("101"), answer
    return len(statements), statements.round_trips


def test_a_suspension_costs_one_round_trip(db, ctx):
    """With the reference cache (as the gateway runs), a late return that suspends runs one
    read more (the patron's restrictions) and two deferred writes; on time or without
    ``finedays`` it runs nothing more (the kiosk session's counts are pinned in
    test_statement_counts)."""
    from koha_gateway.ils import reference

    cache = reference.install(db.engine, reference.ReferenceCache(3600))
    try:
        db.run_blocking(reference.cached)
        late = ctx(now=_at(28, 10), sysprefs={"finesMode": "off"})  # four days late, no fine
        _checkout(db, ctx())  # book 01, due 24 March
        plain = _counted(db, late, BARCODE[1])  # no finedays rule
        _checkout(db, ctx())  # again
        _rules(db, finedays="1")
        db.run_blocking(lambda txn: cache.snapshot(txn, 0))  # sees the new rule
        suspending = _counted(db, late, BARCODE[1])
    finally:
        reference.uninstall(db.engine)
    assert [row["expiration"] for row in _restrictions(db)] == ["2026-04-01"]
    statements, trips = plain
    if db.engine.name == "sqlite":
        assert suspending == (statements + 3, trips + 3)  # no server: every statement counts
    else:
        assert suspending == (statements + 3, trips + 1)
