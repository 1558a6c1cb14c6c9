"""The reference cache (ils/reference.py) on every engine: it answers as the per-request
queries do, it saves their statements, and it sees a change written by another connection
(another process, as Koha's staff interface) within its bound, on an injected clock."""

from __future__ import annotations

from datetime import date

import pytest

from koha_gateway.db.engine import Database, Txn
from koha_gateway.ils import reference
from koha_gateway.ils.accounts import active_currency
from koha_gateway.ils.calendar import add_holiday, load_calendar
from koha_gateway.ils.circulation import branch_exists
from koha_gateway.ils.context import staff_borrowernumber
from koha_gateway.ils.items import find_item
from koha_gateway.ils.patrons import find_patron
from koha_gateway.ils.rules import get_rule, set_rule
from tests.ils.conftest import ADA, BARCODE, GRACE, TS, call

REFERENCE_TABLES = tuple(reference.TABLES)


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def cache(db, clock):
    """A cache with a 10-second bound installed for ``db`` (as the gateway installs one)."""
    installed = reference.install(db.engine, reference.ReferenceCache(10, clock=clock))
    yield installed
    reference.uninstall(db.engine)


@pytest.fixture
def other(db):
    """A second pool on the same database: the other process (Koha's staff interface)."""
    database = Database.from_url(db.url, max_connections=1)
    yield database
    database.close()


@pytest.fixture
def statements(monkeypatch):
    """The SQL of every statement run through a Txn while the test runs."""
    seen: list[str] = []
    execute = Txn._execute

    def counted(self, sql, params):
        seen.append(sql)
        return execute(self, sql, params)

    monkeypatch.setattr(Txn, "_execute", counted)
    return seen


def _reference_statements(seen):
    return [sql for sql in seen if any(table in sql for table in REFERENCE_TABLES)]


def _rules_setup(txn):
    for branch, category, itemtype, value in (
        ("WEL", None, None, "3"),
        ("WEL", None, "BK", "5"),
        (None, "PT", None, "7"),
        ("WEL", "PT", "BK", "8"),
        ("KIL", "S", None, "9"),
        (None, None, "REF", "2"),
    ):
        set_rule(
            txn, "issuelength", value, branchcode=branch, categorycode=category, itemtype=itemtype
        )
    set_rule(txn, "fine", "", branchcode="KIL")  # "unlimited / not set"
    add_holiday(txn, "WEL", on=date(2026, 3, 17))
    add_holiday(txn, "WEL", weekday=0)
    add_holiday(txn, "KIL", on=date(2026, 12, 25), yearly=True)
    add_holiday(txn, "WEL", on=date(2026, 3, 22), exception=True)


def _answers(txn):
    """Everything the ILS reads through the cache, as plain values."""
    found = {}
    for name in ("issuelength", "fine", "renewalsallowed", "nosuchrule"):
        for branch in ("WEL", "KIL", "NOPE", None, "*", ""):
            for category in ("PT", "S", None):
                for itemtype in ("BK", "REF", None):
                    found[name, branch, category, itemtype] = get_rule(
                        txn, name, branchcode=branch, categorycode=category, itemtype=itemtype
                    )
    for n, barcode in BARCODE.items():
        item = find_item(txn, barcode)
        found["item", n] = {
            key: item[key]
            for key in (
                "itype_description",
                "itype_notforloan",
                "rentalcharge",
                "sip_media_type",
                "sip_magnetic",
            )
        }
    for card in (ADA, GRACE, "y76t5r43"):
        patron = find_patron(txn, card)
        found["patron", card] = {key: patron[key] for key in patron if key.startswith("category_")}
    for branch in ("WEL", "KIL", "NOPE", None):
        calendar = load_calendar(txn, branch)
        found["calendar", branch] = (calendar.weekly, calendar.yearly, dict(calendar.special))
        found["branch", branch] = branch_exists(txn, branch)
    found["currency"] = active_currency(txn)
    found["staff"] = staff_borrowernumber(txn, "joe")
    return found


