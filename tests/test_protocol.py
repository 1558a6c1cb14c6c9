"""The Twisted adapter (koha_gateway/protocol.py) in one process: a StringTransport for the
socket, task.Clock for the reactor's time, the real sans-I/O session and the shipped
SIPconfig.xml. The gateway behind the adapter is replaced by one whose answers the test
releases, so that ordering, back-pressure and timeouts can be observed step by step (the real
gateway is exercised end to end in the test_e2e_* files).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from twisted.internet import defer, task

try:  # Twisted >= 23.8
    from twisted.internet.testing import StringTransport
except ImportError:  # Debian bookworm's Twisted 22.4
    from twisted.test.proto_helpers import StringTransport

from koha_gateway.acs.context import RequestContext
from koha_gateway.auth.authenticator import LoginResult
from koha_gateway.config import load_sip_config
from koha_gateway.protocol import SIPFactory
from koha_gateway.sip2.codec import Response
from koha_gateway.sip2.output import OutputPolicy
from tests.gateway import SHIPPED_SIPCONFIG

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
STAMP = "20261129    120000"
LOGIN = b"9300CNjoe|COjoes|CP|\r"


class Auth:
    """SIP account check: joe/joes is right, anything else wrong."""

    def __init__(self):
        self.logins: list[str] = []

    def login_staff(self, userid, password, peer, *, known, config_password):
        self.logins.append(userid)
        ok = known and password == config_password
        return defer.succeed(LoginResult(ok, "ok" if ok else "wrong password"))

    def patron_check(self, patron, password):
        return None  # never decided in the transaction here: check_patron

    def check_patron(self, patron, password, peer):
        return defer.succeed(True)


class Gateway:
    """Answers every request with a 24 once the test releases it (``release``)."""

    def __init__(self, config):
        self.config = config
        self.connections: set = set()
        self.auth = Auth()
        self.pending: list[tuple[object, defer.Deferred]] = []

    def output_policy(self, account):
        return OutputPolicy.from_account(account)

    def context(self, account, session, peer):
        return RequestContext(
            account=account,
            institution=self.config.institutions[account.institution],
            sysprefs=None,
            now=NOW,
            peer=peer,
        )

    def apply(self, ctx, msg, raw, check=None):
        d = defer.Deferred()
        self.pending.append((msg, d))
        return d

    def release(self, n: int = 1):
        for _ in range(n):
            msg, d = self.pending.pop(0)
            d.callback(Response("24").fixed(" " * 14, "000", STAMP).add("AA", msg.get("AA")))

    @staticmethod
    def is_unavailable(failure):
        return False


@pytest.fixture
def config():
    return load_sip_config(SHIPPED_SIPCONFIG)


@pytest.fixture
def connect(config):
    """Factory: ``connect(service_index=0)`` -> (protocol, transport, gateway, clock)."""

    def make(service_index: int = 0):
        clock = task.Clock()
        gateway = Gateway(config)
        raw = [s for s in config.services if s.transport == "RAW"][service_index]
        factory = SIPFactory(gateway, raw, clock)
        protocol = factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        return protocol, transport, gateway, clock

    return make


def lines(transport) -> list[bytes]:
    return [line for line in transport.value().split(b"\r\n") if line]


def patron_status(n: int) -> bytes:
    return f"23000{STAMP}AOWEL|AA{n}|AC|\r".encode()


def test_a_login_split_across_packets_is_one_message(connect):
    protocol, transport, gateway, _ = connect()
    for part in (LOGIN[:5], LOGIN[5:13], LOGIN[13:]):
        protocol.dataReceived(part)
    assert lines(transport) == [b"941"]
    assert gateway.auth.logins == ["joe"]
    assert protocol in gateway.connections


def test_a_wrong_password_answers_940_and_keeps_the_connection(connect):
    protocol, transport, gateway, _ = connect()
    protocol.dataReceived(b"9300CNjoe|COnope|CP|\r")
    assert lines(transport) == [b"940"]
    assert not transport.disconnecting


def test_a_request_before_login_closes_the_connection(connect):
    protocol, transport, gateway, _ = connect()
    protocol.dataReceived(patron_status(1))
    assert transport.disconnecting
    assert gateway.pending == []


def test_requests_are_answered_in_order_one_at_a_time(connect):
    protocol, transport, gateway, _ = connect()
    protocol.dataReceived(LOGIN + patron_status(1) + patron_status(2) + patron_status(3))
    assert [m.get("AA") for m, _ in gateway.pending] == ["1"]  # the next waits
    gateway.release()
    assert [m.get("AA") for m, _ in gateway.pending] == ["2"]
    gateway.release(1)
    gateway.release(1)
    answers = lines(transport)
    assert answers[0] == b"941"
    assert [re.search(rb"AA(\d+)\|", a).group(1) for a in answers[1:]] == [b"1", b"2", b"3"]


def test_a_connection_sending_faster_than_it_is_answered_is_paused(connect):
    protocol, transport, gateway, _ = connect()
    protocol.dataReceived(LOGIN)
    burst = b"".join(patron_status(n) for n in range(40))
    protocol.dataReceived(burst)
    assert transport.producerState == "paused"
    released = 0
    while transport.producerState == "paused":
        gateway.release()
        released += 1
        assert released < 40
    # Resumed once the backlog is down to half the limit; nothing was dropped.
    assert 20 <= released < 40
    while gateway.pending:
        gateway.release()
    assert len(lines(transport)) == 1 + 40
    assert transport.producerState == "producing"


def test_the_idle_timeout_closes_a_logged_in_connection(connect, config):
    protocol, transport, gateway, clock = connect()
    protocol.dataReceived(LOGIN)
    idle = config.idle_timeout(protocol.service)
    assert idle
    clock.advance(idle - 1)
    assert not transport.disconnecting
    protocol.dataReceived(patron_status(1))  # activity restarts the idle time
    gateway.release()
    clock.advance(idle - 1)
    assert not transport.disconnecting
    clock.advance(2)
    assert transport.disconnecting


def test_the_login_timeout_closes_a_silent_connection(connect, config):
    protocol, transport, _, clock = connect()
    clock.advance(config.login_timeout(protocol.service) + 1)
    assert transport.disconnecting


def test_an_answer_after_the_connection_closed_is_not_written(connect):
    protocol, transport, gateway, clock = connect()
    protocol.dataReceived(LOGIN + patron_status(1) + patron_status(2))
    written = transport.value()
    protocol.connectionLost(None)
    gateway.release()  # the transaction still finishes
    assert transport.value() == written
    assert gateway.pending == []  # the queued second request was dropped with the connection
    assert protocol not in gateway.connections
    assert clock.getDelayedCalls() == []  # no timer left behind
