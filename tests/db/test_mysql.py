"""What is particular to the MariaDB/MySQL engine: Koha's session settings, Koha's column types,
strict mode, error mapping, dead connections, the Unix socket, and the Koha-schema fixture.

Runs against the throwaway MariaDB of tests/support/mariadb.py (Koha's schema loaded by
``../shared/koha/load.sh``); under ``CI=true`` a server that cannot start fails these tests.
"""

from __future__ import annotations

import threading
import time

import pytest

from koha_gateway.db.engine import (
    MYSQL_SQL_MODE,
    Database,
    DatabaseError,
    IntegrityError,
    SerializationFailure,
    Unavailable,
)
from tests.support.mariadb import KOHA_TEMPLATE, server_or_skip


@pytest.fixture
def server():
    return server_or_skip()


@pytest.fixture
def my_url(server):
    url = server.create_database()
    yield url
    server.drop_database(url.rsplit("/", 1)[1])


@pytest.fixture
def mydb(my_url):
    db = Database.from_url(my_url)
    yield db
    db.close()


def test_sessions_are_set_up_as_koha_does(mydb, server):
    settings = mydb.run_blocking(
        lambda txn: txn.one(
            "SELECT @@session.sql_mode AS sql_mode, @@session.tx_isolation AS isolation, "
            "@@character_set_client AS cs_client, @@character_set_results AS cs_results, "
            "@@character_set_connection AS cs_connection, @@session.time_zone AS tz, "
            "@@global.time_zone AS server_tz, @@session.innodb_lock_wait_timeout AS lock_wait, "
            "@@session.autocommit AS autocommit"
        )
    )
    assert settings["sql_mode"] == MYSQL_SQL_MODE
    assert settings["isolation"] == "READ-COMMITTED"
    assert {settings["cs_client"], settings["cs_results"], settings["cs_connection"]} == {"utf8mb4"}
    assert settings["tz"] == settings["server_tz"]  # the server's zone, not overridden
    assert settings["lock_wait"] == 10
    # Autocommit: a transaction is opened (START TRANSACTION) by the first write or lock.
    assert settings["autocommit"] == 1


def test_time_zone_option_sets_the_session_zone(server, my_url):
    db = Database.from_url(my_url + "?time_zone=%2B12%3A45&lock_timeout=2500")
    try:
        row = db.run_blocking(
            lambda txn: txn.one(
                "SELECT @@session.time_zone AS tz, @@session.innodb_lock_wait_timeout AS w"
            )
        )
        assert row == {"tz": "+12:45", "w": 3}
    finally:
        db.close()


def test_unix_socket_url(server, my_url):
    name = my_url.rsplit("/", 1)[1]
    db = Database.from_url(server.socket_url(name))
    try:
        assert db.url.host == "localhost" and db.url.option("unix_socket") == server.socket
        assert db.run_blocking(lambda txn: txn.scalar("SELECT DATABASE() AS d")) == name
    finally:
        db.close()


def test_ddl_gives_koha_types_and_keyed_text_columns_a_length(mydb):
    def work(txn):
        txn.execute(
            txn.engine.ddl(
                "CREATE TABLE parent (code {text} PRIMARY KEY, note {text}, "
                "kind {text} NOT NULL DEFAULT 'A', amount {money}, day {date}, at {datetime}, "
                "flag {bool})"
            )
        )
        txn.execute(
            txn.engine.ddl(
                "CREATE TABLE child (id {pk}, code {text} NOT NULL REFERENCES parent (code), "
                "a {text}, b {text}, body {text}, UNIQUE (a, b), "
                "FOREIGN KEY (code) REFERENCES parent (code))"
            )
        )
        txn.execute(txn.engine.ddl("ALTER TABLE child ADD COLUMN c {text} UNIQUE"))
        rows = txn.query(
            "SELECT table_name AS t, column_name AS c, column_type AS ty FROM "
            "information_schema.columns WHERE table_schema = DATABASE() ORDER BY t, c"
        )
        options = txn.query(
            "SELECT table_name AS t, engine AS e, table_collation AS co FROM "
            "information_schema.tables WHERE table_schema = DATABASE()"
        )
        return {(r["t"], r["c"]): r["ty"] for r in rows}, options

    types, options = mydb.run_blocking(work)
    assert types == {
        ("child", "a"): "varchar(255)",
        ("child", "b"): "varchar(255)",
        ("child", "body"): "mediumtext",
        ("child", "c"): "varchar(255)",
        ("child", "code"): "varchar(255)",
        ("child", "id"): "int(11)",
        ("parent", "amount"): "decimal(28,6)",
        ("parent", "at"): "datetime",
        ("parent", "code"): "varchar(255)",
        ("parent", "day"): "date",
        ("parent", "flag"): "tinyint(1)",
        ("parent", "kind"): "varchar(255)",
        ("parent", "note"): "mediumtext",
    }
    assert {(o["e"], o["co"]) for o in options} == {("InnoDB", "utf8mb4_unicode_ci")}


