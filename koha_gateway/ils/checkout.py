"""Checkout and renewal: Koha's ``CanBookBeIssued`` / ``AddIssue`` / ``CanBookBeRenewed`` /
``AddRenewal`` as the SIP server drives them.

Implements the ILS side of 3M SIP2 2.00 Checkout (11), Renew (29) and Renew All (65), with the
decision order and screen messages of Koha's ``C4::SIP::ILS::Transaction::Checkout`` and
``Renew`` (koha-sip-and-ldap.md sections 4.5, 4.9, 4.10).

Concurrency: the caller looks the item and patron up with ``lock=True`` (``SELECT ... FOR
UPDATE`` on PostgreSQL and MariaDB; SQLite write transactions hold the database lock), and
``issues`` has a UNIQUE key on ``itemnumber``: when two kiosks check the same item out at the
same moment, one insert fails, that checkout is answered "Item checked out to another patron"
and nothing of it is written. Every circulation request takes its row locks in the same order
-- the item(s), the patron, the item's holds, its title -- so that concurrent requests wait for
each other but never deadlock. The item comes first because a checkin cannot know the patron
before it has the item, and its writes lock the borrower of the loan it closes (the foreign-key
checks of ``old_issues`` and ``accountlines`` take a shared lock on the ``borrowers`` row).

Deliberate differences from Koha, each a fix of a Koha behaviour that loses data or lets a
kiosk bypass a rule:

- checking out an item already on loan to the same patron renews it only within the renewal
  rules (Koha's ``AddIssue`` renews without looking at holds); a refused renewal is answered
  with the renewal's reason;
- a no-block (offline) checkout forced on an item that was waiting for another patron puts
  that patron's hold back at the head of the queue instead of leaving it attached to an item
  that is now on loan.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from koha_gateway.ils import round_money
from koha_gateway.ils.accounts import add_debit, fix_overdues_on_return, update_fine
from koha_gateway.ils.circulation import (
    as_datetime,
    circ_control_branch,
    end_of_day,
    format_sql_datetime,
    holds_queue_update,
    index_biblio,
    log_action,
    log_found_item,
    mark_issue_returned,
    wants_log,
    write_statistic,
)
from koha_gateway.ils.context import CircContext
from koha_gateway.ils.datedue import calc_date_due, too_soon_to_renew
from koha_gateway.ils.holds import FOUND_STATES, fill_hold, holds_for_item, renumber_priorities
from koha_gateway.ils.items import current_loan
from koha_gateway.ils.patrons import update_lastseen
from koha_gateway.ils.rules import rule_int
from koha_gateway.ils.sysprefs import format_date

__all__ = [
    "RENEWAL_MESSAGES",
    "CheckoutOutcome",
    "RenewOutcome",
    "checkout",
    "items_denied_renewal",
    "renew",
    "renewal_refusal",
]

#: Koha's renewal error keys and the screen messages its SIP server sends for them (29, 65).
RENEWAL_MESSAGES = {
    "on_reserve": "Item unavailable due to outstanding holds",
    "too_many": "Item has reached maximum renewals",
    "too_unseen": "Item has reached maximum consecutive renewals without being seen",
    "item_denied_renewal": "Item renewal is not allowed",
    "item_issued_to_other_patron": "Item already issued to other borrower",
}

FEE_TYPE_RENTAL = "06"


class _LoanConflict(Exception):
    """The UNIQUE key on ``issues.itemnumber`` refused the loan: undo the checkout's writes."""


@dataclass
class CheckoutOutcome:
    """What a checkout did (SIP2 12). ``due`` is the stored ``date_due``; ``renewal`` is true
    when the item was already on loan to the patron and was renewed; ``fee_amount`` /
    ``fee_type`` describe a rental charge (charged, or refused for want of BO=Y)."""

    ok: bool
    message: str | None = None
    renewal: bool = False
    due: str | None = None
    fee_amount: float | None = None
    fee_type: str | None = None
    fee_id: int | None = None
    issue_id: int | None = None
    messages: list[str] = field(default_factory=list)


@dataclass
class RenewOutcome:
    """What a renewal did (SIP2 30, and one item of 66)."""

    ok: bool
    message: str | None = None
    due: str | None = None
    fee_amount: float | None = None
    fee_type: str | None = None
    fee_id: int | None = None
    reason: str | None = None


