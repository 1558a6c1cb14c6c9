"""Fixtures shared by the whole suite: demo databases on every engine and a running gateway.

Every end-to-end test that uses ``gateway`` runs on each engine of :data:`ENGINES`: the
embedded SQLite default and a throwaway PostgreSQL cluster (``tests/support/postgres.py``). Each
test gets its own copy of the demo data: a file copy on SQLite, ``CREATE DATABASE ... TEMPLATE``
on PostgreSQL.

MariaDB with Koha's own schema (``tests/support/mariadb.py``: a throwaway server loaded by
``../shared/koha/load.sh``):

* ``make_koha_database()`` (a function, and the fixture ``koha_database`` for one per test)
  returns the ``mysql://`` URL of a fresh database holding Koha's schema and mandatory data
  (249 tables, 330 foreign keys, system preferences, permissions, account types), copied from
  the server's ``koha_template`` in about 0.2 s; ``drop_koha_database(url)`` drops it.
* ``make_koha_demo_template(name, now)`` builds, once, such a database with the demo data set
  loaded on top (``load_demo_database``); tests copy it with
  ``server.create_database(template=name)``.
* Adding ``"mysql"`` to :data:`ENGINES` runs every end-to-end, ILS and ACS test on MariaDB too
  (``demo_url`` and ``tests/ils/conftest.py``'s ``db`` have the MariaDB branch). That needs the
  gateway's Koha-schema support (migrations that create only ``kgw_`` tables on a Koha
  database), which ``load_demo_database`` relies on.
"""

from __future__ import annotations

import pytest

from tests.gateway import NOW, GatewayProcess, copy_database

#: The engines every end-to-end, ILS and ACS test runs on (see the module docstring for "mysql").
ENGINES = ("sqlite", "postgresql")
_PG_TEMPLATE = "koha_demo_template"
_MY_TEMPLATE = "kgw_koha_demo_template"


def load_demo_database(url: str, now=None) -> str:
    """Migrate the database at ``url`` and load the demo data set into it (as of ``now``,
    by default the instant the test gateways run at)."""
    from koha_gateway import demo
    from koha_gateway.db import schema
    from koha_gateway.db.engine import Database

    db = Database.from_url(url)
    try:
        db.run_blocking(schema.migrate)
        db.run_blocking(demo.load, now or NOW)
    finally:
        db.close()
    return url


def make_demo_database(path, now=None) -> str:
    """A migrated SQLite database with the demo data set at ``path``; returns its URL."""
    return load_demo_database(f"sqlite:///{path}", now)


def make_koha_database(name: str | None = None) -> str:
    """The URL of a fresh MariaDB database with Koha's schema and mandatory data.

    On the session's throwaway server (started on first use; the test is skipped when MariaDB
    cannot start, and fails under ``CI=true``). Drop it with :func:`drop_koha_database`.
    """
    from tests.support.mariadb import KOHA_TEMPLATE, server_or_skip

    return server_or_skip().create_database(name, template=KOHA_TEMPLATE)


def drop_koha_database(url: str) -> None:
    from tests.support.mariadb import server_or_skip

    server_or_skip().drop_database(url.rsplit("/", 1)[1].split("?")[0])


def make_koha_demo_template(name: str, now=None):
    """A Koha database named ``name`` with the demo data set loaded on top; returns the server
    (copy it per test with ``server.create_database(template=name)``)."""
    from tests.support.mariadb import server_or_skip

    server = server_or_skip()
    server.drop_database(name)
    load_demo_database(make_koha_database(name), now)
    return server


@pytest.fixture
def koha_database():
    """A fresh MariaDB database with Koha's schema and mandatory data (its URL)."""
    url = make_koha_database()
    yield url
    drop_koha_database(url)


@pytest.fixture(scope="session")
def demo_template(tmp_path_factory):
    """One SQLite demo database per test session; each gateway gets its own copy."""
    path = tmp_path_factory.mktemp("demo") / "demo.sqlite"
    make_demo_database(path)
    return path


@pytest.fixture(scope="session")
def pg_demo_template():
    """The PostgreSQL demo database that each PostgreSQL test database is cloned from."""
    from tests.support.postgres import cluster_or_skip

    cluster = cluster_or_skip()
    load_demo_database(cluster.create_database(_PG_TEMPLATE))
    return cluster


@pytest.fixture(scope="session")
def my_demo_template():
    """MariaDB: Koha's schema with the demo data set, that each MariaDB test database copies."""
    return make_koha_demo_template(_MY_TEMPLATE)


@pytest.fixture(params=ENGINES)
def engine(request) -> str:
    return request.param


@pytest.fixture
def demo_url(request, engine, tmp_path, demo_template):
    """A fresh copy of the demo database on the engine under test."""
    if engine == "sqlite":
        yield copy_database(demo_template, tmp_path / "demo.sqlite")
        return
    if engine == "mysql":
        server = request.getfixturevalue("my_demo_template")
        url = server.create_database(template=_MY_TEMPLATE)
        yield url
        server.drop_database(url.rsplit("/", 1)[1])
        return
    cluster = request.getfixturevalue("pg_demo_template")
    url = cluster.create_database(template=_PG_TEMPLATE)
    yield url
    cluster.drop_database(url.rsplit("/", 1)[1])


@pytest.fixture
def make_gateway(tmp_path, demo_url):
    """Factory: ``make_gateway(customise=fn, koha_conf=path)`` starts a gateway process."""
    started = []

    def start(
        *,
        customise=None,
        koha_conf=None,
        database_url=None,
        extra_args=(),
        start=True,
        clock=NOW,
    ):
        workdir = tmp_path / f"gw{len(started)}"
        workdir.mkdir()
        process = GatewayProcess(
            workdir,
            database_url or demo_url,
            customise=customise,
            koha_conf=koha_conf,
            extra_args=extra_args,
            clock=clock,
        )
        started.append(process)
        return process.start() if start else process

    yield start
    for process in started:
        process.stop()


@pytest.fixture
def gateway(make_gateway):
    """A gateway with the shipped SIPconfig.xml (demo accounts) on a fresh demo database."""
    return make_gateway()
