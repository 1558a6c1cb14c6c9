"""The declarative tables against 3M SIP2 2.00 "Message formats" and Koha's MsgType table."""

from koha_gateway.sip2 import spec


def codes(text: str) -> list[str]:
    return text.split()


REQUEST_CODES = codes("23 11 09 01 99 97 93 63 35 37 17 19 25 15 29 65")
RESPONSE_CODES = codes("24 12 10 98 96 94 64 36 38 18 20 26 16 30 66")

# code -> total length including the 2-character code (sip2-spec-and-peers.md section 3.2).
REQUEST_TOTALS = {
    "23": 23, "11": 40, "09": 39, "01": 21, "99": 10, "97": 2, "93": 4, "63": 33,
    "35": 20, "37": 27, "17": 20, "19": 20, "25": 20, "15": 21, "29": 40, "65": 20,
}  # fmt: skip
RESPONSE_TOTALS = {
    "24": 37, "12": 24, "10": 24, "98": 36, "96": 2, "94": 3, "64": 61, "36": 21,
    "38": 21, "18": 26, "20": 21, "26": 37, "16": 22, "30": 24, "66": 29,
}  # fmt: skip

REQUEST_FIXED = {
    "23": ["language", "transaction_date"],
    "11": ["sc_renewal_policy", "no_block", "transaction_date", "nb_due_date"],
    "09": ["no_block", "transaction_date", "return_date"],
    "01": ["card_retained", "transaction_date"],
    "99": ["status_code", "max_print_width", "protocol_version"],
    "97": [],
    "93": ["uid_algorithm", "pwd_algorithm"],
    "63": ["language", "transaction_date", "summary"],
    "35": ["transaction_date"],
    "37": ["transaction_date", "fee_type", "payment_type", "currency_type"],
    "17": ["transaction_date"],
    "19": ["transaction_date"],
    "25": ["transaction_date"],
    "15": ["hold_mode", "transaction_date"],
    "29": ["third_party_allowed", "no_block", "transaction_date", "nb_due_date"],
    "65": ["transaction_date"],
}

NAMES = {
    "23": "PatronStatus", "11": "Checkout", "09": "Checkin", "01": "BlockPatron",
    "99": "SCStatus", "97": "RequestResend", "93": "Login", "63": "PatronInformation",
    "35": "EndPatronSession", "37": "FeePaid", "17": "ItemInformation",
    "19": "ItemStatusUpdate", "25": "PatronEnable", "15": "Hold", "29": "Renew",
    "65": "RenewAll", "24": "PatronStatusResponse", "12": "CheckoutResponse",
    "10": "CheckinResponse", "98": "ACSStatus", "96": "RequestSCResend", "94": "LoginResponse",
}  # fmt: skip

V2_ONLY = set(codes("93 63 35 37 17 19 25 15 29 65"))


def test_codes_complete():
    assert sorted(spec.REQUESTS) == sorted(REQUEST_CODES)
    assert sorted(spec.RESPONSES) == sorted(RESPONSE_CODES)


def test_names():
    for code, name in NAMES.items():
        assert spec.lookup(code).name == name
        assert spec.BY_NAME[name].code == code


def test_fixed_lengths():
    for code, total in REQUEST_TOTALS.items():
        assert spec.REQUESTS[code].fixed_length + 2 == total, code
    for code, total in RESPONSE_TOTALS.items():
        assert spec.RESPONSES[code].fixed_length + 2 == total, code


def test_request_fixed_names_exact():
    for code, names in REQUEST_FIXED.items():
        assert [f.name for f in spec.REQUESTS[code].fixed] == names, code


def test_v2_only_per_koha():
    for code, s in spec.REQUESTS.items():
        assert s.v2_only == (code in V2_ONLY), code


def test_responses_pair_up():
    for code, s in spec.REQUESTS.items():
        if code == "97":
            assert s.response is None
        else:
            assert s.response in spec.RESPONSES
            resp = spec.RESPONSES[s.response]
            assert resp.v2_only == s.v2_only


def test_every_field_referenced_is_defined():
    for s in (*spec.REQUESTS.values(), *spec.RESPONSES.values()):
        assert s.fields <= spec.FIELDS.keys()


def test_field_table():
    standard = codes(
        "AA AB AC AD AE AF AG AH AJ AL AM AN AO AP AQ AS AT AU AV AY AZ BD BE BF BG BH BI BK "
        "BL BM BN BO BP BQ BR BS BT BU BV BW BX BY BZ CA CB CC CD CF CG CH CI CJ CK CL CM CN "
        "CO CP CQ"
    )
    extensions = codes("CR CS CT CV CY DA PA PB PC PI")
    assert set(standard + extensions) <= spec.FIELDS.keys()
    repeatable = {c for c, f in spec.FIELDS.items() if f.repeatable}
    assert repeatable == set(codes("AF AG AS AT AU AV BM BN BU CD"))
    for code, f in spec.FIELDS.items():
        assert f.code == code and len(code) == 2 and f.name


def test_request_fields_per_koha():
    assert spec.REQUESTS["11"].fields == frozenset(codes("AO AA AB AC CH AD BO BI"))
    assert spec.REQUESTS["93"].fields == frozenset({"CN", "CO", "CP"})
    assert spec.REQUESTS["15"].fields == frozenset(codes("BW BS BY AO AA AD AB AJ AC BO"))
    assert spec.REQUESTS["99"].fields == frozenset()
