"""Due dates by Koha's calendar (koha_gateway.ils.datedue, through checkout and renewal) on the
demo data, both engines.

Checkouts happen at the pinned instant, Tuesday 10 March 2026 14:30 in Wellington; the demo's
book loans are 14 days (due Tuesday 24 March, 23:59, when nothing is closed).
"""

from __future__ import annotations

from datetime import date

import pytest

from koha_gateway.ils import checkout as ils_checkout
from koha_gateway.ils.calendar import add_holiday
from koha_gateway.ils.items import find_item
from koha_gateway.ils.patrons import find_patron, patron_state
from koha_gateway.ils.rules import set_rule
from tests.ils.conftest import ADA, BARCODE, NOW


def _checkout(db, context, barcode=BARCODE[1], *, branch=None):
    def work(txn):
        patron = find_patron(txn, ADA, lock=True)
        item = find_item(txn, barcode, lock=True)
        circ = context.circ(txn, branch)
        return ils_checkout.checkout(
            txn, circ, patron=patron, state=patron_state(txn, patron, circ), item=item
        )

    outcome = db.run_blocking(work)
    assert outcome.ok, outcome.message
    return outcome


def _renew(db, context, barcode=BARCODE[1]):
    def work(txn):
        patron = find_patron(txn, ADA, lock=True)
        item = find_item(txn, barcode, lock=True)
        circ = context.circ(txn)
        return ils_checkout.renew(
            txn, circ, patron=patron, state=patron_state(txn, patron, circ), item=item
        )

    outcome = db.run_blocking(work)
    assert outcome.ok, outcome.message
    return outcome


def _closed(db, branch, *days, **kw):
    def work(txn):
        for day in days:
            add_holiday(txn, branch, on=day, **kw)

    db.run_blocking(work)


def _rule(db, name, value, **kw):
    db.run_blocking(lambda txn: set_rule(txn, name, value, **kw))


def _stored(db, barcode=BARCODE[1]):
    return db.run_blocking(
        lambda txn: txn.one(
            "SELECT i.date_due, it.onloan FROM issues i JOIN items it "
            "ON it.itemnumber = i.itemnumber WHERE it.barcode = ?",
            (barcode,),
        )
    )


def _text(value) -> str:
    return str(value)[:19]


def test_without_closed_days_a_loan_is_due_at_the_end_of_its_last_day(db, ctx):
    assert _checkout(db, ctx()).due == "2026-03-24 23:59:00"


def test_checkout_due_date_skips_a_closed_day(db, ctx):
    _closed(db, "WEL", date(2026, 3, 24))
    outcome = _checkout(db, ctx())
    assert outcome.due == "2026-03-25 23:59:00"
    stored = _stored(db)
    assert _text(stored["date_due"]) == "2026-03-25 23:59:00"
    assert str(stored["onloan"])[:10] == "2026-03-25"


@pytest.mark.parametrize(
    ("mode", "due"),
    [
        ("Days", "2026-03-24 23:59:00"),  # the calendar is ignored
        ("Calendar", "2026-03-26 23:59:00"),  # 14 open days: the 17th and 24th do not count
        ("Datedue", "2026-03-25 23:59:00"),  # the 24th is closed: the next open day
        ("Dayweek", "2026-03-31 23:59:00"),  # two weeks: a week later, the same weekday
    ],
)
def test_use_days_mode(db, ctx, mode, due):
    _closed(db, "WEL", date(2026, 3, 17), date(2026, 3, 24))
    assert _checkout(db, ctx(sysprefs={"useDaysMode": mode})).due == due


def test_the_daysmode_rule_wins_over_the_preference(db, ctx):
    _closed(db, "WEL", date(2026, 3, 24))
    _rule(db, "daysmode", "Days", itemtype="BK")
    assert _checkout(db, ctx(sysprefs={"useDaysMode": "Calendar"})).due == "2026-03-24 23:59:00"


def test_a_weekly_closing_and_an_exception(db, ctx):
    db.run_blocking(lambda txn: add_holiday(txn, "WEL", weekday=2))  # Tuesdays
    _closed(db, "WEL", date(2026, 3, 24), exception=True)
    assert _checkout(db, ctx()).due == "2026-03-25 23:59:00"  # only the 17th skipped


def test_circ_control_chooses_whose_calendar(db, ctx):
    _closed(db, "KIL", date(2026, 3, 24))
    # ItemHomeLibrary (the default): the WEL item follows WEL's calendar.
    assert _checkout(db, ctx(), BARCODE[1], branch="KIL").due == "2026-03-24 23:59:00"
    # PickupLibrary: the library of the checkout.
    picked = ctx(sysprefs={"CircControl": "PickupLibrary"})
    assert _checkout(db, picked, BARCODE[2], branch="KIL").due == "2026-03-25 23:59:00"


