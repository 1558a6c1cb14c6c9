"""A library's calendar of closed days: Koha's ``Koha::Calendar``.

Koha keeps the closed days of each library in two tables:

- ``repeatable_holidays``: a row with ``weekday`` (0 = Sunday ... 6 = Saturday) closes that day
  every week; a row with ``weekday`` NULL and ``day``/``month`` closes that date every year;
- ``special_holidays``: one date (``day``, ``month``, ``year``); ``isexception`` = 0 closes it,
  ``isexception`` = 1 opens it although a repeatable rule closes it (an exception wins over
  every other row of the same date, as Koha's ``MAX(isexception)``).

:class:`Calendar` is a pure, immutable value built from those rows; it never reads the clock or
the database. :func:`load_calendar` gives one library's calendar: in the gateway from the
reference cache (:mod:`koha_gateway.ils.reference`, every library's calendar built once per
change, checked at most every ``--reference-max-age`` seconds), otherwise read in one query.

The arithmetic follows Koha's ``addDuration`` / ``addDays`` / ``addHours`` and the
``useDaysMode`` values:

``Days``
    plain calendar arithmetic, the calendar is ignored;
``Calendar``
    a loan of N days ends after N *open* days; an hourly loan that ends on a closed day ends on
    the next open day at 10:00;
``Datedue``
    N calendar days; a due date on a closed day moves to the next open day;
``Dayweek``
    like ``Datedue``, but when N is a whole number of weeks and the closed day is not a weekly
    closing, the due date moves a week at a time (so a weekly loan stays on the same weekday).

Datetimes are naive local times, as Koha stores them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from types import MappingProxyType

__all__ = [
    "DAYS_MODES",
    "RETURN_BY_HOUR",
    "Calendar",
    "NoOpenDays",
    "add_holiday",
    "holidays_of",
    "load_calendar",
]

#: The values of Koha's ``useDaysMode`` preference (and of the ``daysmode`` circulation rule).
DAYS_MODES = ("Calendar", "Days", "Datedue", "Dayweek")

#: Koha's fixed hour for an hourly loan pushed off a closed day (``addDuration``).
RETURN_BY_HOUR = 10

#: Koha's ``OPEN_DAYS_SEARCH_MAX_ITERATIONS``: a library closed on every day has no open day.
OPEN_DAYS_SEARCH_LIMIT = 5000


class NoOpenDays(Exception):
    """The library is closed on every day searched (Koha's ``Calendar::NoOpenDays``)."""


def _koha_weekday(day: date) -> int:
    """Koha's weekday numbering: 0 = Sunday, 1 = Monday ... 6 = Saturday."""
    return day.isoweekday() % 7


def _day(value: date | datetime) -> date:
    return value.date() if isinstance(value, datetime) else value


@dataclass(frozen=True)
class Calendar:
    """The closed days of one library.

    ``weekly``: Koha weekday numbers closed every week; ``yearly``: ``(month, day)`` pairs
    closed every year; ``special``: ``{date: closed}`` where ``closed`` is True for a one-off
    closing and False for an exception (open although a repeatable rule closes it).
    """

    branchcode: str
    weekly: frozenset[int] = frozenset()
    yearly: frozenset[tuple[int, int]] = frozenset()
    special: Mapping[date, bool] = field(default_factory=lambda: MappingProxyType({}))
    #: No row closes a day (no weekly or yearly closing, no one-off closing): every day is
    #: open, so a walk over open days is plain calendar arithmetic.
    always_open: bool = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        always_open = not self.weekly and not self.yearly and not any(self.special.values())
        object.__setattr__(self, "always_open", always_open)

    def __hash__(self) -> int:
        return hash((self.branchcode, self.weekly, self.yearly, tuple(sorted(self.special))))

    @classmethod
    def from_rows(cls, branchcode: str, rows: Iterable[Mapping]) -> Calendar:
        """A calendar from rows with ``kind`` (``'R'`` repeatable, ``'S'`` special),
        ``weekday``, ``day``, ``month``, ``year`` and ``isexception`` (the shape
        :func:`load_calendar` reads). Rows naming no real date are ignored, as they match no
        day in Koha."""
        weekly: set[int] = set()
        yearly: set[tuple[int, int]] = set()
        special: dict[date, bool] = {}
        for row in rows:
            if row["kind"] == "R":
                if row["weekday"] is not None:
                    weekday = int(row["weekday"])
                    if 0 <= weekday <= 6:
                        weekly.add(weekday)
                elif row["day"] is not None and row["month"] is not None:
                    yearly.add((int(row["month"]), int(row["day"])))
                continue
            try:
                day = date(int(row["year"]), int(row["month"]), int(row["day"]))
            except (TypeError, ValueError):
                continue
            exception = bool(int(row["isexception"] or 0))
            # An exception row wins over a closing of the same date (MAX(isexception)).
            special[day] = special.get(day, True) and not exception
        return cls(
            branchcode,
            frozenset(weekly),
            frozenset(yearly),
            MappingProxyType(dict(sorted(special.items()))),
        )

    # -- closed days -------------------------------------------------------------------------

    def is_holiday(self, when: date | datetime) -> bool:
        """Whether the library is closed on that day (Koha's ``is_holiday``)."""
        day = _day(when)
        if day in self.special:
            return self.special[day]
        if _koha_weekday(day) in self.weekly:
            return True
        return (day.month, day.day) in self.yearly

    def _push(self, day: date, mode: str) -> int:
        """Koha's ``get_push_amt``: ``Dayweek`` jumps a week over a closed day that is not a
        weekly closing; everything else moves one day."""
        if mode == "Dayweek" and _koha_weekday(day) not in self.weekly:
            return 7
        return 1

    def next_open_day(self, when, days: int = 1, mode: str = "Calendar"):
        """``when`` plus ``days`` days, then forward to an open day (Koha's
        ``next_open_days``); the time of day is kept."""
        return self._open_day(when, abs(days), 1, mode)

    def prev_open_day(self, when, days: int = 1, mode: str = "Calendar"):
        """``when`` minus ``days`` days, then back to an open day (``prev_open_days``)."""
        return self._open_day(when, abs(days), -1, mode)

    def _open_day(self, when, days: int, sign: int, mode: str):
        current = when + timedelta(days=sign * days)
        for _ in range(OPEN_DAYS_SEARCH_LIMIT):
            if not self.is_holiday(current):
                return current
            current += timedelta(days=sign * self._push(_day(current), mode))
        if self.is_holiday(current):
            raise NoOpenDays(f"Unable to find an open day for library {self.branchcode}")
        return current

    def days_forward(self, when, days: int):
        """``days`` open days after ``when`` (Koha's ``days_forward``)."""
        return self._open_days(when, max(0, days))

    def _open_days(self, start, days: int):
        """``days`` times ``next_open_day(current, 1)`` (``prev_open_day`` for a negative
        ``days``): plain calendar arithmetic when no row closes a day."""
        if self.always_open:
            return start + timedelta(days=days)
        sign = 1 if days >= 0 else -1
        current = start
        for _ in range(abs(days)):
            current = self._open_day(current, 1, sign, "Calendar")
        return current

    # -- intervals -----------------------------------------------------------------------------

    def days_between(self, start: date | datetime, end: date | datetime) -> int:
        """Calendar days from ``start`` to ``end`` (either order) less the closed days among
        them, both ends included in the count of closed days (Koha's ``days_between``)."""
        first, last = sorted((_day(start), _day(end)))
        total = (last - first).days
        return total - self._closed_days(first, last)

    def hours_between(self, start: datetime, end: datetime) -> timedelta:
        """The time from ``start`` to ``end`` (either order) less 24 hours for each closed
        day from the day of ``start`` to the day of ``end`` (Koha's ``hours_between``, which
        treats every day as 24 hours)."""
        first, last = sorted((start, end))
        closed = self._closed_days(first.date(), last.date())
        return (last - first) - timedelta(hours=24 * closed)

    def _closed_days(self, first: date, last: date) -> int:
        if self.always_open:
            return 0
        count = 0
        day = first
        while day <= last:
            if self.is_holiday(day):
                count += 1
            day += timedelta(days=1)
        return count

    # -- due dates -----------------------------------------------------------------------------

    def add_duration(self, start: datetime, length: int, unit: str, mode: str) -> datetime:
        """Koha's ``addDuration``: ``length`` ``unit`` (``days`` or ``hours``) after ``start``
        in the given ``useDaysMode``. The time of day is kept; a day loan's 23:59 is set by
        the caller (``CalcDateDue``)."""
        if unit == "hours":
            return self.add_hours(start, length, mode)
        return self.add_days(start, length, mode)

    def add_hours(self, start: datetime, hours: int, mode: str) -> datetime:
        """Koha's ``addHours``: unless the mode is ``Days``, an end on a closed day moves to
        the next (or, for a negative length, previous) open day at 10:00 (minutes kept)."""
        end = start + timedelta(hours=hours)
        if mode != "Days" and self.is_holiday(end):
            if hours < 0:
                end = self.prev_open_day(end, 1, mode)
            else:
                end = self.next_open_day(end, 1, mode)
            end = end.replace(hour=RETURN_BY_HOUR)
        return end

    def add_days(self, start: datetime, days: int, mode: str) -> datetime:
        """Koha's ``addDays`` in ``mode`` (see the module docstring)."""
        if mode == "Calendar":
            return self._open_days(start, days)
        end = start + timedelta(days=days)
        if mode in ("Datedue", "Dayweek") and self.is_holiday(end):
            push = self._push(_day(end), mode) if days % 7 == 0 else 1
            if days < 0:
                end = self.prev_open_day(end, push, mode)
            else:
                end = self.next_open_day(end, push, mode)
        return end


# -- database ----------------------------------------------------------------------------------

_ROWS_SQL = (
    "SELECT 'R' AS kind, weekday, day, month, NULL AS year, NULL AS isexception "
    "FROM repeatable_holidays WHERE branchcode = ? "
    "UNION ALL "
    "SELECT 'S' AS kind, NULL AS weekday, day, month, year, isexception "
    "FROM special_holidays WHERE branchcode = ?"
)


def load_calendar(txn, branchcode: str | None) -> Calendar:
    """The calendar of ``branchcode``, read in one query (an empty one without a branch)."""
    if not branchcode:
        return Calendar("")
    from koha_gateway.ils import reference

    snapshot = reference.cached(txn)
    if snapshot is not None:
        return snapshot.calendar(branchcode)
    return Calendar.from_rows(branchcode, txn.query(_ROWS_SQL, (branchcode, branchcode)))


def add_holiday(
    txn,
    branchcode: str,
    *,
    on: date | None = None,
    weekday: int | None = None,
    yearly: bool = False,
    exception: bool = False,
    title: str = "",
    description: str = "",
) -> int:
    """Record a closed day as Koha's calendar editor does; returns the new row's id.

    - ``weekday`` (0 = Sunday ... 6 = Saturday): closed every week (``repeatable_holidays``);
    - ``on`` with ``yearly``: closed on that day and month every year (``repeatable_holidays``);
    - ``on``: closed on that date only, or open on it when ``exception`` (``special_holidays``).
    """
    title = (title or "")[:50]
    if weekday is not None:
        if not 0 <= weekday <= 6:
            raise ValueError(f"weekday {weekday} is not 0 (Sunday) to 6 (Saturday)")
        return txn.insert(
            "INSERT INTO repeatable_holidays (branchcode, weekday, day, month, title, "
            "description) VALUES (?, ?, NULL, NULL, ?, ?)",
            (branchcode, weekday, title, description or ""),
            pk="id",
        )
    if on is None:
        raise ValueError("a holiday needs a date or a weekday")
    if yearly:
        return txn.insert(
            "INSERT INTO repeatable_holidays (branchcode, weekday, day, month, title, "
            "description) VALUES (?, NULL, ?, ?, ?, ?)",
            (branchcode, on.day, on.month, title, description or ""),
            pk="id",
        )
    return txn.insert(
        "INSERT INTO special_holidays (branchcode, day, month, year, isexception, title, "
        "description) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (branchcode, on.day, on.month, on.year, 1 if exception else 0, title, description or ""),
        pk="id",
    )


def holidays_of(txn, branchcode: str) -> list[dict]:
    """Every calendar row of ``branchcode`` for display: weekly, yearly, then dated rows."""
    repeatable = txn.query(
        "SELECT weekday, day, month, title FROM repeatable_holidays WHERE branchcode = ?",
        (branchcode,),
    )
    special = txn.query(
        "SELECT year, month, day, isexception, title FROM special_holidays WHERE branchcode = ?",
        (branchcode,),
    )
    weekly = [
        {"kind": "weekly", "weekday": int(row["weekday"]), "title": row["title"]}
        for row in repeatable
        if row["weekday"] is not None
    ]
    yearly = [
        {
            "kind": "yearly",
            "month": int(row["month"]),
            "day": int(row["day"]),
            "title": row["title"],
        }
        for row in repeatable
        if row["weekday"] is None and row["month"] is not None and row["day"] is not None
    ]
    dated = [
        {
            "kind": "exception" if int(row["isexception"] or 0) else "closed",
            "year": int(row["year"]),
            "month": int(row["month"]),
            "day": int(row["day"]),
            "title": row["title"],
        }
        for row in special
    ]
    weekly.sort(key=lambda row: row["weekday"])
    yearly.sort(key=lambda row: (row["month"], row["day"]))
    dated.sort(key=lambda row: (row["year"], row["month"], row["day"], row["kind"]))
    return weekly + yearly + dated
