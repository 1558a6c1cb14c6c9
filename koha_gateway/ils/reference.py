"""Koha's reference data kept in memory, checked against the database at most every N seconds.

A SIP message reads the same few rows of a handful of small tables again and again: the
library, the item type (with ``kgw_itemtype_properties``), the patron category, a dozen
circulation rules, the library's calendar, the active currency, and the borrowernumber of the
SIP login's staff patron. Koha reads them per request (with memcached in front of some). Here
they are read once into an immutable :class:`Snapshot` that every pool thread shares.

Invalidation. Koha's staff interface (another process) edits these tables at any time, on
SQLite, PostgreSQL and MariaDB, and Koha's tables have no column that says when a row changed.
So the :class:`ReferenceCache` keeps the time it last made sure its snapshot is current; a
request that finds that check older than ``max_age`` seconds (``--reference-max-age``, 10 by
default) runs it again, in its own transaction on its pool thread (never on the reactor thread),
before it reads anything from the snapshot:

* the check is ONE statement: per table, the row count and a digest of exactly the columns
  kept (PostgreSQL: the sum of 60 bits of ``md5`` of each row; MariaDB/MySQL: the same with
  ``MD5``/``QUOTE``; SQLite, which has no hash function: the rows' text, hashed here). A row
  inserted, deleted or changed in any kept column changes it;
* only when it differs are the tables read again (one statement per table) and a new snapshot
  swapped in; the snapshot is never changed in place;
* the staff patrons' borrowernumbers (per SIP login, from ``borrowers``, which changes all the
  time) are remembered only from one check to the next: each check forgets them.

So a change made by anyone (the staff interface, ``koha-gateway-admin``, another gateway) is
used by every request that starts more than ``max_age`` seconds after it was committed. The
gateway also runs the check in the background every ``max_age / 2`` seconds
(:meth:`ReferenceCache.refresh`), so that a request seldom pays for it (on a large Koha, 25,000
rules and holidays, the check takes about 0.1 s of the database server's time).
:meth:`ReferenceCache.flush` (SIGHUP, reload) makes the next request read everything again.
Threads that find the check due while another thread runs it wait for it (a few
milliseconds), so no request ever works with data checked longer ago than the bound.

Without a cache installed for a database (``koha-gateway-admin``, the unit tests, and
``--reference-max-age 0``), :func:`cached` returns ``None`` and the ILS reads the rows per
request with the queries it always had.

On MariaDB/MySQL the codes are compared as Koha's ``utf8mb4_unicode_ci`` columns compare them in
SQL (case-insensitive, trailing spaces ignored), so ``wel`` finds ``WEL`` as the query did.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from koha_gateway.db import koha
from koha_gateway.db.engine import WouldWait, must_not_wait
from koha_gateway.ils.calendar import Calendar

__all__ = [
    "DEFAULT_MAX_AGE",
    "ReferenceCache",
    "Snapshot",
    "cached",
    "fingerprint",
    "install",
    "load",
    "uninstall",
]

#: Seconds a checked snapshot is used before the next check (``--reference-max-age``).
DEFAULT_MAX_AGE = 10.0

_MISSING = object()

#: At most this many answers of each kind (rule questions, branches without calendar rows) are
#: remembered per snapshot.
_REMEMBERED_MAX = 10_000

#: What is kept of each table, and so what the check digests.
_CATEGORY_BASE = ("categorycode", "description", "enrolmentperiod", "category_type")
TABLES: dict[str, tuple[str, ...]] = {
    "branches": ("branchcode", "branchname"),
    "itemtypes": ("itemtype", "description", "notforloan", "rentalcharge", "sip_media_type"),
    "kgw_itemtype_properties": ("itemtype", "sip_magnetic"),
    "categories": _CATEGORY_BASE,
    "circulation_rules": (
        "id",
        "branchcode",
        "categorycode",
        "itemtype",
        "rule_name",
        "rule_value",
    ),
    "repeatable_holidays": ("id", "branchcode", "weekday", "day", "month"),
    "special_holidays": ("id", "branchcode", "day", "month", "year", "isexception"),
    "currency": ("currency", "isocode", "active"),
}


def _tables(txn) -> dict[str, tuple[str, ...]]:
    tables = dict(TABLES)
    if koha.schema_of(txn).has_category_noissuescharge:
        tables["categories"] = (*_CATEGORY_BASE, "noissuescharge")
    return tables


def _digest_sql(engine: str, table: str, columns: tuple[str, ...]) -> str:
    if engine == "postgresql":
        row = f"ROW({', '.join(columns)})::text"
        digest = f"COALESCE(SUM(('x' || SUBSTR(MD5({row}), 1, 15))::bit(60)::bigint), 0)::text"
        return f"SELECT '{table}' AS t, COUNT(*) AS n, {digest} AS d FROM {table}"
    if engine == "mysql":
        row = "CONCAT_WS(',', " + ", ".join(f"QUOTE({c})" for c in columns) + ")"
        digest = (
            f"CAST(COALESCE(SUM(CAST(CONV(SUBSTR(MD5({row}), 1, 15), 16, 10) AS UNSIGNED)), 0) "
            "AS CHAR)"
        )
        return f"SELECT '{table}' AS t, COUNT(*) AS n, {digest} AS d FROM {table}"
    row = " || ',' || ".join(f"quote({c})" for c in columns)
    return (
        f"SELECT '{table}' AS t, COUNT(*) AS n, group_concat(x, char(10)) AS d "
        f"FROM (SELECT {row} AS x FROM {table} ORDER BY 1)"
    )


def fingerprint(txn) -> tuple:
    """One statement: ``(table, rows, digest)`` of every kept table (see the module text)."""
    engine = txn.engine.name
    sql = " UNION ALL ".join(
        _digest_sql(engine, table, columns) for table, columns in _tables(txn).items()
    )
    found = []
    for row in txn.query(sql):
        digest = row["d"]
        if engine == "sqlite":
            digest = hashlib.sha1((digest or "").encode("utf-8", "surrogatepass")).hexdigest()
        found.append((row["t"], int(row["n"]), str(digest)))
    return tuple(sorted(found))


def _folder(engine: str) -> Callable[[Any], Any]:
    """How codes compare in the database's SQL: exactly, or as MariaDB's ``_ci`` columns."""
    if engine != "mysql":
        return lambda value: value

    def fold(value):
        return value.rstrip(" ").casefold() if isinstance(value, str) else value

    return fold


class Snapshot:
    """The reference data as read at one moment; immutable, shared by every thread.

    The lookups answer what the per-request queries answered (same columns, same types).
    """

    __slots__ = (
        "fingerprint",
        "_fold",
        "_branches",
        "_itemtypes",
        "_categories",
        "_rules",
        "_calendars",
        "_empty_calendars",
        "_rule_answers",
        "currency",
    )

    def __init__(
        self,
        engine: str,
        fingerprint: tuple,
        *,
        branches: Mapping[str, str | None],
        itemtypes: Mapping[str, dict],
        categories: Mapping[str, dict],
        rules: list[dict],
        holidays: list[dict],
        currency: dict | None,
    ) -> None:
        fold = _folder(engine)
        self.fingerprint = fingerprint
        self._fold = fold
        self._branches = MappingProxyType({fold(k): v for k, v in branches.items()})
        self._itemtypes = MappingProxyType(
            {fold(k): MappingProxyType(dict(v)) for k, v in itemtypes.items()}
        )
        self._categories = MappingProxyType(
            {fold(k): MappingProxyType(dict(v)) for k, v in categories.items()}
        )
        by_name: dict[Any, dict[tuple, Any]] = {}
        for row in rules:  # in id order: of duplicate rows the first one wins
            table = by_name.setdefault(fold(row["rule_name"]), {})
            key = (fold(row["branchcode"]), fold(row["categorycode"]), fold(row["itemtype"]))
            table.setdefault(key, row["rule_value"])
        self._rules = MappingProxyType({k: MappingProxyType(v) for k, v in by_name.items()})
        grouped: dict[Any, tuple[str, list]] = {}
        for row in holidays:
            code = row["branchcode"]
            grouped.setdefault(fold(code), (code, []))[1].append(row)
        self._calendars = MappingProxyType(
            {key: Calendar.from_rows(code, rows) for key, (code, rows) in grouped.items()}
        )
        # Answers remembered for the life of the snapshot (it never changes; a change of the
        # tables makes a new one): the calendars of branches without rows, and rule lookups.
        self._empty_calendars: dict[str, Calendar] = {}
        self._rule_answers: dict[tuple, str | None] = {}
        self.currency = None if currency is None else MappingProxyType(dict(currency))

    def __repr__(self) -> str:
        return (
            f"Snapshot({len(self._branches)} branches, {len(self._itemtypes)} item types, "
            f"{len(self._categories)} categories, {sum(map(len, self._rules.values()))} rules)"
        )

    def rule(
        self, rule_name: str, branchcode: str | None, categorycode: str | None, itemtype: str | None
    ) -> str | None:
        """Koha's effective rule: the most specific row, branch first, then category, then
        item type (``None`` asks for the "any" rows only); ``None`` when no row applies.

        Answers are remembered per ``(rule_name, branchcode, categorycode, itemtype)``."""
        ask = (rule_name, branchcode, categorycode, itemtype)
        answers = self._rule_answers
        value = answers.get(ask, _MISSING)
        if value is _MISSING:
            value = self._lookup_rule(rule_name, branchcode, categorycode, itemtype)
            if len(answers) < _REMEMBERED_MAX:
                answers[ask] = value
        return value

    def _lookup_rule(
        self, rule_name: str, branchcode: str | None, categorycode: str | None, itemtype: str | None
    ) -> str | None:
        fold = self._fold
        table = self._rules.get(fold(rule_name))
        if not table:
            return None
        b, c, i = fold(branchcode), fold(categorycode), fold(itemtype)
        for key in (
            (b, c, i),
            (b, c, None),
            (b, None, i),
            (b, None, None),
            (None, c, i),
            (None, c, None),
            (None, None, i),
            (None, None, None),
        ):
            value = table.get(key, _MISSING)
            if value is not _MISSING:
                return value
        return None

    def itemtype(self, code: str | None) -> Mapping | None:
        """``description``, ``notforloan``, ``rentalcharge``, ``sip_media_type``,
        ``sip_magnetic`` of an item type, or ``None``."""
        return None if code is None else self._itemtypes.get(self._fold(code))

    def category(self, code: str | None) -> Mapping | None:
        """``category_description``, ``category_enrolmentperiod``, ``category_type``,
        ``category_noissuescharge`` of a patron category, or ``None``."""
        return None if code is None else self._categories.get(self._fold(code))

    def has_branch(self, code: str | None) -> bool:
        return code is not None and self._fold(code) in self._branches

    def branchname(self, code: str | None) -> str | None:
        return None if code is None else self._branches.get(self._fold(code))

    def calendar(self, branchcode: str | None) -> Calendar:
        """The library's closed days (an empty calendar without a branch or rows)."""
        if not branchcode:
            return Calendar("")
        found = self._calendars.get(self._fold(branchcode))
        if found is not None:
            return found
        empty = self._empty_calendars
        found = empty.get(branchcode)
        if found is None:
            found = Calendar(branchcode)
            if len(empty) < _REMEMBERED_MAX:
                found = empty.setdefault(branchcode, found)
        return found


