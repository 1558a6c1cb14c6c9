"""Checkin rules (koha_gateway.ils.checkin) on the demo data, both engines; sort bin rules."""

from __future__ import annotations

from datetime import datetime

import pytest

from koha_gateway.ils import checkin as ils_checkin
from koha_gateway.ils.items import find_item
from koha_gateway.ils.rules import set_rule
from tests.ils.conftest import ADA, BARCODE, GRACE


def _checkin(db, context, barcode, *, branch=None, **kw):
    def work(txn):
        item = find_item(txn, barcode, lock=True)
        return ils_checkin.checkin(
            txn, context.circ(txn), item=item, branch=branch or context.branch, **kw
        )

    return db.run_blocking(work)


def _one(db, sql, params=()):
    return db.run_blocking(lambda txn: txn.one(sql, params))


def _query(db, sql, params=()):
    return db.run_blocking(lambda txn: txn.query(sql, params))


def _execute(db, sql, params=()):
    return db.run_blocking(lambda txn: txn.execute(sql, params))


GRACE_HOLD = (
    " FROM reserves WHERE borrowernumber = "
    "(SELECT borrowernumber FROM borrowers WHERE cardnumber = '23529000000002')"
)


def _overdue_lines(db):
    return _query(
        db,
        "SELECT amount, amountoutstanding, status, description, debit_type_code, issue_id "
        "FROM accountlines WHERE debit_type_code = 'OVERDUE' AND borrowernumber = "
        "(SELECT borrowernumber FROM borrowers WHERE cardnumber = ?)",
        (ADA,),
    )


# --- the return and the fine -----------------------------------------------------------------


def test_overdue_return_charges_the_fine(db, ctx):
    issue_id = _one(
        db,
        "SELECT issue_id FROM issues WHERE itemnumber = (SELECT itemnumber FROM items "
        "WHERE barcode = ?)",
        (BARCODE[7],),
    )["issue_id"]
    outcome = _checkin(db, ctx(), BARCODE[7])
    assert outcome.ok and outcome.returned and outcome.message is None
    assert outcome.fine == 2.5  # 10 days x 0.25
    assert outcome.patron["cardnumber"] == ADA
    assert _overdue_lines(db) == [
        {
            "amount": 2.5,
            "amountoutstanding": 2.5,
            "status": "RETURNED",
            "description": "Hackers: Heroes of the Computer Revolution 2026-02-28 23:59",
            "debit_type_code": "OVERDUE",
            "issue_id": issue_id,
        }
    ]
    old = _one(db, "SELECT * FROM old_issues WHERE issue_id = ?", (issue_id,))
    assert old["returndate"] == "2026-03-10 14:30:00"
    assert old["date_due"] == "2026-02-28 23:59:00"
    assert _one(db, "SELECT * FROM issues WHERE issue_id = ?", (issue_id,)) is None
    item = _one(db, "SELECT onloan, holdingbranch FROM items WHERE barcode = ?", (BARCODE[7],))
    assert item == {"onloan": None, "holdingbranch": "WEL"}
    assert _one(db, "SELECT type FROM statistics WHERE type = 'return'") == {"type": "return"}


def test_return_on_time_charges_nothing(db, ctx):
    outcome = _checkin(db, ctx(), BARCODE[6])
    assert outcome.ok and outcome.fine is None
    assert _overdue_lines(db) == []


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        ({"overduefinescap": "1.00"}, 1.0),
        ({"chargeperiod": "7"}, 0.25),
        ({"chargeperiod": "3", "fine": "1"}, 3.0),
        ({"fine": "0"}, None),
        ({"firstremind": "12"}, None),
    ],
)
def test_fine_rules(db, ctx, rules, expected):
    for name, value in rules.items():
        db.run_blocking(lambda txn, n=name, v=value: set_rule(txn, n, v))
    assert _checkin(db, ctx(), BARCODE[7]).fine == expected


