"""End to end through a real gateway process: the database guarantees seen from a kiosk.

* A PostgreSQL restart in the middle of a SIP session: the connection stays up, the ACS reports
  itself off-line and refuses circulation with a clear AF while the server is down, nothing that
  was acknowledged is lost, and service resumes without restarting the gateway.
* 50 kiosks checking out one item at the same moment (3M SIP2 2.00 Checkout, 11): exactly one
  ``ok=1``; every other kiosk gets ``ok=0`` with a screen message that explains it. On both
  engines.
"""

from __future__ import annotations

import re
import threading
import time
from datetime import timedelta

import pytest

from koha_gateway import demo
from koha_gateway.db import Database, schema
from koha_gateway.sip2.codec import parse
from tests.gateway import NOW, GatewayProcess, sip_date
from tests.support import server_unavailable
from tests.support.postgres import PostgresCluster, PostgresUnavailable

BLANK = " " * 18
ADA = "23529000000001"
UNAVAILABLE = "System unavailable, please see staff"
FAILED = "Request failed, please see staff"


def item(n: int) -> str:
    return f"399990000000{n:02d}"


def now() -> str:
    return sip_date()


def checkout(patron: str, barcode: str) -> str:
    return f"11YN{now()}{BLANK}AOWEL|AA{patron}|AB{barcode}|AC|"


def screen_messages(answer: str) -> list[str]:
    return [value for fid, value in parse(answer, responses=True).fields if fid == "AF"]


def load_demo(url: str) -> None:
    db = Database.from_url(url)
    try:
        db.run_blocking(schema.migrate)
        db.run_blocking(demo.load, NOW)
    finally:
        db.close()


@pytest.fixture
def private_cluster():
    try:
        cluster = PostgresCluster()
    except PostgresUnavailable as exc:
        server_unavailable(f"PostgreSQL: {exc}")
    try:
        cluster.start()
    except PostgresUnavailable as exc:
        cluster.destroy()
        server_unavailable(f"PostgreSQL: {exc}")
    yield cluster
    cluster.destroy()


def test_postgresql_restart_in_the_middle_of_a_sip_session(private_cluster, tmp_path):
    url = private_cluster.create_database("koha_sip")
    load_demo(url)
    gateway = GatewayProcess(tmp_path, url).start()
    try:
        with gateway.logged_in() as kiosk:
            before = kiosk.request(checkout(ADA, item(1)))
            assert before.startswith("121"), before
            assert kiosk.request("9900302.00")[2] == "Y"

            private_cluster.stop()
            started = time.monotonic()
            refused = kiosk.request(checkout(ADA, item(2)))
            assert refused.startswith("120"), refused
            assert UNAVAILABLE in screen_messages(refused)
            assert time.monotonic() - started < 15
            assert gateway.alive()

            private_cluster.start()
            # The kiosk sends the refused checkout again on the same connection: it works.
            again = kiosk.request(checkout(ADA, item(2)))
            assert again.startswith("121"), again
            assert kiosk.request("9900302.00")[2] == "Y"
    finally:
        gateway.stop()
    loans = gateway.query(
        "SELECT it.barcode FROM issues i JOIN items it ON it.itemnumber = i.itemnumber "
        "JOIN borrowers b ON b.borrowernumber = i.borrowernumber WHERE b.cardnumber = ? "
        "ORDER BY it.barcode",
        (ADA,),
    )
    barcodes = [row["barcode"] for row in loans]
    assert item(1) in barcodes and item(2) in barcodes


def test_acs_status_reports_offline_while_postgresql_is_down(private_cluster, tmp_path):
    # 3M SIP2 2.00 ACS Status (98): "on-line status" is N when the ACS cannot serve requests.
    # The 99 must therefore reach the database: a transaction that sends no statement never
    # notices that the server is gone.
    url = private_cluster.create_database("koha_sip")
    load_demo(url)
    gateway = GatewayProcess(tmp_path, url).start()
    try:
        with gateway.logged_in() as kiosk:
            assert kiosk.request("9900302.00")[2] == "Y"
            private_cluster.stop()
            status = kiosk.request("9900302.00")
            assert status.startswith("98") and status[2] == "N", status
            private_cluster.start()
            assert kiosk.request("9900302.00")[2] == "Y"
    finally:
        gateway.stop()


KIOSKS = 50


def _add_race_patrons(txn) -> list[str]:
    today = NOW.date()
    cards = []
    for n in range(KIOSKS):
        card = f"2352997{n:07d}"
        txn.insert(
            "INSERT INTO borrowers (cardnumber, surname, firstname, branchcode, categorycode, "
            "dateenrolled, dateexpiry) VALUES (?, 'Racer', ?, 'WEL', 'PT', ?, ?)",
            (card, f"No. {n}", today, today + timedelta(days=365)),
            pk="borrowernumber",
        )
        cards.append(card)
    return cards


