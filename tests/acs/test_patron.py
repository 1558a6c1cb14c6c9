"""Patron messages with exact responses: 23/24, 63/64, 01/24, 25/26, 35/36
(koha-sip-and-ldap.md 4.3, 4.4, 4.13-4.15)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from koha_gateway.acs.patron import summary_range
from koha_gateway.demo import RESTRICTION_COMMENT
from tests.ils.conftest import ADA, ALAN, BARCODE, EDSGER, GRACE, TS, call, field_values

GOOD = " " * 14
NONE = "YYYY" + " " * 10
ADA_NAME = "AEAda Lovelace|AA23529000000001|"
ADA_AF = "AFGreetings from Koha. -- Patron has overdues|"
ADA_DETAILS = (
    "BD12 St James's Square Wellington 6011 New Zealand|BEada.lovelace@example.org|"
    "BF04 555 0101|PB18151210|PCPT|PIY|"
)
ADA_COUNTS = "000100010002000000000000"
GRACE_COUNTS = "000000000001000300000001"


def p23(card, extra="", lang="000"):
    return f"23{lang}{TS}AOWEL|AA{card}|{extra}"


def p63(card, summary="          ", extra=""):
    return f"63000{TS}{summary}AOWEL|AA{card}|{extra}"


def summary_at(position):
    return " " * position + "Y" + " " * (9 - position)


def values(text, fid):
    return field_values(text, 59 if text.startswith("64") else 35, fid)


def set_sql(db, sql, params=()):
    db.run_blocking(lambda txn: txn.execute(sql, params))


def add_school_attributes(db):
    def setup(txn):
        ada = txn.scalar("SELECT borrowernumber FROM borrowers WHERE cardnumber = ?", (ADA,))
        txn.execute(
            "INSERT INTO borrower_attribute_types (code, description, repeatable) "
            "VALUES ('SCHOOL', 'School', 1)"
        )
        for value in ("Somerville", "Girton"):
            txn.insert(
                "INSERT INTO borrower_attributes (borrowernumber, code, attribute) "
                "VALUES (?, 'SCHOOL', ?)",
                (ada, value),
                pk="id",
            )

    db.run_blocking(setup)


# -- 23 Patron Status ------------------------------------------------------------------------


def test_23_valid_patron_with_correct_password(db, ctx):
    text = call(db, ctx(password_ok=True), p23(ADA, "AC|AD1234|"))
    assert text == (f"24{GOOD}000{TS}{ADA_NAME}BLY|CQY|BHNZD|BV0.00|{ADA_AF}AOWEL|")


def test_23_wrong_password(db, ctx):
    text = call(db, ctx(password_ok=False), p23(ADA, "ADwrong|"))
    assert text == (
        f"24{GOOD}000{TS}{ADA_NAME}BLY|CQN|BHNZD|BV0.00|"
        "AFGreetings from Koha. -- Patron has overdues -- Invalid password|AOWEL|"
    )


@pytest.mark.parametrize(("extra", "password_ok"), [("", None), ("AD|", False), ("AD|", True)])
def test_23_absent_or_empty_password_is_cq_n(db, ctx, extra, password_ok):
    text = call(db, ctx(password_ok=password_ok, allow_empty_passwords=True), p23(ADA, extra))
    assert values(text, "CQ") == ["N"]
    assert "Invalid password" not in text


def test_23_echoes_language_and_ao(db, ctx):
    text = call(db, ctx(), f"23001{TS}AOSOMEWHERE|AAada|")
    assert text.startswith(f"24{GOOD}001{TS}")
    assert text.endswith("AOSOMEWHERE|")
    assert values(text, "AA") == [ADA]  # the cardnumber, even when the userid was sent


def test_23_unknown_patron(db, ctx):
    text = call(db, ctx(), p23("23529000000099", "AD1234|"))
    assert text == f"24{NONE}000{TS}AE|AA23529000000099|BLN|AFInvalid cardnumber|AOWEL|"


def test_23_unknown_patron_protocol_1(db, ctx):
    text = call(db, ctx(protocol_version=1), p23("nobody"))
    assert text == f"24{NONE}000{TS}AE|AAnobody|AFInvalid cardnumber|AOWEL|"


def test_23_protocol_1_has_no_v2_fields(db, ctx):
    text = call(db, ctx(protocol_version=1, password_ok=True), p23(ADA, "AD1234|"))
    assert text == f"24{GOOD}000{TS}{ADA_NAME}{ADA_AF}AOWEL|"


@pytest.mark.parametrize(
    ("card", "status", "fines", "message"),
    [
        (GRACE, "YYYY      YY  ", "12.00", "Patron blocked by fines"),
        (ALAN, "YYYY          ", "0.00", "Your account has expired as of 2026-02-08"),
        (EDSGER, "YYYY          ", "0.00", RESTRICTION_COMMENT),
    ],
)
def test_23_every_blocked_demo_patron(db, ctx, card, status, fines, message):
    text = call(db, ctx(), p23(card))
    assert text.startswith(f"24{status}000{TS}")
    assert values(text, "BV") == [fines]
    assert values(text, "AF") == [f"Greetings from Koha. -- {message}"]


def test_23_options_and_extra_fields(db, ctx):
    add_school_attributes(db)
    context = ctx(
        send_patron_home_library_in_af=True,
        ae_field_template="X[% patron.surname %]Y",
        patron_attributes=(("XY", "SCHOOL"), ("XZ", "NOTHING")),
        custom_patron_fields=(
            ("DE", "[% patron.dateexpiry %]"),
            ("DF", "[% patron.nothing %]"),
            ("DG", "[% IF x %]"),
        ),
    )
    text = call(db, context, p23(ADA))
    assert text == (
        f"24{GOOD}000{TS}AEXLovelaceY|AA{ADA}|BLY|CQN|BHNZD|BV0.00|{ADA_AF}AFWEL|"
        "DE2028-03-09|XYSomerville|XYGirton|AOWEL|"
    )


@pytest.mark.parametrize(("triggers", "seen"), [("", None), ("connection", "2026-03-10 14:30:00")])
def test_23_and_63_track_activity(db, ctx, triggers, seen):
    context = ctx(sysprefs={"TrackLastPatronActivityTriggers": triggers})
    call(db, context, p23(ADA))
    call(db, context, p63(GRACE))
    rows = db.run_blocking(
        lambda txn: txn.query(
            "SELECT lastseen FROM borrowers WHERE cardnumber IN (?, ?)", (ADA, GRACE)
        )
    )
    assert [row["lastseen"] for row in rows] == [seen, seen]
    assert "Invalid cardnumber" in call(db, context, p23("nobody"))


# -- 63 Patron Information -------------------------------------------------------------------


def test_63_ada_with_correct_password(db, ctx):
    text = call(db, ctx(password_ok=True), p63(ADA, extra="AD1234|"))
    assert text == (
        f"64{GOOD}000{TS}{ADA_COUNTS}AOWEL|AA{ADA}|AEAda Lovelace|BLY|CQY|BHNZD|BV0.00|"
        f"CC5.00|{ADA_DETAILS}{ADA_AF}"
    )


def test_63_without_password_has_no_cq(db, ctx):
    text = call(db, ctx(), p63(ADA))
    assert values(text, "CQ") == []
    assert values(text, "BL") == ["Y"]


def test_63_wrong_password(db, ctx):
    text = call(db, ctx(password_ok=False), p63(ADA, extra="ADnope|"))
    assert values(text, "CQ") == ["N"]
    assert values(text, "AF") == ["Greetings from Koha. -- Patron has overdues -- Invalid password"]


@pytest.mark.parametrize(("allow", "cq"), [(False, "N"), (True, "Y")])
def test_63_empty_password_and_allow_empty_passwords(db, ctx, allow, cq):
    text = call(db, ctx(password_ok=False, allow_empty_passwords=allow), p63(ADA, extra="AD|"))
    assert values(text, "CQ") == [cq]
    assert "Invalid password" not in text


def test_63_grace(db, ctx):
    text = call(db, ctx(), p63(GRACE))
    assert text == (
        f"64YYYY      YY  000{TS}{GRACE_COUNTS}AOWEL|AA{GRACE}|AEGrace Hopper|BLY|BHNZD|"
        "BV12.00|CC5.00|BD34 Cobol Close Wellington 6011 New Zealand|"
        "BEgrace.hopper@example.org|BF04 555 0102|PB19061209|PCPT|PIN|"
        "AFGreetings from Koha. -- Patron blocked by fines|"
    )


@pytest.mark.parametrize(
    ("card", "position", "fid", "expected"),
    [
        (ADA, 0, "AS", [BARCODE[8]]),
        (ADA, 1, "AT", [BARCODE[7]]),
        (ADA, 2, "AU", [BARCODE[7], BARCODE[6]]),
        (
            GRACE,
            3,
            "AV",
            [
                "Overdue fine: The Mythical Man-Month 2.50",
                "Lost item replaced: Cryptonomicon 8.00",
                "Replacement library card 1.50",
            ],
        ),
        (ADA, 4, "BU", []),
        (GRACE, 5, "CD", [BARCODE[12]]),
        (GRACE, 2, "AU", [BARCODE[9]]),
    ],
)
def test_63_summary_lists(db, ctx, card, position, fid, expected):
    text = call(db, ctx(), p63(card, summary_at(position)))
    assert values(text, fid) == expected
    for other in ("AS", "AT", "AU", "AV", "BU", "CD"):
        if other != fid:
            assert values(text, other) == []


@pytest.mark.parametrize("position", [6, 7, 8, 9])
def test_63_summary_positions_without_lists(db, ctx, position):
    text = call(db, ctx(), p63(ADA, summary_at(position)))
    for fid in ("AS", "AT", "AU", "AV", "BU", "CD"):
        assert values(text, fid) == []
    assert text.startswith(f"64{GOOD}000{TS}{ADA_COUNTS}")


def test_63_first_y_wins(db, ctx):
    text = call(db, ctx(), p63(ADA, "  YY      "))
    assert values(text, "AU") == [BARCODE[7], BARCODE[6]]
    assert values(text, "AV") == []


@pytest.mark.parametrize(
    ("bp", "bq", "amounts"),
    [
        ("2", "3", ["8.00", "1.50"]),
        ("1", "1", ["2.50"]),
        ("3", "", ["1.50"]),
        ("", "2", ["2.50", "8.00"]),
        ("2", "9", ["8.00", "1.50"]),
        ("4", "9", []),
        ("3", "2", []),
        ("x", "y", ["2.50", "8.00", "1.50"]),
    ],
)
def test_63_bp_bq_range(db, ctx, bp, bq, amounts):
    extra = (f"BP{bp}|" if bp else "") + (f"BQ{bq}|" if bq else "")
    text = call(db, ctx(), p63(GRACE, summary_at(3), extra))
    assert [line.rsplit(" ", 1)[1] for line in values(text, "AV")] == amounts
    assert text[37:61] == GRACE_COUNTS  # counts are never limited


def test_63_av_template(db, ctx):
    context = ctx(av_field_template="[% accountline.debit_type_code %]:[% accountline.amount %]")
    text = call(db, context, p63(GRACE, summary_at(3)))
    assert values(text, "AV") == ["OVERDUE:2.5", "LOST:8.0", "NEW_CARD:1.5"]


def test_63_patron_branchcode_in_ao(db, ctx):
    assert values(call(db, ctx("kilsc"), p63(ADA)), "AO") == ["KIL"]
    assert values(call(db, ctx("kilsc", patron_branchcode_in_ao=True), p63(ADA)), "AO") == ["WEL"]


def test_63_extra_fields_come_last(db, ctx):
    add_school_attributes(db)
    context = ctx(patron_attributes=(("XY", "SCHOOL"),), send_patron_home_library_in_af=True)
    text = call(db, context, p63(ADA))
    assert text.endswith(f"PIY|{ADA_AF}AFWEL|XYSomerville|XYGirton|")


def test_63_unknown_patron(db, ctx):
    text = call(db, ctx(), p63("23529000000099", extra="AD1234|"))
    assert text == (
        f"64{NONE}000{TS}{'0000' * 6}AOWEL|AA23529000000099|AE|BLN|AFInvalid cardnumber|"
    )


def test_63_fine_items_count_only_outstanding_debits(db, ctx):
    set_sql(
        db,
        "UPDATE accountlines SET amountoutstanding = 0 WHERE debit_type_code = 'LOST'",
    )
    text = call(db, ctx(), p63(GRACE, summary_at(3)))
    assert text[37:61] == "000000000001000200000001"
    assert values(text, "BV") == ["4.00"]
    assert len(values(text, "AV")) == 2


# -- 01 Block Patron -------------------------------------------------------------------------


def test_01_stores_a_restriction_and_answers_24(db, ctx):
    text = call(db, ctx(password_ok=None), f"01Y{TS}AOWEL|ALCard retained by machine 4|AA{ADA}|AC|")
    assert text == (
        f"24{NONE}000{TS}{ADA_NAME}BLY|CQN|BHNZD|BV0.00|"
        "AFGreetings from Koha. -- Card retained by machine 4 -- Patron has overdues|AOWEL|"
    )
    row = db.run_blocking(
        lambda txn: txn.one(
            "SELECT d.type, d.comment, d.expiration, b.debarred, b.debarredcomment "
            "FROM borrower_debarments d JOIN borrowers b ON b.borrowernumber = d.borrowernumber "
            "WHERE b.cardnumber = ?",
            (ADA,),
        )
    )
    assert row == {
        "type": "MANUAL",
        "comment": "Card retained by machine 4",
        "expiration": None,
        "debarred": "9999-12-31",
        "debarredcomment": "Card retained by machine 4",
    }
    # The block holds for every later request.
    assert call(db, ctx(), p23(ADA)).startswith(f"24{NONE}000")


def test_01_unknown_patron_is_a_well_formed_24(db, ctx):
    text = call(db, ctx(), f"01N{TS}AOWEL|ALlost|AAnobody|")
    assert text == f"24{NONE}000{TS}AE|AAnobody|BLN|AFInvalid cardnumber|AOWEL|"


def test_01_without_al_uses_a_default_comment(db, ctx):
    text = call(db, ctx(), f"01N{TS}AOWEL|AA{ADA}|")
    assert "Blocked by self-check" in values(text, "AF")[0]


# -- 25 Patron Enable ------------------------------------------------------------------------


def test_25_lifts_the_sip_block(db, ctx):
    call(db, ctx(), f"01N{TS}AOWEL|ALblocked|AA{ADA}|")
    text = call(db, ctx(), f"25{TS}AOWEL|AA{ADA}|")
    assert text == f"26{GOOD}000{TS}AA{ADA}|AEAda Lovelace|BLY|{ADA_AF}AOWEL|"
    assert call(db, ctx(), p23(ADA)).startswith(f"24{GOOD}000")
    # Only the demo's librarian restriction (Edsger's) is left.
    count = db.run_blocking(
        lambda txn: txn.scalar(
            "SELECT COUNT(*) AS n FROM borrower_debarments WHERE type = 'MANUAL'"
        )
    )
    assert count == 1


def test_25_with_correct_password(db, ctx):
    call(db, ctx(), f"01N{TS}AOWEL|ALblocked|AA{ADA}|")
    text = call(db, ctx(password_ok=True), f"25{TS}AOWEL|AA{ADA}|AD1234|")
    assert text == f"26{GOOD}000{TS}AA{ADA}|AEAda Lovelace|CQY|BLY|{ADA_AF}AOWEL|"


def test_25_with_wrong_password_does_not_enable(db, ctx):
    call(db, ctx(), f"01N{TS}AOWEL|ALblocked|AA{ADA}|")
    text = call(db, ctx(password_ok=False), f"25{TS}AOWEL|AA{ADA}|ADbad|")
    assert text.startswith(f"26{NONE}000{TS}AA{ADA}|AEAda Lovelace|CQN|BLY|")
    assert "Invalid password" in values(text, "AF")[0]
    assert call(db, ctx(), p23(ADA)).startswith(f"24{NONE}000")


def test_25_keeps_other_restrictions(db, ctx):
    text = call(db, ctx(), f"25{TS}AOWEL|AA{EDSGER}|")
    assert text.startswith(f"26{NONE}000{TS}AA{EDSGER}|AEEdsger Dijkstra|BLY|")
    assert values(text, "AF") == [f"Greetings from Koha. -- {RESTRICTION_COMMENT}"]


def test_25_uses_the_ae_template(db, ctx):
    text = call(db, ctx(ae_field_template="[% patron.surname | upper %]"), f"25{TS}AA{ADA}|")
    assert values(text, "AE") == ["LOVELACE"]


def test_25_unknown_patron(db, ctx):
    text = call(db, ctx("kilsc"), f"25{TS}AOWEL|AA999|")
    assert text == f"26{NONE}000{TS}AA999|AE|BLN|CQN|AFInvalid cardnumber|AOKIL|"


# -- 35 End Patron Session -------------------------------------------------------------------


def test_35(db, ctx):
    text = call(db, ctx(), f"35{TS}AOWEL|AA{ADA}|AD1234|")
    assert text == f"36Y{TS}AOWEL|AA{ADA}|AFThank you!|"


def test_35_unknown_patron_still_ends(db, ctx):
    assert call(db, ctx("kilsc"), f"35{TS}AAnobody|") == f"36Y{TS}AOKIL|AAnobody|AFThank you!|"


# -- BP/BQ as a property ---------------------------------------------------------------------


@given(
    st.lists(st.integers(), max_size=30),
    st.one_of(st.none(), st.integers(-3, 40).map(str), st.text(max_size=3)),
    st.one_of(st.none(), st.integers(-3, 40).map(str), st.text(max_size=3)),
)
def test_summary_range_is_a_clamped_inclusive_slice(items, start, end):
    chosen = summary_range(items, start, end)

    def number(text, default):
        text = (text or "").strip()
        ok = text.isascii() and text.isdigit()
        return int(text) if ok and int(text) > 0 else default

    first, last = number(start, 1), min(number(end, len(items)), len(items))
    assert chosen == items[first - 1 : last] if first <= last else chosen == []
    assert len(chosen) <= len(items)


def test_templates_never_see_the_password_hash(db, ctx):
    context = ctx(
        ae_field_template="[% patron.surname %][% patron.password %]",
        custom_patron_fields=(("ZP", "[% patron.password %]"), ("ZC", "[% patron.cardnumber %]")),
    )
    text = call(db, context, p23(ADA))
    assert "$2" not in text
    assert values(text, "AE") == ["Lovelace"]
    assert values(text, "ZP") == []
    assert values(text, "ZC") == [ADA]


_FIXED_CHARS = st.characters(blacklist_characters="|\r\n", blacklist_categories=("Cs",))
_FIELD_TEXT = st.text(
    alphabet=st.characters(blacklist_characters="|\r\n", blacklist_categories=("Cs",)), max_size=20
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    code=st.sampled_from(["23", "63", "01", "25", "35"]),
    fixed=st.text(alphabet=_FIXED_CHARS, min_size=31, max_size=31),
    patron=st.one_of(
        st.sampled_from([ADA, GRACE, "joe", "edsger", "", "\x00", ADA + "\x00"]), _FIELD_TEXT
    ),
    extra=st.lists(
        st.tuples(st.sampled_from(["AD", "AL", "BP", "BQ", "AO", "AC"]), _FIELD_TEXT), max_size=4
    ),
    password_ok=st.sampled_from([None, True, False]),
)
def test_patron_messages_always_answer_well_formed(
    db, ctx, code, fixed, patron, extra, password_ok
):
    lengths = {"23": 21, "63": 31, "01": 19, "25": 18, "35": 18}
    raw = code + fixed[: lengths[code]] + f"AA{patron}|" + "".join(f"{f}{v}|" for f, v in extra)
    text = call(db, ctx(password_ok=password_ok), raw)
    answer = {"23": "24", "63": "64", "01": "24", "25": "26", "35": "36"}[code]
    assert text.startswith(answer)
    assert "\r" not in text


def test_01_nul_characters_are_not_stored(db, ctx):
    call(db, ctx(), f"01N{TS}AOWEL|ALcard\x00kept|AA{ADA}|")
    row = db.run_blocking(
        lambda txn: txn.one(
            "SELECT comment FROM borrower_debarments WHERE type = 'MANUAL' AND manager_id > 0"
        )
    )
    assert row["comment"] == "cardkept"
    assert "Invalid cardnumber" in call(db, ctx(), p23("\x00"))