def test_the_cache_answers_as_the_queries(db, clock):
    db.run_blocking(_rules_setup)
    read = db.run_blocking(_answers)
    reference.install(db.engine, reference.ReferenceCache(10, clock=clock))
    try:
        cached = db.run_blocking(_answers)
    finally:
        reference.uninstall(db.engine)
    assert cached == read
    assert read["issuelength", "WEL", "PT", "BK"] == "8"
    assert read["issuelength", "WEL", "S", "REF"] == "3"
    assert read["fine", "KIL", "PT", "BK"] == ""


def test_codes_compare_as_in_sql(db, clock):
    """MariaDB's _ci collations find 'wel' for WEL; the cache does as the engine's SQL does."""

    def lookups(txn):
        return (
            get_rule(txn, "issuelength", branchcode="wel", categorycode="pt", itemtype="bk "),
            find_patron(txn, ADA)["category_description"],
            branch_exists(txn, "wel"),
            load_calendar(txn, "wel").weekly,
        )

    db.run_blocking(_rules_setup)
    read = db.run_blocking(lookups)
    reference.install(db.engine, reference.ReferenceCache(10, clock=clock))
    try:
        assert db.run_blocking(lookups) == read
    finally:
        reference.uninstall(db.engine)
    assert read[2] is (db.engine.name == "mysql")


def test_a_request_runs_no_reference_statement_once_cached(db, ctx, cache, statements):
    checkout = f"11YN{TS}{' ' * 18}AOWEL|AA{ADA}|AB{BARCODE[1]}|AC|"
    patron_info = f"63001{TS}          AOWEL|AA{ADA}|"
    assert call(db, ctx(), patron_info).startswith("64")
    # The check, then one read each: branches, item types (with kgw_itemtype_properties),
    # categories, rules, both calendar tables in one, the currency.
    assert len(_reference_statements(statements)) == 7
    assert cache.checks == cache.loads == 1
    del statements[:]
    assert call(db, ctx(), checkout).startswith("121")
    assert call(db, ctx(), patron_info).startswith("64")
    assert _reference_statements(statements) == []
    assert cache.checks == 1


def test_statements_saved_per_message(db, ctx, clock, statements):
    """The same messages with and without the cache: the cached run needs fewer statements."""
    messages = [
        f"63001{TS}          AOWEL|AA{ADA}|",
        f"17{TS}AOWEL|AB{BARCODE[1]}|",
        f"11YN{TS}{' ' * 18}AOWEL|AA{ADA}|AB{BARCODE[1]}|AC|",
        f"09N{TS}{TS}AOWEL|AB{BARCODE[1]}|AC|",
    ]

    def run():
        counts = []
        for raw in messages:
            del statements[:]
            call(db, ctx(), raw)
            counts.append(len(statements))
        return counts

    uncached = run()
    reference.install(db.engine, reference.ReferenceCache(10, clock=clock))
    try:
        db.run_blocking(reference.cached)  # the first check and load
        cached = run()
    finally:
        reference.uninstall(db.engine)
    assert all(c < u for c, u in zip(cached, uncached, strict=True)), (cached, uncached)
    assert sum(uncached) - sum(cached) >= 10


def _issuelength(txn):
    return get_rule(txn, "issuelength", branchcode="WEL", categorycode="PT", itemtype="BK")


def test_a_change_by_another_connection_is_seen_within_the_bound(db, other, cache, clock):
    assert db.run_blocking(_issuelength) == "14"
    other.run_blocking(
        lambda txn: set_rule(txn, "issuelength", "21", branchcode=None, itemtype="BK")
    )
    clock.now += 9.9
    assert db.run_blocking(_issuelength) == "14"  # the snapshot, checked 9.9 s ago
    assert cache.checks == 1
    clock.now += 0.1
    assert db.run_blocking(_issuelength) == "21"
    assert (cache.checks, cache.loads) == (2, 2)


def test_an_unchanged_database_is_checked_not_read(db, cache, clock, statements):
    db.run_blocking(_issuelength)
    del statements[:]
    clock.now += 10
    assert db.run_blocking(_issuelength) == "14"
    assert len(statements) == 1  # the check: one statement
    assert (cache.checks, cache.loads) == (2, 1)