def test_strict_mode_refuses_bad_data_instead_of_changing_it(mydb):
    mydb.run_blocking(
        lambda txn: txn.execute(
            "CREATE TABLE s (n INTEGER, v VARCHAR(3), d DATE, m DECIMAL(5,2)) ENGINE=InnoDB"
        )
    )
    bad = [
        ("n", "abc"),  # not a number (non-strict: 0 and a warning)
        ("v", "abcd"),  # too long (non-strict: cut to 'abc')
        ("d", "2026-02-30"),  # no such day (non-strict: 0000-00-00)
        ("d", "0000-00-00"),  # NO_ZERO_DATE
        ("m", "123456"),  # out of range
    ]
    for column, value in bad:
        with pytest.raises(DatabaseError):
            mydb.run_blocking(
                lambda txn, c=column, v=value: txn.execute(f"INSERT INTO s ({c}) VALUES (?)", (v,))
            )
    with pytest.raises(DatabaseError):  # ERROR_FOR_DIVISION_BY_ZERO
        mydb.run_blocking(lambda txn: txn.execute("INSERT INTO s (n) VALUES (1 / 0)"))
    with pytest.raises(DatabaseError):  # ONLY_FULL_GROUP_BY, as in Koha's strict mode
        mydb.run_blocking(lambda txn: txn.query("SELECT n, v FROM s GROUP BY n"))
    assert mydb.run_blocking(lambda txn: txn.scalar("SELECT COUNT(*) AS c FROM s")) == 0


def test_errors_map_to_the_engine_types_without_row_values(mydb):
    secret = "23529000099999"

    def setup(txn):
        txn.execute(
            "CREATE TABLE p (id INTEGER PRIMARY KEY, card VARCHAR(20) UNIQUE, "
            "name VARCHAR(20) NOT NULL) ENGINE=InnoDB"
        )
        txn.execute(
            "CREATE TABLE c (id INTEGER PRIMARY KEY, p INTEGER NOT NULL, "
            "FOREIGN KEY (p) REFERENCES p (id)) ENGINE=InnoDB"
        )
        txn.execute("INSERT INTO p VALUES (1, ?, 'x')", (secret,))
        txn.execute("INSERT INTO c VALUES (1, 1)")

    mydb.run_blocking(setup)
    cases = [
        ("INSERT INTO p VALUES (2, ?, 'y')", (secret,), 1062),  # duplicate
        ("INSERT INTO c VALUES (2, 99)", (), 1452),  # no such parent
        ("DELETE FROM p WHERE id = 1", (), 1451),  # parent still referenced
        ("INSERT INTO p (id, card, name) VALUES (3, 'z', NULL)", (), 1048),  # NULL
        ("INSERT INTO p (id, card) VALUES (4, 'w')", (), 1364),  # NOT NULL left out
    ]
    for sql, params, code in cases:
        with pytest.raises(IntegrityError) as info:
            mydb.run_blocking(lambda txn, s=sql, p=params: txn.execute(s, p))
        assert info.value.sqlstate == str(code)
        assert secret not in str(info.value)
        assert info.value.__cause__ is None
        assert not isinstance(info.value, SerializationFailure)


def test_deadlock_is_a_serialization_failure(mydb):
    mydb.run_blocking(
        lambda txn: (
            txn.execute("CREATE TABLE d (id INTEGER PRIMARY KEY, n INTEGER) ENGINE=InnoDB"),
            txn.execute("INSERT INTO d VALUES (1, 0), (2, 0)"),
        )
    )
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def worker(first, second):
        def work(txn):
            txn.execute("UPDATE d SET n = n + 1 WHERE id = ?", (first,))
            barrier.wait(10)
            txn.execute("UPDATE d SET n = n + 1 WHERE id = ?", (second,))

        try:
            mydb.run_blocking(work)
            outcomes.append("committed")
        except SerializationFailure:
            outcomes.append("deadlock")

    threads = [threading.Thread(target=worker, args=a) for a in ((1, 2), (2, 1))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes) == ["committed", "deadlock"]


def test_lock_wait_beyond_lock_timeout_is_unavailable(server, my_url):
    holder = Database.from_url(my_url)
    waiter = Database.from_url(my_url + "?lock_timeout=1000")
    holder.run_blocking(
        lambda txn: (
            txn.execute("CREATE TABLE l (id INTEGER PRIMARY KEY, n INTEGER) ENGINE=InnoDB"),
            txn.execute("INSERT INTO l VALUES (1, 0)"),
        )
    )
    holding = threading.Event()
    release = threading.Event()

    def hold(txn):
        txn.one(f"SELECT n FROM l WHERE id = 1{txn.for_update}")
        holding.set()
        release.wait(20)

    thread = threading.Thread(target=holder.run_blocking, args=(hold,))
    thread.start()
    try:
        assert holding.wait(10)
        started = time.monotonic()
        with pytest.raises(Unavailable):
            waiter.run_blocking(lambda txn: txn.execute("UPDATE l SET n = 1 WHERE id = 1"))
        assert 0.5 < time.monotonic() - started < 8
    finally:
        release.set()
        thread.join(30)
        holder.close()
        waiter.close()


