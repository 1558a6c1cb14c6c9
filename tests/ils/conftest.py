"""Fixtures for the ILS and ACS unit tests: a fresh demo database per test at a fixed instant.

* ``now``: the fixed aware datetime the demo data is relative to and requests run at;
* ``db``: a :class:`~koha_gateway.db.engine.Database` holding its own copy of the demo data,
  once on SQLite and once on PostgreSQL (the root ``engine`` fixture's parameters; PostgreSQL is
  skipped when it cannot start, and fails under ``CI=true``);
* ``sipconfig``: the shipped ``conf/SIPconfig.xml``;
* ``ctx``: a factory ``ctx(account_id="joe", **overrides)`` building a ``RequestContext``;
* ``acs``: an ``ACS()``;
* ``call`` (also importable as a function): ``call(db, ctx, raw) -> str`` parses a request,
  runs ``ACS().handle`` in one transaction and returns the response text (no AY/AZ, no
  terminator), e.g. ``call(db, ctx(), "23000" + TS + "AOWEL|AA23529000000001|")``.

``TS`` is a SIP2 timestamp to put in requests; ``fields(text)`` splits a response into its
fixed part and a list of ``(fid, value)``.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from koha_gateway.acs.context import RequestContext
from koha_gateway.config.sipconfig import load_sip_config
from koha_gateway.db.engine import Database
from koha_gateway.ils import sysprefs as ils_sysprefs
from koha_gateway.sip2.codec import parse
from tests.conftest import load_demo_database
from tests.gateway import copy_database

ROOT = Path(__file__).resolve().parents[2]
SIPCONFIG = ROOT / "conf" / "SIPconfig.xml"

#: The instant of every unit test: 10 March 2026, 14:30 in Wellington (NZDT, UTC+13).
NOW = datetime(2026, 3, 10, 14, 30, 0, tzinfo=timezone(timedelta(hours=13)))
TS = "20260310    143000"
TODAY = "2026-03-10"

ADA, GRACE, ALAN, EDSGER = (f"2352900000000{n}" for n in range(1, 5))
BARCODE = {n: f"399990000000{n:02d}" for n in range(1, 13)}

_PG_TEMPLATE = "koha_unit_demo_template"
_MY_TEMPLATE = "kgw_koha_unit_demo_template"


@pytest.fixture
def now() -> datetime:
    return NOW


@pytest.fixture(scope="session")
def unit_demo_template(tmp_path_factory) -> Path:
    """The SQLite demo database at :data:`NOW`, copied for each test."""
    path = tmp_path_factory.mktemp("unit-demo") / "demo.sqlite"
    load_demo_database(f"sqlite:///{path}", NOW)
    return path


@pytest.fixture(scope="session")
def unit_pg_template():
    """The PostgreSQL demo database at :data:`NOW` that each test database is cloned from."""
    from tests.support.postgres import cluster_or_skip

    cluster = cluster_or_skip()
    # tests/acs/conftest.py registers these fixtures a second time in the same process and
    # cluster: start from a clean template each time (both hold the same data).
    cluster.drop_database(_PG_TEMPLATE)
    load_demo_database(cluster.create_database(_PG_TEMPLATE), NOW)
    return cluster


@pytest.fixture(scope="session")
def unit_my_template():
    """MariaDB: Koha's schema with the demo data at :data:`NOW`, copied for each test."""
    from tests.conftest import make_koha_demo_template

    return make_koha_demo_template(_MY_TEMPLATE, NOW)


@pytest.fixture
def db(request, engine, tmp_path, unit_demo_template):
    """A fresh demo database (migrated, demo data at :data:`NOW`) on the engine under test."""
    dropped = None
    if engine == "sqlite":
        url = copy_database(unit_demo_template, tmp_path / "demo.sqlite")
    elif engine == "mysql":
        server = request.getfixturevalue("unit_my_template")
        url = server.create_database(template=_MY_TEMPLATE)
        dropped = (server, url.rsplit("/", 1)[1])
    else:
        cluster = request.getfixturevalue("unit_pg_template")
        url = cluster.create_database(template=_PG_TEMPLATE)
        dropped = (cluster, url.rsplit("/", 1)[1])
    database = Database.from_url(url, max_connections=2)
    yield database
    database.close()
    if dropped is not None:
        cluster, name = dropped
        cluster.drop_database(name)


@pytest.fixture(scope="session")
def sipconfig():
    return load_sip_config(SIPCONFIG)


@pytest.fixture
def ctx(db, sipconfig):
    """Factory: ``ctx(account_id="joe", **overrides)``.

    Keywords that are ``RequestContext`` fields (``password_ok``, ``protocol_version``, ``now``,
    ``print_width``, ...) set them. ``sysprefs={...}`` overrides system preferences on top of
    the database and SIPconfig.xml values; ``policy={...}`` replaces attributes of the
    institution's policy. Any other keyword replaces an attribute of the account
    (``checked_in_ok=True``, ``ae_field_template="..."``, ``item_fields=(("ZY", "itype"),)``).
    """
    context_fields = {f.name for f in dataclasses.fields(RequestContext)}

    def build(account_id: str = "joe", **overrides):
        account = sipconfig.accounts[account_id]
        institution = sipconfig.institutions[account.institution]
        pref_overrides = overrides.pop("sysprefs", None) or {}
        policy_overrides = overrides.pop("policy", None) or {}
        context_values = {k: overrides.pop(k) for k in list(overrides) if k in context_fields}
        if overrides:
            account = dataclasses.replace(account, **overrides)
        if policy_overrides:
            institution = dataclasses.replace(
                institution, policy=dataclasses.replace(institution.policy, **policy_overrides)
            )
        prefs = ils_sysprefs.Sysprefs(db.run_blocking(ils_sysprefs.load)).with_overrides(
            sipconfig.syspref_overrides, account.syspref_overrides, pref_overrides
        )
        values = {
            "account": account,
            "institution": institution,
            "sysprefs": prefs,
            "now": NOW,
            "protocol_version": 2,
            "staff_userid": account.id,
        }
        values.update(context_values)
        return RequestContext(**values)

    return build


@pytest.fixture
def acs():
    from koha_gateway.acs.dispatch import ACS

    return ACS()


def call(db, context, raw: str) -> str:
    """Parse ``raw``, run ``ACS().handle`` in one transaction, return the response text."""
    from koha_gateway.acs.dispatch import ACS

    message = parse(raw)
    response = db.run_blocking(lambda txn: ACS().handle(txn, context, message))
    return response.text()


@pytest.fixture(name="call")
def call_fixture():
    return call


def fields(text: str, fixed_length: int) -> tuple[str, list[tuple[str, str]]]:
    """Split a response text: ``(fixed part including the code, [(fid, value), ...])``."""
    fixed = text[: 2 + fixed_length]
    rest = text[2 + fixed_length :]
    pairs = [(piece[:2], piece[2:]) for piece in rest.split("|") if piece]
    return fixed, pairs


def field_values(text: str, fixed_length: int, fid: str) -> list[str]:
    """Every value of field ``fid`` in a response text."""
    return [value for key, value in fields(text, fixed_length)[1] if key == fid]
