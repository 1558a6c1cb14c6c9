"""Koha's calendar (koha_gateway.ils.calendar): the pure arithmetic of every useDaysMode, and
the calendar read back from the database on both engines.

The test calendar, around the pinned instant (Tuesday 10 March 2026): closed every Sunday and
Monday, every 25 December, on Friday 13 March 2026; open on Monday 16 March 2026 (an
exception to the weekly closing).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from koha_gateway.db import schema
from koha_gateway.ils import sysprefs as ils_sysprefs
from koha_gateway.ils.calendar import (
    RETURN_BY_HOUR,
    Calendar,
    NoOpenDays,
    add_holiday,
    holidays_of,
    load_calendar,
)
from koha_gateway.ils.fines import chargeable_units
from tests.ils.conftest import NOW

START = NOW.replace(tzinfo=None)  # Tuesday 2026-03-10 14:30
SUNDAY, MONDAY, FRIDAY = 0, 1, 5


def _rows():
    return [
        {"kind": "R", "weekday": SUNDAY, "day": None, "month": None, "year": None},
        {"kind": "R", "weekday": MONDAY, "day": None, "month": None, "year": None},
        {"kind": "R", "weekday": None, "day": 25, "month": 12, "year": None},
        {"kind": "S", "weekday": None, "day": 13, "month": 3, "year": 2026, "isexception": 0},
        {"kind": "S", "weekday": None, "day": 16, "month": 3, "year": 2026, "isexception": 1},
    ]


@pytest.fixture
def cal() -> Calendar:
    return Calendar.from_rows("WEL", _rows())


def at(day: int, hour: int = 14, minute: int = 30, month: int = 3) -> datetime:
    return datetime(2026, month, day, hour, minute)


# --- closed days -----------------------------------------------------------------------------


def test_weekly_yearly_special_and_exception_days(cal):
    assert START.strftime("%A") == "Tuesday"
    assert cal.is_holiday(date(2026, 3, 15))  # Sunday, weekly
    assert cal.is_holiday(date(2026, 3, 9))  # Monday, weekly
    assert cal.is_holiday(date(2026, 3, 23))
    assert not cal.is_holiday(date(2026, 3, 16))  # Monday, but an exception: open
    assert cal.is_holiday(date(2026, 12, 25)) and cal.is_holiday(date(2031, 12, 25))  # yearly
    assert cal.is_holiday(at(13))  # special, a datetime works as its day
    assert not cal.is_holiday(date(2027, 3, 13))  # a special day is one year only
    assert not cal.is_holiday(START)


def test_an_exception_row_wins_over_a_closing_of_the_same_date():
    rows = [
        {"kind": "S", "weekday": None, "day": 11, "month": 3, "year": 2026, "isexception": 0},
        {"kind": "S", "weekday": None, "day": 11, "month": 3, "year": 2026, "isexception": 1},
        {"kind": "R", "weekday": None, "day": 12, "month": 3, "year": None},
        {"kind": "S", "weekday": None, "day": 12, "month": 3, "year": 2026, "isexception": 1},
    ]
    cal = Calendar.from_rows("WEL", rows)
    assert not cal.is_holiday(date(2026, 3, 11))
    assert not cal.is_holiday(date(2026, 3, 12))  # yearly closing lifted this year
    assert cal.is_holiday(date(2027, 3, 12))


def test_rows_naming_no_real_date_are_ignored():
    rows = [
        {"kind": "S", "weekday": None, "day": 0, "month": 0, "year": 0, "isexception": 0},
        {"kind": "S", "weekday": None, "day": 30, "month": 2, "year": 2026, "isexception": 0},
        {"kind": "R", "weekday": 9, "day": None, "month": None, "year": None},
    ]
    cal = Calendar.from_rows("WEL", rows)
    assert cal.special == {} and cal.weekly == frozenset()
    assert not any(cal.is_holiday(date(2026, 3, d)) for d in range(1, 32))


def test_next_and_previous_open_day(cal):
    assert cal.next_open_day(at(12)) == at(14)  # Friday the 13th is closed
    assert cal.next_open_day(at(14)) == at(16)  # Sunday closed, Monday the 16th open
    assert cal.next_open_day(at(21)) == at(24)  # Sunday and Monday closed
    assert cal.prev_open_day(at(24)) == at(21)
    assert cal.prev_open_day(at(16)) == at(14)
    assert cal.days_forward(at(10), 3) == at(14)
    assert cal.days_forward(at(10), 0) == at(10)


def test_a_library_closed_every_day_has_no_open_day():
    rows = [{"kind": "R", "weekday": n, "day": None, "month": None, "year": None} for n in range(7)]
    cal = Calendar.from_rows("WEL", rows)
    with pytest.raises(NoOpenDays, match="WEL"):
        cal.next_open_day(START)
    with pytest.raises(NoOpenDays):
        cal.add_days(START, 3, "Calendar")
    assert cal.add_days(START, 3, "Days") == START + timedelta(days=3)


# --- useDaysMode -----------------------------------------------------------------------------


def test_days_mode_ignores_the_calendar(cal):
    assert cal.add_days(START, 3, "Days") == at(13)
    assert cal.add_hours(at(12, 20), 4, "Days") == at(13, 0)


def test_calendar_mode_counts_open_days_only(cal):
    assert cal.add_days(START, 3, "Calendar") == at(14)  # 11, 12, 14
    assert cal.add_days(START, 5, "Calendar") == at(17)  # 11, 12, 14, 16, 17
    assert cal.add_days(at(17), -5, "Calendar") == START
    assert cal.add_days(START, 0, "Calendar") == START


def test_datedue_mode_moves_a_closed_due_date_to_the_next_open_day(cal):
    assert cal.add_days(START, 3, "Datedue") == at(14)
    assert cal.add_days(START, 2, "Datedue") == at(12)  # an open day stays
    assert cal.add_days(START, 5, "Datedue") == at(16)  # Sunday 15th + 1 day... 16th open
    assert cal.add_days(START, 12, "Datedue") == at(24)  # Sunday 22nd, Monday 23rd closed
    assert cal.add_days(at(17), -4, "Datedue") == at(12)  # back from Friday 13th


def test_dayweek_mode_keeps_a_weekly_loan_on_its_weekday(cal):
    friday = at(6)
    # 7 days land on Friday 13th, a one-off closing: a week later, still a Friday.
    assert cal.add_days(friday, 7, "Dayweek") == at(20)
    assert cal.add_days(friday, 7, "Datedue") == at(14)
    # A weekly closing (Monday the 9th) is not jumped by a week but by a day.
    assert cal.add_days(at(2), 7, "Dayweek") == at(10)
    # Not a whole number of weeks: like Datedue.
    assert cal.add_days(START, 3, "Dayweek") == at(14)
    # Several closed Fridays in a row.
    rows = [*_rows()]
    rows.append(
        {"kind": "S", "weekday": None, "day": 20, "month": 3, "year": 2026, "isexception": 0}
    )
    assert Calendar.from_rows("WEL", rows).add_days(friday, 14, "Dayweek") == at(27)


@pytest.mark.parametrize("mode", ["Calendar", "Datedue", "Dayweek"])
def test_hourly_loan_ending_on_a_closed_day_is_due_next_open_day_at_ten(cal, mode):
    assert cal.add_hours(at(12, 20), 4, mode) == at(14, RETURN_BY_HOUR)
    assert cal.add_hours(at(12, 10), 4, mode) == at(12, 14)  # ends the same open day
    assert cal.add_hours(at(14, 2, 15), -4, mode) == at(12, RETURN_BY_HOUR, 15)
    assert cal.add_duration(at(12, 20), 4, "hours", mode) == at(14, RETURN_BY_HOUR)


def test_add_duration_in_days(cal):
    assert cal.add_duration(START, 3, "days", "Calendar") == at(14)
    assert cal.add_duration(START, 3, "days", "Days") == at(13)


# --- intervals and chargeable units ----------------------------------------------------------


def test_days_between_leaves_out_closed_days(cal):
    due, back = at(10, 23, 59), at(14, 10, 0)
    assert cal.days_between(due, back) == 3  # 4 days, the 13th closed
    assert cal.days_between(back, due) == 3
    assert cal.days_between(at(10), at(17)) == 5  # 13th and 15th closed, 16th open
    assert Calendar("WEL").days_between(due, back) == 4


def test_hours_between_leaves_out_24_hours_per_closed_day(cal):
    assert cal.hours_between(at(12, 20), at(14, 9)) == timedelta(hours=13)
    assert cal.hours_between(at(14, 9), at(12, 20)) == timedelta(hours=13)
    assert cal.hours_between(at(11, 9), at(11, 12, 40)) == timedelta(hours=3, minutes=10)


def test_chargeable_units(cal):
    due = at(12, 18, 0)
    assert chargeable_units("hours", due, due, cal) == 0
    assert chargeable_units("hours", due, at(12, 18, 10), None) == 1  # under an hour counts 1
    assert chargeable_units("hours", due, at(12, 21, 15), None) == 3
    assert chargeable_units("hours", due, at(14, 9), None) == 39
    assert chargeable_units("hours", due, at(14, 9), cal) == 15
    assert chargeable_units("days", at(10, 23, 59), at(14, 10), cal) == 3
    assert chargeable_units("days", at(10, 23, 59), at(14, 10), None) == 4
    assert chargeable_units("days", at(10, 23, 59), at(10, 23, 59), None) == 0


# --- in the database -------------------------------------------------------------------------


def test_schema_v4_has_the_tables_and_preferences(db):
    def read(txn):
        prefs = ils_sysprefs.Sysprefs(ils_sysprefs.load(txn))
        version = schema.current_version(txn)
        counts = [
            txn.scalar(f"SELECT COUNT(*) AS n FROM {table}")
            for table in ("special_holidays", "repeatable_holidays")
        ]
        return prefs, version, counts

    prefs, version, counts = db.run_blocking(read)
    assert version >= 4
    assert counts == [0, 0]
    assert prefs.get("useDaysMode") == "Calendar"
    assert prefs.get("finesCalendar") == "noFinesWhenClosed"
    assert prefs.get("FinesIncludeGracePeriod") == "1"
    assert prefs.get("ReturnBeforeExpiry") == "0"


def test_holidays_added_are_read_back_in_one_calendar(db):
    def seed(txn):
        add_holiday(txn, "WEL", weekday=SUNDAY, title="Sundays")
        add_holiday(txn, "WEL", weekday=MONDAY)
        add_holiday(txn, "WEL", on=date(2026, 12, 25), yearly=True, title="Christmas")
        add_holiday(txn, "WEL", on=date(2026, 3, 13))
        add_holiday(txn, "WEL", on=date(2026, 3, 16), exception=True)
        add_holiday(txn, "KIL", on=date(2026, 3, 11))

    db.run_blocking(seed)
    wel = db.run_blocking(load_calendar, "WEL")
    assert wel == Calendar.from_rows("WEL", _rows())
    kil = db.run_blocking(load_calendar, "KIL")
    assert kil.is_holiday(date(2026, 3, 11)) and not kil.is_holiday(date(2026, 3, 15))
    assert db.run_blocking(load_calendar, "NOPE") == Calendar("NOPE")
    listed = db.run_blocking(holidays_of, "WEL")
    assert [(row["kind"], row.get("weekday"), row.get("day")) for row in listed] == [
        ("weekly", SUNDAY, None),
        ("weekly", MONDAY, None),
        ("yearly", None, 25),
        ("closed", None, 13),
        ("exception", None, 16),
    ]
    assert {row["title"] for row in listed} >= {"Sundays", "Christmas"}


def test_a_holiday_needs_a_date_or_a_weekday(db):
    with pytest.raises(ValueError):
        db.run_blocking(lambda txn: add_holiday(txn, "WEL"))
    with pytest.raises(ValueError):
        db.run_blocking(lambda txn: add_holiday(txn, "WEL", weekday=7))


# --- the walk over open days ------------------------------------------------------------------


def _walked(cal: Calendar, start: datetime, days: int) -> datetime:
    """``Calendar`` mode as Koha's ``addDays`` walks it: one ``next_open_day`` (or
    ``prev_open_day``) per day."""
    current = start
    for _ in range(abs(days)):
        if days < 0:
            current = cal.prev_open_day(current, 1, "Calendar")
        else:
            current = cal.next_open_day(current, 1, "Calendar")
    return current


WALK_CALENDARS = {
    "weekly, yearly, special and an exception": _rows(),
    "closed weekdays only": [
        {"kind": "R", "weekday": n, "day": None, "month": None, "year": None} for n in (0, 3, 6)
    ],
    "dated closings across a year's end": [
        {"kind": "R", "weekday": None, "day": 25, "month": 12, "year": None},
        {"kind": "R", "weekday": None, "day": 1, "month": 1, "year": None},
        *(
            {"kind": "S", "weekday": None, "day": d, "month": 12, "year": 2026, "isexception": 0}
            for d in range(20, 32)
        ),
        {"kind": "S", "weekday": None, "day": 2, "month": 1, "year": 2027, "isexception": 0},
    ],
    "exceptions only": [
        {"kind": "S", "weekday": None, "day": 11, "month": 3, "year": 2026, "isexception": 1},
    ],
    "no rows": [],
}


@pytest.mark.parametrize("rows", WALK_CALENDARS.values(), ids=WALK_CALENDARS.keys())
def test_calendar_mode_gives_the_dates_of_a_walk_one_open_day_at_a_time(rows):
    cal = Calendar.from_rows("WEL", rows)
    starts = [START + timedelta(days=n) for n in range(0, 300, 7)]
    starts += [datetime(2026, 12, d, 9, 15) for d in range(15, 32)]
    for start in starts:
        for days in (-30, -8, -1, 0, 1, 2, 6, 7, 14, 21, 28, 60):
            assert cal.add_days(start, days, "Calendar") == _walked(cal, start, days), (
                start,
                days,
            )


def test_a_calendar_without_closings_is_always_open():
    assert Calendar("WEL").always_open
    assert Calendar.from_rows("WEL", WALK_CALENDARS["exceptions only"]).always_open
    assert not Calendar.from_rows("WEL", _rows()).always_open
    assert not Calendar.from_rows("WEL", WALK_CALENDARS["closed weekdays only"]).always_open
    only_special = [
        {"kind": "S", "weekday": None, "day": 13, "month": 3, "year": 2026, "isexception": 0}
    ]
    assert not Calendar.from_rows("WEL", only_special).always_open
    # not a field that compares: an empty calendar equals one built from no rows
    assert Calendar("WEL") == Calendar.from_rows("WEL", [])
    assert Calendar("WEL").add_days(START, 40, "Calendar") == START + timedelta(days=40)
    assert Calendar("WEL").days_between(START, START + timedelta(days=9)) == 9


def test_a_walk_in_a_library_closed_every_day_still_finds_no_open_day():
    rows = [{"kind": "R", "weekday": n, "day": None, "month": None, "year": None} for n in range(7)]
    cal = Calendar.from_rows("WEL", rows)
    for days in (1, -1, 14):
        with pytest.raises(NoOpenDays, match="WEL"):
            cal.add_days(START, days, "Calendar")
