"""The versioned schema (koha_gateway.db.schema) on SQLite and PostgreSQL: a fresh install in
Koha's shape, in-place upgrades from the released versions 1 and 2 with data in them, a Koha
database left alone, and the database-level guarantee that an item is on loan only once."""

from __future__ import annotations

import threading

import pytest

from koha_gateway.db import koha, schema
from koha_gateway.db.engine import Database, IntegrityError

TODAY = "2026-11-30"


@pytest.fixture(params=["sqlite", "postgresql"])
def engine_name(request) -> str:
    """The engines whose schema the gateway creates itself. On MariaDB/MySQL the database is
    Koha's own (tests/support/mariadb.py, ``KOHA_TEMPLATE``): the gateway creates only its
    kgw_ tables there, which the Koha-schema tests cover."""
    return request.param


def test_migrate_fresh_database_to_latest(db):
    assert db.run_blocking(schema.migrate) == (0, schema.LATEST)
    versions = db.run_blocking(
        lambda txn: [r["version"] for r in txn.query("SELECT version FROM kgw_schema_version")]
    )
    assert sorted(versions) == [m.version for m in schema.MIGRATIONS]
    # Running it again changes nothing.
    assert db.run_blocking(schema.migrate) == (schema.LATEST, schema.LATEST)
    prefs = db.run_blocking(lambda txn: txn.scalar("SELECT COUNT(*) AS n FROM systempreferences"))
    assert prefs == len(schema.DEFAULT_SYSPREFS) + len(schema.V3_SYSPREFS)
    assert not db.run_blocking(koha.has_table, "schema_version")
    found = db.run_blocking(koha.check)
    assert found == koha.KohaSchema(
        version=None, koha_database=False, has_category_noissuescharge=True
    )


def test_fresh_schema_has_kohas_nullability(db):
    """The NULL-ability that Koha's code relies on, the same on both engines."""
    db.run_blocking(schema.migrate)

    def nullable(txn):
        return {
            (table, column): koha.columns(txn, table)[column]
            for table, column in (
                ("borrowers", "flags"),
                ("borrowers", "gonenoaddress"),
                ("items", "renewals"),
                ("items", "issues"),
                ("items", "itype"),
                ("items", "biblioitemnumber"),
                ("biblio", "datecreated"),
                ("circulation_rules", "branchcode"),
                ("circulation_rules", "rule_value"),
                ("accountlines", "interface"),
                ("borrower_debarments", "type"),
                ("statistics", "datetime"),
            )
        }

    assert db.run_blocking(nullable) == {
        ("borrowers", "flags"): True,
        ("borrowers", "gonenoaddress"): True,
        ("items", "renewals"): True,
        ("items", "issues"): True,
        ("items", "itype"): True,
        ("items", "biblioitemnumber"): False,
        ("biblio", "datecreated"): False,
        ("circulation_rules", "branchcode"): True,
        ("circulation_rules", "rule_value"): False,
        ("accountlines", "interface"): False,
        ("borrower_debarments", "type"): False,
        ("statistics", "datetime"): True,
    }
    assert "id" not in db.run_blocking(koha.columns, "statistics")


def test_fresh_schema_tables_are_those_of_the_koha_list(db):
    """koha.KOHA_COLUMNS (what start-up checks) and the DDL describe the same columns."""
    db.run_blocking(schema.migrate)

    def koha_tables(txn):
        names = koha.table_names(txn) - {"sqlite_sequence"}
        return {name: set(koha.columns(txn, name)) for name in names if not name.startswith("kgw_")}

    expected = {table: set(columns) for table, columns in koha.KOHA_COLUMNS.items()}
    for table, column in koha.OPTIONAL_COLUMNS:
        expected[table].add(column)
    assert db.run_blocking(koha_tables) == expected


def test_kohas_foreign_keys_hold(db):
    """An item needs its biblioitems row; a restriction needs a restriction type."""
    db.run_blocking(schema.migrate)
    db.run_blocking(_branch_category_itemtype)

    def item_without_biblioitem(txn):
        biblio = txn.insert(
            "INSERT INTO biblio (title, datecreated) VALUES ('t', ?)", (TODAY,), pk="biblionumber"
        )
        txn.insert(
            "INSERT INTO items (biblionumber, barcode, homebranch, holdingbranch, itype) "
            "VALUES (?, 'x1', 'WEL', 'WEL', 'BK')",
            (biblio,),
            pk="itemnumber",
        )

    with pytest.raises(IntegrityError):
        db.run_blocking(item_without_biblioitem)

    def restriction(txn, kind):
        patron = txn.insert(
            "INSERT INTO borrowers (cardnumber, branchcode, categorycode) VALUES (?, 'WEL', 'PT')",
            (f"card-{kind}",),
            pk="borrowernumber",
        )
        txn.execute(
            "INSERT INTO borrower_debarments (borrowernumber, type) VALUES (?, ?)", (patron, kind)
        )

    db.run_blocking(restriction, "MANUAL")
    with pytest.raises(IntegrityError):
        db.run_blocking(restriction, "SIP")


