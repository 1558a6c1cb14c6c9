"""LDAP authentication and patron replication, as Koha's ``C4/Auth_with_ldap.pm`` does it.

:class:`LdapDirectory` implements ``checkpw_ldap`` (koha-sip-and-ldap §6.3) with ldap3 and returns
one of three outcomes, with Koha's meaning:

``OK``
    the directory accepted the password (Koha's ``1``).
``REJECTED``
    a definite rejection: the user was found but the password is wrong, or the directory
    answered the search with an error. There is no fallback to the local hash (Koha's ``-1``).
``NOT_HANDLED``
    LDAP does not decide: the user is not in the directory, the search account could not bind,
    a direct bind (``auth_by_bind`` without an anonymous search) failed (Koha bug 12831), or no
    host answered. The caller falls back to the local password hash (Koha's ``0``). Koha
    returns ``0`` when it cannot connect, so an unreachable directory falls back as well; the
    hash that ``update_password`` keeps is what lets users log in while LDAP is down.

:meth:`LdapDirectory.authenticate` blocks: it opens one connection per call (ldap3 ``SYNC``
strategy, never shared between threads), so it must run in a thread pool, never on the reactor.
Every connection has the configured connect and response timeouts. Hosts are tried in the order
of ``<hostname>``; the host that answered last is tried first on the next call.

:func:`sync_patron` is the second half of ``checkpw_ldap`` (§6.3 steps 4-6): ``replicate`` and
``update`` of the ``borrowers`` row and of extended patron attributes inside one transaction.
"""

from __future__ import annotations

import calendar
import datetime as _dt
import enum
import math
import re
import ssl
import threading
from dataclasses import dataclass, field

from ldap3 import ANONYMOUS, NONE, SIMPLE, SUBTREE, SYNC, Connection, Server, Tls
from ldap3.core.exceptions import (
    LDAPCertificateError,
    LDAPCommunicationError,
    LDAPException,
    LDAPStartTLSError,
)
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import escape_rdn
from twisted.logger import Logger

from koha_gateway import clock
from koha_gateway.auth.passwords import hash_password
from koha_gateway.config.ldap import LdapConfig, LdapHost

__all__ = ["LdapDirectory", "LdapOutcome", "LdapResult", "sync_patron"]

log = Logger(namespace="koha_gateway.auth.ldap")

# LDAP result codes (RFC 4511 §4.1.9) that mean "this server cannot answer now": try the next
# host instead of deciding. busy, unavailable, unwillingToPerform, timeLimitExceeded,
# adminLimitExceeded, other.
_UNAVAILABLE_CODES = frozenset({51, 52, 53, 3, 11, 80})
_INVALID_CREDENTIALS = 49
_SEARCH_SIZE_LIMIT = 16

# Columns a mapping never writes: the key, the local hash (never copied from LDAP's userPassword)
# and the gateway's own bookkeeping.
_PROTECTED_COLUMNS = frozenset({"borrowernumber", "password", "login_attempts", "updated_on"})
# Unique columns that are never cleared and never taken from another borrower.
_UNIQUE_COLUMNS = ("userid", "cardnumber")
_DATE_COLUMNS = frozenset({"dateofbirth", "dateenrolled", "dateexpiry", "debarred"})
_INTEGER_COLUMNS = frozenset({"flags", "gonenoaddress", "lost"})
CIRCULATE = 2  # borrowers.flags bit 1 (Koha's "circulate" permission)


class LdapOutcome(enum.Enum):
    """Koha's ``checkpw_ldap`` return values: 1, -1 and 0."""

    OK = "ok"
    REJECTED = "rejected"
    NOT_HANDLED = "not handled"


@dataclass(frozen=True)
class LdapResult:
    """The answer of :meth:`LdapDirectory.authenticate`.

    ``attributes`` holds the user's entry (lower-case attribute name -> list of values) when the
    outcome is OK and the entry was read; ``reason`` is a short text for the log (never a
    password); ``unavailable`` is true when no host answered.
    """

    outcome: LdapOutcome
    userid: str
    attributes: dict[str, list[str]] = field(default_factory=dict)
    reason: str = ""
    dn: str | None = None
    host: str | None = None
    unavailable: bool = False


class _Unavailable(Exception):
    """The current host did not answer (connection, TLS or timeout): try the next one."""


