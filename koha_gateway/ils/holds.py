"""Holds (Koha's ``reserves``): which hold an item can fill, capture, fill, place, cancel, alter.

Implements the hold side of 3M SIP2 2.00 Hold (15), Checkout (11) and Checkin (09) with Koha's
rules (``C4::Reserves``):

- ``reserves.found`` is NULL for a pending hold, ``'W'`` waiting on the hold shelf, ``'T'`` in
  transit to the pickup library, ``'P'`` in processing. A found hold is attached to one item
  (``itemnumber``) and has priority 0; pending holds are numbered 1..n per title.
- A finished hold moves to ``old_reserves``: filled (found ``'F'``) when the patron checks the
  item out, or cancelled (``cancellationdate``, ``cancellation_reason``).

Every function takes the open transaction ``txn`` and plain values; the clock is never read.
"""

from __future__ import annotations

from dataclasses import dataclass

from koha_gateway.ils import reference
from koha_gateway.ils.circulation import (
    add_days,
    as_date,
    holds_queue_update,
    log_action,
    perl_dump,
    wants_log,
)
from koha_gateway.ils.patrons import update_lastseen
from koha_gateway.ils.rules import rule_int

__all__ = [
    "CANCEL_WITHOUT_HOLD",
    "FOUND_STATES",
    "HoldOutcome",
    "alter_hold",
    "archive_hold",
    "available_to_patron",
    "cancel_hold",
    "capture_hold",
    "fill_hold",
    "find_patron_hold",
    "holds_for_item",
    "lock_title",
    "place_hold",
    "renumber_priorities",
]

#: ``reserves.found`` values of a hold that is attached to an item.
FOUND_STATES = ("W", "T", "P")

_RESERVE_COLUMNS = (
    "reserve_id, borrowernumber, reservedate, biblionumber, itemnumber, item_level_hold, "
    "branchcode, priority, found, waitingdate, expirationdate, suspend, timestamp"
)


@dataclass
class HoldOutcome:
    """The result of placing, cancelling or changing a hold (SIP2 15 -> 16).

    ``ok`` is the 16 ``ok`` flag; ``hold`` the affected ``reserves`` row (after the change) or
    ``None``; ``queue_position`` the hold's priority (BR); ``message`` the screen message (AF).
    """

    ok: bool
    message: str | None = None
    hold: dict | None = None
    queue_position: int | None = None


def _reserve_rows(txn, where: str, params: tuple, *, lock: bool) -> list[dict]:
    sql = f"SELECT {_RESERVE_COLUMNS} FROM reserves WHERE {where}"
    if lock:
        sql += txn.for_update
    return [dict(row) for row in txn.query(sql, params)]


def _hold_sort_key(hold: dict) -> tuple:
    return (hold.get("priority") or 0, hold.get("reserve_id") or 0)


def _is_active(hold: dict, today: str, lookahead_days: int = 0) -> bool:
    """A pending hold that can be filled today: not suspended, not expired, and started (or
    starting within ``lookahead_days``, Koha's ConfirmFutureHolds look-ahead at checkin)."""
    if hold.get("suspend"):
        return False
    start = as_date(hold.get("reservedate"))
    if start is not None and start > add_days(as_date(today), max(0, lookahead_days)):
        return False
    expiry = as_date(hold.get("expirationdate"))
    return expiry is None or expiry >= as_date(today)


def holds_for_item(
    txn, item: dict, today: str, *, lock: bool = False, lookahead_days: int = 0
) -> list[dict]:
    """The holds ``item`` could satisfy, best first (Koha's ``CheckReserves`` order).

    First the holds already attached to this item (waiting, in transit, processing), then the
    active pending holds on its title that are either title-level or on this very item, by
    priority. An item that is not for loan fills no pending hold. ``lookahead_days`` also
    counts holds that start within that many days (checkin passes ConfirmFutureHolds, as
    Koha's ``AddReturn`` does).
    """
    rows = _reserve_rows(
        txn,
        "biblionumber = ? AND (itemnumber IS NULL OR itemnumber = ?)",
        (item["biblionumber"], item["itemnumber"]),
        lock=lock,
    )
    attached = [
        row
        for row in rows
        if row.get("found") in FOUND_STATES and row.get("itemnumber") == item["itemnumber"]
    ]
    attached.sort(key=lambda row: ({"W": 0, "T": 1, "P": 2}[row["found"]], row["reserve_id"]))
    if item.get("notforloan"):
        return attached
    pending = [
        row for row in rows if not row.get("found") and _is_active(row, today, lookahead_days)
    ]
    pending.sort(key=_hold_sort_key)
    return attached + pending