def load(txn, fingerprint_: tuple | None = None) -> Snapshot:
    """Read every kept table (after :func:`fingerprint`, so the data is never older than the
    fingerprint it is stored with)."""
    if fingerprint_ is None:
        fingerprint_ = fingerprint(txn)
    charge = "noissuescharge" if koha.schema_of(txn).has_category_noissuescharge else "NULL"
    branches = {
        row["branchcode"]: row["branchname"]
        for row in txn.query("SELECT branchcode, branchname FROM branches")
    }
    itemtypes = {}
    for row in txn.query(
        "SELECT t.itemtype, t.description, t.notforloan, t.rentalcharge, t.sip_media_type, "
        "p.sip_magnetic FROM itemtypes t "
        "LEFT JOIN kgw_itemtype_properties p ON p.itemtype = t.itemtype"
    ):
        itemtypes[row.pop("itemtype")] = row
    categories = {}
    for row in txn.query(
        "SELECT categorycode, description AS category_description, "
        "enrolmentperiod AS category_enrolmentperiod, category_type, "
        f"{charge} AS category_noissuescharge FROM categories"
    ):
        categories[row.pop("categorycode")] = row
    rules = txn.query(
        "SELECT branchcode, categorycode, itemtype, rule_name, rule_value "
        "FROM circulation_rules ORDER BY id"
    )
    holidays = txn.query(
        "SELECT 'R' AS kind, branchcode, weekday, day, month, NULL AS year, "
        "NULL AS isexception FROM repeatable_holidays "
        "UNION ALL "
        "SELECT 'S' AS kind, branchcode, NULL AS weekday, day, month, year, isexception "
        "FROM special_holidays"
    )
    currency = txn.one(
        "SELECT currency, isocode FROM currency WHERE active = 1 ORDER BY currency LIMIT 1"
    )
    return Snapshot(
        txn.engine.name,
        fingerprint_,
        branches=branches,
        itemtypes=itemtypes,
        categories=categories,
        rules=rules,
        holidays=holidays,
        currency=currency,
    )


