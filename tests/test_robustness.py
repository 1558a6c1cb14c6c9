"""End-to-end robustness of a running gateway, on SQLite and on PostgreSQL.

* Fuzzed input (3M SIP2 2.00 "Request SC Resend" (96), "Error detection"): after a login, a few
  hundred random and mutated messages each get exactly one well-formed answer, and the
  gateway still answers a 99 SC Status afterwards.
* Durability (architecture.md, request path guarantee 4): several kiosks check out distinct
  items while the gateway is SIGKILLed; every loan that was acknowledged with a ``121`` is in
  ``issues`` afterwards.
* Idempotence (guarantee 3, the request journal): a resent checkout, checkin or fee paid (the
  same bytes) is answered with the same response and applied once, on the same connection and
  on a new one.

The tests start real ``twistd koha-gateway`` processes (``tests/gateway.py``) and talk to them
over sockets; nothing is timed, every loop is bounded.
"""

from __future__ import annotations

import random
import re
import signal
import threading
import time
from datetime import datetime, timedelta

import pytest

from koha_gateway.client import SIPError
from koha_gateway.db.engine import Database
from tests.gateway import NOW, sip_date

BLANK = " " * 18
ADA = "23529000000001"
GRACE = "23529000000002"
AVAILABLE = "39999000000001"
ON_LOAN_TO_ADA = "39999000000006"

# A well-formed answer: a two-digit message code, then printable text (no control characters).
WELL_FORMED = re.compile(r"\d\d[^\x00-\x1f\x7f-\x9f]*")
# With Koha's default account settings a field value is echoed as received (Koha does the
# same): control characters of the request may come back, but never a line terminator.
ONE_LINE = re.compile(r"\d\d[^\r\n]*")


def stamp(at: datetime | None = None) -> str:
    """SIP2 transaction date (3M SIP2 2.00 "Fixed-length fields": YYYYMMDDZZZZHHMMSS)."""
    return sip_date(at)


def add_kiosk_data(url: str, patrons: int, items_per_patron: int, prefix: str) -> dict:
    """Patrons ``<prefix>P<n>`` with items ``<prefix>I<n>-<k>`` each, and room for all loans.

    Returns {cardnumber: [barcodes]}. The loan limit (``maxissueqty``) is raised so that the
    rules never refuse one of these checkouts.
    """
    today = NOW.date()
    plan: dict[str, list[str]] = {}

    def add(txn):
        txn.execute(
            "UPDATE circulation_rules SET rule_value = '100000' WHERE rule_name = 'maxissueqty'"
        )
        for n in range(patrons):
            card = f"{prefix}P{n:04d}"
            txn.insert(
                "INSERT INTO borrowers (cardnumber, userid, surname, firstname, branchcode, "
                "categorycode, dateenrolled, dateexpiry) VALUES (?, ?, ?, ?, 'WEL', 'PT', ?, ?)",
                (card, card.lower(), "Storm", f"Kiosk {n}", today, today + timedelta(days=365)),
                pk="borrowernumber",
            )
            barcodes = plan[card] = []
            for k in range(items_per_patron):
                barcode = f"{prefix}I{n:04d}-{k:04d}"
                biblio = txn.insert(
                    "INSERT INTO biblio (title, author) VALUES (?, ?)",
                    (f"Durability title {n}/{k}", "Test, Robust"),
                    pk="biblionumber",
                )
                txn.insert(
                    "INSERT INTO items (biblionumber, barcode, homebranch, holdingbranch, "
                    "itype, itemcallnumber, price, replacementprice) "
                    "VALUES (?, ?, 'WEL', 'WEL', 'BK', 'ROBUST', 10, 10)",
                    (biblio, barcode),
                    pk="itemnumber",
                )
                barcodes.append(barcode)

    db = Database.from_url(url)
    try:
        db.run_blocking(add)
    finally:
        db.close()
    return plan


def checkout(patron: str, item: str, at: str | None = None) -> str:
    """3M SIP2 2.00, Checkout (11): no renewal policy, no block, patron and item."""
    return f"11YN{at or stamp()}{BLANK}AOWEL|AA{patron}|AB{item}|AC|"


