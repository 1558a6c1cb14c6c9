"""SIP2 11, 09, 29, 65, 15 and 37 through the ACS, with exact response texts, on the demo data
(both engines). The responses are what the session encodes before adding AY/AZ."""

from __future__ import annotations

import pytest

from tests.ils.conftest import ADA, BARCODE, EDSGER, GRACE, TS, call, field_values

ALAN = "23529000000003"
STAFF_CARD = "y76t5r43"
BLANK = " " * 18
TITLE = {
    1: "Structure and Interpretation of Computer Programs",
    3: "The Mythical Man-Month",
    6: "A Discipline of Programming",
    7: "Hackers: Heroes of the Computer Revolution",
    8: "The Soul of a New Machine",
    9: "Code: The Hidden Language of Computer Hardware and Software",
    11: "A Dictionary of Computer Science",
    12: "Dune",
}


def checkout(patron, item, extra="", nb="N", due=BLANK):
    return f"11Y{nb}{TS}{due}AOWEL|AA{patron}|AB{item}|AC|{extra}"


def checkin(item, ap="WEL", ao="WEL", return_date=BLANK):
    return f"09N{TS}{return_date}AP{ap}|AO{ao}|AB{item}|AC|"


def renew(patron, item, extra=""):
    return f"29NN{TS}{BLANK}AOWEL|AA{patron}|AB{item}|{extra}"


def hold(mode, patron, extra):
    return f"15{mode}{TS}AOWEL|AA{patron}|{extra}"


def fee_paid(patron, amount, extra="", payment_type="00"):
    return f"37{TS}01{payment_type}NZDBV{amount}|AOWEL|AA{patron}|{extra}"


def _one(db, sql, params=()):
    return db.run_blocking(lambda txn: txn.one(sql, params))


def _execute(db, sql, params=()):
    return db.run_blocking(lambda txn: txn.execute(sql, params))


def _pay_grace(db, ctx):
    """Clear Grace's 12.00 so that the item rules, not her fines, decide."""
    assert call(db, ctx(), fee_paid(GRACE, "12.00")).startswith("38Y")


# --- 11 Checkout ---------------------------------------------------------------------------


def test_checkout_ok(db, ctx):
    assert call(db, ctx(), checkout(ADA, BARCODE[1])) == (
        f"121NNY{TS}AOWEL|AA{ADA}|AB{BARCODE[1]}|AJ{TITLE[1]}|AH20260324    235900|CK001|"
    )


def test_checkout_echoes_the_patron_identifier_as_sent(db, ctx):
    text = call(db, ctx(), checkout("ada", BARCODE[1]))
    assert text.startswith("121")
    assert "|AAada|" in text


def test_checkout_protocol_1_has_no_v2_fields(db, ctx):
    assert call(db, ctx(protocol_version=1), checkout(ADA, BARCODE[1])) == (
        f"121NNY{TS}AOWEL|AA{ADA}|AB{BARCODE[1]}|AJ{TITLE[1]}|AH20260324    235900|"
    )
    assert call(db, ctx(protocol_version=1), checkout(GRACE, BARCODE[2])).endswith(
        "|AH|AFPatron has fines|"
    )


def test_checkout_format_due_date(db, ctx):
    text = call(db, ctx(format_due_date=True), checkout(ADA, BARCODE[1]))
    assert "|AH2026-03-24 23:59|" in text


def test_checkout_desensitize_for_inhouse_use(db, ctx):
    categories = ctx(inhouse_patron_categories=frozenset({"PT"}))
    assert call(db, categories, checkout(ADA, BARCODE[1])).startswith("121NNN")
    itemtypes = ctx(inhouse_item_types=frozenset({"BK"}))
    assert call(db, itemtypes, checkout(ADA, BARCODE[2])).startswith("121NNN")
    assert call(db, ctx(), checkout(ADA, BARCODE[3])).startswith("121NNY")


