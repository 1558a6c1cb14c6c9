"""The negative answers sent when the database is down: one well-formed response per request."""

from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from koha_gateway.acs.fallback import UNAVAILABLE, failure_response
from koha_gateway.sip2.codec import parse
from koha_gateway.sip2.spec import REQUESTS, RESPONSES

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
TS = "20261129    120000"
EXAMPLES = {
    "23": f"23000{TS}AOWEL|AA1|AC|",
    "11": f"11YN{TS}{TS}AOWEL|AA1|AB2|AC|",
    "09": f"09N{TS}{TS}AOWEL|AB2|AC|",
    "01": f"01N{TS}AOWEL|ALx|AA1|AC|",
    "99": "9900302.00",
    "63": f"63000{TS}          AOWEL|AA1|",
    "35": f"35{TS}AOWEL|AA1|",
    "37": f"37{TS}0100NZDBV1.00|AOWEL|AA1|BKtx|",
    "17": f"17{TS}AOWEL|AB2|",
    "19": f"19{TS}AOWEL|AB2|CHx|",
    "25": f"25{TS}AOWEL|AA1|",
    "15": f"15+{TS}AOWEL|AA1|AB2|",
    "29": f"29NN{TS}{TS}AOWEL|AA1|AB2|",
    "65": f"65{TS}AOWEL|AA1|",
}


@pytest.mark.parametrize("code", sorted(set(REQUESTS) - {"93", "97"}))
def test_every_request_has_a_well_formed_negative_answer(code):
    ctx = SimpleNamespace(now=NOW, branch="WEL", protocol_version=2)
    msg = parse(EXAMPLES[code])
    response = failure_response(ctx, msg, unavailable=True)
    wire = response.encode().decode()
    assert wire.endswith("\r\n")
    answer = parse(wire.rstrip("\r\n"), responses=True)
    assert answer.code == REQUESTS[code].response
    assert answer.get("AF") == UNAVAILABLE
    if "AA" in msg and "AA" in RESPONSES[answer.code].fields:
        assert answer.get("AA") == msg.get("AA")


def test_98_says_off_line():
    ctx = SimpleNamespace(now=NOW, branch="WEL", protocol_version=2)
    wire = failure_response(ctx, parse("9900302.00"), unavailable=True).encode().decode()
    assert wire.startswith("98NNNNNN000000")
