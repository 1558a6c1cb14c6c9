"""Round trips of a transaction on PostgreSQL and MariaDB (koha_gateway.db.engine.Txn).

The server transaction is opened by the first statement that writes or locks, in the same round
trip; reads before it run as autocommit statements; a function that only reads sends neither
``BEGIN`` nor ``COMMIT``. Writes queued with ``txn.execute_later`` go in the round trip of the
next statement or of the ``COMMIT``. What was sent is checked with the server's own counters
(MariaDB: ``Com_begin``/``Com_commit``/``Com_rollback`` of the session) or the connection's
transaction status and notices (PostgreSQL: a ``COMMIT`` outside a transaction leaves a
warning), and ``txn.round_trips``.
"""

from __future__ import annotations

import threading

import pytest

from koha_gateway.db.engine import (
    Database,
    DatabaseError,
    IntegrityError,
    Unavailable,
    needs_transaction,
)

TABLE = "CREATE TABLE t (id {pk}, code {text} UNIQUE, n INTEGER NOT NULL DEFAULT 0)"


@pytest.fixture(params=("postgresql", "mysql"))
def engine_name(request) -> str:
    return request.param


@pytest.fixture
def tdb(db):
    db.run_blocking(lambda txn: txn.execute(txn.engine.ddl(TABLE)))
    db.run_blocking(lambda txn: txn.execute("INSERT INTO t (code) VALUES ('first')"))
    return db


def codes(db) -> list[str]:
    return [
        row["code"]
        for row in db.run_blocking(lambda txn: txn.query("SELECT code FROM t ORDER BY id"))
    ]


def run(db, fn, **kw):
    """Run ``fn`` in the calling thread's connection; return (result, round trips, counters)
    where counters are the server's BEGIN/COMMIT/ROLLBACK counts of what ``fn`` sent
    (MariaDB), or the PostgreSQL connection's warnings."""
    seen = {}

    def body(txn):
        seen["txn"] = txn
        return fn(txn)

    before = counters(db)
    try:
        result = db.run_blocking(body, **kw)
    finally:
        after = counters(db)
    sent = {key: after[key] - before[key] for key in after if key != "notices"}
    if "notices" in after:
        sent["notices"] = after["notices"][len(before["notices"]) :]
    return result, seen["txn"].round_trips, sent


def counters(db) -> dict:
    if db.engine.name == "mysql":
        rows = db.run_blocking(
            lambda txn: txn.query(
                "SHOW SESSION STATUS WHERE Variable_name IN ('Com_begin', 'Com_commit', "
                "'Com_rollback')"
            )
        )
        return {row["variable_name"].lower(): int(row["value"]) for row in rows}
    conn = db._pool.connect()
    return {"notices": list(conn.notices)}


def transaction_status(txn) -> str:
    """PostgreSQL: idle / intrans / inerror, as the server reported it after the last
    round trip."""
    from psycopg2 import extensions as ext

    status = txn._conn.get_transaction_status()
    return {
        ext.TRANSACTION_STATUS_IDLE: "idle",
        ext.TRANSACTION_STATUS_INTRANS: "intrans",
        ext.TRANSACTION_STATUS_INERROR: "inerror",
    }[status]


def test_a_reading_function_sends_no_begin_and_no_commit(tdb, engine_name):
    def read(txn):
        n = txn.scalar("SELECT COUNT(*) AS n FROM t")
        rows = txn.query("SELECT code FROM t WHERE code = ?", ("first",))
        if engine_name == "postgresql":
            assert transaction_status(txn) == "idle"  # no BEGIN was sent
        return n, rows

    for readonly in (False, True):
        result, trips, sent = run(tdb, read, readonly=readonly)
        assert result == (1, [{"code": "first"}])
        assert trips == 2  # the two statements, nothing else
        if engine_name == "mysql":
            assert sent == {"com_begin": 0, "com_commit": 0, "com_rollback": 0}
        else:
            assert sent == {"notices": []}  # a COMMIT without a transaction warns