def _patron_block_message(state: Any, ctx: CircContext) -> str:
    """Koha's SIP screen message for a patron without charge privileges (section 4.5 step 4)."""
    if state.debarred:
        return "Patron debarred"
    if state.expired:
        dateformat = ctx.pref("dateformat") or "iso"
        return f"Patron expired on {format_date(state.dateexpiry, dateformat)}"
    if state.fine_blocked:
        text = "Patron has fines"
        if ctx.options.show_outstanding_amount:
            text += f" - You owe ${state.fines:.2f}."
        return text
    return "Patron blocked"


def _due_date(txn, *, patron: dict, item: dict, branch: str, now: datetime, sysprefs) -> str:
    """Koha's ``CalcDateDue`` for a checkout at ``now`` (rules and calendar of CircControl)."""
    rules_branch = circ_control_branch(sysprefs, checkout_branch=branch, patron=patron, item=item)
    due = calc_date_due(
        txn, start=now, patron=patron, item=item, branchcode=rules_branch, sysprefs=sysprefs
    )
    return format_sql_datetime(due)


def _renewal_due_date(
    txn, *, patron: dict, item: dict, loan: dict, branch: str, now: datetime, sysprefs
) -> str:
    """``CalcDateDue`` for a renewal from ``max(now, old due date)`` (``renewalperiod``)."""
    rules_branch = circ_control_branch(sysprefs, checkout_branch=branch, patron=patron, item=item)
    local = now.replace(tzinfo=None, microsecond=0)
    base = max(local, as_datetime(loan["date_due"]) or local)
    due = calc_date_due(
        txn,
        start=base,
        patron=patron,
        item=item,
        branchcode=rules_branch,
        sysprefs=sysprefs,
        renewal=True,
    )
    return format_sql_datetime(due)


def items_denied_renewal(item: dict, rules: str | None) -> bool:
    """Koha's ItemsDeniedRenewal preference: YAML lines ``column: [value, ...]`` (or
    ``column: value``); an item whose column holds one of the values cannot be renewed.
    ``NULL`` (or an empty value) matches an empty column. Lines that are not of this shape are
    ignored."""
    for line in (rules or "").splitlines():
        text = line.split("#", 1)[0].strip()
        if ":" not in text:
            continue
        column, _, values = text.partition(":")
        column = column.strip().strip("\"'")
        values = values.strip()
        if values.startswith("[") and values.endswith("]"):
            values = values[1:-1]
        wanted = {value.strip().strip("\"'") for value in values.split(",")}
        current = item.get(column)
        current_text = "" if current is None else str(current)
        for value in wanted:
            if value in ("NULL", "") and current_text == "":
                return True
            if value not in ("NULL", "") and value == current_text:
                return True
    return False


def renewal_refusal(txn, ctx: CircContext, *, patron: dict, item: dict, loan: dict) -> str | None:
    """Why Koha's ``CanBookBeRenewed`` refuses this renewal, as its error key, or ``None``.

    ``onsite_checkout`` (on-site loans are not renewed), ``too_many`` (``renewalsallowed``
    reached), ``on_reserve`` (another patron's hold that this item could fill),
    ``item_denied_renewal`` (ItemsDeniedRenewal), ``too_soon`` (before ``norenewalbefore``
    days ahead of the due date).
    """
    local, today, sysprefs = ctx.now, ctx.today, ctx.sysprefs
    if int(loan.get("onsite_checkout") or 0):
        return "onsite_checkout"
    rules_branch = circ_control_branch(
        sysprefs, checkout_branch=ctx.branch, patron=patron, item=item
    )
    dims = {
        "branchcode": rules_branch,
        "categorycode": patron.get("categorycode"),
        "itemtype": item.get("itype"),
    }
    allowed = rule_int(txn, "renewalsallowed", default=0, **dims)
    if int(loan.get("renewals_count") or 0) >= (allowed or 0):
        return "too_many"
    for hold in holds_for_item(txn, item, today):
        if hold["borrowernumber"] != patron["borrowernumber"]:
            return "on_reserve"
    denied = sysprefs.get("ItemsDeniedRenewal", "") if sysprefs is not None else ""
    if denied and items_denied_renewal(item, denied):
        return "item_denied_renewal"
    before = rule_int(txn, "norenewalbefore", default=None, **dims)
    if before is not None:
        due = as_datetime(loan["date_due"])
        if due is not None and too_soon_to_renew(txn, now=local, due=due, before=before, **dims):
            return "too_soon"
    return None


