"""Patron accounts: debits (fines, rental charges) and credits (payments, write-offs).

Koha's ``accountlines`` model (``Koha::Account``): a debit has a ``debit_type_code``
(``OVERDUE``, ``RENT``, ``LOST``, ``MANUAL``...) and a positive ``amount``; a credit has a
``credit_type_code`` (``PAYMENT``, ``WRITEOFF``) and a negative ``amount``. ``amountoutstanding``
is what is still owed on a debit, or what is still unspent on a credit (negative). The balance
of a patron is the sum of ``amountoutstanding`` over all lines. ``account_offsets`` records, as
Koha 21.11 and later do, how every line was created (``CREATE``, +amount, for debits and credits
alike), how a credit was applied to debits (``APPLY``, minus the amount cancelled) and how an
accruing overdue fine changed (``OVERDUE_INCREASE`` / ``OVERDUE_DECREASE``, the signed
difference). Applying a credit leaves the debit's ``status`` as it is. With FinesLog every new
line and every fine update is logged (``action_logs`` module ``FINES``).

Amounts are rounded to cents when written (``round_money``); comparisons are done in cents.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from koha_gateway.ils import perl_true, round_money
from koha_gateway.ils.circulation import log_action, perl_dump, wants_log, write_statistic

__all__ = [
    "PaymentOutcome",
    "add_credit",
    "add_debit",
    "adjust_overdue",
    "apply_credit",
    "balance",
    "fix_overdues_on_return",
    "max_fine_room",
    "outstanding_debits",
    "parse_amount",
    "pay",
    "update_fine",
]

_AMOUNT = re.compile(r"[0-9]+(?:\.[0-9]+)?|[0-9]*\.[0-9]+")
_COMMA_AMOUNT = re.compile(r"[0-9]+,[0-9]{1,2}")


def _cents(amount) -> int:
    return int((Decimal(str(amount or 0)) * 100).quantize(Decimal("1"), rounding=ROUND_HALF_UP))


def parse_amount(text: str | None) -> float | None:
    """A SIP2 fee amount (BV) as a positive amount in cents precision, or ``None`` when it is
    not a positive decimal number. A decimal comma (``12,50``) is accepted, as some kiosks
    send the amount in their locale."""
    if text is None:
        return None
    value = text.strip()
    if _COMMA_AMOUNT.fullmatch(value):
        value = value.replace(",", ".")
    if not _AMOUNT.fullmatch(value):
        return None
    try:
        amount = Decimal(value).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    except InvalidOperation:
        return None
    if amount <= 0:
        return None
    return float(amount)


def balance(txn, borrowernumber: int) -> float:
    """What the patron owes (negative when in credit)."""
    total = txn.scalar(
        "SELECT SUM(amountoutstanding) FROM accountlines WHERE borrowernumber = ?",
        (borrowernumber,),
    )
    return round_money(total or 0)


def outstanding_debits(txn, borrowernumber: int, *, lock: bool = False) -> list[dict]:
    """The patron's debits with something still owed, oldest first."""
    sql = (
        "SELECT accountlines_id, borrowernumber, itemnumber, date, amount, amountoutstanding, "
        "description, debit_type_code, status FROM accountlines WHERE borrowernumber = ? "
        "AND debit_type_code IS NOT NULL AND amount > 0 AND amountoutstanding > 0 "
        "ORDER BY accountlines_id"
    )
    if lock:
        sql += txn.for_update
    return [dict(row) for row in txn.query(sql, (borrowernumber,))]


def _offset(txn, ctx, *, credit_id, debit_id, kind: str, amount_cents: int) -> None:
    txn.execute_later(
        "INSERT INTO account_offsets (credit_id, debit_id, type, amount, created_on) "
        "VALUES (?, ?, ?, ?, ?)",
        (credit_id, debit_id, kind, amount_cents / 100, ctx.now_sql),
    )


