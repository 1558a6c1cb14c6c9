"""Fixtures of the database engine tests: every engine test runs on SQLite, PostgreSQL and
MariaDB (a throwaway server, tests/support/mariadb.py)."""

from __future__ import annotations

import pytest

from koha_gateway.db.engine import Database
from tests.support import ReactorThread
from tests.support.postgres import cluster_or_skip

ENGINES = ("sqlite", "postgresql", "mysql")


@pytest.fixture(params=ENGINES)
def engine_name(request) -> str:
    return request.param


@pytest.fixture
def db_url(engine_name, tmp_path) -> str:
    """A URL of a new, empty database on the engine under test."""
    if engine_name == "sqlite":
        yield f"sqlite://{tmp_path / 'test.sqlite'}"
        return
    if engine_name == "mysql":
        from tests.support.mariadb import server_or_skip

        server = server_or_skip()
    else:
        server = cluster_or_skip()
    url = server.create_database()
    yield url
    server.drop_database(url.rsplit("/", 1)[1].split("?")[0])


@pytest.fixture
def db(db_url):
    """A pool for blocking use (``run_blocking``); no reactor involved."""
    database = Database.from_url(db_url)
    yield database
    database.close()


@pytest.fixture(scope="session")
def reactor_thread():
    """A private reactor in a thread, for tests of ``Database.run`` (Deferreds)."""
    with ReactorThread() as rt:
        yield rt


@pytest.fixture
def adb(db_url, reactor_thread):
    """A pool bound to the private reactor: call ``reactor_thread.call(adb.run, fn)``."""
    database = reactor_thread.call(Database.from_url, db_url, reactor=reactor_thread.reactor)
    yield database
    reactor_thread.call(database.close)