class LdapDirectory:
    """One configured directory (koha-conf ``<ldapserver>``); safe to share between threads."""

    def __init__(self, config: LdapConfig):
        self.config = config
        self._servers: tuple[LdapHost, ...] = config.servers
        self._lock = threading.Lock()
        self._preferred = 0
        self._tls = self._make_tls(config)

    @staticmethod
    def _make_tls(config: LdapConfig) -> Tls:
        names = [config.tls_name] if config.tls_name else None
        return Tls(
            validate=ssl.CERT_REQUIRED if config.verify else ssl.CERT_NONE,
            ca_certs_file=config.ca_file,
            version=ssl.PROTOCOL_TLS_CLIENT,
            valid_names=names,
        )

    def host_order(self) -> list[LdapHost]:
        """The hosts in the order the next call tries them (last answering host first)."""
        with self._lock:
            first = self._preferred
        order = [first] + [i for i in range(len(self._servers)) if i != first]
        return [self._servers[i] for i in order]

    def _remember(self, host: LdapHost) -> None:
        with self._lock:
            self._preferred = self._servers.index(host)

    def authenticate(self, userid: str, password: str) -> LdapResult:
        """Check ``userid``/``password`` against the directory (Koha ``checkpw_ldap``, §6.3).

        BLOCKING: run it in a thread pool. Empty user ids and passwords are rejected without
        asking the server (a DN with an empty password is an unauthenticated bind that some
        servers accept, RFC 4513 §5.1.2).
        """
        if not userid:
            return LdapResult(LdapOutcome.REJECTED, userid, reason="empty user id")
        if not password:
            return LdapResult(LdapOutcome.REJECTED, userid, reason="empty password")
        failures = []
        for host in self.host_order():
            try:
                result = self._attempt(host, userid, password)
            except _Unavailable as exc:
                log.warn("LDAP connection failed: {host}: {error}", host=host.url, error=str(exc))
                failures.append(f"{host.url}: {exc}")
                continue
            self._remember(host)
            return result
        return LdapResult(
            LdapOutcome.NOT_HANDLED,
            userid,
            reason="LDAP connection failed: " + "; ".join(failures),
            unavailable=True,
        )

    # -- one host ---------------------------------------------------------------------------

    def _connection(self, host: LdapHost) -> Connection:
        cfg = self.config
        server = Server(
            host.host,
            port=host.port,
            use_ssl=host.use_ssl,
            tls=self._tls if (host.use_ssl or cfg.start_tls) else None,
            connect_timeout=cfg.connect_timeout,
            get_info=NONE,
        )
        return Connection(
            server,
            client_strategy=SYNC,
            # ldap3 packs this into SO_RCVTIMEO as whole seconds.
            receive_timeout=max(1, math.ceil(cfg.response_timeout)),
            raise_exceptions=False,
            read_only=True,
            auto_referrals=False,
            check_names=False,
        )

    def _attempt(self, host: LdapHost, userid: str, password: str) -> LdapResult:
        conn = self._connection(host)
        try:
            try:
                conn.open(read_server_info=False)
                tls_wanted = self.config.start_tls and not host.use_ssl
                if tls_wanted and not conn.start_tls(read_server_info=False):
                    raise _Unavailable(f"StartTLS refused: {_describe(conn)}")
                if self.config.auth_by_bind:
                    result = self._auth_by_bind(conn, userid, password)
                else:
                    result = self._search_then_bind(conn, userid, password)
            except (LDAPCommunicationError, LDAPStartTLSError, LDAPCertificateError) as exc:
                raise _Unavailable(_exception_text(exc)) from None
            except (LDAPException, OSError) as exc:
                # Anything else ldap3 raises leaves this host's answer unknown.
                raise _Unavailable(_exception_text(exc)) from None
        finally:
            _close(conn)
        return LdapResult(
            result.outcome,
            result.userid,
            result.attributes,
            result.reason,
            result.dn,
            host.url,
        )

    def _bind(self, conn: Connection, dn: str | None, password: str | None) -> bool:
        if dn:
            conn.authentication = SIMPLE
            conn.user = dn
            conn.password = password
        else:
            conn.authentication = ANONYMOUS
            conn.user = None
            conn.password = None
        ok = bool(conn.bind(read_server_info=False))
        if not ok and _code(conn) in _UNAVAILABLE_CODES:
            raise _Unavailable(f"bind: {_describe(conn)}")
        return ok

    def _attributes(self) -> list[str]:
        wanted = {self.config.userid_attribute}
        for column, (attribute, _default) in self.config.mapping.items():
            if attribute and column != "password":
                wanted.add(attribute)
        return sorted(wanted, key=str.lower)

    def _search(self, conn: Connection, userid: str) -> list[tuple[str, dict[str, list[str]]]]:
        cfg = self.config
        flt = f"({cfg.userid_attribute}={escape_filter_chars(userid)})"
        conn.search(
            cfg.base,
            flt,
            search_scope=SUBTREE,
            attributes=self._attributes(),
            size_limit=_SEARCH_SIZE_LIMIT,
            time_limit=max(1, int(cfg.response_timeout)),
        )
        code = _code(conn)
        entries = [
            (item["dn"], _decode(item.get("raw_attributes") or {}))
            for item in conn.response or ()
            if item.get("type") == "searchResEntry"
        ]
        if code in _UNAVAILABLE_CODES and not entries:
            raise _Unavailable(f"search: {_describe(conn)}")
        if code not in (0, 4, 32) and not entries:  # 4 sizeLimitExceeded, 32 noSuchObject
            raise _SearchFailed(f"search with filter {flt!r} failed: {_describe(conn)}")
        if code == 32:
            log.error(
                "LDAP search base {base!r} does not exist: {error}",
                base=cfg.base,
                error=_describe(conn),
            )
        return entries

    def _search_then_bind(self, conn: Connection, userid: str, password: str) -> LdapResult:
        """auth_by_bind = 0: bind anonymously or as ``<user>``, search, bind as each entry."""
        cfg = self.config
        anonymous = cfg.anonymous_bind or not cfg.user
        who = "[ANONYMOUS]" if anonymous else cfg.user
        if not self._bind(conn, None if anonymous else cfg.user, cfg.password):
            reason = f"LDAP bind failed as ldapuser {who}: {_describe(conn)}"
            log.error("{reason}", reason=reason)
            return LdapResult(LdapOutcome.NOT_HANDLED, userid, reason=reason)
        entries, refusal = self._lookup(conn, userid)
        if refusal is not None:
            return refusal
        for dn, attributes in entries:
            if self._bind(conn, dn, password):
                return LdapResult(LdapOutcome.OK, userid, attributes, "LDAP bind succeeded", dn)
        return LdapResult(
            LdapOutcome.REJECTED,
            userid,
            reason=f"LDAP Auth rejected: invalid password for user {userid!r}",
        )

    def _lookup(self, conn: Connection, userid: str):
        """``(entries, None)``, or ``(None, result)`` when the search fails or finds nobody."""
        try:
            entries = self._search(conn, userid)
        except _SearchFailed as exc:
            log.error("LDAP {reason}", reason=str(exc))
            return None, LdapResult(LdapOutcome.REJECTED, userid, reason=str(exc))
        if not entries:
            reason = f"LDAP Auth rejected: search for {userid!r} returns no hit"
            return None, LdapResult(LdapOutcome.NOT_HANDLED, userid, reason=reason)
        return entries, None

    def _principal(self, userid: str) -> str:
        fmt = self.config.principal_name
        if fmt and "%" in fmt:
            value = escape_rdn(userid) if "=" in fmt else userid
            return fmt % value
        return userid

    def _auth_by_bind(self, conn: Connection, userid: str, password: str) -> LdapResult:
        """auth_by_bind = 1: find the DN anonymously or build it from principal_name, bind."""
        cfg = self.config
        entry: tuple[str, dict[str, list[str]]] | None = None
        if cfg.anonymous_bind:
            if not self._bind(conn, None, None):
                reason = f"Anonymous LDAP bind failed: {_describe(conn)}"
                log.error("{reason}", reason=reason)
                return LdapResult(LdapOutcome.NOT_HANDLED, userid, reason=reason)
            entries, refusal = self._lookup(conn, userid)
            if refusal is not None:
                return refusal
            entry = entries[0]
            dn = entry[0]
        else:
            dn = self._principal(userid)
        if not self._bind(conn, dn, password):
            reason = f"LDAP bind failed as kohauser {userid}: {_describe(conn)}"
            if entry is not None:
                return LdapResult(LdapOutcome.REJECTED, userid, reason=reason)
            # Koha bug 12831: a failed direct bind falls back to the local password.
            return LdapResult(LdapOutcome.NOT_HANDLED, userid, reason=reason)
        if entry is None and (cfg.update or cfg.replicate):
            try:
                entries = self._search(conn, userid)
            except _SearchFailed as exc:
                log.error("LDAP {reason}", reason=str(exc))
                return LdapResult(LdapOutcome.REJECTED, userid, reason=str(exc))
            if not entries:
                return LdapResult(
                    LdapOutcome.NOT_HANDLED,
                    userid,
                    reason=f"LDAP bind as {userid!r} succeeded but its entry was not found",
                )
            entry = entries[0]
        attributes = entry[1] if entry else {}
        return LdapResult(
            LdapOutcome.OK, userid, attributes, "LDAP bind succeeded", entry[0] if entry else dn
        )


