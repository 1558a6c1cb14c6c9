"""Checkout and renewal rules (koha_gateway.ils.checkout) on the demo data, both engines.

Each test runs the ILS functions inside one real transaction and then reads the database back.
"""

from __future__ import annotations

import threading
from datetime import datetime

import pytest

from koha_gateway.ils import checkout as ils_checkout
from koha_gateway.ils.items import find_item
from koha_gateway.ils.patrons import find_patron, patron_state
from koha_gateway.ils.rules import set_rule
from tests.ils.conftest import ADA, BARCODE, EDSGER, GRACE, call

STAFF_CARD = "y76t5r43"


def _checkout(db, context, card, barcode, **kw):
    def work(txn):
        item = find_item(txn, barcode, lock=True)
        patron = find_patron(txn, card, lock=True)
        state = patron_state(txn, patron, context.circ(txn))
        return ils_checkout.checkout(
            txn, context.circ(txn), patron=patron, state=state, item=item, **kw
        )

    return db.run_blocking(work)


def _renew(db, context, card, barcode, **kw):
    def work(txn):
        item = find_item(txn, barcode, lock=True)
        patron = find_patron(txn, card, lock=True)
        state = patron_state(txn, patron, context.circ(txn))
        return ils_checkout.renew(
            txn, context.circ(txn), patron=patron, state=state, item=item, **kw
        )

    return db.run_blocking(work)


def _one(db, sql, params=()):
    return db.run_blocking(lambda txn: txn.one(sql, params))


def _query(db, sql, params=()):
    return db.run_blocking(lambda txn: txn.query(sql, params))


def _execute(db, sql, params=()):
    return db.run_blocking(lambda txn: txn.execute(sql, params))


def _loan(db, barcode):
    return _one(
        db,
        "SELECT i.*, b.cardnumber FROM issues i JOIN items it ON it.itemnumber = i.itemnumber "
        "JOIN borrowers b ON b.borrowernumber = i.borrowernumber WHERE it.barcode = ?",
        (barcode,),
    )


def _clear_fines(db, card):
    _execute(
        db,
        "UPDATE accountlines SET amountoutstanding = 0 WHERE borrowernumber = "
        "(SELECT borrowernumber FROM borrowers WHERE cardnumber = ?)",
        (card,),
    )


# --- successful checkout -------------------------------------------------------------------


def test_checkout_creates_the_loan_with_the_rule_due_date(db, ctx):
    outcome = _checkout(db, ctx(), ADA, BARCODE[1])
    assert outcome.ok and not outcome.renewal and outcome.message is None
    assert outcome.due == "2026-03-24 23:59:00"  # issuelength 14 days, end of day
    loan = _loan(db, BARCODE[1])
    assert loan["cardnumber"] == ADA
    assert loan["date_due"] == "2026-03-24 23:59:00"
    assert loan["issuedate"] == "2026-03-10 14:30:00"
    assert loan["branchcode"] == "WEL"
    item = _one(db, "SELECT * FROM items WHERE barcode = ?", (BARCODE[1],))
    assert item["onloan"] == "2026-03-24"
    assert item["issues"] == 1
    assert item["holdingbranch"] == "WEL"
    assert item["datelastseen"] == "2026-03-10 14:30:00"
    stats = _query(
        db,
        "SELECT type, branch, interface FROM statistics WHERE itemnumber = ?",
        (item["itemnumber"],),
    )
    assert stats == [{"type": "issue", "branch": "WEL", "interface": "sip"}]


def test_due_date_follows_circcontrol(db, ctx):
    db.run_blocking(lambda txn: set_rule(txn, "issuelength", 7, branchcode="KIL"))
    # ItemHomeLibrary (default): the WEL item follows the '*' rule even at KIL.
    assert _checkout(db, ctx("kilsc"), ADA, BARCODE[1]).due == "2026-03-24 23:59:00"
    # PickupLibrary: the KIL rule applies to a checkout made at KIL.
    outcome = _checkout(
        db, ctx("kilsc", sysprefs={"CircControl": "PickupLibrary"}), ADA, BARCODE[2]
    )
    assert outcome.due == "2026-03-17 23:59:00"


def test_checkout_of_own_loan_renews_it(db, ctx):
    outcome = _checkout(db, ctx(), ADA, BARCODE[6])
    assert outcome.ok and outcome.renewal
    assert outcome.message == "Item already checked out to you: renewing item."
    assert outcome.due == "2026-04-07 23:59:00"  # old due 03-24 + renewalperiod 14
    loan = _loan(db, BARCODE[6])
    assert loan["renewals_count"] == 1
    assert loan["lastreneweddate"] == "2026-03-10 14:30:00"