def test_the_first_write_opens_the_transaction_in_its_own_round_trip(tdb, engine_name):
    def work(txn):
        assert txn.scalar("SELECT COUNT(*) AS n FROM t") == 1
        txn.execute("INSERT INTO t (code) VALUES ('a')")
        if engine_name == "postgresql":
            assert transaction_status(txn) == "intrans"
        txn.execute("UPDATE t SET n = n + 1 WHERE code = 'a'")
        return txn.scalar("SELECT n FROM t WHERE code = 'a'")

    result, trips, sent = run(tdb, work)
    assert result == 1
    assert trips == 5  # 4 statements (BEGIN with the INSERT) and COMMIT
    if engine_name == "mysql":
        assert sent == {"com_begin": 1, "com_commit": 1, "com_rollback": 0}
    assert codes(tdb) == ["first", "a"]


def test_a_locking_read_opens_the_transaction(tdb, engine_name):
    def work(txn):
        row = txn.one(f"SELECT id, n FROM t WHERE code = 'first'{txn.for_update}")
        if engine_name == "postgresql":
            assert transaction_status(txn) == "intrans"
        txn.execute("UPDATE t SET n = ? WHERE id = ?", (row["n"] + 1, row["id"]))

    _, trips, sent = run(tdb, work)
    assert trips == 3
    if engine_name == "mysql":
        assert sent["com_begin"] == 1 and sent["com_commit"] == 1


def test_a_write_after_reads_is_atomic_with_the_later_writes(tdb):
    class Refused(Exception):
        pass

    def work(txn):
        txn.scalar("SELECT COUNT(*) AS n FROM t")
        txn.execute("INSERT INTO t (code) VALUES ('a')")
        txn.execute_later("INSERT INTO t (code) VALUES ('b')")
        txn.execute("UPDATE t SET n = 5")
        raise Refused

    with pytest.raises(Refused):
        run(tdb, work)
    assert codes(tdb) == ["first"]
    assert tdb.run_blocking(lambda txn: txn.scalar("SELECT MAX(n) AS n FROM t")) == 0


def test_deferred_writes_go_with_the_commit(tdb, engine_name):
    def work(txn):
        txn.execute_later("INSERT INTO t (code) VALUES (?)", ("a",))
        txn.execute_later("UPDATE t SET n = n + ? WHERE code = ?", (2, "a"))
        txn.execute_later("INSERT INTO t (code) VALUES ('b%')")

    _, trips, sent = run(tdb, work)
    assert trips == 1  # BEGIN; INSERT; UPDATE; INSERT; COMMIT
    if engine_name == "mysql":
        assert sent == {"com_begin": 1, "com_commit": 1, "com_rollback": 0}
    assert codes(tdb) == ["first", "a", "b%"]
    assert tdb.run_blocking(lambda txn: txn.scalar("SELECT n FROM t WHERE code = 'a'")) == 2


def test_deferred_writes_are_seen_by_the_next_statement(tdb):
    def work(txn):
        txn.execute_later("INSERT INTO t (code) VALUES ('a')")
        txn.execute_later("UPDATE t SET n = 7 WHERE code = 'a'")
        return txn.scalar("SELECT n FROM t WHERE code = 'a'")

    result, trips, _ = run(tdb, work)
    assert result == 7
    assert trips == 2  # the SELECT carried BEGIN and both writes; COMMIT
    assert codes(tdb) == ["first", "a"]


def test_a_deferred_write_is_flushed_with_the_insert_that_follows(tdb):
    def work(txn):
        txn.execute_later("UPDATE t SET n = 3 WHERE code = 'first'")
        new = txn.insert("INSERT INTO t (code) VALUES ('a')", pk="id")
        return new, txn.scalar("SELECT id FROM t WHERE code = 'a'")

    (new, found), _, _ = run(tdb, work)
    assert new == found


def test_rollback_undoes_deferred_writes_sent_or_not(tdb, engine_name):
    def flushed(txn):
        txn.execute_later("INSERT INTO t (code) VALUES ('a')")
        txn.scalar("SELECT COUNT(*) AS n FROM t")
        raise ValueError

    def queued(txn):
        txn.execute_later("INSERT INTO t (code) VALUES ('b')")
        raise ValueError

    with pytest.raises(ValueError):
        run(tdb, flushed)
    before = counters(tdb)
    with pytest.raises(ValueError):
        tdb.run_blocking(queued)
    after = counters(tdb)
    if engine_name == "mysql":
        assert after == before  # never sent: no START TRANSACTION, no ROLLBACK
    assert codes(tdb) == ["first"]