def _revert_waiting_for_others(
    txn, item: dict, borrowernumber: int, now_sql: str, ctx: CircContext | None = None
) -> None:
    """Put holds attached to ``item`` for other patrons back at the head of their queue
    (Koha's ``RevertWaitingStatus``, which queues a holds-queue job per hold with
    RealTimeHoldsQueue)."""
    rows = txn.query(
        "SELECT reserve_id, biblionumber, item_level_hold FROM reserves "
        "WHERE itemnumber = ? AND borrowernumber <> ? AND found IN ('W', 'T', 'P')"
        + txn.for_update,
        (item["itemnumber"], borrowernumber),
    )
    for row in rows:
        txn.execute_later(
            "UPDATE reserves SET found = NULL, waitingdate = NULL, priority = 0, "
            "itemnumber = ?, timestamp = ? WHERE reserve_id = ?",
            (
                item["itemnumber"] if row["item_level_hold"] else None,
                now_sql,
                row["reserve_id"],
            ),
        )
        renumber_priorities(txn, row["biblionumber"])
        holds_queue_update(txn, ctx, row["biblionumber"])
    if rows:
        txn.execute_later(
            "UPDATE branchtransfers SET datecancelled = ? WHERE itemnumber = ? "
            "AND reason = 'Reserve' AND datearrived IS NULL AND datecancelled IS NULL",
            (now_sql, item["itemnumber"]),
        )


def _fill_own_hold(
    txn, ctx: CircContext, item: dict, borrowernumber: int, holds: list[dict] | None = None
) -> None:
    """Koha's ``MoveReserve``: the patron's own hold that this item satisfies is filled.
    ``holds``: :func:`holds_for_item` as this transaction already read (and locked) it."""
    if holds is None:
        holds = holds_for_item(txn, item, ctx.today, lock=True)
    for hold in holds:
        if hold["borrowernumber"] == borrowernumber:
            fill_hold(txn, ctx, hold, item)
            return
    # A title-level hold of this patron that is not yet active (future date) or that another
    # item is already attached to is left alone, as Koha does.


def _rules(ctx: CircContext, patron: dict, item: dict) -> dict:
    return {
        "branchcode": circ_control_branch(
            ctx.sysprefs, checkout_branch=ctx.branch, patron=patron, item=item
        ),
        "categorycode": patron.get("categorycode"),
        "itemtype": item.get("itype"),
    }


def _renewal_fine(txn, ctx: CircContext, *, patron: dict, item: dict, loan: dict) -> None:
    """AddRenewal's first steps: with CalculateFinesOnReturn (and finesMode ``production``)
    the overdue fine up to now is charged or updated, then ``_FixOverduesOnReturn`` marks the
    accruing fine ``RENEWED``."""
    from koha_gateway.ils.checkin import fine_rules_branch, overdue_fine

    accruing: list = []  # the accruing fine's line when update_fine read it
    if (ctx.pref("finesMode", "production") or "") == "production" and ctx.flag(
        "CalculateFinesOnReturn", True
    ):
        amount = overdue_fine(
            txn,
            loan=loan,
            item=item,
            patron=patron,
            returned_at=ctx.now,
            rules_branch=fine_rules_branch(ctx.sysprefs, loan, patron, item),
        )
        if amount > 0:
            update_fine(
                txn, ctx, loan=loan, item=item, amount=amount, backdated=False, accruing=accruing
            )
    fix_overdues_on_return(txn, loan, "RENEWED", *accruing)


