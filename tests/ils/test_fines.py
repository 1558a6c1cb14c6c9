"""Overdue fines by Koha's CalcFine (koha_gateway.ils.fines, through checkin) on the demo data,
both engines.

Each test checks a book out to Ada at the pinned instant (due Tuesday 24 March 2026, 23:59,
or 18:30 the same day for a 4-hour loan) and returns it later; the demo's rule is 0.25 a day.
"""

from __future__ import annotations

from datetime import date, datetime

import pytest

from koha_gateway.ils import checkin as ils_checkin
from koha_gateway.ils.calendar import add_holiday
from koha_gateway.ils.items import find_item
from koha_gateway.ils.rules import set_rule
from tests.ils.conftest import BARCODE, NOW
from tests.ils.test_datedue import _checkout

ITEM = BARCODE[1]


def _at(day: int, hour: int, minute: int = 0, month: int = 3) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=NOW.tzinfo)


def _return(db, context, when: datetime):
    def work(txn):
        item = find_item(txn, ITEM, lock=True)
        return ils_checkin.checkin(txn, context.circ(txn).replace(now=when), item=item)

    outcome = db.run_blocking(work)
    assert outcome.ok and outcome.returned
    return outcome


def _rules(db, **rules):
    def work(txn):
        for name, value in rules.items():
            set_rule(txn, name, value, itemtype="BK")

    db.run_blocking(work)


def _closed(db, *days):
    def work(txn):
        for day in days:
            add_holiday(txn, "WEL", on=day)

    db.run_blocking(work)


def _charged(db):
    return db.run_blocking(
        lambda txn: [
            (float(row["amount"]), row["status"])
            for row in txn.query(
                "SELECT amount, status FROM accountlines WHERE debit_type_code = 'OVERDUE' "
                "AND itemnumber = (SELECT itemnumber FROM items WHERE barcode = ?)",
                (ITEM,),
            )
        ]
    )


@pytest.mark.parametrize(
    ("fines_calendar", "fine"),
    [("noFinesWhenClosed", 0.75), ("ignoreCalendar", 1.0)],
)
def test_fines_calendar(db, ctx, fines_calendar, fine):
    _checkout(db, ctx())  # due 24 March
    _closed(db, date(2026, 3, 26))  # closed while on loan
    context = ctx(sysprefs={"finesCalendar": fines_calendar})
    assert _return(db, context, _at(28, 10)).fine == fine  # 4 days late, one closed
    assert _charged(db) == [(fine, "RETURNED")]


def test_returned_on_a_closed_day_after_due(db, ctx):
    _checkout(db, ctx())
    _closed(db, date(2026, 3, 25))
    assert _return(db, ctx(), _at(25, 12)).fine is None  # the only late day was closed


def test_hourly_loan_fined_by_the_hour(db, ctx):
    _rules(db, lengthunit="hours", issuelength="4", fine="0.50")
    assert _checkout(db, ctx()).due == "2026-03-10 18:30:00"
    assert _return(db, ctx(), _at(10, 21, 45)).fine == 1.5  # 3 hours 15 minutes: 3 hours
    assert _charged(db) == [(1.5, "RETURNED")]


def test_hourly_loan_less_than_an_hour_late_is_one_hour(db, ctx):
    _rules(db, lengthunit="hours", issuelength="4", fine="0.50")
    _checkout(db, ctx())
    assert _return(db, ctx(), _at(10, 18, 40)).fine == 0.5


def test_hourly_fine_leaves_out_closed_days(db, ctx):
    _rules(db, lengthunit="hours", issuelength="4", fine="0.50")
    _checkout(db, ctx())  # due 18:30 on the 10th
    _closed(db, date(2026, 3, 11))
    # 39 hours late, 24 of them on the closed 11th: 15 hours.
    assert _return(db, ctx(), _at(12, 9, 30)).fine == 7.5
    assert _charged(db) == [(7.5, "RETURNED")]


def test_hourly_fine_ignoring_the_calendar(db, ctx):
    _rules(db, lengthunit="hours", issuelength="4", fine="0.50")
    _checkout(db, ctx())
    _closed(db, date(2026, 3, 11))
    context = ctx(sysprefs={"finesCalendar": "ignoreCalendar"})
    assert _return(db, context, _at(12, 9, 30)).fine == 19.5  # 39 hours


@pytest.mark.parametrize(
    ("rules", "prefs", "fine"),
    [
        ({"firstremind": "2"}, {}, 1.0),  # past the grace: every day counts
        ({"firstremind": "2"}, {"FinesIncludeGracePeriod": "0"}, 0.5),
        ({"firstremind": "4"}, {}, None),  # still within the grace
        ({"chargeperiod": "3", "fine": "1"}, {}, 1.0),  # one whole period of 3 days
        ({"chargeperiod": "3", "fine": "1", "chargeperiod_charge_at": "1"}, {}, 2.0),
        ({"chargeperiod": ""}, {}, None),  # no charge period, no fine (Koha)
        ({"overduefinescap": "0.60"}, {}, 0.6),
        ({"cap_fine_to_replacement_price": "1"}, {}, 0.4),
        ({"cap_fine_to_replacement_price": "0"}, {}, 1.0),
    ],
)
def test_fine_rules(db, ctx, rules, prefs, fine):
    db.run_blocking(
        lambda txn: txn.execute(
            "UPDATE items SET replacementprice = 0.40 WHERE barcode = ?", (ITEM,)
        )
    )
    _rules(db, **rules)
    _checkout(db, ctx())
    assert _return(db, ctx(sysprefs=prefs), _at(28, 10)).fine == fine  # 4 days late
