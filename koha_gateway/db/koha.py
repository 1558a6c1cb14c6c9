"""What the gateway needs of a Koha database, checked at start-up.

The gateway reads and writes Koha's own tables (on MariaDB/MySQL, the live Koha database; on
SQLite and PostgreSQL, the subset that :mod:`koha_gateway.db.schema` creates). :data:`KOHA_COLUMNS`
is the one list of every Koha table and column the gateway's SQL uses; :func:`check` verifies
them at start-up (and with ``--check-config``), reads Koha's ``Version`` preference, and detects
the optional columns of newer Koha versions rather than assuming them. The result, a
:class:`KohaSchema`, is what ILS code asks about such differences.

A *Koha database* is one whose Koha tables Koha itself looks after: a MariaDB/MySQL database,
or any database whose ``systempreferences`` hold Koha's ``Version`` (the gateway's own databases
never do). On a Koha database the gateway never creates, alters or drops a Koha table
(:func:`koha_gateway.db.schema.migrate` only creates its ``kgw_`` tables there).

The catalogue queries here are the only engine-specific SQL of the module: ``sqlite_master`` and
``pragma_table_info`` on SQLite; ``information_schema`` on PostgreSQL (in the session's
``current_schema()``) and on MariaDB/MySQL (in ``DATABASE()``).
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass

__all__ = [
    "KOHA_COLUMNS",
    "OPTIONAL_COLUMNS",
    "KohaSchema",
    "SchemaError",
    "check",
    "columns",
    "detect",
    "remember",
    "schema_of",
    "has_table",
    "is_koha_database",
    "koha_version",
    "table_names",
]

#: Every Koha table and column the gateway's SQL reads or writes. A Koha database missing
#: any of them cannot be served; :func:`check` names each one.
KOHA_COLUMNS: dict[str, tuple[str, ...]] = {
    "branches": (
        "branchcode",
        "branchname",
        "branchaddress1",
        "branchcity",
        "branchzip",
        "branchemail",
        "branchphone",
        "pickup_location",
    ),
    "categories": ("categorycode", "description", "enrolmentperiod", "category_type"),
    "itemtypes": ("itemtype", "description", "notforloan", "rentalcharge", "sip_media_type"),
    "borrowers": (
        "borrowernumber",
        "cardnumber",
        "userid",
        "password",
        "surname",
        "firstname",
        "title",
        "email",
        "phone",
        "mobile",
        "address",
        "address2",
        "city",
        "state",
        "zipcode",
        "country",
        "dateofbirth",
        "branchcode",
        "categorycode",
        "dateenrolled",
        "dateexpiry",
        "gonenoaddress",
        "lost",
        "debarred",
        "debarredcomment",
        "flags",
        "opacnote",
        "borrowernotes",
        "login_attempts",
        "lastseen",
        "updated_on",
        "autorenew_checkouts",
        "sex",
    ),
    "borrower_attribute_types": ("code", "description", "repeatable"),
    "borrower_attributes": ("id", "borrowernumber", "code", "attribute"),
    "borrower_debarments": (
        "borrower_debarment_id",
        "borrowernumber",
        "expiration",
        "type",
        "comment",
        "manager_id",
        "created",
        "updated",
    ),
    "restriction_types": ("code", "display_text", "is_system", "is_default"),
    "biblio": ("biblionumber", "title", "author", "frameworkcode", "datecreated"),
    "biblioitems": (
        "biblioitemnumber",
        "biblionumber",
        "itemtype",
        "isbn",
        "issn",
        "publicationyear",
        "publishercode",
        "totalissues",
    ),
    "items": (
        "itemnumber",
        "biblionumber",
        "barcode",
        "homebranch",
        "holdingbranch",
        "itype",
        "itemcallnumber",
        "location",
        "permanent_location",
        "ccode",
        "materials",
        "notforloan",
        "itemlost",
        "itemlost_on",
        "withdrawn",
        "damaged",
        "onloan",
        "datelastseen",
        "price",
        "replacementprice",
        "issues",
        "renewals",
        "biblioitemnumber",
        "dateaccessioned",
        "datelastborrowed",
        "damaged_on",
        "withdrawn_on",
        "itemnotes",
        "itemnotes_nonpublic",
        "enumchron",
        "copynumber",
    ),
    "issues": (
        "issue_id",
        "borrowernumber",
        "itemnumber",
        "date_due",
        "branchcode",
        "issuedate",
        "lastreneweddate",
        "renewals_count",
        "unseen_renewals",
        "onsite_checkout",
        "note",
        "issuer_id",
        "returndate",
        "auto_renew",
        "auto_renew_error",
        "notedate",
        "noteseen",
    ),
    "old_issues": (
        "issue_id",
        "borrowernumber",
        "itemnumber",
        "date_due",
        "branchcode",
        "issuedate",
        "returndate",
        "lastreneweddate",
        "renewals_count",
        "onsite_checkout",
        "issuer_id",
        "unseen_renewals",
        "auto_renew",
        "auto_renew_error",
        "note",
        "notedate",
        "noteseen",
    ),
    "reserves": (
        "reserve_id",
        "borrowernumber",
        "reservedate",
        "biblionumber",
        "itemnumber",
        "item_level_hold",
        "branchcode",
        "priority",
        "found",
        "waitingdate",
        "expirationdate",
        "suspend",
        "reservenotes",
        "timestamp",
        "notificationdate",
        "reminderdate",
        "cancellationdate",
        "cancellation_reason",
        "patron_expiration_date",
        "lowestpriority",
        "suspend_until",
        "itemtype",
        "non_priority",
    ),
    "old_reserves": (
        "reserve_id",
        "borrowernumber",
        "reservedate",
        "biblionumber",
        "itemnumber",
        "item_level_hold",
        "branchcode",
        "priority",
        "found",
        "waitingdate",
        "expirationdate",
        "cancellationdate",
        "cancellation_reason",
        "timestamp",
        "notificationdate",
        "reminderdate",
        "reservenotes",
        "patron_expiration_date",
        "lowestpriority",
        "suspend",
        "suspend_until",
        "itemtype",
        "non_priority",
    ),
    "accountlines": (
        "accountlines_id",
        "borrowernumber",
        "itemnumber",
        "issue_id",
        "date",
        "amount",
        "amountoutstanding",
        "description",
        "debit_type_code",
        "credit_type_code",
        "status",
        "payment_type",
        "interface",
        "branchcode",
        "register_id",
        "manager_id",
        "note",
        "credit_number",
    ),
    "account_offsets": ("id", "credit_id", "debit_id", "type", "amount", "created_on"),
    "account_debit_types": (
        "code",
        "description",
        "can_be_invoiced",
        "can_be_sold",
        "default_amount",
        "is_system",
        "archived",
        "restricts_checkouts",
    ),
    "account_credit_types": (
        "code",
        "description",
        "can_be_added_manually",
        "credit_number_enabled",
        "is_system",
        "archived",
    ),
    "branchtransfers": (
        "branchtransfer_id",
        "itemnumber",
        "frombranch",
        "tobranch",
        "datesent",
        "datearrived",
        "datecancelled",
        "reason",
        "daterequested",
        "comments",
        "cancellation_reason",
    ),
    "circulation_rules": (
        "id",
        "branchcode",
        "categorycode",
        "itemtype",
        "rule_name",
        "rule_value",
    ),
    "systempreferences": ("variable", "value", "explanation", "options", "type"),
    "currency": ("currency", "symbol", "isocode", "active"),
    "statistics": (
        "datetime",
        "branch",
        "value",
        "type",
        "other",
        "itemnumber",
        "itemtype",
        "location",
        "borrowernumber",
        "ccode",
        "categorycode",
        "interface",
    ),
    "action_logs": (
        "action_id",
        "timestamp",
        "user",
        "module",
        "action",
        "object",
        "info",
        "interface",
        "script",
        "trace",
    ),
    "zebraqueue": ("id", "biblio_auth_number", "operation", "server", "done", "time"),
    "background_jobs": (
        "id",
        "status",
        "progress",
        "size",
        "borrowernumber",
        "type",
        "queue",
        "data",
        "context",
        "enqueued_on",
        "started_on",
        "ended_on",
    ),
    "repeatable_holidays": ("id", "branchcode", "weekday", "day", "month", "title", "description"),
    "special_holidays": (
        "id",
        "branchcode",
        "day",
        "month",
        "year",
        "isexception",
        "title",
        "description",
    ),
}

#: Columns of newer Koha versions that the gateway uses when they exist:
#: (table, column) -> the :class:`KohaSchema` attribute that says whether they do.
OPTIONAL_COLUMNS: dict[tuple[str, str], str] = {
    # Koha 24.05 (bug 28657): a per-category limit on fines for checkouts.
    ("categories", "noissuescharge"): "has_category_noissuescharge",
}


@dataclass(frozen=True)
class KohaSchema:
    """What start-up found out about the database's Koha schema.

    ``version`` is Koha's ``Version`` preference (``"23.0600007"``), ``None`` in the gateway's
    own databases; ``koha_database`` whether Koha looks after the Koha tables (see the module
    docstring); ``has_category_noissuescharge`` whether ``categories.noissuescharge`` exists.
    """

    version: str | None = None
    koha_database: bool = False
    has_category_noissuescharge: bool = True

    @property
    def version_text(self) -> str:
        """``23.06.00.007`` for ``23.0600007`` (Koha's ``TransformToNum`` undone)."""
        value = self.version or ""
        major, dot, rest = value.partition(".")
        if not dot or len(rest) != 7 or not rest.isdigit():
            return value
        return f"{major}.{rest[:2]}.{rest[2:4]}.{rest[4:]}"


#: What ILS code assumes when nothing was detected (the gateway's own, latest schema).
DEFAULT_SCHEMA = KohaSchema()


class SchemaError(Exception):
    """Koha tables or columns the gateway needs are missing; ``missing`` names each one."""

    def __init__(self, missing: list[str]) -> None:
        self.missing = list(missing)
        super().__init__("the database lacks what koha-gateway needs: " + ", ".join(self.missing))


# -- the catalogue ----------------------------------------------------------------------------


def table_names(txn) -> set[str]:
    """Lower-case names of the tables of the database behind ``txn``."""
    engine = txn.engine.name
    if engine == "sqlite":
        rows = txn.query("SELECT name FROM sqlite_master WHERE type = 'table'")
    else:
        rows = txn.query(
            "SELECT table_name AS name FROM information_schema.tables "
            f"WHERE table_schema = {_schema_expression(engine)}"
        )
    return {str(row["name"]).lower() for row in rows}


def has_table(txn, name: str) -> bool:
    """Whether table ``name`` exists."""
    engine = txn.engine.name
    if engine == "sqlite":
        sql = "SELECT 1 AS x FROM sqlite_master WHERE type = 'table' AND name = ?"
    else:
        sql = (
            "SELECT 1 AS x FROM information_schema.tables "
            f"WHERE table_schema = {_schema_expression(engine)} AND table_name = ?"
        )
    return txn.one(sql, (name,)) is not None


def columns(txn, table: str, *, lower: bool = True) -> dict[str, bool]:
    """Column name -> whether it accepts NULL, for ``table`` (empty: no table).

    Names are lower-cased unless ``lower=False`` (then as the catalogue spells them: Koha's
    ``B_address`` on MariaDB, folded to lower case by PostgreSQL).
    """
    engine = txn.engine.name
    case = str.lower if lower else str
    if engine == "sqlite":
        rows = txn.query(
            'SELECT name, "notnull" AS not_null, pk FROM pragma_table_info(?)', (table,)
        )
        # SQLite's INTEGER PRIMARY KEY is never NULL, whatever its declaration says.
        return {case(r["name"]): not (r["not_null"] or r["pk"]) for r in rows}
    rows = txn.query(
        "SELECT column_name AS name, is_nullable AS nullable FROM information_schema.columns "
        f"WHERE table_schema = {_schema_expression(engine)} AND table_name = ?",
        (table,),
    )
    return {case(r["name"]): str(r["nullable"]).upper() == "YES" for r in rows}


def _schema_expression(engine: str) -> str:
    return "DATABASE()" if engine == "mysql" else "current_schema()"


# -- Koha ---------------------------------------------------------------------------------------


def koha_version(txn) -> str | None:
    """Koha's ``Version`` preference, ``None`` when there is none (or no preferences table)."""
    if not has_table(txn, "systempreferences"):
        return None
    value = txn.scalar("SELECT value FROM systempreferences WHERE variable = 'Version'")
    return None if value is None else str(value)


def is_koha_database(txn) -> bool:
    """Whether Koha looks after the Koha tables of this database (see the module docstring)."""
    if txn.engine.name == "mysql":
        return True
    return koha_version(txn) is not None


def detect(txn) -> KohaSchema:
    """Koha's version and the optional columns present, without checking the required ones."""
    detected = {}
    found: dict[str, dict[str, bool]] = {}
    for (table, column), attribute in OPTIONAL_COLUMNS.items():
        if table not in found:
            found[table] = columns(txn, table)
        detected[attribute] = column in found[table]
    return KohaSchema(version=koha_version(txn), koha_database=is_koha_database(txn), **detected)


_known: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_known_lock = threading.Lock()


def remember(engine, found: KohaSchema) -> None:
    """Record what start-up found for the database of ``engine`` (``db.engine``)."""
    with _known_lock:
        _known[engine] = found


def schema_of(txn) -> KohaSchema:
    """What is known of the Koha schema behind ``txn``: what start-up found (:func:`remember`),
    else detected once per database on first use. This is how ILS code asks whether an
    optional column exists: ``koha.schema_of(txn).has_category_noissuescharge``."""
    with _known_lock:
        found = _known.get(txn.engine)
    if found is None:
        found = detect(txn)
        remember(txn.engine, found)
    return found


def check(txn) -> KohaSchema:
    """Verify every table and column of :data:`KOHA_COLUMNS`; detect the optional ones.

    Raises :class:`SchemaError` naming every missing ``table`` and ``table.column``.
    """
    tables = table_names(txn)
    missing: list[str] = []
    found: dict[str, dict[str, bool]] = {}
    for table, needed in KOHA_COLUMNS.items():
        if table not in tables:
            missing.append(f"table {table}")
            continue
        present = found[table] = columns(txn, table)
        missing.extend(f"{table}.{name}" for name in needed if name not in present)
    if missing:
        raise SchemaError(missing)
    detected = {}
    for (table, column), attribute in OPTIONAL_COLUMNS.items():
        present = found.get(table)
        if present is None:
            present = columns(txn, table)
        detected[attribute] = column in present
    return KohaSchema(version=koha_version(txn), koha_database=is_koha_database(txn), **detected)
