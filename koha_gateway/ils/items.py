"""Items: lookup by barcode, SIP2 circulation status, current loan, holds on the title.

Koha's ``C4::SIP::ILS::Item`` over the Koha-shaped schema (koha-sip-and-ldap.md sections 5.2
and 5.3). An item row from :func:`find_item` is the ``items`` row plus:

* ``title`` and ``author`` of its biblio;
* of its item type: ``itype_notforloan``, ``rentalcharge``, ``sip_media_type``,
  ``itype_description``, and ``sip_magnetic`` (kept by the gateway in
  ``kgw_itemtype_properties``: Koha has no such column);
* ``sip_item_properties``: the item properties (CH) last stored by 19 Item Status Update
  (``kgw_item_properties``);
* ``loan_issue_id``: the ``issue_id`` of its current loan (``None`` when on the shelf).
"""

from __future__ import annotations

import re
from typing import Any

from koha_gateway.ils import db_text, reference

__all__ = [
    "barcodedecode",
    "circulation_status",
    "current_loan",
    "find_biblio",
    "find_item",
    "holds_queue_length",
    "item_attribute",
    "item_by_number",
    "item_circulation",
    "item_hold",
    "mark_seen",
    "open_transfer",
    "set_item_properties",
]

#: Names SIPconfig.xml uses for item values that are not ``items`` columns: Koha::Item
#: accessors (``effective_itemtype``) and ILS::Item hash keys (``collection_code``,
#: ``shelving_location``, the names of ``cr_item_field``).
ITEM_ATTRIBUTE_ALIASES = {
    "effective_itemtype": "itype",
    "itemtype": "itype",
    "collection_code": "ccode",
    "shelving_location": "location",
}


def item_attribute(item: dict, name: str) -> Any:
    """The value of item ``name`` as SIPconfig.xml names it: an ``items`` column or one of
    :data:`ITEM_ATTRIBUTE_ALIASES`. Used by ``<item_field>``, ``cr_item_field`` and the sort
    bin rules alike (koha-sip-and-ldap.md sections 1.5, 1.6 and 4.6)."""
    return item.get(ITEM_ATTRIBUTE_ALIASES.get(name, name))


CIRC_IN_TRANSIT = "10"
CIRC_CLAIMED_RETURNED = "11"
CIRC_LOST = "12"
CIRC_MISSING = "13"
CIRC_CHARGED = "04"
CIRC_ON_HOLD_SHELF = "08"
CIRC_SHELVING_CART = "09"
CIRC_OTHER = "01"
CIRC_ON_ORDER = "02"
CIRC_AVAILABLE = "03"


def barcodedecode(barcode: str | None, input_filter: str | None = None) -> str:
    """An item barcode as the library stores it (Koha's ``barcodedecode``).

    Surrounding whitespace is always removed. ``input_filter`` is the itemBarcodeInputFilter
    preference:

    * ``whitespace``: every whitespace character is removed;
    * ``T-prefix``: ``T`` followed by a non-zero digit drops that digit and pads the number to
      seven digits (``T1234`` -> ``T0000234``); a bare number becomes ``T`` + seven digits;
      ``T0...`` is kept as it is;
    * ``EAN13``: a valid EAN-13 given without its leading zeros is padded to 13 digits.

    The ``cuecat`` and ``libsuite8`` filters (scanner-specific encodings) are not applied: with
    them the trimmed barcode is used unchanged.
    """
    text = (barcode or "").strip()
    mode = (input_filter or "").strip()
    if not text or not mode:
        return text
    if mode == "whitespace":
        return re.sub(r"\s+", "", text)
    if mode == "T-prefix":
        match = re.match(r"^[Tt](\d)", text)
        if match and match.group(1) == "0":
            return text
        rest = text[2:] if match else text
        if rest.isascii() and rest.isdigit():
            return f"T{int(rest):07d}"
        return text
    if mode == "EAN13":
        if text.isascii() and text.isdigit() and len(text) <= 13:
            padded = text.rjust(13, "0")
            if _ean13_valid(padded):
                return padded
        return text
    return text


def _ean13_valid(digits: str) -> bool:
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(digits[:12]))
    return (10 - total % 10) % 10 == int(digits[12])


def find_item(
    txn, barcode: str | None, *, lock: bool = False, input_filter: str | None = None
) -> dict | None:
    """The item with this barcode (after :func:`barcodedecode`), or ``None``.

    ``lock=True`` locks the ``items`` row for the rest of the transaction.
    """
    code = barcodedecode(barcode, input_filter)
    if not code or "\x00" in code:
        return None
    suffix = txn.for_update if lock else ""
    row = txn.one(f"{_ITEM_SELECT} WHERE it.barcode = ?{suffix}", (code,))
    if row is None:
        return None
    return _complete(txn, row)


def item_by_number(txn, itemnumber: int, *, lock: bool = False) -> dict | None:
    """The item with this ``itemnumber`` (same shape as :func:`find_item`)."""
    suffix = txn.for_update if lock else ""
    row = txn.one(f"{_ITEM_SELECT} WHERE it.itemnumber = ?{suffix}", (itemnumber,))
    return None if row is None else _complete(txn, row)


