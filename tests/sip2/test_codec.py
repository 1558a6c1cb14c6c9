"""Codec: parsing every request (examples in the 3M SIP2 2.00 style) and encoding every response
to exact bytes, plus the formatting helpers."""

import datetime as dt
from decimal import Decimal

import pytest

from koha_gateway.sip2.checksum import checksum, verify
from koha_gateway.sip2.codec import (
    Message,
    ParseError,
    Response,
    count,
    money,
    parse,
    parse_timestamp,
    sip_bool,
    timestamp,
    yes_space,
)
from koha_gateway.sip2.output import OutputPolicy

D1 = "20060110    084238"
D2 = "20060120    084238"
BLANK_DATE = " " * 18

# One real-looking example per request (3M SIP2 2.00 "Message formats" examples, Koha tests).
REQUEST_EXAMPLES = [
    (
        "2300120060110    084238AOUWOLS|AA104000000105|AC|ADpin1234|",
        {"language": "001", "transaction_date": D1},
        [("AO", "UWOLS"), ("AA", "104000000105"), ("AC", ""), ("AD", "pin1234")],
    ),
    (
        f"11YN{D1}{BLANK_DATE}AOUWOLS|AA104000000105|AB000000000005792|AC|BON|",
        {"sc_renewal_policy": "Y", "no_block": "N", "transaction_date": D1, "nb_due_date": ""},
        [
            ("AO", "UWOLS"),
            ("AA", "104000000105"),
            ("AB", "000000000005792"),
            ("AC", ""),
            ("BO", "N"),
        ],
    ),
    (
        f"09N{D1}{D2}APUnder the bed|AOUWOLS|AB76666|ACterminal password|BIN|",
        {"no_block": "N", "transaction_date": D1, "return_date": D2},
        [
            ("AP", "Under the bed"),
            ("AO", "UWOLS"),
            ("AB", "76666"),
            ("AC", "terminal password"),
            ("BI", "N"),
        ],
    ),
    (
        f"01N{D1}AOUWOLS|ALHe's a jerk|AA104000000705|ACterminal password|",
        {"card_retained": "N", "transaction_date": D1},
        [
            ("AO", "UWOLS"),
            ("AL", "He's a jerk"),
            ("AA", "104000000705"),
            ("AC", "terminal password"),
        ],
    ),
    (
        "9900302.00",
        {"status_code": "0", "max_print_width": "030", "protocol_version": "2.00"},
        [],
    ),
    ("97", {}, []),
    (
        "9300CNLoginUserID|COLoginPassword|CPLocationCode|",
        {"uid_algorithm": "0", "pwd_algorithm": "0"},
        [("CN", "LoginUserID"), ("CO", "LoginPassword"), ("CP", "LocationCode")],
    ),
    (
        f"63001{D1}          AOUWOLS|AA104000000105|AC|ADpin|BP1|BQ5|",
        {"language": "001", "transaction_date": D1, "summary": ""},
        [
            ("AO", "UWOLS"),
            ("AA", "104000000105"),
            ("AC", ""),
            ("AD", "pin"),
            ("BP", "1"),
            ("BQ", "5"),
        ],
    ),
    (
        f"35{D1}AOUWOLS|AA104000000105|AC|ADpin|",
        {"transaction_date": D1},
        [("AO", "UWOLS"), ("AA", "104000000105"), ("AC", ""), ("AD", "pin")],
    ),
    (
        f"37{D1}0100USDBV111.11|AOUWOLS|AA104000000105|AC|ADpin|CGpay_id_01|BKtx_0001|",
        {"transaction_date": D1, "fee_type": "01", "payment_type": "00", "currency_type": "USD"},
        [
            ("BV", "111.11"),
            ("AO", "UWOLS"),
            ("AA", "104000000105"),
            ("AC", ""),
            ("AD", "pin"),
            ("CG", "pay_id_01"),
            ("BK", "tx_0001"),
        ],
    ),
    (
        f"17{D1}AOUWOLS|AB1565921879|AC|",
        {"transaction_date": D1},
        [("AO", "UWOLS"), ("AB", "1565921879"), ("AC", "")],
    ),
    (
        f"19{D1}AOUWOLS|AB1565921879|AC|CHitem props|",
        {"transaction_date": D1},
        [("AO", "UWOLS"), ("AB", "1565921879"), ("AC", ""), ("CH", "item props")],
    ),
    (
        f"25{D1}AOUWOLS|AA104000000105|AC|ADpin|",
        {"transaction_date": D1},
        [("AO", "UWOLS"), ("AA", "104000000105"), ("AC", ""), ("AD", "pin")],
    ),
    (
        f"15+{D1}BW{D2}|BSTaylor|BY2|AOUWOLS|AA104000000105|ADpin|AB1565921879|AC|BON|",
        {"hold_mode": "+", "transaction_date": D1},
        [
            ("BW", D2),
            ("BS", "Taylor"),
            ("BY", "2"),
            ("AO", "UWOLS"),
            ("AA", "104000000105"),
            ("AD", "pin"),
            ("AB", "1565921879"),
            ("AC", ""),
            ("BO", "N"),
        ],
    ),
    (
        f"29NN{D1}{D2}AOUWOLS|AA104000000105|ADpin|AB1565921879|AC|BON|",
        {"third_party_allowed": "N", "no_block": "N", "transaction_date": D1, "nb_due_date": D2},
        [
            ("AO", "UWOLS"),
            ("AA", "104000000105"),
            ("AD", "pin"),
            ("AB", "1565921879"),
            ("AC", ""),
            ("BO", "N"),
        ],
    ),
    (
        f"65{D1}AOUWOLS|AA104000000105|ADpin|AC|BON|",
        {"transaction_date": D1},
        [("AO", "UWOLS"), ("AA", "104000000105"), ("AD", "pin"), ("AC", ""), ("BO", "N")],
    ),
]


