"""Fixtures shared by the whole suite: a demo database and a running gateway process."""

from __future__ import annotations

from datetime import datetime

import pytest

from tests.gateway import GatewayProcess, copy_database


def make_demo_database(path, now=None) -> str:
    """A migrated SQLite database with the demo data set at ``path``; returns its URL."""
    from koha_gateway import demo
    from koha_gateway.db import schema
    from koha_gateway.db.engine import Database

    url = f"sqlite:///{path}"
    db = Database.from_url(url)
    try:
        db.run_blocking(schema.migrate)
        db.run_blocking(demo.load, now or datetime.now().astimezone())
    finally:
        db.close()
    return url


@pytest.fixture(scope="session")
def demo_template(tmp_path_factory):
    """One demo database per test session; each gateway gets its own copy."""
    path = tmp_path_factory.mktemp("demo") / "demo.sqlite"
    make_demo_database(path)
    return path


@pytest.fixture
def make_gateway(tmp_path, demo_template):
    """Factory: ``make_gateway(customise=fn, koha_conf=path)`` starts a gateway on a fresh copy."""
    started = []

    def start(*, customise=None, koha_conf=None, database_url=None, extra_args=(), start=True):
        workdir = tmp_path / f"gw{len(started)}"
        workdir.mkdir()
        url = database_url or copy_database(demo_template, workdir / "demo.sqlite")
        process = GatewayProcess(
            workdir, url, customise=customise, koha_conf=koha_conf, extra_args=extra_args
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
