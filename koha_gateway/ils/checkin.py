"""Checkin: Koha's ``AddReturn`` as its SIP server drives it (``C4::SIP::ILS::Transaction::
Checkin``), with overdue fines, hold capture, transfers and sort bins.

Implements the ILS side of 3M SIP2 2.00 Checkin (09) and the 3M extension fields of 10 (CL sort
bin, CT destination, CV alert type, CY/DA hold patron), koha-sip-and-ldap.md section 4.6.

What is decided here, in Koha's order:

1. refusals that leave the item as it is: an issue number already in ``old_issues`` (data
   problem, CV 98); ``holds_block_checkin`` and a hold the item could fill (CV 99);
   CircConfirmItemParts with additional materials (CV 99); BlockReturnOfWithdrawnItems (CV 99);
   BlockReturnOfLostItems (CV 99); AllowReturnToBranch (CV 04 to the right library);
2. the return: the loan moves to ``old_issues``, an overdue fine is charged (days or hours
   late, without the library's closed days per ``finesCalendar``, x rule ``fine`` per
   ``chargeperiod``, capped by ``overduefinescap``; an accruing ``UNRETURNED`` fine of the
   loan is finalised instead of charged twice; ``MaxFine`` caps it), a lost item is found,
   and a late return suspends the patron under a ``finedays`` rule
   (:mod:`koha_gateway.ils.suspensions`);
3. holds: the first hold the item can fill is captured at this library (CV 01, waiting) or for
   another one (CV 02, in transit with a ``Reserve`` transfer), unless the account turns
   ``holds_get_captured`` off;
4. otherwise an item away from home is sent home (CV 04 to the home library; a
   ``ReturnToHome`` transfer with AutomaticItemReturn);
5. the sort bin (CL) from the account's ``<sort_bin_mapping>`` rules or SIP2SortBinMapping.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from koha_gateway.ils import reference, round_money
from koha_gateway.ils.accounts import fix_overdues_on_return, update_fine
from koha_gateway.ils.circulation import (
    LOAN_COLUMNS,
    as_datetime,
    circ_control_branch,
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
from koha_gateway.ils.fines import calc_fine
from koha_gateway.ils.holds import capture_hold, holds_for_item, start_transfer
from koha_gateway.ils.items import item_attribute
from koha_gateway.ils.patrons import update_lastseen
from koha_gateway.ils.suspensions import debar_on_return
from koha_gateway.ils.sysprefs import format_date

__all__ = [
    "CheckinOutcome",
    "checkin",
    "fine_rules_branch",
    "overdue_fine",
    "parse_sort_bin_rules",
    "sort_bin",
]

ALERT_HOLD_HERE = "01"
ALERT_HOLD_ELSEWHERE = "02"
ALERT_SEND_ELSEWHERE = "04"
ALERT_DATA_PROBLEM = "98"
ALERT_OTHER = "99"


@dataclass
class CheckinOutcome:
    """What a checkin did (SIP2 10).

    ``ok`` is the 10 ok flag (before ``checked_in_ok`` has been applied: see ``not_issued``);
    ``returned`` whether a loan was closed; ``alert_type`` the CV code; ``destination`` the CT
    library; ``hold`` the captured (or, with ``holds_get_captured`` off, found) hold with its
    patron's ``cardnumber``, names, ``email`` and ``phone``; ``patron`` the borrower the item
    was on loan to; ``fine`` an overdue fine charged now; ``suspended_until`` the expiration
    of the patron's ``SUSPENSION`` when the late return made or extended one; ``messages``
    Koha's ``AddReturn`` message keys; ``warnings`` lines for the log (malformed sort bin rules).
    """

    ok: bool
    message: str | None = None
    returned: bool = False
    not_issued: bool = False
    alert_type: str | None = None
    destination: str | None = None
    hold: dict | None = None
    patron: dict | None = None
    fine: float | None = None
    suspended_until: str | None = None
    sort_bin: str | None = None
    messages: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


# --- fines -----------------------------------------------------------------------------------


def overdue_fine(
    txn,
    *,
    loan: dict,
    item: dict,
    patron: dict,
    returned_at: datetime,
    rules_branch: str,
    sysprefs: Any = None,
) -> float:
    """The overdue fine of a loan returned at ``returned_at``: Koha's ``CalcFine`` over the
    ``rules_branch`` rules and calendar (:func:`koha_gateway.ils.fines.calc_fine`: days or
    hours late without the closed days, grace, charge periods, caps)."""
    due = as_datetime(loan["date_due"])
    if due is None:
        return 0.0
    return calc_fine(
        txn,
        item=item,
        categorycode=patron.get("categorycode"),
        branchcode=rules_branch,
        due=due,
        returned=returned_at,
        sysprefs=sysprefs,
    ).amount


def _fine_description(item: dict, loan: dict, dateformat: str) -> str:
    """The overdue fine's description (Koha's OVERDUE_FINE_DESC notice: title and due date)."""
    title = item.get("title") or ""
    due = as_datetime(loan["date_due"])
    return f"{title} {format_date(due, dateformat)} {due.strftime('%H:%M')}".strip()


# --- sort bins -------------------------------------------------------------------------------

_LINE_SPLIT = re.compile(r"\r\n|\r|\n")


def parse_sort_bin_rules(account_rules: Any, syspref_value: str | None) -> list[str]:
    """The sort bin rule lines that apply: the account's ``<sort_bin_mapping>`` elements when
    there are any, else the SIP2SortBinMapping preference split on any line ending. Blank
    lines and ``#`` comments are dropped."""
    if account_rules:
        if isinstance(account_rules, str):
            lines = [account_rules]
        else:
            lines = [str(rule) for rule in account_rules]
    else:
        lines = _LINE_SPLIT.split(syspref_value or "")
    out = []
    for line in lines:
        text = line.strip()
        if text and not text.startswith("#"):
            out.append(text)
    return out