def test_an_error_in_a_deferred_write_is_raised_at_commit_and_nothing_is_written(tdb):
    def work(txn):
        txn.execute("INSERT INTO t (code) VALUES ('a')")
        txn.execute_later("INSERT INTO t (code) VALUES ('first')")  # duplicate

    with pytest.raises(IntegrityError) as caught:
        tdb.run_blocking(work)
    assert not isinstance(caught.value, Unavailable)
    assert codes(tdb) == ["first"]
    # The connection is clean: the next transaction commits.
    tdb.run_blocking(lambda txn: txn.execute_later("INSERT INTO t (code) VALUES ('b')"))
    assert codes(tdb) == ["first", "b"]


def test_a_caught_error_of_a_deferred_write_still_fails_the_transaction(tdb):
    def work(txn):
        txn.execute_later("INSERT INTO t (code) VALUES ('first')")  # duplicate
        txn.execute_later("INSERT INTO t (code) VALUES ('a')")
        try:
            txn.execute("INSERT INTO t (code) VALUES ('b')")
        except IntegrityError:
            pass  # the caller believes its own INSERT failed
        return "done"

    with pytest.raises(IntegrityError):
        tdb.run_blocking(work)
    assert codes(tdb) == ["first"]


def test_deferred_writes_of_a_savepoint_block_go_with_its_release_or_are_undone(tdb):
    def work(txn):
        txn.execute_later("INSERT INTO t (code) VALUES ('a')")
        with txn.savepoint():
            txn.execute_later("INSERT INTO t (code) VALUES ('b')")
        try:
            with txn.savepoint():
                txn.execute("INSERT INTO t (code) VALUES ('c')")
                txn.execute_later("INSERT INTO t (code) VALUES ('d')")
                raise ValueError
        except ValueError:
            pass
        round_trips = txn.round_trips
        txn.execute_later("INSERT INTO t (code) VALUES ('e')")
        return round_trips

    result, trips, _ = run(tdb, work)
    # The first block sent nothing: no SAVEPOINT at all. BEGIN, a, b, SAVEPOINT and c in one
    # round trip, then ROLLBACK TO, RELEASE; e with the COMMIT.
    assert result == 3
    assert trips == 4
    assert codes(tdb) == ["first", "a", "b", "e"]


def test_savepoint_and_release_travel_with_statements(tdb):
    def work(txn):
        txn.scalar("SELECT COUNT(*) AS n FROM t")
        with txn.savepoint():
            txn.execute("INSERT INTO t (code) VALUES ('a')")
            txn.execute_later("UPDATE t SET n = 1 WHERE code = 'a'")
        return txn.scalar("SELECT n FROM t WHERE code = 'a'")

    result, trips, _ = run(tdb, work)
    # SELECT; BEGIN + SAVEPOINT + INSERT; RELEASE + UPDATE... in order: UPDATE, RELEASE, SELECT
    assert result == 1
    assert trips == 4  # and COMMIT
    assert codes(tdb) == ["first", "a"]


def test_an_error_in_a_savepoint_block_that_sent_nothing_is_undone_without_round_trips(tdb):
    def work(txn):
        txn.execute_later("INSERT INTO t (code) VALUES ('a')")
        try:
            with txn.savepoint():
                txn.execute_later("INSERT INTO t (code) VALUES ('b')")
                raise ValueError
        except ValueError:
            pass
        return txn.round_trips

    result, trips, _ = run(tdb, work)
    assert (result, trips) == (0, 1)  # BEGIN; a; COMMIT
    assert codes(tdb) == ["first", "a"]


def test_flush_makes_the_next_error_its_own(tdb):
    def work(txn):
        txn.execute_later("INSERT INTO t (code) VALUES ('a')")
        txn.flush()
        try:
            with txn.savepoint():
                txn.execute("INSERT INTO t (code) VALUES ('first')")  # duplicate
        except IntegrityError:
            pass
        txn.execute_later("INSERT INTO t (code) VALUES ('b')")

    tdb.run_blocking(work)
    assert codes(tdb) == ["first", "a", "b"]