@pytest.mark.parametrize(("text", "fixed", "fields"), REQUEST_EXAMPLES, ids=lambda v: str(v)[:2])
def test_parse_every_request(text, fixed, fields):
    msg = parse(text + "\r")
    assert msg.code == text[:2]
    assert msg.fixed == fixed
    assert list(msg.fields) == fields


def test_examples_cover_every_request():
    from koha_gateway.sip2.spec import REQUESTS

    assert {t[:2] for t, _, _ in REQUEST_EXAMPLES} == set(REQUESTS)


def test_fixed_fields_lose_trailing_spaces_only():
    msg = parse(f"63001{D1}Y         AOx|AAy|")
    assert msg.fixed["summary"] == "Y"
    msg = parse(f"63001{D1} Y        AOx|AAy|")
    assert msg.fixed["summary"] == " Y"


def test_get_first_wins_and_get_all():
    msg = parse(f"23001{D1}AOone|AAfirst|AAsecond|AFa|AFb|XXextra|")
    assert msg.get("AA") == "first"
    assert msg.get_all("AA") == ["first"]  # a duplicate of a non-repeatable field is dropped
    assert msg.get_all("AF") == ["a", "b"]  # repeatable fields are kept
    assert msg.get("XX") == "extra"  # not defined for 23, kept for the ACS to ignore
    assert msg.get("AD") is None
    assert msg.get("AD", "") == ""
    assert "AO" in msg and "AD" not in msg


def test_last_value_keeps_trailing_punctuation():
    msg = parse("9300CNuser|COsecret!.")
    assert msg.get("CO") == "secret!."
    msg = parse("9300CNuser|COsecret!|\r\n")
    assert msg.get("CO") == "secret!"


def test_empty_pieces_ignored():
    msg = parse(f"17{D1}AOx||ABitem|||")
    assert msg.fields == (("AO", "x"), ("AB", "item"))


def test_other_delimiter():
    msg = parse(f"17{D1}AOx^ABitem^", delimiter="^")
    assert msg.get("AB") == "item"


@pytest.mark.parametrize("text", ["", "X", "00", "24001", "ZZabc", "2300120060110", "11YN", "93"])
def test_parse_errors(text):
    with pytest.raises(ParseError):
        parse(text)


def test_parse_response_when_asked():
    msg = parse("941", responses=True)
    assert msg.name == "LoginResponse" and msg.fixed == {"ok": "1"}
    with pytest.raises(ParseError):
        parse("941")


def test_message_is_frozen():
    msg = parse("9900302.00")
    assert isinstance(msg, Message)
    with pytest.raises(AttributeError):
        msg.code = "11"


# --- responses: exact bytes -----------------------------------------------------------------

NOW = dt.datetime(2026, 11, 29, 8, 42, 38)
T = "20261129    084238"