def _item_value(item: dict, name: str) -> Any:
    return item_attribute(item, name)


def _number(value: Any) -> float | None:
    try:
        return float(str(value).strip())
    except (TypeError, ValueError):
        return None


def _compare(left: Any, op: str, right: Any) -> bool:
    left_text = "" if left is None else str(left)
    right_text = "" if right is None else str(right)
    if op in ("eq", "="):
        return left_text == right_text
    if op in ("ne", "!="):
        return left_text != right_text
    a, b = _number(left_text), _number(right_text)
    if a is None or b is None:
        a, b = left_text, right_text
    if op == "<":
        return a < b
    if op == ">":
        return a > b
    if op == "<=":
        return a <= b
    if op == ">=":
        return a >= b
    return False


def sort_bin(item: dict, branch: str, rules: list[str]) -> tuple[str | None, list[str]]:
    """The sort bin (CL) of ``item`` returned at ``branch``: the bin of the first matching rule.

    Rule syntax (Koha's SIP2SortBinMapping): ``branch:field:op:value[:field:op:value...]:bin``
    with ``op`` one of ``eq = ne != < > <= >=`` (the order comparisons are numeric when both
    sides are numbers); a value ``$name`` means the item's own field ``name``. A line whose
    number of colons is not 1 + 3k is skipped with a warning. Returns ``(bin, warnings)``.
    """
    warnings: list[str] = []
    for line in rules:
        parts = line.split(":")
        if (len(parts) - 2) % 3 != 0 or len(parts) < 2:
            warnings.append(f"Malformed preference line found: '{line}'")
            continue
        rule_branch, bin_name = parts[0], parts[-1]
        if rule_branch != branch:
            continue
        conditions = parts[1:-1]
        matched = True
        for index in range(0, len(conditions), 3):
            name, op, value = conditions[index : index + 3]
            if value.startswith("$"):
                value = _item_value(item, value[1:])
            if not _compare(_item_value(item, name), op, value):
                matched = False
                break
        if matched:
            return bin_name, warnings
    return None, warnings


# --- the checkin -----------------------------------------------------------------------------


