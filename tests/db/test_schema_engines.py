"""The versioned schema (koha_gateway.db.schema) applied by the engine layer on both engines:
a fresh install, an in-place upgrade from the previous version with data in it, and the
database-level guarantee that an item is on loan only once, under a race."""

from __future__ import annotations

import threading

import pytest

from koha_gateway.db import schema
from koha_gateway.db.engine import Database, IntegrityError


@pytest.fixture(params=["sqlite", "postgresql"])
def engine_name(request) -> str:
    """The engines whose schema the gateway creates itself. On MariaDB/MySQL the database is
    Koha's own (tests/support/mariadb.py, ``KOHA_TEMPLATE``): the gateway creates only its
    kgw_ tables there, which the Koha-schema tests cover."""
    return request.param


def test_migrate_fresh_database_to_latest(db):
    assert db.run_blocking(schema.migrate) == (0, schema.LATEST)
    versions = db.run_blocking(
        lambda txn: [r["version"] for r in txn.query("SELECT version FROM schema_version")]
    )
    assert sorted(versions) == [m.version for m in schema.MIGRATIONS]
    # Running it again changes nothing.
    assert db.run_blocking(schema.migrate) == (schema.LATEST, schema.LATEST)
    prefs = db.run_blocking(lambda txn: txn.scalar("SELECT COUNT(*) AS n FROM systempreferences"))
    assert prefs == len(schema.DEFAULT_SYSPREFS)


def _load_version_1_data(txn):
    txn.execute("INSERT INTO branches (branchcode, branchname) VALUES ('WEL', 'Wellington')")
    txn.execute("INSERT INTO categories (categorycode, noissuescharge) VALUES ('PT', 5.5)")
    txn.execute("INSERT INTO itemtypes (itemtype, description) VALUES ('BK', 'Book')")
    patron = txn.insert(
        "INSERT INTO borrowers (cardnumber, userid, surname, branchcode, categorycode, "
        "dateexpiry) VALUES (?, ?, ?, ?, ?, ?)",
        ("23529000035676", "jdoe", "Doe", "WEL", "PT", "2030-01-01"),
        pk="borrowernumber",
    )
    biblio = txn.insert(
        "INSERT INTO biblio (title, author) VALUES (?, ?)", ("Perl 5", "Wall"), pk="biblionumber"
    )
    item = txn.insert(
        "INSERT INTO items (biblionumber, barcode, homebranch, holdingbranch, itype, price) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (biblio, "39999000011111", "WEL", "WEL", "BK", 12.5),
        pk="itemnumber",
    )
    txn.insert(
        "INSERT INTO issues (borrowernumber, itemnumber, date_due, issuedate) VALUES (?,?,?,?)",
        (patron, item, "2026-12-20 23:59:00", "2026-11-29 10:00:00"),
        pk="issue_id",
    )
    txn.insert(
        "INSERT INTO accountlines (borrowernumber, itemnumber, date, amount, "
        "amountoutstanding, debit_type_code) VALUES (?, ?, ?, ?, ?, ?)",
        (patron, item, "2026-11-29 10:00:00", 2.25, 2.25, "OVERDUE"),
        pk="accountlines_id",
    )
    return patron, item


