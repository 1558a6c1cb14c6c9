"""koha-gateway on Koha's own database: MariaDB loaded with Koha's schema and mandatory data
(``../shared/koha``, ``tests/support/mariadb.py``). The gateway creates only its kgw_ tables
there, fills an empty one with the demo data, and checks Koha's tables and columns at start-up."""

from __future__ import annotations

import os
import subprocess

import pytest

from koha_gateway.admin import main
from koha_gateway.db import koha, schema
from koha_gateway.db.engine import Database
from tests.gateway import ROOT, GatewayProcess


def run(url, fn, *args):
    db = Database.from_url(url)
    try:
        return db.run_blocking(fn, *args)
    finally:
        db.close()


def catalogue(txn):
    """Every table with its columns and their NULL-ability."""
    return {name: koha.columns(txn, name) for name in koha.table_names(txn)}


@pytest.fixture
def admin(koha_database, capsys):
    def call(*argv):
        status = main(["--database", koha_database, *argv])
        captured = capsys.readouterr()
        return status, captured.out, captured.err

    return call


def test_init_creates_only_kgw_tables(koha_database, admin):
    before = run(koha_database, catalogue)
    assert len(before) == 249
    status, out, err = admin("init")
    assert (status, err) == (0, "")
    assert out.splitlines() == [
        "Koha database (Koha version 23.06.00.007): only the gateway's kgw_ tables are created "
        "or upgraded",
        f"schema upgraded: version 0 -> {schema.LATEST}",
    ]
    after = run(koha_database, catalogue)
    assert set(after) - set(before) == {
        "kgw_schema_version",
        "kgw_itemtype_properties",
        "kgw_item_properties",
        "kgw_request_journal",
    }
    # Not one Koha table or column changed.
    assert {name: after[name] for name in before} == before
    assert admin("init")[1].splitlines()[-1] == f"schema is up to date (version {schema.LATEST})"
    found = run(koha_database, koha.check)
    assert found == koha.KohaSchema(
        version="23.0600007", koha_database=True, has_category_noissuescharge=False
    )


def test_load_demo_fills_an_empty_koha_database_once(koha_database, admin):
    status, out, err = admin("load-demo")
    assert (status, err) == (0, "")
    assert out.splitlines()[-1] == (
        "demo data loaded: 2 branches, 3 staff users, 4 patrons, 12 items, 3 loans, 2 holds, "
        "3 fines"
    )

    def kohas_view(txn):
        return {
            "restriction": txn.one("SELECT type FROM borrower_debarments"),
            "types": txn.scalar("SELECT COUNT(*) AS n FROM restriction_types"),
            "rules": txn.scalar(
                "SELECT COUNT(*) AS n FROM circulation_rules WHERE branchcode IS NULL "
                "AND categorycode IS NULL AND itemtype IS NULL"
            ),
            "orphan items": txn.scalar(
                "SELECT COUNT(*) AS n FROM items i LEFT JOIN biblioitems b "
                "ON b.biblioitemnumber = i.biblioitemnumber WHERE b.biblionumber IS NULL"
            ),
        }

    assert run(koha_database, kohas_view) == {
        "restriction": {"type": "MANUAL"},
        "types": 4,
        "rules": 7,
        "orphan items": 0,
    }
    status, out, err = admin("load-demo")
    assert (status, out) == (1, "")
    assert err == (
        "koha-gateway-admin: error: this Koha database already has 7 patrons: load-demo only "
        "fills an empty Koha database (for tests and trials), never a library's own\n"
    )


def test_kohas_version_and_newer_columns_are_detected(koha_database, admin):
    assert admin("init")[0] == 0
    assert run(koha_database, koha.check).has_category_noissuescharge is False
    # Koha 24.05 added categories.noissuescharge.
    run(
        koha_database,
        lambda txn: txn.execute(
            "ALTER TABLE categories ADD COLUMN noissuescharge DECIMAL(28,6) DEFAULT NULL"
        ),
    )
    assert run(koha_database, koha.check).has_category_noissuescharge is True


def _check_config(tmp_path, url):
    process = GatewayProcess(tmp_path, url, extra_args=["--check-config"])
    env = dict(os.environ, PYTHONPATH=str(ROOT), TZ="UTC")
    return subprocess.run(
        process.command(), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )


def test_start_up_check_on_kohas_schema(koha_database, admin, tmp_path):
    assert admin("load-demo")[0] == 0
    done = _check_config(tmp_path, koha_database)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (
        ": Koha database, Koha version 23.06.00.007; categories.noissuescharge absent"
        in done.stdout
    )

    def drop(txn):
        txn.execute("ALTER TABLE items DROP COLUMN datelastborrowed")
        txn.execute("ALTER TABLE issues DROP COLUMN auto_renew")

    run(koha_database, drop)
    done = _check_config(tmp_path, koha_database)
    assert done.returncode != 0
    assert (
        "koha-gateway: the database lacks Koha tables or columns that koha-gateway uses "
        "(is it a Koha database of a supported version?): items.datelastborrowed, "
        "issues.auto_renew"
    ) in done.stdout + done.stderr


def test_a_database_at_version_6_asks_for_init_which_keeps_the_journal(
    koha_database, admin, tmp_path
):
    """The gateway refuses to start on a database of an older schema (here 6, before the
    journal's rows per request) and names the command; init upgrades it in place, on Koha's
    database only the kgw_ tables, with the journal's rows."""
    assert run(koha_database, schema.migrate, 6) == (0, 6)
    row = ("joe", "10.0.0.1", 4, "a" * 64, "f" * 64, "{}", "2026-11-29 11:59:00")

    def journal_row(txn):
        txn.execute(
            "INSERT INTO kgw_request_journal (account, peer, serial, digest, fingerprint, "
            "response, created) VALUES (?, ?, ?, ?, ?, ?, ?)",
            row,
        )

    run(koha_database, journal_row)
    done = _check_config(tmp_path, koha_database)
    assert done.returncode != 0
    assert (
        f"the database schema is at version 6, this gateway needs schema version {schema.LATEST}: "
        "run 'koha-gateway-admin init' with the same --koha-conf or --database"
    ) in done.stdout + done.stderr
    before = run(koha_database, catalogue)
    status, out, err = admin("init")
    assert (status, err) == (0, "")
    assert out.splitlines()[-1] == f"schema upgraded: version 6 -> {schema.LATEST}"
    after = run(koha_database, catalogue)
    assert set(after) == set(before)
    assert {name: after[name] for name in before if not name.startswith("kgw_")} == {
        name: before[name] for name in before if not name.startswith("kgw_")
    }
    kept = run(
        koha_database,
        lambda txn: txn.query(
            "SELECT account, peer, serial, digest, fingerprint, response, created "
            "FROM kgw_request_journal"
        ),
    )
    assert [tuple(str(v) if k == "created" else v for k, v in r.items()) for r in kept] == [row]
    assert admin("load-demo")[0] == 0
    done = _check_config(tmp_path, koha_database)
    assert done.returncode == 0, done.stdout + done.stderr