def _apply_renewal(
    txn, ctx: CircContext, *, patron: dict, item: dict, loan: dict, due: str
) -> None:
    """Koha's ``AddRenewal``: the fine so far, the new due date, one more renewal on the loan
    and the item (``items.renewals``, ``onloan``; ``datelastseen`` unchanged), the ``renew``
    statistic, the RENEWAL log (RenewalLog), ``lastseen`` (``renewal``) and an index request."""
    _renewal_fine(txn, ctx, patron=patron, item=item, loan=loan)
    txn.execute_later(
        "UPDATE issues SET date_due = ?, renewals_count = renewals_count + 1, "
        "lastreneweddate = ? WHERE issue_id = ?",
        (due, ctx.now_sql, loan["issue_id"]),
    )
    txn.execute_later(
        "UPDATE items SET renewals = COALESCE(renewals, 0) + 1, onloan = ? WHERE itemnumber = ?",
        (due[:10], item["itemnumber"]),
    )
    write_statistic(txn, ctx, "renew", branch=ctx.branch, item=item, patron=patron, value=0)
    if wants_log(ctx, "RenewalLog"):
        log_action(
            txn, ctx, "CIRCULATION", "RENEWAL", patron["borrowernumber"], str(item["itemnumber"])
        )
    update_lastseen(txn, ctx, patron, "renewal")
    # AddRenewal's item store (without skip_holds_queue) queues the holds-queue job; the
    # index request follows the transaction.
    holds_queue_update(txn, ctx, item.get("biblionumber"))
    index_biblio(txn, ctx, item.get("biblionumber"))


def _rental_charge(item: dict) -> float:
    return round_money(item.get("rentalcharge") or 0)


def _charge_rental(
    txn, ctx: CircContext, *, patron: dict, item: dict, amount: float, renewal: bool, issue_id
) -> int:
    """Koha's ``AddIssuingCharge``: a ``RENT`` (or ``RENT_RENEW``) debit by the staff patron
    at the session's library, for the item and the loan, without description."""
    return add_debit(
        txn,
        ctx,
        borrowernumber=patron["borrowernumber"],
        amount=amount,
        debit_type="RENT_RENEW" if renewal else "RENT",
        user_id=ctx.staff_borrowernumber,
        library_id=ctx.branch,
        itemnumber=item["itemnumber"],
        issue_id=issue_id,
    )


def _insert_issue(
    txn, ctx: CircContext, *, patron: dict, item: dict, due: str, savepoint: bool = True
) -> int | None:
    """Create the loan and update the item (Koha's ``AddIssue``). ``None`` when the UNIQUE
    key on ``issues.itemnumber`` refused it: someone else checked the item out first. The
    INSERT runs in a savepoint of its own (the transaction goes on), unless ``savepoint`` is
    false: then :class:`_LoanConflict` is raised, for a caller whose own savepoint undoes the
    checkout's writes (two statements fewer; on PostgreSQL the failed INSERT spoils the
    transaction up to that savepoint).

    ``issues``: the session's library, ``auto_renew`` from the circulation rule,
    ``issuer_id`` with RecordStaffUserOnCheckout. ``items``: one more issue, held here,
    found if it was lost (``itemlost_on`` cleared), ``onloan`` the due date,
    ``datelastborrowed`` today, ``datelastseen`` now. Then the ``issue`` statistic (value:
    the rental charge), the ISSUE log (IssueLog), ``lastseen`` (``check_out``) and an index
    request for the record.
    """
    auto_renew = rule_int(txn, "auto_renew", default=0, **_rules(ctx, patron, item)) or 0
    issuer = ctx.staff_borrowernumber if ctx.flag("RecordStaffUserOnCheckout") else None
    sql = (
        "INSERT INTO issues (borrowernumber, itemnumber, date_due, branchcode, "
        "issuedate, renewals_count, unseen_renewals, onsite_checkout, auto_renew, "
        "issuer_id) VALUES (?, ?, ?, ?, ?, 0, 0, 0, ?, ?)"
    )
    params = (
        patron["borrowernumber"],
        item["itemnumber"],
        due,
        ctx.branch,
        ctx.now_sql,
        1 if auto_renew else 0,
        issuer,
    )
    txn.flush()  # the IntegrityError caught below must be the insert's own
    try:
        if savepoint:
            with txn.savepoint():
                issue_id = txn.insert(sql, params, pk="issue_id")
        else:
            issue_id = txn.insert(sql, params, pk="issue_id")
    except txn.engine.IntegrityError:
        if savepoint:
            return None
        raise _LoanConflict from None
    # Koha's Koha::Item->store clears itemlost_on only when itemlost changes to false: decided
    # here from the locked row, so the statement does not depend on the engine's order of
    # evaluating assignments (MariaDB's is left to right).
    found = ", itemlost_on = NULL" if int(item.get("itemlost") or 0) else ""
    txn.execute_later(
        "UPDATE items SET issues = COALESCE(issues, 0) + 1, holdingbranch = ?, itemlost = 0, "
        f"onloan = ?, datelastborrowed = ?, datelastseen = ?{found} WHERE itemnumber = ?",
        (ctx.branch, due[:10], ctx.today, ctx.now_sql, item["itemnumber"]),
    )
    write_statistic(
        txn,
        ctx,
        "issue",
        branch=ctx.branch,
        item=item,
        patron=patron,
        value=_rental_charge(item),
    )
    if wants_log(ctx, "IssueLog"):
        log_action(
            txn, ctx, "CIRCULATION", "ISSUE", patron["borrowernumber"], str(item["itemnumber"])
        )
    update_lastseen(txn, ctx, patron, "check_out")
    index_biblio(txn, ctx, item.get("biblionumber"))
    holds_queue_update(txn, ctx, item.get("biblionumber"))  # the end of AddIssue
    return issue_id


