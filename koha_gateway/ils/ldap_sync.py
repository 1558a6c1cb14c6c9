"""Replicate and update a borrower from a successful LDAP login, as Koha's
``C4/Auth_with_ldap.pm`` ``checkpw_ldap`` does (koha-sip-and-ldap §6.3 steps 4-6).

:class:`koha_gateway.auth.ldap.LdapDirectory` talks to the directory; this module writes what
it found into ``borrowers`` and ``borrower_attributes`` inside one transaction. The password
hash that ``update_password`` stores is computed by the caller before the transaction begins
(bcrypt takes tens of milliseconds; on SQLite every other write would queue behind it).
"""

from __future__ import annotations

import calendar
import datetime as _dt
import re
from datetime import datetime

from twisted.logger import Logger

from koha_gateway.auth.ldap import LdapOutcome, LdapResult
from koha_gateway.config.ldap import LdapConfig

__all__ = ["CIRCULATE", "sync_patron"]

log = Logger(namespace="koha_gateway.auth.ldap")

# Columns a mapping never writes: the key, the local hash (never copied from LDAP's userPassword)
# and the gateway's own bookkeeping.
_PROTECTED_COLUMNS = frozenset({"borrowernumber", "password", "login_attempts", "updated_on"})
# Unique columns that are never cleared and never taken from another borrower.
_UNIQUE_COLUMNS = ("userid", "cardnumber")
_DATE_COLUMNS = frozenset({"dateofbirth", "dateenrolled", "dateexpiry", "debarred"})
_INTEGER_COLUMNS = frozenset({"flags", "gonenoaddress", "lost"})
CIRCULATE = 2  # borrowers.flags bit 1 (Koha's "circulate" permission)


def sync_patron(
    txn, result: LdapResult, config: LdapConfig, *, password_hash: str | None, now: datetime
) -> int | None:
    """Create or update the borrower behind a successful LDAP login; return its borrowernumber.

    Runs inside one transaction (``txn``). Koha's rules (``checkpw_ldap`` steps 4-6):

    * the borrower is found by ``userid`` then ``cardnumber`` equal to the login name, then by
      the ``userid`` / ``cardnumber`` values mapped from the entry;
    * found and ``update``: every mapped ``borrowers`` column is set from the entry (LDAP value,
      else the mapping default, else NULL for nullable columns); ``update_password`` stores
      ``password_hash`` (the caller's fresh bcrypt hash of the password); mapped extended
      attributes are replaced;
    * found and not ``update``: nothing changes;
    * missing and ``replicate``: a borrower is created from the mapping (category and branch
      checked against ``categories`` / ``branches``, expiry from the category's enrolment
      period); missing and not ``replicate``: returns None (Koha's "not handled").

    ``flags`` comes only from a ``flags`` mapping (Koha's way) or, with ``grant_circulate``,
    gains the circulate bit; flags are never removed. Returns None when the borrower cannot be
    created (no valid category or branch, or its userid/cardnumber belongs to someone else).
    """
    if result.outcome is not LdapOutcome.OK:
        return None
    columns = _borrower_columns(txn)
    values = _mapped_values(result, config)
    login = result.userid
    borrower = _find_borrower(txn, login, values)
    if borrower is not None:
        number = int(borrower["borrowernumber"])
        if not config.update:
            return number
        _update(txn, borrower, values, columns, config, password_hash, now)
        _sync_attributes(txn, number, result, config, columns)
        return number
    if not config.replicate:
        return None
    number = _replicate(txn, login, values, columns, config, password_hash, now)
    if number is _RACED or number is None:
        # Another login may have created this borrower since our lookup (then its userid or
        # cardnumber is taken, or our insert did nothing): use that row.
        borrower = _find_borrower(txn, login, values)
        if borrower is None:
            return None
        number = int(borrower["borrowernumber"])
        if config.update:
            _update(txn, borrower, values, columns, config, password_hash, now)
    if number is not None:
        _sync_attributes(txn, number, result, config, columns)
    return number


_RACED = -1  # _replicate: a concurrent insert won (ON CONFLICT DO NOTHING inserted nothing)


def _borrower_columns(txn) -> dict[str, bool]:
    """``borrowers`` column name -> whether it accepts NULL."""
    if txn.engine.name == "sqlite":
        rows = txn.query("SELECT name, \"notnull\" AS not_null FROM pragma_table_info('borrowers')")
        return {r["name"]: not r["not_null"] for r in rows}
    rows = txn.query(
        "SELECT column_name AS name, is_nullable AS nullable FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name = 'borrowers'"
    )
    return {r["name"]: r["nullable"] == "YES" for r in rows}