def test_checkout_of_own_loan_renews(db, ctx):
    assert call(db, ctx(), checkout(ADA, BARCODE[6])) == (
        f"121YNY{TS}AOWEL|AA{ADA}|AB{BARCODE[6]}|AJ{TITLE[6]}|AH20260407    235900|"
        "AFItem already checked out to you: renewing item.|CK001|"
    )


@pytest.mark.parametrize(
    ("patron", "item", "title", "message", "valid"),
    [
        ("nobody", BARCODE[1], TITLE[1], "Invalid Patron", "N"),
        (ADA, "nonexistent", "", "Invalid Item", "Y"),
        (GRACE, BARCODE[1], TITLE[1], "Patron has fines", "Y"),
        (ALAN, BARCODE[1], TITLE[1], "Patron expired on 2026-02-08", "Y"),
        (EDSGER, BARCODE[1], TITLE[1], "Patron debarred", "Y"),
        (ADA, BARCODE[9], TITLE[9], "Item checked out to another patron", "Y"),
        (ADA, BARCODE[12], TITLE[12], "Item is reserved for another patron upon return.", "Y"),
        (ADA, BARCODE[11], TITLE[11], "Issue failed : NOT_FOR_LOAN", "Y"),
    ],
)
def test_checkout_refusals(db, ctx, patron, item, title, message, valid):
    assert call(db, ctx(), checkout(patron, item)) == (
        f"120NUN{TS}AOWEL|AA{patron}|AB{item}|AJ{title}|AH|AF{message}|BL{valid}|"
    )


def test_checkout_refusals_after_paying_fines(db, ctx):
    _pay_grace(db, ctx)
    on_loan = call(db, ctx(), checkout(GRACE, BARCODE[6]))
    assert on_loan.startswith("120NUN")
    assert "|AFItem checked out to another patron|" in on_loan
    waiting = call(db, ctx(), checkout(GRACE, BARCODE[8]))
    assert "|AFItem is on hold for another patron.|" in waiting
    # With a credit balance (0.00 owed) and the item free, Grace can borrow.
    assert call(db, ctx(), checkout(GRACE, BARCODE[2])).startswith("121")


def test_checkout_waiting_hold_for_this_patron_is_filled(db, ctx):
    assert call(db, ctx(), checkout(ADA, BARCODE[8])).startswith("121NNY")
    assert _one(db, "SELECT COUNT(*) AS n FROM reserves WHERE found = 'W'")["n"] == 0


def test_checkout_no_block_offline_for_a_debarred_patron(db, ctx):
    text = call(db, ctx(), checkout(EDSGER, BARCODE[1], nb="Y", due="20260401    120000"))
    assert text == (
        f"121NNY{TS}AOWEL|AA{EDSGER}|AB{BARCODE[1]}|AJ{TITLE[1]}|AH20260401    120000|CK001|"
    )


def test_checkout_wrong_patron_password(db, ctx):
    text = call(db, ctx(password_ok=False), checkout(ADA, BARCODE[1], "AD9999|"))
    assert text == (
        f"120NUN{TS}AOWEL|AA{ADA}|AB{BARCODE[1]}|AJ{TITLE[1]}|AH|AFInvalid patron password|BLY|CQN|"
    )
    ok = call(db, ctx(password_ok=True), checkout(ADA, BARCODE[1], "AD1234|"))
    assert ok.startswith("121")


def test_checkout_rental_charge(db, ctx):
    _execute(db, "UPDATE itemtypes SET rentalcharge = 1.5 WHERE itemtype = 'BK'")
    refused = call(db, ctx(), checkout(ADA, BARCODE[1]))
    assert refused == (
        f"120NUN{TS}AOWEL|AA{ADA}|AB{BARCODE[1]}|AJ{TITLE[1]}|AH|"
        "AFRental charge of 1.50 must be acknowledged|BLY|BV1.50|BHNZD|BT06|"
    )
    accepted = call(db, ctx(), checkout(ADA, BARCODE[1], "BOY|"))
    line = _one(db, "SELECT accountlines_id FROM accountlines WHERE debit_type_code = 'RENT'")
    assert accepted == (
        f"121NNY{TS}AOWEL|AA{ADA}|AB{BARCODE[1]}|AJ{TITLE[1]}|AH20260324    235900|CK001|"
        f"BV1.50|BHNZD|BT06|BK{line['accountlines_id']}|"
    )


