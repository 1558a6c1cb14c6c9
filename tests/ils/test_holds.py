"""Holds (koha_gateway.ils.holds): place, cancel, alter, queue order; both engines."""

from __future__ import annotations

from koha_gateway.ils import holds as ils_holds
from koha_gateway.ils.items import find_item
from koha_gateway.ils.patrons import find_patron
from koha_gateway.ils.rules import set_rule
from tests.ils.conftest import ADA, BARCODE, GRACE, NOW, TODAY

NOW_SQL = NOW.strftime("%Y-%m-%d %H:%M:%S")


def _place(db, card, barcode, *, item_level=False, pickup="WEL", expiration=None):
    def work(txn):
        patron = find_patron(txn, card, lock=True)
        item = find_item(txn, barcode, lock=True)
        return ils_holds.place_hold(
            txn,
            patron=patron,
            biblionumber=item["biblionumber"],
            item=item,
            item_level=item_level,
            pickup=pickup,
            expiration=expiration,
            today=TODAY,
            now=NOW_SQL,
            rules_branch=item["homebranch"],
            itemtype=item["itype"],
        )

    return db.run_blocking(work)


def _cancel(db, card, barcode):
    def work(txn):
        patron = find_patron(txn, card, lock=True)
        item = find_item(txn, barcode)
        return ils_holds.cancel_hold(
            txn, patron=patron, item=item, biblionumber=None, today=TODAY, now=NOW_SQL
        )

    return db.run_blocking(work)


def _alter(db, card, barcode, *, pickup=None, expiration=None):
    def work(txn):
        patron = find_patron(txn, card, lock=True)
        item = find_item(txn, barcode)
        return ils_holds.alter_hold(
            txn,
            patron=patron,
            item=item,
            biblionumber=None,
            pickup=pickup,
            expiration=expiration,
            today=TODAY,
            now=NOW_SQL,
        )

    return db.run_blocking(work)


def _queue(db, barcode):
    return db.run_blocking(
        lambda txn: txn.query(
            "SELECT b.cardnumber, r.priority, r.found, r.branchcode, r.itemnumber, "
            "r.item_level_hold, r.expirationdate FROM reserves r "
            "JOIN borrowers b ON b.borrowernumber = r.borrowernumber "
            "WHERE r.biblionumber = (SELECT biblionumber FROM items WHERE barcode = ?) "
            "ORDER BY r.priority, r.reserve_id",
            (barcode,),
        )
    )


def test_title_level_hold_goes_after_the_existing_ones(db):
    outcome = _place(db, ADA, BARCODE[12])
    assert outcome.ok and outcome.queue_position == 2
    assert _queue(db, BARCODE[12]) == [
        {
            "cardnumber": GRACE,
            "priority": 1,
            "found": None,
            "branchcode": "WEL",
            "itemnumber": None,
            "item_level_hold": 0,
            "expirationdate": None,
        },
        {
            "cardnumber": ADA,
            "priority": 2,
            "found": None,
            "branchcode": "WEL",
            "itemnumber": None,
            "item_level_hold": 0,
            "expirationdate": None,
        },
    ]


def test_item_level_hold_with_pickup_and_expiry(db):
    outcome = _place(db, ADA, BARCODE[3], item_level=True, pickup="KIL", expiration="2026-06-30")
    assert outcome.ok and outcome.queue_position == 1
    [hold] = _queue(db, BARCODE[3])
    item = db.run_blocking(lambda txn: find_item(txn, BARCODE[3]))
    assert hold["item_level_hold"] == 1 and hold["itemnumber"] == item["itemnumber"]
    assert (hold["branchcode"], hold["expirationdate"]) == ("KIL", "2026-06-30")


def test_place_hold_refusals(db):
    assert _place(db, ADA, BARCODE[3], pickup="NOWHERE").message == "Invalid pickup location."
    assert _place(db, GRACE, BARCODE[12]).message == "Patron already has a hold on this title."
    assert _place(db, ADA, BARCODE[6]).message == "Item already checked out to you."
    past = _place(db, ADA, BARCODE[3], expiration="2026-03-01")
    assert past.message == "Hold expiration date is in the past."
    db.run_blocking(lambda txn: set_rule(txn, "reservesallowed", 1))
    assert _place(db, ADA, BARCODE[3]).message == "Too many holds."
    db.run_blocking(lambda txn: set_rule(txn, "reservesallowed", 0))
    assert _place(db, GRACE, BARCODE[3]).message == "Item cannot be placed on hold."
    assert _queue(db, BARCODE[3]) == []