def test_checkout_of_own_loan_at_maximum_renewals_is_refused(db, ctx):
    _execute(
        db,
        "UPDATE issues SET renewals_count = 2 WHERE itemnumber = "
        "(SELECT itemnumber FROM items WHERE barcode = ?)",
        (BARCODE[6],),
    )
    outcome = _checkout(db, ctx(), ADA, BARCODE[6])
    assert not outcome.ok
    assert outcome.message == "Issue failed : NO_MORE_RENEWALS"


def test_checkout_fills_the_patrons_waiting_hold(db, ctx):
    outcome = _checkout(db, ctx(), ADA, BARCODE[8])
    assert outcome.ok
    assert (
        _query(
            db,
            "SELECT * FROM reserves WHERE borrowernumber = (SELECT borrowernumber "
            "FROM borrowers WHERE cardnumber = ?)",
            (ADA,),
        )
        == []
    )
    old = _one(db, "SELECT found, priority, itemnumber FROM old_reserves")
    assert old["found"] == "F" and old["priority"] == 0 and old["itemnumber"] is not None


def test_checkout_fills_the_patrons_title_level_hold(db, ctx):
    _clear_fines(db, GRACE)
    outcome = _checkout(db, ctx(), GRACE, BARCODE[12])
    assert outcome.ok
    assert _query(db, "SELECT reserve_id FROM reserves WHERE found IS NULL") == []
    assert _one(db, "SELECT found FROM old_reserves")["found"] == "F"


def test_no_block_checkout_is_forced_with_the_nb_due_date(db, ctx):
    outcome = _checkout(db, ctx(), EDSGER, BARCODE[2], no_block_due=datetime(2026, 4, 1))
    assert outcome.ok
    assert outcome.due == "2026-04-01 23:59:00"
    assert _loan(db, BARCODE[2])["cardnumber"] == EDSGER


def test_no_block_checkout_puts_a_waiting_hold_back_in_the_queue(db, ctx):
    outcome = _checkout(
        db, ctx(), STAFF_CARD, BARCODE[8], no_block_due=datetime(2026, 3, 20, 12, 0)
    )
    assert outcome.ok and outcome.due == "2026-03-20 12:00:00"
    hold = _one(db, "SELECT found, itemnumber, priority, waitingdate FROM reserves")
    assert hold == {"found": None, "itemnumber": None, "priority": 1, "waitingdate": None}


def test_rental_charge_needs_acknowledgement(db, ctx):
    _execute(db, "UPDATE itemtypes SET rentalcharge = 1.5 WHERE itemtype = 'BK'")
    refused = _checkout(db, ctx(), ADA, BARCODE[1])
    assert not refused.ok
    assert (refused.fee_amount, refused.fee_type) == (1.5, "06")
    assert _loan(db, BARCODE[1]) is None
    done = _checkout(db, ctx(), ADA, BARCODE[1], fee_acknowledged=True)
    assert done.ok and done.fee_amount == 1.5 and done.fee_id
    line = _one(db, "SELECT * FROM accountlines WHERE accountlines_id = ?", (done.fee_id,))
    assert line["debit_type_code"] == "RENT"
    assert line["amount"] == 1.5 and line["amountoutstanding"] == 1.5
    assert line["issue_id"] == _loan(db, BARCODE[1])["issue_id"]


# --- refusals, in Koha's order -------------------------------------------------------------


@pytest.mark.parametrize(
    ("card", "message"),
    [
        (GRACE, "Patron has fines"),
        ("23529000000003", "Patron expired on 2026-02-08"),
        (EDSGER, "Patron debarred"),
    ],
)
def test_blocked_patrons_are_refused(db, ctx, card, message):
    outcome = _checkout(db, ctx(), card, BARCODE[1])
    assert (outcome.ok, outcome.message) == (False, message)
    assert _loan(db, BARCODE[1]) is None


def test_expiry_date_uses_the_dateformat_preference(db, ctx):
    outcome = _checkout(db, ctx(sysprefs={"dateformat": "metric"}), "23529000000003", BARCODE[1])
    assert outcome.message == "Patron expired on 08/02/2026"


def test_show_outstanding_amount_adds_the_debt(db, ctx):
    outcome = _checkout(db, ctx(show_outstanding_amount=True), GRACE, BARCODE[1])
    assert outcome.message == "Patron has fines - You owe $12.00."


def test_item_on_loan_to_another_patron(db, ctx):
    _clear_fines(db, GRACE)
    outcome = _checkout(db, ctx(), GRACE, BARCODE[6])
    assert (outcome.ok, outcome.message) == (False, "Item checked out to another patron")
    assert _loan(db, BARCODE[6])["cardnumber"] == ADA


