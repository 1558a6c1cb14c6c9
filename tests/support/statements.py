"""Counting the SQL statements a SIP2 request runs, per message type.

On PostgreSQL and MariaDB every statement is one round trip to the server, so the count is a
cost of the request that neither the machine's load nor the engine's speed changes. The
counting runs the request as the gateway does (``ils.journal.handle`` around ``ACS.handle``,
one transaction, a new :class:`RequestContext` per message) in the calling process:

* :func:`recording` records every statement a :class:`~koha_gateway.db.engine.Txn` runs
  while it is active (``execute``, ``query``, ``one``, ``scalar``, ``insert``, ``upsert``,
  ``executemany``, ``execute_later`` and the savepoints); the transaction's own
  ``BEGIN``/``COMMIT`` are not statements of the request and are not counted as such, but
  ``recording().round_trips`` counts the round trips to the server, theirs included;
* :func:`add_kiosk` adds a patron and an available item of its own (as ``bench/sip_mix.py``
  gives every kiosk), :func:`session` the kiosk session of ``bench/sip_mix.py``;
* :func:`count_session` runs a session and returns ``[(kind, statements, answer)]``.

Used by ``tests/ils/test_statement_counts.py`` (upper bounds per message type) and
``bench/statements.py`` (the table on every engine, ``--sql`` lists the statements).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from koha_gateway import demo
from koha_gateway.acs.context import RequestContext
from koha_gateway.acs.dispatch import ACS
from koha_gateway.db.engine import Txn
from koha_gateway.ils import journal
from koha_gateway.ils import sysprefs as ils_sysprefs
from koha_gateway.sip2.codec import parse

BLANK = " " * 18

#: The kinds of :func:`session`, in order (``17b`` is the 17 sent while the item is on loan).
KINDS = ("99", "63", "23", "17", "11", "17b", "29", "09", "35")

_lock = threading.Lock()


class Recording(list):
    """The SQL of the statements run (a list of strings), and ``round_trips``: the round trips
    to the server they took, ``BEGIN`` and ``COMMIT`` included (on PostgreSQL and MariaDB a
    statement opening the transaction carries ``BEGIN``, and writes queued with
    ``txn.execute_later`` ride with the next statement or the ``COMMIT``). On SQLite there
    is no server: ``round_trips`` counts the statements as sent to the library."""

    round_trips = 0


@contextmanager
def recording() -> Iterator[Recording]:
    """Yield a :class:`Recording` that collects the SQL of every statement run through a
    ``Txn`` (in any thread) until the block ends, and counts the round trips."""
    statements = Recording()
    with _lock:
        execute, executemany, defer, send = Txn._execute, Txn.executemany, Txn._defer, Txn._send

        def counted_execute(self, sql, params):
            statements.append(sql)
            return execute(self, sql, params)

        def counted_executemany(self, sql, seq_of_params):
            statements.append(sql)
            statements.round_trips += 1
            return executemany(self, sql, seq_of_params)

        def counted_defer(self, text, params):
            statements.append(text)
            return defer(self, text, params)

        def counted_send(self, parts, params):
            statements.round_trips += 1
            return send(self, parts, params)

        Txn._execute, Txn.executemany = counted_execute, counted_executemany
        Txn._defer, Txn._send = counted_defer, counted_send
        try:
            yield statements
        finally:
            Txn._execute, Txn.executemany, Txn._defer, Txn._send = (
                execute,
                executemany,
                defer,
                send,
            )


def kiosk_patron(n: int) -> str:
    return f"2352970{n:07d}"


def kiosk_item(n: int) -> str:
    return f"3999970{n:07d}"


def add_kiosk(txn, n: int, today) -> None:
    """Kiosk ``n``'s patron (category PT at WEL, no loans, holds or fines) and its available
    item (a BK at WEL, a title of its own)."""
    txn.insert(
        "INSERT INTO borrowers (cardnumber, userid, surname, firstname, branchcode, "
        "categorycode, dateenrolled, dateexpiry) VALUES (?, ?, ?, ?, 'WEL', 'PT', ?, ?)",
        (kiosk_patron(n), f"kiosk{n}", "Kiosk", f"Patron {n}", today, today + timedelta(365)),
        pk="borrowernumber",
    )
    demo.add_title_with_item(
        txn,
        title=f"Statement count title {n}",
        author="Count, Ing",
        barcode=kiosk_item(n),
        branch="WEL",
        itemtype="BK",
        callnumber="COUNT",
        price=10,
        accessioned=str(today),
    )


def session(patron: str, item: str, now: datetime) -> list[tuple[str, str, str]]:
    """``(kind, request, expected answer prefix)`` of one kiosk session (``bench/sip_mix.py``):
    99, 63, 23, 17, 11, 17 (on loan), 29, 09, 35."""
    ts = now.strftime("%Y%m%d    %H%M%S")
    return [
        ("99", "9900302.00", "98"),
        ("63", f"63001{ts}          AOWEL|AA{patron}|", "64"),
        ("23", f"23001{ts}AOWEL|AA{patron}|AC|", "24"),
        ("17", f"17{ts}AOWEL|AB{item}|", "18"),
        ("11", f"11YN{ts}{BLANK}AOWEL|AA{patron}|AB{item}|AC|", "121"),
        ("17b", f"17{ts}AOWEL|AB{item}|", "18"),
        ("29", f"29NN{ts}{BLANK}AOWEL|AA{patron}|AB{item}|AC|", "301"),
        ("09", f"09N{ts}{ts}AOWEL|AB{item}|AC|", "101"),
        ("35", f"35{ts}AOWEL|AA{patron}|", "36"),
    ]


def context(db, sipconfig, now: datetime, account_id: str = "joe", peer: str = "127.0.0.1"):
    """A factory of :class:`RequestContext` objects as the gateway builds one per message
    (sysprefs from the database with SIPconfig.xml's overrides, read once here)."""
    account = sipconfig.accounts[account_id]
    institution = sipconfig.institutions[account.institution]
    prefs = ils_sysprefs.Sysprefs(db.run_blocking(ils_sysprefs.load)).with_overrides(
        sipconfig.syspref_overrides, account.syspref_overrides
    )

    def build() -> RequestContext:
        return RequestContext(
            account=account,
            institution=institution,
            sysprefs=prefs,
            now=now,
            protocol_version=2,
            staff_userid=account.id,
            peer=peer,
        )

    return build


def run_request(db, make_context, raw: str, acs: ACS | None = None) -> tuple[str, Recording]:
    """Run ``raw`` as the gateway does; return ``(answer text, statements)`` (statements
    also carry ``round_trips``)."""
    acs = acs or ACS()
    msg = parse(raw)
    ctx = make_context()
    with recording() as statements:
        response = db.run_blocking(journal.handle, ctx, msg, raw.encode(), acs.handle)
    return response.text(), statements


def count_session(db, make_context, patron: str, item: str, now: datetime):
    """Run one :func:`session`; ``[(kind, statements, answer, expected prefix)]``."""
    acs = ACS()
    out = []
    for kind, raw, expect in session(patron, item, now):
        answer, statements = run_request(db, make_context, raw, acs)
        out.append((kind, statements, answer, expect))
    return out
