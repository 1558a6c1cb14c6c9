"""The engine contract (koha_gateway.db.engine) on every engine (SQLite, PostgreSQL, MariaDB):
transactions, placeholders, types, errors, locking and concurrency."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import threading
import time
from decimal import Decimal

import pytest

from koha_gateway.db import engine as engine_module
from koha_gateway.db.engine import (
    Database,
    DatabaseError,
    IntegrityError,
    Unavailable,
    qmark_to_pyformat,
)

TABLE = """CREATE TABLE t (
    id {pk},
    code {text} UNIQUE,
    label {text},
    amount {money},
    day {date},
    at {datetime},
    flag {bool} NOT NULL DEFAULT 0,
    n INTEGER NOT NULL DEFAULT 0
)"""


def create_table(db: Database) -> None:
    db.run_blocking(lambda txn: txn.execute(txn.engine.ddl(TABLE)))


def count(db: Database) -> int:
    return db.run_blocking(lambda txn: txn.scalar("SELECT COUNT(*) AS n FROM t"))


# -- transactions ----------------------------------------------------------------------------


def test_engine_name_and_for_update(db, engine_name):
    assert db.engine.name == engine_name
    for_update = db.run_blocking(lambda txn: txn.for_update)
    assert for_update == ("" if engine_name == "sqlite" else " FOR UPDATE")
    assert db.engine.IntegrityError is IntegrityError
    assert db.engine.Unavailable is Unavailable


def test_commit_when_fn_returns(db):
    create_table(db)

    def add(txn, code):
        return txn.insert("INSERT INTO t (code) VALUES (?)", (code,), pk="id")

    first = db.run_blocking(add, "a")
    second = db.run_blocking(add, code="b")
    assert second == first + 1
    assert count(db) == 2


def test_rollback_when_fn_raises_and_exception_reraised(db):
    create_table(db)

    class Refused(Exception):
        pass

    def add_then_fail(txn):
        txn.execute("INSERT INTO t (code) VALUES (?)", ("a",))
        txn.execute("UPDATE t SET n = n + 1")
        raise Refused("no")

    with pytest.raises(Refused):
        db.run_blocking(add_then_fail)
    assert count(db) == 0
    # The connection is clean afterwards: the next transaction commits normally.
    db.run_blocking(lambda txn: txn.execute("INSERT INTO t (code) VALUES ('b')"))
    assert count(db) == 1


def test_run_returns_deferred_commit_and_rollback(adb, reactor_thread):
    reactor_thread.call(adb.run, lambda txn: txn.execute(txn.engine.ddl(TABLE)))

    def add(txn, code, *, fail=False):
        txn.execute("INSERT INTO t (code) VALUES (?)", (code,))
        if fail:
            raise ValueError(code)
        return txn.scalar("SELECT COUNT(*) AS n FROM t")

    assert reactor_thread.call(adb.run, add, "a") == 1
    with pytest.raises(ValueError):
        reactor_thread.call(adb.run, add, "b", fail=True)
    assert reactor_thread.call(adb.run, add, "c") == 2
    rows = reactor_thread.call(
        adb.run, lambda txn: txn.query("SELECT code FROM t ORDER BY code"), readonly=True
    )
    assert rows == [{"code": "a"}, {"code": "c"}]


def test_run_does_not_use_the_reactor_thread(adb, reactor_thread):
    reactor_ident = reactor_thread.call(threading.get_ident)
    worker_ident = reactor_thread.call(adb.run, lambda txn: threading.get_ident())
    assert worker_ident != reactor_ident


def test_run_blocking_refused_in_the_reactor_thread(adb, reactor_thread):
    with pytest.raises(RuntimeError, match="reactor"):
        reactor_thread.call(adb.run_blocking, lambda txn: 1)


def test_readonly_transaction_refuses_writes_on_both_engines(db):
    create_table(db)
    with pytest.raises(DatabaseError):
        db.run_blocking(lambda txn: txn.execute("INSERT INTO t (code) VALUES ('x')"), readonly=True)
    assert count(db) == 0
    # A read-write transaction on the same connection works again afterwards.
    db.run_blocking(lambda txn: txn.execute("INSERT INTO t (code) VALUES ('x')"))
    assert db.run_blocking(lambda txn: txn.scalar("SELECT code FROM t"), readonly=True) == "x"
    # The connection's mode follows each transaction (SQLite and MariaDB switch it only when it
    # changes): read-only again after a read-write one, and read-write after read-only ones.
    with pytest.raises(DatabaseError):
        db.run_blocking(lambda txn: txn.execute("INSERT INTO t (code) VALUES ('y')"), readonly=True)
    db.run_blocking(lambda txn: txn.execute("INSERT INTO t (code) VALUES ('z')"))
    assert db.run_blocking(lambda txn: txn.query("SELECT code FROM t ORDER BY code")) == [
        {"code": "x"},
        {"code": "z"},
    ]


def test_closed_pool_refuses_work(db_url):
    db = Database.from_url(db_url)
    db.close()
    db.close()  # idempotent
    with pytest.raises(DatabaseError, match="closed"):
        db.run_blocking(lambda txn: 1)


# -- placeholders ----------------------------------------------------------------------------


def test_placeholders_and_literal_percent_and_question_marks(db):
    create_table(db)

    def work(txn):
        txn.execute("INSERT INTO t (code, label) VALUES (?, ?)", ("p1", "100% sure?"))
        txn.execute("INSERT INTO t (code, label) VALUES ('p2', 'what? 50%')")
        txn.execute("INSERT INTO t (code, label) VALUES (?, 'it''s ?')", ("p3",))
        return (
            txn.query("SELECT code FROM t WHERE label LIKE '%?%' ORDER BY code"),
            txn.scalar("SELECT label FROM t WHERE code = ? -- a comment with ? and %", ("p1",)),
            txn.scalar("SELECT label FROM t WHERE code = /* ? */ ?", ("p3",)),
            txn.scalar("SELECT 7 % 4 AS r"),
        )

    like_rows, label1, label3, modulo = db.run_blocking(work)
    assert [r["code"] for r in like_rows] == ["p1", "p2", "p3"]
    assert label1 == "100% sure?"
    assert label3 == "it's ?"
    assert modulo == 3


def test_qmark_translation_is_cached_and_exact():
    sql = "SELECT '?', \"a?b\", ? FROM x WHERE y LIKE '10%' AND z = ? -- ?\n"
    assert qmark_to_pyformat(sql) == (
        "SELECT '?', \"a?b\", %s FROM x WHERE y LIKE '10%%' AND z = %s -- ?\n"
    )
    before = qmark_to_pyformat.cache_info().hits
    qmark_to_pyformat(sql)
    assert qmark_to_pyformat.cache_info().hits == before + 1


def test_executemany_and_upsert(db):
    create_table(db)

    def work(txn):
        txn.executemany("INSERT INTO t (code, n) VALUES (?, ?)", [(f"c{i}", i) for i in range(250)])
        txn.upsert("t", {"code": "c1"}, {"n": 100, "label": "updated"})
        txn.upsert("t", {"code": "new"}, {"n": 7})
        txn.upsert("t", {"code": "c2"}, {})  # DO NOTHING on conflict
        return txn.scalar("SELECT SUM(n) AS s FROM t")

    assert db.run_blocking(work) == sum(range(250)) - 1 + 100 + 7
    assert count(db) == 251
    with pytest.raises(ValueError):
        db.run_blocking(lambda txn: txn.upsert("t; DROP TABLE t", {"code": "x"}, {}))


# -- types -----------------------------------------------------------------------------------


def test_types_round_trip_identically(db, engine_name):
    create_table(db)

    def work(txn):
        txn.insert(
            "INSERT INTO t (code, label, amount, day, at, flag, n) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                "τ",
                "Ngā pukapuka ☃",
                Decimal("12.345678"),
                dt.date(2026, 3, 4),
                dt.datetime(2026, 3, 4, 5, 6, 7, 891011),
                True,
                2**30,
            ),
            pk="id",
        )
        txn.execute("INSERT INTO t (code, amount) VALUES (?, ?)", ("f", 0.1))
        row = txn.one("SELECT code, label, amount, day, at, flag, n FROM t WHERE code = ?", ("τ",))
        computed = txn.one(
            "SELECT SUM(amount) AS total, COUNT(*) AS c, AVG(n) AS avg_n, "
            "MAX(amount) > 1 AS big, CURRENT_DATE AS today, CURRENT_TIMESTAMP AS now, "
            "NULL AS empty FROM t"
        )
        missing = txn.one("SELECT * FROM t WHERE code = ?", ("none",))
        return row, computed, missing

    row, computed, missing = db.run_blocking(work)
    assert row == {
        "code": "τ",
        "label": "Ngā pukapuka ☃",
        "amount": 12.345678,
        "day": "2026-03-04",
        "at": "2026-03-04 05:06:07",
        "flag": 1,
        "n": 2**30,
    }
    assert type(row["amount"]) is float
    assert type(row["flag"]) is int
    assert computed["total"] == pytest.approx(12.445678)
    assert type(computed["total"]) is float
    assert computed["c"] == 2 and type(computed["c"]) is int
    assert type(computed["avg_n"]) is float
    assert computed["big"] == 1 and type(computed["big"]) is int
    # The server's own date, in whatever zone it runs: an ISO date within a day of UTC's.
    today = dt.date.fromisoformat(computed["today"])
    assert abs((today - dt.datetime.now(dt.UTC).date()).days) <= 1
    assert len(computed["now"]) == 19 and computed["now"][10] == " "
    assert computed["empty"] is None
    assert missing is None


def test_iso_dates_sort_and_compare_chronologically(db, engine_name):
    create_table(db)
    stamps = ["2026-12-01 00:00:00", "2026-02-28 23:59:59", "2026-11-30 10:00:00", "2025-12-31"]

    def work(txn):
        txn.executemany(
            "INSERT INTO t (code, at) VALUES (?, ?)", [(str(i), s) for i, s in enumerate(stamps)]
        )
        ordered = [r["at"] for r in txn.query("SELECT at FROM t ORDER BY at")]
        overdue = txn.query("SELECT at FROM t WHERE at < ? ORDER BY at", ("2026-11-30 10:00:00",))
        return ordered, [r["at"] for r in overdue]

    ordered, overdue = db.run_blocking(work)
    if engine_name == "mysql":  # a real DATETIME column: a date is its midnight
        stamps[-1] = "2025-12-31 00:00:00"
    assert ordered == sorted(stamps)
    assert overdue == [stamps[-1], "2026-02-28 23:59:59"]


def test_four_byte_text_round_trips_and_matches(db):
    create_table(db)
    text = "Ngā pukapuka 📚 — 𝔎𝔬𝔥𝔞 😀"

    def work(txn):
        txn.execute("INSERT INTO t (code, label) VALUES (?, ?)", ("e", text))
        return (
            txn.scalar("SELECT label FROM t WHERE code = ?", ("e",)),
            txn.scalar("SELECT code FROM t WHERE label = ?", (text,)),
            txn.scalar("SELECT LENGTH(?) AS n", ("📚",)) in (1, 4),
        )

    assert db.run_blocking(work) == (text, "e", True)


def test_update_counts_matched_rows_even_when_nothing_changes(db):
    create_table(db)

    def work(txn):
        txn.execute("INSERT INTO t (code, n) VALUES ('a', 1), ('b', 1)")
        same = txn.execute("UPDATE t SET n = 1 WHERE code = 'a'")
        both = txn.execute("UPDATE t SET n = 1")
        none = txn.execute("UPDATE t SET n = 2 WHERE code = 'zz'")
        return same, both, none

    assert db.run_blocking(work) == (1, 2, 0)


def test_upsert_reports_rows_written(db):
    create_table(db)

    def work(txn):
        return (
            txn.upsert("t", {"code": "k"}, {"n": 1}),  # inserted
            txn.upsert("t", {"code": "k"}, {"n": 2}),  # updated
            txn.upsert("t", {"code": "k"}, {"n": 2}),  # updated to the same value
            txn.upsert("t", {"code": "k"}, {}),  # existed: nothing written
            txn.upsert("t", {"code": "m"}, {}),  # inserted
            txn.query("SELECT code, n FROM t ORDER BY code"),
        )

    *counts, rows = db.run_blocking(work)
    assert counts == [1, 1, 1, 0, 1]
    assert rows == [{"code": "k", "n": 2}, {"code": "m", "n": 0}]


def test_upsert_with_columns_written_only_on_insert(db):
    """``inserted=``: columns of the new row, left alone when the row exists; with no
    ``values``, an existing row is no error, so deferred writes may travel with it."""
    create_table(db)

    def work(txn):
        txn.execute_later("INSERT INTO t (code, n) VALUES ('later', 5)")
        first = txn.upsert("t", {"code": "k"}, {}, inserted={"n": 1, "label": "first"})
        txn.execute_later("UPDATE t SET n = n + 1 WHERE code = 'later'")
        again = txn.upsert("t", {"code": "k"}, {}, inserted={"n": 2, "label": "second"})
        updated = txn.upsert("t", {"code": "k"}, {"label": "third"}, inserted={"n": 3})
        return first, again, updated, txn.query("SELECT code, n, label FROM t ORDER BY code")

    *counts, rows = db.run_blocking(work)
    assert counts == [1, 0, 1]
    assert rows == [
        {"code": "k", "n": 1, "label": "third"},
        {"code": "later", "n": 6, "label": None},
    ]


def test_insert_with_an_explicit_key_returns_it(db):
    db.run_blocking(
        lambda txn: txn.execute("CREATE TABLE old (issue_id INTEGER PRIMARY KEY, note TEXT)")
    )
    key = db.run_blocking(
        lambda txn: txn.insert(
            "INSERT INTO old (issue_id, note) VALUES (?, ?)", (4711, "x"), pk="issue_id"
        )
    )
    assert key == 4711


def test_column_names_are_lower_case_on_both_engines(db):
    row = db.run_blocking(lambda txn: txn.one("SELECT 1 AS MixedCase, 2 AS lower"))
    assert row == {"mixedcase": 1, "lower": 2}


# -- insert ----------------------------------------------------------------------------------


def test_insert_returns_new_key_with_and_without_pk_name(db, engine_name):
    create_table(db)
    if engine_name == "mysql":
        nothing = "INSERT IGNORE INTO t (code) VALUES (?)"
    else:
        nothing = "INSERT INTO t (code) VALUES (?) ON CONFLICT (code) DO NOTHING"

    def work(txn):
        a = txn.insert("INSERT INTO t (code) VALUES (?)", ("a",), pk="id")
        b = txn.insert("INSERT INTO t (code) VALUES (?)", ("b",))
        c = txn.insert(nothing, ("a",))
        return a, b, c, txn.scalar("SELECT id FROM t WHERE code = 'b'")

    a, b, c, b_id = db.run_blocking(work)
    assert isinstance(a, int) and b == a + 1 and b == b_id
    assert c is None


# -- errors ----------------------------------------------------------------------------------


def test_unique_violation_is_integrity_error_and_rolls_back(db):
    create_table(db)
    db.run_blocking(lambda txn: txn.execute("INSERT INTO t (code) VALUES ('dup')"))

    def work(txn):
        txn.execute("INSERT INTO t (code) VALUES ('other')")
        txn.execute("INSERT INTO t (code) VALUES ('dup')")

    with pytest.raises(IntegrityError):
        db.run_blocking(work)
    assert count(db) == 1


def test_savepoint_lets_the_transaction_go_on_after_an_integrity_error(db):
    create_table(db)

    def work(txn):
        txn.execute("INSERT INTO t (code) VALUES ('one')")
        try:
            with txn.savepoint():
                txn.execute("INSERT INTO t (code) VALUES ('two')")
                txn.execute("INSERT INTO t (code) VALUES ('one')")
        except IntegrityError:
            outcome = "conflict"
        txn.execute("INSERT INTO t (code) VALUES ('three')")
        return outcome

    assert db.run_blocking(work) == "conflict"
    codes = db.run_blocking(lambda txn: [r["code"] for r in txn.query("SELECT code FROM t")])
    assert sorted(codes) == ["one", "three"]


def test_constraint_errors_do_not_echo_row_values(db):
    db.run_blocking(
        lambda txn: txn.execute(
            "CREATE TABLE users (id INTEGER PRIMARY KEY, password TEXT, name TEXT NOT NULL)"
        )
    )
    secret = "$2b$12$SecretHashThatMustNotBeLogged"
    with pytest.raises(IntegrityError) as info:
        db.run_blocking(
            lambda txn: txn.execute(
                "INSERT INTO users (id, password, name) VALUES (?, ?, ?)", (1, secret, None)
            )
        )
    assert secret not in str(info.value)
    assert info.value.__cause__ is None


def test_syntax_error_is_database_error(db):
    with pytest.raises(DatabaseError) as info:
        db.run_blocking(lambda txn: txn.execute("SELEC 1"))
    assert not isinstance(info.value, (IntegrityError, Unavailable))


def test_ddl_tokens(db, engine_name):
    expanded = db.engine.ddl("CREATE TABLE x (a {pk}, b {money}, c {date}, d {datetime}, e {bool})")
    if engine_name == "sqlite":
        assert "INTEGER PRIMARY KEY AUTOINCREMENT" in expanded and "REAL" in expanded
    elif engine_name == "mysql":
        assert "INT(11) NOT NULL AUTO_INCREMENT PRIMARY KEY" in expanded
        assert "DECIMAL(28,6)" in expanded and "c DATE," in expanded and "d DATETIME" in expanded
        assert expanded.endswith("ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci")
    else:
        assert "BIGSERIAL PRIMARY KEY" in expanded and "NUMERIC(28,6)" in expanded
    assert "{" not in expanded
    with pytest.raises(ValueError, match="unknown DDL token"):
        db.engine.ddl("CREATE TABLE x (a {moeny})")


# -- SQLite specifics ------------------------------------------------------------------------


def test_sqlite_connection_settings(tmp_path):
    db = Database.from_url(f"sqlite://{tmp_path / 'x.sqlite'}")
    try:
        settings = db.run_blocking(
            lambda txn: (
                txn.scalar("PRAGMA journal_mode"),
                txn.scalar("PRAGMA synchronous"),
                txn.scalar("PRAGMA foreign_keys"),
                txn.scalar("PRAGMA busy_timeout"),
            )
        )
        assert settings == ("wal", 1, 1, 10000)  # synchronous 1 = NORMAL
    finally:
        db.close()


def test_sqlite_new_database_file_is_not_world_readable(tmp_path):
    path = tmp_path / "private.sqlite"
    db = Database.from_url(f"sqlite://{path}")
    try:
        create_table(db)
    finally:
        db.close()
    for name in ("private.sqlite", "private.sqlite-wal", "private.sqlite-shm"):
        if (tmp_path / name).exists():
            assert (tmp_path / name).stat().st_mode & 0o007 == 0, name


def test_sqlite_missing_directory_is_unavailable(tmp_path):
    db = Database.from_url(f"sqlite://{tmp_path / 'no' / 'such' / 'dir.sqlite'}")
    try:
        with pytest.raises(Unavailable, match="unable to open"):
            db.run_blocking(lambda txn: txn.scalar("SELECT 1 AS one"))
    finally:
        db.close()


@pytest.mark.parametrize("pools", ["one pool", "two pools (as two processes)"])
def test_sqlite_begin_immediate_serialises_writers(tmp_path, pools):
    url = f"sqlite://{tmp_path / 'w.sqlite'}"
    db = Database.from_url(url)
    other = Database.from_url(url) if pools.startswith("two") else db
    create_table(db)
    holding = threading.Event()
    release = threading.Event()
    events: list[str] = []

    def first(txn):
        # BEGIN IMMEDIATE already holds the write lock before this first statement.
        holding.set()
        release.wait(10)
        txn.execute("INSERT INTO t (code) VALUES ('first')")
        events.append("first commits")

    second_began = threading.Event()

    def second(txn):
        second_began.set()
        events.append("second begins")
        txn.execute("INSERT INTO t (code) VALUES ('second')")

    def read(txn):
        return txn.scalar("SELECT COUNT(*) AS n FROM t")

    try:
        a = threading.Thread(target=db.run_blocking, args=(first,))
        a.start()
        assert holding.wait(10)
        b = threading.Thread(target=other.run_blocking, args=(second,))
        b.start()
        # The second writer waits in BEGIN IMMEDIATE (a negative: it must not begin meanwhile).
        assert not second_began.wait(0.3)
        assert events == []
        # A read-only transaction is not blocked by the writer (WAL).
        assert db.run_blocking(read, readonly=True) == 0
        release.set()
        a.join(10)
        b.join(10)
        assert events == ["first commits", "second begins"]
        assert count(db) == 2
    finally:
        release.set()
        db.close()
        other.close()


def test_sqlite_busy_beyond_timeout_is_unavailable(tmp_path):
    path = tmp_path / "busy.sqlite"
    holder = Database.from_url(f"sqlite://{path}")
    waiter = Database.from_url(f"sqlite://{path}?busy_timeout=200")
    create_table(holder)
    holding = threading.Event()
    release = threading.Event()

    def hold(txn):
        holding.set()
        release.wait(10)

    thread = threading.Thread(target=holder.run_blocking, args=(hold,))
    thread.start()
    try:
        assert holding.wait(10)
        started = time.monotonic()
        with pytest.raises(Unavailable):
            waiter.run_blocking(lambda txn: txn.execute("INSERT INTO t (code) VALUES ('x')"))
        assert 0.15 < time.monotonic() - started < 5
    finally:
        release.set()
        thread.join(10)
        holder.close()
        waiter.close()


_KILL_CHILD = """
import sys
from koha_gateway.db.engine import Database
db = Database.from_url(sys.argv[1])
db.run_blocking(lambda txn: txn.execute("INSERT INTO t (code) VALUES ('acknowledged')"))
print("committed", flush=True)
db.run_blocking(lambda txn: (txn.execute("INSERT INTO t (code) VALUES ('in flight')"),
                             print("in flight", flush=True), sys.stdin.readline()))
