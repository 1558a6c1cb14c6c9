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