def test_return_date_field_sets_the_days_late(db, ctx):
    outcome = _checkin(db, ctx(), BARCODE[7], return_date=datetime(2026, 3, 5, 9, 0))
    assert outcome.fine == 1.25
    old = _one(db, "SELECT returndate FROM old_issues")
    assert old["returndate"] == "2026-03-05 09:00:00"


def test_accruing_fine_is_finalised_not_charged_twice(db, ctx):
    _execute(
        db,
        "INSERT INTO accountlines (borrowernumber, itemnumber, issue_id, date, amount, "
        "amountoutstanding, description, debit_type_code, status, interface) "
        "SELECT i.borrowernumber, i.itemnumber, i.issue_id, '2026-03-09 02:00:00', 2.25, 1.25, "
        "'accruing', 'OVERDUE', 'UNRETURNED', 'cron' FROM issues i JOIN items it "
        "ON it.itemnumber = i.itemnumber WHERE it.barcode = ?",
        (BARCODE[7],),
    )
    outcome = _checkin(db, ctx(), BARCODE[7])
    assert outcome.fine == 0.25
    lines = _overdue_lines(db)
    assert len(lines) == 1
    assert (lines[0]["amount"], lines[0]["amountoutstanding"], lines[0]["status"]) == (
        2.5,
        1.5,
        "RETURNED",
    )


def test_fines_mode_off_charges_nothing(db, ctx):
    assert _checkin(db, ctx(sysprefs={"finesMode": "off"}), BARCODE[7]).fine is None
    assert _overdue_lines(db) == []


def test_not_checked_out(db, ctx):
    outcome = _checkin(db, ctx(), BARCODE[1])
    assert not outcome.ok and outcome.not_issued
    assert outcome.message == "Item not checked out"
    quiet = _checkin(db, ctx(checked_in_ok=True), BARCODE[1])
    assert quiet.message is None and quiet.not_issued


def test_local_use_is_recorded(db, ctx):
    outcome = _checkin(db, ctx(sysprefs={"RecordLocalUseOnReturn": "1"}), BARCODE[1])
    assert "LocalUse" in outcome.messages
    assert _one(db, "SELECT type FROM statistics") == {"type": "localuse"}


# --- holds -----------------------------------------------------------------------------------


def test_hold_for_this_branch_is_captured_waiting(db, ctx):
    outcome = _checkin(db, ctx(), BARCODE[12])
    assert outcome.alert_type == "01"
    assert outcome.destination == "WEL"
    assert outcome.hold["cardnumber"] == GRACE
    hold = _one(db, "SELECT *" + GRACE_HOLD)
    item = _one(db, "SELECT itemnumber FROM items WHERE barcode = ?", (BARCODE[12],))
    assert hold["found"] == "W"
    assert hold["itemnumber"] == item["itemnumber"]
    assert hold["priority"] == 0
    assert hold["waitingdate"] == "2026-03-10"
    assert hold["expirationdate"] == "2026-03-17"  # ReservesMaxPickUpDelay 7


def test_hold_for_another_branch_is_put_in_transit(db, ctx):
    outcome = _checkin(db, ctx("kilsc"), BARCODE[12])
    assert (outcome.alert_type, outcome.destination) == ("02", "WEL")
    hold = _one(db, "SELECT found, priority" + GRACE_HOLD)
    assert hold == {"found": "T", "priority": 0}
    transfer = _one(db, "SELECT frombranch, tobranch, reason, datesent FROM branchtransfers")
    assert transfer == {
        "frombranch": "KIL",
        "tobranch": "WEL",
        "reason": "Reserve",
        "datesent": "2026-03-10 14:30:00",
    }
    # Arriving at the pickup library, it becomes waiting and the transfer is complete.
    arrived = _checkin(db, ctx(), BARCODE[12])
    assert arrived.alert_type == "01"
    assert _one(db, "SELECT found" + GRACE_HOLD) == {"found": "W"}
    assert _one(db, "SELECT datearrived FROM branchtransfers") == {
        "datearrived": "2026-03-10 14:30:00"
    }