# The item with its title, author, SIP item properties and the issue_id of its loan (NULL on
# the shelf: checkout then reads no loan) in one statement. Subqueries, not joins: a locking
# read (FOR UPDATE) then locks the items row only, on every engine.
_ITEM_SELECT = (
    "SELECT it.*, (SELECT b.title FROM biblio b WHERE b.biblionumber = it.biblionumber) AS title, "
    "(SELECT b.author FROM biblio b WHERE b.biblionumber = it.biblionumber) AS author, "
    "(SELECT p.sip_item_properties FROM kgw_item_properties p "
    "WHERE p.itemnumber = it.itemnumber) AS sip_item_properties, "
    "(SELECT i.issue_id FROM issues i WHERE i.itemnumber = it.itemnumber) AS loan_issue_id "
    "FROM items it"
)


def _complete(txn, row: dict) -> dict:
    item = dict(row)
    snapshot = reference.cached(txn)
    itype = (
        snapshot.itemtype(item["itype"])
        if snapshot is not None
        else txn.one(
            "SELECT t.description, t.notforloan, t.rentalcharge, t.sip_media_type, p.sip_magnetic "
            "FROM itemtypes t LEFT JOIN kgw_itemtype_properties p ON p.itemtype = t.itemtype "
            "WHERE t.itemtype = ?",
            (item["itype"],),
        )
    )
    item["itype_description"] = itype["description"] if itype else None
    item["itype_notforloan"] = int(itype["notforloan"] or 0) if itype else 0
    item["rentalcharge"] = float(itype["rentalcharge"] or 0) if itype else 0.0
    item["sip_media_type"] = itype["sip_media_type"] if itype else None
    item["sip_magnetic"] = int(itype["sip_magnetic"] or 0) if itype else 0
    return item


def current_loan(txn, itemnumber: int) -> dict | None:
    """The ``issues`` row of the item's current loan with the borrower's ``cardnumber``,
    ``userid``, ``firstname``, ``surname`` and ``borrower_branchcode``; ``None`` if on the shelf.
    """
    return txn.one(
        "SELECT i.*, b.cardnumber, b.userid, b.firstname, b.surname, "
        "b.branchcode AS borrower_branchcode, b.categorycode "
        "FROM issues i JOIN borrowers b ON b.borrowernumber = i.borrowernumber "
        "WHERE i.itemnumber = ?",
        (itemnumber,),
    )


def open_transfer(txn, itemnumber: int) -> dict | None:
    """The item's current transfer (sent or requested, neither arrived nor cancelled)."""
    return txn.one(
        "SELECT * FROM branchtransfers WHERE itemnumber = ? AND datearrived IS NULL "
        "AND datecancelled IS NULL ORDER BY datesent, branchtransfer_id LIMIT 1",
        (itemnumber,),
    )


def item_hold(txn, itemnumber: int) -> dict | None:
    """The hold attached to this item: waiting (``W``), in transit (``T``) or in processing
    (``P``), with the holder's ``cardnumber``, ``firstname``, ``surname``, ``email``, ``phone``.
    """
    return txn.one(
        "SELECT r.*, b.cardnumber, b.firstname, b.surname, b.email, b.phone "
        "FROM reserves r JOIN borrowers b ON b.borrowernumber = r.borrowernumber "
        "WHERE r.itemnumber = ? AND r.found IN ('W', 'T', 'P') ORDER BY r.reserve_id LIMIT 1",
        (itemnumber,),
    )


def holds_queue_length(txn, biblionumber: int, today: str | None = None) -> int:
    """How many holds the title has (SIP2 18 CF): every hold, waiting or not, whose hold date
    has come (``reservedate <= today``; all of them when ``today`` is ``None``)."""
    if today is None:
        count = txn.scalar("SELECT COUNT(*) FROM reserves WHERE biblionumber = ?", (biblionumber,))
    else:
        count = txn.scalar(
            "SELECT COUNT(*) FROM reserves WHERE biblionumber = ? AND reservedate <= ?",
            (biblionumber, today),
        )
    return int(count or 0)


def item_circulation(txn, item: dict, today: str) -> dict:
    """What 17 tells of an item's circulation, in one statement: ``in_transit`` (an open
    transfer, :func:`open_transfer`), ``issue_id`` and ``date_due`` of its loan
    (:func:`current_loan`), ``hold_found`` and ``hold_expirationdate`` of the hold attached to
    it (:func:`item_hold`), and ``queue``, :func:`holds_queue_length` on ``today``."""
    number = item["itemnumber"]
    attached = (
        "FROM reserves r WHERE r.itemnumber = ? AND r.found IN ('W', 'T', 'P') "
        "ORDER BY r.reserve_id LIMIT 1"
    )
    row = txn.one(
        "SELECT (SELECT COUNT(*) FROM branchtransfers t WHERE t.itemnumber = ? "
        "AND t.datearrived IS NULL AND t.datecancelled IS NULL) AS transfers, "
        "(SELECT i.issue_id FROM issues i WHERE i.itemnumber = ?) AS issue_id, "
        "(SELECT i.date_due FROM issues i WHERE i.itemnumber = ?) AS date_due, "
        f"(SELECT r.found {attached}) AS hold_found, "
        f"(SELECT r.expirationdate {attached}) AS hold_expirationdate, "
        "(SELECT COUNT(*) FROM reserves q WHERE q.biblionumber = ? AND q.reservedate <= ?) "
        "AS queue",
        (number, number, number, number, number, item["biblionumber"], today),
    )
    facts = dict(row)
    facts["in_transit"] = int(facts.pop("transfers") or 0) > 0
    facts["queue"] = int(facts["queue"] or 0)
    return facts