def add_debit(
    txn,
    ctx,
    *,
    borrowernumber: int,
    amount: float,
    debit_type: str,
    description: str = "",
    note: str = "",
    user_id: int | None = None,
    library_id: str | None = None,
    itemnumber: int | None = None,
    issue_id: int | None = None,
) -> int:
    """Charge the patron (Koha's ``Koha::Account->add_debit``); returns the accountline id.

    The line gets ``amount`` = ``amountoutstanding`` = +amount, ``status`` ``UNRETURNED`` for
    an ``OVERDUE`` (NULL otherwise), ``interface`` the context's, ``manager_id`` ``user_id``
    and ``branchcode`` ``library_id`` (Koha passes them for rental charges, not for overdue
    fines); then a ``CREATE`` offset of +amount and, with FinesLog, a ``FINES``/``CREATE`` log.
    """
    cents = _cents(amount)
    value = cents / 100
    line_id = txn.insert(
        "INSERT INTO accountlines (borrowernumber, itemnumber, issue_id, date, amount, "
        "amountoutstanding, description, debit_type_code, status, interface, branchcode, "
        "manager_id, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            borrowernumber,
            itemnumber,
            issue_id,
            ctx.now_sql,
            value,
            value,
            description or "",
            debit_type,
            "UNRETURNED" if debit_type == "OVERDUE" else None,
            ctx.interface,
            library_id,
            user_id,
            note or "",
        ),
        pk="accountlines_id",
    )
    _offset(txn, ctx, credit_id=None, debit_id=line_id, kind="CREATE", amount_cents=cents)
    if wants_log(ctx, "FinesLog"):
        info = {
            "action": f"create_{debit_type}",
            "borrowernumber": borrowernumber,
            "amount": value,
            "description": description or "",
            "amountoutstanding": value,
            "debit_type_code": debit_type,
            "note": note or "",
            "itemnumber": itemnumber,
            "manager_id": user_id,
        }
        log_action(txn, ctx, "FINES", "CREATE", borrowernumber, perl_dump(info))
    return line_id


def add_credit(
    txn,
    ctx,
    *,
    borrowernumber: int,
    amount: float,
    credit_type: str,
    payment_type: str | None = None,
    description: str = "",
    user_id: int | None = None,
    library_id: str | None = None,
    itemnumber: int | None = None,
    register_id: int | None = None,
) -> int:
    """A credit (Koha's ``Koha::Account->add_credit``): ``amount`` = ``amountoutstanding`` =
    -amount, a ``CREATE`` offset of +amount, a ``payment``/``writeoff`` statistics row with
    the negative amount for those types, and the FinesLog row. Returns the line id."""
    cents = _cents(amount)
    line_id = txn.insert(
        "INSERT INTO accountlines (borrowernumber, itemnumber, date, amount, "
        "amountoutstanding, description, credit_type_code, payment_type, interface, "
        "branchcode, register_id, manager_id, note) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            borrowernumber,
            itemnumber,
            ctx.now_sql,
            -cents / 100,
            -cents / 100,
            description or "",
            credit_type,
            payment_type,
            ctx.interface,
            library_id,
            register_id,
            user_id,
            "",
        ),
        pk="accountlines_id",
    )
    _offset(txn, ctx, credit_id=line_id, debit_id=None, kind="CREATE", amount_cents=cents)
    if credit_type in ("PAYMENT", "WRITEOFF"):
        write_statistic(
            txn,
            ctx,
            credit_type.lower(),
            branch=library_id,
            patron={"borrowernumber": borrowernumber},
            value=-cents / 100,
        )
    if wants_log(ctx, "FinesLog"):
        info = {
            "action": f"create_{credit_type}",
            "borrowernumber": borrowernumber,
            "amount": -cents / 100,
            "description": description or "",
            "amountoutstanding": -cents / 100,
            "credit_type_code": credit_type,
            "payment_type": payment_type,
            "note": "",
            "itemnumber": itemnumber,
            "manager_id": user_id,
            "branchcode": library_id,
        }
        log_action(txn, ctx, "FINES", "CREATE", borrowernumber, perl_dump(info))
    return line_id