def test_checkout_item_fields(db, ctx):
    context = ctx(item_fields=(("ZY", "itype"), ("ZZ", "itemcallnumber")))
    assert call(db, context, checkout(ADA, BARCODE[1])).endswith("|CK001|ZYBK|ZZ005.13 ABE|")
    assert call(db, context, checkout(GRACE, BARCODE[2])).endswith("|BLY|ZYBK|ZZ005.1 KNU|")


# --- 09 Checkin ----------------------------------------------------------------------------


def test_checkin_overdue_item(db, ctx):
    assert call(db, ctx(), checkin(BARCODE[7])) == (
        f"101YNN{TS}AOWEL|AB{BARCODE[7]}|AQWEL|AJ{TITLE[7]}|AA{ADA}|CK001|CS004.09 LEV|"
    )
    fine = _one(
        db,
        "SELECT amount, debit_type_code FROM accountlines WHERE itemnumber = "
        "(SELECT itemnumber FROM items WHERE barcode = ?)",
        (BARCODE[7],),
    )
    assert fine == {"amount": 2.5, "debit_type_code": "OVERDUE"}


def test_checkin_captures_a_hold(db, ctx):
    assert call(db, ctx(), checkin(BARCODE[12])) == (
        f"100YNY{TS}AOWEL|AB{BARCODE[12]}|AQWEL|AJ{TITLE[12]}|CK001|CSFIC HER|CY{GRACE}|CTWEL|"
        "DAGrace Hopper (grace.hopper@example.org, 04 555 0102)|CV01|AFItem not checked out|"
    )
    assert call(db, ctx(checked_in_ok=True), checkin(BARCODE[12])) == (
        f"101YNY{TS}AOWEL|AB{BARCODE[12]}|AQWEL|AJ{TITLE[12]}|CK001|CSFIC HER|CY{GRACE}|CTWEL|"
        "DAGrace Hopper (grace.hopper@example.org, 04 555 0102)|CV01|"
    )


def test_checkin_hold_for_another_branch(db, ctx):
    text = call(db, ctx(), checkin(BARCODE[12], ap="KIL"))
    assert f"|CY{GRACE}|CTWEL|" in text
    assert text.endswith("|CV02|AFItem not checked out|")


def test_checkin_da_field_template(db, ctx):
    context = ctx(da_field_template="[% patron.surname %], [% patron.firstname %]")
    assert "|DAHopper, Grace|" in call(db, context, checkin(BARCODE[12]))


def test_checkin_sends_the_item_home(db, ctx):
    assert call(db, ctx(), checkin(BARCODE[9])) == (
        f"101YNY{TS}AOWEL|AB{BARCODE[9]}|AQKIL|AJ{TITLE[9]}|AA{GRACE}|CK001|CS004 PET|CTKIL|CV04|"
    )


def test_checkin_unknown_item(db, ctx):
    assert call(db, ctx(), checkin("nonexistent")) == (
        f"100NUY{TS}AOWEL|ABnonexistent|AQ|CV99|AFInvalid Item|"
    )


def test_checkin_echoes_the_request_ao(db, ctx):
    assert call(db, ctx(), checkin(BARCODE[7], ao="SOMEWHERE")).startswith(
        f"101YNN{TS}AOSOMEWHERE|"
    )


