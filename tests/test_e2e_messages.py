"""Every SIP2 message pair over a real socket against the demo data (3M SIP2 2.00 messages;
Koha's per-message behaviour, koha-sip-and-ldap.md section 4)."""

from __future__ import annotations

import pytest

from koha_gateway.sip2.codec import parse

NOW = "20261129    120000"
BLANK = " " * 18
ADA = "23529000000001"
GRACE = "23529000000002"
ALAN = "23529000000003"
EDSGER = "23529000000004"


def item(n: int) -> str:
    return f"399990000000{n:02d}"


def fields(answer: str) -> dict[str, list[str]]:
    message = parse(answer, responses=True)
    out: dict[str, list[str]] = {}
    for fid, value in message.fields:
        out.setdefault(fid, []).append(value)
    return out


@pytest.fixture
def sc(gateway):
    client = gateway.logged_in()
    yield client
    client.close()


def test_sc_status_flags_follow_the_institution_policy(gateway):
    with gateway.logged_in("kilsc", "kilsc1") as client:
        answer = client.request("9900302.00")
        assert answer[2:8] == "YYYNYN"  # KIL: renewal="false" -> N
        assert fields(answer)["AO"] == ["KIL"]
        assert len(fields(answer)["BX"][0]) == 16


def test_patron_status_23(sc):
    answer = sc.request(f"23000{NOW}AOWEL|AA{ADA}|AC|AD1234|")
    assert answer.startswith("24" + " " * 14 + "000")
    f = fields(answer)
    assert f["AE"] == ["Ada Lovelace"] and f["AA"] == [ADA] and f["BL"] == ["Y"]
    assert f["CQ"] == ["Y"]
    wrong = fields(sc.request(f"23000{NOW}AOWEL|AA{ADA}|AC|AD9999|"))
    assert wrong["CQ"] == ["N"]
    unknown = sc.request(f"23000{NOW}AOWEL|AAnosuchpatron|AC|")
    assert unknown.startswith("24YYYY")
    assert fields(unknown)["BL"] == ["N"]


def test_patron_information_63_counts_and_lists(sc):
    answer = sc.request(f"63000{NOW}  Y       AOWEL|AA{ADA}|AD1234|")
    assert answer.startswith("64")
    counts = answer[2 + 14 + 3 + 18 : 2 + 14 + 3 + 18 + 24]
    holds, overdue, charged = int(counts[0:4]), int(counts[4:8]), int(counts[8:12])
    assert (holds, overdue, charged) == (1, 1, 2)
    f = fields(answer)
    assert sorted(f["AU"]) == [item(6), item(7)]
    assert f["CQ"] == ["Y"] and f["BL"] == ["Y"]
    holds_list = fields(sc.request(f"63000{NOW}Y         AOWEL|AA{ADA}|"))
    assert holds_list["AS"] == [item(8)]
    overdue_list = fields(sc.request(f"63000{NOW} Y        AOWEL|AA{ADA}|"))
    assert overdue_list["AT"] == [item(7)]


def test_patron_information_flags_blocked_patrons(sc):
    grace = sc.request(f"63000{NOW}          AOWEL|AA{GRACE}|")
    assert grace[2] == "Y"  # charge privileges denied: fines over noissuescharge
    assert fields(grace)["BV"][0].startswith("12")
    alan = sc.request(f"63000{NOW}          AOWEL|AA{ALAN}|")
    assert alan[2] == "Y"
    edsger = sc.request(f"63000{NOW}          AOWEL|AA{EDSGER}|")
    assert edsger[2] == "Y"


def test_checkout_and_checkin_11_09(gateway, sc):
    answer = sc.request(f"11YN{NOW}{BLANK}AOWEL|AA{ADA}|AB{item(1)}|AC|")
    assert answer.startswith("121"), answer
    f = fields(answer)
    assert f["AB"] == [item(1)] and f["AJ"][0] and f["AH"][0]
    assert gateway.query(
        "SELECT 1 FROM issues JOIN items USING (itemnumber) WHERE barcode = ?", (item(1),)
    )
    back = sc.request(f"09N{NOW}{NOW}AOWEL|AB{item(1)}|AC|")
    assert back.startswith("101"), back
    assert not gateway.query(
        "SELECT 1 FROM issues JOIN items USING (itemnumber) WHERE barcode = ?", (item(1),)
    )


@pytest.mark.parametrize(
    ("patron", "barcode", "text"),
    [
        (GRACE, item(2), "Patron has fines"),
        (ALAN, item(2), "Patron expired"),
        (EDSGER, item(2), "Patron debarred"),
        ("y76t5r43", item(9), "another patron"),
        (ADA, item(11), "NOT_FOR_LOAN"),
        ("nosuchpatron", item(2), "Invalid Patron"),
        (ADA, "nosuchitem", "Invalid Item"),
    ],
)
def test_checkout_refusals(sc, patron, barcode, text):
    answer = sc.request(f"11YN{NOW}{BLANK}AOWEL|AA{patron}|AB{barcode}|AC|")
    assert answer.startswith("120"), answer
    assert any(text in af for af in fields(answer).get("AF", [])), answer


def test_checkout_of_an_item_held_for_another_patron(sc):
    answer = sc.request(f"11YN{NOW}{BLANK}AOWEL|AA{GRACE}|AB{item(8)}|AC|")
    assert answer.startswith("120")


def test_checkout_renews_an_item_already_on_loan_to_the_patron(sc):
    answer = sc.request(f"11YN{NOW}{BLANK}AOWEL|AA{ADA}|AB{item(6)}|AC|")
    assert answer.startswith("121Y"), answer


