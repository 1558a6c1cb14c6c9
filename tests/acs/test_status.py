"""3M SIP2 2.00 SC Status (99) -> ACS Status (98), koha-sip-and-ldap.md 4.1."""

from __future__ import annotations

import pytest

from tests.ils.conftest import TS, call

ALL = "YYYYYYYYYYYYYYYY"


def test_wel_policy(db, ctx):
    assert call(db, ctx("joe"), "9900802.00") == f"98YYYYYN100005{TS}2.00AOWEL|BX{ALL}|"


def test_renewal_false_is_n_unlike_koha(db, ctx):
    assert call(db, ctx("kilsc"), "9900802.00") == f"98YYYNYN100005{TS}2.00AOKIL|BX{ALL}|"


def test_status_update_off_turns_bx_position_12_off(db, ctx):
    context = ctx(policy={"status_update": False, "offline": True, "checkin": False})
    assert call(db, context, "9900802.00") == (f"98YNYYNY100005{TS}2.00AOWEL|BXYYYYYYYYYYYNYYYY|")


@pytest.mark.parametrize(
    ("timeout", "retries", "expected"),
    [(0, 0, "000000"), (1, 999, "001999"), (1000, -1, "000000"), (None, None, "000000")],
)
def test_timeout_and_retries_are_three_digits(db, ctx, timeout, retries, expected):
    context = ctx(policy={"timeout": timeout, "retries": retries})
    assert call(db, context, "9900802.00")[8:14] == expected


@pytest.mark.parametrize(
    ("version", "answer"), [("1.00", "1.00"), ("    ", "1.00"), ("2.00", "2.00")]
)
def test_protocol_version_from_the_request(db, ctx, version, answer):
    context = ctx()
    text = call(db, context, "990080" + version)
    assert text[32:36] == answer
    assert ("BX" in text) is (answer == "2.00")
    assert context.protocol_version == int(answer[0])


def test_print_width_and_status_code_are_kept(db, ctx):
    context = ctx()
    call(db, context, "9910402.00")
    assert context.print_width == 40
    assert context.log == ["SC status 1 (out of paper)"]
    context = ctx()
    call(db, context, "992²  2.00")
    assert context.print_width is None
    assert context.log == ["SC status 2 (shutting down)"]


def test_a_missing_staff_record_is_logged_not_fatal(db, ctx):
    db.run_blocking(
        lambda txn: txn.execute("UPDATE borrowers SET userid = 'someone' WHERE userid = 'joe'")
    )
    context = ctx()
    assert call(db, context, "9900802.00").startswith("98YYYYYN")
    assert context.log == ["SIP account 'joe' has no patron record with that userid"]