def test_upgrade_from_previous_version_keeps_data(db):
    if len(schema.MIGRATIONS) < 2:
        pytest.fail("only one schema version exists: add the upgrade data check for it")
    previous = schema.MIGRATIONS[-2].version
    assert db.run_blocking(schema.migrate, previous) == (0, previous)
    patron, item = db.run_blocking(_load_version_1_data)

    assert db.run_blocking(schema.migrate) == (previous, schema.LATEST)

    def check(txn):
        return (
            txn.one("SELECT cardnumber, surname, dateexpiry FROM borrowers"),
            txn.one("SELECT barcode, price FROM items WHERE itemnumber = ?", (item,)),
            txn.one("SELECT borrowernumber, date_due FROM issues"),
            txn.scalar("SELECT SUM(amountoutstanding) AS s FROM accountlines"),
            txn.scalar("SELECT MAX(version) AS v FROM schema_version"),
        )

    borrower, item_row, issue, owed, version = db.run_blocking(check)
    assert borrower == {
        "cardnumber": "23529000035676",
        "surname": "Doe",
        "dateexpiry": "2030-01-01",
    }
    assert item_row == {"barcode": "39999000011111", "price": 12.5}
    assert issue == {"borrowernumber": patron, "date_due": "2026-12-20 23:59:00"}
    assert owed == 2.25
    assert version == schema.LATEST
    # Version 5: the request journal is kgw_request_journal, the old table is gone.
    journal_tables = db.run_blocking(
        lambda txn: (
            schema._has_table(txn, "kgw_request_journal"),
            schema._has_table(txn, "sip_request_journal"),
        )
    )
    assert journal_tables == (True, False)
    # New keys keep counting after the existing rows on both engines.
    new_patron = db.run_blocking(
        lambda txn: txn.insert(
            "INSERT INTO borrowers (cardnumber, branchcode, categorycode) VALUES (?, ?, ?)",
            ("2", "WEL", "PT"),
            pk="borrowernumber",
        )
    )
    assert new_patron == patron + 1


def test_an_item_is_on_loan_only_once_under_a_50_way_race(db_url):
    db = Database.from_url(db_url, max_connections=50)
    try:
        db.run_blocking(schema.migrate)
        patron_ids, item = db.run_blocking(_race_fixture)
        barrier = threading.Barrier(len(patron_ids))
        outcomes: list[str] = []
        lock = threading.Lock()

        def checkout(txn, patron):
            # What a naive circulation check does: look, then insert. Only the UNIQUE
            # constraint on issues.itemnumber keeps this exact.
            on_loan = txn.one("SELECT issue_id FROM issues WHERE itemnumber = ?", (item,))
            if on_loan is not None:
                return "already on loan"
            txn.insert(
                "INSERT INTO issues (borrowernumber, itemnumber, date_due, issuedate) "
                "VALUES (?, ?, ?, ?)",
                (patron, item, "2026-12-20 23:59:00", "2026-11-29 10:00:00"),
                pk="issue_id",
            )
            return "ok"

        def kiosk(patron):
            barrier.wait(30)
            try:
                result = db.run_blocking(checkout, patron)
            except IntegrityError:
                result = "constraint"
            with lock:
                outcomes.append(result)

        threads = [threading.Thread(target=kiosk, args=(p,)) for p in patron_ids]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert len(outcomes) == 50
        assert outcomes.count("ok") == 1
        loans = db.run_blocking(
            lambda txn: txn.scalar("SELECT COUNT(*) AS n FROM issues WHERE itemnumber = ?", (item,))
        )
        assert loans == 1
    finally:
        db.close()


def _race_fixture(txn):
    txn.execute("INSERT INTO branches (branchcode, branchname) VALUES ('WEL', 'Wellington')")
    txn.execute("INSERT INTO categories (categorycode) VALUES ('PT')")
    txn.execute("INSERT INTO itemtypes (itemtype) VALUES ('BK')")
    patrons = [
        txn.insert(
            "INSERT INTO borrowers (cardnumber, branchcode, categorycode) VALUES (?, 'WEL', 'PT')",
            (f"card{i}",),
            pk="borrowernumber",
        )
        for i in range(50)
    ]
    biblio = txn.insert("INSERT INTO biblio (title) VALUES ('t')", pk="biblionumber")
    item = txn.insert(
        "INSERT INTO items (biblionumber, barcode, homebranch, holdingbranch, itype) "
        "VALUES (?, 'race-item', 'WEL', 'WEL', 'BK')",
        (biblio,),
        pk="itemnumber",
    )
    return patrons, item
