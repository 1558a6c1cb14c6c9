"""The field-by-field explanation of SIP2 messages (koha_gateway.sip2.describe)."""

from __future__ import annotations

import pytest

from koha_gateway.sip2.codec import ParseError
from koha_gateway.sip2.describe import describe, split_error_detection
from koha_gateway.sip2.spec import PATRON_STATUS_FLAGS, SUPPORTED_MESSAGES


def test_patron_status_flags_and_dates():
    d = describe("24Y" + " " * 13 + "00120261129    120000AOWEL|AAx|PB19700101|AY3AZ0000")
    status = d.fixed[0]
    assert status.name == "patron_status" and len(status.flags) == 14 == len(PATRON_STATUS_FLAGS)
    assert status.flags[0] == ("charge privileges denied", True)
    assert status.meaning == "charge privileges denied"
    assert d.fixed[1].meaning == "English"
    assert d.fixed[2].meaning == "2026-11-29 12:00:00"
    assert (d.sequence, d.checksum) == ("3", "0000")


def test_item_information_codes():
    d = describe("1812010420261129    120000AB1|CK001|BT04|")
    meanings = {f.name: f.meaning for f in d.fixed}
    assert meanings == {
        "circulation_status": "lost",
        "security_marker": "none",
        "fee_type": "overdue",
        "transaction_date": "2026-11-29 12:00:00",
    }
    assert [f.meaning for f in d.fields] == [None, "book", "overdue"]


def test_supported_messages_and_alert_type():
    d = describe("98YYYNYN60000320261129    1200002.00BXYYYYYYYYYYYYYNYY|")
    bx = d.fields[0]
    assert len(bx.flags) == 16 == len(SUPPORTED_MESSAGES)
    assert bx.meaning == "not supported: hold"
    checkin = describe("101YNY20261129    120000AB1|CV02|")
    assert checkin.fields[1].meaning == "hold for other library"


def test_repeated_fields_are_all_shown():
    d = describe("36Y20261129    120000AFone|AFtwo|")
    assert [f.value for f in d.fields] == ["one", "two"]


def test_split_and_errors():
    assert split_error_detection("99AY1AZFFFF") == ("99", "1", "FFFF")
    assert split_error_detection("9900302.00") == ("9900302.00", None, None)
    with pytest.raises(ParseError):
        describe("XX")
