"""Patrons: lookup, standing (koha-sip-and-ldap.md 5.1), restrictions, counts and lists."""

from __future__ import annotations

from datetime import timedelta

import pytest

from koha_gateway.db import koha
from koha_gateway.demo import RESTRICTION_COMMENT
from koha_gateway.ils import patrons
from koha_gateway.ils.context import CircContext
from koha_gateway.ils.sysprefs import Sysprefs
from tests.ils.conftest import ADA, ALAN, BARCODE, EDSGER, GRACE, NOW

GOOD = " " * 14


def state_of(db, context, identifier):
    def run(txn):
        patron = patrons.find_patron(txn, identifier)
        return patrons.patron_state(txn, patron, context.circ(txn))

    return db.run_blocking(run)


def find(db, identifier, **kw):
    return db.run_blocking(lambda txn: patrons.find_patron(txn, identifier, **kw))


def number(db, identifier):
    return find(db, identifier)["borrowernumber"]


# -- lookup --------------------------------------------------------------------------------


def test_find_by_cardnumber_and_by_userid(db):
    by_card = find(db, ADA)
    assert by_card["surname"] == "Lovelace"
    assert find(db, "ada")["borrowernumber"] == by_card["borrowernumber"]
    assert find(db, "joe")["cardnumber"] == "y76t5r43"
    assert find(db, "y76t5r43")["userid"] == "joe"


def category_charges(db):
    """Give the database ``categories.noissuescharge``: on Koha before 24.05 (the MariaDB
    fixture) the column is added as Koha 24.05 does, and the demo's 5.00 set."""

    def add(txn):
        if "noissuescharge" not in koha.columns(txn, "categories"):
            txn.execute("ALTER TABLE categories ADD COLUMN noissuescharge DECIMAL(28,6)")
            txn.execute("UPDATE categories SET noissuescharge = 5")
        koha.remember(txn.engine, koha.detect(txn))

    db.run_blocking(add)


def test_find_adds_category_columns(db):
    ada = find(db, ADA)
    assert ada["categorycode"] == "PT"
    # Only where the column exists (Koha 24.05 and later, and the gateway's own schema).
    has_charge = db.run_blocking(koha.schema_of).has_category_noissuescharge
    assert ada["category_noissuescharge"] == (5.0 if has_charge else None)
    category_charges(db)
    assert find(db, ADA)["category_noissuescharge"] == 5.0
    assert ada["category_type"] == "A"
    assert find(db, "joe")["category_type"] == "S"


def test_find_ignores_case_and_surrounding_whitespace(db):
    assert find(db, "  " + ADA + " ")["surname"] == "Lovelace"
    assert find(db, "Y76T5R43")["userid"] == "joe"
    assert find(db, "ADA")["cardnumber"] == ADA


@pytest.mark.parametrize("identifier", [None, "", "   ", "23529000000099", "nobody"])
def test_unknown_patron_is_none(db, identifier):
    assert find(db, identifier) is None


def test_find_with_lock(db):
    assert find(db, GRACE, lock=True)["surname"] == "Hopper"


def test_patron_by_number(db):
    grace = find(db, GRACE)
    again = db.run_blocking(lambda txn: patrons.patron_by_number(txn, grace["borrowernumber"]))
    assert again == grace
    assert db.run_blocking(lambda txn: patrons.patron_by_number(txn, 999999)) is None


# -- standing of every demo patron ---------------------------------------------------------


def test_ada_is_in_good_standing(db, ctx):
    state = state_of(db, ctx(), ADA)
    assert state.status_string == GOOD
    assert (state.charge_ok, state.renew_ok, state.recall_ok, state.hold_ok) == (True,) * 4
    assert state.inet_ok and not state.debarred and not state.expired
    assert state.fines == 0.0 and state.fee_limit == 5.0 and not state.fine_blocked
    assert state.overdue_count == 1
    assert state.screen_message == "Greetings from Koha. -- Patron has overdues"


def test_grace_is_blocked_by_fines(db, ctx):
    state = state_of(db, ctx(), GRACE)
    assert state.fines == 12.0
    assert state.fee_limit == 5.0
    assert state.fine_blocked
    assert state.status_string == "YYYY      YY  "
    assert not state.inet_ok
    assert "Patron blocked by fines" in state.screen_message