def test_holds_get_captured_off_alerts_but_leaves_the_hold(db, ctx):
    outcome = _checkin(db, ctx(holds_get_captured=False), BARCODE[12])
    assert outcome.alert_type == "01"
    assert _one(db, "SELECT found, itemnumber, priority" + GRACE_HOLD) == {
        "found": None,
        "itemnumber": None,
        "priority": 1,
    }


def test_waiting_item_returned_again_stays_waiting(db, ctx):
    outcome = _checkin(db, ctx(), BARCODE[8])
    assert outcome.alert_type == "01" and outcome.hold["cardnumber"] == ADA
    assert _one(db, "SELECT found, waitingdate FROM reserves WHERE found IS NOT NULL") == {
        "found": "W",
        "waitingdate": "2026-03-09",
    }


def test_holds_block_checkin(db, ctx):
    _execute(
        db,
        "INSERT INTO reserves (borrowernumber, reservedate, biblionumber, branchcode, priority) "
        "SELECT b.borrowernumber, '2026-03-09', i.biblionumber, 'WEL', 1 FROM borrowers b, "
        "items i WHERE b.cardnumber = ? AND i.barcode = ?",
        (GRACE, BARCODE[6]),
    )
    outcome = _checkin(db, ctx(holds_block_checkin=True), BARCODE[6])
    assert not outcome.ok and not outcome.returned
    assert outcome.alert_type == "99"
    assert outcome.message == "Item is on hold, please return to circulation desk"
    assert _one(db, "SELECT COUNT(*) AS n FROM issues")["n"] == 3
    assert _one(db, "SELECT found FROM reserves WHERE priority = 1") == {"found": None}


def test_confirm_future_holds_looks_ahead_at_checkin(db, ctx):
    # Grace's title-level hold on item 12 starts in three days (NOW is 2026-03-10).
    _execute(db, "UPDATE reserves SET reservedate = '2026-03-13' WHERE found IS NULL", ())
    ignored = _checkin(db, ctx(), BARCODE[12])
    assert ignored.alert_type is None and ignored.hold is None
    assert _one(db, "SELECT found" + GRACE_HOLD) == {"found": None}
    too_short = _checkin(db, ctx(sysprefs={"ConfirmFutureHolds": "2"}), BARCODE[12])
    assert too_short.hold is None
    blocked = _checkin(
        db, ctx(holds_block_checkin=True, sysprefs={"ConfirmFutureHolds": "3"}), BARCODE[12]
    )
    assert blocked.alert_type == "99" and not blocked.returned
    captured = _checkin(db, ctx(sysprefs={"ConfirmFutureHolds": "3"}), BARCODE[12])
    assert captured.alert_type == "01" and captured.hold["cardnumber"] == GRACE
    assert _one(db, "SELECT found" + GRACE_HOLD) == {"found": "W"}
    for odd in ("-1", "inf", "nan", "x"):
        _execute(db, "UPDATE reserves SET found = NULL, itemnumber = NULL, priority = 1", ())
        assert _checkin(db, ctx(sysprefs={"ConfirmFutureHolds": odd}), BARCODE[12]).hold is None


# --- transfers and refusals ----------------------------------------------------------------


def test_item_from_another_library_is_sent_home(db, ctx):
    outcome = _checkin(db, ctx(), BARCODE[9])
    assert outcome.ok and outcome.returned
    assert (outcome.alert_type, outcome.destination) == ("04", "KIL")
    assert outcome.message is None
    assert _one(db, "SELECT frombranch, tobranch, reason FROM branchtransfers") == {
        "frombranch": "WEL",
        "tobranch": "KIL",
        "reason": "ReturnToHome",
    }