def checkin(item: str, at: str | None = None) -> str:
    """3M SIP2 2.00, Checkin (09)."""
    at = at or stamp()
    return f"09N{at}{at}AOWEL|AB{item}|AC|"


def fee_paid(patron: str, amount: str, at: str | None = None) -> str:
    """3M SIP2 2.00, Fee Paid (37): fee type 01 (other), payment type 00 (cash), NZD."""
    return f"37{at or stamp()}0100NZDBV{amount}|AOWEL|AA{patron}|BKtxn-{amount}|"


# -- fuzzing ------------------------------------------------------------------------------------

SEEDS = (
    "9900302.00",
    f"23001{stamp()}AOWEL|AA{ADA}|AC|",
    f"63001{stamp()}Y         AOWEL|AA{ADA}|BP1|BQ5|",
    f"17{stamp()}AOWEL|AB{AVAILABLE}|",
    checkout(ADA, AVAILABLE),
    checkin(AVAILABLE),
    f"29NN{stamp()}{BLANK}AOWEL|AA{ADA}|AB{ON_LOAN_TO_ADA}|AC|",
    f"35{stamp()}AOWEL|AA{ADA}|",
    fee_paid(GRACE, "0.01"),
    f"15+{stamp()}AOWEL|AA{ADA}|AB{AVAILABLE}|",
    f"01N{stamp()}AOWEL|ALfuzz|AA23529000000004|",
    f"19{stamp()}AOWEL|AB{AVAILABLE}|CHfuzz|",
    f"65{stamp()}AOWEL|AA{ADA}|",
    f"25{stamp()}AOWEL|AA23529000000004|",
)
# No AD (patron password): failed password checks are slowed down on purpose (throttling), which
# is not what these tests are about.
FIELD_CODES = ("AA", "AB", "AC", "AO", "BP", "BQ", "BV", "CG", "CH", "AY", "AZ", "XX")
MAX_LINE = 8192