def test_alan_is_expired(db, ctx):
    state = state_of(db, ctx(), ALAN)
    assert state.expired
    assert state.dateexpiry == "2026-02-08"
    assert state.status_string == "YYYY          "
    assert not state.inet_ok
    assert state.screen_message == (
        "Greetings from Koha. -- Your account has expired as of 2026-02-08"
    )


def test_alan_expiry_uses_dateformat(db, ctx):
    state = state_of(db, ctx(sysprefs={"dateformat": "metric"}), ALAN)
    assert "expired as of 08/02/2026" in state.screen_message


def test_edsger_is_restricted(db, ctx):
    state = state_of(db, ctx(), EDSGER)
    assert state.debarred
    assert state.debarred_comment == RESTRICTION_COMMENT
    assert state.status_string == "YYYY          "
    assert not state.inet_ok
    assert state.screen_message == f"Greetings from Koha. -- {RESTRICTION_COMMENT}"


def test_staff_are_in_good_standing(db, ctx):
    for userid in ("joe", "kilsc", "nocirc"):
        assert state_of(db, ctx(), userid).status_string == GOOD


# -- rules one by one ----------------------------------------------------------------------


def test_expiry_boundary(db, ctx):
    db.run_blocking(
        lambda txn: txn.execute(
            "UPDATE borrowers SET dateexpiry = ? WHERE cardnumber = ?", ("2026-03-10", ADA)
        )
    )
    assert not state_of(db, ctx(), ADA).expired  # expires at the end of its last day
    db.run_blocking(
        lambda txn: txn.execute(
            "UPDATE borrowers SET dateexpiry = ? WHERE cardnumber = ?", ("2026-03-09", ADA)
        )
    )
    assert state_of(db, ctx(), ADA).expired


@pytest.mark.parametrize(("days", "warned"), [(0, False), (10, False), (30, True)])
def test_card_will_expire_soon(db, ctx, days, warned):
    db.run_blocking(
        lambda txn: txn.execute(
            "UPDATE borrowers SET dateexpiry = ? WHERE cardnumber = ?", ("2026-03-25", ADA)
        )
    )
    state = state_of(db, ctx(sysprefs={"NotifyBorrowerDeparture": str(days)}), ADA)
    assert state.expires_soon is warned
    assert ("Your card will expire on 2026-03-25" in state.screen_message) is warned
    assert state.status_string == GOOD


def test_fee_limit_from_category_then_syspref(db, ctx):
    category_charges(db)

    def category(value):
        db.run_blocking(
            lambda txn: txn.execute(
                "UPDATE categories SET noissuescharge = ? WHERE categorycode = 'PT'", (value,)
            )
        )

    category(20)
    state = state_of(db, ctx(), GRACE)
    assert (state.fee_limit, state.fine_blocked) == (20.0, False)
    category(0)  # Koha: a zero category limit falls back to the preference
    state = state_of(db, ctx(sysprefs={"noissuescharge": "15"}), GRACE)
    assert (state.fee_limit, state.fine_blocked) == (15.0, False)
    state = state_of(db, ctx(sysprefs={"noissuescharge": "11.99"}), GRACE)
    assert state.fine_blocked
    category(None)
    state = state_of(db, ctx(sysprefs={"noissuescharge": ""}), GRACE)
    assert (state.fee_limit, state.fine_blocked) == (5.0, False)  # no limit; CC shows 5


def test_fines_equal_to_the_limit_do_not_block(db, ctx):
    category_charges(db)
    db.run_blocking(
        lambda txn: txn.execute(
            "UPDATE categories SET noissuescharge = 12 WHERE categorycode = 'PT'"
        )
    )
    assert not state_of(db, ctx(), GRACE).fine_blocked


