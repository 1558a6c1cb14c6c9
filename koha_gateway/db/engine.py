"""The database engine layer: one API over SQLite and PostgreSQL.

Everything above this module (the ILS rules, the ACS, the authenticator, the admin CLI) talks to
the database only through :class:`Database` and :class:`Txn`, and writes SQL once, with ``?``
placeholders, for both engines.

``Database.from_url(url)`` opens a pool (:class:`twisted.enterprise.adbapi.ConnectionPool`).
``db.run(fn, *args, **kw)`` runs ``fn(txn, *args, **kw)`` in a pool thread inside one transaction
and returns a Deferred: commit when ``fn`` returns, rollback when it raises (the exception is
re-raised). ``db.run_blocking`` does the same in the calling thread (admin CLI, tests, benches).
The reactor thread never waits on the database.

Transactions
    SQLite: the database runs in WAL mode with ``synchronous=NORMAL`` (a committed transaction
    survives a kill of the process; ``?synchronous=full`` in the URL also survives power loss),
    foreign keys on, and a busy timeout. Every read-write transaction starts with
    ``BEGIN IMMEDIATE``, which takes the write lock up front: writers queue instead of
    deadlocking on a lock upgrade, and a read-modify-write inside one transaction is exact.
    Writers of one process queue on a lock before that (woken as soon as the previous writer
    finishes, rather than polling in SQLite's busy handler); other processes wait up to the busy
    timeout (URL option ``busy_timeout``, default 10 s), then get :class:`Unavailable`.
    Python's ``sqlite3`` runs with ``isolation_level=None`` so that it never opens or commits a
    transaction behind our back. ``run(..., readonly=True)`` starts a deferred transaction
    instead (readers run concurrently in WAL mode) with ``PRAGMA query_only`` set, so that a
    write in a read-only transaction fails on SQLite exactly as it does on PostgreSQL.

    PostgreSQL (psycopg2): ``READ COMMITTED``; rows that a transaction reads and then changes are
    locked with ``txn.for_update`` (``" FOR UPDATE"``; ``""`` on SQLite, where the transaction
    already holds the write lock). A row lock waits at most ``lock_timeout`` (URL option,
    default 10 s). ``readonly=True`` starts ``BEGIN READ ONLY``. Sessions run with
    ``TimeZone = UTC`` and ``DateStyle = ISO, YMD``.

    The pool is adbapi's (``runInteraction`` in its threads, one connection per thread), but
    begin, commit, rollback and dropping dead connections are done here rather than by adbapi's
    ``cp_reconnect``, which neither retries nor tells a dead connection from a failed statement.

Errors
    Driver exceptions are translated, for both engines, into :class:`DatabaseError` and its
    subclasses :class:`IntegrityError` (a unique, foreign key, not-null or check constraint;
    :class:`SerializationFailure`, a subclass, for serialization failures and deadlocks) and
    :class:`Unavailable` (the database is down, unreachable, or busy beyond its timeout).
    Exceptions raised by ``fn`` itself pass through unchanged.

Outages (PostgreSQL)
    When the server is down, connecting fails at once (refused) or after ``connect_timeout``
    (URL option, default 5 s), and ``run`` fails with :class:`Unavailable`. A pooled connection
    that turns out to be dead is dropped; the next transaction on that pool thread connects
    afresh, so service resumes by itself when the server is back. When the very first statement
    of a transaction fails because its pooled connection was dead, nothing of the transaction can
    have been committed, so it is run once more on a new connection (``fn`` must therefore not
    have effects outside the database before its first statement). Any other failure is only
    retried when the caller says the work is an idempotent read: ``run(fn, retry=True)``. A
    failure while committing is :class:`Unavailable` with ``outcome_unknown=True``: the
    transaction may or may not have been committed, and it is never retried.

Types (both engines return the same Python values)
    Rows are plain ``dict`` objects keyed by lower-case column names (PostgreSQL folds unquoted
    names to lower case; SQLite's are lower-cased to match, so always alias expressions:
    ``SELECT COUNT(*) AS n``). Integers are ``int``; money (``{money}``: ``REAL`` on SQLite,
    ``NUMERIC(28,6)`` on PostgreSQL) and any ``NUMERIC`` result come back as ``float``; booleans
    computed in SQL come back as ``1``/``0``. Dates are stored as ISO text, ``YYYY-MM-DD`` and
    ``YYYY-MM-DD HH:MM:SS``, on *both* engines (``{date}``/``{datetime}`` are ``TEXT``; on
    PostgreSQL with the byte-order ``"C"`` collation, so that ordering and range comparisons are
    chronological and identical to SQLite's). Compare and sort them as strings; compute them in
    Python and pass them as parameters (``datetime``/``date`` parameters are formatted to these
    strings; ``bool`` parameters are sent as 1/0). PostgreSQL ``DATE``/``TIMESTAMP`` values that
    an expression produces (``CURRENT_DATE``) come back as the same ISO strings, truncated to
    whole seconds. Do not store ``CURRENT_TIMESTAMP`` into a column: it is UTC on both engines
    and PostgreSQL writes it into a text column with fractions and an offset.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from decimal import Decimal
from functools import lru_cache
from typing import Any

from twisted.enterprise import adbapi
from twisted.logger import Logger
from twisted.python import threadable

from koha_gateway.db.url import DatabaseURL, parse_url

__all__ = [
    "Database",
    "DatabaseError",
    "Engine",
    "IntegrityError",
    "PostgreSQLEngine",
    "SQLiteEngine",
    "SerializationFailure",
    "Txn",
    "Unavailable",
]

log = Logger(namespace="koha_gateway.db")


# -- exceptions ------------------------------------------------------------------------------


class DatabaseError(Exception):
    """A database error, the same type whichever engine raised it.

    ``sqlstate`` is the SQLSTATE code when PostgreSQL gave one, ``None`` otherwise. The driver's
    exception is not chained: PostgreSQL's DETAIL text can list every value of a row (password
    hashes included), and tracebacks end up in logs.
    """

    sqlstate: str | None = None

    def __init__(self, message: str, *, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class IntegrityError(DatabaseError):
    """A constraint refused the change (unique, foreign key, not null, check)."""


class SerializationFailure(IntegrityError):
    """The transaction lost a race with a concurrent one (serialization failure, deadlock).

    Nothing of it was written; the whole request may be tried again.
    """


class Unavailable(DatabaseError):
    """The database cannot be reached or is too busy: the work was not done.

    ``outcome_unknown`` is true when the connection failed *during commit*: the transaction may
    or may not have been committed.
    """

    def __init__(
        self,
        message: str,
        *,
        sqlstate: str | None = None,
        outcome_unknown: bool = False,
        stale: bool = False,
    ) -> None:
        super().__init__(message, sqlstate=sqlstate)
        self.outcome_unknown = outcome_unknown
        # The first statement of the transaction failed on a dead pooled connection.
        self.stale = stale


# -- SQL helpers -----------------------------------------------------------------------------

_TOKEN = re.compile(r"\{(\w+)\}")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_INSERT_TABLE = re.compile(r"^\s*INSERT\s+INTO\s+([A-Za-z_][\w.]*)", re.IGNORECASE)
_RETURNING = re.compile(r"\bRETURNING\b", re.IGNORECASE)


@lru_cache(maxsize=4096)
def qmark_to_pyformat(sql: str) -> str:
    """Translate ``?`` placeholders to psycopg2's ``%s`` and double every literal ``%``.

    ``?`` inside string literals, quoted identifiers and comments is left alone. Cached per
    distinct statement.
    """
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch == "?":
            out.append("%s")
            i += 1
        elif ch == "%":
            out.append("%%")
            i += 1
        elif ch in ("'", '"'):
            j = i + 1
            while j < n:
                if sql[j] == ch:
                    if j + 1 < n and sql[j + 1] == ch:  # doubled quote inside the literal
                        j += 2
                        continue
                    break
                j += 1
            out.append(sql[i : j + 1].replace("%", "%%"))
            i = j + 1
        elif ch == "-" and sql.startswith("--", i):
            j = sql.find("\n", i)
            j = n if j < 0 else j
            out.append(sql[i:j].replace("%", "%%"))
            i = j
        elif ch == "/" and sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(sql[i:j].replace("%", "%%"))
            i = j
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _format_datetime(value: _dt.datetime) -> str:
    return (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d} "
        f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}"
    )


def _format_date(value: _dt.date) -> str:
    return f"{value.year:04d}-{value.month:02d}-{value.day:02d}"


# -- engines ---------------------------------------------------------------------------------


class Engine:
    """What differs between the engines. ``txn.engine`` and ``db.engine`` are one of these.

    Public attributes: ``name`` (``"sqlite"`` / ``"postgresql"``), ``for_update``, :meth:`ddl`,
    and the exception classes (``engine.IntegrityError`` etc., the same classes as this
    module's).

    Each engine also provides, for :class:`Database` and :class:`Txn` only:
    ``connect_args()`` (arguments of the DB-API ``connect``), ``on_connect(conn)``,
    ``begin(conn, readonly)``, ``end(conn, readonly)``, ``is_dead(conn)``,
    ``wrap(exc, stale=, commit=)`` (driver exception to :class:`DatabaseError`) and
    ``last_id(...)`` (the key of an ``insert``).
    """

    name: str = ""
    for_update: str = ""
    default_max_connections: int = 4
    ddl_types: dict[str, str] = {}

    DatabaseError = DatabaseError
    IntegrityError = IntegrityError
    SerializationFailure = SerializationFailure
    Unavailable = Unavailable

    def __init__(self, url: DatabaseURL) -> None:
        self.url = url

    def ddl(self, sql: str) -> str:
        """Expand the schema's type tokens (``{pk}``, ``{money}``, ...) for this engine."""

        def expand(match: re.Match) -> str:
            token = match.group(1)
            try:
                return self.ddl_types[token]
            except KeyError:
                raise ValueError(f"unknown DDL token {{{token}}} in: {sql[:80]}") from None

        return _TOKEN.sub(expand, sql)

    # The rest is used by Database/Txn only.

    dbapi_name: str = ""
    driver_error: type[BaseException] = Exception

    def translate(self, sql: str) -> str:
        return sql

    def adapt_params(self, params: Sequence[Any] | None) -> Sequence[Any]:
        if not params:
            return ()
        for value in params:
            if isinstance(value, (bool, _dt.date, Decimal)):
                break
        else:
            return params
        return tuple(self._adapt(value) for value in params)

    def _adapt(self, value: Any) -> Any:
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, _dt.datetime):
            return _format_datetime(value)
        if isinstance(value, _dt.date):
            return _format_date(value)
        return value

    def on_connect(self, conn) -> None:
        """adbapi ``cp_openfun``: per-connection settings, run in the pool thread."""

    def is_dead(self, conn) -> bool:
        """True when ``conn`` is known to be broken and must be dropped from the pool."""
        return False

    def end(self, conn, readonly: bool) -> None:
        """Called after every commit or rollback of a transaction that :meth:`begin` opened."""

    def column_names(self, description) -> list[str]:
        return [d[0] for d in description]

    def execute_batch(self, cursor, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        cursor.executemany(sql, rows)


class _SQLiteConnection(sqlite3.Connection):
    """sqlite3 connection with room for the engine's per-connection state.

    A database file that does not exist yet is created with mode 0640 (less the umask) rather
    than SQLite's 0644: it holds password hashes. SQLite gives its -wal and -shm files the same
    mode as the database file.
    """

    query_only = False

    def __init__(self, database, *args, **kwargs) -> None:
        if isinstance(database, str) and not os.path.exists(database):
            try:
                os.close(os.open(database, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o640))
            except OSError:
                pass  # created meanwhile, or not creatable: sqlite3 reports the latter
        super().__init__(database, *args, **kwargs)


_SQLITE_UNAVAILABLE = {
    5: "busy",  # SQLITE_BUSY
    6: "locked",  # SQLITE_LOCKED
    10: "I/O error",  # SQLITE_IOERR
    13: "disk full",  # SQLITE_FULL
    14: "cannot open",  # SQLITE_CANTOPEN
    15: "locking protocol",  # SQLITE_PROTOCOL
}
_SQLITE_UNAVAILABLE_TEXT = (
    "database is locked",
    "database is busy",
    "disk i/o error",
    "unable to open database",
    "database or disk is full",
)


class SQLiteEngine(Engine):
    """SQLite through the standard ``sqlite3`` module (see the module docstring)."""

    name = "sqlite"
    for_update = ""
    default_max_connections = 4
    dbapi_name = "sqlite3"
    driver_error = sqlite3.Error
    ddl_types = {
        "pk": "INTEGER PRIMARY KEY AUTOINCREMENT",
        "money": "REAL",
        "datetime": "TEXT",
        "date": "TEXT",
        "text": "TEXT",
        "bool": "INTEGER",
    }

    def __init__(self, url: DatabaseURL) -> None:
        super().__init__(url)
        self.path = url.database
        self.busy_timeout_ms = int(url.option("busy_timeout", "10000"))
        self.synchronous = (url.option("synchronous", "normal") or "normal").upper()
        self._write_lock = threading.Lock()

    def connect_args(self) -> tuple[tuple, dict]:
        return (self.path,), {
            "timeout": self.busy_timeout_ms / 1000.0,
            "isolation_level": None,
            "check_same_thread": False,
            "factory": _SQLiteConnection,
            "cached_statements": 256,
        }

    def on_connect(self, conn) -> None:
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute(f"PRAGMA busy_timeout = {self.busy_timeout_ms}")
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        if str(mode).lower() != "wal":
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                log.warn(
                    "SQLite database {path} could not switch to WAL mode (journal_mode={mode}): "
                    "readers will wait for writers",
                    path=self.path,
                    mode=mode,
                )
        conn.execute(f"PRAGMA synchronous = {self.synchronous}")

    def begin(self, conn, readonly: bool) -> None:
        # 3M SIP2 transactions are short; the write lock is taken before the first read so that
        # two writers never both read and then both try to upgrade (SQLITE_BUSY deadlock).
        # Writers of this process first queue on a lock: they are woken as soon as the previous
        # one commits, instead of polling in SQLite's busy handler (which sleeps up to 100 ms
        # between tries). Other processes are still kept out by BEGIN IMMEDIATE.
        if not readonly and not self._write_lock.acquire(timeout=self.busy_timeout_ms / 1000):
            raise Unavailable(
                f"SQLite {self.path}: database is locked (waited {self.busy_timeout_ms} ms)"
            )
        try:
            if readonly != conn.query_only:
                conn.execute(f"PRAGMA query_only = {1 if readonly else 0}")
                conn.query_only = readonly
            conn.execute("BEGIN" if readonly else "BEGIN IMMEDIATE")
        except BaseException:
            if not readonly:
                self._write_lock.release()
            raise

    def end(self, conn, readonly: bool) -> None:
        if not readonly:
            self._write_lock.release()

    def column_names(self, description) -> list[str]:
        return [d[0].lower() for d in description]

    def _adapt(self, value: Any) -> Any:
        if isinstance(value, Decimal):
            return float(value)  # money is REAL on SQLite
        return super()._adapt(value)

    def wrap(self, exc: BaseException, *, stale: bool = False, commit: bool = False):
        message = str(exc)
        if isinstance(exc, sqlite3.IntegrityError):
            return IntegrityError(message)
        code = getattr(exc, "sqlite_errorcode", None)
        primary = code & 0xFF if isinstance(code, int) else None
        if primary in _SQLITE_UNAVAILABLE or any(
            text in message.lower() for text in _SQLITE_UNAVAILABLE_TEXT
        ):
            return Unavailable(f"SQLite {self.path}: {message}", outcome_unknown=commit)
        return DatabaseError(message)

    def last_id(self, txn: Txn, cursor, sql: str, params, pk: str | None):
        if cursor.rowcount == 0:
            return None
        return cursor.lastrowid


_PG_UNAVAILABLE_CLASSES = ("08", "53", "57", "58")  # connection, resources, operator, system
_PG_UNAVAILABLE_CODES = {"55P03", "55006"}  # lock_not_available, object_in_use
_PG_SERIALIZATION = {"40001", "40P01"}

_pg_types: dict[str, Any] = {}
_pg_types_lock = threading.Lock()


def _psycopg2_types() -> dict[str, Any]:
    """Typecasters that make PostgreSQL values look like SQLite's (built once)."""
    with _pg_types_lock:
        if _pg_types:
            return _pg_types
        from psycopg2 import extensions as ext

        def to_float(value, cursor):
            return None if value is None else float(value)

        def to_text(value, cursor):
            return value

        def to_seconds(value, cursor):
            return None if value is None else value[:19]

        def to_int_bool(value, cursor):
            return None if value is None else (1 if value == "t" else 0)

        _pg_types.update(
            numeric=ext.new_type((1700,), "KGW_NUMERIC", to_float),
            date=ext.new_type((1082,), "KGW_DATE", to_text),
            time=ext.new_type((1083, 1266), "KGW_TIME", to_text),
            timestamp=ext.new_type((1114, 1184), "KGW_TIMESTAMP", to_seconds),
            boolean=ext.new_type((16,), "KGW_BOOL", to_int_bool),
        )
        return _pg_types


class PostgreSQLEngine(Engine):
    """PostgreSQL through psycopg2 (see the module docstring)."""

    name = "postgresql"
    for_update = " FOR UPDATE"
    default_max_connections = 10
    dbapi_name = "psycopg2"
    ddl_types = {
        "pk": "BIGSERIAL PRIMARY KEY",
        "money": "NUMERIC(28,6)",
        "datetime": 'TEXT COLLATE "C"',
        "date": 'TEXT COLLATE "C"',
        "text": "TEXT",
        "bool": "INTEGER",
    }

    def __init__(self, url: DatabaseURL) -> None:
        super().__init__(url)
        try:
            import psycopg2
            import psycopg2.extras
        except ImportError:
            # The database cannot be reached from this process: report it as such.
            raise Unavailable("PostgreSQL needs psycopg2 (Debian: python3-psycopg2)") from None
        self._psycopg2 = psycopg2
        self._extras = psycopg2.extras
        self.driver_error = psycopg2.Error
        self.lock_timeout_ms = int(url.option("lock_timeout", "10000"))
        self._pk_cache: dict[str, str] = {}

    def connect_args(self) -> tuple[tuple, dict]:
        url = self.url
        kw: dict[str, Any] = {
            "dbname": url.database,
            "connect_timeout": "5",
            "fallback_application_name": "koha-gateway",
            "client_encoding": "UTF8",
            "keepalives": "1",
            "keepalives_idle": "30",
            "keepalives_interval": "10",
            "keepalives_count": "3",
        }
        if url.host:
            kw["host"] = url.host
        if url.port is not None:
            kw["port"] = str(url.port)
        if url.user:
            kw["user"] = url.user
        if url.password is not None:
            kw["password"] = url.password
        for key, value in url.options:
            if key != "lock_timeout":
                kw[key] = value
        return (), kw

    def on_connect(self, conn) -> None:
        from psycopg2 import extensions as ext

        try:
            for caster in _psycopg2_types().values():
                ext.register_type(caster, conn)
            conn.isolation_level = ext.ISOLATION_LEVEL_READ_COMMITTED
            with conn.cursor() as cur:
                cur.execute(
                    "SET datestyle TO 'ISO, YMD'; SET TimeZone TO 'UTC'; SET lock_timeout TO %s",
                    (self.lock_timeout_ms,),
                )
            conn.commit()
        except BaseException:
            conn.close()  # adbapi does not keep a connection whose set-up failed
            raise

    def translate(self, sql: str) -> str:
        return qmark_to_pyformat(sql)

    def adapt_params(self, params: Sequence[Any] | None) -> Sequence[Any]:
        # psycopg2 interpolates whenever a parameter sequence is given (even an empty one),
        # which is what the doubled '%' of translate() expects.
        if not params:
            return ()
        params = super().adapt_params(params)
        # PostgreSQL text cannot hold NUL; SQLite can. Drop it, so that a NUL in a SIP field
        # (never meaningful) finds nothing or is stored the same way on both engines.
        if any(type(value) is str and "\x00" in value for value in params):
            params = tuple(
                value.replace("\x00", "") if type(value) is str else value for value in params
            )
        return params

    def begin(self, conn, readonly: bool) -> None:
        # psycopg2 opens the transaction with the first statement; READ ONLY is part of BEGIN.
        want = True if readonly else None
        if conn.readonly != want:
            conn.readonly = want

    def is_dead(self, conn) -> bool:
        return conn is not None and bool(conn.closed)

    def wrap(self, exc: BaseException, *, stale: bool = False, commit: bool = False):
        psycopg2 = self._psycopg2
        code = getattr(exc, "pgcode", None)
        diag = getattr(exc, "diag", None)
        primary = getattr(diag, "message_primary", None)
        message = (getattr(exc, "pgerror", None) or str(exc)).strip()
        if code in _PG_SERIALIZATION:
            return SerializationFailure(primary or message, sqlstate=code)
        if (code and code.startswith("23")) or (
            code is None and isinstance(exc, psycopg2.IntegrityError)
        ):
            # Only the primary message: the DETAIL of a not-null or check violation lists
            # every value of the row (password hashes included).
            return IntegrityError(primary or message.splitlines()[0], sqlstate=code)
        if (code and (code[:2] in _PG_UNAVAILABLE_CLASSES or code in _PG_UNAVAILABLE_CODES)) or (
            code is None and isinstance(exc, (psycopg2.OperationalError, psycopg2.InterfaceError))
        ):
            return Unavailable(
                f"PostgreSQL {self.url.host or 'local'}: {message}",
                sqlstate=code,
                outcome_unknown=commit,
                stale=stale,
            )
        message = "\n".join(line for line in message.splitlines() if not line.startswith("DETAIL:"))
        return DatabaseError(message, sqlstate=code)

    def last_id(self, txn: Txn, cursor, sql: str, params, pk: str | None):
        row = cursor.fetchone()
        return None if row is None else row[0]

    def returning_sql(self, txn: Txn, sql: str, pk: str | None) -> str:
        if _RETURNING.search(sql):
            return sql
        if pk is None:
            pk = self._primary_key(txn, sql)
        elif not _IDENT.match(pk):
            raise ValueError(f"bad primary key column name {pk!r}")
        return f"{sql.rstrip().rstrip(';')} RETURNING {pk}"

    def _primary_key(self, txn: Txn, sql: str) -> str:
        match = _INSERT_TABLE.match(sql)
        if not match:
            raise ValueError("insert() needs an INSERT INTO <table> statement, or pk=")
        table = match.group(1).lower()
        cached = self._pk_cache.get(table)
        if cached is not None:
            return cached
        rows = txn.query(
            "SELECT a.attname AS name FROM pg_index i JOIN pg_attribute a "
            "ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
            "WHERE i.indrelid = CAST(? AS regclass) AND i.indisprimary",
            (table,),
        )
        if len(rows) != 1:
            raise DatabaseError(f"table {table} has no single-column primary key; pass pk=")
        self._pk_cache[table] = rows[0]["name"]
        return rows[0]["name"]

    def execute_batch(self, cursor, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._extras.execute_batch(cursor, sql, rows, page_size=200)


# -- the transaction object ------------------------------------------------------------------


class Txn:
    """One transaction, handed to the function given to :meth:`Database.run`.

    SQL uses ``?`` placeholders on every engine. Do not commit or roll back yourself: the
    transaction ends when the function returns (commit) or raises (rollback). Use
    :meth:`savepoint` to undo part of a transaction.
    """

    __slots__ = ("engine", "readonly", "_conn", "_cursor", "_statements", "_savepoints")

    def __init__(self, engine: Engine, conn, readonly: bool = False) -> None:
        self.engine = engine
        self.readonly = readonly
        self._conn = conn
        self._cursor = conn.cursor()
        self._statements = 0
        self._savepoints = 0

    @property
    def for_update(self) -> str:
        """``" FOR UPDATE"`` on PostgreSQL, ``""`` on SQLite: append to a locking SELECT."""
        return self.engine.for_update

    def _execute(self, sql: str, params) -> Any:
        engine = self.engine
        cursor = self._cursor
        try:
            cursor.execute(engine.translate(sql), engine.adapt_params(params))
        except engine.driver_error as exc:
            stale = self._statements == 0 and engine.is_dead(self._conn)
            raise engine.wrap(exc, stale=stale) from None
        self._statements += 1
        return cursor

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; return the number of rows it changed (-1 when not applicable)."""
        return self._execute(sql, params).rowcount

    def executemany(self, sql: str, seq_of_params: Iterable[Sequence[Any]]) -> None:
        """Run one statement for every parameter sequence (batched on PostgreSQL)."""
        engine = self.engine
        rows = [engine.adapt_params(p) for p in seq_of_params]
        if not rows:
            return
        try:
            engine.execute_batch(self._cursor, engine.translate(sql), rows)
        except engine.driver_error as exc:
            stale = self._statements == 0 and engine.is_dead(self._conn)
            raise engine.wrap(exc, stale=stale) from None
        self._statements += 1

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """All rows of a query, as dicts keyed by lower-case column name."""
        cursor = self._execute(sql, params)
        if cursor.description is None:
            return []
        names = self.engine.column_names(cursor.description)
        try:
            return [dict(zip(names, row)) for row in cursor.fetchall()]
        except self.engine.driver_error as exc:
            raise self.engine.wrap(exc) from None

    def one(self, sql: str, params: Sequence[Any] = ()) -> dict[str, Any] | None:
        """The first row of a query, or ``None``."""
        cursor = self._execute(sql, params)
        if cursor.description is None:
            return None
        try:
            row = cursor.fetchone()
        except self.engine.driver_error as exc:
            raise self.engine.wrap(exc) from None
        if row is None:
            return None
        return dict(zip(self.engine.column_names(cursor.description), row))

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """The first column of the first row, or ``None`` when there is no row."""
        cursor = self._execute(sql, params)
        if cursor.description is None:
            return None
        try:
            row = cursor.fetchone()
        except self.engine.driver_error as exc:
            raise self.engine.wrap(exc) from None
        return None if row is None else row[0]

    def insert(self, sql: str, params: Sequence[Any] = (), *, pk: str | None = None) -> int | None:
        """Run an ``INSERT`` and return the new row's primary key.

        SQLite: the ``lastrowid``. PostgreSQL: ``RETURNING <pk>`` is appended; ``pk`` names the
        key column (``pk="borrowernumber"``); without it the table's primary key is looked up
        once in the catalogue. ``None`` when no row was inserted (``ON CONFLICT DO NOTHING``).
        Meant for tables whose key is ``{pk}``, and plain inserts: after ``ON CONFLICT DO
        UPDATE`` changed an existing row, SQLite's ``lastrowid`` does not name it (use
        :meth:`upsert`, then select the key).
        """
        engine = self.engine
        if isinstance(engine, PostgreSQLEngine):
            sql = engine.returning_sql(self, sql, pk)
        cursor = self._execute(sql, params)
        try:
            return engine.last_id(self, cursor, sql, params, pk)
        except engine.driver_error as exc:
            raise engine.wrap(exc) from None

    def upsert(self, table: str, keys: dict[str, Any], values: dict[str, Any]) -> int:
        """Insert a row, or update ``values`` of the row with the same ``keys`` (a unique key).

        ``INSERT ... ON CONFLICT (keys) DO UPDATE`` on both engines (``DO NOTHING`` when
        ``values`` is empty). Returns the number of rows written.
        """
        columns = [*keys, *values]
        for name in [table, *columns]:
            if not _IDENT.match(name):
                raise ValueError(f"bad SQL identifier {name!r}")
        if not keys:
            raise ValueError("upsert needs at least one key column")
        placeholders = ", ".join("?" for _ in columns)
        conflict = ", ".join(keys)
        if values:
            action = "DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in values)
        else:
            action = "DO NOTHING"
        sql = (
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({placeholders}) "
            f"ON CONFLICT ({conflict}) {action}"
        )
        return self.execute(sql, (*keys.values(), *values.values()))

    @contextmanager
    def savepoint(self):
        """Undo only the statements of the ``with`` block when it raises (then re-raise).

        Needed on PostgreSQL to go on after an error inside a transaction, for example after an
        :class:`IntegrityError` that the caller handles.
        """
        self._savepoints += 1
        name = f"kgw_sp_{self._savepoints}"
        self.execute(f"SAVEPOINT {name}")
        try:
            yield self
        except BaseException:
            try:
                self.execute(f"ROLLBACK TO SAVEPOINT {name}")
                self.execute(f"RELEASE SAVEPOINT {name}")
            except DatabaseError:
                pass  # the connection is gone; the original error is the one to report
            raise
        else:
            self.execute(f"RELEASE SAVEPOINT {name}")

    def close(self) -> None:
        try:
            self._cursor.close()
        except Exception:  # noqa: BLE001 - closing a cursor of a dead connection
            pass


# -- the pool --------------------------------------------------------------------------------


class _Slot:
    """Stands in for adbapi's Connection/Transaction wrappers.

    :class:`Database` manages the real connection itself (begin, commit, rollback, dropping dead
    connections) so adbapi's ``runInteraction`` only provides the thread and the Deferred.
    """

    def __init__(self, pool, connection=None) -> None:
        pass

    def close(self) -> None:
        pass

    def commit(self) -> None:
        pass

    def rollback(self) -> None:
        pass


class _Pool(adbapi.ConnectionPool):
    connectionFactory = _Slot
    transactionFactory = _Slot


class Database:
    """A pool of connections to one database (see the module docstring).

    Build with :meth:`from_url`. Thread-safe. ``engine`` is the :class:`Engine`, ``url`` the
    parsed URL (its ``repr``/``str`` never show the password).
    """

    def __init__(
        self,
        engine: Engine,
        *,
        min_connections: int = 1,
        max_connections: int | None = None,
        reactor=None,
    ) -> None:
        if max_connections is None:
            max_connections = engine.default_max_connections
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        min_connections = max(0, min(min_connections, max_connections))
        self.engine = engine
        self.url = engine.url
        self.min_connections = min_connections
        self.max_connections = max_connections
        self._closed = False
        self._available = True
        self._reactor_ident: int | None = None
        self._state_lock = threading.Lock()
        args, kwargs = engine.connect_args()
        if reactor is None:
            from twisted.internet import reactor
        self._reactor = reactor
        self._pool = _Pool(
            engine.dbapi_name,
            *args,
            cp_min=min_connections,
            cp_max=max_connections,
            cp_openfun=engine.on_connect,
            cp_reconnect=False,
            cp_name=f"koha-gateway-db-{engine.name}",
            cp_reactor=reactor,
            **kwargs,
        )
        # run_blocking() before the reactor starts (start-up checks in twistd's main thread)
        # leaves a connection keyed to what becomes the reactor thread, where run_blocking() is
        # refused from then on: close it when the reactor starts.
        self._startup_trigger = reactor.callWhenRunning(self._drop_reactor_thread_connection)

    def _drop_reactor_thread_connection(self) -> None:
        self._startup_trigger = None
        pool = self._pool
        conn = pool.connections.get(pool.threadID())
        if conn is not None:
            pool.disconnect(conn)

    @classmethod
    def from_url(
        cls,
        url: str | DatabaseURL,
        *,
        min_connections: int = 1,
        max_connections: int | None = None,
        reactor=None,
    ) -> Database:
        """Open a pool for ``sqlite:///abs/path`` or ``postgresql://user:pass@host:port/db``.

        No connection is made yet. ``max_connections`` defaults to 4 (SQLite) or 10
        (PostgreSQL). ``reactor`` defaults to the global reactor.
        Raises :class:`koha_gateway.db.url.InvalidDatabaseURL` (a ``ValueError``).
        """
        parsed = url if isinstance(url, DatabaseURL) else parse_url(url)
        if parsed.engine == "sqlite":
            engine: Engine = SQLiteEngine(parsed)
        else:
            engine = PostgreSQLEngine(parsed)
        return cls(
            engine,
            min_connections=min_connections,
            max_connections=max_connections,
            reactor=reactor,
        )

    def __repr__(self) -> str:
        return f"<Database {self.url.redacted()}>"

    @property
    def available(self) -> bool:
        """False after a transaction failed with :class:`Unavailable`, until one succeeds."""
        return self._available

    # -- running transactions ----------------------------------------------------------------

    def run(
        self,
        fn: Callable[..., Any],
        *args: Any,
        retry: bool = False,
        readonly: bool = False,
        **kw: Any,
    ):
        """Run ``fn(txn, *args, **kw)`` in a pool thread inside one transaction.

        Returns a Deferred firing with ``fn``'s result, or failing with its exception
        (database errors as :class:`DatabaseError` subclasses). ``retry=True`` declares ``fn``
        an idempotent read that may be run a second time after a dropped connection;
        ``readonly=True`` runs it in a read-only transaction. Both keywords are consumed here,
        every other keyword goes to ``fn``.
        """
        from twisted.internet import defer

        if self._closed:
            return defer.fail(DatabaseError("the database pool is closed"))
        self._reactor_ident = threading.get_ident()
        return self._pool.runInteraction(self._attempt, fn, args, kw, readonly, retry)

    def run_blocking(
        self,
        fn: Callable[..., Any],
        *args: Any,
        retry: bool = False,
        readonly: bool = False,
        **kw: Any,
    ) -> Any:
        """:meth:`run` in the calling thread, returning the result (never in the reactor thread).

        Each calling thread gets its own connection (in addition to the pool threads').
        """
        if self._closed:
            raise DatabaseError("the database pool is closed")
        if self._reactor.running and (
            threadable.isInIOThread() or threading.get_ident() == self._reactor_ident
        ):
            raise RuntimeError("run_blocking() would block the reactor thread; use run()")
        return self._attempt(None, fn, args, kw, readonly, retry)

    def _attempt(self, _slot, fn, args, kw, readonly: bool, retry: bool) -> Any:
        pool = self._pool
        engine = self.engine
        attempt = 0
        while True:
            attempt += 1
            try:
                conn = pool.connect()
            except engine.driver_error as exc:
                error = engine.wrap(exc)
                self._note(error)
                raise error from None
            try:
                result = self._transact(conn, fn, args, kw, readonly)
            except BaseException as exc:
                dead = engine.is_dead(conn)
                if dead:
                    self._drop(conn)
                if isinstance(exc, Unavailable):
                    if attempt == 1 and dead and not exc.outcome_unknown and (exc.stale or retry):
                        log.info(
                            "retrying a transaction on a new connection to {url} after: {error}",
                            url=self.url.redacted(),
                            error=str(exc).splitlines()[0],
                        )
                        continue
                    self._note(exc)
                raise
            self._note(None)
            return result

    def _transact(self, conn, fn, args, kw, readonly: bool) -> Any:
        engine = self.engine
        try:
            engine.begin(conn, readonly)
        except engine.driver_error as exc:
            raise engine.wrap(exc, stale=engine.is_dead(conn)) from None
        try:
            txn = Txn(engine, conn, readonly)
            try:
                result = fn(txn, *args, **kw)
            except BaseException:
                txn.close()
                self._rollback(conn)
                raise
            txn.close()
            try:
                conn.commit()
            except engine.driver_error as exc:
                self._rollback(conn)
                raise engine.wrap(exc, commit=True) from None
            return result
        finally:
            engine.end(conn, readonly)

    def _rollback(self, conn) -> None:
        try:
            conn.rollback()
        except self.engine.driver_error:
            # A dead connection cannot roll back; the server discards the transaction.
            pass

    def _drop(self, conn) -> None:
        pool = self._pool
        if pool.connections.get(pool.threadID()) is conn:
            pool.disconnect(conn)
        else:
            try:
                conn.close()
            except self.engine.driver_error:
                pass

    def _note(self, error: DatabaseError | None) -> None:
        """Track availability; log only the transitions (not every failed request)."""
        if error is None and self._available:
            return  # the common case, without the lock
        if error is not None and not isinstance(error, Unavailable):
            return
        with self._state_lock:
            was = self._available
            self._available = error is None
        if was and error is not None:
            log.warn(
                "database {url} unavailable: {error}",
                url=self.url.redacted(),
                error=str(error).splitlines()[0],
            )
        elif not was and error is None:
            log.info("database {url} available again", url=self.url.redacted())

    # -- closing -----------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the pool threads and close every connection. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._startup_trigger is not None:
            self._reactor.removeSystemEventTrigger(self._startup_trigger)
            self._startup_trigger = None
        pool = self._pool
        if pool.threadpool.joined:
            # The reactor's shutdown trigger already closed the pool; close what is left.
            for conn in list(pool.connections.values()):
                try:
                    conn.close()
                except self.engine.driver_error:
                    pass
            pool.connections.clear()
            return
        if pool.running:
            pool.close()
            return
        # Never started (no reactor ran): only blocking connections exist.
        if pool.startID is not None:
            self._reactor.removeSystemEventTrigger(pool.startID)
            pool.startID = None
        for conn in list(pool.connections.values()):
            try:
                conn.close()
            except self.engine.driver_error:
                pass
        pool.connections.clear()