def _branch_category_itemtype(txn):
    txn.execute("INSERT INTO branches (branchcode, branchname) VALUES ('WEL', 'Wellington')")
    txn.execute("INSERT INTO categories (categorycode) VALUES ('PT')")
    txn.execute("INSERT INTO itemtypes (itemtype, description) VALUES ('BK', 'Book')")


def _load_version_1_data(txn):
    """Data as releases with schema versions 1 and 2 wrote it."""
    txn.execute("INSERT INTO branches (branchcode, branchname) VALUES ('WEL', 'Wellington')")
    txn.execute("INSERT INTO categories (categorycode, noissuescharge) VALUES ('PT', 5.5)")
    txn.execute("INSERT INTO itemtypes (itemtype, description) VALUES ('BK', 'Book')")
    txn.execute(
        "INSERT INTO itemtypes (itemtype, description, sip_magnetic) VALUES ('CD', 'Disc', 1)"
    )
    patron = txn.insert(
        "INSERT INTO borrowers (cardnumber, userid, surname, branchcode, categorycode, "
        "dateexpiry, flags) VALUES (?, ?, ?, ?, ?, ?, ?)",
        ("23529000035676", "jdoe", "Doe", "WEL", "PT", "2030-01-01", 2),
        pk="borrowernumber",
    )
    txn.execute("INSERT INTO borrower_attribute_types (code, description) VALUES ('LANG', 'L')")
    txn.execute(
        "INSERT INTO borrower_attributes (borrowernumber, code, attribute) "
        "VALUES (?, 'LANG', 'en')",
        (patron,),
    )
    txn.execute(
        "INSERT INTO borrower_debarments (borrowernumber, type, comment) VALUES (?, 'SIP', ?)",
        (patron, "blocked by a kiosk"),
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
    cd = txn.insert(
        "INSERT INTO items (biblionumber, barcode, homebranch, holdingbranch, itype) "
        "VALUES (?, ?, ?, ?, ?)",
        (biblio, "39999000022222", "WEL", "WEL", "CD"),
        pk="itemnumber",
    )
    txn.insert(
        "INSERT INTO issues (borrowernumber, itemnumber, date_due, issuedate) VALUES (?,?,?,?)",
        (patron, item, "2026-12-20 23:59:00", "2026-11-29 10:00:00"),
        pk="issue_id",
    )
    txn.insert(
        "INSERT INTO reserves (borrowernumber, reservedate, biblionumber, branchcode) "
        "VALUES (?, ?, ?, 'WEL')",
        (patron, "2026-11-28", biblio),
        pk="reserve_id",
    )
    debit = txn.insert(
        "INSERT INTO accountlines (borrowernumber, itemnumber, date, amount, "
        "amountoutstanding, debit_type_code) VALUES (?, ?, ?, ?, ?, ?)",
        (patron, item, "2026-11-29 10:00:00", 2.25, 2.25, "OVERDUE"),
        pk="accountlines_id",
    )
    txn.insert(
        "INSERT INTO accountlines (borrowernumber, date, amount, amountoutstanding, "
        "debit_type_code, interface) VALUES (?, ?, ?, ?, ?, 'sip')",
        (patron, "2026-11-29 11:00:00", 1.0, 1.0, "PHOTOCOPY"),
        pk="accountlines_id",
    )
    txn.execute(
        "INSERT INTO account_offsets (debit_id, type, amount) VALUES (?, 'CREATE', 2.25)",
        (debit,),
    )
    for rule in (
        ("*", "*", "*", "issuelength", "14"),
        ("WEL", "*", "BK", "issuelength", "21"),
        ("*", "PT", "*", "maxissueqty", None),
        ("GONE", "*", "*", "fine", "1"),
    ):
        txn.execute(
            "INSERT INTO circulation_rules (branchcode, categorycode, itemtype, rule_name, "
            "rule_value) VALUES (?, ?, ?, ?, ?)",
            rule,
        )
    for n in range(3):
        txn.execute(
            "INSERT INTO statistics (datetime, branch, type, itemnumber, itemtype, "
            "borrowernumber, interface) VALUES (?, 'WEL', ?, ?, 'BK', ?, 'sip')",
            (f"2026-11-29 10:0{n}:00", ("issue", "renew", "return")[n], item, patron),
        )
    return patron, item, cd


@pytest.mark.parametrize("previous", [1, 2])
def test_upgrade_keeps_data_in_kohas_shape(db, previous):
    assert db.run_blocking(schema.migrate, previous) == (0, previous)
    assert db.run_blocking(koha.has_table, "schema_version")
    patron, item, cd = db.run_blocking(_load_version_1_data)
    if previous == 2:
        db.run_blocking(
            lambda txn: txn.execute(
                "UPDATE items SET sip_item_properties = 'two discs' WHERE itemnumber = ?", (cd,)
            )
        )

    assert db.run_blocking(schema.migrate, today=TODAY) == (previous, schema.LATEST)

    def check(txn):
        return {
            "borrower": txn.one("SELECT cardnumber, surname, dateexpiry, flags FROM borrowers"),
            "attributes": txn.scalar("SELECT COUNT(*) AS n FROM borrower_attributes"),
            "debarment": txn.one("SELECT type, comment FROM borrower_debarments"),
            "item": txn.one(
                "SELECT barcode, price, biblionumber, biblioitemnumber, renewals, issues "
                "FROM items WHERE itemnumber = ?",
                (item,),
            ),
            "biblio": txn.one("SELECT title, datecreated, frameworkcode FROM biblio"),
            "biblioitems": txn.query(
                "SELECT biblioitemnumber, biblionumber, itemtype FROM biblioitems"
            ),
            "issue": txn.one("SELECT borrowernumber, date_due, auto_renew FROM issues"),
            "holds": txn.scalar("SELECT COUNT(*) AS n FROM reserves"),
            "owed": txn.scalar("SELECT SUM(amountoutstanding) AS s FROM accountlines"),
            "interfaces": sorted(
                r["interface"] for r in txn.query("SELECT interface FROM accountlines")
            ),
            "debit types": txn.one(
                "SELECT code, is_system FROM account_debit_types WHERE code = 'PHOTOCOPY'"
            ),
            "offsets": txn.scalar("SELECT COUNT(*) AS n FROM account_offsets"),
            "rules": {
                (r["branchcode"], r["categorycode"], r["itemtype"], r["rule_name"]): r["rule_value"]
                for r in txn.query("SELECT * FROM circulation_rules")
            },
            "statistics": [
                (r["datetime"], r["type"], r["other"])
                for r in txn.query("SELECT * FROM statistics ORDER BY datetime")
            ],
            "magnetic": txn.query("SELECT itemtype, sip_magnetic FROM kgw_itemtype_properties"),
            "properties": txn.query(
                "SELECT itemnumber, sip_item_properties FROM kgw_item_properties"
            ),
            "versions": [
                r["version"]
                for r in txn.query("SELECT version FROM kgw_schema_version ORDER BY version")
            ],
            "old version table": koha.has_table(txn, "schema_version"),
            "restriction types": [
                r["code"] for r in txn.query("SELECT code FROM restriction_types ORDER BY code")
            ],
        }

    found = db.run_blocking(check)
    assert found == {
        "borrower": {
            "cardnumber": "23529000035676",
            "surname": "Doe",
            "dateexpiry": "2030-01-01",
            "flags": 2,
        },
        "attributes": 1,
        "debarment": {"type": "MANUAL", "comment": "blocked by a kiosk"},
        "item": {
            "barcode": "39999000011111",
            "price": 12.5,
            "biblionumber": found["item"]["biblionumber"],
            "biblioitemnumber": found["item"]["biblionumber"],
            "renewals": 0,
            "issues": 0,
        },
        "biblio": {"title": "Perl 5", "datecreated": TODAY, "frameworkcode": ""},
        "biblioitems": [
            {
                "biblioitemnumber": found["item"]["biblionumber"],
                "biblionumber": found["item"]["biblionumber"],
                "itemtype": "BK",
            }
        ],
        "issue": {"borrowernumber": patron, "date_due": "2026-12-20 23:59:00", "auto_renew": 0},
        "holds": 1,
        "owed": 3.25,
        "interfaces": ["intranet", "sip"],
        "debit types": {"code": "PHOTOCOPY", "is_system": 0},
        "offsets": 1,
        # '*' became NULL, an unset value '', the rule of a vanished library is gone.
        "rules": {
            ("WEL", None, "BK", "issuelength"): "21",
            (None, None, None, "issuelength"): "14",
            (None, "PT", None, "maxissueqty"): "",
        },
        "statistics": [
            ("2026-11-29 10:00:00", "issue", None),
            ("2026-11-29 10:01:00", "renew", None),
            ("2026-11-29 10:02:00", "return", None),
        ],
        "magnetic": [{"itemtype": "CD", "sip_magnetic": 1}],
        "properties": [{"itemnumber": cd, "sip_item_properties": "two discs"}]
        if previous == 2
        else [],
        "versions": [m.version for m in schema.MIGRATIONS],
        "old version table": False,
        "restriction types": ["DISCHARGE", "MANUAL", "OVERDUES", "SUSPENSION"],
    }
    assert found["item"]["biblionumber"] == found["biblioitems"][0]["biblionumber"]
    db.run_blocking(koha.check)
    # Version 5: the request journal is kgw_request_journal, the old table is gone.
    journal_tables = db.run_blocking(
        lambda txn: (
            koha.has_table(txn, "kgw_request_journal"),
            koha.has_table(txn, "sip_request_journal"),
        )
    )
    assert journal_tables == (True, False)

    def after(txn):
        # New keys keep counting after the existing rows on both engines, NULL flags are
        # Koha's default, and a new title gets a biblioitems row of its own.
        new_patron = txn.insert(
            "INSERT INTO borrowers (cardnumber, branchcode, categorycode) VALUES (?, ?, ?)",
            ("2", "WEL", "PT"),
            pk="borrowernumber",
        )
        biblio = txn.insert(
            "INSERT INTO biblio (title, datecreated) VALUES ('New', ?)", (TODAY,), pk="biblionumber"
        )
        biblioitem = txn.insert(
            "INSERT INTO biblioitems (biblionumber) VALUES (?)", (biblio,), pk="biblioitemnumber"
        )
        flags = txn.scalar("SELECT flags FROM borrowers WHERE borrowernumber = ?", (new_patron,))
        return new_patron, biblio, biblioitem, flags

    new_patron, biblio, biblioitem, flags = db.run_blocking(after)
    assert new_patron == patron + 1
    assert biblioitem == biblio
    assert flags is None

    # One default rule per name: a second NULL/NULL/NULL issuelength is refused.
    with pytest.raises(IntegrityError):
        db.run_blocking(
            lambda txn: txn.execute(
                "INSERT INTO circulation_rules (rule_name, rule_value) VALUES ('issuelength', '7')"
            )
        )


def test_koha_database_gets_only_kgw_tables(db):
    """A database whose systempreferences hold Koha's Version is Koha's: init creates the
    kgw_ tables and touches no Koha table."""

    def koha_like(txn):
        txn.execute("CREATE TABLE systempreferences (variable VARCHAR(50) PRIMARY KEY, value TEXT)")
        txn.execute("INSERT INTO systempreferences VALUES ('Version', '23.0600007')")
        txn.execute("CREATE TABLE items (itemnumber INTEGER PRIMARY KEY, barcode TEXT)")

    db.run_blocking(koha_like)
    assert db.run_blocking(koha.is_koha_database)
    assert db.run_blocking(schema.migrate) == (0, schema.LATEST)
    tables = db.run_blocking(koha.table_names) - {"sqlite_sequence"}
    assert tables == {
        "systempreferences",
        "items",
        "kgw_schema_version",
        "kgw_itemtype_properties",
        "kgw_item_properties",
        "kgw_request_journal",
    }
    assert db.run_blocking(koha.columns, "items") == {"itemnumber": False, "barcode": True}
    assert db.run_blocking(schema.current_version) == schema.LATEST
    with pytest.raises(koha.SchemaError) as failure:
        db.run_blocking(koha.check)
    assert "table borrowers" in failure.value.missing
    assert "items.biblioitemnumber" in failure.value.missing


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
    _branch_category_itemtype(txn)
    patrons = [
        txn.insert(
            "INSERT INTO borrowers (cardnumber, branchcode, categorycode) VALUES (?, 'WEL', 'PT')",
            (f"card{i}",),
            pk="borrowernumber",
        )
        for i in range(50)
    ]
    biblio = txn.insert(
        "INSERT INTO biblio (title, datecreated) VALUES ('t', ?)", (TODAY,), pk="biblionumber"
    )
    biblioitem = txn.insert(
        "INSERT INTO biblioitems (biblionumber) VALUES (?)", (biblio,), pk="biblioitemnumber"
    )
    item = txn.insert(
        "INSERT INTO items (biblionumber, biblioitemnumber, barcode, homebranch, holdingbranch, "
        "itype) VALUES (?, ?, 'race-item', 'WEL', 'WEL', 'BK')",
        (biblio, biblioitem),
        pk="itemnumber",
    )
    return patrons, item