def test_unapplied_credit_reduces_the_balance(db, ctx):
    grace = number(db, GRACE)
    db.run_blocking(
        lambda txn: txn.insert(
            "INSERT INTO accountlines (borrowernumber, date, amount, amountoutstanding, "
            "credit_type_code, interface) VALUES (?, ?, -8, -8, 'PAYMENT', 'intranet')",
            (grace, "2026-03-01 10:00:00"),
            pk="accountlines_id",
        )
    )
    assert db.run_blocking(patrons.outstanding, grace) == 4.0
    state = state_of(db, ctx(), GRACE)
    assert state.fines == 4.0 and not state.fine_blocked and state.status_string == GOOD


@pytest.mark.parametrize(
    ("setting", "charge_ok"), [("noblock", True), ("confirmation", False), ("block", False)]
)
def test_overdues_block_circulation(db, ctx, setting, charge_ok):
    state = state_of(db, ctx(sysprefs={"OverduesBlockCirc": setting}), ADA)
    assert state.charge_ok is charge_ok
    assert state.renew_ok and state.hold_ok and state.recall_ok
    assert state.status_string[0] == (" " if charge_ok else "Y")
    assert state.status_string[6] == " "  # only with overdues_block_checkout


def test_overdues_block_checkout_sets_position_6(db, ctx):
    context = ctx(overdues_block_checkout=True, sysprefs={"OverduesBlockCirc": "block"})
    assert state_of(db, context, ADA).status_string == "Y     Y       "
    context = ctx(overdues_block_checkout=True)  # noblock: nothing to report
    assert state_of(db, context, ADA).status_string == GOOD


def test_too_many_items_lost(db, ctx):
    db.run_blocking(
        lambda txn: txn.execute(
            "UPDATE items SET itemlost = 2 WHERE barcode IN (?, ?)", (BARCODE[6], BARCODE[7])
        )
    )

    def position9(**options):
        return state_of(db, ctx(**options), ADA).status_string[9]

    assert position9() == " "
    assert position9(lost_block_checkout=0) == " "
    assert position9(lost_block_checkout=1) == "Y"
    assert position9(lost_block_checkout=2) == "Y"
    assert position9(lost_block_checkout=3) == " "
    assert position9(lost_block_checkout=2, lost_block_checkout_value=3) == " "
    db.run_blocking(
        lambda txn: txn.execute("UPDATE items SET itemlost = 1 WHERE barcode = ?", (BARCODE[7],))
    )
    assert position9(lost_block_checkout=2, lost_block_checkout_value=2) == " "
    assert position9(lost_block_checkout=1, lost_block_checkout_value=2) == "Y"


@pytest.mark.parametrize(
    ("column", "message"),
    [
        ("lost", "Borrower's card reported lost."),
        ("gonenoaddress", "Borrower has no valid address."),
    ],
)
def test_lost_card_and_gone_no_address_deny_everything(db, ctx, column, message):
    db.run_blocking(
        lambda txn: txn.execute(f"UPDATE borrowers SET {column} = 1 WHERE cardnumber = ?", (ADA,))
    )
    state = state_of(db, ctx(), ADA)
    assert state.card_lost
    assert state.status_string == "YYYYY         "
    assert not state.inet_ok
    assert state.screen_message.endswith(" -- " + message)


def test_restriction_and_internet_access(db, ctx):
    assert not state_of(db, ctx(), EDSGER).inet_ok
    relaxed = ctx(patron_restriction_blocks_inet=False)
    state = state_of(db, relaxed, EDSGER)
    assert state.inet_ok
    assert not state.charge_ok  # the restriction still blocks circulation
    assert not state_of(db, relaxed, ALAN).inet_ok  # expiry still blocks
    assert not state_of(db, relaxed, GRACE).inet_ok  # fines still block


def test_opac_note_follows_the_greeting(db, ctx):
    db.run_blocking(
        lambda txn: txn.execute(
            "UPDATE borrowers SET opacnote = 'Please update your address.' WHERE cardnumber = ?",
            (ADA,),
        )
    )
    assert state_of(db, ctx(), ADA).screen_message == (
        "Greetings from Koha. Please update your address. -- Patron has overdues"
    )


# -- restrictions ------------------------------------------------------------------------