def test_item_on_loan_moves_with_allow_items_on_loan_checkout(db, ctx):
    _clear_fines(db, GRACE)
    context = ctx(sysprefs={"AllowItemsOnLoanCheckoutSIP": "1", "AllFinesNeedOverride": "0"})
    outcome = _checkout(db, context, GRACE, BARCODE[6])
    assert outcome.ok
    assert _loan(db, BARCODE[6])["cardnumber"] == GRACE
    assert _one(db, "SELECT COUNT(*) AS n FROM old_issues")["n"] == 1


def test_waiting_hold_for_another_patron(db, ctx):
    _clear_fines(db, GRACE)
    outcome = _checkout(db, ctx(), GRACE, BARCODE[8])
    assert (outcome.ok, outcome.message) == (False, "Item is on hold for another patron.")


def test_pending_hold_for_another_patron(db, ctx):
    outcome = _checkout(db, ctx(), ADA, BARCODE[12])
    assert (outcome.ok, outcome.message) == (
        False,
        "Item is reserved for another patron upon return.",
    )
    allowed = _checkout(db, ctx(sysprefs={"AllowItemsOnHoldCheckoutSIP": "1"}), ADA, BARCODE[12])
    assert allowed.ok


def test_not_for_loan(db, ctx):
    outcome = _checkout(db, ctx(), ADA, BARCODE[11])
    assert (outcome.ok, outcome.message) == (False, "Issue failed : NOT_FOR_LOAN")
    _execute(db, "UPDATE items SET notforloan = 0 WHERE barcode = ?", (BARCODE[11],))
    # The item type (REF) is not for loan either.
    assert _checkout(db, ctx(), ADA, BARCODE[11]).message == "Issue failed : NOT_FOR_LOAN"


def test_too_many(db, ctx):
    db.run_blocking(lambda txn: set_rule(txn, "maxissueqty", 2))
    outcome = _checkout(db, ctx(), ADA, BARCODE[1])
    assert (outcome.ok, outcome.message) == (False, "Issue failed : TOO_MANY")


def test_blocked_item_types(db, ctx):
    outcome = _checkout(db, ctx(blocked_item_types=frozenset({"CR", "BK"})), ADA, BARCODE[1])
    assert outcome.message == "Item type cannot be checked out at this checkout location"


def test_all_fines_need_override(db, ctx):
    _execute(
        db,
        "INSERT INTO accountlines (borrowernumber, date, amount, amountoutstanding, "
        "debit_type_code, interface) SELECT borrowernumber, '2026-03-01 10:00:00', 2, 2, "
        "'MANUAL', 'intranet' "
        "FROM borrowers WHERE cardnumber = ?",
        (ADA,),
    )
    outcome = _checkout(db, ctx(), ADA, BARCODE[1])
    assert (outcome.ok, outcome.message) == (False, "Outstanding Fines block issue")
    override = ctx(sysprefs={"AllowFineOverride": "1"})
    assert _checkout(db, override, ADA, BARCODE[1]).message == "Outstanding Fines block issue"
    assert _checkout(db, ctx(sysprefs={"AllFinesNeedOverride": "0"}), ADA, BARCODE[1]).ok


def test_lost_and_withdrawn_items(db, ctx):
    assert _checkout(db, ctx(), ADA, BARCODE[10]).message == "Item cannot be issued: ITEM_LOST"
    _execute(db, "UPDATE items SET withdrawn = 1 WHERE barcode = ?", (BARCODE[2],))
    assert _checkout(db, ctx(), ADA, BARCODE[2]).message == "Issue failed : WTHDRAWN"


def test_previous_checkout(db, ctx):
    _execute(
        db,
        "INSERT INTO old_issues (issue_id, borrowernumber, itemnumber, date_due, issuedate, "
        "returndate) SELECT 900, b.borrowernumber, i.itemnumber, '2025-01-01 23:59:00', "
        "'2024-12-18 10:00:00', '2024-12-30 10:00:00' FROM borrowers b, items i "
        "WHERE b.cardnumber = ? AND i.barcode = ?",
        (ADA, BARCODE[1]),
    )
    context = ctx(sysprefs={"CheckPrevCheckout": "hardyes"})
    allowed = _checkout(db, context, ADA, BARCODE[1])
    assert allowed.ok and allowed.message == "This item was previously checked out by you"
    _execute(db, "DELETE FROM issues")
    blocked = _checkout(
        db,
        ctx(prevcheckout_block_checkout=True, sysprefs={"CheckPrevCheckout": "hardyes"}),
        ADA,
        BARCODE[1],
    )
    assert (blocked.ok, blocked.message) == (False, "This item was previously checked out by you")