def _hold_with_patron(txn, hold: dict) -> dict:
    holder = txn.one(
        "SELECT cardnumber, userid, firstname, surname, email, phone, branchcode AS "
        "patron_branchcode FROM borrowers WHERE borrowernumber = ?",
        (hold["borrowernumber"],),
    )
    return {**hold, **(holder or {})}


def _return_allowed(sysprefs: Any, item: dict, branch: str) -> tuple[bool, str | None]:
    """AllowReturnToBranch: ``anywhere``, ``homebranch``, ``holdingbranch`` or
    ``homeorholdingbranch``; returns ``(allowed, the library it must go back to)``."""
    mode = (sysprefs.get("AllowReturnToBranch", "anywhere") if sysprefs is not None else "") or (
        "anywhere"
    )
    home, holding = item.get("homebranch"), item.get("holdingbranch")
    if mode == "homebranch" and branch != home:
        return False, home
    if mode == "holdingbranch" and branch != holding:
        return False, holding
    if mode == "homeorholdingbranch" and branch not in (home, holding):
        return False, home
    return True, None


_OPEN_TRANSFER = (
    "FROM branchtransfers t WHERE t.itemnumber = ? AND t.datearrived IS NULL "
    "AND t.datecancelled IS NULL ORDER BY t.datesent, t.branchtransfer_id LIMIT 1"
)
# What a checkin reads of the item's circulation, in one statement (always one row): the
# borrower of its loan (every column, NULL when on the shelf), the loan's columns
# (LOAN_COLUMNS, as kgw_loan_<column>), whether its issue_id is already in old_issues, and
# the item's open transfer (open_transfer: its id and destination) and whether the loan has an
# accruing fine (an UNRETURNED OVERDUE line; read again, locked, before it is changed). Not
# locked here: the
# foreign-key checks of old_issues and accountlines lock the borrower (shared) after the item,
# the order every circulation request follows.
_CHECKIN_FACTS = (
    "SELECT b.*, "
    + ", ".join(f"i.{column} AS kgw_loan_{column}" for column in LOAN_COLUMNS)
    + ", (SELECT o.issue_id FROM old_issues o WHERE o.issue_id = i.issue_id) AS kgw_old_issue, "
    "(SELECT MIN(f.accountlines_id) FROM accountlines f WHERE f.borrowernumber = i.borrowernumber "
    "AND f.itemnumber = i.itemnumber AND f.debit_type_code = 'OVERDUE' "
    "AND f.status = 'UNRETURNED') AS kgw_accruing, "
    f"(SELECT t.branchtransfer_id {_OPEN_TRANSFER}) AS kgw_transfer_id, "
    f"(SELECT t.tobranch {_OPEN_TRANSFER}) AS kgw_transfer_tobranch "
    "FROM (SELECT 1 AS one) x LEFT JOIN issues i ON i.itemnumber = ? "
    "LEFT JOIN borrowers b ON b.borrowernumber = i.borrowernumber"
)
_LOAN_KEYS = {f"kgw_loan_{column}": column for column in LOAN_COLUMNS}


def _checkin_facts(txn, itemnumber: int) -> tuple[dict | None, dict | None, bool, dict | None]:
    """``(loan, borrower, clash, transfer)`` of the item: its loan (the ``issues`` columns
    with ``kgw_accruing``, whether it has an accruing fine line),
    ``MarkIssueReturned`` copies, with the borrower's ``cardnumber``, ``userid``, names,
    ``borrower_branchcode`` and ``categorycode`` as :func:`~koha_gateway.ils.items.current_loan`
    gives them), the loan's borrower (``borrowers`` row), whether the loan's ``issue_id`` is
    already in ``old_issues`` and the open transfer (``branchtransfer_id``, ``tobranch``) as
    :func:`~koha_gateway.ils.items.open_transfer` finds it."""
    row = txn.one(_CHECKIN_FACTS, (itemnumber, itemnumber, itemnumber))
    transfer = None
    if row["kgw_transfer_id"] is not None:
        transfer = {
            "branchtransfer_id": row["kgw_transfer_id"],
            "tobranch": row["kgw_transfer_tobranch"],
        }
    if row["kgw_loan_issue_id"] is None:
        return None, None, False, transfer
    borrower: dict = {}
    loan: dict = {}
    for key, value in row.items():
        column = _LOAN_KEYS.get(key)
        if column is not None:
            loan[column] = value
        elif not key.startswith("kgw_"):
            borrower[key] = value
    for key in ("cardnumber", "userid", "firstname", "surname", "categorycode"):
        loan[key] = borrower.get(key)
    loan["borrower_branchcode"] = borrower.get("branchcode")
    loan["kgw_accruing"] = row["kgw_accruing"] is not None
    return loan, borrower, row["kgw_old_issue"] is not None, transfer