@pytest.mark.parametrize(
    "change",
    [
        "UPDATE circulation_rules SET rule_value = '41' WHERE rule_name = 'issuelength'",
        "DELETE FROM circulation_rules WHERE rule_name = 'fine'",
        "UPDATE itemtypes SET description = 'Bookz' WHERE itemtype = 'BK'",
        "UPDATE itemtypes SET notforloan = 1 WHERE itemtype = 'BK'",
        "INSERT INTO kgw_itemtype_properties (itemtype, sip_magnetic) VALUES ('BK', 1)",
        "UPDATE categories SET category_type = 'S' WHERE categorycode = 'PT'",
        "UPDATE branches SET branchname = 'Te Aro' WHERE branchcode = 'WEL'",
        "INSERT INTO repeatable_holidays (branchcode, weekday, title, description) "
        "VALUES ('WEL', 3, 'Wednesdays', '')",
        "INSERT INTO special_holidays (branchcode, day, month, year, isexception, title, "
        "description) VALUES ('KIL', 1, 4, 2026, 0, 'Closed', '')",
        "INSERT INTO currency (currency, symbol, isocode, active) VALUES ('XTS', 'X', 'XTS', 0)",
    ],
)
def test_every_kept_table_and_column_is_checked(db, other, change):
    before = db.run_blocking(reference.fingerprint)
    other.run_blocking(lambda txn: txn.execute(change))
    assert db.run_blocking(reference.fingerprint) != before


def test_a_special_holiday_turned_exception_is_checked(db, other):
    db.run_blocking(lambda txn: add_holiday(txn, "WEL", on=date(2026, 3, 17)))
    before = db.run_blocking(reference.fingerprint)
    other.run_blocking(lambda txn: txn.execute("UPDATE special_holidays SET isexception = 1"))
    assert db.run_blocking(reference.fingerprint) != before


def test_flush_reads_again_at_once(db, other, cache, clock):
    assert db.run_blocking(lambda txn: load_calendar(txn, "WEL").weekly) == frozenset()
    other.run_blocking(lambda txn: add_holiday(txn, "WEL", weekday=0))
    assert db.run_blocking(lambda txn: load_calendar(txn, "WEL").weekly) == frozenset()
    cache.flush()
    assert db.run_blocking(lambda txn: load_calendar(txn, "WEL").weekly) == {0}


def test_staff_patron_is_remembered_until_the_next_check(db, other, cache, clock, statements):
    joe = db.run_blocking(lambda txn: staff_borrowernumber(txn, "joe", fresh=True))
    assert db.run_blocking(lambda txn: staff_borrowernumber(txn, "joe")) == joe
    del statements[:]
    assert db.run_blocking(lambda txn: staff_borrowernumber(txn, "joe")) == joe
    assert statements == []
    other.run_blocking(
        lambda txn: txn.execute("UPDATE borrowers SET userid = 'joe2' WHERE userid = 'joe'")
    )
    assert db.run_blocking(lambda txn: staff_borrowernumber(txn, "joe")) == joe
    assert db.run_blocking(lambda txn: staff_borrowernumber(txn, "joe", fresh=True)) is None
    clock.now += 10
    assert db.run_blocking(lambda txn: staff_borrowernumber(txn, "joe")) is None
    assert db.run_blocking(lambda txn: staff_borrowernumber(txn, "joe2")) == joe


def test_threads_share_one_check(db, cache, clock):
    """Pool threads that find the check due together run it once."""
    from concurrent.futures import ThreadPoolExecutor

    db.run_blocking(_issuelength)
    clock.now += 10
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: db.run_blocking(_issuelength), range(8)))
    assert answers == ["14"] * 8
    assert cache.checks == 2


def test_a_flush_during_a_check_is_not_lost(db, cache, monkeypatch):
    """A SIGHUP that comes while a thread reads the tables: that copy serves its own request,
    and the next request checks again."""
    checking = reference.fingerprint

    def flushed_meanwhile(txn):
        cache.flush()
        return checking(txn)

    monkeypatch.setattr(reference, "fingerprint", flushed_meanwhile)
    assert db.run_blocking(_issuelength) == "14"
    monkeypatch.undo()
    assert db.run_blocking(_issuelength) == "14"
    assert (cache.checks, cache.loads) == (2, 2)


