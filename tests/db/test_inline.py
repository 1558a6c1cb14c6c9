"""Inline reads (``Database.run(..., inline=True)``): on SQLite the transaction is tried on the
reactor thread's own connection (``query_only``, busy timeout 0) and falls back to the pool
when it meets a lock or tries to write; PostgreSQL and MariaDB always use the pool."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from koha_gateway.db.engine import (
    Database,
    DatabaseError,
    WouldWait,
    _fall_back_reason,
    must_not_wait,
)
from koha_gateway.db.url import InvalidDatabaseURL, parse_url

TABLE = "CREATE TABLE t (id INTEGER PRIMARY KEY, code TEXT UNIQUE, n INTEGER NOT NULL DEFAULT 0)"


@pytest.fixture
def sqlite_path(tmp_path):
    path = tmp_path / "inline.sqlite"
    db = Database.from_url(f"sqlite://{path}")
    try:
        db.run_blocking(lambda txn: txn.execute(TABLE))
        db.run_blocking(
            lambda txn: txn.executemany("INSERT INTO t (code) VALUES (?)", [("a",), ("b",)])
        )
    finally:
        db.close()
    return path


@pytest.fixture
def open_db(reactor_thread):
    """``open_db(url)``: a Database bound to the private reactor, closed after the test."""
    opened = []

    def open_(url):
        db = reactor_thread.call(Database.from_url, url, reactor=reactor_thread.reactor)
        opened.append(db)
        return db

    yield open_
    for db in opened:
        reactor_thread.call(db.close)


def where(txn):
    """The thread the transaction ran on and what it read."""
    rows = txn.query("SELECT code, n FROM t ORDER BY code")
    return threading.get_ident(), rows


def test_inline_read_runs_on_the_reactor_thread_and_answers_as_the_pool(
    sqlite_path, open_db, reactor_thread
):
    reactor = reactor_thread.call(threading.get_ident)
    on = open_db(f"sqlite://{sqlite_path}")
    off = open_db(f"sqlite://{sqlite_path}?inline_reads=off")

    def fired_at_once():
        d = on.run(where, inline=True)
        assert d.called  # already fired when run() returns
        return d

    inline_thread, inline_rows = reactor_thread.call(fired_at_once)
    pool_thread, pool_rows = reactor_thread.call(on.run, where)  # inline not asked
    off_thread, off_rows = reactor_thread.call(off.run, where, inline=True)
    assert inline_rows == pool_rows == off_rows == [{"code": "a", "n": 0}, {"code": "b", "n": 0}]
    assert inline_thread == reactor
    assert pool_thread != reactor and off_thread != reactor
    assert (on.inline_answered, on.inline_fallbacks) == (1, 0)
    assert (off.inline_answered, off.inline_fallbacks) == (0, 0)


def test_the_option_is_on_or_off_and_only_for_sqlite():
    assert parse_url("sqlite:///x.sqlite?inline_reads=OFF").option("inline_reads") == "off"
    with pytest.raises(InvalidDatabaseURL, match="inline_reads"):
        parse_url("sqlite:///x.sqlite?inline_reads=maybe")


def test_a_read_that_writes_falls_back_to_the_pool_and_its_write_is_committed(
    sqlite_path, open_db, reactor_thread
):
    reactor = reactor_thread.call(threading.get_ident)
    db = open_db(f"sqlite://{sqlite_path}")
    calls = []

    def touch(txn, code):
        calls.append(threading.get_ident())
        n = txn.scalar("SELECT n FROM t WHERE code = ?", (code,))
        txn.execute("UPDATE t SET n = n + 1 WHERE code = ?", (code,))
        return n + 1

    assert reactor_thread.call(db.run, touch, "a", inline=True) == 1
    assert calls[0] == reactor and calls[1] != reactor and len(calls) == 2
    # Code that catches the refused write and goes on does not hide it: the pool runs it too.
    del calls[:]

    def touch_if_possible(txn, code):
        calls.append(threading.get_ident())
        try:
            txn.execute("UPDATE t SET n = n + 1 WHERE code = ?", (code,))
        except DatabaseError:
            return "not written"
        return "written"

    assert reactor_thread.call(db.run, touch_if_possible, "b", inline=True) == "written"
    assert len(calls) == 2 and calls[1] != reactor
    rows = reactor_thread.call(db.run, where, inline=True)[1]
    assert rows == [{"code": "a", "n": 1}, {"code": "b", "n": 1}]
    assert db.inline_fallbacks == 2 and db.inline_reasons["readonly"] == 2


def test_a_writer_holding_the_lock_does_not_make_an_inline_reader_wait(
    sqlite_path, open_db, reactor_thread
):
    reactor = reactor_thread.call(threading.get_ident)
    db = open_db(f"sqlite://{sqlite_path}")
    # Another process's writer (its own connection): it holds the write lock, uncommitted.
    writer = sqlite3.connect(str(sqlite_path), isolation_level=None, timeout=10)
    try:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("UPDATE t SET n = 99 WHERE code = 'a'")
        writer.execute("INSERT INTO t (code) VALUES ('c')")
        started = time.monotonic()
        thread, rows = reactor_thread.call(db.run, where, inline=True)
        assert time.monotonic() - started < 2  # the pool's writers would wait 10 s
        assert thread == reactor
        assert rows == [{"code": "a", "n": 0}, {"code": "b", "n": 0}]  # the last committed state
        writer.execute("COMMIT")
        thread, rows = reactor_thread.call(db.run, where, inline=True)
        assert thread == reactor
        assert rows == [{"code": "a", "n": 99}, {"code": "b", "n": 0}, {"code": "c", "n": 0}]
    finally:
        writer.close()


def test_a_reader_locked_out_falls_back_and_the_reason_is_counted(
    sqlite_path, open_db, reactor_thread
):
    """A connection in EXCLUSIVE locking mode keeps even WAL readers out (SQLITE_BUSY): the
    inline read is counted as a fall-back for ``busy``, then fails in the pool as before."""
    db = open_db(f"sqlite://{sqlite_path}?busy_timeout=200")
    for exc, reason in (
        (sqlite3.OperationalError("database is locked"), "busy"),
        (sqlite3.OperationalError("database table is locked"), "locked"),
        (sqlite3.OperationalError("attempt to write a readonly database"), "readonly"),
        (sqlite3.OperationalError("no such table: x"), None),
    ):
        assert _fall_back_reason(exc) == reason
    writer = sqlite3.connect(str(sqlite_path), isolation_level=None)
    try:
        writer.execute("PRAGMA locking_mode = EXCLUSIVE")
        writer.execute("BEGIN EXCLUSIVE")
        writer.execute("UPDATE t SET n = 5")
        with pytest.raises(DatabaseError):
            reactor_thread.call(db.run, where, inline=True)
        assert (db.inline_answered, db.inline_fallbacks, db.inline_reasons["busy"]) == (0, 1, 1)
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert reactor_thread.call(db.run, where, inline=True)[1][0]["n"] == 0
    assert (db.inline_answered, db.inline_fallbacks) == (1, 1)


def test_a_read_that_writes_under_a_held_lock_waits_in_the_pool_as_before(
    sqlite_path, open_db, reactor_thread
):
    db = open_db(f"sqlite://{sqlite_path}?busy_timeout=300")
    writer = sqlite3.connect(str(sqlite_path), isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        with pytest.raises(DatabaseError) as raised:
            reactor_thread.call(db.run, lambda txn: txn.execute("UPDATE t SET n = 1"), inline=True)
        assert type(raised.value).__name__ == "Unavailable"
        assert 0.25 < time.monotonic() - started < 5  # the pool's busy timeout, not 0
        assert db.inline_fallbacks == db.inline_reasons["readonly"] == 1
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def test_the_inline_connection_never_keeps_a_read_transaction(sqlite_path, open_db, reactor_thread):
    db = open_db(f"sqlite://{sqlite_path}")
    # Rows for a result that is not read to its end (txn.one of many rows).
    with sqlite3.connect(str(sqlite_path), isolation_level=None) as conn:
        conn.executemany("INSERT INTO t (code) VALUES (?)", [(f"x{i}",) for i in range(200)])

    class Refused(Exception):
        pass

    def fails(txn):
        txn.one("SELECT code FROM t")
        raise Refused()

    reactor_thread.call(db.run, lambda txn: txn.one("SELECT code FROM t"), inline=True)
    with pytest.raises(Refused):
        reactor_thread.call(db.run, fails, inline=True)
    with pytest.raises(DatabaseError):
        reactor_thread.call(db.run, lambda txn: txn.one("SELECT nonsense FROM t"), inline=True)
    reactor_thread.call(db.run, lambda txn: txn.execute("UPDATE t SET n = 2"), inline=True)
    assert db.inline_answered >= 1 and db.inline_fallbacks == 1
    assert reactor_thread.call(lambda: db._inline_conn.in_transaction) is False
    # A checkpoint that must wait for every reader (TRUNCATE) gets through at once.
    other = sqlite3.connect(str(sqlite_path), isolation_level=None, timeout=0)
    try:
        busy, _log, _done = other.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        assert busy == 0
    finally:
        other.close()
    assert (sqlite_path.parent / (sqlite_path.name + "-wal")).stat().st_size == 0
    # And the inline reader sees what was committed meanwhile, still on the reactor thread.
    rows = reactor_thread.call(
        db.run, lambda txn: txn.scalar("SELECT SUM(n) AS s FROM t"), inline=True
    )
    assert rows == 2 * 202


def test_errors_of_an_inline_read_are_those_of_the_pool(sqlite_path, open_db, reactor_thread):
    db = open_db(f"sqlite://{sqlite_path}")
    calls = []

    def bad(txn):
        calls.append(1)
        return txn.query("SELECT no_such_column FROM t")

    with pytest.raises(DatabaseError, match="no_such_column"):
        reactor_thread.call(db.run, bad, inline=True)

    def raises(txn):
        calls.append(2)
        raise ValueError("mine")

    with pytest.raises(ValueError, match="mine"):
        reactor_thread.call(db.run, raises, inline=True)
    assert calls == [1, 2]  # neither was run a second time on the pool
    assert db.available


def test_would_wait_sends_the_transaction_to_the_pool(sqlite_path, open_db, reactor_thread):
    reactor = reactor_thread.call(threading.get_ident)
    db = open_db(f"sqlite://{sqlite_path}")

    def needs_a_lock(txn):
        if must_not_wait(txn):
            raise WouldWait()
        return threading.get_ident()

    assert reactor_thread.call(db.run, needs_a_lock, inline=True) != reactor
    assert db.inline_fallbacks == db.inline_reasons["would_wait"] == 1
    assert db.run_blocking(lambda txn: must_not_wait(txn)) is False


def test_a_database_file_that_cannot_be_opened_is_left_to_the_pool(
    tmp_path, open_db, reactor_thread
):
    missing = tmp_path / "no" / "such.sqlite"
    db = open_db(f"sqlite://{missing}")
    with pytest.raises(DatabaseError, match="unable to open"):
        reactor_thread.call(db.run, where, inline=True)
    assert not missing.parent.exists()  # the inline connection never creates anything
    # Counted as a fall-back: the pool ran it (and reported its error).
    assert db.inline_fallbacks == db.inline_reasons["cannot_open"] == 1
    assert db.inline_answered == 0
    assert not db.available  # noted by the pool, as without inline reads


def test_close_closes_the_inline_connection(sqlite_path, open_db, reactor_thread):
    db = open_db(f"sqlite://{sqlite_path}")
    reactor_thread.call(db.run, where, inline=True)
    conn = db._inline_conn
    assert conn is not None
    reactor_thread.call(db.close)
    with pytest.raises(sqlite3.ProgrammingError):
        conn.execute("SELECT 1")


@pytest.mark.parametrize("engine_name", ["postgresql", "mysql"])
def test_server_engines_ignore_inline(adb, reactor_thread):
    reactor = reactor_thread.call(threading.get_ident)

    def fired(fn):
        d = adb.run(fn, inline=True)
        assert not d.called  # handed to a pool thread
        return d

    assert reactor_thread.call(fired, lambda txn: threading.get_ident()) != reactor


def test_a_run_from_inside_an_inline_transaction_goes_to_the_pool(
    sqlite_path, open_db, reactor_thread
):
    reactor = reactor_thread.call(threading.get_ident)
    db = open_db(f"sqlite://{sqlite_path}")
    inner = []

    def outer(txn):
        inner.append(db.run(lambda txn: threading.get_ident(), inline=True))
        return where(txn)

    thread, rows = reactor_thread.call(db.run, outer, inline=True)
    assert thread == reactor and len(rows) == 2
    assert reactor_thread.call(lambda: inner[0]) != reactor
    assert (db.inline_answered, db.inline_fallbacks, db.inline_reasons["nested"]) == (1, 1, 1)


def test_a_database_not_yet_in_wal_mode_is_read_on_the_pool_until_it_is(
    tmp_path, open_db, reactor_thread
):
    path = tmp_path / "journal.sqlite"
    with sqlite3.connect(str(path), isolation_level=None) as conn:
        conn.execute(TABLE)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    reactor = reactor_thread.call(threading.get_ident)
    db = open_db(f"sqlite://{path}")
    # The first read finds the file in rollback-journal mode: the pool runs it (and its
    # connection switches the file to WAL); the next one is inline.
    assert reactor_thread.call(db.run, where, inline=True)[0] != reactor
    assert reactor_thread.call(db.run, where, inline=True)[0] == reactor
    assert (db.inline_answered, db.inline_reasons["not_wal"], db.inline_fallbacks) == (1, 1, 1)