def _future_holds_days(sysprefs: Any) -> int:
    """ConfirmFutureHolds: how many days ahead a checkin looks for holds that start later
    (0, the default, only counts holds that have started; at most about a century)."""
    days = sysprefs.number("ConfirmFutureHolds", 0.0) if sysprefs is not None else 0.0
    if not math.isfinite(days) or days <= 0:
        return 0
    return int(min(days, 36500))


def checkin(
    txn,
    ctx: CircContext,
    *,
    item: dict,
    branch: str | None = None,
    return_date: datetime | None = None,
) -> CheckinOutcome:
    """Return ``item`` (the locked :func:`~koha_gateway.ils.items.find_item` row) at ``branch``
    (the session's library when not given) (3M SIP2 2.00, Checkin (09)); see the module
    docstring for the order of decisions.

    ``return_date`` is the return-date fixed field when the SC sent one (the fine is computed
    for that instant, and the return is stored with it); ``ctx.now`` is the request's instant.

    Written as Koha's ``AddReturn`` writes it: the loan moves to ``old_issues`` (same
    ``issue_id``, ``returndate``); the item is no longer on loan, is held here, seen now and
    found if it was lost (``itemlost_on`` cleared); an overdue fine is charged or its
    accruing line updated, then marked ``RETURNED``; a ``return`` statistic (``localuse``
    with RecordLocalUseOnReturn for an item that was not on loan), the RETURN log (ReturnLog,
    when there was a patron), ``lastseen`` (``check_in``) and one index request.
    """
    branch = branch or ctx.branch
    sysprefs, account = ctx.sysprefs, ctx.options
    local, now_sql, today = ctx.now, ctx.now_sql, ctx.today
    returned_at = (return_date or local).replace(tzinfo=None, microsecond=0)
    flag = sysprefs.flag if sysprefs is not None else (lambda _name: False)
    loan, borrower, clash, transfer = _checkin_facts(txn, item["itemnumber"])

    def refused(message: str | None, alert: str | None, destination: str | None = None):
        return CheckinOutcome(
            False,
            message,
            alert_type=alert,
            destination=destination,
            patron=borrower,
        )

    if clash:
        return refused("Checkin failed: data problem", ALERT_DATA_PROBLEM)
    # Koha's AddReturn (and holds_block_checkin) look ConfirmFutureHolds days ahead.
    lookahead = _future_holds_days(sysprefs)
    if account.holds_block_checkin:
        waiting = holds_for_item(txn, item, today, lookahead_days=lookahead)
        if waiting:
            outcome = refused("Item is on hold, please return to circulation desk", ALERT_OTHER)
            outcome.hold = _hold_with_patron(txn, waiting[0])
            return outcome
    if flag("CircConfirmItemParts") and (item.get("materials") or "").strip():
        return refused("Checkin failed", ALERT_OTHER)
    if int(item.get("withdrawn") or 0) and flag("BlockReturnOfWithdrawnItems"):
        return refused("Item withdrawn, return not allowed", ALERT_OTHER)
    was_lost = bool(int(item.get("itemlost") or 0))
    if was_lost and flag("BlockReturnOfLostItems"):
        return refused("Item lost, return not allowed", ALERT_OTHER)
    allowed, right_branch = _return_allowed(sysprefs, item, branch)
    if not allowed:
        return refused("Checkin failed", ALERT_SEND_ELSEWHERE, right_branch)

    outcome = CheckinOutcome(True, patron=borrower)
    dateformat = (sysprefs.get("dateformat", "iso") if sysprefs is not None else "iso") or "iso"

    # The return itself.
    statistic = "return"
    accruing: list = []  # the accruing fine's line when update_fine read it
    if loan is not None:
        # items.onloan is cleared below, with the rest of the item's return.
        mark_issue_returned(
            txn, loan, format_sql_datetime(returned_at), clear_onloan=False, ctx=ctx
        )
        outcome.returned = True
        fines_on = (ctx.pref("finesMode", "production") or "") == "production" and (
            ctx.flag("CalculateFinesOnReturn", True)
            or (return_date is not None and ctx.flag("CalculateFinesOnBackdate", True))
        )
        if fines_on and borrower is not None and not was_lost:
            amount = overdue_fine(
                txn,
                loan=loan,
                item=item,
                patron=borrower,
                returned_at=returned_at,
                rules_branch=fine_rules_branch(sysprefs, loan, borrower, item),
                sysprefs=sysprefs,
            )
            outcome.fine = update_fine(
                txn,
                ctx,
                loan=loan,
                item=item,
                amount=amount,
                backdated=return_date is not None,
                description=_fine_description(item, loan, dateformat),
                accruing=accruing,
                known_absent=not loan["kgw_accruing"],
            )
    else:
        outcome.not_issued = True
        outcome.ok = False
        outcome.messages.append("NotIssued")
        if flag("RecordLocalUseOnReturn"):
            statistic = "localuse"
            outcome.messages.append("LocalUse")
    # Koha's Koha::Item->store clears itemlost_on only when itemlost changes to false: decided
    # here from the locked row, so the statement does not depend on the engine's order of
    # evaluating assignments (MariaDB's is left to right).
    found = ", itemlost = 0, itemlost_on = NULL" if was_lost else ""
    txn.execute_later(
        f"UPDATE items SET onloan = NULL, holdingbranch = ?, datelastseen = ?{found} "
        "WHERE itemnumber = ?",
        (branch, now_sql, item["itemnumber"]),
    )
    if was_lost:
        outcome.messages.append("WasLost")
        log_found_item(txn, ctx, item["itemnumber"])  # ModDateLastSeen's store
    item = dict(item, onloan=None, holdingbranch=branch, itemlost=0, datelastseen=now_sql)
    if loan is not None:
        if not accruing and not loan["kgw_accruing"]:
            accruing.append(None)  # none when the loan was read, none made since
        fix_overdues_on_return(txn, loan, "RETURNED", *accruing)
        if borrower is not None:
            outcome.suspended_until = debar_on_return(
                txn, ctx, loan=loan, item=item, borrower=borrower, returned_at=returned_at
            )
    write_statistic(txn, ctx, statistic, branch=branch, item=item, patron=borrower, value=0)
    if borrower is not None:
        if wants_log(ctx, "ReturnLog"):
            log_action(
                txn,
                ctx,
                "CIRCULATION",
                "RETURN",
                borrower["borrowernumber"],
                str(item["itemnumber"]),
            )
        update_lastseen(txn, ctx, borrower, "check_in")

    # Holds.
    holds = holds_for_item(txn, item, today, lock=True, lookahead_days=lookahead)
    # The open transfer was read with the loan: nothing here has changed it since.
    if holds:
        hold = holds[0]
        here = hold["branchcode"] == branch
        outcome.alert_type = ALERT_HOLD_HERE if here else ALERT_HOLD_ELSEWHERE
        outcome.destination = hold["branchcode"]
        outcome.messages.append("ResFound")
        if account.holds_get_captured:
            delay = int(sysprefs.number("ReservesMaxPickUpDelay", 7)) if sysprefs else 7
            found = capture_hold(txn, ctx, hold, item, branch=branch, pickup_delay_days=delay)
            hold = dict(hold, found=found, itemnumber=item["itemnumber"])
        outcome.hold = _hold_with_patron(txn, hold)
    elif transfer is not None and transfer["tobranch"] == branch:
        txn.execute_later(
            "UPDATE branchtransfers SET datearrived = ? WHERE branchtransfer_id = ?",
            (now_sql, transfer["branchtransfer_id"]),
        )
        outcome.messages.append("TransferArrived")
    elif transfer is not None:
        # Arrived at the wrong library: it must still go where the transfer was headed.
        txn.execute_later(
            "UPDATE branchtransfers SET frombranch = ?, datesent = ? WHERE branchtransfer_id = ?",
            (branch, now_sql, transfer["branchtransfer_id"]),
        )
        outcome.alert_type = ALERT_SEND_ELSEWHERE
        outcome.destination = transfer["tobranch"]
        outcome.messages.append("WrongTransfer")
    elif item.get("homebranch") and item["homebranch"] != branch:
        outcome.alert_type = ALERT_SEND_ELSEWHERE
        outcome.destination = item["homebranch"]
        if flag("AutomaticItemReturn"):
            start_transfer(
                txn,
                ctx,
                item,
                frombranch=branch,
                tobranch=item["homebranch"],
                reason="ReturnToHome",
            )
            outcome.messages.append("WasTransfered")
        else:
            outcome.messages.append("NeedsTransfer")

    index_biblio(txn, ctx, item.get("biblionumber"))
    if outcome.returned:
        holds_queue_update(txn, ctx, item.get("biblionumber"))  # AddReturn's, after the index

    # Sort bin.
    rules = parse_sort_bin_rules(
        account.sort_bin_mappings,
        sysprefs.get("SIP2SortBinMapping", "") if sysprefs is not None else "",
    )
    if rules:
        outcome.sort_bin, outcome.warnings = sort_bin(item, branch, rules)

    # Screen message, in the priority order of Koha's ILS::checkin.
    notices = []
    if "NeedsTransfer" in outcome.messages:
        notices.append(f"This item must still be transferred to {item['homebranch']} branch.")
    if outcome.not_issued:
        if not account.checked_in_ok:
            outcome.message = "Item not checked out"
    else:
        outcome.message = _success_message(txn, account, sysprefs, item, borrower)
    if notices:
        outcome.message = " -- ".join(filter(None, [outcome.message, *notices]))
    return outcome