def _record_local_use(txn, ctx: CircContext, *, patron: dict, item: dict) -> None:
    """Koha's ``CanBookBeIssued`` for a statistics patron (category type ``X``): a
    ``localuse`` statistic, then ``ModDateLastSeen`` (seen now, found if it was lost, an index
    request)."""
    write_statistic(txn, ctx, "localuse", branch=ctx.branch, item=item, patron=patron, value=0)
    found = ", itemlost = 0, itemlost_on = NULL" if int(item.get("itemlost") or 0) else ""
    txn.execute_later(
        f"UPDATE items SET datelastseen = ?{found} WHERE itemnumber = ?",
        (ctx.now_sql, item["itemnumber"]),
    )
    if found:
        log_found_item(txn, ctx, item["itemnumber"])
    index_biblio(txn, ctx, item.get("biblionumber"))


def _previously_checked_out(txn, patron: dict, item: dict, sysprefs) -> bool:
    """Koha's ``CheckPrevCheckout`` (``hardyes``/``softyes`` check the patron's old loans of
    the same title; ``hardno``/``softno`` never)."""
    mode = (sysprefs.get("CheckPrevCheckout", "hardno") if sysprefs is not None else "") or ""
    if mode not in ("hardyes", "softyes"):
        return False
    row = txn.one(
        "SELECT o.issue_id FROM old_issues o JOIN items it ON it.itemnumber = o.itemnumber "
        "WHERE o.borrowernumber = ? AND it.biblionumber = ? LIMIT 1",
        (patron["borrowernumber"], item["biblionumber"]),
    )
    return row is not None


def _patron_loan(state: Any, patron: dict, item: dict) -> dict | None:
    """The patron's loan of ``item`` from the loans ``state`` read (with the item and the
    patron locked: no other request can have changed it since) as a loan row (``issues``
    columns plus ``borrowernumber``); ``None`` when the item is not on loan to the patron."""
    for loan in state.loans:
        if loan["itemnumber"] == item["itemnumber"]:
            return {**loan, "borrowernumber": patron["borrowernumber"]}
    return None


def _undo_needed(txn, patron: dict, loan: dict | None, own_loan: bool, holds: list) -> bool:
    """Whether the checkout's writes need a savepoint of their own, to be undone when the
    UNIQUE key on ``issues.itemnumber`` refuses the loan (:class:`_LoanConflict`).

    Not for a renewal (no loan is inserted). Not when the INSERT of the loan is the first
    write (no loan to move, no hold of the patron to fill) on SQLite and MariaDB, where a
    refused statement undoes itself and the transaction goes on; PostgreSQL spoils the
    whole transaction after an error, so there it always is (two statements more)."""
    if own_loan:
        return False
    if txn.engine.name == "postgresql" or loan is not None:
        return True
    return any(hold["borrowernumber"] == patron["borrowernumber"] for hold in holds)


def _loan_of(txn, item: dict, patron: dict, state: Any) -> dict | None:
    """The item's current loan (:func:`~koha_gateway.ils.items.current_loan`), read only when
    neither the item's own read (:func:`~koha_gateway.ils.items.find_item`, ``loan_issue_id``,
    the item locked) nor the patron's loans (``state.loans``) tell it: none when the item read
    saw none (should a loan have been committed since, the UNIQUE key on
    ``issues.itemnumber`` refuses the new one, as for two checkouts at the same moment), the
    patron's own from their loans."""
    if "loan_issue_id" in item:
        if item["loan_issue_id"] is None:
            return None
        if getattr(state, "loans", None) is not None:
            own = _patron_loan(state, patron, item)
            if own is not None and own["issue_id"] == item["loan_issue_id"]:
                return own
    return current_loan(txn, item["itemnumber"])


