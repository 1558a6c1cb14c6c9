"""Outages of PostgreSQL and MariaDB: the server stops and comes back while a pool is in use.

Each test has its own private server (the shared ones must never be stopped). Under ``CI=true`` a
server that cannot start fails the test.
"""

from __future__ import annotations

import threading
import time

import pytest
from twisted.internet import defer
from twisted.logger import globalLogPublisher

from koha_gateway.db.engine import Database, Unavailable
from tests.support import server_unavailable
from tests.support.postgres import PostgresCluster, PostgresUnavailable


@pytest.fixture(params=["postgresql", "mysql"])
def cluster(request):
    """A private server of the engine under test: create_database, stop, start, password."""
    if request.param == "mysql":
        from tests.support.mariadb import private_server_or_skip

        server = private_server_or_skip()
        yield server
        server.destroy()
        return
    try:
        pg = PostgresCluster()
    except PostgresUnavailable as exc:
        server_unavailable(f"PostgreSQL: {exc}")
    try:
        pg.start()
    except PostgresUnavailable as exc:
        pg.destroy()
        server_unavailable(f"PostgreSQL: {exc}")
    yield pg
    pg.destroy()


def backend_pid(txn) -> int:
    if txn.engine.name == "mysql":
        return txn.scalar("SELECT CONNECTION_ID() AS id")
    return txn.scalar("SELECT pg_backend_pid()")


def terminate_backend(txn, pid: int) -> None:
    if txn.engine.name == "mysql":
        txn.execute(f"KILL CONNECTION {int(pid)}")
    else:
        txn.scalar("SELECT pg_terminate_backend(?)", (pid,))


@pytest.fixture
def log_lines():
    """Every log event emitted during the test, formatted, for leak and noise checks."""
    from twisted.logger import formatEvent

    lines: list[str] = []

    def observer(event):
        lines.append(formatEvent(event) or "")

    globalLogPublisher.addObserver(observer)
    yield lines
    globalLogPublisher.removeObserver(observer)


def setup_counter(db: Database) -> None:
    db.run_blocking(
        lambda txn: (
            txn.execute("CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)"),
            txn.execute("INSERT INTO counter VALUES (1, 0)"),
        )
    )


def bump(txn):
    txn.execute("UPDATE counter SET n = n + 1 WHERE id = 1")
    return txn.scalar("SELECT n FROM counter WHERE id = 1")


def read(txn):
    return txn.scalar("SELECT n FROM counter WHERE id = 1")


def test_stop_gives_unavailable_quickly_and_restart_resumes_service(
    cluster, reactor_thread, log_lines
):
    url = cluster.create_database("outage")
    blocking = Database.from_url(url)
    setup_counter(blocking)
    blocking.close()
    db = reactor_thread.call(
        Database.from_url, url, max_connections=4, reactor=reactor_thread.reactor
    )
    try:
        # Open a connection on every pool thread.
        reactor_thread.call(lambda: defer.gatherResults([db.run(bump) for _ in range(12)]))
        assert reactor_thread.call(db.run, read) == 12

        cluster.stop()
        for _ in range(3):
            started = time.monotonic()
            with pytest.raises(Unavailable):
                reactor_thread.call(db.run, bump)
            assert time.monotonic() - started < 5
        assert not db.available

        cluster.start()
        # The first transaction after the restart succeeds: dead pooled connections are
        # replaced without the caller noticing, and every pool thread recovers.
        assert reactor_thread.call(db.run, bump) == 13
        results = reactor_thread.call(
            lambda: defer.gatherResults([db.run(bump) for _ in range(12)])
        )
        assert sorted(results) == list(range(14, 26))
        assert db.available
    finally:
        reactor_thread.call(db.close)
    text = "\n".join(log_lines)
    assert cluster.password not in text
    assert text.count("unavailable") == 1  # one line per outage, not one per request
    assert "available again" in text


