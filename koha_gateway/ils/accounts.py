"""Patron accounts: debits (fines, rental charges) and credits (payments, write-offs).

Koha's ``accountlines`` model (``Koha::Account``): a debit has a ``debit_type_code``
(``OVERDUE``, ``RENT``, ``LOST``, ``MANUAL``...) and a positive ``amount``; a credit has a
``credit_type_code`` (``PAYMENT``, ``WRITEOFF``) and a negative ``amount``. ``amountoutstanding``
is what is still owed on a debit, or what is still unspent on a credit (negative). The balance
of a patron is the sum of ``amountoutstanding`` over all lines. ``account_offsets`` records how a
credit was created (``CREATE``) and applied to debits (``APPLY``).

Amounts are rounded to cents when written (``round_money``); comparisons are done in cents.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from koha_gateway.ils import round_money
from koha_gateway.ils.circulation import write_statistic

__all__ = [
    "PaymentOutcome",
    "add_debit",
    "balance",
    "outstanding_debits",
    "parse_amount",
    "pay",
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
        "AND debit_type_code IS NOT NULL AND amountoutstanding > 0 "
        "ORDER BY date, accountlines_id"
    )
    if lock:
        sql += txn.for_update
    return [dict(row) for row in txn.query(sql, (borrowernumber,))]


def add_debit(
    txn,
    *,
    borrowernumber: int,
    amount: float,
    debit_type: str,
    description: str,
    now: str,
    branchcode: str | None,
    itemnumber: int | None = None,
    issue_id: int | None = None,
    status: str | None = None,
) -> int:
    """Charge the patron (Koha's ``Koha::Account->add_debit``); returns the accountline id."""
    amount = round_money(amount)
    return txn.insert(
        "INSERT INTO accountlines (borrowernumber, itemnumber, issue_id, date, amount, "
        "amountoutstanding, description, debit_type_code, status, interface, branchcode) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            borrowernumber,
            itemnumber,
            issue_id,
            now,
            amount,
            amount,
            description,
            debit_type,
            status,
            "sip",
            branchcode,
        ),
        pk="accountlines_id",
    )


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
    *,
    borrowernumber: int,
    amount: float,
    sip_payment_type: str,
    writeoff: bool,
    fee_id: str | None,
    disallow_overpayment: bool,
    now: str,
    branchcode: str | None,
    register_id: int | None = None,
) -> PaymentOutcome:
    """Record a payment or write-off (3M SIP2 2.00, Fee Paid (37); Koha's
    ``Koha::Account->pay``).

    The credit line gets ``credit_type_code`` ``PAYMENT`` (or ``WRITEOFF``), ``payment_type``
    ``SIP`` + the two-character SIP payment type and ``interface`` ``sip``. It is applied to the
    accountline ``fee_id`` (CG) only when given, else to the debts oldest first. With
    ``disallow_overpayment`` a payment larger than what it pays for is refused; otherwise the
    rest stays on the account as a credit (negative ``amountoutstanding``). A write-off only
    cancels debts: it never leaves a credit. A ``payment`` (or ``writeoff``) row is added to
    ``statistics``.
    """
    cents = _cents(amount)
    if cents <= 0:
        return PaymentOutcome(False, "Invalid fee amount.")
    if fee_id is not None and fee_id.strip() != "":
        try:
            wanted = int(fee_id.strip())
        except ValueError:
            return PaymentOutcome(False, "Invalid fee identifier.")
        debits = [
            row
            for row in outstanding_debits(txn, borrowernumber, lock=True)
            if row["accountlines_id"] == wanted
        ]
        if not debits:
            return PaymentOutcome(False, "Invalid fee identifier.")
        owed = _cents(debits[0]["amountoutstanding"])
    else:
        debits = outstanding_debits(txn, borrowernumber, lock=True)
        owed = _cents(balance(txn, borrowernumber))
    if (disallow_overpayment or writeoff) and cents > owed:
        message = "Write-off exceeds the amount owed." if writeoff else None
        return PaymentOutcome(False, message)
    credit_type = "WRITEOFF" if writeoff else "PAYMENT"
    credit_id = txn.insert(
        "INSERT INTO accountlines (borrowernumber, date, amount, amountoutstanding, "
        "description, credit_type_code, payment_type, interface, branchcode, register_id) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            borrowernumber,
            now,
            -cents / 100,
            -cents / 100,
            "",
            credit_type,
            "SIP" + (sip_payment_type or "00"),
            "sip",
            branchcode,
            register_id,
        ),
        pk="accountlines_id",
    )
    txn.execute(
        "INSERT INTO account_offsets (credit_id, debit_id, type, amount, created_on) "
        "VALUES (?, NULL, 'CREATE', ?, ?)",
        (credit_id, -cents / 100, now),
    )
    remaining = cents
    applied: list[tuple[int, float]] = []
    for debit in debits:
        if remaining <= 0:
            break
        outstanding = _cents(debit["amountoutstanding"])
        part = min(outstanding, remaining)
        if part <= 0:
            continue
        remaining -= part
        txn.execute(
            "UPDATE accountlines SET amountoutstanding = ?, status = ? WHERE accountlines_id = ?",
            (
                (outstanding - part) / 100,
                _paid_status(debit, outstanding - part, writeoff),
                debit["accountlines_id"],
            ),
        )
        txn.execute(
            "INSERT INTO account_offsets (credit_id, debit_id, type, amount, created_on) "
            "VALUES (?, ?, 'APPLY', ?, ?)",
            (credit_id, debit["accountlines_id"], -part / 100, now),
        )
        applied.append((debit["accountlines_id"], part / 100))
    txn.execute(
        "UPDATE accountlines SET amountoutstanding = ? WHERE accountlines_id = ?",
        (-remaining / 100, credit_id),
    )
    write_statistic(
        txn,
        now=now,
        kind="writeoff" if writeoff else "payment",
        branch=branchcode,
        borrowernumber=borrowernumber,
        value=cents / 100,
    )
    return PaymentOutcome(True, None, credit_id, applied, remaining / 100)


def _paid_status(debit: dict, left_cents: int, writeoff: bool) -> str | None:
    """Koha marks a settled debit ``PAID`` (or ``WRITTENOFF``); an overdue fine that is still
    accruing keeps its status until it is returned."""
    if left_cents > 0:
        return debit.get("status")
    if debit.get("debit_type_code") == "OVERDUE" and debit.get("status") == "UNRETURNED":
        return "UNRETURNED"
    return "WRITTENOFF" if writeoff else "PAID"