def _mutate(rng: random.Random, seed: str) -> bytes:
    data = bytearray(seed.encode("utf-8"))
    kind = rng.randrange(9)
    if kind == 0:  # truncated fixed part
        del data[rng.randrange(2, max(3, min(len(data), 30))) :]
    elif kind == 1:  # random field codes and values
        for _ in range(rng.randrange(1, 6)):
            code = rng.choice(FIELD_CODES) if rng.random() < 0.7 else _ascii(rng, 2)
            data += f"{code}{_ascii(rng, rng.randrange(0, 20))}|".encode()
    elif kind == 2:  # one huge field, the whole line just under the limit
        room = MAX_LINE - len(data) - 8 - rng.randrange(0, 64)
        data += b"AF" + bytes(rng.choice(b"ABCxyz019 -") for _ in range(room)) + b"|"
    elif kind == 3:  # invalid UTF-8
        for _ in range(rng.randrange(1, 5)):
            data.insert(rng.randrange(2, len(data) + 1), rng.choice((0xC3, 0xFF, 0x80, 0xED)))
    elif kind == 4:  # embedded NULs and control characters
        for _ in range(rng.randrange(1, 5)):
            data.insert(rng.randrange(0, len(data) + 1), rng.choice((0, 1, 7, 8, 27, 127)))
    elif kind == 5:  # random checksum (error detection)
        data += f"AY{rng.randrange(10)}AZ{rng.randrange(0x10000):04X}".encode()
    elif kind == 6:  # random bytes flipped
        for _ in range(rng.randrange(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    elif kind == 7:  # random message code, original body
        data[0:2] = f"{rng.randrange(100):02d}".encode()
    else:  # pure noise
        data = bytearray(rng.randrange(256) for _ in range(rng.randrange(1, 300)))
    # One line per message: no terminators inside, and never a new login.
    data = bytearray(b for b in data if b not in (0x0D, 0x0A))
    if data[:2] == b"93":
        data[0:2] = b"94"
    if not bytes(data).lstrip(b" \t\x00").strip():
        data = bytearray(b"XX")
    return bytes(data)


def _ascii(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789|^ ") for _ in range(n))


def _assert_well_formed(request: bytes, answer: bytes, pattern=WELL_FORMED) -> None:
    text = answer.decode("utf-8", errors="strict")
    assert pattern.fullmatch(text), f"answer {answer[:120]!r} to {request[:120]!r}"


def _printable_answers(tree, _process) -> None:
    """Koha's ``convert_nonprinting_characters`` on joe: control characters become spaces."""
    for login in tree.iter("{*}login"):
        if login.get("id") == "joe":
            login.set("convert_nonprinting_characters", " ")


def test_fuzzed_messages_get_printable_answers(make_gateway):
    """Every random or mutated message gets exactly one answer: two digits, then printable
    text; the gateway survives and still answers a 99."""
    gateway = make_gateway(customise=_printable_answers)
    rng = random.Random(20261129)
    client = gateway.logged_in()
    sent = 0
    try:
        for _ in range(400):
            payload = _mutate(rng, rng.choice(SEEDS))
            client.send_raw(payload + b"\r")
            try:
                answer = client.read_line()
            except (SIPError, OSError) as exc:
                raise AssertionError(f"no answer to {payload[:200]!r}: {exc}") from None
            _assert_well_formed(payload, answer)
            sent += 1
    finally:
        client.close()
    assert sent == 400
    assert gateway.alive()
    with gateway.logged_in() as fresh:
        assert fresh.request("9900302.00").startswith("98")


def test_fuzzed_messages_split_across_reads(gateway):
    """The same fuzz with Koha's default account settings, written in random slices with
    several messages per write: one single-line answer per message, in order."""
    rng = random.Random(7)
    payloads = [_mutate(rng, rng.choice(SEEDS)) for _ in range(120)]
    stream = b"".join(p + b"\r" for p in payloads)
    client = gateway.logged_in()
    try:
        position = 0
        while position < len(stream):
            size = rng.randrange(1, 4096)
            client.send_raw(stream[position : position + size])
            position += size
        for payload in payloads:
            _assert_well_formed(payload, client.read_line(), ONE_LINE)
        assert client.request("9900302.00").startswith("98")
    finally:
        client.close()
    assert gateway.alive()


def test_garbage_before_login_closes_only_that_connection(gateway):
    """RAW transport: a first message that is not a 93 closes that connection, nothing else."""
    rng = random.Random(3)
    with gateway.logged_in() as bystander:
        for _ in range(20):
            client = gateway.client()
            try:
                client.send_raw(bytes(rng.randrange(256) for _ in range(200)) + b"\r")
                try:
                    while True:
                        _assert_well_formed(b"(noise)", client.read_line(), ONE_LINE)
                except (SIPError, OSError):
                    pass
            finally:
                client.close()
        assert bystander.request("9900302.00").startswith("98")
    assert gateway.alive()


# -- durability ---------------------------------------------------------------------------------

KIOSKS = 8
ITEMS_PER_KIOSK = 25


def test_acknowledged_loans_survive_sigkill(make_gateway, demo_url):
    """SIGKILL during a checkout storm: every ``121`` that reached a kiosk is in ``issues``."""
    plan = add_kiosk_data(demo_url, KIOSKS, ITEMS_PER_KIOSK, "KILL")
    gateway = make_gateway()
    acknowledged: list[str] = []
    refused: list[str] = []
    lock = threading.Lock()
    ready = threading.Barrier(KIOSKS + 1)

    def kiosk(patron: str, barcodes: list[str]) -> None:
        try:
            client = gateway.logged_in()
        except Exception:
            ready.abort()
            raise
        ready.wait(30)
        try:
            for barcode in barcodes:
                answer = client.request(checkout(patron, barcode))
                with lock:
                    (acknowledged if answer.startswith("121") else refused).append(barcode)
        except (SIPError, OSError):
            return  # the gateway was killed under this kiosk
        finally:
            client.close()

    threads = [
        threading.Thread(target=kiosk, args=(patron, barcodes), daemon=True)
        for patron, barcodes in plan.items()
    ]
    for thread in threads:
        thread.start()
    ready.wait(30)
    total = KIOSKS * ITEMS_PER_KIOSK
    deadline = time.monotonic() + 60
    while len(acknowledged) < total // 3 and time.monotonic() < deadline:
        time.sleep(0.005)
    gateway.process.send_signal(signal.SIGKILL)
    gateway.process.wait(10)
    for thread in threads:
        thread.join(30)
    assert not any(t.is_alive() for t in threads)
    assert refused == []
    assert total // 3 <= len(acknowledged) < total, "the kill did not land mid-storm"

    loaned = {
        row["barcode"]
        for row in gateway.query(
            "SELECT items.barcode FROM issues JOIN items ON items.itemnumber = issues.itemnumber "
            "WHERE items.barcode LIKE 'KILL%'"
        )
    }
    missing = sorted(set(acknowledged) - loaned)
    assert missing == [], f"{len(missing)} acknowledged loans lost: {missing[:10]}"

    # The database is consistent: every loan has its item's on-loan date and one statistics row.
    restarted = make_gateway()
    with restarted.logged_in() as client:
        for barcode in acknowledged[:5]:
            answer = client.request(f"17{stamp()}AOWEL|AB{barcode}|")
            assert answer.startswith("1804"), answer  # circulation status 04: charged


# -- idempotence --------------------------------------------------------------------------------


def _count(gateway, sql: str, params=()) -> int:
    return len(gateway.query(sql, params))


def test_resent_checkout_is_applied_once(gateway):
    request = checkout(ADA, AVAILABLE)
    with gateway.logged_in() as client:
        first = client.request(request)
        assert first.startswith("121"), first
        assert client.request(request) == first
    with gateway.logged_in() as other:  # a kiosk that reconnected resends the same bytes
        assert other.request(request) == first
    assert (
        _count(
            gateway,
            "SELECT 1 FROM issues JOIN items ON items.itemnumber = issues.itemnumber "
            "WHERE items.barcode = ?",
            (AVAILABLE,),
        )
        == 1
    )
    assert (
        _count(
            gateway,
            "SELECT 1 FROM statistics JOIN items ON items.itemnumber = statistics.itemnumber "
            "WHERE items.barcode = ? AND statistics.type = 'issue'",
            (AVAILABLE,),
        )
        == 1
    )


def test_resent_checkin_is_applied_once(gateway):
    request = checkin(ON_LOAN_TO_ADA)
    with gateway.logged_in() as client:
        first = client.request(request)
        assert first.startswith("101"), first
        assert client.request(request) == first
    with gateway.logged_in() as other:
        assert other.request(request) == first
    returns = _count(
        gateway,
        "SELECT 1 FROM statistics JOIN items ON items.itemnumber = statistics.itemnumber "
        "WHERE items.barcode = ? AND statistics.type = 'return'",
        (ON_LOAN_TO_ADA,),
    )
    assert returns == 1
    assert (
        _count(
            gateway,
            "SELECT 1 FROM old_issues JOIN items ON items.itemnumber = old_issues.itemnumber "
            "WHERE items.barcode = ?",
            (ON_LOAN_TO_ADA,),
        )
        == 1
    )


def _grace_owes(gateway) -> float:
    rows = gateway.query(
        "SELECT amountoutstanding FROM accountlines JOIN borrowers "
        "ON borrowers.borrowernumber = accountlines.borrowernumber WHERE borrowers.cardnumber = ?",
        (GRACE,),
    )
    return round(sum(float(r["amountoutstanding"] or 0) for r in rows), 2)


def test_resent_fee_paid_is_applied_once(gateway):
    before = _grace_owes(gateway)
    request = fee_paid(GRACE, "2.00")
    with gateway.logged_in() as client:
        first = client.request(request)
        assert first.startswith("38Y"), first
        assert client.request(request) == first
    with gateway.logged_in() as other:
        assert other.request(request) == first
    assert _grace_owes(gateway) == pytest.approx(before - 2.00)
    # A new payment (a later transaction date) is a new request and is applied.
    later = fee_paid(GRACE, "2.00", sip_date(seconds=5))
    with gateway.logged_in() as client:
        assert client.request(later).startswith("38Y")
    assert _grace_owes(gateway) == pytest.approx(before - 4.00)


def test_concurrent_copies_of_one_request_apply_once(gateway):
    """The same checkout sent at once on several connections: one loan, one answer for all."""
    request = checkout(ADA, "39999000000002")
    clients = [gateway.logged_in() for _ in range(6)]
    answers: list[str] = []
    go = threading.Barrier(len(clients))

    def send(client):
        go.wait(10)
        answers.append(client.request(request))

    threads = [threading.Thread(target=send, args=(c,)) for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    for client in clients:
        client.close()
    assert len(answers) == len(clients)
    assert len(set(answers)) == 1 and answers[0].startswith("121"), answers
    assert (
        _count(
            gateway,
            "SELECT 1 FROM statistics JOIN items ON items.itemnumber = statistics.itemnumber "
            "WHERE items.barcode = ? AND statistics.type = 'issue'",
            ("39999000000002",),
        )
        == 1
    )


# -- koha_gateway.workers (its own parts; --workers is not an option of the plugin yet) ----------


def test_worker_arguments_replace_workers_with_the_listener_table():
    import json
    import socket

    from koha_gateway.workers import ADOPT_OPTION, worker_arguments

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        args = worker_arguments(
            [
                "--sip-config",
                "/etc/SIPconfig.xml",
                "--workers",
                "4",
                "--workers=2",
                "--sip-log",
                "x",
            ],
            {"127.0.0.1:6001/tcp": sock},
        )
        assert args[:-2] == ["--sip-config", "/etc/SIPconfig.xml", "--sip-log", "x"]
        assert args[-2] == f"--{ADOPT_OPTION}"
        assert json.loads(args[-1]) == [
            {"spec": "127.0.0.1:6001/tcp", "fd": sock.fileno(), "family": int(socket.AF_INET)}
        ]


def test_listening_sockets_are_adopted_and_serve(tmp_path):
    """The master's sockets, adopted through the table a worker receives, accept connections."""
    import os
    import socket
    import threading
    from types import SimpleNamespace

    from twisted.internet import reactor
    from twisted.internet.protocol import Factory, Protocol

    from koha_gateway.workers import adopt_listeners, listening_sockets, worker_arguments
    from tests.gateway import free_port

    port = free_port()
    address = SimpleNamespace(host="127.0.0.1", port=port, family="IPv4", spec=f"127.0.0.1:{port}")
    sockets = listening_sockets([SimpleNamespace(address=address)])
    try:
        sock = sockets[address.spec]
        assert sock.getsockname() == ("127.0.0.1", port) and sock.get_inheritable()
        table = worker_arguments([], {address.spec: sock})[-1]
        # A worker gets its own descriptor; here a duplicate stands in for the inherited one.
        table = table.replace(f'"fd":{sock.fileno()}', f'"fd":{os.dup(sock.fileno())}')
        endpoint = adopt_listeners(reactor, table)[address.spec]
        with pytest.raises(ValueError):
            adopt_listeners(reactor, "not json")
    finally:
        for sock in sockets.values():
            sock.close()

    class Hello(Protocol):
        def connectionMade(self):  # noqa: N802
            self.transport.write(b"941\r")
            self.transport.loseConnection()

    listening = []
    endpoint.listen(Factory.forProtocol(Hello)).addCallback(listening.append)
    answers = []

    def client():
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            answers.append(conn.recv(16))

    thread = threading.Thread(target=client)
    thread.start()
    deadline = time.monotonic() + 10
    while thread.is_alive() and time.monotonic() < deadline:
        reactor.iterate(0.01)
    thread.join(1)
    for port_ in listening:
        port_.stopListening()
    reactor.iterate(0)
    assert answers == [b"941\r"]