def test_expired_restrictions_do_not_count(db, ctx):
    ada = number(db, ADA)

    def restrict(txn, expiration):
        txn.insert(
            "INSERT INTO borrower_debarments (borrowernumber, expiration, type, comment) "
            "VALUES (?, ?, 'MANUAL', 'Late returns')",
            (ada, expiration),
            pk="borrower_debarment_id",
        )
        patrons.update_debarment_flags(txn, ada, "2026-03-10")

    db.run_blocking(restrict, "2026-03-10")  # ends today: no longer in force
    assert not state_of(db, ctx(), ADA).debarred
    # Koha's UpdateBorrowerDebarmentFlags counts only the restrictions in force.
    assert (find(db, ADA)["debarred"], find(db, ADA)["debarredcomment"]) == (None, None)
    db.run_blocking(restrict, "2026-03-11")
    state = state_of(db, ctx(), ADA)
    assert state.debarred and state.debarred_comment == "Late returns"
    assert str(find(db, ADA)["debarred"])[:10] == "2026-03-11"
    assert find(db, ADA)["debarredcomment"] == "Late returns"


def test_legacy_debarred_column_alone_counts(db, ctx):
    db.run_blocking(
        lambda txn: txn.execute(
            "UPDATE borrowers SET debarred = '2026-04-01', debarredcomment = 'Old' "
            "WHERE cardnumber = ?",
            (ADA,),
        )
    )
    state = state_of(db, ctx(), ADA)
    assert state.debarred and state.debarred_comment == "Old"
    db.run_blocking(
        lambda txn: txn.execute(
            "UPDATE borrowers SET debarred = '2026-03-10' WHERE cardnumber = ?", (ADA,)
        )
    )
    assert not state_of(db, ctx(), ADA).debarred


def test_sip_restriction_is_stored_and_lifted(db, ctx):
    ada = number(db, ADA)
    circ = ctx()
    new_id = db.run_blocking(
        lambda txn: patrons.add_sip_restriction(
            txn, circ.circ(txn), ada, "Card retained by the self-check"
        )
    )
    assert new_id
    row = find(db, ADA)
    assert row["debarred"] == "9999-12-31"
    assert row["debarredcomment"] == "Card retained by the self-check"
    stored = db.run_blocking(
        lambda txn: txn.one(
            "SELECT type, comment, expiration, created, manager_id FROM borrower_debarments "
            "WHERE borrower_debarment_id = ?",
            (new_id,),
        )
    )
    assert stored == {
        "type": "MANUAL",
        "comment": "Card retained by the self-check",
        "expiration": None,
        "created": "2026-03-10 14:30:00",
        "manager_id": number(db, "y76t5r43"),
    }
    state = state_of(db, ctx(), ADA)
    assert state.debarred and state.status_string == "YYYY          "
    lift = lambda txn: patrons.lift_sip_restrictions(txn, circ.circ(txn), ada)  # noqa: E731
    assert db.run_blocking(lift) == 1
    assert find(db, ADA)["debarred"] is None
    assert state_of(db, ctx(), ADA).status_string == GOOD
    assert db.run_blocking(lift) == 0


def test_lifting_keeps_other_restrictions(db, ctx):
    edsger = number(db, EDSGER)
    circ = ctx()
    db.run_blocking(lambda txn: patrons.add_sip_restriction(txn, circ.circ(txn), edsger, ""))
    row = find(db, EDSGER)
    assert row["debarredcomment"] == RESTRICTION_COMMENT + "\nBlocked by self-check"
    # The librarian's MANUAL restriction (another manager) stays.
    assert (
        db.run_blocking(lambda txn: patrons.lift_sip_restrictions(txn, circ.circ(txn), edsger)) == 1
    )
    row = find(db, EDSGER)
    assert row["debarred"] == "9999-12-31"
    assert row["debarredcomment"] == RESTRICTION_COMMENT
    assert state_of(db, ctx(), EDSGER).debarred


# -- counts and lists --------------------------------------------------------------------


def test_current_and_overdue_loans(db):
    ada = number(db, ADA)
    loans = db.run_blocking(patrons.current_loans, ada)
    assert [loan["barcode"] for loan in loans] == [BARCODE[7], BARCODE[6]]
    assert loans[0]["date_due"] == "2026-02-28 23:59:00"
    assert loans[1]["date_due"] == "2026-03-24 23:59:00"
    assert loans[1]["title"] == "A Discipline of Programming"
    overdue = db.run_blocking(patrons.overdue_loans, ada, "2026-03-10 14:30:00")
    assert [loan["barcode"] for loan in overdue] == [BARCODE[7]]
    assert db.run_blocking(patrons.current_loans, number(db, ALAN)) == []