def test_checkin_not_checked_out_options(db, ctx):
    base = f"{TS}AOWEL|AB{BARCODE[1]}|AQWEL|AJ{TITLE[1]}|CK001|CS005.13 ABE|"
    assert call(db, ctx(), checkin(BARCODE[1])) == f"100YNY{base}AFItem not checked out|"
    assert call(db, ctx(checked_in_ok=True), checkin(BARCODE[1])) == f"101YNN{base}"
    assert call(db, ctx(checked_in_ok=True, cv_send_00_on_success=True), checkin(BARCODE[1])) == (
        f"101YNN{base}CV00|"
    )
    assert call(db, ctx(cv_triggers_alert=True), checkin(BARCODE[1])) == (
        f"100YNN{base}AFItem not checked out|"
    )
    assert call(db, ctx(checked_in_ok=True, ct_always_send=True), checkin(BARCODE[1])) == (
        f"101YNN{TS}AOWEL|AB{BARCODE[1]}|AQWEL|AJ{TITLE[1]}|CK001|CS005.13 ABE|CT|"
    )


def test_checkin_sort_bin_and_collection_code(db, ctx):
    context = ctx(sort_bin_mappings=("WEL:itype:eq:BK:3",), cr_item_field="itype")
    assert call(db, context, checkin(BARCODE[7])) == (
        f"101YNN{TS}AOWEL|AB{BARCODE[7]}|AQWEL|AJ{TITLE[7]}|CL3|AA{ADA}|CK001|CS004.09 LEV|CRBK|"
    )


def test_checkin_holds_block_checkin(db, ctx):
    _pay_grace(db, ctx)
    assert call(db, ctx(), hold("+", GRACE, f"AB{BARCODE[6]}|")).startswith("161")
    text = call(db, ctx(holds_block_checkin=True), checkin(BARCODE[6]))
    assert text.startswith("100YNY")
    assert text.endswith("|CV99|AFItem is on hold, please return to circulation desk|")
    assert _one(db, "SELECT COUNT(*) AS n FROM issues")["n"] == 3


def test_checkin_unknown_ap_falls_back_to_the_institution(db, ctx):
    context = ctx()
    text = call(db, context, checkin(BARCODE[12], ap="KIOSK-3"))
    assert "|CTWEL|" in text and "|CV01|" in text
    assert any("KIOSK-3" in line for line in context.log)


def test_checkin_return_date_sets_the_fine(db, ctx):
    call(db, ctx(), checkin(BARCODE[7], return_date="20260305    090000"))
    fine = _one(
        db,
        "SELECT amount FROM accountlines WHERE debit_type_code = 'OVERDUE' AND status = 'RETURNED'",
    )
    assert fine == {"amount": 1.25}


# --- 29 Renew / 65 Renew All ---------------------------------------------------------------


def test_renew_ok(db, ctx):
    assert call(db, ctx(), renew(ADA, BARCODE[6])) == (
        f"301YNN{TS}AA{ADA}|AB{BARCODE[6]}|AJ{TITLE[6]}|AH20260407    235900|CK001|AOWEL|"
    )


def test_renew_limits(db, ctx):
    assert call(db, ctx(), renew(ADA, BARCODE[6])).startswith("301Y")
    assert call(db, ctx(), renew(ADA, BARCODE[6])).startswith("301Y")
    assert call(db, ctx(), renew(ADA, BARCODE[6])) == (
        f"300NUN{TS}AA{ADA}|AB{BARCODE[6]}|AJ{TITLE[6]}|AH|AOWEL|"
        "AFItem has reached maximum renewals|"
    )


def test_renew_blocked_by_holds(db, ctx):
    _pay_grace(db, ctx)
    assert call(db, ctx(), hold("+", GRACE, f"AB{BARCODE[6]}|")).startswith("161")
    assert call(db, ctx(), renew(ADA, BARCODE[6])).endswith(
        "|AFItem unavailable due to outstanding holds|"
    )