def apply_credit(txn, ctx, credit_id: int, credit_cents: int, debits: list[dict]) -> int:
    """Apply an unspent credit of ``credit_cents`` to ``debits`` in order (Koha's
    ``Koha::Account::Line->apply``): each gets an ``APPLY`` offset of minus what it cancels
    and its ``amountoutstanding`` goes down; the debit's ``status`` is left as it is. Returns
    the cents left; the credit's ``amountoutstanding`` is updated."""
    remaining = credit_cents
    for debit in debits:
        if remaining <= 0:
            break
        outstanding = _cents(debit["amountoutstanding"])
        part = min(outstanding, remaining)
        if part <= 0:
            continue
        remaining -= part
        debit["amountoutstanding"] = (outstanding - part) / 100
        txn.execute_later(
            "UPDATE accountlines SET amountoutstanding = ? WHERE accountlines_id = ?",
            ((outstanding - part) / 100, debit["accountlines_id"]),
        )
        _offset(
            txn,
            ctx,
            credit_id=credit_id,
            debit_id=debit["accountlines_id"],
            kind="APPLY",
            amount_cents=-part,
        )
    txn.execute_later(
        "UPDATE accountlines SET amountoutstanding = ? WHERE accountlines_id = ?",
        (-remaining / 100, credit_id),
    )
    return remaining


def adjust_overdue(txn, ctx, line: dict, amount: float) -> None:
    """Change the amount of an accruing (``UNRETURNED``) overdue fine (Koha's
    ``Koha::Account::Line->adjust`` with type ``overdue_update``): an ``OVERDUE_INCREASE`` or
    ``OVERDUE_DECREASE`` offset of the signed difference; what was paid beyond the new amount
    becomes an ``OVERPAYMENT`` credit; FinesLog ``FINES``/``UPDATE``."""
    old = _cents(line["amount"])
    new = _cents(amount)
    difference = new - old
    if difference == 0:
        return
    outstanding = _cents(line["amountoutstanding"]) + difference
    overpaid = 0
    if outstanding < 0:
        overpaid, outstanding = -outstanding, 0
    txn.execute_later(
        "UPDATE accountlines SET date = ?, amount = ?, amountoutstanding = ? "
        "WHERE accountlines_id = ?",
        (ctx.now_sql, new / 100, outstanding / 100, line["accountlines_id"]),
    )
    kind = "OVERDUE_INCREASE" if difference > 0 else "OVERDUE_DECREASE"
    _offset(
        txn,
        ctx,
        credit_id=None,
        debit_id=line["accountlines_id"],
        kind=kind,
        amount_cents=difference,
    )
    if overpaid:
        add_credit(
            txn,
            ctx,
            borrowernumber=line["borrowernumber"],
            amount=overpaid / 100,
            credit_type="OVERPAYMENT",
            itemnumber=line.get("itemnumber"),
        )
    if wants_log(ctx, "FinesLog"):
        info = {
            "action": "overdue_update",
            "borrowernumber": line["borrowernumber"],
            "amount": new / 100,
            "amount_before": old / 100,
            "amountoutstanding": outstanding / 100,
            "accountlines_id": line["accountlines_id"],
            "itemnumber": line.get("itemnumber"),
            "manager_id": None,
        }
        log_action(txn, ctx, "FINES", "UPDATE", line["borrowernumber"], perl_dump(info))


@dataclass
class PaymentOutcome:
    """The result of a Fee Paid request (SIP2 37 -> 38)."""

    ok: bool
    message: str | None = None
    credit_id: int | None = None
    applied: list[tuple[int, float]] = field(default_factory=list)
    unspent: float = 0.0