def test_hourly_loan_is_due_hours_after_the_checkout(db, ctx):
    _rule(db, "lengthunit", "hours", itemtype="BK")
    _rule(db, "issuelength", "4", itemtype="BK")
    assert _checkout(db, ctx()).due == "2026-03-10 18:30:00"
    stored = _stored(db)
    assert _text(stored["date_due"]) == "2026-03-10 18:30:00"
    assert str(stored["onloan"])[:10] == "2026-03-10"


def test_hourly_loan_ending_on_a_closed_day_is_due_next_open_day_at_ten(db, ctx):
    _rule(db, "lengthunit", "hours", itemtype="BK")
    _rule(db, "issuelength", "12", itemtype="BK")
    _closed(db, "WEL", date(2026, 3, 11))
    assert _checkout(db, ctx()).due == "2026-03-12 10:30:00"
    assert _checkout(db, ctx(sysprefs={"useDaysMode": "Days"}), BARCODE[2]).due == (
        "2026-03-11 02:30:00"
    )


def test_renewal_skips_a_closed_day(db, ctx):
    _checkout(db, ctx())
    _closed(db, "WEL", date(2026, 4, 7))
    # From the old due date (24 March), 14 days: 7 April is closed.
    assert _renew(db, ctx()).due == "2026-04-08 23:59:00"
    assert _text(_stored(db)["date_due"]) == "2026-04-08 23:59:00"


def test_hourly_renewal(db, ctx):
    _rule(db, "lengthunit", "hours", itemtype="BK")
    _rule(db, "issuelength", "4", itemtype="BK")
    _rule(db, "renewalperiod", "2", itemtype="BK")
    _checkout(db, ctx())
    assert _renew(db, ctx()).due == "2026-03-10 20:30:00"


@pytest.mark.parametrize(
    ("hard", "compare", "due"),
    [
        ("2026-03-20", "-1", "2026-03-20 23:59:00"),  # before: a ceiling
        ("2026-03-30", "-1", "2026-03-24 23:59:00"),
        ("2026-03-30", "1", "2026-03-30 23:59:00"),  # after: a floor
        ("2026-03-20", "1", "2026-03-24 23:59:00"),
        ("2026-03-20", "0", "2026-03-20 23:59:00"),  # exactly
        ("2026-03-30", None, "2026-03-30 23:59:00"),  # no compare: exactly
    ],
)
def test_hard_due_date(db, ctx, hard, compare, due):
    _rule(db, "hardduedate", hard)
    if compare is not None:
        _rule(db, "hardduedatecompare", compare)
    assert _checkout(db, ctx()).due == due


def test_return_before_expiry_ends_on_an_open_day(db, ctx):
    db.run_blocking(
        lambda txn: txn.execute(
            "UPDATE borrowers SET dateexpiry = ? WHERE cardnumber = ?", ("2026-03-15", ADA)
        )
    )
    _closed(db, "WEL", date(2026, 3, 15))
    assert _checkout(db, ctx()).due == "2026-03-25 23:59:00"  # 14 open days
    prefs = {"ReturnBeforeExpiry": "1"}
    assert _checkout(db, ctx(sysprefs=prefs), BARCODE[2]).due == "2026-03-14 23:59:00"
    prefs["useDaysMode"] = "Days"
    assert _checkout(db, ctx(sysprefs=prefs), BARCODE[3]).due == "2026-03-15 23:59:00"


def test_a_library_closed_on_every_day_ignores_its_calendar(db, ctx):
    def close_every_day(txn):
        for weekday in range(7):
            add_holiday(txn, "WEL", weekday=weekday)

    db.run_blocking(close_every_day)
    assert _checkout(db, ctx()).due == "2026-03-24 23:59:00"


def test_norenewalbefore_counts_hours_for_an_hourly_loan(db, ctx):
    _rule(db, "lengthunit", "hours", itemtype="BK")
    _rule(db, "issuelength", "4", itemtype="BK")
    _rule(db, "renewalperiod", "4", itemtype="BK")
    _rule(db, "norenewalbefore", "2", itemtype="BK")
    _checkout(db, ctx())  # due 18:30

    def renew_at(hour, minute):
        context = ctx(now=NOW.replace(hour=hour, minute=minute))

        def work(txn):
            patron = find_patron(txn, ADA, lock=True)
            circ = context.circ(txn)
            return ils_checkout.renew(
                txn,
                circ,
                patron=patron,
                state=patron_state(txn, patron, circ),
                item=find_item(txn, BARCODE[1], lock=True),
            )

        return db.run_blocking(work)

    assert renew_at(16, 29).reason == "too_soon"
    outcome = renew_at(16, 30)
    assert outcome.ok and outcome.due == "2026-03-10 22:30:00"  # from the old due date
