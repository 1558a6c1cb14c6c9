"""How many SQL statements each SIP2 message runs, and how many round trips to the database
server they take: upper bounds, so that a regression shows.

On PostgreSQL and MariaDB a statement is a round trip to the server, but the one that opens the
transaction carries its ``BEGIN``, writes queued with ``txn.execute_later`` ride with the next
statement or the ``COMMIT`` (which is a round trip of its own only when nothing rides with
it), and a message that only reads sends no ``BEGIN``/``COMMIT``. The session is the
kiosk session of ``bench/sip_mix.py`` (``tests/support/statements.py``), run as the gateway
runs it (request journal around the ACS, one transaction per message), on every engine; the
second session is counted (the first one writes the terminal's first journal rows), with
timestamps a second later, as a kiosk's next session has: its bytes are its own, as those of
new requests are (a request with the bytes of a journalled one reads the item's and patron's
state first, to tell a resend; :func:`test_the_same_bytes_again_read_the_fingerprint_first`).
The counts are deterministic: the same data and the same instant give the same statements.
``python bench/statements.py --sql`` lists them.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from koha_gateway.ils import reference
from tests.ils.conftest import NOW
from tests.support import statements as counting

#: The most statements each message of the session may run (without the reference cache:
#: the reference data is read per request, as with ``--reference-max-age 0``). The writing
#: messages (11, 29, 09) include the journal's deletion of the terminal's expired rows, a
#: deferred write that travels with the journal's own write (no round trip of its own).
BOUNDS = {
    "99": 1,
    "63": 7,
    "23": 5,
    "17": 4,
    "11": 23,
    "17b": 4,
    "29": 23,
    "09": 15,
    "35": 0,
}

#: The same with the reference cache, as the gateway runs by default.
CACHED_BOUNDS = {
    "99": 1,
    "63": 4,
    "23": 2,
    "17": 2,
    "11": 13,
    "17b": 2,
    "29": 13,
    "09": 13,
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
            db, kiosk, patron, item, NOW + timedelta(seconds=1)
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


#: What a writing message whose bytes were journalled within the retry window (the item or
#: patron changed since: not a resend) runs more than a new one: the fingerprint of the item
#: and patron before it is applied (the number of the patron, then their and the item's state).
SAME_BYTES_EXTRA = {"11": 2, "29": 2, "09": 1}


def test_the_same_bytes_again_read_the_fingerprint_first(db, kiosk):
    """The session again with the same bytes (the first one's rows are within the window,
    the states changed since): each writing message reads the state to compare, then is
    applied and updates its row."""
    reference.install(db.engine, reference.ReferenceCache(3600))
    db.run_blocking(reference.cached)
    try:
        patron, item = counting.kiosk_patron(0), counting.kiosk_item(0)
        counting.count_session(db, kiosk, patron, item, NOW)
        again = counting.count_session(db, kiosk, patron, item, NOW)
    finally:
        reference.uninstall(db.engine)
    extra = ENGINE_EXTRA.get(db.engine.name, {})
    for kind, statements, answer, expect in again:
        if kind not in SAME_BYTES_EXTRA:
            continue
        assert answer.startswith(expect), (kind, answer)
        bound = CACHED_BOUNDS[kind] + extra.get(kind, 0) + SAME_BYTES_EXTRA[kind]
        assert len(statements) <= bound, (kind, len(statements), bound)
        if db.engine.name != "sqlite":
            trip_bound = CACHED_ROUND_TRIP_BOUNDS[kind] + SAME_BYTES_EXTRA[kind]
            assert statements.round_trips <= trip_bound, (kind, statements.round_trips)


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