def test_without_automatic_item_return_no_transfer_is_started(db, ctx):
    outcome = _checkin(db, ctx(sysprefs={"AutomaticItemReturn": "0"}), BARCODE[9])
    assert (outcome.alert_type, outcome.destination) == ("04", "KIL")
    assert outcome.message == "This item must still be transferred to KIL branch."
    assert _query(db, "SELECT * FROM branchtransfers") == []


def test_allow_return_to_branch(db, ctx):
    outcome = _checkin(db, ctx(sysprefs={"AllowReturnToBranch": "homebranch"}), BARCODE[9])
    assert not outcome.ok and not outcome.returned
    assert (outcome.alert_type, outcome.destination) == ("04", "KIL")
    assert outcome.message == "Checkin failed"
    assert _one(db, "SELECT COUNT(*) AS n FROM issues")["n"] == 3
    holding = _checkin(db, ctx(sysprefs={"AllowReturnToBranch": "holdingbranch"}), BARCODE[9])
    assert (holding.ok, holding.destination) == (False, "KIL")


def test_lost_item_is_found_on_return(db, ctx):
    outcome = _checkin(db, ctx(), BARCODE[10])
    assert "WasLost" in outcome.messages
    item = _one(db, "SELECT itemlost, itemlost_on FROM items WHERE barcode = ?", (BARCODE[10],))
    assert item == {"itemlost": 0, "itemlost_on": None}


def test_block_return_of_lost_items(db, ctx):
    outcome = _checkin(db, ctx(sysprefs={"BlockReturnOfLostItems": "1"}), BARCODE[10])
    assert (outcome.ok, outcome.alert_type) == (False, "99")
    assert outcome.message == "Item lost, return not allowed"
    assert _one(db, "SELECT itemlost FROM items WHERE barcode = ?", (BARCODE[10],)) == {
        "itemlost": 1
    }


def test_withdrawn_items(db, ctx):
    _execute(db, "UPDATE items SET withdrawn = 1 WHERE barcode = ?", (BARCODE[6],))
    outcome = _checkin(db, ctx(), BARCODE[6])
    assert (outcome.ok, outcome.alert_type) == (False, "99")
    assert outcome.message == "Item withdrawn, return not allowed"
    allowed = _checkin(db, ctx(sysprefs={"BlockReturnOfWithdrawnItems": "0"}), BARCODE[6])
    assert allowed.ok and allowed.returned


def test_issue_number_clash_is_a_data_problem(db, ctx):
    _execute(
        db,
        "INSERT INTO old_issues (issue_id, borrowernumber, itemnumber) "
        "SELECT issue_id, borrowernumber, itemnumber FROM issues WHERE itemnumber = "
        "(SELECT itemnumber FROM items WHERE barcode = ?)",
        (BARCODE[7],),
    )
    outcome = _checkin(db, ctx(), BARCODE[7])
    assert (outcome.ok, outcome.alert_type) == (False, "98")
    assert outcome.message == "Checkin failed: data problem"
    assert _one(db, "SELECT COUNT(*) AS n FROM issues")["n"] == 3


def test_show_checkin_message_and_outstanding_amount(db, ctx):
    context = ctx(show_checkin_message=True, show_outstanding_amount=True)
    outcome = _checkin(db, context, BARCODE[7])
    assert outcome.message == (
        "Item checked-in: Wellington Central - GEN. You owe $2.50 for this item."
    )


# --- sort bins -------------------------------------------------------------------------------

ITEM = {
    "itype": "BK",
    "location": "GEN",
    "ccode": "FIC",
    "itemcallnumber": "FIC HER",
    "homebranch": "WEL",
    "holdingbranch": "WEL",
    "price": 45,
    "replacementprice": 30,
}


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ("WEL:itype:eq:BK:1", "1"),
        ("WEL:itype:=:BK:1", "1"),
        ("WEL:itype:ne:BK:1", None),
        ("WEL:itype:!=:DVD:2", "2"),
        ("WEL:price:>:30:3", "3"),
        ("WEL:price:<:100:4", "4"),
        ("WEL:price:<=:45:5", "5"),
        ("WEL:price:>=:46:6", None),
        ("WEL:price:>:$replacementprice:7", "7"),
        ("WEL:effective_itemtype:eq:BK:8", "8"),
        ("WEL:itype:eq:BK:ccode:eq:FIC:9", "9"),
        ("WEL:itype:eq:BK:ccode:eq:NF:9", None),
        ("KIL:itype:eq:BK:1", None),
        ("WEL:A", "A"),
    ],
)
def test_sort_bin_rules(rule, expected):
    assert ils_checkin.sort_bin(ITEM, "WEL", [rule]) == (expected, [])