def renumber_priorities(txn, biblionumber: int) -> None:
    """Number the pending holds of a title 1..n in their current order (Koha's
    ``_FixPriority``); found holds keep priority 0."""
    rows = _reserve_rows(txn, "biblionumber = ? AND found IS NULL", (biblionumber,), lock=False)
    rows.sort(key=_hold_sort_key)
    for position, row in enumerate(rows, start=1):
        if row.get("priority") != position:
            txn.execute_later(
                "UPDATE reserves SET priority = ? WHERE reserve_id = ?",
                (position, row["reserve_id"]),
            )


#: ``reserves`` columns copied to ``old_reserves`` on every engine (Koha copies the whole row).
_ARCHIVED_COLUMNS = (
    "reserve_id",
    "borrowernumber",
    "reservedate",
    "biblionumber",
    "itemnumber",
    "item_level_hold",
    "branchcode",
    "priority",
    "found",
    "waitingdate",
    "expirationdate",
    "suspend",
    "reservenotes",
    "timestamp",
)

#: The further columns the two tables share in Koha's own schema (a Koha database).
_KOHA_ARCHIVED_COLUMNS = (
    "item_group_id",
    "desk_id",
    "notificationdate",
    "reminderdate",
    "cancellationdate",
    "cancellation_reason",
    "patron_expiration_date",
    "lowestPriority",
    "suspend_until",
    "itemtype",
    "non_priority",
)


def _log_hold(txn, ctx, action: str, hold: dict) -> None:
    if ctx is not None and wants_log(ctx, "HoldsLog"):
        log_action(txn, ctx, "HOLDS", action, hold["reserve_id"], perl_dump(hold))


def archive_hold(
    txn,
    ctx,
    hold: dict,
    *,
    found: str | None,
    cancellationdate: str | None = None,
    cancellation_reason: str | None = None,
    itemnumber: int | None = None,
) -> None:
    """Move ``hold`` from ``reserves`` to ``old_reserves`` with the same ``reserve_id`` and
    renumber the title's queue (Koha's ``Koha::Hold->fill`` / ``->cancel``): the row is
    copied as it is, then gets priority 0, ``found`` (``'F'`` when filled), the item that
    filled it, and the cancellation date and reason of a cancelled hold; HoldsLog ``FILL`` or
    ``CANCEL``."""
    lock_title(txn, hold["biblionumber"])
    columns = _ARCHIVED_COLUMNS
    if txn.engine.name == "mysql":
        columns = columns + _KOHA_ARCHIVED_COLUMNS
    names = ", ".join(columns)
    txn.execute_later(
        f"INSERT INTO old_reserves ({names}) SELECT {names} FROM reserves WHERE reserve_id = ?",
        (hold["reserve_id"],),
    )
    txn.execute_later(
        "UPDATE old_reserves SET priority = 0, found = ?, itemnumber = ?, "
        "cancellationdate = ?, cancellation_reason = ? WHERE reserve_id = ?",
        (
            found,
            itemnumber if itemnumber is not None else hold.get("itemnumber"),
            cancellationdate,
            cancellation_reason,
            hold["reserve_id"],
        ),
    )
    txn.execute_later("DELETE FROM reserves WHERE reserve_id = ?", (hold["reserve_id"],))
    renumber_priorities(txn, hold["biblionumber"])
    archived = dict(hold, priority=0, found=found)
    if found == "F":
        archived["itemnumber"] = itemnumber
        _log_hold(txn, ctx, "FILL", archived)
    else:
        archived.update(cancellationdate=cancellationdate, cancellation_reason=cancellation_reason)
        _log_hold(txn, ctx, "CANCEL", archived)
    # Koha::Hold->fill and ->cancel end with the holds-queue job (RealTimeHoldsQueue).
    holds_queue_update(txn, ctx, hold["biblionumber"])


def fill_hold(txn, ctx, hold: dict, item: dict) -> None:
    """The patron takes the item home: the hold is filled (Koha's ``MoveReserve`` ->
    ``Koha::Hold->fill``) and leaves the queue with found ``'F'``."""
    archive_hold(txn, ctx, hold, found="F", itemnumber=item["itemnumber"])


