"""Inline reads end to end (SQLite): a gateway that answers the read messages (99, 63, 17, 23)
on its reactor thread answers exactly what one with ``?inline_reads=off`` answers, also when a
read writes ``borrowers.lastseen`` and while another process holds the write lock."""

from __future__ import annotations

import re
import sqlite3

import pytest

from koha_gateway.acs.fallback import UNAVAILABLE
from koha_gateway.db.engine import Database
from koha_gateway.ils.sysprefs import set_syspref
from tests.gateway import GatewayProcess, copy_database

NOW = "20261129    120000"
ADA = "23529000000001"
GRACE = "23529000000002"
ALAN = "23529000000003"
EDSGER = "23529000000004"
_DATE = re.compile(r"\d{8} {4}\d{6}")


def item(n: int) -> str:
    return f"399990000000{n:02d}"


READS = [
    "9900302.00",
    f"63000{NOW}  Y       AOWEL|AA{ADA}|AD1234|",
    f"63000{NOW}Y         AOWEL|AA{GRACE}|AD1234|BP1|BQ5|",
    f"63000{NOW}          AOWEL|AA{ALAN}|",
    f"63000{NOW}          AOWEL|AAnosuchpatron|",
    f"23000{NOW}AOWEL|AA{ADA}|AC|AD1234|",
    f"23000{NOW}AOWEL|AA{EDSGER}|AC|AD9999|",
    *(f"17{NOW}AOWEL|AB{item(n)}|" for n in (1, 6, 7, 8, 9, 10, 11, 12, 99)),
    f"63000{NOW}  Y       AOWEL|AA{ADA}|AD1234|",  # a second time: lastseen is set already
]


def timeless(answer: str) -> str:
    """The answer without its dates (each gateway's clock runs on from the pinned instant)."""
    return _DATE.sub("<date>", answer)


@pytest.fixture
def pair(tmp_path, demo_template):
    """``pair(options, prefs)``: two gateways on two copies of the demo database, with inline
    reads on (the default) and off, both with the URL ``options`` and system preferences."""
    started: list[GatewayProcess] = []

    def start(options: str = "", prefs: dict[str, str] | None = None):
        gateways = []
        for mode in ("on", "off"):
            path = tmp_path / f"{mode}.sqlite"
            url = copy_database(demo_template, path)
            if prefs:
                db = Database.from_url(url)
                try:
                    for name, value in prefs.items():
                        db.run_blocking(set_syspref, name, value)
                finally:
                    db.close()
            query = "&".join(part for part in (options, f"inline_reads={mode}") if part)
            workdir = tmp_path / f"gw-{mode}"
            workdir.mkdir()
            gateway = GatewayProcess(workdir, f"{url}?{query}")
            started.append(gateway)
            gateways.append((gateway.start(), path))
        return gateways

    yield start
    for gateway in started:
        gateway.stop()


def answers(gateway, requests) -> list[str]:
    with gateway.logged_in() as client:
        return [timeless(client.request(text)) for text in requests]


def test_read_messages_get_the_same_answers_inline_and_on_the_pool(pair):
    (on, _), (off, _) = pair()
    first = answers(on, READS)
    assert first == answers(off, READS)
    assert first[0].startswith("98YYYY")
    assert "AEAda Lovelace" in first[1] and "|AU39999000000006|" in first[1]
    assert first[7].startswith("18") and "<date>AB39999000000001|AJ" in first[7]


def test_a_read_that_writes_lastseen_falls_back_and_writes_it(pair):
    (on, _), (off, _) = pair(prefs={"TrackLastPatronActivityTriggers": "connection"})
    assert answers(on, READS) == answers(off, READS)
    for gateway in (on, off):
        seen = gateway.query(
            "SELECT cardnumber, lastseen FROM borrowers WHERE cardnumber IN (?, ?, ?) "
            "ORDER BY cardnumber",
            (ADA, GRACE, ALAN),
        )
        assert [str(row["lastseen"])[:10] for row in seen] == ["2026-11-29"] * 3, seen


def test_while_another_process_holds_the_write_lock(pair):
    """Writes and reads that write are answered ok=0 after the busy timeout, as before; reads
    that only read are answered from the last committed state inline, instead of ok=0."""
    (on, on_path), (off, off_path) = pair(
        "busy_timeout=300", prefs={"TrackLastPatronActivityTriggers": "connection"}
    )
    # Warm: the reference data are in memory (a request that finds them due for a check
    # leaves the check to the database threads, where it would wait for the lock).
    warm = [READS[0], *READS[7:10]]  # no patron: none has a lastseen of today yet
    assert answers(on, warm) == answers(off, warm)
    held = []
    try:
        for path in (on_path, off_path):
            writer = sqlite3.connect(str(path), isolation_level=None)
            writer.execute("BEGIN IMMEDIATE")
            held.append(writer)
        locked = [
            f"11YN{NOW}{NOW}AOWEL|AA{ADA}|AB{item(1)}|AC|",  # a checkout
            f"63000{NOW}          AOWEL|AA{GRACE}|",  # writes lastseen: falls back, waits
            f"17{NOW}AOWEL|AB{item(6)}|",  # only reads
        ]
        inline, pool = answers(on, locked), answers(off, locked)
        assert inline[:2] == pool[:2]
        assert inline[0].startswith("120") and UNAVAILABLE in inline[0]
        assert inline[1].startswith("64") and UNAVAILABLE in inline[1]
        assert pool[2].startswith("18") and UNAVAILABLE in pool[2]
        assert UNAVAILABLE not in inline[2] and "AB39999000000006|" in inline[2]
        on.wait_for_log("database unavailable for 11")
        off.wait_for_log("database unavailable for 17")
    finally:
        for writer in held:
            writer.execute("ROLLBACK")
            writer.close()
    # The lock is gone: both answer as usual again.
    assert answers(on, READS) == answers(off, READS)