def test_sort_bin_first_match_comments_and_line_endings():
    pref = "# comment\r\n\nWEL:itype:eq:DVD:X\rWEL:itype:eq:BK:B\nWEL:location:eq:GEN:C\r\n"
    rules = ils_checkin.parse_sort_bin_rules((), pref)
    assert rules == ["WEL:itype:eq:DVD:X", "WEL:itype:eq:BK:B", "WEL:location:eq:GEN:C"]
    assert ils_checkin.sort_bin(ITEM, "WEL", rules) == ("B", [])


def test_sort_bin_account_rules_replace_the_preference():
    rules = ils_checkin.parse_sort_bin_rules(("WEL:itype:eq:BK:ACC",), "WEL:itype:eq:BK:PREF")
    assert rules == ["WEL:itype:eq:BK:ACC"]


def test_sort_bin_malformed_lines_are_skipped_with_a_warning():
    bin_name, warnings = ils_checkin.sort_bin(ITEM, "WEL", ["WEL:itype:eq:1", "WEL:itype:ne:X:2"])
    assert bin_name == "2"
    assert warnings == ["Malformed preference line found: 'WEL:itype:eq:1'"]


def test_checkin_reports_the_sort_bin(db, ctx):
    context = ctx(sort_bin_mappings=("WEL:itype:eq:BK:3",))
    assert _checkin(db, context, BARCODE[7]).sort_bin == "3"
    pref = ctx(sysprefs={"SIP2SortBinMapping": "WEL:homebranch:ne:$holdingbranch:9\nWEL:A:B"})
    outcome = _checkin(db, pref, BARCODE[6])
    assert outcome.sort_bin is None
    assert outcome.warnings == ["Malformed preference line found: 'WEL:A:B'"]


def test_hold_captured_at_pickup_cancels_the_transfer_home(db, ctx):
    assert _checkin(db, ctx(), BARCODE[9]).alert_type == "04"  # ReturnToHome WEL -> KIL
    _execute(
        db,
        "INSERT INTO reserves (borrowernumber, reservedate, biblionumber, branchcode, priority) "
        "SELECT b.borrowernumber, '2026-03-10', i.biblionumber, 'WEL', 1 FROM borrowers b, "
        "items i WHERE b.cardnumber = ? AND i.barcode = ?",
        (ADA, BARCODE[9]),
    )
    outcome = _checkin(db, ctx(), BARCODE[9])
    assert (outcome.alert_type, outcome.destination) == ("01", "WEL")
    transfer = _one(db, "SELECT reason, datearrived, datecancelled FROM branchtransfers")
    assert transfer == {
        "reason": "ReturnToHome",
        "datearrived": None,
        "datecancelled": "2026-03-10 14:30:00",
    }


def test_transfer_arrives_and_wrong_transfer(db, ctx):
    assert _checkin(db, ctx(), BARCODE[9]).alert_type == "04"
    # Back at WEL again: it still has to go to KIL.
    again = _checkin(db, ctx(), BARCODE[9])
    assert (again.alert_type, again.destination) == ("04", "KIL")
    arrived = _checkin(db, ctx("kilsc"), BARCODE[9])
    assert arrived.alert_type is None and "TransferArrived" in arrived.messages
    assert _one(db, "SELECT datearrived FROM branchtransfers") == {
        "datearrived": "2026-03-10 14:30:00"
    }