def capture_hold(txn, ctx, hold: dict, item: dict, *, branch: str, pickup_delay_days: int) -> str:
    """Attach ``hold`` to ``item`` returned at ``branch`` (Koha's ``ModReserveAffect``).

    At the pickup library the hold becomes waiting (``'W'``, ``waitingdate`` today,
    ``expirationdate`` today + ``ReservesMaxPickUpDelay``); elsewhere it is in transit
    (``'T'``) and a ``branchtransfers`` row with reason ``Reserve`` is started. Returns the
    new ``found`` value. A hold that is already attached is left as it is (a waiting item
    returned again stays waiting; an item in transit that arrives at its pickup library
    becomes waiting and the transfer is completed; any other open transfer is cancelled).
    HoldsLog: ``MODIFY``.
    """
    today, now = ctx.today, ctx.now_sql
    if hold.get("found") == "W":
        return "W"
    if hold["branchcode"] == branch:
        waiting_until = add_days(as_date(today), max(0, pickup_delay_days)).isoformat()
        txn.execute_later(
            "UPDATE reserves SET found = 'W', itemnumber = ?, priority = 0, waitingdate = ?, "
            "expirationdate = ?, timestamp = ? WHERE reserve_id = ?",
            (item["itemnumber"], today, waiting_until, now, hold["reserve_id"]),
        )
        # A transfer to this library has arrived; one to elsewhere is no longer wanted.
        txn.execute_later(
            "UPDATE branchtransfers SET datearrived = ? WHERE itemnumber = ? AND tobranch = ? "
            "AND datearrived IS NULL AND datecancelled IS NULL",
            (now, item["itemnumber"], branch),
        )
        txn.execute_later(
            "UPDATE branchtransfers SET datecancelled = ? WHERE itemnumber = ? "
            "AND datearrived IS NULL AND datecancelled IS NULL",
            (now, item["itemnumber"]),
        )
        renumber_priorities(txn, hold["biblionumber"])
        _log_hold(
            txn,
            ctx,
            "MODIFY",
            dict(
                hold,
                found="W",
                itemnumber=item["itemnumber"],
                priority=0,
                waitingdate=today,
                expirationdate=waiting_until,
            ),
        )
        return "W"
    if hold.get("found") == "T":
        return "T"
    txn.execute_later(
        "UPDATE reserves SET found = 'T', itemnumber = ?, priority = 0, timestamp = ? "
        "WHERE reserve_id = ?",
        (item["itemnumber"], now, hold["reserve_id"]),
    )
    start_transfer(txn, ctx, item, frombranch=branch, tobranch=hold["branchcode"], reason="Reserve")
    renumber_priorities(txn, hold["biblionumber"])
    _log_hold(txn, ctx, "MODIFY", dict(hold, found="T", itemnumber=item["itemnumber"], priority=0))
    return "T"


def start_transfer(txn, ctx, item: dict, *, frombranch: str, tobranch: str, reason: str):
    """Send ``item`` from ``frombranch`` to ``tobranch`` (Koha's ``ModItemTransfer``): open
    transfers of the item are cancelled first, so at most one is in progress."""
    now = ctx.now_sql
    txn.execute_later(
        "UPDATE branchtransfers SET datecancelled = ? WHERE itemnumber = ? "
        "AND datearrived IS NULL AND datecancelled IS NULL",
        (now, item["itemnumber"]),
    )
    txn.insert(
        "INSERT INTO branchtransfers (itemnumber, frombranch, tobranch, datesent, reason) "
        "VALUES (?, ?, ?, ?, ?)",
        (item["itemnumber"], frombranch, tobranch, now, reason),
        pk="branchtransfer_id",
    )


def find_patron_hold(
    txn, borrowernumber: int, *, item: dict | None, biblionumber: int | None, lock: bool = False
) -> dict | None:
    """The patron's hold on ``item`` or, failing that, on its title (or on ``biblionumber``).

    Koha's SIP cancel only looks at item-level holds; this also finds the title-level hold a
    patron placed from the catalogue, which is what a kiosk user means by "my hold on this".
    """
    if item is not None:
        rows = _reserve_rows(
            txn,
            "borrowernumber = ? AND itemnumber = ?",
            (borrowernumber, item["itemnumber"]),
            lock=lock,
        )
        if rows:
            return min(rows, key=lambda row: row["reserve_id"])
        biblionumber = item["biblionumber"]
    if biblionumber is None:
        return None
    rows = _reserve_rows(
        txn,
        "borrowernumber = ? AND biblionumber = ?",
        (borrowernumber, biblionumber),
        lock=lock,
    )
    if item is not None:
        rows = [row for row in rows if row.get("itemnumber") in (None, item["itemnumber"])]
    if not rows:
        return None
    return min(rows, key=lambda row: row["reserve_id"])


