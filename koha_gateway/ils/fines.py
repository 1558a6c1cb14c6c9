"""Overdue fines: Koha's ``C4::Overdues::CalcFine`` and ``get_chargeable_units``.

The rules (for the ``CircControl`` branch, the patron's category and the item type) are Koha's:
``lengthunit`` (fines count days, or hours for hourly loans), ``fine`` (the amount per charge
period), ``chargeperiod`` (units per period; no period, no fine), ``chargeperiod_charge_at``
(1: a period is charged when it starts, else when it ends), ``firstremind`` (grace units: no
fine while the loan is at most that late), ``overduefinescap`` and
``cap_fine_to_replacement_price``. The preferences: ``finesCalendar`` (``noFinesWhenClosed``,
Koha's default, does not count the days the branch is closed; ``ignoreCalendar`` counts every
day) and ``FinesIncludeGracePeriod`` (default on: once the grace is over, the grace units are
charged too).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from koha_gateway.ils import perl_true, round_money
from koha_gateway.ils.calendar import Calendar, load_calendar
from koha_gateway.ils.rules import get_rule, rule_float, rule_int

__all__ = ["Fine", "calc_fine", "chargeable_units"]


@dataclass(frozen=True)
class Fine:
    """``amount`` (rounded to cents), ``units`` late (days or hours, closed days left out
    per ``finesCalendar``) and ``units_minus_grace``, as ``CalcFine`` returns them."""

    amount: float
    units: int
    units_minus_grace: int


def chargeable_units(
    unit: str, due: datetime, returned: datetime, calendar: Calendar | None
) -> int:
    """Koha's ``get_chargeable_units``: days (or hours) from ``due`` to ``returned``; with a
    ``calendar`` (``finesCalendar`` = ``noFinesWhenClosed``) its closed days do not count.

    Days are calendar-day differences (a loan due at 23:59 and returned the next morning is one
    day late). Hours are whole hours; a return less than an hour late counts as one hour.
    """
    if returned <= due:
        return 0
    if unit == "hours":
        if calendar is not None:
            late = calendar.hours_between(due, returned)
        else:
            late = returned - due
        seconds = late.total_seconds()
        hours = int(seconds / 3600)
        if hours == 0 and seconds > 0:
            return 1
        return hours
    if calendar is not None:
        return calendar.days_between(due, returned)
    return (returned.date() - due.date()).days


def calc_fine(
    txn,
    *,
    item: dict,
    categorycode: str | None,
    branchcode: str | None,
    due: datetime,
    returned: datetime,
    sysprefs,
) -> Fine:
    """The overdue fine of ``item`` due at ``due`` and returned (or counted) at ``returned``
    (Koha's ``CalcFine``); ``branchcode`` gives both the rules and the calendar."""
    due = due.replace(tzinfo=None)
    returned = returned.replace(tzinfo=None)
    if not due < returned:
        return Fine(0.0, 0, 0)
    dims = {"branchcode": branchcode, "categorycode": categorycode, "itemtype": item.get("itype")}
    unit = "hours" if (get_rule(txn, "lengthunit", **dims) or "").strip() == "hours" else "days"
    mode = (sysprefs.get("finesCalendar") if sysprefs is not None else None) or (
        "noFinesWhenClosed"
    )
    calendar = load_calendar(txn, branchcode) if mode == "noFinesWhenClosed" else None
    units = chargeable_units(unit, due, returned, calendar)
    grace = rule_int(txn, "firstremind", default=0, **dims) or 0
    units_minus_grace = units - grace
    amount = 0.0
    period = rule_int(txn, "chargeperiod", default=0, **dims) or 0
    if period > 0 and units_minus_grace > 0:
        include_grace = True
        if sysprefs is not None and sysprefs.get("FinesIncludeGracePeriod") is not None:
            include_grace = sysprefs.flag("FinesIncludeGracePeriod")
        counted = units if include_grace else units_minus_grace
        periods = counted / period
        charge_at = rule_int(txn, "chargeperiod_charge_at", default=0, **dims)
        periods = math.ceil(periods) if charge_at == 1 else math.floor(periods)
        amount = periods * (rule_float(txn, "fine", default=0.0, **dims) or 0.0)
    cap = rule_float(txn, "overduefinescap", default=None, **dims)
    if cap and amount > cap:
        amount = cap
    if perl_true(get_rule(txn, "cap_fine_to_replacement_price", **dims)):
        price = float(item.get("replacementprice") or 0)
        if price and amount > price:
            amount = price
    return Fine(round_money(max(0.0, amount)), units, units_minus_grace)
