"""Fixtures shared by the whole suite: demo databases on both engines and a running gateway.

Every end-to-end test that uses ``gateway`` runs twice: on the embedded SQLite default and on a
throwaway PostgreSQL cluster (``tests/support/postgres.py``). Each test gets its own copy of the
demo data: a file copy on SQLite, ``CREATE DATABASE ... TEMPLATE`` on PostgreSQL.
"""

from __future__ import annotations

import pytest

from tests.gateway import NOW, GatewayProcess, copy_database

ENGINES = ("sqlite", "postgresql")
_PG_TEMPLATE = "koha_demo_template"


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


@pytest.fixture(params=ENGINES)
def engine(request) -> str:
    return request.param


@pytest.fixture
def demo_url(request, engine, tmp_path, demo_template):
    """A fresh copy of the demo database on the engine under test."""
    if engine == "sqlite":
        yield copy_database(demo_template, tmp_path / "demo.sqlite")
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