@pytest.mark.parametrize(
    ("account", "patron", "item", "aa", "title", "message"),
    [
        ("kilsc", ADA, BARCODE[6], ADA, TITLE[6], "Renewals not allowed."),
        ("joe", EDSGER, BARCODE[6], EDSGER, TITLE[6], "Renewals not allowed."),
        ("joe", "nobody", BARCODE[6], "nobody", TITLE[6], "Invalid patron barcode."),
        ("joe", ADA, BARCODE[9], ADA, TITLE[9], "Item not checked out to Ada Lovelace"),
        ("joe", ADA, "nonexistent", ADA, "", "Item not checked out to Ada Lovelace"),
    ],
)
def test_renew_refusals(db, ctx, account, patron, item, aa, title, message):
    institution = "KIL" if account == "kilsc" else "WEL"
    assert call(db, ctx(account), renew(patron, item)) == (
        f"300NUN{TS}AA{aa}|AB{item}|AJ{title}|AH|AO{institution}|AF{message}|"
    )


def test_renew_all(db, ctx):
    assert call(db, ctx(), f"65{TS}AOWEL|AA{ADA}|") == (
        f"66100020000{TS}AOWEL|BM{BARCODE[7]}|BM{BARCODE[6]}|"
    )
    assert _one(db, "SELECT COUNT(*) AS n FROM issues WHERE renewals_count = 1")["n"] == 2


def test_renew_all_reports_unrenewed_items(db, ctx):
    _execute(db, "UPDATE issues SET renewals_count = 2 WHERE date_due LIKE '2026-03-24%'")
    assert call(db, ctx(), f"65{TS}AOWEL|AA{ADA}|") == (
        f"66100010001{TS}AOWEL|BM{BARCODE[7]}|BN{BARCODE[6]}|"
    )


def test_renew_all_with_no_loans(db, ctx):
    assert call(db, ctx(), f"65{TS}AOWEL|AA{STAFF_CARD}|") == f"66100000000{TS}AOWEL|"


@pytest.mark.parametrize(
    ("account", "patron", "message"),
    [
        ("kilsc", ADA, "Renewals not allowed."),
        ("joe", ALAN, "Renewals not allowed."),
        ("joe", "nobody", "Invalid patron barcode."),
    ],
)
def test_renew_all_refusals(db, ctx, account, patron, message):
    institution = "KIL" if account == "kilsc" else "WEL"
    assert call(db, ctx(account), f"65{TS}AO{institution}|AA{patron}|") == (
        f"66000000000{TS}AO{institution}|AF{message}|"
    )


# --- 15 Hold -------------------------------------------------------------------------------
#
# Koha's answers (C4::SIP::Sip::MsgType::handle_hold, C4::SIP::ILS add_hold / cancel_hold,
# ILS::Item::available): "available" is Y only for an item on loan to this patron with no hold
# queued on its title, or attached to a hold (waiting, in transit) of this patron; an item on
# the shelf is N. It is read before the hold changes.

RESERVE_ROW = (
    "SELECT r.branchcode, r.itemnumber, r.item_level_hold, r.priority, r.found, "
    "r.expirationdate, r.reservedate FROM reserves r JOIN borrowers b "
    "ON b.borrowernumber = r.borrowernumber WHERE b.cardnumber = ? AND r.biblionumber = "
    "(SELECT biblionumber FROM items WHERE barcode = ?)"
)


def _reserve(db, card, barcode):
    return _one(db, RESERVE_ROW, (card, barcode))


def test_hold_add_on_an_item_on_the_shelf_is_not_available(db, ctx):
    assert call(db, ctx(), hold("+", ADA, f"AB{BARCODE[3]}|")) == (
        f"161N{TS}AA{ADA}|BR1|BSWEL|AB{BARCODE[3]}|AJ{TITLE[3]}|AOWEL|"
    )


def test_hold_add_title_level(db, ctx):
    assert call(db, ctx(), hold("+", ADA, f"AB{BARCODE[12]}|")) == (
        f"161N{TS}AA{ADA}|BR2|BSWEL|AB{BARCODE[12]}|AJ{TITLE[12]}|AOWEL|"
    )
    assert _reserve(db, ADA, BARCODE[12]) == {
        "branchcode": "WEL",
        "itemnumber": None,
        "item_level_hold": 0,
        "priority": 2,
        "found": None,
        "expirationdate": None,
        "reservedate": "2026-03-10",
    }