def _mapped_values(result: LdapResult, config: LdapConfig) -> dict[str, str | None]:
    """Mapping key -> LDAP value (multi-valued joined with spaces) or default or None."""
    values: dict[str, str | None] = {}
    for key, (attribute, default) in config.mapping.items():
        value = None
        if attribute:
            found = [v for v in result.attributes.get(attribute.lower(), []) if v.strip()]
            if found:
                value = " ".join(v.strip() for v in found)
        values[key] = value if value is not None else default
    values.pop("password", None)
    if "categorycode" in values:
        values["categorycode"] = _map_category(values["categorycode"], config)
    return values


def _map_category(value: str | None, config: LdapConfig) -> str | None:
    if value is None or not (config.categorycode_mapping or config.categorycode_default):
        return value
    if value in config.categorycode_mapping:
        return config.categorycode_mapping[value]
    return config.categorycode_default or value


def _find_borrower(txn, login: str, values: dict[str, str | None]) -> dict | None:
    candidates = [("userid", login), ("cardnumber", login)]
    for column in _UNIQUE_COLUMNS:
        if values.get(column):
            candidates.append((column, values[column]))
    for column, value in candidates:
        row = txn.one(
            f"SELECT * FROM borrowers WHERE {column} = ?{txn.for_update}",
            (value,),
        )
        if row is not None:
            return row
    return None


def _lookup_code(txn, table: str, column: str, value: str | None) -> str | None:
    """The stored spelling of a branch or category code (compared case-insensitively)."""
    if not value:
        return None
    row = txn.one(f"SELECT {column} FROM {table} WHERE UPPER({column}) = UPPER(?)", (value,))
    return None if row is None else row[column]


def _checked_code(txn, key: str, values: dict, config: LdapConfig, table: str) -> str | None:
    """Koha: a mapped category/branch that does not exist falls back to the mapping default."""
    found = _lookup_code(txn, table, key, values.get(key))
    if found is None and key in config.mapping:
        found = _lookup_code(txn, table, key, config.mapping[key][1])
    if found is None and key == "categorycode":
        found = _lookup_code(txn, table, key, config.categorycode_default)
    return found


def _column_value(column: str, value: str | None) -> object:
    if value is None:
        return None
    if column in _DATE_COLUMNS:
        return _ldap_date(value)
    if column in _INTEGER_COLUMNS:
        try:
            return int(value)
        except ValueError:
            return None
    return value


_GENERALIZED_TIME = re.compile(r"^(\d{4})(\d{2})(\d{2})\d*(?:\.\d+)?(?:Z|[+-]\d{2,4})?$")
_ISO_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})")


def _ldap_date(value: str) -> str | None:
    """An ISO date from ``YYYY-MM-DD...`` or LDAP GeneralizedTime (``YYYYMMDDhhmmssZ``)."""
    match = _ISO_DATE.match(value) or _GENERALIZED_TIME.match(value)
    if not match:
        return None
    try:
        return _dt.date(*(int(g) for g in match.groups())).isoformat()
    except ValueError:
        return None


def _add_months(day: _dt.date, months: int) -> _dt.date:
    month = day.month - 1 + months
    year = day.year + month // 12
    month = month % 12 + 1
    return day.replace(
        year=year, month=month, day=min(day.day, calendar.monthrange(year, month)[1])
    )


def _sql_time(now: datetime) -> str:
    return now.strftime("%Y-%m-%d %H:%M:%S")


def _taken(txn, column: str, value: object, borrowernumber: int | None) -> bool:
    row = txn.one(f"SELECT borrowernumber FROM borrowers WHERE {column} = ?", (value,))
    return row is not None and row["borrowernumber"] != borrowernumber


def _update(
    txn, borrower: dict, values, columns, config: LdapConfig, password_hash, now: datetime
) -> None:
    number = int(borrower["borrowernumber"])
    changes: dict[str, object] = {}
    for key, raw in values.items():
        if key not in columns or key in _PROTECTED_COLUMNS:
            continue
        if key in ("categorycode", "branchcode"):
            table = "categories" if key == "categorycode" else "branches"
            value = _checked_code(txn, key, values, config, table)
        else:
            value = _column_value(key, raw)
        if value is None and (not columns[key] or key in _UNIQUE_COLUMNS):
            continue
        if (
            key in _UNIQUE_COLUMNS
            and value != borrower.get(key)
            and _taken(txn, key, value, number)
        ):
            log.warn(
                "LDAP update of borrower {number}: {column} {value!r} belongs to another "
                "borrower; left unchanged",
                number=number,
                column=key,
                value=value,
            )
            continue
        changes[key] = value
    flags = changes.get("flags", borrower.get("flags")) or 0
    if config.grant_circulate:
        flags = int(flags) | CIRCULATE
    if "flags" in columns and flags != (borrower.get("flags") or 0):
        changes["flags"] = flags
    if config.update_password and password_hash:
        changes["password"] = password_hash
    if "updated_on" in columns:
        changes["updated_on"] = _sql_time(now)
    if not changes:
        return
    assignments = ", ".join(f"{column} = ?" for column in changes)
    txn.execute(
        f"UPDATE borrowers SET {assignments} WHERE borrowernumber = ?",
        (*changes.values(), number),
    )


