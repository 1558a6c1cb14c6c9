"""Items: barcode filters, lookup, circulation status (koha-sip-and-ldap.md 5.2, 5.3)."""

from __future__ import annotations

import pytest

from koha_gateway.ils import items
from koha_gateway.ils.context import AccountOptions, CircContext
from tests.ils.conftest import ADA, BARCODE, GRACE, NOW


def find(db, barcode, **kw):
    return db.run_blocking(lambda txn: items.find_item(txn, barcode, **kw))


def status(db, barcode, account=None):
    def run(txn):
        options = AccountOptions.from_account(account)
        return items.circulation_status(txn, items.find_item(txn, barcode), options)

    return db.run_blocking(run)


def execute(db, sql, params=()):
    db.run_blocking(lambda txn: txn.execute(sql, params))


# -- barcodedecode -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "mode", "expected"),
    [
        (" 39999000000001 ", "", "39999000000001"),
        ("\t39999000000001\r\n", None, "39999000000001"),
        ("3999 9000 0000 01", "whitespace", "39999000000001"),
        ("3999 9000 0000 01", "", "3999 9000 0000 01"),
        ("T1234", "T-prefix", "T0000234"),
        ("t51234", "T-prefix", "T0001234"),
        ("T0001234", "T-prefix", "T0001234"),
        ("1234", "T-prefix", "T0001234"),
        ("ABC", "T-prefix", "ABC"),
        ("T1²³", "T-prefix", "T1²³"),
        ("²³", "EAN13", "²³"),
        ("4006381333931", "EAN13", "4006381333931"),
        ("96385074", "EAN13", "0000096385074"),
        ("12345", "EAN13", "12345"),  # not a valid EAN-13: unchanged
        ("X 1", "cuecat", "X 1"),
        ("", "whitespace", ""),
        (None, "whitespace", ""),
    ],
)
def test_barcodedecode(raw, mode, expected):
    assert items.barcodedecode(raw, mode) == expected


# -- lookup --------------------------------------------------------------------------------


def test_find_item_completes_the_row(db):
    item = find(db, BARCODE[1])
    assert item["title"] == "Structure and Interpretation of Computer Programs"
    assert item["author"] == "Abelson, Harold"
    assert item["itemcallnumber"] == "005.13 ABE"
    assert item["homebranch"] == item["holdingbranch"] == "WEL"
    assert item["itype"] == "BK"
    assert item["itype_notforloan"] == 0
    assert item["rentalcharge"] == 0.0
    assert item["sip_media_type"] == "001"
    assert item["sip_magnetic"] == 0
    reference = find(db, BARCODE[11])
    assert reference["itype"] == "REF"
    assert reference["itype_notforloan"] == 1
    assert reference["notforloan"] == 1


def test_every_demo_item_has_a_title_and_call_number(db):
    for barcode in BARCODE.values():
        item = find(db, barcode)
        assert item["title"] and item["itemcallnumber"], barcode


def test_find_item_through_the_input_filter(db):
    assert find(db, " 39999000000001 ")["barcode"] == BARCODE[1]
    assert find(db, "3999 9000000001") is None
    assert find(db, "3999 9000000001", input_filter="whitespace")["barcode"] == BARCODE[1]


@pytest.mark.parametrize("barcode", [None, "", "  ", "39999000000099"])
def test_unknown_item_is_none(db, barcode):
    assert find(db, barcode) is None


def test_find_with_lock_and_by_number(db):
    item = find(db, BARCODE[2], lock=True)
    again = db.run_blocking(lambda txn: items.item_by_number(txn, item["itemnumber"], lock=True))
    assert again == item
    assert db.run_blocking(lambda txn: items.item_by_number(txn, 999999)) is None


# -- loans, holds, transfers ---------------------------------------------------------------


def test_current_loan(db):
    lent, shelved = find(db, BARCODE[9]), find(db, BARCODE[1])
    loan = db.run_blocking(lambda txn: items.current_loan(txn, lent["itemnumber"]))
    assert loan["cardnumber"] == GRACE
    assert loan["branchcode"] == "KIL"
    assert loan["date_due"] == "2026-03-20 23:59:00"
    assert db.run_blocking(lambda txn: items.current_loan(txn, shelved["itemnumber"])) is None


def test_item_hold_and_queue(db):
    waiting = find(db, BARCODE[8])
    hold = db.run_blocking(lambda txn: items.item_hold(txn, waiting["itemnumber"]))
    assert (hold["cardnumber"], hold["found"], hold["expirationdate"]) == (ADA, "W", "2026-03-16")
    assert hold["email"] == "ada.lovelace@example.org"
    titled = find(db, BARCODE[12])
    assert db.run_blocking(lambda txn: items.item_hold(txn, titled["itemnumber"])) is None
    queue = db.run_blocking(lambda txn: items.holds_queue_length(txn, titled["biblionumber"]))
    assert queue == 1
    assert (
        db.run_blocking(
            lambda txn: items.holds_queue_length(txn, titled["biblionumber"], "2026-03-06")
        )
        == 0
    )  # the hold was placed on 7 March
    plain = find(db, BARCODE[1])
    assert db.run_blocking(lambda txn: items.holds_queue_length(txn, plain["biblionumber"])) == 0


def test_open_transfer(db):
    item = find(db, BARCODE[2])
    assert db.run_blocking(lambda txn: items.open_transfer(txn, item["itemnumber"])) is None
    execute(
        db,
        "INSERT INTO branchtransfers (itemnumber, frombranch, tobranch, datesent) "
        "VALUES (?, 'WEL', 'KIL', '2026-03-10 09:00:00')",
        (item["itemnumber"],),
    )
    transfer = db.run_blocking(lambda txn: items.open_transfer(txn, item["itemnumber"]))
    assert transfer["tobranch"] == "KIL"