"""


def test_sqlite_acknowledged_commit_survives_sigkill(tmp_path):
    url = f"sqlite://{tmp_path / 'kill.sqlite'}"
    db = Database.from_url(url)
    create_table(db)
    db.close()
    child = subprocess.Popen(
        [sys.executable, "-c", _KILL_CHILD, url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == "committed"
        # The second transaction has written its row and is open, not committed.
        assert child.stdout.readline().strip() == "in flight"
    finally:
        child.kill()
        child.wait(10)
    db = Database.from_url(url)
    try:
        codes = db.run_blocking(lambda txn: [r["code"] for r in txn.query("SELECT code FROM t")])
        assert codes == ["acknowledged"]
    finally:
        db.close()


# -- concurrency -----------------------------------------------------------------------------


def _increment(txn, code):
    # Read, decide in Python, write: exact only with the engine's locking.
    row = txn.one(f"SELECT n FROM t WHERE code = ?{txn.for_update}", (code,))
    time.sleep(0.001)  # widens the window between read and write; not a wait for a result
    txn.execute("UPDATE t SET n = ? WHERE code = ?", (row["n"] + 1, code))


def test_concurrent_read_modify_write_is_exact_with_threads(db):
    create_table(db)
    db.run_blocking(lambda txn: txn.execute("INSERT INTO t (code, n) VALUES ('counter', 0)"))
    errors: list[BaseException] = []

    def worker():
        try:
            for _ in range(20):
                db.run_blocking(_increment, "counter")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert db.run_blocking(lambda txn: txn.scalar("SELECT n FROM t WHERE code = 'counter'")) == 160


def test_concurrent_runs_through_the_pool_are_exact(adb, reactor_thread):
    from twisted.internet import defer

    reactor_thread.call(adb.run, lambda txn: txn.execute(txn.engine.ddl(TABLE)))
    reactor_thread.call(
        adb.run, lambda txn: txn.execute("INSERT INTO t (code, n) VALUES ('counter', 0)")
    )

    def many():
        return defer.gatherResults(
            [adb.run(_increment, "counter") for _ in range(100)], consumeErrors=True
        )

    reactor_thread.call(many)
    total = reactor_thread.call(adb.run, lambda txn: txn.scalar("SELECT n FROM t"))
    assert total == 100


def test_unique_constraint_gives_exactly_one_winner_under_a_race(db):
    create_table(db)
    racers = 50
    barrier = threading.Barrier(racers)
    outcomes: list[str] = []

    def claim(txn, who):
        txn.execute("INSERT INTO t (code, label) VALUES ('item-1', ?)", (who,))

    def worker(who):
        barrier.wait(10)
        try:
            db.run_blocking(claim, who)
            outcomes.append("won")
        except IntegrityError:
            outcomes.append("lost")

    threads = [threading.Thread(target=worker, args=(str(i),)) for i in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(outcomes) == ["lost"] * (racers - 1) + ["won"]
    assert count(db) == 1


def test_module_exports_the_error_types():
    assert engine_module.IntegrityError.__mro__[1] is DatabaseError
    assert issubclass(engine_module.SerializationFailure, IntegrityError)
    assert issubclass(Unavailable, DatabaseError)