def _responses():
    return [
        (
            Response("24").fixed("              ", "000", T)
            .add("AO", "CPL").add("AA", "23529000035676").add("AE", "Ann Lee")
            .add("BL", "Y").add("CQ", "N").maybe("BH", "USD").maybe("BV", "0"),
            f"24              000{T}AOCPL|AA23529000035676|AEAnn Lee|BLY|CQN|BHUSD|BV0|",
        ),
        (
            Response("12").fixed("1", "N", "N", "Y", T).add("AO", "CPL").add("AA", "p1")
            .add("AB", "i1").add("AJ", "Dune").add("AH", "20261213    235900").maybe("AF", ""),
            f"121NNY{T}AOCPL|AAp1|ABi1|AJDune|AH20261213    235900|",
        ),
        (
            Response("10").fixed("1", "Y", "N", "N", T).add("AO", "CPL").add("AB", "i1")
            .add("AQ", "CPL").maybe("CV", "00"),
            f"101YNN{T}AOCPL|ABi1|AQCPL|CV00|",
        ),
        (
            Response("98").fixed("Y", "Y", "Y", "Y", "N", "N", "100", "005", T, "2.00")
            .add("AO", "CPL").add("BX", "YYYYYYYYYYYNYYYY"),
            f"98YYYYNN100005{T}2.00AOCPL|BXYYYYYYYYYYYNYYYY|",
        ),
        (Response("96"), "96"),
        (Response("94").fixed("1"), "941"),
        (
            Response("64").fixed(" " * 14, "001", T, count(1), count(0), count(2), count(None),
                                 count(0), count(10000))
            .add("AO", "CPL").add("AA", "p1").add("AE", "Ann").add("BL", "Y")
            .add("CC", money(5)).add("AU", "i1").add("AU", "i2"),
            f"64{' ' * 14}001{T}000100000002    0000    AOCPL|AAp1|AEAnn|BLY|CC5.00|AUi1|AUi2|",
        ),
        (
            Response("36").fixed("Y", T).add("AO", "CPL").add("AA", "p1").add("AF", "Thank you!"),
            f"36Y{T}AOCPL|AAp1|AFThank you!|",
        ),
        (
            Response("38").fixed("Y", T).add("AO", "CPL").add("AA", "p1").maybe("BK", "tx1"),
            f"38Y{T}AOCPL|AAp1|BKtx1|",
        ),
        (
            Response("18").fixed("03", "02", "01", T).add("AB", "i1").add("AJ", "Dune"),
            f"18030201{T}ABi1|AJDune|",
        ),
        (Response("20").fixed("1", T).add("AB", "i1"), f"201{T}ABi1|"),
        (
            Response("26").fixed("Y" * 4 + " " * 10, "000", T).add("AO", "CPL").add("AA", "p1")
            .add("AE", None).add("BL", "N"),
            f"26YYYY          000{T}AOCPL|AAp1|AE|BLN|",
        ),
        (
            Response("16").fixed("1", "N", T).add("AO", "CPL").add("AA", "p1").maybe("BR", "0"),
            f"161N{T}AOCPL|AAp1|BR0|",
        ),
        (
            Response("30").fixed("0", "N", "U", "N", T).add("AA", "p1").add("AB", "i1")
            .add("AJ", "").add("AH", "").add("AO", "CPL").add("AF", "Renewals not allowed."),
            f"300NUN{T}AAp1|ABi1|AJ|AH|AOCPL|AFRenewals not allowed.|",
        ),
        (
            Response("66").fixed("1", count(1), count(1), T).add("AO", "CPL").add("BM", "i1")
            .add("BN", "i2"),
            f"66100010001{T}AOCPL|BMi1|BNi2|",
        ),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("response", "expected"), _responses(), ids=[r.code for r, _ in _responses()]
)
def test_every_response_exact_bytes(response, expected):
    assert response.encode() == expected.encode() + b"\r\n"
    assert response.encode(OutputPolicy(terminator=b"\r")) == expected.encode() + b"\r"


def test_responses_cover_every_code():
    from koha_gateway.sip2.spec import RESPONSES

    assert {r.code for r, _ in _responses()} == set(RESPONSES)


def test_error_detection_suffix():
    data = Response("94").fixed("1").encode(seq="0")
    assert data == b"941AY0AZFDFD\r\n"
    assert verify(data[:-2])
    data = Response("94").fixed("1").encode(seq=7)
    assert data.startswith(b"941AY7AZ") and verify(data.rstrip(b"\r\n"))


