"""Circulation rules: branch x patron category x item type, NULL meaning "any".

This is Koha's ``Koha::CirculationRules->get_effective_rule``: of the rows whose branch,
category and item type are each either the asked value or NULL ("any"), the most specific wins,
where a specific branch matters most, then a specific category, then a specific item type
(Koha orders by ``branchcode DESC, categorycode DESC, itemtype DESC``, which on MariaDB puts
NULLs last; the ``CASE`` ordering here does the same on every engine). A dimension asked as
``None`` (or Koha's ``'*'``) matches only the NULL rows. Rule names are Koha's
(``issuelength``, ``renewalsallowed``, ``renewalperiod``, ``maxissueqty``, ``fine``,
``chargeperiod``, ``overduefinescap``, ``reservesallowed``, ``norenewalbefore``, ...).

An empty ``rule_value`` means "unlimited / not set" in Koha; :func:`rule_int` and
:func:`rule_float` return ``default`` for it. Which branch to pass (the checkout library, the
patron's or the item's home library) is the caller's decision (Koha's ``CircControl``).

In the gateway the rules come from the reference cache (:mod:`koha_gateway.ils.reference`,
the same order in memory), checked against the table at most every ``--reference-max-age``
seconds; without a cache (``koha-gateway-admin``, tests) they are read per call.
"""

from __future__ import annotations

from koha_gateway.ils import reference

__all__ = ["ANY", "get_rule", "rule_float", "rule_int", "set_rule"]

#: How Koha's forms and ``koha-gateway-admin set-rule`` write "any"; stored as NULL.
ANY = "*"


def _key(value: str | None) -> str | None:
    return None if value in (None, "", ANY) else value


def get_rule(
    txn,
    rule_name: str,
    *,
    branchcode: str | None,
    categorycode: str | None,
    itemtype: str | None,
) -> str | None:
    """The effective value of ``rule_name``, or ``None`` when no row applies."""
    snapshot = reference.cached(txn)
    if snapshot is not None:
        return snapshot.rule(rule_name, _key(branchcode), _key(categorycode), _key(itemtype))
    conditions = ["rule_name = ?"]
    params: list = [rule_name]
    for column, value in (
        ("branchcode", _key(branchcode)),
        ("categorycode", _key(categorycode)),
        ("itemtype", _key(itemtype)),
    ):
        if value is None:
            conditions.append(f"{column} IS NULL")
        else:
            conditions.append(f"({column} = ? OR {column} IS NULL)")
            params.append(value)
    row = txn.one(
        "SELECT rule_value FROM circulation_rules WHERE "
        + " AND ".join(conditions)
        + " ORDER BY CASE WHEN branchcode IS NULL THEN 1 ELSE 0 END, "
        "CASE WHEN categorycode IS NULL THEN 1 ELSE 0 END, "
        "CASE WHEN itemtype IS NULL THEN 1 ELSE 0 END LIMIT 1",
        params,
    )
    return None if row is None else row["rule_value"]


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
    branchcode: str | None = None,
    categorycode: str | None = None,
    itemtype: str | None = None,
) -> None:
    """Create or change one rule row; ``None`` (or ``'*'``) for a dimension is "any".

    As Koha's ``set_rule``: a ``value`` of ``None`` deletes the rule, ``''`` stores
    "unlimited". The existing row is looked up with ``IS NULL`` for "any", so a default rule is
    changed rather than duplicated on every engine.
    """
    conditions = ["rule_name = ?"]
    params: list = [rule_name]
    keys = {
        "branchcode": _key(branchcode),
        "categorycode": _key(categorycode),
        "itemtype": _key(itemtype),
    }
    for column, key in keys.items():
        if key is None:
            conditions.append(f"{column} IS NULL")
        else:
            conditions.append(f"{column} = ?")
            params.append(key)
    where = " AND ".join(conditions)
    existing = txn.one(f"SELECT id FROM circulation_rules WHERE {where}{txn.for_update}", params)
    if value is None:
        if existing is not None:
            txn.execute("DELETE FROM circulation_rules WHERE id = ?", (existing["id"],))
        return
    text = str(value)
    if existing is None:
        txn.execute(
            "INSERT INTO circulation_rules (branchcode, categorycode, itemtype, rule_name, "
            "rule_value) VALUES (?, ?, ?, ?, ?)",
            (keys["branchcode"], keys["categorycode"], keys["itemtype"], rule_name, text),
        )
    else:
        txn.execute(
            "UPDATE circulation_rules SET rule_value = ? WHERE id = ?", (text, existing["id"])
        )