def fine_rules_branch(sysprefs: Any, loan: dict, borrower: dict, item: dict) -> str:
    """The branch whose fine rules apply: ``CircControl`` with the loan's library standing in
    for ``PickupLibrary`` (Koha's ``_CalculateAndUpdateFine``)."""
    return circ_control_branch(
        sysprefs,
        checkout_branch=loan.get("branchcode") or item.get("homebranch") or "",
        patron=borrower,
        item=item,
    )


def _success_message(txn, account: Any, sysprefs: Any, item: dict, borrower: dict | None):
    """``show_checkin_message`` and ``show_outstanding_amount`` texts of a successful return."""
    parts = []
    if account.show_checkin_message:
        if sysprefs is not None and sysprefs.flag("UseLocationAsAQInSIP"):
            where = item.get("permanent_location") or ""
        else:
            snapshot = reference.cached(txn)
            where = (
                (
                    snapshot.branchname(item["homebranch"])
                    if snapshot is not None
                    else txn.scalar(
                        "SELECT branchname FROM branches WHERE branchcode = ?",
                        (item["homebranch"],),
                    )
                )
                or item.get("homebranch")
                or ""
            )
        parts.append(f"Item checked-in: {where} - {item.get('location') or ''}.")
    if borrower is not None and account.show_outstanding_amount:
        owed = txn.scalar(
            "SELECT SUM(amountoutstanding) AS owed FROM accountlines WHERE borrowernumber = ? "
            "AND itemnumber = ? AND debit_type_code = 'OVERDUE' AND amountoutstanding > 0",
            (borrower["borrowernumber"], item["itemnumber"]),
        )
        if owed:
            parts.append(f"You owe ${round_money(owed):.2f} for this item.")
    return " ".join(parts) or None
