"""LineFramer: CR / CRLF / LF framing, split and coalesced reads, overflow."""

import pytest

from koha_gateway.sip2.framing import LineFramer, LineTooLong


def feed_all(chunks, max_line=8192):
    framer = LineFramer(max_line)
    out = []
    for chunk in chunks:
        out.extend(framer.feed(chunk))
    return out, framer


def test_cr():
    assert feed_all([b"9900302.00\r"])[0] == [b"9900302.00"]


def test_crlf_and_lf():
    assert feed_all([b"a\r\nb\nc\r"])[0] == [b"a", b"b", b"c"]


def test_crlf_split_between_reads_is_not_an_empty_line():
    assert feed_all([b"a\r", b"\nb\r", b"\n"])[0] == [b"a", b"b"]
    assert feed_all([b"a\r", b"\n", b"\n"])[0] == [b"a", b""]


def test_split_message():
    lines, framer = feed_all([b"99", b"003", b"02.0", b"0"])
    assert lines == [] and framer.buffered == 10
    assert framer.feed(b"\r") == [b"9900302.00"]
    assert framer.buffered == 0


def test_coalesced_messages():
    lines, framer = feed_all([b"one\rtwo\rthr"])
    assert lines == [b"one", b"two"]
    assert framer.feed(b"ee\r") == [b"three"]


def test_empty_lines():
    assert feed_all([b"\r\r\n\n"])[0] == [b"", b"", b""]
    assert feed_all([b""])[0] == []


def test_lf_cr_is_two_terminators():
    assert feed_all([b"a\n\rb\r"])[0] == [b"a", b"", b"b"]


def test_byte_by_byte():
    data = b"a\r\nbb\ncc\r\r\n"
    lines, _ = feed_all([bytes([c]) for c in data])
    assert lines == [b"a", b"bb", b"cc", b""]


def test_exact_limit_ok():
    assert feed_all([b"x" * 10 + b"\r"], max_line=10)[0] == [b"x" * 10]
    assert feed_all([b"x" * 10], max_line=10)[0] == []


def test_complete_line_too_long_keeps_earlier_lines():
    framer = LineFramer(10)
    with pytest.raises(LineTooLong) as info:
        framer.feed(b"ok\r" + b"x" * 11 + b"\rmore\r")
    assert info.value.lines == [b"ok"]
    assert str(info.value) == "line longer than 10 bytes"
    with pytest.raises(LineTooLong):
        framer.feed(b"a\r")


def test_unterminated_overflow_across_reads():
    framer = LineFramer(10)
    assert framer.feed(b"x" * 6) == []
    with pytest.raises(LineTooLong) as info:
        framer.feed(b"y" * 5)
    assert info.value.lines == []


def test_invalid_limit():
    with pytest.raises(ValueError):
        LineFramer(0)
