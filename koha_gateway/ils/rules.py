"""Circulation rules: branch x patron category x item type, with ``'*'`` defaults.

This follows Koha's ``Koha::CirculationRules->get_effective_rule``: of all the rows whose
branch, category and item type are either the asked value or ``'*'``, the most specific wins,
where a specific branch matters most, then a specific category, then a specific item type.
Rule names are Koha's (``issuelength``, ``renewalsallowed``, ``renewalperiod``, ``maxissueqty``,
``fine``, ``chargeperiod``, ``overduefinescap``, ``reservesallowed``, ``norenewalbefore``, ...).

An empty ``rule_value`` means "unlimited / not set" in Koha; :func:`rule_int` and
:func:`rule_float` return ``default`` for it. Which branch to pass (the checkout library, the
patron's or the item's home library) is the caller's decision (Koha's ``CircControl``).

No cache: the rules are a handful of indexed rows read inside the request's transaction, so a
change made with ``koha-gateway-admin`` is seen by the next request.
"""

from __future__ import annotations

__all__ = ["get_rule", "rule_float", "rule_int", "set_rule"]

ANY = "*"


def get_rule(
    txn,
    rule_name: str,
    *,
    branchcode: str | None,
    categorycode: str | None,
    itemtype: str | None,
) -> str | None:
    """The effective value of ``rule_name``, or ``None`` when no row applies.

    ``None`` for a dimension means "not known": only the ``'*'`` rows of it match.
    """
    rows = txn.query(
        "SELECT branchcode, categorycode, itemtype, rule_value FROM circulation_rules "
        "WHERE rule_name = ? AND branchcode IN (?, ?) AND categorycode IN (?, ?) "
        "AND itemtype IN (?, ?)",
        (
            rule_name,
            branchcode or ANY,
            ANY,
            categorycode or ANY,
            ANY,
            itemtype or ANY,
            ANY,
        ),
    )
    if not rows:
        return None
    best = min(
        rows,
        key=lambda row: (
            row["branchcode"] == ANY,
            row["categorycode"] == ANY,
            row["itemtype"] == ANY,
        ),
    )
    return best["rule_value"]


def rule_int(
    txn,
    rule_name: str,
    *,
    branchcode: str | None,
    categorycode: str | None,
    itemtype: str | None,
    default: int | None = None,
) -> int | None:
    """:func:`get_rule` as an integer; ``default`` when unset, empty or not a number."""
    value = rule_float(
        txn,
        rule_name,
        branchcode=branchcode,
        categorycode=categorycode,
        itemtype=itemtype,
        default=None,
    )
    return default if value is None else int(value)


def rule_float(
    txn,
    rule_name: str,
    *,
    branchcode: str | None,
    categorycode: str | None,
    itemtype: str | None,
    default: float | None = None,
) -> float | None:
    """:func:`get_rule` as a float; ``default`` when unset, empty or not a number."""
    value = get_rule(
        txn, rule_name, branchcode=branchcode, categorycode=categorycode, itemtype=itemtype
    )
    if value is None or str(value).strip() == "":
        return default
    try:
        return float(str(value).strip())
    except ValueError:
        return default


def set_rule(
    txn,
    rule_name: str,
    value: str | int | float | None,
    *,
    branchcode: str = ANY,
    categorycode: str = ANY,
    itemtype: str = ANY,
) -> None:
    """Create or change one rule row (portable upsert)."""
    text = None if value is None else str(value)
    key = (branchcode or ANY, categorycode or ANY, itemtype or ANY, rule_name)
    existing = txn.one(
        "SELECT id FROM circulation_rules WHERE branchcode = ? AND categorycode = ? "
        "AND itemtype = ? AND rule_name = ?",
        key,
    )
    if existing is None:
        txn.execute(
            "INSERT INTO circulation_rules (branchcode, categorycode, itemtype, rule_name, "
            "rule_value) VALUES (?, ?, ?, ?, ?)",
            (*key, text),
        )
    else:
        txn.execute(
            "UPDATE circulation_rules SET rule_value = ? WHERE id = ?", (text, existing["id"])
        )