def circulation_status(txn, item: dict, options: Any = None, facts: dict | None = None) -> str:
    """3M SIP2 2.00 circulation status (18), first match wins, as Koha decides it:

    ``10`` in transit; ``13`` lost with ``itemlost`` equal to the account's
    ``lost_status_for_missing`` (``options``, an
    :class:`~koha_gateway.ils.context.AccountOptions`); ``12`` lost; ``04`` checked out; ``08``
    a hold waiting, in transit or in processing is attached to the item; ``09`` location
    ``CART``; ``01`` damaged; ``02`` ``notforloan`` below zero (on order); otherwise ``03``
    available.

    Koha's ``11`` (claimed returned) needs return claims, which this ILS does not record, so
    it is never answered. A not-for-loan item (``notforloan`` > 0) is ``03``, as in Koha.
    ``facts`` (:func:`item_circulation`) saves reading the transfer, loan and hold again.
    """
    number = item["itemnumber"]
    if facts is not None:
        in_transit = facts["in_transit"]
        on_loan = facts["issue_id"] is not None
        attached = facts["hold_found"] is not None
    else:
        in_transit = open_transfer(txn, number) is not None
        on_loan = attached = None
    if in_transit:
        return CIRC_IN_TRANSIT
    lost = int(item.get("itemlost") or 0)
    if lost:
        missing = options.lost_status_for_missing if options is not None else None
        if missing is not None and missing == str(lost):
            return CIRC_MISSING
        return CIRC_LOST
    if on_loan if on_loan is not None else current_loan(txn, number) is not None:
        return CIRC_CHARGED
    if attached if attached is not None else item_hold(txn, number) is not None:
        return CIRC_ON_HOLD_SHELF
    if (item.get("location") or "") == "CART":
        return CIRC_SHELVING_CART
    if int(item.get("damaged") or 0):
        return CIRC_OTHER
    if int(item.get("notforloan") or 0) < 0:
        return CIRC_ON_ORDER
    return CIRC_AVAILABLE


def mark_seen(txn, ctx, item: dict, *, clear_lost: bool) -> None:
    """Record that the item was seen (``datelastseen`` = now); ``clear_lost`` also marks it
    found (``itemlost`` 0, ``itemlost_on`` NULL when it was lost, as ``Koha::Item->store``).
    Then an index request for the record.

    This is the ``seen_on_item_information`` account option of 17 (``keep_lost`` /
    ``mark_found``).
    """
    from koha_gateway.ils.circulation import index_biblio

    found = ""
    if clear_lost and int(item.get("itemlost") or 0):
        found = ", itemlost = 0, itemlost_on = NULL"
        item["itemlost"] = 0
        item["itemlost_on"] = None
    txn.execute_later(
        f"UPDATE items SET datelastseen = ?{found} WHERE itemnumber = ?",
        (ctx.now_sql, item["itemnumber"]),
    )
    item["datelastseen"] = ctx.now_sql
    index_biblio(txn, ctx, item.get("biblionumber"))


def set_item_properties(txn, itemnumber: int, properties: str | None) -> None:
    """Store the item properties (CH) of a SIP2 Item Status Update (19).

    The item's row is locked first, so that two updates of one item never both insert.
    """
    txn.one(f"SELECT itemnumber FROM items WHERE itemnumber = ?{txn.for_update}", (itemnumber,))
    value = db_text(properties)
    if not txn.execute(
        "UPDATE kgw_item_properties SET sip_item_properties = ? WHERE itemnumber = ?",
        (value, itemnumber),
    ):
        txn.execute_later(
            "INSERT INTO kgw_item_properties (itemnumber, sip_item_properties) VALUES (?, ?)",
            (itemnumber, value),
        )


def find_biblio(txn, text: str | None) -> dict | None:
    """The record (``biblionumber``, ``title``) that ``text`` names: a biblionumber, or an
    exact title (case-insensitive) that only one record has; ``None`` otherwise."""
    if not text or not text.strip():
        return None
    value = text.strip()
    if value.isdigit():
        row = txn.one(
            "SELECT biblionumber, title FROM biblio WHERE biblionumber = ?", (int(value),)
        )
        if row is not None:
            return dict(row)
    rows = txn.query(
        "SELECT biblionumber, title FROM biblio WHERE LOWER(title) = LOWER(?)", (value,)
    )
    return dict(rows[0]) if len(rows) == 1 else None
