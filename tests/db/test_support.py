"""The test-suite helpers this area provides to everyone (tests/support)."""

from __future__ import annotations

import os

import psycopg2
import pytest

from tests.support import ReactorThread, ci_strict, server_unavailable
from tests.support.postgres import PostgresCluster, PostgresUnavailable


def test_missing_server_fails_under_ci_and_skips_otherwise(monkeypatch):
    monkeypatch.setenv("CI", "true")
    assert ci_strict()
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        server_unavailable("no PostgreSQL here")
    monkeypatch.setenv("CI", "false")
    assert not ci_strict()
    with pytest.raises(pytest.skip.Exception):
        server_unavailable("no PostgreSQL here")


def test_reactor_thread_runs_calls_and_deferreds():
    from twisted.internet import task

    with ReactorThread() as rt:
        assert rt.call(lambda: 41 + 1) == 42
        assert rt.call(task.deferLater, rt.reactor, 0.01, lambda: "later") == "later"
        with pytest.raises(ZeroDivisionError):
            rt.call(lambda: 1 / 0)


def test_cluster_lifecycle_databases_restart_and_cleanup():
    try:
        cluster = PostgresCluster()
    except PostgresUnavailable as exc:
        server_unavailable(f"PostgreSQL: {exc}")
    base = cluster.base
    try:
        cluster.start()
        url = cluster.create_database("lifecycle")
        assert "@127.0.0.1:" in url and cluster.password not in url  # the password is quoted
        conn = psycopg2.connect(
            host="127.0.0.1",
            port=cluster.port,
            user=cluster.superuser,
            password=cluster.password,
            dbname="lifecycle",
        )
        conn.close()
        port = cluster.port
        cluster.stop()
        cluster.start()
        assert cluster.port == port
        cluster.drop_database("lifecycle")
    finally:
        cluster.destroy()
    assert not os.path.exists(base)


def test_mariadb_server_lifecycle_restart_and_cleanup():
    from tests.support.mariadb import KOHA_TEMPLATE, private_server_or_skip

    server = private_server_or_skip()
    base, socket_path = server.base, server.socket
    try:
        assert server.execute("SELECT @@port")[0][0] == server.port
        assert server.execute(f"SELECT COUNT(*) FROM `{KOHA_TEMPLATE}`.systempreferences")[0][0]
        url = server.create_database("lifecycle")
        assert "@127.0.0.1:" in url and server.password not in url  # the password is quoted
        port = server.port
        server.stop()
        assert not os.path.exists(socket_path)
        server.start()
        assert server.port == port
        assert server.execute("SHOW DATABASES LIKE 'lifecycle'") == [("lifecycle",)]
        server.drop_database("lifecycle")
        assert server.execute("SHOW DATABASES LIKE 'lifecycle'") == []
        pid = server._process.pid
    finally:
        server.destroy()
    assert not os.path.exists(base)
    # The server process is gone (its pid is either free or someone else's now).
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            assert b"mariadbd" not in fh.read()
    except FileNotFoundError:
        pass


def test_koha_database_fixture_gives_a_fresh_copy_each_time(koha_database):
    from koha_gateway.db import Database
    from tests.conftest import drop_koha_database, make_koha_database

    other = make_koha_database()
    try:
        assert other != koha_database
        db = Database.from_url(koha_database)
        try:
            db.run_blocking(
                lambda txn: txn.execute(
                    "INSERT INTO branches (branchcode, branchname) VALUES ('WEL', 'Wellington')"
                )
            )
        finally:
            db.close()
        db = Database.from_url(other)
        try:
            count = db.run_blocking(lambda txn: txn.scalar("SELECT COUNT(*) AS n FROM branches"))
            version = db.run_blocking(
                lambda txn: txn.scalar(
                    "SELECT value FROM systempreferences WHERE variable = 'Version'"
                )
            )
        finally:
            db.close()
        assert count == 0 and version == "23.0600007"
    finally:
        drop_koha_database(other)
