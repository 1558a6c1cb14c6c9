"""Migrations are numbered ahead of time and merged in any order: an upgrade applies every
migration the database has not recorded, also one numbered below the newest it has."""

from __future__ import annotations

import pytest

from koha_gateway.db import schema


@pytest.fixture(params=["sqlite", "postgresql"])
def engine_name(request) -> str:
    """The engines whose schema the gateway creates itself."""
    return request.param


def test_a_migration_numbered_below_the_newest_applied_is_still_applied(db):
    assert db.run_blocking(schema.migrate) == (0, schema.LATEST)

    def forget_version_4(txn):
        txn.execute("DROP TABLE special_holidays")
        txn.execute("DROP TABLE repeatable_holidays")
        txn.execute("DELETE FROM kgw_schema_version WHERE version = 4")

    db.run_blocking(forget_version_4)
    assert db.run_blocking(schema.migrate) == (schema.LATEST, schema.LATEST)

    def read(txn):
        versions = [r["version"] for r in txn.query("SELECT version FROM kgw_schema_version")]
        holidays = txn.scalar("SELECT COUNT(*) AS n FROM special_holidays")
        return sorted(versions), holidays

    assert db.run_blocking(read) == ([m.version for m in schema.MIGRATIONS], 0)