def pay(
    txn,
    ctx,
    *,
    borrowernumber: int,
    amount: float,
    sip_payment_type: str,
    writeoff: bool,
    fee_id: str | None,
    disallow_overpayment: bool,
) -> PaymentOutcome:
    """Record a payment or write-off (3M SIP2 2.00, Fee Paid (37); Koha's
    ``Koha::Account->pay`` as ``C4::SIP::ILS::Transaction::FeePayment`` calls it).

    The credit line gets ``credit_type_code`` ``PAYMENT`` (or ``WRITEOFF``), ``payment_type``
    ``SIP`` + the two-character SIP payment type, ``manager_id`` the staff patron,
    ``branchcode`` NULL (Koha's SIP passes no library) and the account's ``register_id``
    (:func:`add_credit`). It is applied to the accountline ``fee_id`` (CG) first when given,
    then to every outstanding debit oldest first, as Koha's ``pay`` does. With
    ``disallow_overpayment`` a payment larger than what the patron owes is refused; otherwise
    the rest stays on the account as a credit (negative ``amountoutstanding``). A write-off
    only cancels debts: it never leaves a credit (Koha would leave one).
    """
    cents = _cents(amount)
    if cents <= 0:
        return PaymentOutcome(False, "Invalid fee amount.")
    debits = outstanding_debits(txn, borrowernumber, lock=True)
    owed = _cents(balance(txn, borrowernumber))
    if fee_id is not None and fee_id.strip() != "":
        try:
            wanted = int(fee_id.strip())
        except ValueError:
            return PaymentOutcome(False, "Invalid fee identifier.")
        first = [row for row in debits if row["accountlines_id"] == wanted]
        if not first:
            return PaymentOutcome(False, "Invalid fee identifier.")
        debits = first + [row for row in debits if row["accountlines_id"] != wanted]
        if writeoff:
            owed = _cents(first[0]["amountoutstanding"])
    if (disallow_overpayment or writeoff) and cents > owed:
        message = "Write-off exceeds the amount owed." if writeoff else None
        return PaymentOutcome(False, message)
    credit_type = "WRITEOFF" if writeoff else "PAYMENT"
    credit_id = add_credit(
        txn,
        ctx,
        borrowernumber=borrowernumber,
        amount=cents / 100,
        credit_type=credit_type,
        payment_type="SIP" + (sip_payment_type or "00"),
        user_id=ctx.staff_borrowernumber,
        library_id=None,
        register_id=ctx.options.register_id,
    )
    before = {row["accountlines_id"]: _cents(row["amountoutstanding"]) for row in debits}
    remaining = apply_credit(txn, ctx, credit_id, cents, debits)
    applied = []
    for row in debits:
        paid = before[row["accountlines_id"]] - _cents(row["amountoutstanding"])
        if paid:
            applied.append((row["accountlines_id"], paid / 100))
    return PaymentOutcome(True, None, credit_id, applied, remaining / 100)


# --- overdue fines (C4::Overdues::UpdateFine, C4::Circulation::_FixOverduesOnReturn) --------


def _accruing_fine(txn, loan: dict) -> dict | None:
    return txn.one(
        "SELECT accountlines_id, borrowernumber, itemnumber, amount, amountoutstanding "
        "FROM accountlines WHERE borrowernumber = ? AND itemnumber = ? "
        "AND debit_type_code = 'OVERDUE' AND status = 'UNRETURNED' "
        "ORDER BY accountlines_id" + txn.for_update,
        (loan["borrowernumber"], loan["itemnumber"]),
    )


#: :func:`update_fine` did not read the accruing line (``fix_overdues_on_return`` reads it).
UNREAD = object()


def max_fine_room(txn, ctx, borrowernumber: int) -> float | None:
    """What the ``MaxFine`` preference still allows to add to the patron's overdue fines:
    ``MaxFine`` less the ``amountoutstanding`` of every ``OVERDUE`` line of the patron
    (whatever its status, the loan's own accruing line included), as Koha's ``UpdateFine``
    counts it. ``None`` when ``MaxFine`` is not set (empty or ``0``, Koha's default: no cap);
    a value that is not a number caps at 0, as Perl reads it."""
    value = ctx.pref("MaxFine") if ctx is not None else None
    if not perl_true(value):
        return None
    try:
        limit = float(str(value).strip())
    except ValueError:
        limit = 0.0
    owed = txn.scalar(
        "SELECT SUM(amountoutstanding) AS owed FROM accountlines WHERE borrowernumber = ? "
        "AND debit_type_code = 'OVERDUE'",
        (borrowernumber,),
    )
    return limit - float(owed or 0)