def test_additional_materials(db, ctx):
    _execute(db, "UPDATE items SET materials = '2 CDs' WHERE barcode = ?", (BARCODE[1],))
    context = ctx(sysprefs={"CircConfirmItemParts": "1"})
    refused = _checkout(db, context, ADA, BARCODE[1])
    assert refused.message == "Item must be checked out at a circulation desk"
    context = ctx(allow_additional_materials_checkout=True, sysprefs={"CircConfirmItemParts": "1"})
    allowed = _checkout(db, context, ADA, BARCODE[1])
    assert allowed.ok and allowed.message == "Item has additional materials: 2 CDs"


# --- concurrency -----------------------------------------------------------------------------


def test_two_kiosks_checking_out_one_item_give_one_loan(db, ctx):
    context = ctx()
    barrier = threading.Barrier(2)
    results: list[str] = []

    def kiosk(card):
        barrier.wait()
        results.append(
            call(db, context, f"11YN20260310    143000{' ' * 18}AOWEL|AA{card}|AB{BARCODE[3]}|AC|")
        )

    threads = [threading.Thread(target=kiosk, args=(card,)) for card in (ADA, STAFF_CARD)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(results) == 2
    assert sorted(text[:3] for text in results) == ["120", "121"]
    refused = next(text for text in results if text.startswith("120"))
    assert "AFItem checked out to another patron|" in refused
    assert (
        _one(
            db,
            "SELECT COUNT(*) AS n FROM issues WHERE itemnumber = (SELECT itemnumber "
            "FROM items WHERE barcode = ?)",
            (BARCODE[3],),
        )["n"]
        == 1
    )


def test_unique_loan_constraint_is_answered_not_raised(db, ctx):
    """The UNIQUE key on issues.itemnumber refuses a second loan; the transaction goes on."""

    context = ctx()

    def work(txn):
        ada = find_patron(txn, ADA)
        item = find_item(txn, BARCODE[6])
        issue = ils_checkout._insert_issue(
            txn, context.circ(txn), patron=ada, item=item, due="2026-03-24 23:59:00"
        )
        return issue, txn.scalar("SELECT COUNT(*) AS n FROM issues")

    assert db.run_blocking(work) == (None, 3)


def test_a_loan_committed_after_the_item_was_read_is_refused_and_nothing_is_written(db, ctx):
    """The item's read said "on the shelf" (a loan committed meanwhile by a writer that does
    not lock the item first): the UNIQUE key refuses the loan, the checkout writes nothing --
    without a savepoint on SQLite and MariaDB -- and the transaction goes on."""
    context = ctx()

    def work(txn):
        item = find_item(txn, BARCODE[6], lock=True)  # on loan to Ada
        item["loan_issue_id"] = None  # as read before that loan was committed
        patron = find_patron(txn, STAFF_CARD, lock=True)
        state = patron_state(txn, patron, context.circ(txn))
        counts = (
            "SELECT (SELECT COUNT(*) FROM statistics) AS s, (SELECT COUNT(*) FROM action_logs) "
            "AS l, (SELECT COUNT(*) FROM issues) AS i, (SELECT COUNT(*) FROM zebraqueue) AS z"
        )
        before = dict(txn.one(counts))
        item_before = dict(txn.one("SELECT * FROM items WHERE barcode = ?", (BARCODE[6],)))
        outcome = ils_checkout.checkout(
            txn, context.circ(txn), patron=patron, state=state, item=item
        )
        after = dict(txn.one(counts))
        item_after = dict(txn.one("SELECT * FROM items WHERE barcode = ?", (BARCODE[6],)))
        return outcome, before == after, item_before == item_after

    outcome, same_counts, same_item = db.run_blocking(work)
    assert (outcome.ok, outcome.message) == (False, "Item checked out to another patron")
    assert same_counts and same_item
    assert _loan(db, BARCODE[6])["cardnumber"] == ADA


# --- renewals --------------------------------------------------------------------------------


def test_renew_extends_from_the_later_of_today_and_the_due_date(db, ctx):
    current = _renew(db, ctx(), ADA, BARCODE[6])
    assert current.ok and current.due == "2026-04-07 23:59:00"
    overdue = _renew(db, ctx(), ADA, BARCODE[7])
    assert overdue.ok and overdue.due == "2026-03-24 23:59:00"
    item = _one(db, "SELECT onloan, renewals FROM items WHERE barcode = ?", (BARCODE[7],))
    assert item == {"onloan": "2026-03-24", "renewals": 1}
    assert _one(db, "SELECT COUNT(*) AS n FROM statistics WHERE type = 'renew'")["n"] == 2


def test_renewal_limit(db, ctx):
    assert _renew(db, ctx(), ADA, BARCODE[6]).ok
    assert _renew(db, ctx(), ADA, BARCODE[6]).ok
    third = _renew(db, ctx(), ADA, BARCODE[6])
    assert (third.ok, third.message) == (False, "Item has reached maximum renewals")
    assert _loan(db, BARCODE[6])["renewals_count"] == 2


def test_holds_block_renewal(db, ctx):
    _execute(
        db,
        "INSERT INTO reserves (borrowernumber, reservedate, biblionumber, branchcode, priority) "
        "SELECT b.borrowernumber, '2026-03-09', i.biblionumber, 'WEL', 1 FROM borrowers b, "
        "items i WHERE b.cardnumber = ? AND i.barcode = ?",
        (GRACE, BARCODE[6]),
    )
    outcome = _renew(db, ctx(), ADA, BARCODE[6])
    assert (outcome.ok, outcome.message) == (False, "Item unavailable due to outstanding holds")


def test_renew_refusals(db, ctx):
    assert _renew(db, ctx(), ADA, BARCODE[9]).message == "Item not checked out to Ada Lovelace"
    assert _renew(db, ctx(), ADA, "nonexistent").message == "Item not checked out to Ada Lovelace"
    policy_off = _renew(db, ctx(), ADA, BARCODE[6], renewals_allowed_by_policy=False)
    assert policy_off.message == "Renewals not allowed."
    _execute(db, "UPDATE borrowers SET dateexpiry = '2026-01-01' WHERE cardnumber = ?", (ADA,))
    assert _renew(db, ctx(), ADA, BARCODE[6]).message == "Renewals not allowed."


def test_norenewalbefore(db, ctx):
    db.run_blocking(lambda txn: set_rule(txn, "norenewalbefore", 3))
    outcome = _renew(db, ctx(), ADA, BARCODE[6])
    assert (outcome.ok, outcome.message) == (False, "too_soon")
    assert _renew(db, ctx(), ADA, BARCODE[7]).ok


def test_overdues_block_circulation(db, ctx):
    outcome = _checkout(db, ctx(sysprefs={"OverduesBlockCirc": "block"}), ADA, BARCODE[1])
    assert (outcome.ok, outcome.message) == (False, "Patron blocked")


def test_concurrent_checkouts_and_checkins_of_one_item_never_deadlock(db, ctx):
    context = ctx()
    out = f"11YN20260310    143000{' ' * 18}AOWEL|AA{ADA}|AB{BARCODE[3]}|AC|"
    back = f"09N20260310    143000{' ' * 18}APWEL|AOWEL|AB{BARCODE[3]}|AC|"
    errors: list[BaseException] = []
    answers: list[str] = []

    def kiosk(raw):
        try:
            for _ in range(15):
                answers.append(call(db, context, raw))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=kiosk, args=(raw,)) for raw in (out, back)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert len(answers) == 30
    assert all(text[:2] in ("12", "10") for text in answers)
    loans = _one(
        db,
        "SELECT COUNT(*) AS n FROM issues WHERE itemnumber = (SELECT itemnumber "
        "FROM items WHERE barcode = ?)",
        (BARCODE[3],),
    )["n"]
    assert loans in (0, 1)


@pytest.mark.parametrize(
    ("rules", "denied"),
    [
        ("damaged: [1]", True),
        ("damaged: [2, 3]", False),
        ("itype: BK", True),
        ("withdrawn: [1]\nitype: [DVD]", False),
        ("ccode: [NULL]", True),
        ("not yaml", False),
        ("", False),
    ],
)
def test_items_denied_renewal_rules(rules, denied):
    item = {"damaged": 1, "itype": "BK", "withdrawn": 0, "ccode": None}
    assert ils_checkout.items_denied_renewal(item, rules) is denied


def test_items_denied_renewal_in_renew_all(db, ctx):
    _execute(db, "UPDATE items SET damaged = 1 WHERE barcode = ?", (BARCODE[6],))
    context = ctx(sysprefs={"ItemsDeniedRenewal": "damaged: [1]"})
    refused = _renew(db, context, ADA, BARCODE[6])
    assert (refused.ok, refused.message) == (False, "Item renewal is not allowed")
    answer = call(db, context, f"6520260310    143000AOWEL|AA{ADA}|")
    assert answer.endswith(f"AOWEL|BM{BARCODE[7]}|BN{BARCODE[6]}|")
    assert "HASH(" not in answer
