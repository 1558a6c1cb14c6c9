"""bench/ceiling.py and bench/load.py: the canned-answer server and the load client, over real
sockets; the checks of an answer (code, sequence echo, checksum) as pure functions."""

from __future__ import annotations

import asyncio
import socket
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import ceiling  # noqa: E402
import load  # noqa: E402
from harness import Ceiling  # noqa: E402

from koha_gateway.sip2.checksum import checksum, verify  # noqa: E402


def sequenced(text: str, seq: int) -> bytes:
    data = f"{text}AY{seq}AZ".encode()
    return data + checksum(data).encode()


def test_frame_adds_error_detection_and_cr():
    data = load.frame("9900302.00", 3)
    assert data.endswith(b"\r")
    assert data[:-1].startswith(b"9900302.00AY3AZ")
    assert verify(data[:-1])
    assert load.frame("9900302.00", None) == b"9900302.00\r"


def test_check_accepts_the_expected_answer():
    assert load.check(sequenced("941", 4), b"941", 4) is None
    assert load.check(b"64 ...|CQY|", b"64", None, b"|CQY|") is None


@pytest.mark.parametrize(
    "answer, expect, seq, contains, problem",
    [
        (sequenced("940", 1), b"941", 1, b"", "expected 941"),
        (sequenced("24YY|CQN|", 1), b"24", 1, b"|CQY|", "no |CQY|"),
        (sequenced("98Y", 2), b"98", 1, b"", "sequence 1 not echoed"),
        (b"98YAY1AZ0000", b"98", 1, b"", "bad checksum"),
        (b"98Y", b"98", 1, b"", "sequence 1 not echoed"),
    ],
)
def test_check_names_what_is_wrong(answer, expect, seq, contains, problem):
    assert problem in load.check(answer, expect, seq, contains)


def test_ceiling_answers_each_request_code_with_the_sequence_echoed():
    plain, seqd = ceiling.answers(b"\r")
    resend = b"96\r"
    for code, expect in [
        (b"93", b"941"),
        (b"99", b"98"),
        (b"63", b"64"),
        (b"23", b"24"),
        (b"17", b"18"),
        (b"11", b"121"),
        (b"09", b"101"),
        (b"29", b"301"),
        (b"35", b"36"),
    ]:
        request = sequenced(code.decode() + "rest|", 7)
        answer = ceiling.answer(request, plain, seqd, resend)
        assert answer.endswith(b"\r")
        assert load.check(answer[:-1], expect, 7) is None, answer
        assert ceiling.answer(code + b"rest|", plain, seqd, resend).startswith(expect)
    # A wrong checksum is answered "96", as the gateway does; an unknown code too.
    assert ceiling.answer(b"9900302.00AY1AZ0000", plain, seqd, resend) == resend
    assert ceiling.answer(b"XX", plain, seqd, resend) == resend


@pytest.fixture(scope="module")
def running_ceiling():
    server = Ceiling(cpus=None, nofile=4096)
    server.start()
    yield server
    server.stop()


def test_ceiling_process_speaks_sip2_over_a_socket(running_ceiling):
    with socket.create_connection(("127.0.0.1", running_ceiling.port), timeout=10) as sock:
        sock.sendall(sequenced("9300CNjoe|COjoes|CP|", 0) + b"\r" + b"9900302.00\r\n")
        data = b""
        while data.count(b"\r") < 2:
            chunk = sock.recv(4096)
            assert chunk, "connection closed"
            data += chunk
    first, second, _ = data.split(b"\r")
    assert load.check(first, b"941", 0) is None
    assert second.startswith(b"98YYYYNN")


def test_load_client_drives_the_ceiling_back_to_back(running_ceiling):
    plan = load.Plan("saturation", 4, 0.5, warmup=0.1)
    result = load.measure(plan, running_ceiling.port, "ceiling", running_ceiling.cpu_seconds)
    assert result.errors == 0, result.first_errors
    assert result.messages > 0
    assert len(result.latencies) == result.messages
    assert result.rate > 0 and result.cpu_seconds >= 0


def test_load_client_sends_pairs_with_their_own_accounts(running_ceiling):
    plan = load.Plan("pairs", 3, 0.3, warmup=0.1)
    assert plan.logins() == [(f"sc{n:04d}", load.ACCOUNT_PASSWORD) for n in range(3)]
    assert load.Plan("pairs", 2, 1, shared_account=True).logins() == [("joe", "joes")] * 2
    result = load.measure(plan, running_ceiling.port, "ceiling")
    assert result.errors == 0, result.first_errors
    assert result.messages > 0
    assert result.rate == pytest.approx(result.messages / 0.3 / 2)


def test_load_client_at_a_rate_counts_from_when_each_message_was_due(running_ceiling):
    plan = load.Plan("rate", 5, 1.0, rate=4)
    result = load.measure(plan, running_ceiling.port, "ceiling")
    assert result.errors == 0, result.first_errors
    # 5 connections x 4 a second x 1 s, give or take the first and last interval.
    assert 15 <= result.messages <= 25
    assert all(latency >= 0 for latency in result.latencies)


def test_load_client_reports_wrong_answers(running_ceiling):
    steps = [load.Step("99", lambda: "9900302.00", b"99")]  # the ceiling answers 98
    result = asyncio.run(
        load.back_to_back(running_ceiling.port, "ceiling", [("joe", "joes")], [steps], 0.2, 0.0)
    )
    assert result.errors == result.messages > 0
    assert "expected 99" in result.first_errors[0]