def update_fine(
    txn,
    ctx,
    *,
    loan: dict,
    item: dict,
    amount: float,
    backdated: bool,
    description: str = "",
    accruing: list | None = None,
    known_absent: bool = False,
) -> float | None:
    """Koha's ``UpdateFine`` for one loan: the accruing (``UNRETURNED``) ``OVERDUE`` line of
    the loan is adjusted to ``amount`` (:func:`adjust_overdue`), or a new one is charged when
    ``amount`` > 0 (:func:`add_debit`: no manager, no library, as Koha's fine code passes
    none). ``amount`` 0 only adjusts an existing line, and only for a ``backdated`` return.
    Returns what this added to the patron's debt (``None`` when nothing).

    ``accruing``, a list, receives the loan's accruing line as it is now (``id`` and
    ``amount``; ``None`` when there is none), for :func:`fix_overdues_on_return`, which then
    need not read it again in the same transaction (the line was read locked).
    ``known_absent``: a read of this transaction found no accruing line; with ``amount`` 0 it
    is not read again (there is nothing to adjust). A charge always reads it, locked.

    ``MaxFine`` (:func:`max_fine_room`): when the patron's overdue fines already reach it,
    nothing is written (not even a decrease, as in Koha); otherwise an increase of the line,
    or a new line, is cut to what is left under it."""
    if amount <= 0 and not backdated:
        return None  # neither an adjustment nor a new line: nothing to read
    if amount <= 0 and known_absent:
        if accruing is not None:
            accruing.append(None)
        return None
    room = max_fine_room(txn, ctx, loan["borrowernumber"])
    if room is not None and round_money(room) <= 0:
        return None  # at MaxFine: the accruing line, if any, is left as it is
    line = _accruing_fine(txn, loan)
    if room is not None:
        before_amount = float(line["amount"]) if line is not None else 0.0
        if amount - before_amount > room:
            amount = before_amount + room
    if line is not None:
        before = _cents(line["amount"])
        adjust_overdue(txn, ctx, dict(line), amount)
        if accruing is not None:
            # adjust_overdue leaves the line unchanged when the amount is the same.
            accruing.append({"accountlines_id": line["accountlines_id"], "amount": amount})
        added = _cents(amount) - before
        return added / 100 if added > 0 else None
    if amount <= 0:
        if accruing is not None:
            accruing.append(None)
        return None
    line_id = add_debit(
        txn,
        ctx,
        borrowernumber=loan["borrowernumber"],
        amount=amount,
        debit_type="OVERDUE",
        description=description,
        itemnumber=item["itemnumber"],
        issue_id=loan["issue_id"],
    )
    if accruing is not None:
        accruing.append({"accountlines_id": line_id, "amount": amount})
    return round_money(amount)


def fix_overdues_on_return(txn, loan: dict, status: str, line: Any = UNREAD) -> None:
    """Koha's ``_FixOverduesOnReturn``: the loan's accruing ``OVERDUE`` line gets ``status``
    (``RETURNED`` on checkin, ``RENEWED`` on renewal), or is deleted with its offsets when its
    amount is 0 and nothing was paid on it. ``line``: the accruing line as :func:`update_fine`
    left it in this transaction (``None``: there is none); read here when not given."""
    if line is UNREAD:
        line = _accruing_fine(txn, loan)
    if line is None:
        return
    if _cents(line["amount"]) == 0:
        paid = txn.scalar(
            "SELECT COUNT(*) FROM account_offsets WHERE debit_id = ? AND type = 'APPLY'",
            (line["accountlines_id"],),
        )
        if not int(paid or 0):
            txn.execute_later(
                "DELETE FROM account_offsets WHERE debit_id = ?", (line["accountlines_id"],)
            )
            txn.execute_later(
                "DELETE FROM accountlines WHERE accountlines_id = ?", (line["accountlines_id"],)
            )
            return
    txn.execute_later(
        "UPDATE accountlines SET status = ? WHERE accountlines_id = ?",
        (status, line["accountlines_id"]),
    )


def active_currency(txn) -> dict | None:
    """The active currency (``currency``, ``isocode``), or ``None`` when none is active."""
    from koha_gateway.ils import reference

    snapshot = reference.cached(txn)
    if snapshot is not None:
        return None if snapshot.currency is None else dict(snapshot.currency)
    row = txn.one(
        "SELECT currency, isocode FROM currency WHERE active = 1 ORDER BY currency LIMIT 1"
    )
    return None if row is None else dict(row)