def test_cancel_title_level_hold_renumbers_the_queue(db):
    assert _place(db, ADA, BARCODE[12]).ok
    outcome = _cancel(db, GRACE, BARCODE[12])
    assert outcome.ok and outcome.message == "Hold Cancelled."
    assert [(row["cardnumber"], row["priority"]) for row in _queue(db, BARCODE[12])] == [(ADA, 1)]
    old = db.run_blocking(
        lambda txn: txn.one("SELECT cancellationdate, cancellation_reason FROM old_reserves")
    )
    assert old == {"cancellationdate": TODAY, "cancellation_reason": "Cancelled by SIP"}


def test_cancel_waiting_hold(db):
    outcome = _cancel(db, ADA, BARCODE[8])
    assert outcome.ok
    assert _queue(db, BARCODE[8]) == []
    old = db.run_blocking(lambda txn: txn.one("SELECT found FROM old_reserves"))
    assert old == {"found": "W"}


def test_cancel_without_a_hold(db):
    outcome = _cancel(db, ADA, BARCODE[3])
    assert (outcome.ok, outcome.message) == (False, "Error with transaction drop_hold: ")


def test_alter_pickup_and_expiry(db):
    outcome = _alter(db, GRACE, BARCODE[12], pickup="KIL", expiration="2026-05-01")
    assert outcome.ok and outcome.message == "Hold updated."
    [hold] = _queue(db, BARCODE[12])
    assert (hold["branchcode"], hold["expirationdate"]) == ("KIL", "2026-05-01")


def test_alter_refusals(db):
    assert _alter(db, ADA, BARCODE[3], pickup="KIL").message == "No such outstanding hold."
    waiting = _alter(db, ADA, BARCODE[8], pickup="KIL")
    assert not waiting.ok
    assert waiting.message.startswith("Hold is already waiting or in transit")
    assert _alter(db, GRACE, BARCODE[12], pickup="NOWHERE").message == "Invalid pickup location."
    # The expiry of a waiting hold can still change.
    assert _alter(db, ADA, BARCODE[8], expiration="2026-03-20").ok
    assert _queue(db, BARCODE[8])[0]["expirationdate"] == "2026-03-20"


def test_holds_for_item_order(db):
    def work(txn):
        item = find_item(txn, BARCODE[8])
        return ils_holds.holds_for_item(txn, item, TODAY)

    [waiting] = db.run_blocking(work)
    assert waiting["found"] == "W"
    # A suspended or future hold is not filled.
    db.run_blocking(lambda txn: txn.execute("UPDATE reserves SET suspend = 1 WHERE found IS NULL"))

    def pending(txn):
        return ils_holds.holds_for_item(txn, find_item(txn, BARCODE[12]), TODAY)

    assert db.run_blocking(pending) == []


def _available(db, card, barcode):
    def work(txn):
        item = find_item(txn, barcode) if barcode else None
        return ils_holds.available_to_patron(txn, item, find_patron(txn, card), TODAY)

    return db.run_blocking(work)


def test_available_to_patron_as_koha_reads_it(db):
    """Koha's ILS::Item::available: Y for an item on loan to the patron with no hold queued on
    its title, or attached to the patron's hold; N for an item on the shelf (held or not), on
    loan to someone else, waiting for someone else, or no item at all."""
    assert _available(db, ADA, BARCODE[6]) is True  # on loan to Ada, nothing queued
    assert _available(db, ADA, BARCODE[8]) is True  # waiting for Ada
    assert _available(db, ADA, BARCODE[3]) is False  # on the shelf
    assert _available(db, ADA, BARCODE[12]) is False  # on the shelf, Grace's hold queued
    assert _available(db, GRACE, BARCODE[12]) is False  # her own pending hold: not attached
    assert _available(db, ADA, BARCODE[9]) is False  # on loan to Grace
    assert _available(db, GRACE, BARCODE[8]) is False  # waiting for Ada
    assert _available(db, ADA, None) is False  # a title with no item


def test_available_to_patron_counts_holds_that_have_started(db):
    """A hold queued on the title of the patron's loan makes it unavailable once it has
    started (Koha's current_holds: reservedate up to today); a future hold does not."""
    assert _place(db, GRACE, BARCODE[6]).ok
    assert _available(db, ADA, BARCODE[6]) is False
    future = "UPDATE reserves SET reservedate = '2026-03-11' WHERE found IS NULL"
    db.run_blocking(lambda txn: txn.execute(future))
    assert _available(db, ADA, BARCODE[6]) is True


def test_available_to_patron_in_transit_to_the_patron(db):
    db.run_blocking(lambda txn: txn.execute("UPDATE reserves SET found = 'T' WHERE found = 'W'"))
    assert _available(db, ADA, BARCODE[8]) is True
    assert _available(db, GRACE, BARCODE[8]) is False