def test_the_background_check_keeps_requests_from_checking(db, other, cache, clock):
    """refresh() (the gateway runs it every half bound) checks once half the bound has passed;
    a request within the bound then finds a fresh snapshot and checks nothing."""
    assert db.run_blocking(_issuelength) == "14"
    other.run_blocking(
        lambda txn: set_rule(txn, "issuelength", "21", branchcode=None, itemtype="BK")
    )
    clock.now += 4.9
    db.run_blocking(cache.refresh)
    assert cache.checks == 1
    clock.now += 0.1
    db.run_blocking(cache.refresh)
    assert (cache.checks, cache.loads) == (2, 2)
    clock.now += 9.9
    assert db.run_blocking(_issuelength) == "21"
    assert cache.checks == 2


def test_what_the_metrics_read_age_duration_and_failed_checks(db, cache, clock, monkeypatch):
    assert cache.age() is None and cache.last_check_seconds is None
    real = reference.fingerprint

    def slow(txn):
        clock.now += 0.25  # the check takes a quarter of a second on the injected clock
        return real(txn)

    monkeypatch.setattr(reference, "fingerprint", slow)
    db.run_blocking(_issuelength)
    assert (cache.checks, cache.loads, cache.failures) == (1, 1, 0)
    assert cache.last_check_seconds == 0.25
    assert cache.age() == 0.25  # checked from when the check started
    clock.now += 3
    assert cache.age() == 3.25

    def broken(txn):
        txn.query("SELECT no_such_column FROM circulation_rules")

    monkeypatch.setattr(reference, "fingerprint", broken)
    clock.now += 10
    with pytest.raises(Exception, match="no_such_column"):
        db.run_blocking(_issuelength)
    assert (cache.checks, cache.loads, cache.failures) == (1, 1, 1)
    assert cache.age() == 13.25  # still the snapshot of the last good check
    cache.flush()
    assert cache.age() is None


def test_a_branch_without_calendar_rows_keeps_one_calendar(db, cache):
    db.run_blocking(_rules_setup)

    def calendars(txn):
        return load_calendar(txn, "NOPE"), load_calendar(txn, "NOPE"), load_calendar(txn, "WEL")

    nope, again, wel = db.run_blocking(calendars)
    assert nope is again
    assert nope.branchcode == "NOPE" and nope.always_open and not nope.weekly
    assert not wel.always_open


def test_a_snapshot_remembers_its_rule_answers(db, cache, monkeypatch):
    """A snapshot never changes, so each rule question is answered from its rows once; the
    answers stay those of the queries."""
    db.run_blocking(_rules_setup)
    looked_up: list[tuple] = []
    lookup = reference.Snapshot._lookup_rule

    def counted(self, *ask):
        looked_up.append(ask)
        return lookup(self, *ask)

    monkeypatch.setattr(reference.Snapshot, "_lookup_rule", counted)
    first = db.run_blocking(_answers)
    asked = len(looked_up)
    assert asked > 0
    assert db.run_blocking(_answers) == first
    assert len(looked_up) == asked  # every answer the second time was remembered

    reference.uninstall(db.engine)
    try:
        assert db.run_blocking(_answers) == first  # as the queries answer
    finally:
        reference.install(db.engine, cache)


def test_a_new_snapshot_answers_rules_afresh(db, other, cache, clock):
    db.run_blocking(_rules_setup)

    def asked(txn):
        return get_rule(txn, "issuelength", branchcode="WEL", categorycode="PT", itemtype="BK")

    assert db.run_blocking(asked) == "8"
    other.run_blocking(
        set_rule, "issuelength", "11", branchcode="WEL", categorycode="PT", itemtype="BK"
    )
    assert db.run_blocking(asked) == "8"  # within the bound: the remembered answer
    clock.now += 11
    assert db.run_blocking(asked) == "11"