# -- circulation status --------------------------------------------------------------------

DEMO_STATUS = {
    1: "03",
    2: "03",
    3: "03",
    4: "03",
    5: "03",
    6: "04",
    7: "04",
    8: "08",
    9: "04",
    10: "12",
    11: "03",  # not for loan is still "available" in Koha's codes
    12: "03",  # a title-level hold does not attach to the item
}


@pytest.mark.parametrize("n", sorted(DEMO_STATUS))
def test_circulation_status_of_every_demo_item(db, n):
    assert status(db, BARCODE[n]) == DEMO_STATUS[n]


def test_in_transit_wins_over_everything(db):
    item = find(db, BARCODE[10])
    execute(
        db,
        "INSERT INTO branchtransfers (itemnumber, frombranch, tobranch, datesent) "
        "VALUES (?, 'WEL', 'KIL', '2026-03-10 09:00:00')",
        (item["itemnumber"],),
    )
    assert status(db, BARCODE[10]) == "10"
    execute(db, "UPDATE branchtransfers SET datearrived = '2026-03-10 12:00:00'")
    assert status(db, BARCODE[10]) == "12"


def test_cancelled_transfer_does_not_count(db):
    item = find(db, BARCODE[1])
    execute(
        db,
        "INSERT INTO branchtransfers (itemnumber, frombranch, tobranch, datesent, datecancelled) "
        "VALUES (?, 'WEL', 'KIL', '2026-03-10 09:00:00', '2026-03-10 10:00:00')",
        (item["itemnumber"],),
    )
    assert status(db, BARCODE[1]) == "03"


def test_missing_versus_lost(db, ctx):
    execute(db, "UPDATE items SET itemlost = 4 WHERE barcode = ?", (BARCODE[10],))
    assert status(db, BARCODE[10]) == "12"
    assert status(db, BARCODE[10], ctx(lost_status_for_missing=4).account) == "13"
    assert status(db, BARCODE[10], ctx(lost_status_for_missing=2).account) == "12"


def test_lost_wins_over_on_loan(db):
    execute(db, "UPDATE items SET itemlost = 1 WHERE barcode = ?", (BARCODE[6],))
    assert status(db, BARCODE[6]) == "12"


@pytest.mark.parametrize("found", ["W", "T", "P"])
def test_attached_hold_states(db, found):
    execute(db, "UPDATE reserves SET found = ?", (found,))
    assert status(db, BARCODE[8]) == "08"


def test_pending_item_level_hold_is_not_attached(db):
    execute(db, "UPDATE reserves SET found = NULL WHERE found = 'W'")
    assert status(db, BARCODE[8]) == "03"


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("UPDATE items SET location = 'CART' WHERE barcode = ?", "09"),
        ("UPDATE items SET damaged = 1 WHERE barcode = ?", "01"),
        ("UPDATE items SET notforloan = -1 WHERE barcode = ?", "02"),
        ("UPDATE items SET notforloan = 2 WHERE barcode = ?", "03"),
        ("UPDATE items SET withdrawn = 1 WHERE barcode = ?", "03"),
    ],
)
def test_shelf_states(db, sql, expected):
    execute(db, sql, (BARCODE[1],))
    assert status(db, BARCODE[1]) == expected


def test_status_order_cart_before_damaged_before_on_order(db):
    execute(
        db,
        "UPDATE items SET location = 'CART', damaged = 1, notforloan = -1 WHERE barcode = ?",
        (BARCODE[1],),
    )
    assert status(db, BARCODE[1]) == "09"
    execute(db, "UPDATE items SET location = 'GEN' WHERE barcode = ?", (BARCODE[1],))
    assert status(db, BARCODE[1]) == "01"
    execute(db, "UPDATE items SET damaged = 0 WHERE barcode = ?", (BARCODE[1],))
    assert status(db, BARCODE[1]) == "02"


# -- writes --------------------------------------------------------------------------------


@pytest.mark.parametrize(("clear", "lost"), [(False, 1), (True, 0)])
def test_mark_seen(db, clear, lost):
    def run(txn):
        item = items.find_item(txn, BARCODE[10])
        items.mark_seen(
            txn, CircContext(branch="WEL", now=NOW, sysprefs=None), item, clear_lost=clear
        )
        return item

    changed = db.run_blocking(run)
    stored = find(db, BARCODE[10])
    assert stored["datelastseen"] == changed["datelastseen"] == "2026-03-10 14:30:00"
    assert stored["itemlost"] == changed["itemlost"] == lost
    assert (stored["itemlost_on"] is None) is clear
    queued = db.run_blocking(lambda txn: txn.query("SELECT biblio_auth_number FROM zebraqueue"))
    assert [row["biblio_auth_number"] for row in queued] == [stored["biblionumber"]]


def test_set_item_properties(db):
    item = find(db, BARCODE[3])
    db.run_blocking(lambda txn: items.set_item_properties(txn, item["itemnumber"], "CD in sleeve"))
    assert find(db, BARCODE[3])["sip_item_properties"] == "CD in sleeve"


def test_item_attribute_names_of_sipconfig():
    # <item_field code=...>, cr_item_field and sort bin rules share these names.
    row = {"itype": "BK", "ccode": "FIC", "location": "GEN", "itemnumber": 7}
    assert items.item_attribute(row, "effective_itemtype") == "BK"
    assert items.item_attribute(row, "itemtype") == "BK"
    assert items.item_attribute(row, "collection_code") == "FIC"
    assert items.item_attribute(row, "shelving_location") == "GEN"
    assert items.item_attribute(row, "itemnumber") == 7
    assert items.item_attribute(row, "nosuchcolumn") is None