def checkout(
    txn,
    ctx: CircContext,
    *,
    patron: dict,
    state: Any,
    item: dict,
    fee_acknowledged: bool = False,
    no_block_due: datetime | None = None,
) -> CheckoutOutcome:
    """Check ``item`` out to ``patron`` at ``branch`` (3M SIP2 2.00, Checkout (11)).

    ``patron`` and ``item`` are the locked rows of :func:`koha_gateway.ils.patrons.find_patron`
    and :func:`koha_gateway.ils.items.find_item`; ``state`` the patron's
    :class:`~koha_gateway.ils.patrons.PatronState`. ``no_block_due`` is the nb due date of a
    no-block (store-and-forward) checkout: such a checkout is forced whatever the blocks, with
    that due date (Koha's ``ProcessOfflineIssue``).

    Otherwise Koha's order, the first refusal wins: patron blocks (debarred, expired, fines);
    on loan to another patron; ``blocked_item_types``; the impossible reasons of
    ``CanBookBeIssued`` (``TOO_MANY``, ``NOT_FOR_LOAN``, ``WTHDRAWN``, ``NO_MORE_RENEWALS``);
    then its confirmations (renewal of the patron's own loan, holds of other patrons, fines
    with AllFinesNeedOverride, lost item, previous checkout, additional materials); then the
    rental charge, refused unless the fee is acknowledged (BO=Y).
    """
    sysprefs, branch, today = ctx.sysprefs, ctx.branch, ctx.today
    loan = _loan_of(txn, item, patron, state)
    own_loan = loan is not None and loan["borrowernumber"] == patron["borrowernumber"]

    if no_block_due is not None:
        return _offline_checkout(txn, ctx, patron=patron, item=item, loan=loan, due_at=no_block_due)

    if not state.charge_ok:
        return CheckoutOutcome(False, _patron_block_message(state, ctx))

    allow_on_loan = sysprefs is not None and sysprefs.flag("AllowItemsOnLoanCheckoutSIP")
    if loan is not None and not own_loan and not allow_on_loan:
        return CheckoutOutcome(False, "Item checked out to another patron")

    if item.get("itype") in ctx.options.blocked_item_types:
        return CheckoutOutcome(False, "Item type cannot be checked out at this checkout location")

    if patron.get("category_type") == "X":
        # A statistics patron: CanBookBeIssued records a local use and refuses the loan.
        _record_local_use(txn, ctx, patron=patron, item=item)
        return CheckoutOutcome(False, "Issue failed : STATS")

    # CanBookBeIssued: the impossible reasons.
    rules_branch = circ_control_branch(sysprefs, checkout_branch=branch, patron=patron, item=item)
    if own_loan:
        reason = renewal_refusal(txn, ctx, patron=patron, item=item, loan=loan)
        if reason is not None:
            key = "NO_RENEWAL_FOR_ONSITE_CHECKOUTS" if reason == "onsite_checkout" else None
            return CheckoutOutcome(
                False, f"Issue failed : {key or 'NO_MORE_RENEWALS'}", messages=[reason]
            )
    else:
        limit = rule_int(
            txn,
            "maxissueqty",
            branchcode=rules_branch,
            categorycode=patron.get("categorycode"),
            itemtype=None,
            default=None,
        )
        if limit is not None:
            loans = getattr(state, "loans", None)
            if loans is not None:
                on_loan = len(loans)  # read in this transaction, the patron's row locked
            else:
                on_loan = txn.scalar(
                    "SELECT COUNT(*) AS n FROM issues WHERE borrowernumber = ?",
                    (patron["borrowernumber"],),
                )
            if int(on_loan or 0) >= limit:
                return CheckoutOutcome(False, "Issue failed : TOO_MANY")
    if int(item.get("notforloan") or 0) or int(item.get("itype_notforloan") or 0):
        # Koha: any non-zero notforloan (on order, reference...) of the item or its type.
        return CheckoutOutcome(False, "Issue failed : NOT_FOR_LOAN")
    if int(item.get("withdrawn") or 0):
        return CheckoutOutcome(False, "Issue failed : WTHDRAWN")

    # CanBookBeIssued: the confirmations, which a kiosk cannot give.
    messages: list[str] = []
    holds: list[dict] = []
    if own_loan:
        messages.append("Item already checked out to you: renewing item.")
    else:
        holds = holds_for_item(txn, item, today, lock=True)
        first = holds[0] if holds else None
        if first is not None and first["borrowernumber"] != patron["borrowernumber"]:
            if first.get("found") in FOUND_STATES:
                return CheckoutOutcome(False, "Item is on hold for another patron.")
            if not (sysprefs is not None and sysprefs.flag("AllowItemsOnHoldCheckoutSIP")):
                return CheckoutOutcome(False, "Item is reserved for another patron upon return.")
        # AllFinesNeedOverride: any debt needs a librarian's override, which a kiosk cannot
        # give (Koha refuses whatever AllowFineOverride says).
        if (
            sysprefs is not None
            and sysprefs.flag("AllFinesNeedOverride")
            and round_money(state.fines) > 0
        ):
            return CheckoutOutcome(False, "Outstanding Fines block issue")
        if int(item.get("itemlost") or 0):
            return CheckoutOutcome(False, "Item cannot be issued: ITEM_LOST")
        if _previously_checked_out(txn, patron, item, sysprefs):
            messages.append("This item was previously checked out by you")
            if ctx.options.prevcheckout_block_checkout:
                return CheckoutOutcome(False, messages[-1])
        materials = (item.get("materials") or "").strip()
        if materials and sysprefs is not None and sysprefs.flag("CircConfirmItemParts"):
            if not ctx.options.allow_additional_materials_checkout:
                return CheckoutOutcome(False, "Item must be checked out at a circulation desk")
            messages.append(f"Item has additional materials: {materials}")

    fee = _rental_charge(item)
    fee_amount = fee if fee > 0 else None
    fee_type = FEE_TYPE_RENTAL if fee_amount else None
    if fee_amount and not fee_acknowledged:
        return CheckoutOutcome(
            False,
            f"Rental charge of {fee_amount:.2f} must be acknowledged",
            fee_amount=fee_amount,
            fee_type=fee_type,
        )

    try:
        with txn.savepoint() if _undo_needed(txn, patron, loan, own_loan, holds) else nullcontext():
            if own_loan:
                due = _renewal_due_date(
                    txn,
                    patron=patron,
                    item=item,
                    loan=loan,
                    branch=branch,
                    now=ctx.now,
                    sysprefs=sysprefs,
                )
                _apply_renewal(txn, ctx, patron=patron, item=item, loan=loan, due=due)
                issue_id = loan["issue_id"]
            else:
                if loan is not None:
                    # AllowItemsOnLoanCheckoutSIP: the item moves to the new patron (Koha's
                    # AddIssue returns it first: AddReturn queues its holds-queue job).
                    mark_issue_returned(txn, loan, ctx.now_sql, ctx=ctx)
                    holds_queue_update(txn, ctx, item.get("biblionumber"))
                due = _due_date(
                    txn, patron=patron, item=item, branch=branch, now=ctx.now, sysprefs=sysprefs
                )
                # The holds read (locked) above; nothing has changed them since.
                _fill_own_hold(txn, ctx, item, patron["borrowernumber"], holds)
                issue_id = _insert_issue(
                    txn, ctx, patron=patron, item=item, due=due, savepoint=False
                )
            fee_id = None
            if fee_amount:
                fee_id = _charge_rental(
                    txn,
                    ctx,
                    patron=patron,
                    item=item,
                    amount=fee_amount,
                    renewal=own_loan,
                    issue_id=issue_id,
                )
    except _LoanConflict:
        return CheckoutOutcome(False, "Item checked out to another patron")
    return CheckoutOutcome(
        True,
        " -- ".join(messages) if messages else None,
        renewal=own_loan,
        due=due,
        fee_amount=fee_amount,
        fee_type=fee_type,
        fee_id=fee_id,
        issue_id=issue_id,
        messages=messages,
    )


