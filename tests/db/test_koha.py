"""The start-up check of Koha's schema (koha_gateway.db.koha): every table and column the
gateway uses, Koha's version, the optional columns of newer Koha; and the gateway refusing to
start, naming what is missing."""

from __future__ import annotations

import os
import subprocess

import pytest

from koha_gateway.db import koha, schema
from koha_gateway.ils import patrons
from tests.conftest import load_demo_database
from tests.gateway import ROOT, GatewayProcess


@pytest.fixture(params=["sqlite", "postgresql"])
def engine_name(request) -> str:
    """The engines whose Koha tables the gateway creates itself; the same checks on Koha's own
    schema (MariaDB) are in tests/test_koha_database.py."""
    return request.param


def test_own_database_passes(db):
    db.run_blocking(schema.migrate)
    assert db.run_blocking(koha.check) == koha.KohaSchema(
        version=None, koha_database=False, has_category_noissuescharge=True
    )


def test_missing_tables_and_columns_are_each_named(db):
    db.run_blocking(schema.migrate)

    def damage(txn):
        txn.execute("DROP TABLE zebraqueue")
        txn.execute("ALTER TABLE items DROP COLUMN copynumber")
        txn.execute("ALTER TABLE borrowers DROP COLUMN lastseen")

    db.run_blocking(damage)
    with pytest.raises(koha.SchemaError) as failure:
        db.run_blocking(koha.check)
    assert failure.value.missing == ["borrowers.lastseen", "items.copynumber", "table zebraqueue"]
    assert "items.copynumber" in str(failure.value)


def test_optional_column_of_newer_koha_is_detected(db):
    """Koha before 24.05 has no categories.noissuescharge: patrons are read without it and
    the noissuescharge preference applies."""
    db.run_blocking(schema.migrate)
    db.run_blocking(
        lambda txn: (
            txn.execute("INSERT INTO branches (branchcode, branchname) VALUES ('WEL', 'W')"),
            txn.execute("INSERT INTO categories (categorycode) VALUES ('PT')"),
            txn.execute(
                "INSERT INTO borrowers (cardnumber, branchcode, categorycode) "
                "VALUES ('1', 'WEL', 'PT')"
            ),
            txn.execute("ALTER TABLE categories DROP COLUMN noissuescharge"),
        )
    )
    found = db.run_blocking(koha.check)
    assert found.has_category_noissuescharge is False
    koha.remember(db.engine, found)
    patron = db.run_blocking(patrons.find_patron, "1")
    assert patron["category_noissuescharge"] is None


def test_koha_version_is_read(db):
    db.run_blocking(schema.migrate)
    db.run_blocking(
        lambda txn: txn.execute(
            "INSERT INTO systempreferences (variable, value) VALUES ('Version', '23.0600007')"
        )
    )
    found = db.run_blocking(koha.check)
    assert (found.version, found.version_text, found.koha_database) == (
        "23.0600007",
        "23.06.00.007",
        True,
    )


def _check_config(tmp_path, url):
    process = GatewayProcess(tmp_path, url, extra_args=["--check-config"])
    env = dict(os.environ, PYTHONPATH=str(ROOT), TZ="UTC")
    return subprocess.run(
        process.command(), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )


def test_check_config_reports_the_database(tmp_path):
    url = load_demo_database(f"sqlite:///{tmp_path / 'demo.sqlite'}")
    done = _check_config(tmp_path, url)
    assert done.returncode == 0, done.stdout + done.stderr
    assert ": koha-gateway's own database; categories.noissuescharge present" in done.stdout


def test_gateway_refuses_to_start_without_a_column(tmp_path):
    url = load_demo_database(f"sqlite:///{tmp_path / 'demo.sqlite'}")
    from koha_gateway.db.engine import Database

    db = Database.from_url(url)
    try:
        db.run_blocking(lambda txn: txn.execute("ALTER TABLE items DROP COLUMN datelastborrowed"))
    finally:
        db.close()
    done = _check_config(tmp_path, url)
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert (
        "koha-gateway: the database lacks Koha tables or columns that koha-gateway uses "
        "(is it a Koha database of a supported version?): items.datelastborrowed"
    ) in output
