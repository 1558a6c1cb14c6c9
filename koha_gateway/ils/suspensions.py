"""Suspensions on a late return: Koha's ``_debar_user_on_return`` / ``_calculate_new_debar_dt``
and the ``AddUniqueDebarment`` it calls (``Koha::Patron::Debarments``).

A loan returned after its due date, under a circulation rule ``finedays`` (Perl-true), restricts
the patron until a date computed from the units late (:func:`~koha_gateway.ils.fines.
chargeable_units`: days, or hours for hourly loans; the closed days left out per
``finesCalendar``):

* less the grace ``firstremind``; no suspension unless that leaves a positive number. An hourly
  loan with a grace is never suspended: Koha subtracts a grace of hours from a count of days
  held as a duration of days, which is then never positive;
* times ``finedays`` (times 24 for hourly loans: one hour late is ``finedays`` days);
* divided by ``suspension_chargeperiod`` (rounded down) when that is more than 1;
* capped at ``maxsuspensiondays`` when that is set (even ``0``);
* added to the return date, or, with ``CumulativeRestrictionPeriods`` on and the patron
  restricted (``borrowers.debarred`` as it was before the return), to the expiration of the
  patron's ``SUSPENSION``; counted in open days of the rules library's calendar when
  ``SuspensionsCalendar`` is ``noSuspensionsWhenClosed`` (Koha's default), else in calendar
  days.

The rules are those of ``CircControl`` with the session's library (Koha's userenv branch) for
``PickupLibrary``. The restriction is one ``SUSPENSION`` row per patron: a new one has no
comment, the session's staff patron as ``manager_id`` and ``created`` now; an existing one gets
the later of the two expirations, ``manager_id`` and ``updated`` now (``created`` too, as
MariaDB's ``ON UPDATE`` in Koha's schema makes it). Then ``borrowers.debarred`` and
``debarredcomment`` are recomputed from the restrictions in force (Koha's
``UpdateBorrowerDebarmentFlags``). No ``action_logs`` row, as in the restriction code of the
Koha the schema comes from (newer Koha, whose ``restriction_types`` has ``lift_after_payment``,
logs ``MEMBERS`` ``CREATE_RESTRICTION`` / ``MODIFY_RESTRICTION`` under BorrowersLog). The 10
answer does not change (Koha's SIP checkin ignores the ``Debarred`` message); the next 23/63
reports the patron restricted.

One read (the patron's restrictions) and deferred writes, only when the rule applies.
"""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta

from koha_gateway.ils import perl_true
from koha_gateway.ils.calendar import load_calendar
from koha_gateway.ils.circulation import as_datetime, circ_control_branch
from koha_gateway.ils.fines import chargeable_units
from koha_gateway.ils.rules import get_rule

__all__ = ["FOREVER", "SUSPENSION", "debar_on_return", "debarment_flags", "suspension_until"]

SUSPENSION = "SUSPENSION"
#: ``borrowers.debarred`` of a restriction without an expiration.
FOREVER = "9999-12-31"


def _number(value) -> float | None:
    if value is None or str(value).strip() == "":
        return None
    try:
        return float(str(value).strip())
    except ValueError:
        return None


def _as_date(value) -> date | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        return None


def suspension_until(
    txn,
    ctx,
    *,
    loan: dict,
    item: dict,
    borrower: dict,
    returned_at: datetime,
    read_suspension=None,
) -> date | None:
    """The new expiration of the patron's ``SUSPENSION`` for ``loan`` returned at
    ``returned_at`` (Koha's ``_calculate_new_debar_dt``), or ``None`` when the return brings
    none. ``read_suspension()`` gives the patron's ``SUSPENSION`` row (or ``None``); it is
    only called with ``CumulativeRestrictionPeriods`` on and the patron restricted."""
    due = as_datetime(loan.get("date_due"))
    if due is None:
        return None
    due = due.replace(tzinfo=None)
    returned = returned_at.replace(tzinfo=None)
    if not due < returned:
        return None
    sysprefs = ctx.sysprefs
    branch = circ_control_branch(sysprefs, checkout_branch=ctx.branch, patron=borrower, item=item)
    dims = {
        "branchcode": branch,
        "categorycode": borrower.get("categorycode"),
        "itemtype": item.get("itype"),
    }
    finedays_value = get_rule(txn, "finedays", **dims)
    if not perl_true(finedays_value):
        return None
    finedays = _number(finedays_value) or 0.0
    unit = "hours" if (get_rule(txn, "lengthunit", **dims) or "").strip() == "hours" else "days"
    fines_calendar = ctx.pref("finesCalendar", "noFinesWhenClosed") or "noFinesWhenClosed"
    calendar = load_calendar(txn, branch)
    units = chargeable_units(
        unit, due, returned, calendar if fines_calendar == "noFinesWhenClosed" else None
    )
    grace = int(_number(get_rule(txn, "firstremind", **dims)) or 0)
    if unit == "hours":
        finedays *= 24
        # Koha: a duration of `units` days less one of `grace` hours is positive only
        # without a grace.
        if grace != 0 or units <= 0:
            return None
        late = units
    else:
        late = units - grace
        if late <= 0:
            return None
    days = late * finedays
    period = _number(get_rule(txn, "suspension_chargeperiod", **dims))
    if period is not None and period > 1:
        days = math.floor(days / period)
    cap = get_rule(txn, "maxsuspensiondays", **dims)
    if cap is not None and str(cap) != "":
        limit = _number(cap)
        if limit is not None and limit < days:
            days = limit
    days = int(days)
    start = returned
    if ctx.flag("CumulativeRestrictionPeriods") and perl_true(borrower.get("debarred")):
        current = read_suspension() if read_suspension is not None else None
        if current is not None:
            expiration = _as_date(current.get("expiration"))
            start = (
                datetime.combine(expiration, datetime.min.time())
                if expiration is not None
                else ctx.now  # Koha: dt_from_string(undef) is now
            )
    mode = ctx.pref("SuspensionsCalendar", "noSuspensionsWhenClosed") or ""
    if mode == "noSuspensionsWhenClosed":
        until = calendar.add_days(start, days, "Calendar")
    else:
        until = start + timedelta(days=days)
    return until.date()