def test_a_caught_error_of_a_deferred_write_carried_by_a_savepoint_fails_the_transaction(tdb):
    def work(txn):
        txn.execute_later("INSERT INTO t (code) VALUES ('first')")  # duplicate
        try:
            with txn.savepoint():  # the SAVEPOINT carries it
                txn.execute("INSERT INTO t (code) VALUES ('a')")
        except IntegrityError:
            pass
        txn.execute_later("INSERT INTO t (code) VALUES ('b')")

    with pytest.raises(IntegrityError):
        tdb.run_blocking(work)
    assert codes(tdb) == ["first"]


def test_read_only_transactions_refuse_writes_and_the_mode_switches_back(tdb):
    def read_then_write(txn):
        txn.scalar("SELECT COUNT(*) AS n FROM t")
        txn.execute("INSERT INTO t (code) VALUES ('ro')")

    def deferred(txn):
        txn.execute_later("INSERT INTO t (code) VALUES ('ro2')")

    for fn in (read_then_write, deferred):
        with pytest.raises(DatabaseError):
            tdb.run_blocking(fn, readonly=True)
        # A read-write transaction on the same connection writes again.
        tdb.run_blocking(lambda txn: txn.execute("UPDATE t SET n = n + 1 WHERE code = 'first'"))
    with pytest.raises(DatabaseError):
        tdb.run_blocking(
            lambda txn: txn.execute("UPDATE t SET n = 0 WHERE code = 'first'"), readonly=True
        )
    assert codes(tdb) == ["first"]
    assert tdb.run_blocking(lambda txn: txn.scalar("SELECT n FROM t WHERE code = 'first'")) == 2


def test_statement_kinds():
    for sql in ("SELECT * FROM t", "  select a FROM t WHERE b = ?", "SHOW WARNINGS"):
        assert not needs_transaction(sql), sql
    for sql in (
        "INSERT INTO t VALUES (1)",
        "UPDATE t SET n = 1",
        "DELETE FROM t",
        "SELECT * FROM t WHERE id = 1 FOR UPDATE",
        "SELECT * FROM t\nFOR  SHARE",
        "SELECT * FROM t LOCK IN SHARE MODE",
        "SELECT nextval('s') AS n",
        "WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x",
        "SAVEPOINT kgw_sp_1",
        "CREATE TABLE x (a INTEGER)",
    ):
        assert needs_transaction(sql), sql


def test_a_deferred_write_failing_at_commit_reports_whether_the_commit_ran(tdb, db_url):
    """PostgreSQL says the transaction aborted before its COMMIT: the outcome is known (not
    committed). MariaDB cannot tell which statement of the batch failed: unknown."""
    locked, release = threading.Event(), threading.Event()

    def hold_lock(txn):
        txn.one(f"SELECT id FROM t WHERE code = 'first'{txn.for_update}")
        locked.set()
        release.wait(30)

    holder = threading.Thread(target=tdb.run_blocking, args=(hold_lock,))
    holder.start()
    impatient = Database.from_url(db_url + "?lock_timeout=500")
    try:
        assert locked.wait(30)

        def work(txn):
            txn.execute("INSERT INTO t (code) VALUES ('a')")
            txn.execute_later("UPDATE t SET n = 9 WHERE code = 'first'")

        with pytest.raises(Unavailable) as caught:
            impatient.run_blocking(work)
        assert caught.value.outcome_unknown == (tdb.engine.name == "mysql")
    finally:
        release.set()
        holder.join(30)
        impatient.close()
    assert codes(tdb) == ["first"]


def test_writes_after_ddl_are_one_transaction_again_on_mariadb(tdb):
    """MariaDB commits at DDL; the writes after it still commit or roll back together."""

    def work(txn):
        txn.execute("INSERT INTO t (code) VALUES ('a')")
        txn.execute(txn.engine.ddl("CREATE TABLE u (id {pk}, v INTEGER)"))
        txn.execute("INSERT INTO t (code) VALUES ('b')")
        txn.execute("INSERT INTO u (v) VALUES (1)")
        raise ValueError

    with pytest.raises(ValueError):
        tdb.run_blocking(work)
    expected = ["first"] if tdb.engine.name == "postgresql" else ["first", "a"]
    assert codes(tdb) == expected
    if tdb.engine.name == "mysql":
        assert tdb.run_blocking(lambda txn: txn.scalar("SELECT COUNT(*) AS n FROM u")) == 0
