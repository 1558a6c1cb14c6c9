"""Payments (koha_gateway.ils.accounts): allocation, CG, write-off, overpayment; both engines."""

from __future__ import annotations

import pytest

from koha_gateway.ils import accounts as ils_accounts
from koha_gateway.ils.context import CircContext
from koha_gateway.ils.patrons import find_patron
from tests.ils.conftest import GRACE, NOW

NOW_SQL = NOW.strftime("%Y-%m-%d %H:%M:%S")


def _grace(db):
    return db.run_blocking(lambda txn: find_patron(txn, GRACE))["borrowernumber"]


def _pay(db, amount, **kw):
    number = _grace(db)
    options = {
        "sip_payment_type": "00",
        "writeoff": False,
        "fee_id": None,
        "disallow_overpayment": False,
    }
    options.update(kw)
    context = CircContext(branch="WEL", now=NOW, sysprefs=None)
    return db.run_blocking(
        lambda txn: ils_accounts.pay(txn, context, borrowernumber=number, amount=amount, **options)
    )


def _debts(db):
    return db.run_blocking(
        lambda txn: [
            (row["debit_type_code"], row["amountoutstanding"], row["status"])
            for row in txn.query(
                "SELECT debit_type_code, amountoutstanding, status FROM accountlines "
                "WHERE debit_type_code IS NOT NULL ORDER BY date, accountlines_id"
            )
        ]
    )


def _credit(db, credit_id):
    return db.run_blocking(
        lambda txn: txn.one(
            "SELECT amount, amountoutstanding, credit_type_code, payment_type, interface, "
            "branchcode FROM accountlines WHERE accountlines_id = ?",
            (credit_id,),
        )
    )


def _offsets(db, credit_id):
    return db.run_blocking(
        lambda txn: [
            (row["type"], row["debit_id"] is not None, row["amount"])
            for row in txn.query(
                "SELECT type, debit_id, amount FROM account_offsets WHERE credit_id = ? "
                "ORDER BY id",
                (credit_id,),
            )
        ]
    )


def test_payment_is_allocated_oldest_debt_first(db):
    outcome = _pay(db, 5.0)
    assert outcome.ok and outcome.unspent == 0
    # Koha's apply leaves the debits' status alone.
    assert _debts(db) == [
        ("OVERDUE", 0.0, None),
        ("LOST", 5.5, None),
        ("NEW_CARD", 1.5, None),
    ]
    assert _credit(db, outcome.credit_id) == {
        "amount": -5.0,
        "amountoutstanding": 0.0,
        "credit_type_code": "PAYMENT",
        "payment_type": "SIP00",
        "interface": "sip",
        "branchcode": None,
    }
    assert _offsets(db, outcome.credit_id) == [
        ("CREATE", False, 5.0),
        ("APPLY", True, -2.5),
        ("APPLY", True, -2.5),
    ]
    number = _grace(db)
    assert db.run_blocking(lambda txn: ils_accounts.balance(txn, number)) == 7.0


def test_payment_to_one_accountline(db):
    line = db.run_blocking(
        lambda txn: txn.scalar(
            "SELECT accountlines_id FROM accountlines WHERE debit_type_code = 'NEW_CARD'"
        )
    )
    outcome = _pay(db, 1.5, fee_id=str(line), sip_payment_type="01")
    assert outcome.ok and outcome.applied == [(line, 1.5)]
    assert _debts(db) == [
        ("OVERDUE", 2.5, None),
        ("LOST", 8.0, None),
        ("NEW_CARD", 0.0, None),
    ]
    assert _credit(db, outcome.credit_id)["payment_type"] == "SIP01"


@pytest.mark.parametrize("fee_id", ["999999", "abc"])
def test_unknown_fee_identifier_is_refused(db, fee_id):
    outcome = _pay(db, 1.0, fee_id=fee_id)
    assert (outcome.ok, outcome.message) == (False, "Invalid fee identifier.")
    assert _debts(db)[0] == ("OVERDUE", 2.5, None)


def test_writeoff(db):
    outcome = _pay(db, 12.0, writeoff=True, sip_payment_type="06")
    assert outcome.ok
    credit = _credit(db, outcome.credit_id)
    assert credit["credit_type_code"] == "WRITEOFF"
    assert credit["payment_type"] == "SIP06"
    assert [amount for _, amount, _ in _debts(db)] == [0.0] * 3
    refused = _pay(db, 1.0, writeoff=True)
    assert not refused.ok


def test_overpayment_leaves_a_credit(db):
    outcome = _pay(db, 20.0)
    assert outcome.ok and outcome.unspent == 8.0
    assert _credit(db, outcome.credit_id)["amountoutstanding"] == -8.0
    number = _grace(db)
    assert db.run_blocking(lambda txn: ils_accounts.balance(txn, number)) == -8.0


def test_disallow_overpayment(db):
    refused = _pay(db, 12.01, disallow_overpayment=True)
    assert not refused.ok
    assert [amount for _, amount, _ in _debts(db)] == [2.5, 8.0, 1.5]
    offsets = "SELECT COUNT(*) AS n FROM account_offsets WHERE type <> 'CREATE'"
    assert db.run_blocking(lambda txn: txn.scalar(offsets)) == 0
    assert _pay(db, 12.0, disallow_overpayment=True).ok


@pytest.mark.parametrize(
    ("text", "amount"),
    [
        ("5", 5.0),
        ("5.00", 5.0),
        (" 2.5 ", 2.5),
        ("2,50", 2.5),
        (".75", 0.75),
        ("1.005", 1.01),
        ("0", None),
        ("0.00", None),
        ("-1", None),
        ("abc", None),
        ("", None),
        (None, None),
        ("1,000.00", None),
        ("1e3", None),
        ("NaN", None),
    ],
)
def test_parse_amount(text, amount):
    assert ils_accounts.parse_amount(text) == amount


def test_payments_are_journalled(db):
    _pay(db, 2.0)
    _pay(db, 1.0, writeoff=True)
    rows = db.run_blocking(
        lambda txn: txn.query(
            "SELECT type, value, branch, borrowernumber, itemnumber, itemtype, ccode, other, "
            "interface FROM statistics ORDER BY type"
        )
    )
    number = _grace(db)
    common = {"branch": None, "borrowernumber": number, "itemnumber": None}
    common.update(itemtype="", ccode="", other="", interface="sip")
    # Koha's add_credit: the negative amount, no library (SIP passes none).
    assert rows == [
        {"type": "payment", "value": -2.0, **common},
        {"type": "writeoff", "value": -1.0, **common},
    ]