def debarment_flags(rows: list[dict], today: str) -> tuple[str | None, str | None]:
    """``(borrowers.debarred, borrowers.debarredcomment)`` from the patron's restrictions
    (Koha's ``UpdateBorrowerDebarmentFlags``): of those in force on ``today`` (no expiration
    or a later one), the latest expiration (``9999-12-31`` when one has none) and the
    comments joined by newlines; ``(None, None)`` when none is in force."""
    active = [
        row for row in rows if row["expiration"] is None or str(row["expiration"])[:10] > today
    ]
    if not active:
        return None, None
    if any(row["expiration"] is None for row in active):
        until = FOREVER
    else:
        until = max(str(row["expiration"])[:10] for row in active)
    comments = [str(row["comment"]) for row in active if row["comment"] is not None]
    return until, ("\n".join(comments) if comments else None)


def debar_on_return(
    txn, ctx, *, loan: dict, item: dict, borrower: dict, returned_at: datetime
) -> str | None:
    """Suspend the patron of a late ``loan`` as Koha's ``AddReturn`` does (see the module
    docstring). Returns the restriction's expiration (``YYYY-MM-DD``), or ``None`` when the
    return suspends nobody (on time, no ``finedays`` rule, within the grace)."""
    borrowernumber = borrower.get("borrowernumber")
    if returned_at.tzinfo is not None:
        returned_at = returned_at.replace(tzinfo=None)
    due = as_datetime(loan.get("date_due"))
    if borrowernumber is None or due is None or not due < returned_at:
        return None  # on time: the common case, decided without a rule lookup
    rows: list[dict] = []
    read = False

    def restrictions() -> list[dict]:
        nonlocal rows, read
        if not read:
            rows = [
                dict(row)
                for row in txn.query(
                    "SELECT borrower_debarment_id, type, expiration, comment "
                    "FROM borrower_debarments WHERE borrowernumber = ? "
                    "ORDER BY borrower_debarment_id",
                    (borrowernumber,),
                )
            ]
            read = True
        return rows

    def current() -> dict | None:
        return next((row for row in restrictions() if row["type"] == SUSPENSION), None)

    until = suspension_until(
        txn,
        ctx,
        loan=loan,
        item=item,
        borrower=borrower,
        returned_at=returned_at,
        read_suspension=current,
    )
    if until is None:
        return None
    expiration = until.isoformat()
    existing = current()
    if existing is not None:
        kept = _as_date(existing["expiration"])
        if kept is not None and kept.isoformat() > expiration:
            expiration = kept.isoformat()
        txn.execute_later(
            "UPDATE borrower_debarments SET expiration = ?, manager_id = ?, updated = ?, "
            "created = ? WHERE borrower_debarment_id = ?",
            (
                expiration,
                ctx.staff_borrowernumber,
                ctx.now_sql,
                ctx.now_sql,
                existing["borrower_debarment_id"],
            ),
        )
        existing["expiration"] = expiration
    else:
        txn.execute_later(
            "INSERT INTO borrower_debarments (borrowernumber, expiration, type, comment, "
            "manager_id, created, updated) VALUES (?, ?, ?, NULL, ?, ?, NULL)",
            (borrowernumber, expiration, SUSPENSION, ctx.staff_borrowernumber, ctx.now_sql),
        )
        rows.append({"type": SUSPENSION, "expiration": expiration, "comment": None})
    debarred, comment = debarment_flags(rows, ctx.today)
    txn.execute_later(
        "UPDATE borrowers SET debarred = ?, debarredcomment = ? WHERE borrowernumber = ?",
        (debarred, comment, borrowernumber),
    )
    return expiration