@pytest.mark.parametrize(
    "expiry",
    ["BW20260301    000000|", "BW20260630    000000|", "BWnot a date|"],
    ids=["past", "future", "malformed"],
)
def test_hold_add_ignores_the_expiry_and_hold_type_as_koha_does(db, ctx, expiry):
    """Koha's SIP server does not pass BW to AddReserve and always places a title-level hold:
    an expiry in the past is no refusal, and BY 3 (a specific copy) still holds the title."""
    text = call(db, ctx(), hold("+", ADA, f"{expiry}BSKIL|BY3|AB{BARCODE[3]}|"))
    assert text == f"161N{TS}AA{ADA}|BR1|BSKIL|AB{BARCODE[3]}|AJ{TITLE[3]}|AOWEL|"
    row = _reserve(db, ADA, BARCODE[3])
    assert (row["itemnumber"], row["item_level_hold"], row["expirationdate"]) == (None, 0, None)
    assert row["branchcode"] == "KIL"


def test_hold_add_on_an_item_waiting_for_another_patron(db, ctx):
    _pay_grace(db, ctx)
    assert call(db, ctx(), hold("+", GRACE, f"AB{BARCODE[8]}|")) == (
        f"161N{TS}AA{GRACE}|BR1|BSWEL|AB{BARCODE[8]}|AJ{TITLE[8]}|AOWEL|"
    )


def test_hold_add_on_an_item_on_loan_to_another_patron(db, ctx):
    assert call(db, ctx(), hold("+", ADA, f"AB{BARCODE[9]}|")) == (
        f"161N{TS}AA{ADA}|BR1|BSWEL|AB{BARCODE[9]}|AJ{TITLE[9]}|AOWEL|"
    )


def test_hold_add_by_title(db, ctx):
    assert call(db, ctx(), hold("+", ADA, "AJDune|")) == (
        f"161N{TS}AA{ADA}|BR2|BSWEL|AJ{TITLE[12]}|AOWEL|"
    )


def test_hold_refusals_on_items_available_to_the_patron(db, ctx):
    """Y in a refusal: the item is on loan to Ada with no hold on its title (6), or waiting
    for her on the hold shelf (8)."""
    assert call(db, ctx(), hold("+", ADA, f"AB{BARCODE[6]}|")) == (
        f"160Y{TS}AA{ADA}|AOWEL|AFItem already checked out to you.|"
    )
    assert call(db, ctx(), hold("+", ADA, f"AB{BARCODE[8]}|")) == (
        f"160Y{TS}AA{ADA}|AOWEL|AFPatron already has a hold on this title.|"
    )


def test_hold_on_loan_to_the_patron_with_a_hold_queued_is_not_available(db, ctx):
    _pay_grace(db, ctx)
    assert call(db, ctx(), hold("+", GRACE, f"AB{BARCODE[6]}|")).startswith("161N")
    assert call(db, ctx(), hold("+", ADA, f"AB{BARCODE[6]}|")) == (
        f"160N{TS}AA{ADA}|AOWEL|AFItem already checked out to you.|"
    )


@pytest.mark.parametrize(
    ("patron", "extra", "message"),
    [
        ("nobody", f"AB{BARCODE[3]}|", "Invalid patron barcode."),
        (ADA, "ABnonexistent|", "No such item."),
        (ADA, "AJNo Such Title|", "No such item."),
        (EDSGER, f"AB{BARCODE[3]}|", "Patron debarred"),
        (ALAN, f"AB{BARCODE[3]}|", "Patron expired on 2026-02-08"),
        (GRACE, f"AB{BARCODE[3]}|", "Excessive fees blocking placement of hold."),
        (GRACE, f"AB{BARCODE[12]}|", "Excessive fees blocking placement of hold."),
        (ADA, f"BSNOWHERE|AB{BARCODE[3]}|", "Invalid pickup location."),
    ],
)
def test_hold_add_refusals(db, ctx, patron, extra, message):
    assert call(db, ctx(), hold("+", patron, extra)) == (f"160N{TS}AA{patron}|AOWEL|AF{message}|")
    assert _one(db, "SELECT COUNT(*) AS n FROM reserves")["n"] == 2