def test_checksum_over_encoded_bytes():
    r = Response("36").fixed("Y", T).add("AO", "CPL").add("AA", "p1").add("AF", "Merci, José ½")
    for enc in ("utf-8", "cp850", "latin-1"):
        data = r.encode(OutputPolicy(encoding=enc, terminator=b"\r"), seq="1")
        body = data[:-1]
        assert verify(body)
        assert body[:-4].endswith(b"AY1AZ")
        assert body[-4:].decode() == checksum(body[:-4])
        assert "José ½".encode(enc) in body


def test_escaping_delimiter_and_cr():
    r = Response("36").fixed("Y", T).add("AO", "a|b").add("AF", "line1\rline2")
    assert r.encode() == f"36Y{T}AOa&#124;b|AFline1 line2|\r\n".encode()
    caret = OutputPolicy(delimiter="^")
    r = Response("36").fixed("Y", T).add("AO", "a^b|c")
    assert r.encode(caret) == f"36Y{T}AOa&#94;b|c^\r\n".encode()


def test_add_and_maybe():
    r = Response("36").fixed("Y", T)
    r.add("AO", None).maybe("AA", None).maybe("AF", "").maybe("AG", "0").maybe("BK", 0)
    assert r.fields == [("AO", ""), ("AG", "0"), ("BK", "0")]


@pytest.mark.parametrize(
    "values",
    [("Y",), ("YY", T), ("Y", T[:-1]), ("Y", T + " "), ("Y", T, "x")],
)
def test_fixed_length_validation(values):
    with pytest.raises(ValueError):
        Response("36").fixed(*values).encode()


def test_fixed_values_must_be_strings():
    with pytest.raises(ValueError):
        Response("94").fixed(1).encode()


def test_fixed_values_may_be_grouped():
    r = Response("12").fixed("1NNY", T)
    assert r.encode() == f"121NNY{T}\r\n".encode()


def test_requests_can_be_built():
    data = Response("93").fixed("0", "0").add("CN", "u").add("CO", "p").encode(seq="0")
    msg = parse(data.decode()[: -9 - 2])
    assert msg.get("CO") == "p"


def test_unknown_code():
    with pytest.raises(ValueError):
        Response("42")


# --- helpers -------------------------------------------------------------------------------


def test_bools():
    assert sip_bool(1) == "Y" and sip_bool(0) == "N" and sip_bool(None) == "N"
    assert yes_space(True) == "Y" and yes_space("") == " "


def test_timestamp():
    assert timestamp(dt.datetime(2011, 1, 12, 9, 5, 7)) == "20110112    090507"
    aware = dt.datetime(2011, 1, 12, 9, 5, 7, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert timestamp(aware) == "20110112    090507"  # printed as given
    assert timestamp(dt.date(2011, 1, 12)) == "20110112    235900"
    assert timestamp(dt.datetime(999, 1, 2)) == "09990102    000000"
    assert timestamp(None) == " " * 18
    assert len(timestamp(NOW)) == 18


def test_count():
    assert count(0) == "0000" and count(7) == "0007" and count(9999) == "9999"
    assert count(None) == "    " and count(10000) == "    " and count(-1) == "    "
    assert count("12") == "0012" and count("x") == "    "


def test_money():
    assert money(5) == "5.00"
    assert money(Decimal("12.5")) == "12.50"
    assert money(0.1 + 0.2) == "0.30"
    assert money("3.5") == "3.50"
    assert money(None) == ""
    with pytest.raises(ValueError):
        money("abc")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("20060110    084238", dt.datetime(2006, 1, 10, 8, 42, 38)),
        ("20060110   Z084238", dt.datetime(2006, 1, 10, 8, 42, 38, tzinfo=dt.UTC)),
        ("20060110", dt.datetime(2006, 1, 10)),
        ("20060110 084238", dt.datetime(2006, 1, 10, 8, 42, 38)),
        ("2006-01-10 08:42:38", dt.datetime(2006, 1, 10, 8, 42, 38)),
        ("20060110084238", dt.datetime(2006, 1, 10, 8, 42, 38)),
        ("", None),
        ("                  ", None),
        (None, None),
        ("20061310    084238", None),
        ("garbage", None),
        ("2006011", None),
    ],
)
def test_parse_timestamp(text, expected):
    assert parse_timestamp(text) == expected