class ReferenceCache:
    """The current :class:`Snapshot` of one database and when it was last checked.

    ``max_age`` is the bound in seconds; ``clock`` a monotonic clock (injected by tests).
    ``checks`` and ``loads`` count the checks run and the snapshots read, ``failures`` the
    checks that raised (the database failed them); ``last_check_seconds`` is how long the last
    check that ended took (reading the tables included). They are updated by the checking
    thread under the check's lock and read by the metrics without it (plain numbers).
    """

    def __init__(
        self, max_age: float = DEFAULT_MAX_AGE, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_age = float(max_age)
        self._clock = clock
        self._lock = threading.Lock()  # held by the thread that checks, while it checks
        self._swap = threading.Lock()  # held only to swap the state (flush never waits long)
        # (snapshot, when it was checked), swapped as one object so that a thread never pairs
        # one check's time with another's snapshot.
        self._state: tuple[Snapshot | None, float] = (None, -math.inf)
        self._generation = 0
        self._staff: dict[str, int] = {}
        self.checks = 0
        self.loads = 0
        self.failures = 0
        self.last_check_seconds: float | None = None

    def age(self) -> float | None:
        """Seconds since the snapshot in use was last checked; ``None`` without one (before the
        first check, after a flush)."""
        snap, checked = self._state
        return None if snap is None else max(0.0, self._clock() - checked)

    def flush(self) -> None:
        """Forget everything: the next request reads the tables again (SIGHUP, reload).

        Safe on the reactor thread: it never waits for a check in progress (whose result is
        then used by its own request only)."""
        with self._swap:
            self._generation += 1
            self._state = (None, -math.inf)
            self._staff = {}

    def snapshot(self, txn, max_age: float | None = None) -> Snapshot:
        """The snapshot, checked within the last ``max_age`` seconds (the cache's bound by
        default); checked now otherwise, in ``txn``."""
        if max_age is None:
            max_age = self.max_age
        snap, checked = self._state
        if snap is not None and self._clock() - checked < max_age:
            return snap
        if must_not_wait(txn):
            # An inline read (reactor thread): the check may wait for another thread's and
            # reads every kept row (on SQLite, to hash them here): the database threads do it.
            raise WouldWait("the reference data are due for a check")
        with self._lock:
            snap, checked = self._state
            started = self._clock()
            if snap is not None and started - checked < max_age:
                return snap  # another thread checked while this one waited
            generation = self._generation
            try:
                found = fingerprint(txn)
                self.checks += 1
                if snap is None or found != snap.fingerprint:
                    snap = load(txn, found)
                    self.loads += 1
            except BaseException:
                self.failures += 1
                raise
            finally:
                self.last_check_seconds = self._clock() - started
            with self._swap:
                if generation == self._generation:
                    self._staff = {}
                    self._state = (snap, started)
                # else a flush came while the tables were read: this copy serves this request
                # only, and the next one reads again.
            return snap

    def refresh(self, txn) -> None:
        """The background check (``service.py``, every half bound on a pool thread): check
        when the last check is half the bound old, so that requests seldom have to."""
        self.snapshot(txn, self.max_age / 2)

    def staff_borrowernumber(self, txn, userid: str) -> int | None:
        """The SIP login's staff patron, remembered until the next check."""
        self.snapshot(txn)
        staff = self._staff
        number = staff.get(userid)
        if number is None:
            value = txn.scalar("SELECT borrowernumber FROM borrowers WHERE userid = ?", (userid,))
            if value is None:
                return None
            number = staff[userid] = int(value)
        return number


_caches: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def install(engine, cache: ReferenceCache) -> ReferenceCache:
    """Use ``cache`` for every transaction on the database of ``engine`` (``db.engine``)."""
    _caches[engine] = cache
    return cache


def uninstall(engine) -> None:
    _caches.pop(engine, None)


def cache_of(txn) -> ReferenceCache | None:
    return _caches.get(txn.engine)


def cached(txn) -> Snapshot | None:
    """The checked snapshot for ``txn``'s database, or ``None`` when it has no cache (then
    read the rows per request)."""
    cache = _caches.get(txn.engine)
    return None if cache is None else cache.snapshot(txn)
