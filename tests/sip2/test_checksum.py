"""3M SIP2 2.00 "Error detection": AZ checksum vectors and verification."""

import pytest

from koha_gateway.sip2.checksum import checksum, verify


@pytest.mark.parametrize(
    ("data", "expected"),
    [(b"12345", "FF01"), (b"teststring", "FBA9"), (b"97AZ", "FEF5"), (b"96AZ", "FEF6")],
)
def test_vectors(data, expected):
    assert checksum(data) == expected


def test_empty_and_wraparound():
    assert checksum(b"") == "0000"
    assert checksum(b"\xff" * 300) == "%04X" % (-(255 * 300) & 0xFFFF)


def test_encoded_bytes_not_characters():
    text = "AEJosé|AZ"
    assert checksum(text.encode("utf-8")) != checksum(text.encode("latin-1"))


@pytest.mark.parametrize("msg", [b"97AZFEF5", b"96AZFEF6", b"97AZfef5", b"96AZfEf6"])
def test_verify_accepts_good_and_lower_case(msg):
    assert verify(msg)


def test_verify_round_trip():
    body = b"9900302.00AY1AZ"
    assert verify(body + checksum(body).encode())


@pytest.mark.parametrize(
    "msg",
    [
        b"",
        b"97",
        b"97AZFEF4",
        b"97AZ",
        b"97AZFEF",
        b"97AZ+EF5",
        b"97AZ FE5",
        b"97AY1FEF5",
        b"97AZ0x12",
    ],
)
def test_verify_rejects(msg):
    assert not verify(msg)