def test_hold_cancel_title_level_hold_by_item(db, ctx):
    assert call(db, ctx(), hold("-", GRACE, f"AB{BARCODE[12]}|")) == (
        f"161N{TS}AA{GRACE}|AB{BARCODE[12]}|AJ{TITLE[12]}|AOWEL|AFHold Cancelled.|"
    )
    assert _one(db, "SELECT cancellationdate FROM old_reserves") == {
        "cancellationdate": "2026-03-10"
    }


def test_hold_cancel_waiting_hold(db, ctx):
    """The item was waiting for Ada when the request came: Y, as Koha reads it first."""
    assert call(db, ctx(), hold("-", ADA, f"AB{BARCODE[8]}|")) == (
        f"161Y{TS}AA{ADA}|AB{BARCODE[8]}|AJ{TITLE[8]}|AOWEL|AFHold Cancelled.|"
    )
    assert _reserve(db, ADA, BARCODE[8]) is None
    assert _one(db, "SELECT found, cancellationdate FROM old_reserves") == {
        "found": "W",
        "cancellationdate": "2026-03-10",
    }


def test_hold_cancel_without_hold(db, ctx):
    assert call(db, ctx(), hold("-", ADA, f"AB{BARCODE[3]}|")) == (
        f"160N{TS}AA{ADA}|AOWEL|AFError with transaction drop_hold: |"
    )
    assert call(db, ctx(), hold("-", ADA, f"AB{BARCODE[6]}|")) == (
        f"160Y{TS}AA{ADA}|AOWEL|AFError with transaction drop_hold: |"
    )
    assert call(db, ctx(), hold("-", ADA, "ABnonexistent|")) == (
        f"160N{TS}AA{ADA}|AOWEL|AFNo such item.|"
    )
    assert _one(db, "SELECT COUNT(*) AS n FROM old_reserves")["n"] == 0


def test_hold_alter(db, ctx):
    assert call(db, ctx(), hold("*", GRACE, f"BSKIL|BW20260501    000000|AB{BARCODE[12]}|")) == (
        f"161N{TS}AA{GRACE}|BW20260501    235900|BR1|BSKIL|AB{BARCODE[12]}|AJ{TITLE[12]}|"
        "AOWEL|AFHold updated.|"
    )
    row = _reserve(db, GRACE, BARCODE[12])
    assert (row["branchcode"], row["expirationdate"]) == ("KIL", "2026-05-01")


@pytest.mark.parametrize(
    ("patron", "extra", "message"),
    [
        (ADA, f"BSKIL|AB{BARCODE[3]}|", "No such outstanding hold."),
        (ADA, "BSKIL|ABnonexistent|", "No such outstanding hold."),
        ("nobody", f"BSKIL|AB{BARCODE[12]}|", "Invalid patron barcode: 'nobody'."),
        (GRACE, f"BWsoon|AB{BARCODE[12]}|", "Invalid hold expiration date."),
        (GRACE, f"BW20260301    000000|AB{BARCODE[12]}|", "Hold expiration date is in the past."),
        (GRACE, f"BSNOWHERE|AB{BARCODE[12]}|", "Invalid pickup location."),
    ],
)
def test_hold_alter_refusals(db, ctx, patron, extra, message):
    assert call(db, ctx(), hold("*", patron, extra)) == (f"160N{TS}AA{patron}|AOWEL|AF{message}|")
    row = _reserve(db, GRACE, BARCODE[12])
    assert (row["branchcode"], row["expirationdate"]) == ("WEL", None)


def test_hold_alter_a_waiting_hold_is_available(db, ctx):
    assert call(db, ctx(), hold("*", ADA, f"BSKIL|AB{BARCODE[8]}|")) == (
        f"160Y{TS}AA{ADA}|AOWEL|"
        "AFHold is already waiting or in transit; the pickup location cannot change.|"
    )