def test_read_committed_sees_commits_made_during_the_transaction(mydb):
    mydb.run_blocking(lambda txn: txn.execute("CREATE TABLE r (n INTEGER) ENGINE=InnoDB"))
    first_read = threading.Event()
    committed = threading.Event()

    def reader(txn):
        before = txn.scalar("SELECT COUNT(*) AS c FROM r")
        first_read.set()
        assert committed.wait(10)
        return before, txn.scalar("SELECT COUNT(*) AS c FROM r")

    result: list = []
    thread = threading.Thread(target=lambda: result.append(mydb.run_blocking(reader)))
    thread.start()
    assert first_read.wait(10)
    mydb.run_blocking(lambda txn: txn.execute("INSERT INTO r VALUES (1)"))
    committed.set()
    thread.join(20)
    assert result == [(0, 1)]  # REPEATABLE READ (the server default) would give (0, 0)


def test_a_killed_connection_is_dropped_and_replaced(mydb, server):
    first = mydb.run_blocking(lambda txn: txn.scalar("SELECT CONNECTION_ID() AS id"))
    server.execute(f"KILL CONNECTION {int(first)}")
    # The next transaction finds its pooled connection dead at its first statement and runs
    # on a new one; the caller sees nothing.
    second = mydb.run_blocking(lambda txn: txn.scalar("SELECT CONNECTION_ID() AS id"))
    assert second != first
    assert mydb.run_blocking(lambda txn: txn.scalar("SELECT CONNECTION_ID() AS id")) == second
    assert mydb.available


def test_a_connection_killed_mid_transaction_is_unavailable_then_replaced(mydb, server):
    def work(txn):
        pid = txn.scalar("SELECT CONNECTION_ID() AS id")
        server.execute(f"KILL CONNECTION {int(pid)}")
        txn.scalar("SELECT 1 AS one")

    with pytest.raises(Unavailable):
        mydb.run_blocking(work)
    assert mydb.run_blocking(lambda txn: txn.scalar("SELECT 1 AS one")) == 1


def test_koha_template_database(server):
    started = time.monotonic()
    url = server.create_database(template=KOHA_TEMPLATE)
    elapsed = time.monotonic() - started
    name = url.rsplit("/", 1)[1]
    db = Database.from_url(url)
    try:

        def read(txn):
            return (
                txn.scalar("SELECT value FROM systempreferences WHERE variable = 'Version'"),
                txn.scalar(
                    "SELECT COUNT(*) AS n FROM information_schema.tables "
                    "WHERE table_schema = DATABASE()"
                ),
                txn.scalar(
                    "SELECT COUNT(*) AS n FROM information_schema.referential_constraints "
                    "WHERE constraint_schema = DATABASE()"
                ),
                txn.scalar("SELECT COUNT(*) AS n FROM account_debit_types"),
            )

        version, tables, foreign_keys, debit_types = db.run_blocking(read)
        assert version == "23.0600007"
        assert tables == 249 and foreign_keys == 330
        assert debit_types > 0
        # Foreign keys are enforced as in Koha (a copy made with CREATE TABLE LIKE has none).
        with pytest.raises(IntegrityError):
            db.run_blocking(
                lambda txn: txn.execute(
                    "INSERT INTO borrower_debarments (borrowernumber, type) VALUES (1, 'NOPE')"
                )
            )
    finally:
        db.close()
        server.drop_database(name)
    print(f"Koha database copied in {elapsed:.3f} s")


def test_upsert_without_values_skips_only_the_duplicate(mydb):
    def setup(txn):
        txn.execute("CREATE TABLE p (id INTEGER PRIMARY KEY) ENGINE=InnoDB")
        txn.execute(
            "CREATE TABLE c (k VARCHAR(5) PRIMARY KEY, p INTEGER NOT NULL, "
            "FOREIGN KEY (p) REFERENCES p (id)) ENGINE=InnoDB"
        )
        txn.execute("INSERT INTO p VALUES (1)")

    mydb.run_blocking(setup)
    assert mydb.run_blocking(lambda txn: txn.upsert("c", {"k": "a"}, {"p": 1})) == 1
    assert mydb.run_blocking(lambda txn: txn.upsert("c", {"k": "a", "p": 1}, {})) == 0
    # INSERT IGNORE would turn these into warnings; the engine raises them as errors.
    with pytest.raises(IntegrityError):
        mydb.run_blocking(lambda txn: txn.upsert("c", {"k": "b", "p": 99}, {}))
    with pytest.raises(DatabaseError):
        mydb.run_blocking(lambda txn: txn.upsert("c", {"k": "toolong", "p": 1}, {}))
    rows = mydb.run_blocking(lambda txn: txn.query("SELECT k, p FROM c"))
    assert rows == [{"k": "a", "p": 1}]
