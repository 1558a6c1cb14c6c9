"""Shared pieces of the circulation transactions (Koha's ``C4::Circulation`` helpers).

The transactions themselves live next to this module:

- :mod:`koha_gateway.ils.checkout` -- checkout, renewal and renew-all (SIP2 11, 29, 65);
- :mod:`koha_gateway.ils.checkin` -- return, overdue fines, hold capture, transfers, sort bins
  (SIP2 09);
- :mod:`koha_gateway.ils.holds` -- placing, cancelling, changing, capturing and filling holds
  (SIP2 15, and the hold side of 11 and 09);
- :mod:`koha_gateway.ils.accounts` -- charges and payments (SIP2 37, and the fees of 11, 29, 09).

This module holds what they share: date handling (dates are ISO strings in the server's local
time, as Koha stores them; the clock is never read here), the due-date rule (Koha's
``CalcDateDue`` with ``CircControl``) and the ``statistics`` journal.
Every function takes the open transaction ``txn`` first and plain values after it.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from koha_gateway.ils.rules import rule_int

__all__ = [
    "as_date",
    "as_datetime",
    "circ_control_branch",
    "end_of_day",
    "format_sql_datetime",
    "loan_period_days",
    "patron_display_name",
    "renewal_period_days",
    "write_statistic",
]

#: Koha's default loan length when no ``issuelength`` rule applies (a same-day loan).
DEFAULT_ISSUELENGTH = 0


def as_datetime(value: Any) -> datetime | None:
    """A naive local datetime from a database value (ISO string, ``date`` or ``datetime``).

    A bare date means the end of that day (23:59:00), as Koha reads a due date without time.
    """
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.replace(tzinfo=None, microsecond=0)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, 23, 59)
    text = str(value).strip()
    if len(text) <= 10:
        day = date.fromisoformat(text)
        return datetime(day.year, day.month, day.day, 23, 59)
    return datetime.fromisoformat(text[:19].replace("T", " "))


def as_date(value: Any) -> date | None:
    """The calendar day of a database date or datetime value."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value).strip()[:10])


def end_of_day(day: date) -> datetime:
    """Koha's due time for day-based loans: 23:59 of ``day``."""
    return datetime(day.year, day.month, day.day, 23, 59)


def format_sql_datetime(value: datetime) -> str:
    """``YYYY-MM-DD HH:MM:SS``, the way datetimes are stored."""
    return value.strftime("%Y-%m-%d %H:%M:%S")


def circ_control_branch(sysprefs, *, checkout_branch: str, patron: dict, item: dict) -> str:
    """The branch whose circulation rules apply (Koha's ``CircControl`` preference).

    ``PickupLibrary``: the library where the transaction happens (the SIP institution or AP);
    ``PatronLibrary``: the patron's home library; ``ItemHomeLibrary`` (Koha's default): the
    item's home library.
    """
    mode = (sysprefs.get("CircControl", "ItemHomeLibrary") if sysprefs is not None else None) or (
        "ItemHomeLibrary"
    )
    if mode == "PickupLibrary":
        return checkout_branch
    if mode == "PatronLibrary":
        return patron.get("branchcode") or checkout_branch
    return item.get("homebranch") or checkout_branch


def loan_period_days(txn, *, branchcode: str, categorycode: str | None, itemtype: str | None):
    """The ``issuelength`` rule in days (Koha's ``GetLoanLength``; 0 when no rule applies)."""
    value = rule_int(
        txn,
        "issuelength",
        branchcode=branchcode,
        categorycode=categorycode,
        itemtype=itemtype,
        default=DEFAULT_ISSUELENGTH,
    )
    return max(0, value or 0)


def renewal_period_days(txn, *, branchcode: str, categorycode: str | None, itemtype: str | None):
    """The ``renewalperiod`` rule in days; the loan length when it is not set (Koha)."""
    value = rule_int(
        txn,
        "renewalperiod",
        branchcode=branchcode,
        categorycode=categorycode,
        itemtype=itemtype,
        default=None,
    )
    if value is None:
        return loan_period_days(
            txn, branchcode=branchcode, categorycode=categorycode, itemtype=itemtype
        )
    return max(0, value)


def write_statistic(
    txn,
    *,
    now: str,
    kind: str,
    branch: str | None,
    item: dict | None = None,
    borrowernumber: int | None = None,
    value: float | None = None,
) -> None:
    """One row of Koha's ``statistics`` journal (types ``issue``, ``renew``, ``return``,
    ``localuse``, ``payment``, ``writeoff``), with ``interface`` = ``sip``."""
    txn.execute(
        "INSERT INTO statistics (datetime, branch, value, type, itemnumber, itemtype, "
        "borrowernumber, interface) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            now,
            branch,
            value,
            kind,
            item.get("itemnumber") if item else None,
            item.get("itype") if item else None,
            borrowernumber,
            "sip",
        ),
    )


def patron_display_name(patron: dict | None) -> str:
    """``firstname surname`` (surname alone when there is no first name)."""
    if not patron:
        return ""
    first = (patron.get("firstname") or "").strip()
    last = (patron.get("surname") or "").strip()
    return f"{first} {last}".strip()


def add_days(day: date, days: int) -> date:
    """``day`` plus ``days`` calendar days."""
    return day + timedelta(days=days)


def mark_issue_returned(txn, loan: dict, returned_sql: str) -> None:
    """Move a loan from ``issues`` to ``old_issues`` (Koha's ``MarkIssueReturned``); no fines."""
    txn.execute(
        "INSERT INTO old_issues (issue_id, borrowernumber, itemnumber, date_due, branchcode, "
        "issuedate, returndate, lastreneweddate, renewals_count, onsite_checkout) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            loan["issue_id"],
            loan["borrowernumber"],
            loan["itemnumber"],
            loan["date_due"],
            loan.get("branchcode"),
            loan["issuedate"],
            returned_sql,
            loan.get("lastreneweddate"),
            loan.get("renewals_count") or 0,
            loan.get("onsite_checkout") or 0,
        ),
    )
    txn.execute("DELETE FROM issues WHERE issue_id = ?", (loan["issue_id"],))