def lock_title(txn, biblionumber: int) -> None:
    """Serialise changes to one title's hold queue: lock its ``biblio`` row (PostgreSQL; a
    SQLite write transaction already holds the database lock)."""
    txn.one(
        "SELECT biblionumber FROM biblio WHERE biblionumber = ?" + txn.for_update, (biblionumber,)
    )


def _branch_exists(txn, branchcode: str | None) -> bool:
    if not branchcode:
        return False
    snapshot = reference.cached(txn)
    if snapshot is not None:
        return snapshot.has_branch(branchcode)
    return (
        txn.one("SELECT branchcode FROM branches WHERE branchcode = ?", (branchcode,)) is not None
    )


def place_hold(
    txn,
    ctx,
    *,
    patron: dict,
    biblionumber: int,
    item: dict | None,
    item_level: bool,
    pickup: str,
    expiration: str | None,
    rules_branch: str,
    itemtype: str | None,
) -> HoldOutcome:
    """Place a hold for ``patron`` on a title, or on ``item`` when ``item_level`` (3M SIP2
    2.00, Hold (15) mode ``+``; Koha's ``AddReserve`` after ``CanItemBeReserved``).

    Refusals: an unknown pickup library; the ``reservesallowed`` limit (0 means the item type
    cannot be held at all); a second hold on the same title; an item already on loan to the
    patron. The new hold gets the priority after every pending hold on the title.
    HoldsLog: ``CREATE``; ``lastseen`` (``hold``).
    """
    today, now = ctx.today, ctx.now_sql
    if not _branch_exists(txn, pickup):
        return HoldOutcome(False, "Invalid pickup location.")
    if expiration is not None and as_date(expiration) < as_date(today):
        return HoldOutcome(False, "Hold expiration date is in the past.")
    allowed = rule_int(
        txn,
        "reservesallowed",
        branchcode=rules_branch,
        categorycode=patron.get("categorycode"),
        itemtype=itemtype,
        default=None,
    )
    if allowed is not None and allowed <= 0:
        return HoldOutcome(False, "Item cannot be placed on hold.")
    existing = txn.one(
        "SELECT reserve_id FROM reserves WHERE borrowernumber = ? AND biblionumber = ?",
        (patron["borrowernumber"], biblionumber),
    )
    if existing is not None:
        return HoldOutcome(False, "Patron already has a hold on this title.")
    if item is not None:
        own_loan = txn.one(
            "SELECT issue_id FROM issues WHERE itemnumber = ? AND borrowernumber = ?",
            (item["itemnumber"], patron["borrowernumber"]),
        )
        if own_loan is not None:
            return HoldOutcome(False, "Item already checked out to you.")
    if allowed is not None:
        held = txn.scalar(
            "SELECT COUNT(*) FROM reserves WHERE borrowernumber = ?",
            (patron["borrowernumber"],),
        )
        if int(held or 0) >= allowed:
            return HoldOutcome(False, "Too many holds.")
    # Lock the title so that two kiosks placing holds at once get distinct priorities.
    lock_title(txn, biblionumber)
    queue = _reserve_rows(txn, "biblionumber = ?", (biblionumber,), lock=False)
    priority = 1 + sum(1 for row in queue if not row.get("found"))
    reserve_id = txn.insert(
        "INSERT INTO reserves (borrowernumber, reservedate, biblionumber, itemnumber, "
        "item_level_hold, branchcode, priority, found, expirationdate, suspend, timestamp) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?, 0, ?)",
        (
            patron["borrowernumber"],
            today,
            biblionumber,
            item["itemnumber"] if item_level and item is not None else None,
            1 if item_level else 0,
            pickup,
            priority,
            expiration,
            now,
        ),
        pk="reserve_id",
    )
    hold = _reserve_rows(txn, "reserve_id = ?", (reserve_id,), lock=False)[0]
    _log_hold(txn, ctx, "CREATE", hold)
    update_lastseen(txn, ctx, patron, "hold")
    holds_queue_update(txn, ctx, biblionumber)  # the end of AddReserve
    return HoldOutcome(True, None, hold, priority)


#: Koha's screen message when 15 ``-`` finds no hold of the patron (note the trailing space).
CANCEL_WITHOUT_HOLD = "Error with transaction drop_hold: "


