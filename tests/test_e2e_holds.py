"""15 Hold -> 16 over a real socket on every engine: the answers Koha's SIP server gives
(C4::SIP::Sip::MsgType::handle_hold; ILS::Item::available) and the ``reserves`` rows it leaves.

The request dates are unique per request (a request repeated byte for byte may be taken for a
resend) and are not what the holds are dated by: the gateway dates them by its own clock, so the
assertions compare dates with other rows written by the same request sequence.
"""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest

from koha_gateway.sip2.codec import parse
from tests.gateway import NOW

ADA = "23529000000001"
GRACE = "23529000000002"
TITLE = {
    3: "The Mythical Man-Month",
    6: "A Discipline of Programming",
    8: "The Soul of a New Machine",
    12: "Dune",
}
HOLD = (
    "SELECT r.branchcode, r.itemnumber, r.item_level_hold, r.priority, r.found, "
    "r.expirationdate, r.reservedate FROM reserves r JOIN borrowers b "
    "ON b.borrowernumber = r.borrowernumber JOIN items i ON i.biblionumber = r.biblionumber "
    "WHERE b.cardnumber = ? AND i.barcode = ?"
)


def item(n: int) -> str:
    return f"399990000000{n:02d}"


@pytest.fixture
def sc(gateway):
    client = gateway.logged_in()
    yield client
    client.close()


@pytest.fixture
def stamp():
    """A fresh SIP2 transaction date for each request (one second apart)."""
    base = NOW.replace(tzinfo=None)  # the pinned instant the test gateways run at
    counter = itertools.count()
    return lambda: (base + timedelta(seconds=next(counter))).strftime("%Y%m%d    %H%M%S")


def answer_of(text: str) -> tuple[str, list[tuple[str, str]]]:
    """``("16" + ok + available, [(fid, value), ...])`` with the timestamp left out."""
    message = parse(text, responses=True)
    return text[:4], [(fid, value) for fid, value in message.fields if fid not in ("AY", "AZ")]


def test_place_answers_and_rows(gateway, sc, stamp):
    # An item on the shelf is not "available" to the patron (Koha's ILS::Item::available).
    assert answer_of(sc.request(f"15+{stamp()}AOWEL|AA{ADA}|AB{item(3)}|")) == (
        "161N",
        [("AA", ADA), ("BR", "1"), ("BS", "WEL"), ("AB", item(3)), ("AJ", TITLE[3]), ("AO", "WEL")],
    )
    [row] = gateway.query(HOLD, (ADA, item(3)))
    assert (row["itemnumber"], row["item_level_hold"], row["expirationdate"]) == (None, 0, None)

    # An expiry in the past and hold type 3 change nothing: Koha places a title-level hold.
    text = sc.request(f"15+{stamp()}BW20000101    000000|BSKIL|BY3|AOWEL|AA{ADA}|AB{item(12)}|")
    assert answer_of(text) == (
        "161N",
        [
            ("AA", ADA),
            ("BR", "2"),
            ("BS", "KIL"),
            ("AB", item(12)),
            ("AJ", TITLE[12]),
            ("AO", "WEL"),
        ],
    )
    [row] = gateway.query(HOLD, (ADA, item(12)))
    assert row["branchcode"] == "KIL" and row["priority"] == 2
    assert (row["itemnumber"], row["item_level_hold"], row["expirationdate"]) == (None, 0, None)

    # Refused on an item on loan to the patron with nothing queued: that item is available.
    assert answer_of(sc.request(f"15+{stamp()}AOWEL|AA{ADA}|AB{item(6)}|")) == (
        "160Y",
        [("AA", ADA), ("AO", "WEL"), ("AF", "Item already checked out to you.")],
    )
    assert gateway.query(HOLD, (ADA, item(6))) == []


def test_cancel_answers_and_rows(gateway, sc, stamp):
    # The item was waiting for Ada when she cancelled: Y, as Koha reads the item first.
    assert answer_of(sc.request(f"15-{stamp()}AOWEL|AA{ADA}|AB{item(8)}|")) == (
        "161Y",
        [
            ("AA", ADA),
            ("AB", item(8)),
            ("AJ", TITLE[8]),
            ("AO", "WEL"),
            ("AF", "Hold Cancelled."),
        ],
    )
    assert gateway.query(HOLD, (ADA, item(8))) == []
    [old] = gateway.query("SELECT found, cancellationdate FROM old_reserves")
    assert old["found"] == "W" and old["cancellationdate"]

    # No hold to cancel on an item on the shelf: Koha answers 160N.
    assert answer_of(sc.request(f"15-{stamp()}AOWEL|AA{ADA}|AB{item(3)}|")) == (
        "160N",
        [("AA", ADA), ("AO", "WEL"), ("AF", "Error with transaction drop_hold: ")],
    )
    assert len(gateway.query("SELECT reserve_id FROM old_reserves")) == 1


def test_place_then_cancel_dates_the_cancellation_by_the_same_clock(gateway, sc, stamp):
    assert sc.request(f"15+{stamp()}AOWEL|AA{ADA}|AB{item(3)}|").startswith("161N")
    [placed] = gateway.query(HOLD, (ADA, item(3)))
    assert sc.request(f"15-{stamp()}AOWEL|AA{ADA}|AB{item(3)}|").startswith("161N")
    [old] = gateway.query("SELECT reservedate, cancellationdate FROM old_reserves")
    assert str(old["cancellationdate"]) == str(placed["reservedate"]) == str(old["reservedate"])


def test_alter_answers_and_rows(gateway, sc, stamp):
    text = sc.request(f"15*{stamp()}BW20991231    000000|BSKIL|AOWEL|AA{GRACE}|AB{item(12)}|")
    assert answer_of(text) == (
        "161N",
        [
            ("AA", GRACE),
            ("BW", "20991231    235900"),
            ("BR", "1"),
            ("BS", "KIL"),
            ("AB", item(12)),
            ("AJ", TITLE[12]),
            ("AO", "WEL"),
            ("AF", "Hold updated."),
        ],
    )
    [row] = gateway.query(HOLD, (GRACE, item(12)))
    assert (row["branchcode"], str(row["expirationdate"])) == ("KIL", "2099-12-31")

    assert answer_of(sc.request(f"15*{stamp()}BSKIL|AOWEL|AA{ADA}|AB{item(3)}|")) == (
        "160N",
        [("AA", ADA), ("AO", "WEL"), ("AF", "No such outstanding hold.")],
    )