class _SearchFailed(Exception):
    """The server answered the search with an error (Koha dies: the login fails)."""


def _code(conn: Connection) -> int | None:
    result = conn.result or {}
    return result.get("result")


def _describe(conn: Connection) -> str:
    result = conn.result or {}
    code = result.get("result")
    if code is None:
        return conn.last_error or "no answer"
    text = f"LDAP error #{code}: {result.get('description', '')}"
    message = (result.get("message") or "").strip()
    return f"{text} ({message})" if message else text


def _exception_text(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if not text.startswith(type(exc).__name__) else text


def _close(conn: Connection) -> None:
    try:
        if not conn.closed:
            conn.unbind()
    except (LDAPException, OSError):
        pass


def _decode(raw: dict[str, list[bytes]]) -> dict[str, list[str]]:
    attributes: dict[str, list[str]] = {}
    for name, values in raw.items():
        if isinstance(values, (bytes, str)):
            values = [values]
        decoded = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in values]
        attributes.setdefault(name.lower(), []).extend(decoded)
    return attributes


# -- replicate / update (koha-sip-and-ldap §6.3 steps 4-6) -------------------------------------


def sync_patron(txn, result: LdapResult, password: str, config: LdapConfig) -> int | None:
    """Create or update the borrower behind a successful LDAP login; return its borrowernumber.

    Runs inside one transaction (``txn``). Koha's rules (``checkpw_ldap`` steps 4-6):

    * the borrower is found by ``userid`` then ``cardnumber`` equal to the login name, then by
      the ``userid`` / ``cardnumber`` values mapped from the entry;
    * found and ``update``: every mapped ``borrowers`` column is set from the entry (LDAP value,
      else the mapping default, else NULL for nullable columns); ``update_password`` stores a
      fresh bcrypt hash of ``password``; mapped extended attributes are replaced;
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
        _update(txn, borrower, values, columns, password, config)
        _sync_attributes(txn, number, result, config, columns)
        return number
    if not config.replicate:
        return None
    number = _replicate(txn, login, values, columns, password, config)
    if number is _RACED:
        # Another login created this borrower between our lookup and our insert.
        borrower = _find_borrower(txn, login, values)
        if borrower is None:
            return None
        number = int(borrower["borrowernumber"])
        if config.update:
            _update(txn, borrower, values, columns, password, config)
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


def _now_text() -> str:
    return clock.default().now().strftime("%Y-%m-%d %H:%M:%S")


def _taken(txn, column: str, value: object, borrowernumber: int | None) -> bool:
    row = txn.one(f"SELECT borrowernumber FROM borrowers WHERE {column} = ?", (value,))
    return row is not None and row["borrowernumber"] != borrowernumber


def _update(txn, borrower: dict, values, columns, password: str, config: LdapConfig) -> None:
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
    if config.update_password:
        changes["password"] = hash_password(password)
    if "updated_on" in columns:
        changes["updated_on"] = _now_text()
    if not changes:
        return
    assignments = ", ".join(f"{column} = ?" for column in changes)
    txn.execute(
        f"UPDATE borrowers SET {assignments} WHERE borrowernumber = ?",
        (*changes.values(), number),
    )


def _replicate(txn, login: str, values, columns, password: str, config: LdapConfig) -> int | None:
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
    today = clock.default().now().date()
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
    if config.update_password:
        row["password"] = hash_password(password)
    if "updated_on" in columns:
        row["updated_on"] = _now_text()
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