def test_fifty_kiosks_race_for_one_item_exactly_one_wins(demo_url, make_gateway):
    db = Database.from_url(demo_url)
    try:
        cards = db.run_blocking(_add_race_patrons)
    finally:
        db.close()
    gateway = make_gateway()
    barcode = item(3)
    kiosks = [gateway.logged_in(timeout=60) for _ in range(KIOSKS)]
    barrier = threading.Barrier(KIOSKS)
    answers: dict[str, str] = {}

    def race(kiosk, card):
        request = checkout(card, barcode)
        barrier.wait(60)
        answers[card] = kiosk.request(request)

    threads = [
        threading.Thread(target=race, args=(kiosk, card))
        for kiosk, card in zip(kiosks, cards, strict=True)
    ]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    finally:
        for kiosk in kiosks:
            kiosk.close()
    assert len(answers) == KIOSKS
    winners = [card for card, answer in answers.items() if answer.startswith("121")]
    assert len(winners) == 1, winners
    for card, answer in answers.items():
        if card in winners:
            continue
        assert answer.startswith("120"), answer
        messages = screen_messages(answer)
        assert messages and all(m not in (UNAVAILABLE, FAILED) for m in messages), answer
    loans = gateway.query(
        "SELECT b.cardnumber FROM issues i JOIN items it ON it.itemnumber = i.itemnumber "
        "JOIN borrowers b ON b.borrowernumber = i.borrowernumber WHERE it.barcode = ?",
        (barcode,),
    )
    assert [row["cardnumber"] for row in loans] == winners


_TIMESTAMP = re.compile(r"\d{8} {4}\d{6}")


def _script() -> list[str]:
    """All 16 request/response pairs of 3M SIP2 2.00 (93 login is sent first)."""
    ts = now()
    grace = "23529000000002"
    return [
        "9900302.00",
        f"63000{ts}  Y       AOWEL|AA{ADA}|AD1234|",
        f"23000{ts}AOWEL|AA{ADA}|AC|AD1234|",
        f"17{ts}AOWEL|AB{item(6)}|",
        f"11YN{ts}{BLANK}AOWEL|AA{ADA}|AB{item(1)}|AC|",
        f"29NN{ts}{BLANK}AOWEL|AA{ADA}|AB{item(1)}|AC|",
        f"65{ts}AOWEL|AA{ADA}|AC|",
        f"09N{ts}{ts}AOWEL|AB{item(1)}|AC|",
        f"19{ts}AOWEL|AB{item(3)}|CHshelf 4B|",
        f"15+{ts}AOWEL|AA{ADA}|AB{item(2)}|BSWEL|",
        f"15-{ts}AOWEL|AA{ADA}|AB{item(2)}|",
        f"37{ts}0100NZDBV12.00|AOWEL|AA{grace}|BKtx-1|",
        f"01N{ts}AOWEL|ALcard left in machine|AA{ADA}|AC|",
        f"25{ts}AOWEL|AA{ADA}|AD1234|",
        f"35{ts}AOWEL|AA{ADA}|",
        "97",
    ]


def test_the_same_sixteen_message_pairs_answer_the_same_on_both_engines(tmp_path):
    """The issue's acceptance check: a demo gateway on PostgreSQL answers as one on SQLite."""
    from tests.support.postgres import cluster_or_skip

    sqlite_url = f"sqlite://{tmp_path / 'demo.sqlite'}"
    load_demo(sqlite_url)
    cluster = cluster_or_skip()
    pg_url = cluster.create_database()
    load_demo(pg_url)
    transcripts = {}
    for name, url in (("sqlite", sqlite_url), ("postgresql", pg_url)):
        workdir = tmp_path / name
        workdir.mkdir()
        gateway = GatewayProcess(workdir, url).start()
        try:
            with gateway.client() as kiosk:
                answers = [kiosk.login("joe", "joes")]
                answers += [kiosk.request(request) for request in _script()]
        finally:
            gateway.stop()
        transcripts[name] = [_TIMESTAMP.sub("<timestamp>", a) for a in answers]
    cluster.drop_database(pg_url.rsplit("/", 1)[1])
    assert transcripts["sqlite"][0] == "941"
    for index, (lite, pg) in enumerate(zip(transcripts["sqlite"], transcripts["postgresql"])):
        assert lite == pg, f"message {index}: sqlite {lite!r} != postgresql {pg!r}"
