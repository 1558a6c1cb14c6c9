"""Circulation rules: Koha's precedence branch > category > item type, NULL for "any"."""

from __future__ import annotations

import pytest

from koha_gateway.db.engine import IntegrityError
from koha_gateway.ils.rules import get_rule, rule_float, rule_int, set_rule


def rule(db, name, branch="WEL", category="PT", itemtype="BK"):
    return db.run_blocking(
        lambda txn: get_rule(txn, name, branchcode=branch, categorycode=category, itemtype=itemtype)
    )


def test_demo_defaults(db):
    assert rule(db, "issuelength") == "14"
    assert rule(db, "renewalsallowed") == "2"
    assert rule(db, "renewalperiod") == "14"
    assert rule(db, "maxissueqty") == "10"
    assert rule(db, "fine") == "0.25"
    assert rule(db, "chargeperiod") == "1"
    assert rule(db, "reservesallowed") == "50"


def test_unknown_rule_is_none(db):
    assert rule(db, "overduefinescap") is None


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        # (branch, category, itemtype, value) rows; the most specific wins.
        ([("*", "*", "BK", "21")], "21"),
        ([("*", "*", "BK", "21"), ("*", "PT", "*", "7")], "7"),
        ([("*", "PT", "*", "7"), ("WEL", "*", "*", "3")], "3"),
        ([("WEL", "*", "*", "3"), ("WEL", "*", "BK", "5")], "5"),
        ([("WEL", "*", "BK", "5"), ("WEL", "PT", "*", "6")], "6"),
        ([("WEL", "PT", "*", "6"), ("WEL", "PT", "BK", "8")], "8"),
        ([("KIL", "PT", "BK", "99")], "14"),  # another branch does not apply
        ([("*", "S", "BK", "99")], "14"),  # another category does not apply
    ],
)
def test_precedence(db, rows, expected):
    def setup(txn):
        for branch, category, itemtype, value in rows:
            set_rule(
                txn,
                "issuelength",
                value,
                branchcode=branch,
                categorycode=category,
                itemtype=itemtype,
            )

    db.run_blocking(setup)
    assert rule(db, "issuelength") == expected


def test_unknown_dimension_matches_only_defaults(db):
    db.run_blocking(lambda txn: set_rule(txn, "issuelength", "3", branchcode="WEL"))
    assert rule(db, "issuelength", branch=None) == "14"
    assert rule(db, "issuelength", branch="WEL", category=None, itemtype=None) == "3"


def test_set_rule_updates_in_place(db):
    db.run_blocking(lambda txn: set_rule(txn, "issuelength", "28"))
    assert rule(db, "issuelength") == "28"
    count = db.run_blocking(
        lambda txn: txn.scalar(
            "SELECT COUNT(*) AS n FROM circulation_rules WHERE rule_name = 'issuelength'"
        )
    )
    assert count == 1


def test_numeric_helpers(db):
    def read(txn):
        set_rule(txn, "overduefinescap", "")
        set_rule(txn, "norenewalbefore", "abc")
        keys = {"branchcode": "WEL", "categorycode": "PT", "itemtype": "BK"}
        return (
            rule_int(txn, "issuelength", **keys),
            rule_float(txn, "fine", **keys),
            rule_float(txn, "overduefinescap", **keys, default=-1.0),
            rule_int(txn, "norenewalbefore", **keys, default=0),
            rule_int(txn, "nothing", **keys),
        )

    assert db.run_blocking(read) == (14, 0.25, -1.0, 0, None)


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        # Rows as Koha's staff interface stores them: NULL is "any".
        ([(None, None, "BK", "21")], "21"),
        ([(None, None, "BK", "21"), (None, "PT", None, "7")], "7"),
        ([(None, "PT", "BK", "9"), ("WEL", None, None, "3")], "3"),
        ([("WEL", None, "BK", "5"), ("WEL", "PT", None, "6")], "6"),
        ([("WEL", "PT", "BK", "8"), ("WEL", "PT", None, "6")], "8"),
    ],
)
def test_kohas_null_rows(db, rows, expected):
    def setup(txn):
        for branch, category, itemtype, value in rows:
            txn.execute(
                "INSERT INTO circulation_rules (branchcode, categorycode, itemtype, rule_name, "
                "rule_value) VALUES (?, ?, ?, 'issuelength', ?)",
                (branch, category, itemtype, value),
            )

    db.run_blocking(setup)
    assert rule(db, "issuelength") == expected


def test_default_rule_is_stored_with_nulls_once(db):
    def change(txn):
        set_rule(txn, "issuelength", "21", branchcode="*", categorycode=None, itemtype="*")
        set_rule(txn, "issuelength", "28")
        return txn.query(
            "SELECT branchcode, categorycode, itemtype, rule_value FROM circulation_rules "
            "WHERE rule_name = 'issuelength'"
        )

    assert db.run_blocking(change) == [
        {"branchcode": None, "categorycode": None, "itemtype": None, "rule_value": "28"}
    ]

    if db.engine.name == "mysql":
        # Koha's own UNIQUE key sees two NULLs as different: only set_rule keeps one row.
        return

    # The gateway's own schema also refuses a second default row of one name.
    def duplicate(txn):
        txn.execute(
            "INSERT INTO circulation_rules (branchcode, categorycode, itemtype, rule_name, "
            "rule_value) VALUES (NULL, NULL, NULL, 'issuelength', '7')"
        )

    with pytest.raises(IntegrityError):
        db.run_blocking(duplicate)


def test_none_value_deletes_the_rule(db):
    db.run_blocking(lambda txn: set_rule(txn, "issuelength", "3", branchcode="WEL"))
    assert rule(db, "issuelength") == "3"
    db.run_blocking(lambda txn: set_rule(txn, "issuelength", None, branchcode="WEL"))
    assert rule(db, "issuelength") == "14"