def test_blocking_use_recovers_after_restart(cluster):
    db = Database.from_url(cluster.create_database("blocking"))
    try:
        setup_counter(db)
        assert db.run_blocking(bump) == 1
        cluster.stop()
        with pytest.raises(Unavailable):
            db.run_blocking(bump)
        cluster.start()
        assert db.run_blocking(bump) == 2
        # A restart with no failed request in between: the stale connection is replaced.
        cluster.stop()
        cluster.start()
        assert db.run_blocking(bump) == 3
    finally:
        db.close()


def _terminate_me(db: Database, admin: Database, connected: threading.Event, pid_box: list):
    def terminate():
        connected.wait(10)
        admin.run_blocking(terminate_backend, pid_box[0])

    return threading.Thread(target=terminate)


@pytest.mark.parametrize("retry", [False, True])
def test_idempotent_reads_are_retried_once_only_when_asked(cluster, retry):
    url = cluster.create_database(f"retry_{int(retry)}")
    db = Database.from_url(url)
    admin = Database.from_url(url)
    calls: list[int] = []
    connected = threading.Event()
    pid_box: list[int] = []
    try:
        setup_counter(db)

        def report(txn):
            calls.append(1)
            pid = backend_pid(txn)
            if len(calls) == 1:
                pid_box.append(pid)
                connected.set()
                time.sleep(0.5)  # the backend is terminated meanwhile
            return txn.scalar("SELECT n FROM counter WHERE id = 1")

        killer = _terminate_me(db, admin, connected, pid_box)
        killer.start()
        if retry:
            assert db.run_blocking(report, retry=True) == 0
            assert len(calls) == 2
        else:
            with pytest.raises(Unavailable):
                db.run_blocking(report)
            assert len(calls) == 1
        killer.join(10)
        # Either way the pool is healthy afterwards.
        assert db.run_blocking(read) == 0
    finally:
        db.close()
        admin.close()


def test_writes_after_their_first_statement_are_not_retried(cluster):
    url = cluster.create_database("noretry")
    db = Database.from_url(url)
    admin = Database.from_url(url)
    connected = threading.Event()
    pid_box: list[int] = []
    calls: list[int] = []
    try:
        setup_counter(db)

        def write(txn):
            calls.append(1)
            txn.execute("UPDATE counter SET n = n + 1 WHERE id = 1")
            pid_box.append(backend_pid(txn))
            connected.set()
            time.sleep(0.5)
            txn.execute("UPDATE counter SET n = n + 1 WHERE id = 1")

        killer = _terminate_me(db, admin, connected, pid_box)
        killer.start()
        with pytest.raises(Unavailable):
            db.run_blocking(write, retry=False)
        killer.join(10)
        assert calls == [1]
        assert db.run_blocking(read) == 0  # nothing of the failed transaction was kept
    finally:
        db.close()
        admin.close()


def test_acknowledged_commits_survive_a_server_crash(cluster):
    url = cluster.create_database("crash")
    db = Database.from_url(url)
    try:
        setup_counter(db)
        for _ in range(5):
            db.run_blocking(bump)
        cluster.stop("immediate")  # like a crash: no shutdown checkpoint
        cluster.start()
        assert db.run_blocking(read) == 5
    finally:
        db.close()


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://kgw:secret@192.0.2.1:5432/none?connect_timeout=2",
        "mysql://kgw:secret@192.0.2.1:3306/none?connect_timeout=2",
    ],
)
def test_unreachable_server_fails_within_the_connect_timeout(url):
    # 192.0.2.0/24 is TEST-NET-1: never routed. Either the network refuses at once or the
    # connect times out after connect_timeout.
    db = Database.from_url(url)
    try:
        started = time.monotonic()
        with pytest.raises(Unavailable) as info:
            db.run_blocking(read)
        assert time.monotonic() - started < 6
        assert "secret" not in str(info.value)
    finally:
        db.close()