def cancel_hold(
    txn,
    ctx,
    *,
    patron: dict,
    item: dict | None,
    biblionumber: int | None,
    reason: str | None = None,
) -> HoldOutcome:
    """Cancel the patron's hold on the item or its title (3M SIP2 2.00, Hold (15) mode ``-``;
    Koha's ``Koha::Hold->cancel``). Waiting holds can be cancelled too. The hold moves to
    ``old_reserves`` with ``cancellationdate`` and the title's queue is renumbered.

    Without a hold to cancel the screen message is Koha's: its ``drop_hold`` leaves no reason,
    so ``C4::SIP::ILS::cancel_hold`` sends "Error with transaction drop_hold: " and nothing
    after it (koha-sip-and-ldap.md section 4.11)."""
    hold = find_patron_hold(
        txn, patron["borrowernumber"], item=item, biblionumber=biblionumber, lock=True
    )
    if hold is None:
        return HoldOutcome(False, CANCEL_WITHOUT_HOLD)
    archive_hold(
        txn,
        ctx,
        hold,
        found=hold.get("found"),
        cancellationdate=ctx.today,
        cancellation_reason=reason,
    )
    return HoldOutcome(True, "Hold Cancelled.", hold, None)


def alter_hold(
    txn,
    ctx,
    *,
    patron: dict,
    item: dict | None,
    biblionumber: int | None,
    pickup: str | None,
    expiration: str | None,
) -> HoldOutcome:
    """Change the pickup library and/or the expiry date of the patron's hold (3M SIP2 2.00,
    Hold (15) mode ``*``; Koha answers "No such outstanding hold." to every such request).

    The pickup library of a hold that is already waiting or in transit cannot change: the
    item is on its way to (or on the shelf of) the old one.
    """
    today, now = ctx.today, ctx.now_sql
    hold = find_patron_hold(
        txn, patron["borrowernumber"], item=item, biblionumber=biblionumber, lock=True
    )
    if hold is None:
        return HoldOutcome(False, "No such outstanding hold.")
    changes: dict[str, str] = {}
    if pickup and pickup != hold["branchcode"]:
        if not _branch_exists(txn, pickup):
            return HoldOutcome(False, "Invalid pickup location.", hold, hold.get("priority"))
        if hold.get("found") in FOUND_STATES:
            return HoldOutcome(
                False,
                "Hold is already waiting or in transit; the pickup location cannot change.",
                hold,
                hold.get("priority"),
            )
        changes["branchcode"] = pickup
    if expiration is not None:
        if as_date(expiration) < as_date(today):
            return HoldOutcome(
                False, "Hold expiration date is in the past.", hold, hold.get("priority")
            )
        changes["expirationdate"] = expiration
    if changes:
        assignments = ", ".join(f"{column} = ?" for column in changes)
        txn.execute_later(
            f"UPDATE reserves SET {assignments}, timestamp = ? WHERE reserve_id = ?",
            (*changes.values(), now, hold["reserve_id"]),
        )
        hold = dict(hold, **changes)
    return HoldOutcome(True, "Hold updated.", hold, hold.get("priority"))


def available_to_patron(txn, item: dict | None, patron: dict, today: str) -> bool:
    """The "available" flag of a 16 Hold Response (Koha's ``C4::SIP::ILS::Item::available``).

    Y only when the item is on loan to this patron and no pending hold (one that has started,
    not waiting, in transit or in processing) is queued on its title, or when it is not on
    loan and the first hold attached to it (waiting, in transit or in processing) is this
    patron's. An item on the shelf is not "available" in this sense, and neither is a title
    named without an item (Koha has no item then). Koha compares the loan's borrowernumber
    with the cardnumber the request sent, so its first case never holds; this compares the
    patron. Like Koha, the caller reads it before the hold is placed, cancelled or changed.
    """
    if item is None:
        return False
    loan = txn.one("SELECT borrowernumber FROM issues WHERE itemnumber = ?", (item["itemnumber"],))
    if loan is not None:
        if loan["borrowernumber"] != patron["borrowernumber"]:
            return False
        queued = _reserve_rows(txn, "biblionumber = ?", (item["biblionumber"],), lock=False)
        return not any(
            row.get("found") not in FOUND_STATES
            and (as_date(row.get("reservedate")) or as_date(today)) <= as_date(today)
            for row in queued
        )
    attached = [
        row
        for row in _reserve_rows(txn, "itemnumber = ?", (item["itemnumber"],), lock=False)
        if row.get("found") in FOUND_STATES
    ]
    if not attached:
        return False
    first = min(attached, key=lambda row: row["reserve_id"])
    return first["borrowernumber"] == patron["borrowernumber"]