def test_checkin_overdue_charges_a_fine(gateway, sc):
    answer = sc.request(f"09N{NOW}{NOW}AOWEL|AB{item(7)}|AC|")
    assert answer.startswith("101")
    fines = gateway.query(
        "SELECT amount FROM accountlines JOIN borrowers USING "
        "(borrowernumber) WHERE cardnumber = ? AND debit_type_code = "
        "'OVERDUE'",
        (ADA,),
    )
    assert fines and fines[0]["amount"] > 0


def test_checkin_captures_a_hold(sc):
    answer = sc.request(f"09N{NOW}{NOW}AOWEL|AB{item(12)}|AC|")
    f = fields(answer)
    assert f["CV"] == ["01"] and f["CY"] == [GRACE]


def test_checkin_at_the_wrong_branch_sends_it_home(sc):
    answer = sc.request(f"09N{NOW}{NOW}AOWEL|APWEL|AB{item(9)}|AC|")
    f = fields(answer)
    assert f["CV"] == ["04"] and f["CT"] == ["KIL"]


def test_item_information_17(sc):
    on_loan = sc.request(f"17{NOW}AOWEL|AB{item(6)}|")
    assert on_loan[2:4] == "04"
    assert fields(on_loan)["AH"][0]
    assert sc.request(f"17{NOW}AOWEL|AB{item(1)}|")[2:4] == "03"
    assert sc.request(f"17{NOW}AOWEL|AB{item(10)}|")[2:4] == "12"
    assert sc.request(f"17{NOW}AOWEL|AB{item(8)}|")[2:4] == "08"
    assert sc.request(f"17{NOW}AOWEL|ABnosuchitem|").startswith("18010101")


def test_item_status_update_19_stores_properties(gateway, sc):
    answer = sc.request(f"19{NOW}AOWEL|AB{item(3)}|CHshelf 4B|")
    assert answer.startswith("201")
    rows = gateway.query(
        "SELECT p.sip_item_properties FROM kgw_item_properties p "
        "JOIN items i ON i.itemnumber = p.itemnumber WHERE i.barcode = ?",
        (item(3),),
    )
    assert rows[0]["sip_item_properties"] == "shelf 4B"
    assert sc.request(f"19{NOW}AOWEL|ABnosuchitem|CHx|").startswith("200")


def test_renew_29_and_renew_all_65(sc):
    answer = sc.request(f"29NN{NOW}{BLANK}AOWEL|AA{ADA}|AB{item(6)}|AC|")
    assert answer.startswith("301"), answer
    all_answer = sc.request(f"65{NOW}AOWEL|AA{ADA}|AC|")
    assert all_answer.startswith("66")


def test_renewal_refused_by_policy(gateway):
    with gateway.logged_in("kilsc", "kilsc1") as client:
        answer = client.request(f"29NN{NOW}{BLANK}AOKIL|AA{ADA}|AB{item(6)}|AC|")
        assert answer.startswith("300")


def test_hold_15_add_and_cancel(gateway, sc):
    answer = sc.request(f"15+{NOW}AOWEL|AA{ADA}|AB{item(2)}|BSWEL|")
    assert answer.startswith("161"), answer
    rows = gateway.query(
        "SELECT r.* FROM reserves r JOIN borrowers b USING (borrowernumber) WHERE b.cardnumber = ?",
        (ADA,),
    )
    assert len(rows) == 2
    cancel = sc.request(f"15-{NOW}AOWEL|AA{ADA}|AB{item(2)}|")
    assert cancel.startswith("161"), cancel


def test_fee_paid_37(gateway, sc):
    answer = sc.request(f"37{NOW}0100NZDBV12.00|AOWEL|AA{GRACE}|BKtx-1|")
    assert answer.startswith("38Y"), answer
    assert fields(answer)["BK"] == ["tx-1"]
    rows = gateway.query(
        "SELECT SUM(amountoutstanding) AS owed FROM accountlines JOIN "
        "borrowers USING (borrowernumber) WHERE cardnumber = ?",
        (GRACE,),
    )
    assert abs(rows[0]["owed"]) < 0.005


def test_block_01_and_enable_25(gateway, sc):
    blocked = sc.request(f"01N{NOW}AOWEL|ALcard left in machine|AA{ADA}|AC|")
    assert blocked.startswith("24Y"), blocked
    rows = gateway.query(
        "SELECT comment FROM borrower_debarments JOIN borrowers USING "
        "(borrowernumber) WHERE cardnumber = ?",
        (ADA,),
    )
    assert any("card left in machine" in (r["comment"] or "") for r in rows)
    enabled = sc.request(f"25{NOW}AOWEL|AA{ADA}|AD1234|")
    assert enabled.startswith("26 "), enabled
    assert sc.request(f"01N{NOW}AOWEL|ALx|AAnosuchpatron|AC|").startswith("24")


def test_end_session_35(sc):
    answer = sc.request(f"35{NOW}AOWEL|AA{ADA}|")
    assert answer.startswith("36Y")
    assert fields(answer)["AF"] == ["Thank you!"]


def test_a_resent_checkout_is_applied_once(gateway, sc):
    request = f"11YN{NOW}{BLANK}AOWEL|AA{ADA}|AB{item(4)}|AC|"
    first = sc.request(request)
    again = sc.request(request)
    assert first.startswith("121") and again == first
    rows = gateway.query(
        "SELECT renewals_count FROM issues JOIN items USING (itemnumber) WHERE barcode = ?",
        (item(4),),
    )
    assert rows == [{"renewals_count": 0}]
