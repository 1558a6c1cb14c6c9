"""How many SQL statements each SIP2 message runs, and how many round trips to the database
server they take: upper bounds, so that a regression shows.

On PostgreSQL and MariaDB a statement is a round trip to the server, but the one that opens the
transaction carries its ``BEGIN``, writes queued with ``txn.execute_later`` ride with the next
statement or the ``COMMIT`` (which is a round trip of its own only when nothing rides with
it), and a message that only reads sends no ``BEGIN``/``COMMIT``. The session is the
kiosk session of ``bench/sip_mix.py`` (``tests/support/statements.py``), run as the gateway
runs it (request journal around the ACS, one transaction per message), on every engine; the
second session is counted (the first one writes the terminal's first journal row). The counts
are deterministic: the same data and the same instant give the same statements.
``python bench/statements.py --sql`` lists them.
"""

from __future__ import annotations

import pytest

from koha_gateway.ils import reference
from tests.ils.conftest import NOW
from tests.support import statements as counting

#: The most statements each message of the session may run (without the reference cache:
#: the reference data is read per request, as with ``--reference-max-age 0``).
BOUNDS = {
    "99": 1,
    "63": 7,
    "23": 5,
    "17": 4,
    "11": 22,
    "17b": 4,
    "29": 22,
    "09": 14,
    "35": 0,
}

#: The same with the reference cache, as the gateway runs by default.
CACHED_BOUNDS = {
    "99": 1,
    "63": 4,
    "23": 2,
    "17": 2,
    "11": 12,
    "17b": 2,
    "29": 12,
    "09": 12,
    "35": 0,
}

#: More statements a message may run on an engine: on PostgreSQL a checkout's writes run in a
#: savepoint (an error spoils the whole transaction there; SQLite and MariaDB undo just the
#: refused statement).
ENGINE_EXTRA = {"postgresql": {"11": 2}}

#: The most round trips each message may take on PostgreSQL and MariaDB, COMMIT included
#: (before transactions began lazily and writes were deferred: the statements + 2 on
#: PostgreSQL, + 1 on MariaDB).
ROUND_TRIP_BOUNDS = {
    "99": 1,
    "63": 7,
    "23": 5,
    "17": 4,
    "11": 19,
    "17b": 4,
    "29": 19,
    "09": 9,
    "35": 0,
}

#: The same with the reference cache.
CACHED_ROUND_TRIP_BOUNDS = {
    "99": 1,
    "63": 4,
    "23": 2,
    "17": 2,
    "11": 9,
    "17b": 2,
    "29": 9,
    "09": 7,
    "35": 0,
}

#: 63 for demo patrons with loans, an overdue, holds and fines (no statement per row).
PATRON_BOUNDS = {"23529000000001": 7, "23529000000002": 7}


@pytest.fixture
def kiosk(db, sipconfig):
    db.run_blocking(counting.add_kiosk, 0, NOW.date())
    return counting.context(db, sipconfig, NOW)


@pytest.mark.parametrize("cache", [False, True], ids=["uncached", "cached"])
def test_statements_per_message_of_the_kiosk_session(db, kiosk, cache):
    extra = ENGINE_EXTRA.get(db.engine.name, {})
    bounds = {
        kind: bound + extra.get(kind, 0)
        for kind, bound in (CACHED_BOUNDS if cache else BOUNDS).items()
    }
    if cache:
        # An hour's bound: the check and the first reads come before the counted messages.
        reference.install(db.engine, reference.ReferenceCache(3600))
        db.run_blocking(reference.cached)
    try:
        patron, item = counting.kiosk_patron(0), counting.kiosk_item(0)
        counting.count_session(db, kiosk, patron, item, NOW)
        counted, trips = {}, {}
        for kind, statements, answer, expect in counting.count_session(
            db, kiosk, patron, item, NOW
        ):
            assert answer.startswith(expect), (kind, answer)
            counted[kind] = len(statements)
            trips[kind] = statements.round_trips
    finally:
        reference.uninstall(db.engine)
    assert counted.keys() == bounds.keys()
    over = {kind: (n, bounds[kind]) for kind, n in counted.items() if n > bounds[kind]}
    assert not over, f"more statements than allowed (counted, bound): {over}"
    if db.engine.name != "sqlite":
        trip_bounds = CACHED_ROUND_TRIP_BOUNDS if cache else ROUND_TRIP_BOUNDS
        over = {k: (n, trip_bounds[k]) for k, n in trips.items() if n > trip_bounds[k]}
        assert not over, f"more round trips than allowed (counted, bound): {over}"


@pytest.mark.parametrize("cardnumber", sorted(PATRON_BOUNDS))
def test_patron_information_does_not_grow_with_loans_and_holds(db, kiosk, cardnumber):
    ts = NOW.strftime("%Y%m%d    %H%M%S")
    # The first lookup of a patron in a process reads which optional columns Koha's schema has.
    counting.run_request(db, kiosk, f"23001{ts}AOWEL|AA{cardnumber}|AC|")
    for summary in ("Y         ", "  Y       ", "     Y    "):
        answer, statements = counting.run_request(
            db, kiosk, f"63001{ts}{summary}AOWEL|AA{cardnumber}|"
        )
        assert answer.startswith("64"), answer
        assert len(statements) <= PATRON_BOUNDS[cardnumber], statements
