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
``CalcDateDue`` with ``CircControl``), closing a loan (``MarkIssueReturned``) and the rows Koha
writes beside the circulation itself: ``statistics`` (``UpdateStats``), ``action_logs``
(``logaction``), search-index requests (``zebraqueue`` / the Elasticsearch job), the holds-queue
job of RealTimeHoldsQueue and ``items_last_borrower`` (StoreLastBorrower).
Every function takes the open transaction ``txn`` first, then the
:class:`~koha_gateway.ils.context.CircContext` where it writes, then plain values.
"""

from __future__ import annotations

import json
import threading
import weakref
from datetime import date, datetime, timedelta
from typing import Any

from koha_gateway.ils import reference, sql_datetime
from koha_gateway.ils.rules import rule_int

__all__ = [
    "as_date",
    "as_datetime",
    "circ_control_branch",
    "end_of_day",
    "format_sql_datetime",
    "holds_queue_update",
    "loan_period_days",
    "log_found_item",
    "patron_display_name",
    "index_biblio",
    "log_action",
    "mark_issue_returned",
    "perl_dump",
    "renewal_period_days",
    "store_last_borrower",
    "wants_log",
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


#: ``YYYY-MM-DD HH:MM:SS``, the way datetimes are stored.
format_sql_datetime = sql_datetime


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


#: ``statistics.type`` values of circulation rows (the others are account rows).
CIRCULATION_STATISTICS = ("issue", "renew", "return", "localuse", "onsite_checkout", "recall")


def write_statistic(
    txn,
    ctx,
    kind: str,
    *,
    branch: str | None,
    item: dict | None = None,
    patron: dict | None = None,
    value: float | None = 0,
    other: str = "",
) -> None:
    """One row of Koha's ``statistics`` (``C4::Stats::UpdateStats`` / ``Koha::Statistic``).

    Circulation types (``issue``, ``renew``, ``return``, ``localuse``) carry the item's
    number, effective item type, location and collection code and the patron's number and
    category (NULL when there is no patron, e.g. the return of an item that was not on loan);
    account types (``payment``, ``writeoff``) carry the patron and the (negative) amount, with
    ``itemtype`` and ``ccode`` empty as Koha leaves them. ``datetime`` is the request's
    instant, ``other`` empty, ``interface`` the context's (``sip``).
    """
    circulation = kind in CIRCULATION_STATISTICS
    item = item or {}
    txn.execute_later(
        "INSERT INTO statistics (datetime, branch, value, type, other, itemnumber, itemtype, "
        "location, borrowernumber, ccode, categorycode, interface) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            ctx.now_sql,
            branch,
            value,
            kind,
            other,
            item.get("itemnumber"),
            item.get("itype") if circulation else "",
            item.get("location"),
            patron.get("borrowernumber") if patron else None,
            item.get("ccode") if circulation else "",
            patron.get("categorycode") if patron else None,
            ctx.interface,
        ),
    )


def _perl_scalar(value: Any) -> str:
    if value is None:
        return "undef"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    text = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{text}'"


def perl_dump(values: dict[str, Any]) -> str:
    """``values`` the way Koha logs a hash (``Data::Dumper`` with sorted keys)."""
    pad = " " * 10
    lines = ["$VAR1 = {"]
    keys = sorted(values)
    for index, key in enumerate(keys):
        comma = "," if index < len(keys) - 1 else ""
        lines.append(f"{pad}'{key}' => {_perl_scalar(values[key])}{comma}")
    lines.append(" " * 8 + "};")
    return "\n".join(lines) + "\n"


def _user_column(txn) -> str:
    """``action_logs.user``, quoted for the engine (a reserved word on PostgreSQL)."""
    name = txn.engine.name
    if name == "postgresql":
        return '"user"'
    if name == "mysql":
        return "`user`"
    return "user"


def log_action(txn, ctx, module: str, action: str, obj: int | None, info: str | None) -> None:
    """One ``action_logs`` row (Koha's ``C4::Log::logaction``): ``user`` is the staff patron
    of the session (0 without one), ``interface`` the context's; the caller checks the
    preference that asks for it (IssueLog, ReturnLog, RenewalLog, HoldsLog, FinesLog)."""
    txn.execute_later(
        f"INSERT INTO action_logs (timestamp, {_user_column(txn)}, module, action, object, "
        "info, interface) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            ctx.now_sql,
            ctx.staff_borrowernumber or 0,
            module,
            action,
            obj,
            info,
            ctx.interface,
        ),
    )


#: Koha's defaults (sysprefs.sql) for the preferences that ask for log rows.
LOG_PREFERENCE_DEFAULTS = {
    "IssueLog": True,
    "ReturnLog": True,
    "RenewalLog": False,
    "HoldsLog": False,
    "FinesLog": True,
    "CataloguingLog": True,
}


def wants_log(ctx, preference: str) -> bool:
    """Whether the log preference is on (Koha's default when the preference is not set)."""
    return ctx.flag(preference, LOG_PREFERENCE_DEFAULTS.get(preference, False))


def log_found_item(txn, ctx, itemnumber: int) -> None:
    """CataloguingLog (Koha's default: on) when a lost item is seen again: ``ModDateLastSeen``
    stores the item with ``log_action`` only when it clears ``itemlost`` (AddReturn, and
    CanBookBeIssued's local use), so ``Koha::Item->store`` logs ``CATALOGUING`` ``MODIFY``,
    object the itemnumber, info ``item `` and the item's whole row as stored (``Data::Dumper``,
    sorted keys). Every other item store of the circulation passes ``log_action => 0``.

    Call after the item's UPDATE: the row is read back (its ``timestamp`` is the database's),
    one round trip, only for a lost item found with the preference on."""
    if not wants_log(ctx, "CataloguingLog"):
        return
    row = txn.one("SELECT * FROM items WHERE itemnumber = ?", (itemnumber,))
    if row is not None:
        log_action(txn, ctx, "CATALOGUING", "MODIFY", itemnumber, "item " + perl_dump(row))


def index_biblio(txn, ctx, biblionumber: int | None) -> None:
    """Queue a search-index update of the record, as ``Koha::SearchEngine::Indexer`` does
    after an item changed (``index_records(biblionumber, 'specialUpdate', 'biblioserver')``).

    ``zebraqueue``: one pending row per record, operation and server (``C4::Biblio::ModZebra``
    adds none when one is already waiting). With SearchEngine ``Elasticsearch`` Koha also
    enqueues an ``update_elastic_index`` background job (queue ``elastic_index``), one per
    call, and still fills ``zebraqueue``.
    """
    if biblionumber is None:
        return
    engine = ctx.pref("SearchEngine", "Zebra") or "Zebra"
    if engine == "Elasticsearch":
        enqueue_job(
            txn,
            ctx,
            "update_elastic_index",
            "elastic_index",
            {"record_server": "biblioserver", "record_ids": [biblionumber]},
        )
    # One statement: the row is inserted unless one is already waiting.
    txn.execute_later(
        "INSERT INTO zebraqueue (biblio_auth_number, operation, server, done, time) "
        "SELECT ?, 'specialUpdate', 'biblioserver', 0, ? FROM (SELECT 1 AS one) x "
        "WHERE NOT EXISTS (SELECT 1 FROM zebraqueue WHERE server = 'biblioserver' "
        "AND biblio_auth_number = ? AND operation = 'specialUpdate' AND done = 0)",
        (biblionumber, ctx.now_sql, biblionumber),
    )


def enqueue_job(txn, ctx, job_type: str, queue: str, data: dict, size: int = 1) -> None:
    """One ``background_jobs`` row as ``Koha::BackgroundJob->enqueue`` stores it: status
    ``new``, the job's type, queue and size, its arguments as JSON in ``data``, the staff
    patron of the session as ``borrowernumber``, ``context`` the staff patron's number, the
    library and the interface (Koha serialises its whole user environment there), enqueued
    now. Deferred: nothing reads it back."""
    txn.execute_later(
        "INSERT INTO background_jobs (status, size, borrowernumber, type, queue, data, "
        "context, enqueued_on) VALUES ('new', ?, ?, ?, ?, ?, ?, ?)",
        (
            size,
            ctx.staff_borrowernumber,
            job_type,
            queue,
            json.dumps(data),
            json.dumps(
                {
                    "number": ctx.staff_borrowernumber,
                    "branch": ctx.branch,
                    "interface": ctx.interface,
                },
                sort_keys=True,
            ),
            ctx.now_sql,
        ),
    )


def holds_queue_update(txn, ctx, biblionumber: int | None) -> None:
    """With RealTimeHoldsQueue on (Koha's default: off), queue the rebuild of the record's
    holds queue: ``Koha::BackgroundJob::BatchUpdateBiblioHoldsQueue->new->enqueue({
    biblio_ids => [biblionumber] })``, a job of type ``update_holds_queue_for_biblios`` in
    the ``default`` queue, size 1, ``data`` ``{"biblio_ids": [biblionumber]}``.

    Koha enqueues one at the end of AddIssue, of AddReturn when a loan was returned, from
    AddRenewal's item store, from AddReserve and from ``Koha::Hold->fill`` and ``->cancel``
    (so a checkout that fills the patron's hold queues two)."""
    if ctx is None or biblionumber is None or not ctx.flag("RealTimeHoldsQueue"):
        return
    enqueue_job(
        txn, ctx, "update_holds_queue_for_biblios", "default", {"biblio_ids": [biblionumber]}
    )


_last_borrower_table: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_last_borrower_lock = threading.Lock()


def _has_last_borrower_table(txn) -> bool:
    """Whether ``items_last_borrower`` exists: every Koha database has it; the gateway's own
    databases do not (no migration creates it). Looked up once per database."""
    with _last_borrower_lock:
        known = _last_borrower_table.get(txn.engine)
    if known is None:
        from koha_gateway.db import koha

        known = koha.has_table(txn, "items_last_borrower")
        with _last_borrower_lock:
            _last_borrower_table[txn.engine] = known
    return known


def store_last_borrower(txn, ctx, itemnumber: int, borrowernumber: int) -> None:
    """StoreLastBorrower (Koha's default: off): ``MarkIssueReturned`` records who returned the
    item, ``$item->last_returned_by($patron)``: one ``items_last_borrower`` row per item (its
    UNIQUE key), created or given the new borrower (DBIx::Class ``update_or_create``);
    ``created_on`` is set when the row is created or its borrower changes, and left alone
    when the same patron returns the item again (no column changes, no UPDATE).

    Two deferred statements, whatever the engine: the update, then the insert unless a row
    exists. ``created_on`` is assigned before ``borrowernumber`` so that it compares the old
    borrower under MariaDB's left-to-right ``SET`` as under standard SQL. Nothing is written
    where the table does not exist (the gateway's own databases)."""
    if ctx is None or not ctx.flag("StoreLastBorrower") or not _has_last_borrower_table(txn):
        return
    txn.execute_later(
        "UPDATE items_last_borrower SET created_on = CASE WHEN borrowernumber = ? "
        "THEN created_on ELSE ? END, borrowernumber = ? WHERE itemnumber = ?",
        (borrowernumber, ctx.now_sql, borrowernumber, itemnumber),
    )
    txn.execute_later(
        "INSERT INTO items_last_borrower (itemnumber, borrowernumber, created_on) "
        "SELECT ?, ?, ? FROM (SELECT 1 AS one) x WHERE NOT EXISTS "
        "(SELECT 1 FROM items_last_borrower WHERE itemnumber = ?)",
        (itemnumber, borrowernumber, ctx.now_sql, itemnumber),
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


#: The columns ``MarkIssueReturned`` copies from ``issues`` to ``old_issues``.
LOAN_COLUMNS = (
    "issue_id",
    "borrowernumber",
    "issuer_id",
    "itemnumber",
    "date_due",
    "branchcode",
    "returndate",
    "lastreneweddate",
    "renewals_count",
    "unseen_renewals",
    "auto_renew",
    "auto_renew_error",
    "issuedate",
    "onsite_checkout",
    "note",
    "notedate",
    "noteseen",
)


def mark_issue_returned(
    txn, loan: dict, returned_sql: str, *, clear_onloan: bool = True, ctx=None
) -> None:
    """Close a loan (Koha's ``MarkIssueReturned``): the row is copied to ``old_issues`` with
    the same ``issue_id``, every column and ``returndate`` (Koha sets it on ``issues`` first;
    the row written is the same), then deleted, and ``items.onloan`` becomes NULL (unless the
    caller writes the item itself: ``clear_onloan=False``); with ``ctx``, StoreLastBorrower's
    row (:func:`store_last_borrower`). Fines and the rest of the return are the caller's."""
    columns = ", ".join(LOAN_COLUMNS)
    values = ", ".join("?" if column == "returndate" else column for column in LOAN_COLUMNS)
    txn.execute_later(
        f"INSERT INTO old_issues ({columns}) SELECT {values} FROM issues WHERE issue_id = ?",
        (returned_sql, loan["issue_id"]),
    )
    txn.execute_later("DELETE FROM issues WHERE issue_id = ?", (loan["issue_id"],))
    if clear_onloan:
        txn.execute_later(
            "UPDATE items SET onloan = NULL WHERE itemnumber = ?", (loan["itemnumber"],)
        )
    store_last_borrower(txn, ctx, loan["itemnumber"], loan["borrowernumber"])


def branch_exists(txn, branchcode: str | None) -> bool:
    """Whether ``branchcode`` is a library (``branches``)."""
    if not branchcode:
        return False
    snapshot = reference.cached(txn)
    if snapshot is not None:
        return snapshot.has_branch(branchcode)
    return (
        txn.one("SELECT branchcode FROM branches WHERE branchcode = ?", (branchcode,)) is not None
    )


def branch_codes(txn) -> set[str]:
    """Every library's code."""
    return {row["branchcode"] for row in txn.query("SELECT branchcode FROM branches")}
