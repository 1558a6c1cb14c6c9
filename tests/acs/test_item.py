"""Item messages with exact responses: 17/18 and 19/20 (koha-sip-and-ldap.md 4.7, 4.8)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.ils.conftest import BARCODE, TS, call, field_values


def i17(barcode):
    return f"17{TS}AOWEL|AB{barcode}|AC|"


def i19(barcode, props=None):
    return f"19{TS}AOWEL|AB{barcode}|" + (f"CH{props}|" if props is not None else "")


def sql(db, statement, params=()):
    db.run_blocking(lambda txn: txn.execute(statement, params))


def item_row(db, barcode):
    """The item as the ILS reads it (its SIP item properties are in kgw_item_properties)."""
    from koha_gateway.ils.items import find_item

    return db.run_blocking(find_item, barcode)


EXPECTED_18 = {
    1: "1803020120260310    143000AB39999000000001|AJStructure and Interpretation of "
    "Computer Programs|CK001|AQWEL|BGWEL|CS005.13 ABE|",
    6: "1804020120260310    143000AB39999000000006|AJA Discipline of Programming|CK001|AQWEL|"
    "BGWEL|AH20260324    235900|CS005.1 DIJ|",
    7: "1804020120260310    143000AB39999000000007|AJHackers: Heroes of the Computer "
    "Revolution|CK001|AQWEL|BGWEL|AH20260228    235900|CS004.09 LEV|",
    8: "1808020120260310    143000AB39999000000008|AJThe Soul of a New Machine|CK001|AQWEL|"
    "BGWEL|CF1|CM20260316    235900|CS621.39 KID|",
    9: "1804020120260310    143000AB39999000000009|AJCode: The Hidden Language of Computer "
    "Hardware and Software|CK001|AQKIL|BGKIL|AH20260320    235900|CS004 PET|",
    10: "1812020120260310    143000AB39999000000010|AJAlan Turing: The Enigma|CK001|AQWEL|"
    "BGWEL|CS510.92 HOD|",
    11: "1803020120260310    143000AB39999000000011|AJA Dictionary of Computer Science|CK001|"
    "AQWEL|BGWEL|CSR 004.03 DIC|",
    12: "1803020120260310    143000AB39999000000012|AJDune|CK001|AQWEL|BGWEL|CF1|CSFIC HER|",
}


@pytest.mark.parametrize("n", sorted(EXPECTED_18))
def test_17_demo_items(db, ctx, n):
    assert call(db, ctx(), i17(BARCODE[n])) == EXPECTED_18[n]


def test_17_gödel_title_is_unicode(db, ctx):
    assert field_values(call(db, ctx(), i17(BARCODE[4])), 26, "AJ") == [
        "Gödel, Escher, Bach: An Eternal Golden Braid"
    ]


def test_17_unknown_item(db, ctx):
    assert call(db, ctx(), i17("39999000000099")) == f"18010101{TS}AB39999000000099|AJ|"


def test_17_barcode_input_filter(db, ctx):
    context = ctx(sysprefs={"itemBarcodeInputFilter": "whitespace"})
    assert call(db, context, i17("3999 9000 0000 01")) == EXPECTED_18[1]


def test_17_damaged_item_says_so_before_ab(db, ctx):
    sql(db, "UPDATE items SET damaged = 1 WHERE barcode = ?", (BARCODE[1],))
    assert call(db, ctx(), i17(BARCODE[1])).startswith(
        f"18010201{TS}AFItem is damaged|AB{BARCODE[1]}|"
    )


def test_17_format_due_date(db, ctx):
    text = call(db, ctx(format_due_date=True), i17(BARCODE[6]))
    assert field_values(text, 24, "AH") == ["2026-03-24 23:59"]
    text = call(db, ctx(format_due_date=True, sysprefs={"dateformat": "us"}), i17(BARCODE[6]))
    assert field_values(text, 24, "AH") == ["03/24/2026 23:59"]


def test_17_location_as_aq_and_cr_item_field(db, ctx):
    sql(db, "UPDATE items SET ccode = 'COMP' WHERE barcode = ?", (BARCODE[1],))
    text = call(db, ctx(sysprefs={"UseLocationAsAQInSIP": "1"}), i17(BARCODE[1]))
    assert field_values(text, 24, "AQ") == ["GEN"]
    assert field_values(text, 24, "CR") == ["COMP"]
    text = call(db, ctx(cr_item_field="itype"), i17(BARCODE[1]))
    assert field_values(text, 24, "CR") == ["BK"]
    text = call(db, ctx(cr_item_field="shelving_location"), i17(BARCODE[1]))
    assert field_values(text, 24, "CR") == ["GEN"]


def test_17_item_fields(db, ctx):
    item = item_row(db, BARCODE[1])
    context = ctx(
        item_fields=(("XY", "itemnumber"), ("YZ", "biblionumber"), ("ZZ", "nothing")),
        custom_item_fields=(("IN", "[% item.itype %]-[% item.barcode %]"),),
    )
    text = call(db, context, i17(BARCODE[1]))
    assert text.endswith(
        f"CS005.13 ABE|XY{item['itemnumber']}|YZ{item['biblionumber']}|INBK-{BARCODE[1]}|"
    )


@pytest.mark.parametrize(
    ("action", "lost", "seen"),
    [
        ("", 1, "2026-01-09 10:00:00"),
        ("keep_lost", 1, "2026-03-10 14:30:00"),
        ("mark_found", 0, "2026-03-10 14:30:00"),
    ],
)
def test_17_seen_on_item_information(db, ctx, action, lost, seen):
    text = call(db, ctx(seen_on_item_information=action or None), i17(BARCODE[10]))
    row = item_row(db, BARCODE[10])
    assert (row["itemlost"], row["datelastseen"]) == (lost, seen)
    assert text[2:4] == ("12" if lost else "03")


def test_17_missing_status(db, ctx):
    sql(db, "UPDATE items SET itemlost = 4 WHERE barcode = ?", (BARCODE[10],))
    assert call(db, ctx(lost_status_for_missing=4), i17(BARCODE[10]))[2:4] == "13"


def test_17_in_transit(db, ctx):
    item = item_row(db, BARCODE[2])
    sql(
        db,
        "INSERT INTO branchtransfers (itemnumber, frombranch, tobranch, datesent) "
        "VALUES (?, 'WEL', 'KIL', '2026-03-10 09:00:00')",
        (item["itemnumber"],),
    )
    assert call(db, ctx(), i17(BARCODE[2]))[2:4] == "10"


# -- 19 Item Status Update ------------------------------------------------------------------


def test_19_stores_the_properties_and_17_returns_them(db, ctx):
    text = call(db, ctx(), i19(BARCODE[3], "2 discs, booklet"))
    assert text == f"201{TS}AB{BARCODE[3]}|AJThe Mythical Man-Month|CH2 discs, booklet|"
    assert item_row(db, BARCODE[3])["sip_item_properties"] == "2 discs, booklet"
    assert field_values(call(db, ctx(), i17(BARCODE[3])), 24, "CH") == ["2 discs, booklet"]


def test_19_without_ch_clears_the_properties(db, ctx):
    call(db, ctx(), i19(BARCODE[3], "x"))
    assert call(db, ctx(), i19(BARCODE[3])) == f"201{TS}AB{BARCODE[3]}|AJThe Mythical Man-Month|"
    assert item_row(db, BARCODE[3])["sip_item_properties"] is None


def test_19_unknown_item_does_not_crash(db, ctx):
    assert call(db, ctx(), i19("nothing", "x")) == f"200{TS}ABnothing|AFInvalid Item|"


def test_19_refused_when_the_policy_says_no(db, ctx):
    context = ctx(policy={"status_update": False})
    text = call(db, context, i19(BARCODE[3], "x"))
    assert text == (
        f"200{TS}AB{BARCODE[3]}|AJThe Mythical Man-Month|AFItem status update is not allowed|"
    )
    assert item_row(db, BARCODE[3])["sip_item_properties"] is None


# Characters a request can carry inside a field once decoded (no delimiter, CR, LF, surrogate).
_WIRE_CHARS = st.characters(blacklist_characters="|\r\n", blacklist_categories=("Cs",))


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    code=st.sampled_from(["17", "19"]),
    barcode=st.one_of(
        st.sampled_from([*BARCODE.values(), "\x00", BARCODE[1] + "\x00"]),
        st.text(alphabet=_WIRE_CHARS, max_size=20),
    ),
    props=st.one_of(st.none(), st.text(alphabet=_WIRE_CHARS)),
    filter_=st.sampled_from(["", "whitespace", "T-prefix", "EAN13", "cuecat"]),
)
def test_item_messages_always_answer_well_formed(db, ctx, code, barcode, props, filter_):
    raw = f"{code}{TS}AOWEL|AB{barcode}|" + (f"CH{props}|" if props is not None else "")
    text = call(db, ctx(sysprefs={"itemBarcodeInputFilter": filter_}), raw)
    assert text.startswith("18" if code == "17" else "20")


def test_19_nul_characters_are_not_stored(db, ctx):
    assert call(db, ctx(), i19(BARCODE[3], "a\x00b")).startswith("201")
    assert item_row(db, BARCODE[3])["sip_item_properties"] == "ab"