def _replicate(
    txn, login: str, values, columns, config: LdapConfig, password_hash, now: datetime
) -> int | None:
    row: dict[str, object] = {}
    for key, raw in values.items():
        if key in columns and key not in _PROTECTED_COLUMNS:
            value = _column_value(key, raw)
            if value is not None:
                row[key] = value
    row.setdefault("userid", login)
    category = _checked_code(txn, "categorycode", values, config, "categories")
    branch = _checked_code(txn, "branchcode", values, config, "branches")
    if category is None or branch is None:
        log.error(
            "LDAP replicate of {userid!r} failed: no valid {what} (map it or give a default)",
            userid=login,
            what="categorycode" if category is None else "branchcode",
        )
        return None
    row["categorycode"] = category
    row["branchcode"] = branch
    for column in _UNIQUE_COLUMNS:
        if column in row and _taken(txn, column, row[column], None):
            log.error(
                "LDAP replicate of {userid!r} failed: {column} {value!r} belongs to another "
                "borrower",
                userid=login,
                column=column,
                value=row[column],
            )
            return None
    today = now.date()
    if "dateenrolled" in columns:
        row.setdefault("dateenrolled", today.isoformat())
    if "dateexpiry" in columns and "dateexpiry" not in row:
        period = txn.scalar(
            "SELECT enrolmentperiod FROM categories WHERE categorycode = ?", (category,)
        )
        if period:
            row["dateexpiry"] = _add_months(today, int(period)).isoformat()
    flags = int(row.get("flags") or 0)
    if config.grant_circulate:
        flags |= CIRCULATE
    row["flags"] = flags
    if config.update_password and password_hash:
        row["password"] = password_hash
    if "updated_on" in columns:
        row["updated_on"] = _sql_time(now)
    names = ", ".join(row)
    marks = ", ".join("?" for _ in row)
    # ON CONFLICT DO NOTHING (PostgreSQL 9.5+, SQLite 3.24+): two first logins of the same user
    # at once must not fail; the loser finds the winner's row instead.
    inserted = txn.execute(
        f"INSERT INTO borrowers ({names}) VALUES ({marks}) ON CONFLICT DO NOTHING",
        tuple(row.values()),
    )
    if inserted != 1:
        return _RACED
    number = txn.scalar("SELECT borrowernumber FROM borrowers WHERE userid = ?", (row["userid"],))
    log.info(
        "LDAP replicate: created borrower {number} for {userid!r} ({category}/{branch})",
        number=number,
        userid=login,
        category=category,
        branch=branch,
    )
    return int(number)


def _sync_attributes(txn, borrowernumber: int, result: LdapResult, config, columns) -> None:
    """Extended patron attributes (§6.3 step 5): each mapped attribute type code with a
    non-blank value replaces the borrower's values of that code; other codes are kept.

    A repeatable type gets one row per LDAP value, others one row (values joined by spaces).
    Skipped when the ExtendedPatronAttributes system preference exists and is off.
    """
    wanted: dict[str, list[str]] = {}
    for code, (attribute, default) in config.mapping.items():
        if code in columns or code == "password":
            continue
        found = [v.strip() for v in result.attributes.get((attribute or "").lower(), [])]
        found = [v for v in found if v]
        if not found and default and default.strip():
            found = [default.strip()]
        if found:
            wanted[code] = found
    if not wanted:
        return
    enabled = txn.one(
        "SELECT value FROM systempreferences WHERE variable = ?", ("ExtendedPatronAttributes",)
    )
    if enabled is not None and str(enabled["value"] or "").strip() in ("", "0"):
        return
    marks = ", ".join("?" for _ in wanted)
    types = {
        r["code"]: bool(r["repeatable"])
        for r in txn.query(
            f"SELECT code, repeatable FROM borrower_attribute_types WHERE code IN ({marks})",
            tuple(wanted),
        )
    }
    for code, found in wanted.items():
        if code not in types:
            continue
        new = found if types[code] else [" ".join(found)]
        txn.execute(
            "DELETE FROM borrower_attributes WHERE borrowernumber = ? AND code = ?",
            (borrowernumber, code),
        )
        for item in new:
            txn.execute(
                "INSERT INTO borrower_attributes (borrowernumber, code, attribute) "
                "VALUES (?, ?, ?)",
                (borrowernumber, code, item),
            )
