"""Due dates: Koha's ``C4::Circulation::CalcDateDue`` over the library's calendar.

The loan length comes from the circulation rules ``issuelength`` (``renewalperiod`` for a
renewal when it is set) in the unit of the rule ``lengthunit`` (``days``, Koha's default, or
``hours``); the way closed days count from the rule ``daysmode``, else the preference
``useDaysMode`` (Koha's default ``Calendar``; see :mod:`koha_gateway.ils.calendar`). The branch
whose rules and calendar apply is the caller's (``CircControl``, see
:func:`koha_gateway.ils.circulation.circ_control_branch`).

- A loan of days is due at 23:59 of its last day; a loan of hours at the start plus the hours,
  moved to 10:00 of the next open day when it would end on a closed day (every mode but
  ``Days``).
- A hard due date (rules ``hardduedate``, ``hardduedatecompare``: -1 "before", a ceiling; 0
  "exactly"; 1 "after", a floor) replaces the computed one as Koha's ``GetHardDueDate`` says.
- With ``ReturnBeforeExpiry`` the loan ends at the latest on the patron's expiry date (23:59),
  moved back to an open day unless the mode is ``Days``.
- A library closed on every day has no open day to move to: the calendar is then ignored
  (Koha's checkout fails with an exception).

Due dates are stored to the minute (seconds 00), as ``AddIssue`` and ``AddRenewal`` store them.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from koha_gateway.ils.calendar import NoOpenDays, load_calendar
from koha_gateway.ils.circulation import as_date
from koha_gateway.ils.rules import get_rule, rule_int

__all__ = [
    "DEFAULT_DAYS_MODE",
    "calc_date_due",
    "days_mode",
    "hard_due_date",
    "loan_length",
    "too_soon_to_renew",
]

#: Koha's default of the ``useDaysMode`` preference.
DEFAULT_DAYS_MODE = "Calendar"


def _dims(branchcode: str | None, patron: dict, item: dict) -> dict:
    return {
        "branchcode": branchcode,
        "categorycode": patron.get("categorycode"),
        "itemtype": item.get("itype"),
    }


def loan_length(
    txn,
    *,
    branchcode: str | None,
    categorycode: str | None,
    itemtype: str | None,
    renewal: bool = False,
) -> tuple[int, str]:
    """``(length, unit)`` of Koha's ``GetLoanLength``: ``issuelength`` (0 when unset), or
    for a renewal ``renewalperiod`` when it is set; ``unit`` is ``'hours'`` or ``'days'``."""
    dims = {"branchcode": branchcode, "categorycode": categorycode, "itemtype": itemtype}
    length = None
    if renewal:
        length = rule_int(txn, "renewalperiod", default=None, **dims)
    if length is None:
        length = rule_int(txn, "issuelength", default=0, **dims)
    unit = (get_rule(txn, "lengthunit", **dims) or "").strip()
    return max(0, length or 0), "hours" if unit == "hours" else "days"


def days_mode(
    txn, sysprefs, *, branchcode: str | None, categorycode: str | None, itemtype: str | None
) -> str:
    """Koha's ``get_effective_daysmode``: the rule ``daysmode`` when set, else the
    ``useDaysMode`` preference."""
    rule = get_rule(
        txn, "daysmode", branchcode=branchcode, categorycode=categorycode, itemtype=itemtype
    )
    if rule is not None and str(rule).strip() != "":
        return str(rule).strip()
    value = sysprefs.get("useDaysMode") if sysprefs is not None else None
    return (value or "").strip() or DEFAULT_DAYS_MODE


def hard_due_date(
    txn, *, branchcode: str | None, categorycode: str | None, itemtype: str | None
) -> tuple[date | None, int]:
    """Koha's ``GetHardDueDate``: ``(date or None, compare)``; compare -1, 0 or 1 (an unset
    compare counts as 0, "exactly", as Perl's ``undef == 0``)."""
    dims = {"branchcode": branchcode, "categorycode": categorycode, "itemtype": itemtype}
    value = get_rule(txn, "hardduedate", **dims)
    if value is None or str(value).strip() == "":
        return None, 0
    try:
        day = date.fromisoformat(str(value).strip()[:10])
    except ValueError:
        return None, 0
    compare = rule_int(txn, "hardduedatecompare", default=0, **dims) or 0
    return day, max(-1, min(1, compare))


def _end_of_day(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 23, 59)


def calc_date_due(
    txn,
    *,
    start: datetime,
    patron: dict,
    item: dict,
    branchcode: str | None,
    sysprefs,
    renewal: bool = False,
) -> datetime:
    """The due date (naive local datetime, seconds 00) of a loan that starts at ``start``.

    ``start`` is the checkout instant; for a renewal the base the caller chose (the old due
    date or now). ``branchcode`` is the ``CircControl`` branch: its rules and its calendar.
    """
    dims = _dims(branchcode, patron, item)
    length, unit = loan_length(txn, renewal=renewal, **dims)
    mode = days_mode(txn, sysprefs, **dims)
    base = start.replace(tzinfo=None, second=0, microsecond=0)
    calendar = None
    step = timedelta(hours=length) if unit == "hours" else timedelta(days=length)
    due = base + step
    if mode != "Days":
        calendar = load_calendar(txn, branchcode)
        try:
            due = calendar.add_duration(base, length, unit, mode)
        except NoOpenDays:
            # Closed on every day (Koha's checkout dies here): the calendar is ignored.
            calendar = None
    if unit == "days":
        due = due.replace(hour=23, minute=59)

    hard, compare = hard_due_date(txn, **dims)
    if hard is not None:
        hard_due = _end_of_day(hard)
        order = (hard_due > due) - (hard_due < due)
        if compare == 0 or compare == order:
            due = hard_due

    if sysprefs is not None and sysprefs.flag("ReturnBeforeExpiry"):
        try:
            expiry = as_date(patron.get("dateexpiry"))
        except ValueError:
            expiry = None
        if expiry is not None and due > _end_of_day(expiry):
            due = _end_of_day(expiry)
        if calendar is not None and calendar.is_holiday(due):
            try:
                due = calendar.prev_open_day(due, 1, mode)
            except NoOpenDays:
                pass
    return due.replace(second=0, microsecond=0)


def too_soon_to_renew(
    txn,
    *,
    now: datetime,
    due: datetime,
    before: int,
    branchcode: str | None,
    categorycode: str | None,
    itemtype: str | None,
) -> bool:
    """Whether ``now`` is earlier than ``norenewalbefore`` (``before``) units ahead of ``due``,
    in the loan's ``lengthunit`` (Koha's ``GetSoonestRenewDate``): hours for an hourly loan,
    else whole days."""
    unit = (
        get_rule(
            txn, "lengthunit", branchcode=branchcode, categorycode=categorycode, itemtype=itemtype
        )
        or ""
    ).strip()
    if unit == "hours":
        return now < due - timedelta(hours=before)
    return now.date() < due.date() - timedelta(days=before)