def _offline_checkout(
    txn, ctx: CircContext, *, patron: dict, item: dict, loan: dict | None, due_at: datetime
) -> CheckoutOutcome:
    """A no-block checkout with an nb due date, forced regardless of blocks (Koha's
    ``ProcessOfflineIssue``, bug 32934): a loan to the same patron is renewed to that date, a
    loan to someone else is closed first."""
    due_local = due_at.replace(tzinfo=None, microsecond=0)
    if due_local.hour == 0 and due_local.minute == 0 and due_local.second == 0:
        due_local = end_of_day(due_local.date())
    due = format_sql_datetime(due_local)
    if loan is not None and loan["borrowernumber"] == patron["borrowernumber"]:
        _apply_renewal(txn, ctx, patron=patron, item=item, loan=loan, due=due)
        return CheckoutOutcome(True, None, renewal=True, due=due, issue_id=loan["issue_id"])
    try:
        with txn.savepoint():
            if loan is not None:
                mark_issue_returned(txn, loan, ctx.now_sql, ctx=ctx)
            _revert_waiting_for_others(txn, item, patron["borrowernumber"], ctx.now_sql, ctx)
            _fill_own_hold(txn, ctx, item, patron["borrowernumber"])
            issue_id = _insert_issue(txn, ctx, patron=patron, item=item, due=due, savepoint=False)
    except _LoanConflict:
        return CheckoutOutcome(False, "Item checked out to another patron")
    return CheckoutOutcome(True, None, due=due, issue_id=issue_id)