def test_hold_invalid_mode(db, ctx):
    assert call(db, ctx(), hold("?", ADA, f"AB{BARCODE[3]}|")) == (
        f"160N{TS}AA{ADA}|AOWEL|AFInvalid hold mode.|"
    )


# --- 37 Fee Paid ---------------------------------------------------------------------------


def test_fee_paid(db, ctx):
    assert call(db, ctx(), fee_paid(GRACE, "5.00", "BKtx-17|")) == (
        f"38Y{TS}AOWEL|AA{GRACE}|BKtx-17|"
    )
    left = _one(db, "SELECT SUM(amountoutstanding) AS owed FROM accountlines")
    assert left == {"owed": 7.0}


def test_fee_paid_to_one_fee(db, ctx):
    line = _one(db, "SELECT accountlines_id FROM accountlines WHERE debit_type_code = 'LOST'")
    text = call(db, ctx(), fee_paid(GRACE, "8.00", f"CG{line['accountlines_id']}|"))
    assert text == f"38Y{TS}AOWEL|AA{GRACE}|"
    assert _one(
        db,
        "SELECT amountoutstanding FROM accountlines WHERE accountlines_id = ?",
        (line["accountlines_id"],),
    ) == {"amountoutstanding": 0.0}
    assert call(db, ctx(), fee_paid(GRACE, "1.00", "CG999999|")) == (
        f"38N{TS}AOWEL|AA{GRACE}|AFInvalid fee identifier.|"
    )


def test_fee_paid_writeoff(db, ctx):
    text = call(db, ctx(payment_type_writeoff="06"), fee_paid(GRACE, "2.50", payment_type="06"))
    assert text.startswith("38Y")
    credit = _one(
        db,
        "SELECT credit_type_code, payment_type FROM accountlines "
        "WHERE credit_type_code IS NOT NULL",
    )
    assert credit == {"credit_type_code": "WRITEOFF", "payment_type": "SIP06"}


def test_fee_paid_overpayment(db, ctx):
    assert call(db, ctx(disallow_overpayment=True), fee_paid(GRACE, "12.01")) == (
        f"38N{TS}AOWEL|AA{GRACE}|"
    )
    assert call(db, ctx(), fee_paid(GRACE, "15")) == f"38Y{TS}AOWEL|AA{GRACE}|"
    assert _one(db, "SELECT SUM(amountoutstanding) AS owed FROM accountlines") == {"owed": -3.0}


@pytest.mark.parametrize("amount", ["abc", "0", "-1", ""])
def test_fee_paid_bad_amount(db, ctx, amount):
    assert call(db, ctx(), fee_paid(GRACE, amount)) == (
        f"38N{TS}AOWEL|AA{GRACE}|AFInvalid fee amount.|"
    )


def test_fee_paid_unknown_patron(db, ctx):
    assert call(db, ctx(), fee_paid("nobody", "1.00", "BK9|")) == (
        f"38N{TS}AOWEL|AAnobody|BK9|AFInvalid patron barcode.|"
    )


def test_fines_paid_at_the_kiosk_unblock_checkout(db, ctx):
    assert "|AFPatron has fines|" in call(db, ctx(), checkout(GRACE, BARCODE[1]))
    _pay_grace(db, ctx)
    assert field_values(call(db, ctx(), checkout(GRACE, BARCODE[1])), 22, "AH") == [
        "20260324    235900"
    ]


def test_magnetic_media(db, ctx):
    _execute(db, "UPDATE itemtypes SET sip_magnetic = 1 WHERE itemtype = 'BK'")
    assert call(db, ctx(), checkout(ADA, BARCODE[1])).startswith("121NYN")
    # A magnetic item is not resensitized and always raises the alert (Koha).
    assert call(db, ctx(), checkin(BARCODE[7])).startswith("101NYY")
    assert call(db, ctx(), renew(ADA, BARCODE[6])).startswith("301YYN")