def test_waiting_and_unavailable_holds(db):
    ada, grace = number(db, ADA), number(db, GRACE)
    waiting = db.run_blocking(patrons.waiting_holds, ada)
    assert [(h["barcode"], h["found"], h["branchcode"]) for h in waiting] == [
        (BARCODE[8], "W", "WEL")
    ]
    assert waiting[0]["expirationdate"] == "2026-03-16"
    assert db.run_blocking(patrons.unavailable_holds, ada) == []
    pending = db.run_blocking(patrons.unavailable_holds, grace)
    assert len(pending) == 1
    assert pending[0]["itemnumber"] is None  # title-level hold
    assert pending[0]["barcode"] == BARCODE[12]  # the title's first item
    assert db.run_blocking(patrons.waiting_holds, grace) == []


def test_fine_lines_oldest_first(db):
    lines = db.run_blocking(patrons.fine_lines, number(db, GRACE))
    assert [(line["amountoutstanding"], line["debit_type_code"]) for line in lines] == [
        (2.5, "OVERDUE"),
        (8.0, "LOST"),
        (1.5, "NEW_CARD"),
    ]
    assert db.run_blocking(patrons.fine_lines, number(db, ADA)) == []


def test_patron_attributes(db):
    ada = number(db, ADA)

    def setup(txn):
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
    assert db.run_blocking(patrons.patron_attributes, ada, "SCHOOL") == ["Somerville", "Girton"]
    assert db.run_blocking(patrons.patron_attributes, ada, "OTHER") == []


@pytest.mark.parametrize(("triggers", "written"), [("", False), ("login,connection", True)])
def test_track_activity(db, ctx, triggers, written):
    context = ctx(sysprefs={"TrackLastPatronActivityTriggers": triggers})

    def run(txn):
        return patrons.update_lastseen(
            txn, context.circ(txn), patrons.find_patron(txn, ADA), "connection"
        )

    assert db.run_blocking(run) is written
    assert find(db, ADA)["lastseen"] == ("2026-03-10 14:30:00" if written else None)


@pytest.mark.parametrize(
    ("activity", "written"),
    [("connection", True), ("check_out", True), ("check_in", False), ("patron_status", False)],
)
def test_lastseen_with_the_koha_23_05_preference(db, activity, written):
    """A Koha database before 23.11 has TrackLastPatronActivity and no ...Triggers: SIP
    patron information writes lastseen every time, a checkout once a day (track_login_daily).
    """
    prefs = Sysprefs({"TrackLastPatronActivity": "1"})
    context = CircContext(branch="WEL", now=NOW, sysprefs=prefs)
    later = context.replace(now=NOW + timedelta(hours=1))

    def run(txn, circ):
        return patrons.update_lastseen(txn, circ, patrons.find_patron(txn, ADA), activity)

    assert db.run_blocking(run, context) is written
    assert find(db, ADA)["lastseen"] == ("2026-03-10 14:30:00" if written else None)
    again = db.run_blocking(run, later)
    assert again is (activity == "connection")


def test_lastseen_triggers_once_a_day(db):
    prefs = Sysprefs({"TrackLastPatronActivityTriggers": "check_out,check_in"})
    context = CircContext(branch="WEL", now=NOW, sysprefs=prefs)

    def run(txn, circ, activity):
        return patrons.update_lastseen(txn, circ, patrons.find_patron(txn, ADA), activity)

    assert db.run_blocking(run, context, "connection") is False
    assert db.run_blocking(run, context, "check_in") is True
    assert db.run_blocking(run, context.replace(now=NOW + timedelta(hours=2)), "check_out") is False
    assert db.run_blocking(run, context.replace(now=NOW + timedelta(days=1)), "check_out") is True
    assert str(find(db, ADA)["lastseen"]) == "2026-03-11 14:30:00"