def renew(
    txn,
    ctx: CircContext,
    *,
    patron: dict,
    state: Any,
    item: dict | None,
    fee_acknowledged: bool = False,
    renewals_allowed_by_policy: bool = True,
    check_patron: bool = True,
) -> RenewOutcome:
    """Renew the patron's loan of ``item`` (3M SIP2 2.00, Renew (29); one item of Renew All
    (65)); Koha's ``C4::SIP::ILS::Transaction::Renew``.

    Refusals, in order: the institution's policy forbids renewals or the patron has no renewal
    privileges ("Renewals not allowed."); the item is not on loan to the patron ("Item not
    checked out to <name>"); ``CanBookBeRenewed`` (maximum renewals, holds, too soon); a rental
    charge without BO=Y. The new due date is ``renewalperiod`` after ``max(now, old due date)``
    by the library's calendar (:func:`koha_gateway.ils.datedue.calc_date_due`).
    """
    if check_patron and (not renewals_allowed_by_policy or not state.renew_ok):
        return RenewOutcome(False, "Renewals not allowed.")
    if item is None:
        loan = None
    elif getattr(state, "loans", None) is not None:
        loan = _patron_loan(state, patron, item)  # read with the patron's state
    else:
        loan = current_loan(txn, item["itemnumber"])
    if loan is None or loan["borrowernumber"] != patron["borrowernumber"]:
        name = f"{patron.get('firstname') or ''} {patron.get('surname') or ''}".strip()
        return RenewOutcome(False, f"Item not checked out to {name}")
    reason = renewal_refusal(txn, ctx, patron=patron, item=item, loan=loan)
    if reason is not None:
        return RenewOutcome(False, RENEWAL_MESSAGES.get(reason, reason), reason=reason)
    fee = _rental_charge(item)
    fee_amount = fee if fee > 0 else None
    fee_type = FEE_TYPE_RENTAL if fee_amount else None
    if fee_amount and not fee_acknowledged:
        return RenewOutcome(
            False,
            f"Rental charge of {fee_amount:.2f} must be acknowledged",
            fee_amount=fee_amount,
            fee_type=fee_type,
            reason="rental_charge",
        )
    due = _renewal_due_date(
        txn,
        patron=patron,
        item=item,
        loan=loan,
        branch=ctx.branch,
        now=ctx.now,
        sysprefs=ctx.sysprefs,
    )
    _apply_renewal(txn, ctx, patron=patron, item=item, loan=loan, due=due)
    fee_id = None
    if fee_amount:
        fee_id = _charge_rental(
            txn,
            ctx,
            patron=patron,
            item=item,
            amount=fee_amount,
            renewal=True,
            issue_id=loan["issue_id"],
        )
    return RenewOutcome(
        True, None, due=due, fee_amount=fee_amount, fee_type=fee_type, fee_id=fee_id
    )
