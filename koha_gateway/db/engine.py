"""The database engine layer: one API over SQLite, PostgreSQL and MariaDB/MySQL.

Everything above this module (the ILS rules, the ACS, the authenticator, the admin CLI) talks to
the database only through :class:`Database` and :class:`Txn`, and writes SQL once, with ``?``
placeholders, for both engines.

``Database.from_url(url)`` opens a pool of database threads, each with its own connection.
``db.run(fn, *args, **kw)`` runs ``fn(txn, *args, **kw)`` in a pool thread inside one transaction
and returns a Deferred: commit when ``fn`` returns, rollback when it raises (the exception is
re-raised). ``db.run_blocking`` does the same in the calling thread (admin CLI, tests, benches).
The reactor thread never waits on a lock or a server: ``db.run(fn, inline=True)`` (a transaction
that probably only reads) runs ``fn`` on the reactor thread on SQLite, with a read-only
connection that never waits for a lock, and falls back to the pool when ``fn`` writes or meets
a lock (:meth:`Database._run_inline`; URL option ``inline_reads=off`` turns it off).

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
    default 10 s). Sessions run with ``TimeZone = UTC`` and ``DateStyle = ISO, YMD``.
    ``readonly=True`` runs the transaction in the session's ``READ ONLY`` access mode (``SET
    SESSION CHARACTERISTICS AS TRANSACTION READ ONLY``, sent only when a connection changes
    mode), which refuses writes in autocommit statements and in ``BEGIN`` alike.

    Round trips (PostgreSQL and MariaDB/MySQL, ``engine.lazy_begin``): the connection runs in
    autocommit mode and :class:`Txn` opens the server transaction itself, with the first
    statement that writes or locks (``INSERT``/``UPDATE``/``DELETE``, ``SELECT ... FOR
    UPDATE``, ``SAVEPOINT``, DDL: :func:`needs_transaction`), sent with it in one round trip
    (``BEGIN; <statement>``, ``START TRANSACTION; <statement>``). The plain reads
    before it run as autocommit statements, and a function that only reads sends neither
    ``BEGIN`` nor ``COMMIT``; ``COMMIT`` (or ``ROLLBACK``) is sent only when a transaction was
    opened. This gives the same results as opening the transaction first, because both
    engines run at ``READ COMMITTED`` (set per session in :meth:`~Engine.on_connect`): there
    every statement reads a snapshot taken when *it* starts, inside a transaction or not, and
    a plain ``SELECT`` takes no row lock that the transaction would hold; the only thing a
    read inside the transaction could see in addition is the transaction's own writes, and
    there are none before the first write. From the first write on, every statement runs in
    the transaction, so the writes and the locking reads are atomic and isolated as before.
    Writes whose result the caller never reads go through :meth:`Txn.execute_later`: they are
    sent, in order, in the round trip of the next statement (before it, so it sees them) or
    with the ``COMMIT`` (``INSERT ...; UPDATE ...; COMMIT``); so do ``SAVEPOINT`` and
    ``RELEASE SAVEPOINT``. An acknowledged transaction
    is still committed before the answer is sent, so a SIGKILL after the answer loses
    nothing. MariaDB/MySQL connections use ``CLIENT_MULTI_STATEMENTS`` for these batches
    (all parameters are interpolated by the driver, never by string formatting).

    MariaDB/MySQL (mysqlclient, ``MySQLdb``; Koha's own database): sessions run as Koha's
    ``Koha::Database`` sets them up, with ``utf8mb4``, Koha's strict ``sql_mode``
    (``ONLY_FULL_GROUP_BY,STRICT_TRANS_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,
    ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION``, the set Koha's test suite and
    ``strict_sql_modes`` use), and the server's time zone unless ``?time_zone=`` (Koha's
    ``<timezone>``) names another; in addition ``READ COMMITTED``, ``FOR UPDATE`` row locks as on
    PostgreSQL, a row lock waits at most ``lock_timeout`` (``innodb_lock_wait_timeout``), and
    ``UPDATE`` counts the rows it matched, not only those it changed, as the other engines do.
    ``readonly=True`` runs the transaction in the session's ``READ ONLY`` access mode (``SET
    SESSION TRANSACTION READ ONLY``, sent only when a connection changes mode, so a read-only
    transaction costs no more round trips than a read-write one; autocommit statements and
    ``START TRANSACTION`` follow it).

    The pool (:class:`_Pool`) is a queue served by up to ``max_connections`` threads, one
    connection per thread; begin, commit, rollback and dropping dead connections are done here.
    It replaces Twisted's ``adbapi.ConnectionPool``, whose thread pool wakes the longest-idle
    thread (a cold connection) and wakes the reactor once per result: at eight transactions in
    flight its hand-over cost about 55 µs of CPU per transaction against 15 µs here (SQLite,
    ``bench/db_layer.py``; ``docs/architecture.md`` has the figures).

Errors
    Driver exceptions are translated, for both engines, into :class:`DatabaseError` and its
    subclasses :class:`IntegrityError` (a unique, foreign key, not-null or check constraint;
    :class:`SerializationFailure`, a subclass, for serialization failures and deadlocks) and
    :class:`Unavailable` (the database is down, unreachable, or busy beyond its timeout).
    Exceptions raised by ``fn`` itself pass through unchanged.

Outages (PostgreSQL, MariaDB/MySQL)
    When the server is down, connecting fails at once (refused) or after ``connect_timeout``
    (URL option, default 5 s), and ``run`` fails with :class:`Unavailable`. A pooled connection
    that turns out to be dead is dropped; the next transaction on that pool thread connects
    afresh, so service resumes by itself when the server is back. When the very first statement
    of a transaction fails because its pooled connection was dead, nothing of the transaction can
    have been committed, so it is run once more on a new connection (``fn`` must therefore not
    have effects outside the database before its first statement). Any other failure is only
    retried when the caller says the work is an idempotent read: ``run(fn, retry=True)``. A
    failure while committing is :class:`Unavailable` with ``outcome_unknown=True``: the
    transaction may or may not have been committed, and it is never retried. When deferred
    writes travel with the ``COMMIT`` and one of them fails, PostgreSQL reports the
    transaction aborted (the ``COMMIT`` did not run): the error is the write's, with
    ``outcome_unknown=False``; MariaDB cannot tell which statement failed, and the outcome
    is reported unknown there.

Types (every engine returns the same Python values)
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

    MariaDB/MySQL stores dates in real ``DATE``/``DATETIME`` columns (Koha's types): they come
    back as the same ISO strings (``DATETIME`` truncated to whole seconds), ``DECIMAL`` as
    ``float``, ``TIME`` as text; comparisons with ISO-string parameters are chronological. A date
    written into a ``DATETIME`` column comes back with `` 00:00:00``. A NUL in text is kept, as on
    SQLite. SQL string literals must not use backslash escapes (MySQL reads them, the others do
    not): pass such values as parameters.
"""

from __future__ import annotations

import collections
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

from twisted.logger import Logger
from twisted.python import threadable

from koha_gateway.db.url import DatabaseURL, parse_url

__all__ = [
    "INLINE_FALLBACK_REASONS",
    "Database",
    "DatabaseError",
    "Engine",
    "IntegrityError",
    "MySQLEngine",
    "PostgreSQLEngine",
    "SQLiteEngine",
    "SerializationFailure",
    "Txn",
    "Unavailable",
    "WouldWait",
    "must_not_wait",
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


class WouldWait(Exception):
    """Raised inside an inline transaction (``Database.run(..., inline=True)``) by code that
    would otherwise wait for another thread, e.g. for a lock a database thread holds: the
    transaction is rolled back and run on the database threads instead, where waiting is
    allowed. Ask :func:`must_not_wait` before raising it."""


def must_not_wait(txn) -> bool:
    """True when ``txn`` runs on the reactor thread (an inline read): it must not wait for a
    lock that another thread may hold for long; raise :class:`WouldWait` instead."""
    return getattr(txn._conn, "must_not_wait", False)


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


#: Parameter types that every driver takes as they are (no bool, date or Decimal among them,
#: nor their subclasses): :meth:`Engine.adapt_params` passes them without an isinstance().
_PLAIN_PARAMS = frozenset({str, int, float, bytes, type(None)})


def _format_datetime(value: _dt.datetime) -> str:
    return (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d} "
        f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}"
    )


def _format_date(value: _dt.date) -> str:
    return f"{value.year:04d}-{value.month:02d}-{value.day:02d}"


_READS = ("SELECT", "SHOW", "EXPLAIN", "VALUES")
_LOCKS_OR_WRITES = re.compile(
    r"\bFOR\s+(?:UPDATE|SHARE|NO\s+KEY\s+UPDATE|KEY\s+SHARE)\b|\bLOCK\s+IN\s+SHARE\s+MODE\b"
    r"|\b(?:NEXTVAL|SETVAL|PG_ADVISORY_\w*|GET_LOCK)\s*\(",
    re.IGNORECASE,
)


_DDL = re.compile(r"^\s*(?:CREATE|ALTER|DROP|RENAME|TRUNCATE)\b", re.IGNORECASE)


@lru_cache(maxsize=1024)
def _is_ddl(sql: str) -> bool:
    return _DDL.match(sql) is not None


@lru_cache(maxsize=4096)
def needs_transaction(sql: str) -> bool:
    """Whether ``sql`` writes or locks, so that it must run inside the transaction: anything
    but a plain ``SELECT``/``SHOW``/``EXPLAIN``/``VALUES`` (``SELECT ... FOR UPDATE``, ``FOR
    SHARE``, ``LOCK IN SHARE MODE``, sequence and lock functions count as writes; so does
    ``WITH``, which may hold a data-modifying statement). Cached per distinct statement."""
    head = sql.lstrip()[:8].upper()
    if not head.startswith(_READS):
        return True
    return _LOCKS_OR_WRITES.search(sql) is not None


# -- engines ---------------------------------------------------------------------------------


class Engine:
    """What differs between the engines. ``txn.engine`` and ``db.engine`` are one of these.

    Public attributes: ``name`` (``"sqlite"`` / ``"postgresql"`` / ``"mysql"``), ``for_update``,
    :meth:`ddl`,
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
        # Statement -> (number of columns, first and last name from the driver, row keys).
        self._names: dict[str, tuple[int, str, str, list[str]]] = {}

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
            if type(value) not in _PLAIN_PARAMS and isinstance(value, (bool, _dt.date, Decimal)):
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
        """Per-connection settings, run in the thread that opened the connection."""

    def is_dead(self, conn) -> bool:
        """True when ``conn`` is known to be broken and must be dropped from the pool."""
        return False

    def end(self, conn, readonly: bool) -> None:
        """Called after every commit or rollback of a transaction that :meth:`begin` opened."""

    #: The connection runs in autocommit mode and :class:`Txn` opens the server transaction with
    #: its first write (``begin_sql`` in front of it); ``False``: :meth:`begin` opened it.
    lazy_begin = False
    begin_sql = "BEGIN"
    #: Several statements can be sent in one round trip (:meth:`send`): deferred writes ride
    #: along with the next statement or the ``COMMIT``.
    batches = False
    #: DDL commits the open transaction (MariaDB/MySQL).
    ddl_commits = False

    def cursor(self, conn):
        """The cursor a :class:`Txn` runs its statements with (the driver's own here)."""
        return conn.cursor()

    def send(self, cursor, parts: list[str], params: Sequence[Any]) -> None:
        """Run ``parts`` (statements in driver form) in one round trip; the cursor then holds
        the result of the last one."""
        if len(parts) != 1:
            raise DatabaseError(f"{self.name} runs one statement at a time")
        cursor.execute(parts[0], params)

    def mark_dead(self, conn) -> None:
        """Remember that :meth:`is_dead` found ``conn`` broken (closing its cursor may clear
        the driver's error state)."""

    def in_transaction(self, conn) -> bool:
        """Whether ``conn`` may have a server transaction open (``lazy_begin`` engines)."""
        return True

    def in_failed_transaction(self, conn) -> bool:
        """Whether the server reported ``conn``'s transaction aborted by an error (so that a
        ``COMMIT`` sent after the failing statement did not run)."""
        return False

    lower_names = False
    _NAMES_LIMIT = 4096

    def column_names(self, description, sql: str | None = None) -> list[str]:
        """The row keys of a result: the column names (lower-cased where the engine does not
        fold them), cached per statement.

        Rows of ``SELECT *`` from Koha's wide tables (``borrowers``, ``items``) have 60 to 100
        columns; making the keys cost about as much as running the statement on SQLite. The
        cache is checked against the number of columns and the first and last names, so a table
        that gained or lost a column (an upgrade of Koha's schema) is read afresh. The check
        compares the names as the driver gives them (kept with the entry), so that a hit costs
        no method call and no ``lower()``.
        """
        if sql is not None:
            entry = self._names.get(sql)
            if (
                entry is not None
                and entry[0] == len(description)
                and entry[1] == description[0][0]
                and entry[2] == description[-1][0]
            ):
                return entry[3]
        if self.lower_names:
            names = [d[0].lower() for d in description]
        else:
            names = [d[0] for d in description]
        if sql is not None and names:
            if len(self._names) >= self._NAMES_LIMIT:
                self._names.clear()
            self._names[sql] = (len(description), description[0][0], description[-1][0], names)
        return names

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


# SQLITE_BUSY, SQLITE_LOCKED, SQLITE_READONLY (primary codes): an inline read that meets one of
# these is run again on the database threads.


_SQLITE_FALL_BACK_REASON = {5: "busy", 6: "locked", 8: "readonly"}
# Message texts when the error code is not known: SQLITE_BUSY reads "database is locked",
# SQLITE_LOCKED "database table is locked".
_SQLITE_FALL_BACK_TEXT_REASON = (
    ("table is locked", "locked"),
    ("is locked", "busy"),
    ("database is busy", "busy"),
    ("readonly database", "readonly"),
)

#: Why an inline transaction ran on the database threads instead (``Database.inline_reasons``):
#: a statement met SQLite's ``busy``, ``locked`` or ``readonly`` (it tried to write) error; the
#: code raised ``would_wait`` (:class:`WouldWait`: e.g. the reference data are due for a check);
#: the database is ``not_wal``; its file ``cannot_open`` for the inline connection; the
#: connection belongs to an ``other_thread``, or is in a transaction already (``nested``).
INLINE_FALLBACK_REASONS = (
    "busy",
    "locked",
    "readonly",
    "would_wait",
    "not_wal",
    "cannot_open",
    "other_thread",
    "nested",
)


def _fall_back_reason(exc: BaseException) -> str | None:
    """``busy``, ``locked`` or ``readonly`` when an inline read meeting ``exc`` falls back to
    the pool; ``None`` otherwise (the error is reported as the pool reports it)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return _SQLITE_FALL_BACK_REASON.get(code & 0xFF)
    message = str(exc).lower()
    for text, reason in _SQLITE_FALL_BACK_TEXT_REASON:
        if text in message:
            return reason
    return None


class _InlineCursor(sqlite3.Cursor):
    """Notes on its connection when a statement met a lock or tried to write (the reason): the
    transaction then falls back to the pool even if the code that ran the statement caught the
    error."""

    def execute(self, sql, parameters=()):
        try:
            return sqlite3.Cursor.execute(self, sql, parameters)
        except sqlite3.Error as exc:
            reason = _fall_back_reason(exc)
            if reason is not None:
                self.connection.refused = reason
            raise

    def executemany(self, sql, seq_of_parameters):
        try:
            return sqlite3.Cursor.executemany(self, sql, seq_of_parameters)
        except sqlite3.Error as exc:
            reason = _fall_back_reason(exc)
            if reason is not None:
                self.connection.refused = reason
            raise


class _InlineConnection(sqlite3.Connection):
    """The SQLite connection of inline reads (:meth:`Database.run` with ``inline=True``), used
    on the reactor thread only: ``query_only``, busy timeout 0."""

    must_not_wait = True
    # Why a statement of the current transaction was refused (it met a lock or tried to
    # write: busy, locked, readonly); None while none was.
    refused: str | None = None

    def cursor(self, factory=None):
        return sqlite3.Connection.cursor(self, _InlineCursor)


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
    default_max_connections = 2
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
        self.inline_reads = url.option("inline_reads", "on") != "off"
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

    def inline_connect(self) -> _InlineConnection | None:
        """A connection for inline reads: it never creates the database file (``mode=rw``),
        never waits for a lock (busy timeout 0) and refuses to write (``query_only``).
        ``None`` when the database is not in WAL mode (there readers wait for writers)."""
        from urllib.parse import quote

        conn = sqlite3.connect(
            f"file:{quote(self.path, safe='/')}?mode=rw",
            uri=True,
            timeout=0,
            isolation_level=None,
            check_same_thread=False,
            factory=_InlineConnection,
            cached_statements=256,
        )
        try:
            conn.execute("PRAGMA busy_timeout = 0")
            conn.execute("PRAGMA query_only = 1")
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        except BaseException:
            conn.close()
            raise
        if str(mode).lower() != "wal":
            conn.close()
            return None
        return conn

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

    lower_names = True

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


_pg_connection: list[type] = []


def _pg_connection_class() -> type:
    """psycopg2's connection with room for the engine's per-connection state."""
    with _pg_types_lock:
        if not _pg_connection:
            from psycopg2 import extensions as ext

            class _PostgreSQLConnection(ext.connection):
                kgw_readonly: bool | None = None

            _pg_connection.append(_PostgreSQLConnection)
        return _pg_connection[0]


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
        self._idle = psycopg2.extensions.TRANSACTION_STATUS_IDLE
        self._inerror = psycopg2.extensions.TRANSACTION_STATUS_INERROR

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
            "connection_factory": _pg_connection_class(),
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
            # psycopg2 sends no BEGIN of its own: Txn opens a transaction with its first write.
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(
                    "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ COMMITTED, "
                    "READ WRITE; SET datestyle TO 'ISO, YMD'; SET TimeZone TO 'UTC'; "
                    "SET lock_timeout TO %s",
                    (self.lock_timeout_ms,),
                )
            conn.kgw_readonly = False
        except BaseException:
            conn.close()  # the pool does not keep a connection whose set-up failed
            raise

    # The cached function itself (one call per statement, not two).
    translate = staticmethod(qmark_to_pyformat)

    def adapt_params(self, params: Sequence[Any] | None) -> Sequence[Any]:
        # psycopg2 interpolates whenever a parameter sequence is given (even an empty one),
        # which is what the doubled '%' of translate() expects.
        if not params:
            return ()
        # One pass over the usual parameters (text without NUL, numbers, NULL), which go to
        # psycopg2 as they are.
        for value in params:
            kind = type(value)
            if kind is str:
                if "\x00" in value:
                    break
            elif kind not in _PLAIN_PARAMS:
                break
        else:
            return params
        params = super().adapt_params(params)
        # PostgreSQL text cannot hold NUL; SQLite can. Drop it, so that a NUL in a SIP field
        # (never meaningful) finds nothing or is stored the same way on both engines.
        if any(type(value) is str and "\x00" in value for value in params):
            params = tuple(
                value.replace("\x00", "") if type(value) is str else value for value in params
            )
        return params

    lazy_begin = True
    batches = True

    def begin(self, conn, readonly: bool) -> None:
        # No round trip: Txn opens the transaction with its first write. The session's
        # default access mode (which autocommit statements and BEGIN follow) changes only
        # when this connection's last transaction had the other mode.
        if conn.kgw_readonly != readonly:
            with conn.cursor() as cur:
                cur.execute(
                    "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY"
                    if readonly
                    else "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE"
                )
            conn.kgw_readonly = readonly

    def send(self, cursor, parts: list[str], params: Sequence[Any]) -> None:
        # One simple-query message; the server runs the statements in order and stops at the
        # first error (the transaction is then aborted); psycopg2 keeps the last result.
        cursor.execute("; ".join(parts), params)

    def in_transaction(self, conn) -> bool:
        return conn.get_transaction_status() != self._idle

    def in_failed_transaction(self, conn) -> bool:
        return conn.get_transaction_status() == self._inerror

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


# MariaDB/MySQL error numbers (mysqld_error.h, errmsg.h).
_MY_SERIALIZATION = {1213}  # ER_LOCK_DEADLOCK
_MY_INTEGRITY = {
    1022,  # ER_DUP_KEY
    1048,  # ER_BAD_NULL_ERROR
    1062,  # ER_DUP_ENTRY
    1169,  # ER_DUP_UNIQUE
    1216,  # ER_NO_REFERENCED_ROW
    1217,  # ER_ROW_IS_REFERENCED
    1364,  # ER_NO_DEFAULT_FOR_FIELD (a NOT NULL column left out, in strict mode)
    1451,  # ER_ROW_IS_REFERENCED_2
    1452,  # ER_NO_REFERENCED_ROW_2
    1557,  # ER_FOREIGN_DUPLICATE_KEY
    1586,  # ER_DUP_ENTRY_WITH_KEY_NAME
    3819,  # MySQL: check constraint violated
    4025,  # MariaDB: ER_CONSTRAINT_FAILED
}
# The connection is gone: the pool must drop it.
_MY_CONNECTION_LOST = {
    1053,  # ER_SERVER_SHUTDOWN
    1927,  # ER_CONNECTION_KILLED
    2006,  # CR_SERVER_GONE_ERROR
    2013,  # CR_SERVER_LOST
    2055,  # CR_SERVER_LOST_EXTENDED
    4031,  # ER_CLIENT_INTERACTION_TIMEOUT (disconnected for inactivity)
}
_MY_UNAVAILABLE = _MY_CONNECTION_LOST | {
    1040,  # ER_CON_COUNT_ERROR (too many connections)
    1044,  # ER_DBACCESS_DENIED_ERROR
    1045,  # ER_ACCESS_DENIED_ERROR
    1049,  # ER_BAD_DB_ERROR (unknown database)
    1203,  # ER_TOO_MANY_USER_CONNECTIONS
    1205,  # ER_LOCK_WAIT_TIMEOUT: busy beyond lock_timeout (55P03 on PostgreSQL)
    1226,  # ER_USER_LIMIT_REACHED
    1290,  # ER_OPTION_PREVENTS_STATEMENT (--read-only server, e.g. a replica)
    1836,  # ER_READ_ONLY_MODE
    2001,  # CR_SOCKET_CREATE_ERROR
    2002,  # CR_CONNECTION_ERROR (socket)
    2003,  # CR_CONN_HOST_ERROR (TCP)
    2005,  # CR_UNKNOWN_HOST
    2026,  # CR_SSL_CONNECTION_ERROR
}
# Messages that quote a value of the row (a card number, a password): the value is cut out.
_MY_QUOTES_VALUES = {1062, 1586, 1366, 1292, 1265, 1367, 1411, 1264}
_QUOTED_VALUE = re.compile(r"'(?:[^'\\]|\\.|'')*'(?= for | in )")

# Koha::Database's session sql_mode when strict_sql_modes is on (and in Koha's test suite).
MYSQL_SQL_MODE = (
    "ONLY_FULL_GROUP_BY,STRICT_TRANS_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,"
    "ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION"
)
# Koha's table options (kohastructure.sql).
_MYSQL_TABLE_OPTIONS = " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci"
_CREATE_TABLE = re.compile(
    r"^\s*CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?[`\w.]+\s*\(", re.IGNORECASE
)
_ALTER_ADD = re.compile(r"^\s*ALTER\s+TABLE\s", re.IGNORECASE)
_KEY_CLAUSE = re.compile(
    r"^\s*(?:CONSTRAINT\s+\w+\s+)?(?:PRIMARY\s+KEY|UNIQUE(?:\s+(?:KEY|INDEX))?|KEY|INDEX|"
    r"FOREIGN\s+KEY)\s*(?:`?\w+`?\s*)?\(([^)]*)\)",
    re.IGNORECASE,
)
_KEYED_COLUMN = re.compile(r"\b(?:PRIMARY\s+KEY|UNIQUE|REFERENCES|DEFAULT)\b", re.IGNORECASE)
_INSERT_COLUMNS = re.compile(
    r"^\s*INSERT\s+INTO\s+[`\w.]+\s*\(([^)]*)\)\s*VALUES\s*\(([^)]*)\)\s*;?\s*$",
    re.IGNORECASE,
)


def _split_top_level(body: str) -> list[str]:
    """Split a column list at its top-level commas (not inside parentheses or quotes)."""
    parts: list[str] = []
    depth = 0
    quote_char = ""
    start = 0
    for i, ch in enumerate(body):
        if quote_char:
            if ch == quote_char:
                quote_char = ""
        elif ch in "'\"`":
            quote_char = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(body[start:i])
            start = i + 1
    parts.append(body[start:])
    return parts


def _mysql_text(value):
    if value is None:
        return None
    return value.decode("utf-8") if isinstance(value, (bytes, bytearray)) else value


def _mysql_seconds(value):
    if value is None:
        return None
    return _mysql_text(value)[:19]


def _mysql_float(value):
    return None if value is None else float(value)


_my_conv: dict[Any, Any] = {}
_my_conv_lock = threading.Lock()


def _mysqldb_conversions() -> dict[Any, Any]:
    """MySQLdb's converters with dates as ISO text and DECIMAL as float (built once)."""
    with _my_conv_lock:
        if _my_conv:
            return _my_conv
        from MySQLdb.constants import FIELD_TYPE
        from MySQLdb.converters import conversions

        conv = dict(conversions)
        conv[FIELD_TYPE.DECIMAL] = _mysql_float
        conv[FIELD_TYPE.NEWDECIMAL] = _mysql_float
        conv[FIELD_TYPE.DATE] = _mysql_text
        conv[FIELD_TYPE.TIME] = _mysql_text
        conv[FIELD_TYPE.DATETIME] = _mysql_seconds
        conv[FIELD_TYPE.TIMESTAMP] = _mysql_seconds
        _my_conv.update(conv)
        return _my_conv


class _MySQLCursor:
    """What :class:`Txn` needs of a MySQLdb cursor, on mysqlclient's low-level connection API.

    MySQLdb's ``Cursor`` runs some 35 Python calls per statement (``execute`` -> ``_mogrify``
    -> ``_query`` -> ``_do_get_result`` -> ``_post_get_result`` -> ``_fetch_row``, with the
    ``_get_db`` checks, a ``field_flags()`` tuple of every column and a drain of pending
    results) around the same C calls made here: ``query``, ``store_result``, ``describe``,
    ``fetch_row(0)``, ``affected_rows``, ``insert_id``, ``next_result`` (all in mysqlclient
    1.4.6, Debian bookworm's, as in 2.x). The C methods are called through the
    ``_mysql.connection`` type, which skips the connection's own ``__getattr__`` and the
    Python ``Connection.query`` wrapper. Rows are converted by the connection's converters
    in C, as MySQLdb's cursor has them converted; parameters are quoted by the connection
    (``literal``: ``string_literal`` for text, as MySQLdb does) and interpolated into the
    encoded statement with ``%``, exactly as ``Cursor.execute`` does (so ``%%`` becomes
    ``%`` even without parameters). Errors are the driver's own exceptions, raised by the
    same C calls.

    ``executemany`` is left to MySQLdb's cursor (:meth:`MySQLEngine.execute_batch`: it
    rewrites ``INSERT ... VALUES`` into multi-row inserts).
    """

    __slots__ = ("connection", "description", "rowcount", "lastrowid", "_rows", "_next")

    def __init__(self, conn) -> None:
        self.connection = conn
        self.description = None
        self.rowcount = -1
        self.lastrowid = None
        self._rows: tuple = ()
        self._next = 0

    def execute(self, query: str, args: Sequence[Any] = ()) -> int:
        conn = self.connection
        c = _my_c
        # A result left by a multi-statement batch (none after Txn's batches, which read
        # every result) would make the next query fail "out of sync": drop it, as MySQLdb's
        # cursor does before every statement.
        while c.next_result(conn) == 0:
            c.store_result(conn)
        encoding = conn.encoding
        literal = None
        quoted = []
        for value in args:
            kind = type(value)
            if kind is str:
                quoted.append(c.string_literal(conn, value.encode(encoding)))
            elif kind is int:
                quoted.append(b"%d" % value)
            elif value is None:
                quoted.append(b"NULL")
            else:
                if literal is None:
                    literal = conn.literal
                quoted.append(literal(value))
        try:
            sql = query.encode(encoding) % tuple(quoted)
        except TypeError as exc:
            raise _my_programming_error(str(exc)) from None
        self.rowcount = -1
        self.lastrowid = None
        c.query(conn, sql)
        self._result()
        return self.rowcount

    def _result(self) -> None:
        conn = self.connection
        c = _my_c
        result = c.store_result(conn)
        if result is None:
            self.description = None
            self._rows = ()
        else:
            self.description = result.describe()
        self.rowcount = c.affected_rows(conn)
        self.lastrowid = c.insert_id(conn)
        if result is not None:
            self._rows = result.fetch_row(0)
        self._next = 0

    def nextset(self) -> int | None:
        """Read the next result of a multi-statement batch (its error is raised here)."""
        if _my_c.next_result(self.connection) == -1:
            return None
        self._result()
        return 1

    def fetchone(self):
        rows = self._rows
        if self._next >= len(rows):
            return None
        self._next += 1
        return rows[self._next - 1]

    def fetchall(self):
        rows = self._rows
        if self._next:
            rows = rows[self._next :]
        self._next = len(self._rows)
        return rows

    def close(self) -> None:
        self._rows = ()
        self.description = None


#: ``MySQLdb._mysql.connection`` and ``MySQLdb.ProgrammingError``, set by MySQLEngine.
_my_c: Any = None
_my_programming_error: Any = None


class MySQLEngine(Engine):
    """MariaDB/MySQL through mysqlclient (``MySQLdb``; see the module docstring)."""

    name = "mysql"
    for_update = " FOR UPDATE"
    default_max_connections = 10
    dbapi_name = "MySQLdb"
    # Koha's column types (kohastructure.sql). ``{text}`` is MEDIUMTEXT, or VARCHAR(255) for a
    # column that a key, a foreign key or a DEFAULT needs to be indexable (see :meth:`ddl`).
    ddl_types = {
        "pk": "INT(11) NOT NULL AUTO_INCREMENT PRIMARY KEY",
        "money": "DECIMAL(28,6)",
        "datetime": "DATETIME",
        "date": "DATE",
        "text": "MEDIUMTEXT",
        "bool": "TINYINT(1)",
    }
    key_text_type = "VARCHAR(255)"

    def __init__(self, url: DatabaseURL) -> None:
        super().__init__(url)
        try:
            import MySQLdb
            from MySQLdb.constants import CLIENT
        except ImportError:
            raise Unavailable(
                "MariaDB/MySQL needs mysqlclient (Debian: python3-mysqldb; pip: "
                "koha-gateway[mysql])"
            ) from None
        global _my_c, _my_programming_error
        from MySQLdb import _mysql

        _my_c = _mysql.connection
        _my_programming_error = MySQLdb.ProgrammingError
        self._mysqldb = MySQLdb
        self._client = CLIENT
        self.driver_error = MySQLdb.Error
        self.lock_timeout_s = max(1, -(-int(url.option("lock_timeout", "10000")) // 1000))
        self.time_zone = url.option("time_zone")

    # -- connections -------------------------------------------------------------------------

    def connect_args(self) -> tuple[tuple, dict]:
        url = self.url
        kw: dict[str, Any] = {
            "db": url.database,
            "charset": "utf8mb4",
            "use_unicode": True,
            # Txn opens a transaction (START TRANSACTION) with its first write.
            "autocommit": True,
            "conv": _mysqldb_conversions(),
            # UPDATE reports the rows it matched (as SQLite and PostgreSQL), not only changed;
            # several statements go in one round trip (START TRANSACTION with the first write,
            # deferred writes with the next statement or the COMMIT).
            "client_flag": self._client.FOUND_ROWS | self._client.MULTI_STATEMENTS,
            "connect_timeout": int(url.option("connect_timeout", "5")),
            "read_timeout": int(url.option("read_timeout", "30")),
            "write_timeout": int(url.option("write_timeout", "30")),
        }
        if url.host:
            kw["host"] = url.host
        if url.port is not None:
            kw["port"] = url.port
        if url.user:
            kw["user"] = url.user
        if url.password is not None:
            kw["passwd"] = url.password
        socket_path = url.option("unix_socket")
        if socket_path:
            kw["unix_socket"] = socket_path
        ssl = {
            key: url.option(f"ssl_{key}")
            for key in ("ca", "cert", "key")
            if url.option(f"ssl_{key}")
        }
        if ssl or url.option("ssl", "0") not in ("", "0"):
            kw["ssl"] = ssl or {"ca": None}
        return (), kw

    def on_connect(self, conn) -> None:
        try:
            cursor = conn.cursor()
            try:
                cursor.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
                cursor.execute(f"SET SESSION sql_mode = '{MYSQL_SQL_MODE}'")
                cursor.execute(f"SET SESSION innodb_lock_wait_timeout = {self.lock_timeout_s}")
                if self.time_zone:
                    cursor.execute("SET SESSION time_zone = %s", (self.time_zone,))
            finally:
                cursor.close()
            conn.commit()
            # Set here so that begin() reads a plain attribute: a getattr() default on a
            # missing attribute of the connection costs an AttributeError per transaction.
            conn.kgw_readonly = False
            conn.kgw_dead = False
        except BaseException:
            conn.close()  # the pool does not keep a connection whose set-up failed
            raise

    lazy_begin = True
    begin_sql = "START TRANSACTION"
    batches = True
    ddl_commits = True

    def cursor(self, conn) -> _MySQLCursor:
        return _MySQLCursor(conn)

    def execute_batch(self, cursor, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        # MySQLdb's cursor turns INSERT ... VALUES into multi-row inserts.
        batch = cursor.connection.cursor()
        try:
            batch.executemany(sql, rows)
        finally:
            batch.close()

    def send(self, cursor, parts: list[str], params: Sequence[Any]) -> None:
        # One COM_QUERY (CLIENT_MULTI_STATEMENTS): the server runs the statements in order,
        # stops at the first error and streams every result; each is read in turn (an error
        # is raised by the nextset() of its statement), the cursor keeps the last one.
        cursor.execute("; ".join(parts), params)
        for _ in range(len(parts) - 1):
            cursor.nextset()

    def begin(self, conn, readonly: bool) -> None:
        # No round trip: Txn opens the transaction with its first write. The session's access
        # mode applies to autocommit statements and to the transaction START TRANSACTION
        # opens; it is changed only when this connection's last transaction had the other
        # mode (a START TRANSACTION READ ONLY per transaction would be a round trip each time).
        if readonly != conn.kgw_readonly:
            conn.query(
                "SET SESSION TRANSACTION READ ONLY"
                if readonly
                else "SET SESSION TRANSACTION READ WRITE"
            )
            conn.kgw_readonly = readonly

    def mark_dead(self, conn) -> None:
        conn.kgw_dead = True

    def is_dead(self, conn) -> bool:
        if conn is None:
            return False
        if getattr(conn, "kgw_dead", False):
            return True
        try:
            return not conn.open or conn.errno() in _MY_CONNECTION_LOST
        except self.driver_error:
            return True

    # The cached function itself (one call per statement, not two).
    translate = staticmethod(qmark_to_pyformat)

    # Engine.adapt_params: MySQLdb's interpolation (and _MySQLCursor's) runs whenever a
    # parameter sequence is given (even an empty one, the ``()`` it returns then), which is
    # what the doubled '%' of translate() expects.

    lower_names = True

    # -- errors ------------------------------------------------------------------------------

    def wrap(self, exc: BaseException, *, stale: bool = False, commit: bool = False):
        MySQLdb = self._mysqldb
        args = getattr(exc, "args", ())
        code = args[0] if args and isinstance(args[0], int) else None
        message = str(args[1]) if len(args) > 1 else str(exc)
        if code is None and isinstance(exc, MySQLdb.IntegrityError):
            return IntegrityError(message)
        # Used after close(): InterfaceError (0, '').
        closed = isinstance(exc, MySQLdb.InterfaceError)
        return self.error(code, message, closed=closed, stale=stale, commit=commit)

    def error(
        self,
        code: int | None,
        message: str,
        *,
        closed: bool = False,
        stale: bool = False,
        commit: bool = False,
    ) -> DatabaseError:
        """The engine's exception for a MariaDB error number and message."""
        if code in _MY_QUOTES_VALUES:
            message = _QUOTED_VALUE.sub("'...'", message)
        state = None if code is None else str(code)
        if code in _MY_SERIALIZATION:
            return SerializationFailure(message, sqlstate=state)
        if code in _MY_INTEGRITY:
            return IntegrityError(message, sqlstate=state)
        if code in _MY_UNAVAILABLE or closed or (code is not None and 2000 <= code < 2100):
            where = self.url.host or self.url.option("unix_socket") or "localhost"
            return Unavailable(
                f"MariaDB/MySQL {where}: {message or 'connection closed'}",
                sqlstate=state,
                outcome_unknown=commit,
                stale=stale,
            )
        return DatabaseError(message, sqlstate=state)

    # -- DDL and inserts ---------------------------------------------------------------------

    def ddl(self, sql: str) -> str:
        """Expand the tokens with Koha's MySQL types.

        ``{text}`` becomes ``VARCHAR(255)`` for a column that is (part of) a primary key, a
        unique key, a key or a foreign key of the same ``CREATE TABLE`` (or ``ALTER TABLE ...
        ADD``), or has a ``DEFAULT``; ``MEDIUMTEXT`` otherwise (MySQL indexes no TEXT column
        without a prefix length, and gives none a default). A column to be indexed by a later
        ``CREATE INDEX`` must therefore be named in a key of its table or not use ``{text}``.
        ``CREATE TABLE`` gets Koha's table options (InnoDB, utf8mb4, utf8mb4_unicode_ci).
        """
        match = _CREATE_TABLE.match(sql)
        if match or _ALTER_ADD.match(sql):
            sql = self._key_text(sql, match.end() if match else None)
        expanded = super().ddl(sql)
        if match and "ENGINE" not in expanded.upper().rsplit(")", 1)[-1]:
            expanded = expanded.rstrip().rstrip(";") + _MYSQL_TABLE_OPTIONS
        return expanded

    def _key_text(self, sql: str, body_start: int | None) -> str:
        if body_start is not None:
            end = sql.rfind(")")
            head, body, tail = sql[:body_start], sql[body_start:end], sql[end:]
        else:
            head, body, tail = "", sql, ""
        items = _split_top_level(body)
        keyed: set[str] = set()
        for item in items:
            clause = _KEY_CLAUSE.match(item)
            if clause:
                keyed.update(
                    c.strip().strip("`").split("(")[0].strip().lower()
                    for c in clause.group(1).split(",")
                )
        out = []
        for item in items:
            if "{text}" in item:
                words = item.replace("ADD COLUMN", "ADD").split()
                name = ""
                if words:
                    name = words[1] if words[0].upper() == "ADD" and len(words) > 1 else words[0]
                if _KEYED_COLUMN.search(item) or name.strip("`").lower() in keyed:
                    item = item.replace("{text}", self.key_text_type)
            out.append(item)
        return head + ",".join(out) + tail

    def last_id(self, txn: Txn, cursor, sql: str, params, pk: str | None):
        if cursor.rowcount <= 0:
            return None
        if cursor.lastrowid:
            return cursor.lastrowid
        # No AUTO_INCREMENT column: the key was given; find it among the inserted values.
        match = _INSERT_COLUMNS.match(sql)
        if pk and match:
            columns = [c.strip().strip("`").lower() for c in match.group(1).split(",")]
            values = [v.strip() for v in match.group(2).split(",")]
            if pk.lower() in columns and all(v == "%s" for v in values):
                return params[columns.index(pk.lower())]
        return None

    def upsert(
        self,
        txn: Txn,
        table: str,
        keys: dict[str, Any],
        values: dict[str, Any],
        inserted: dict[str, Any],
    ) -> int:
        columns = [*keys, *inserted, *values]
        marks = ", ".join("?" for _ in columns)
        params = (*keys.values(), *inserted.values(), *values.values())
        if values:
            update = ", ".join(f"{c} = VALUES({c})" for c in values)
            txn._execute(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks}) "
                f"ON DUPLICATE KEY UPDATE {update}",
                params,
            )
            return 1
        # INSERT IGNORE also turns other errors (a foreign key, bad data) into warnings:
        # anything but the duplicate it is meant to skip is raised as the error it was.
        cursor = txn._execute(
            f"INSERT IGNORE INTO {table} ({', '.join(columns)}) VALUES ({marks})", params
        )
        written = max(cursor.rowcount, 0)
        if txn._conn.warning_count():
            for row in txn.query("SHOW WARNINGS"):
                if int(row["code"]) not in (1062, 1586):
                    raise self.error(int(row["code"]), str(row["message"]))
        return written


# -- the transaction object ------------------------------------------------------------------


class Txn:
    """One transaction, handed to the function given to :meth:`Database.run`.

    SQL uses ``?`` placeholders on every engine. Do not commit or roll back yourself: the
    transaction ends when the function returns (commit) or raises (rollback). Use
    :meth:`savepoint` to undo part of a transaction.

    On PostgreSQL and MariaDB/MySQL (``engine.lazy_begin``) the server transaction is opened
    by the first statement that writes or locks (:func:`needs_transaction`), in the same round
    trip (``BEGIN; <statement>``); reads before it run as autocommit statements, and a
    function that only reads sends neither ``BEGIN`` nor ``COMMIT``. Writes queued with
    :meth:`execute_later` go in the round trip of the next statement, or with the ``COMMIT``.
    ``round_trips`` counts the round trips to the server this transaction made.
    """

    __slots__ = (
        "engine",
        "readonly",
        "round_trips",
        "_conn",
        "_cursor",
        "_savepoints",
        "_open",
        "_later",
        "_later_params",
        "_later_writes",
        "_failed",
    )

    def __init__(self, engine: Engine, conn, readonly: bool = False) -> None:
        self.engine = engine
        self.readonly = readonly
        self._conn = conn
        self._cursor = engine.cursor(conn)
        self.round_trips = 0
        self._savepoints = 0
        # Whether the server transaction is open (SQLite: Database began it already).
        self._open = not engine.lazy_begin
        # Deferred writes (translated SQL) and their parameters, in order.
        self._later: list[str] = []
        self._later_params: list[Any] = []
        # Whether writes are queued (not only SAVEPOINT/RELEASE, which fail only with the
        # connection).
        self._later_writes = False
        # The error of a round trip that carried deferred writes: the transaction is spoilt.
        self._failed: DatabaseError | None = None

    @property
    def for_update(self) -> str:
        """``" FOR UPDATE"`` on PostgreSQL and MySQL, ``""`` on SQLite: append to a locking
        SELECT."""
        return self.engine.for_update

    def _send(self, parts, params) -> None:
        """One round trip: a statement (``str``, driver placeholders) or several (a list, only
        on engines with ``batches``); the cursor holds the result of the last one. Driver
        errors are raised as they are."""
        if type(parts) is str:
            self._cursor.execute(parts, params)
        else:
            self.engine.send(self._cursor, parts, params)
        self.round_trips += 1

    def _execute(self, sql: str, params) -> Any:
        engine = self.engine
        if self._failed is not None:
            raise self._failed
        text = engine.translate(sql)
        params = engine.adapt_params(params)
        carried = self._later
        writes = False
        if self._open and not carried:
            parts: Any = text
        else:
            parts = []
            if not self._open and (carried or needs_transaction(sql)):
                parts.append(engine.begin_sql)
                self._open = True
            if carried:
                parts.extend(carried)
                params = (*self._later_params, *params)
                writes = self._later_writes
                self._later, self._later_params, self._later_writes = [], [], False
            parts.append(text)
            if len(parts) == 1:
                parts = text
        try:
            self._send(parts, params)
        except engine.driver_error as exc:
            raise self._error(exc, writes) from None
        if engine.ddl_commits and _is_ddl(sql):
            # MariaDB commits before and after DDL: the next write opens a new transaction.
            self._open = False
        return self._cursor

    def _error(self, exc: BaseException, carried: bool) -> DatabaseError:
        engine = self.engine
        dead = engine.is_dead(self._conn)
        if dead:
            engine.mark_dead(self._conn)
        error = engine.wrap(exc, stale=dead and self.round_trips == 0)
        if carried:
            # A deferred write may have failed, not the statement the caller sees failing:
            # whatever the caller does with the error, the transaction cannot commit.
            self._failed = error
        return error

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; return the number of rows it changed (-1 when not applicable)."""
        return self._execute(sql, params).rowcount

    def execute_later(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Run a write whose result the caller does not need, in the round trip of the next
        statement of this transaction (before it) or of the ``COMMIT``.

        Same order of writes and same rows as :meth:`execute`; the next statement sees them.
        An error of the write is raised (as the same :class:`DatabaseError` subclass) by that
        next statement, or by the commit, and the transaction then cannot commit, whatever the
        caller does with the error: never use it for a statement whose error the caller
        handles, and call :meth:`flush` before a statement whose error it handles. Executed at
        once on SQLite (no round trip to save). The SQL must not end with a ``--`` comment.
        """
        if not self.engine.batches:
            self._execute(sql, params)
            return
        if self._failed is not None:
            raise self._failed
        engine = self.engine
        self._defer(engine.translate(sql).rstrip().rstrip(";"), engine.adapt_params(params))
        self._later_writes = True

    def _defer(self, text: str, params: Sequence[Any]) -> None:
        self._later.append(text)
        if params:
            self._later_params.extend(params)

    def flush(self) -> None:
        """Send the writes queued by :meth:`execute_later` now (one round trip, none when
        nothing is queued), so that an error the next statement raises is its own: call it
        before a statement whose :class:`IntegrityError` the caller handles."""
        if self._later_writes:
            self._flush()

    def _flush(self) -> None:
        """Open the transaction and send the deferred writes (one round trip), if needed."""
        if self._open and not self._later:
            return
        if self._failed is not None:
            raise self._failed
        parts = [] if self._open else [self.engine.begin_sql]
        self._open = True
        parts.extend(self._later)
        params = tuple(self._later_params)
        writes = self._later_writes
        self._later, self._later_params, self._later_writes = [], [], False
        try:
            self._send(parts[0] if len(parts) == 1 else parts, params)
        except self.engine.driver_error as exc:
            raise self._error(exc, writes) from None

    def executemany(self, sql: str, seq_of_params: Iterable[Sequence[Any]]) -> None:
        """Run one statement for every parameter sequence (batched on PostgreSQL)."""
        engine = self.engine
        rows = [engine.adapt_params(p) for p in seq_of_params]
        if not rows:
            return
        self._flush()
        try:
            engine.execute_batch(self._cursor, engine.translate(sql), rows)
        except engine.driver_error as exc:
            raise self._error(exc, False) from None
        self.round_trips += 1

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """All rows of a query, as dicts keyed by lower-case column name."""
        cursor = self._execute(sql, params)
        if cursor.description is None:
            return []
        names = self.engine.column_names(cursor.description, sql)
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
        return dict(zip(self.engine.column_names(cursor.description, sql), row))

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
        elif isinstance(engine, MySQLEngine):
            cursor = self._execute(sql, params)
            return engine.last_id(self, cursor, engine.translate(sql), params, pk)
        cursor = self._execute(sql, params)
        try:
            return engine.last_id(self, cursor, sql, params, pk)
        except engine.driver_error as exc:
            raise engine.wrap(exc) from None

    def upsert(
        self,
        table: str,
        keys: dict[str, Any],
        values: dict[str, Any],
        *,
        inserted: dict[str, Any] | None = None,
    ) -> int:
        """Insert a row, or update ``values`` of the row with the same ``keys`` (a unique key).

        ``INSERT ... ON CONFLICT (keys) DO UPDATE`` on SQLite and PostgreSQL (``DO NOTHING`` when
        ``values`` is empty), ``INSERT ... ON DUPLICATE KEY UPDATE`` on MariaDB/MySQL (where any
        unique key of the table counts, not only ``keys``; ``INSERT IGNORE`` when ``values`` is
        empty). ``inserted`` gives columns written only when the row is inserted, never
        updated. Returns the number of rows written (1, or 0 when ``values`` is empty and the
        row existed). A row that exists is not an error, so queued :meth:`execute_later`
        writes may travel with this statement (no :meth:`flush` needed before it).
        """
        inserted = inserted or {}
        columns = [*keys, *inserted, *values]
        for name in [table, *columns]:
            if not _IDENT.match(name):
                raise ValueError(f"bad SQL identifier {name!r}")
        if not keys:
            raise ValueError("upsert needs at least one key column")
        engine = self.engine
        if isinstance(engine, MySQLEngine):
            return engine.upsert(self, table, keys, values, inserted)
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
        return self.execute(sql, (*keys.values(), *inserted.values(), *values.values()))

    @contextmanager
    def savepoint(self):
        """Undo only the statements of the ``with`` block when it raises (then re-raise).

        Needed on PostgreSQL to go on after an error inside a transaction, for example after an
        :class:`IntegrityError` that the caller handles. On PostgreSQL and MariaDB/MySQL the
        ``SAVEPOINT`` and the ``RELEASE`` travel with the next statement, like deferred
        writes; a block that sent nothing costs no round trip.
        """
        self._savepoints += 1
        name = f"kgw_sp_{self._savepoints}"
        if not self.engine.batches:
            self.execute(f"SAVEPOINT {name}")
            try:
                yield self
            except BaseException:
                self._undo_block(name)
                raise
            self.execute(f"RELEASE SAVEPOINT {name}")
            return
        # SAVEPOINT and RELEASE are queued like deferred writes: they travel with the next
        # statement (nothing of the block runs before the SAVEPOINT, nothing after the block
        # before the RELEASE). A savepoint that nothing was sent after is never sent at all.
        queue, mark, params_mark = self._later, len(self._later), len(self._later_params)
        writes_before = self._later_writes
        self._defer(f"SAVEPOINT {name}", ())
        try:
            yield self
        except BaseException:
            if self._later is queue:  # nothing sent since: forget the block
                del queue[mark:]
                del self._later_params[params_mark:]
                self._later_writes = writes_before
            else:
                self._undo_block(name)
            raise
        if self._later is queue:
            del queue[mark]  # the block's writes are still queued, after what came before
        else:
            self._defer(f"RELEASE SAVEPOINT {name}", ())

    def _undo_block(self, name: str) -> None:
        # Writes queued since the last statement (within the block) are undone anyway.
        self._later, self._later_params = [], []
        self._later_writes = False
        try:
            self.execute(f"ROLLBACK TO SAVEPOINT {name}")
            self.execute(f"RELEASE SAVEPOINT {name}")
        except DatabaseError:
            pass  # the connection is gone; the original error is the one to report

    def close(self) -> None:
        try:
            self._cursor.close()
        except Exception:  # noqa: BLE001 - closing a cursor of a dead connection
            pass

    # -- the end of the transaction (Database only) -------------------------------------------

    def _commit(self) -> None:
        """Commit (closing the cursor): on the engines with ``lazy_begin`` only when a
        transaction was opened or writes are still queued, the queued writes and ``COMMIT`` in
        one round trip. Raises the :class:`DatabaseError` (after rolling back);
        :class:`Unavailable` with ``outcome_unknown`` when the ``COMMIT`` may have been
        applied."""
        engine = self.engine
        if self._failed is not None:
            self._rollback()
            raise self._failed
        if not engine.lazy_begin:
            self.close()
            try:
                self._conn.commit()
            except engine.driver_error as exc:
                self._rollback()
                raise engine.wrap(exc, commit=True) from None
            return
        if not self._open and not self._later:
            self.close()
            return
        parts = [] if self._open else [engine.begin_sql]
        self._open = True
        parts.extend(self._later)
        parts.append("COMMIT")
        params = tuple(self._later_params)
        self._later, self._later_params, self._later_writes = [], [], False
        try:
            self._send(parts[0] if len(parts) == 1 else parts, params)
        except engine.driver_error as exc:
            conn = self._conn
            # A queued write failed (the server says the transaction is aborted): the COMMIT
            # did not run. Otherwise the COMMIT may have been applied.
            unknown = engine.is_dead(conn) or not engine.in_failed_transaction(conn)
            self._rollback()
            raise engine.wrap(exc, commit=unknown) from None
        self._open = False
        self.close()

    def _rollback(self) -> None:
        """Roll back whatever was opened, drop the queued writes, close the cursor. Never
        raises a driver error (a dead connection cannot roll back; the server discards the
        transaction)."""
        engine = self.engine
        self._later, self._later_params, self._later_writes = [], [], False
        if not engine.lazy_begin:
            self.close()
            try:
                self._conn.rollback()
            except engine.driver_error:
                pass
            return
        if self._open:
            self._open = False
            try:
                if engine.in_transaction(self._conn):
                    self._send("ROLLBACK", ())
            except engine.driver_error:
                pass
        self.close()


# -- the pool --------------------------------------------------------------------------------


class _Worker:
    """One database thread; ``wake`` is held while the thread sleeps and released to wake it."""

    __slots__ = ("thread", "wake")

    def __init__(self) -> None:
        self.thread: threading.Thread | None = None
        self.wake = threading.Lock()
        self.wake.acquire()


class _Pool:
    """The threads that run transactions, and their connections (one per thread).

    Work is a FIFO queue shared by up to ``size`` threads, started on demand. A request wakes
    the thread that went idle *last* (its connection is the warmest: SQLite's page cache, the
    server's session), and a busy thread takes the next request from the queue without
    sleeping. Results go back to the reactor in batches: a finished transaction wakes the
    reactor (``callFromThread``, a write to its waker pipe) only when no wake-up is already
    pending, and the reactor then fires every Deferred that is ready. At one request at a time
    this is one thread switch each way, as before; under load it saves most of the wake-ups
    (``docs/architecture.md``, "The database threads", has the figures).

    Connections are keyed by thread: the pool's threads and any thread that calls
    ``Database.run_blocking`` each have their own.
    """

    def __init__(self, engine: Engine, size: int, reactor, name: str) -> None:
        from twisted.python.reflect import namedModule

        self._dbapi = namedModule(engine.dbapi_name)
        self._connect_args = engine.connect_args()
        self._on_connect = engine.on_connect
        self._driver_error = engine.driver_error
        self._reactor = reactor
        self._name = name
        self.size = size
        self.connections: dict[int, Any] = {}
        self._lock = threading.Lock()
        self._jobs: collections.deque = collections.deque()
        self._idle: list[_Worker] = []
        self._workers: list[_Worker] = []
        self._stopping = False
        self._done: collections.deque = collections.deque()
        self._wake_pending = False
        self._shutdown_trigger = None

    # -- connections (called in the thread that uses them) -----------------------------------

    def connect(self):
        ident = threading.get_ident()
        conn = self.connections.get(ident)
        if conn is None:
            args, kwargs = self._connect_args
            conn = self._dbapi.connect(*args, **kwargs)
            self._on_connect(conn)
            self.connections[ident] = conn
        return conn

    def disconnect(self, conn) -> None:
        """Close ``conn``; forget it when it is the calling thread's connection."""
        ident = threading.get_ident()
        if self.connections.get(ident) is conn:
            del self.connections[ident]
        try:
            conn.close()
        except self._driver_error:
            pass

    def close_all(self) -> None:
        for ident, conn in list(self.connections.items()):
            self.connections.pop(ident, None)
            try:
                conn.close()
            except self._driver_error:
                pass

    # -- work --------------------------------------------------------------------------------

    def submit(self, fn: Callable[..., Any], args: tuple):
        """Run ``fn(*args)`` in a pool thread; a Deferred fires with the result (reactor thread)."""
        from twisted.internet import defer

        d = defer.Deferred()
        with self._lock:
            if self._stopping:
                raise DatabaseError("the database pool is closed")
            self._jobs.append((d, fn, args))
            worker = self._idle.pop() if self._idle else None
            if worker is None and len(self._workers) < self.size:
                worker = _Worker()
                self._workers.append(worker)
                worker.thread = threading.Thread(
                    target=self._work,
                    args=(worker,),
                    name=f"{self._name}-{len(self._workers)}",
                    daemon=True,
                )
                start = True
            else:
                start = False
        if worker is not None:
            if start:
                if self._shutdown_trigger is None:
                    self._shutdown_trigger = self._reactor.addSystemEventTrigger(
                        "during", "shutdown", self.stop
                    )
                worker.thread.start()
            else:
                worker.wake.release()
        return d

    def _work(self, worker: _Worker) -> None:
        from twisted.python.failure import Failure

        jobs, lock = self._jobs, self._lock
        try:
            while True:
                with lock:
                    if jobs:
                        job = jobs.popleft()
                    elif self._stopping:
                        return
                    else:
                        job = None
                        self._idle.append(worker)
                if job is None:
                    worker.wake.acquire()
                    continue
                d, fn, args = job
                try:
                    outcome = (True, fn(*args))
                except BaseException:
                    outcome = (False, Failure())
                self._done.append((d, outcome))
                del d, fn, args, job, outcome
                with lock:
                    if self._wake_pending:
                        continue
                    self._wake_pending = True
                self._reactor.callFromThread(self._deliver)
        finally:
            conn = self.connections.pop(threading.get_ident(), None)
            if conn is not None:
                try:
                    conn.close()
                except self._driver_error:
                    pass

    def _deliver(self) -> None:
        """Reactor thread: fire the Deferreds of every finished transaction."""
        with self._lock:
            self._wake_pending = False
        done = self._done
        while done:
            d, (ok, value) = done.popleft()
            if ok:
                d.callback(value)
            else:
                d.errback(value)

    def stop(self) -> None:
        """Let the threads finish the queued work, then end them (they close their
        connections). Idempotent."""
        with self._lock:
            self._stopping = True
            idle, self._idle = self._idle, []
            workers = list(self._workers)
        if self._shutdown_trigger is not None:
            try:
                self._reactor.removeSystemEventTrigger(self._shutdown_trigger)
            except (ValueError, KeyError):
                pass  # running as that trigger
            self._shutdown_trigger = None
        for worker in idle:
            worker.wake.release()
        current = threading.current_thread()
        for worker in workers:
            if worker.thread is not current and worker.thread.ident is not None:
                worker.thread.join()
        self._deliver()

    @property
    def stopped(self) -> bool:
        return self._stopping


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
        if reactor is None:
            from twisted.internet import reactor
        self._reactor = reactor
        self._pool = _Pool(engine, max_connections, reactor, f"koha-gateway-db-{engine.name}")
        # Inline reads (SQLite only, see run()): the connection, the thread it belongs to, and
        # how many transactions ran inline and how many fell back to the pool, by reason
        # (INLINE_FALLBACK_REASONS). Counted on the thread that calls run() (the reactor's),
        # as plain integers; read by the metrics at scrape time, on the same thread.
        self._inline_on = bool(getattr(engine, "inline_reads", False))
        self._inline_not_wal = False  # turned off for good: the database is not in WAL mode
        self._inline_conn: _InlineConnection | None = None
        self._inline_ident: int | None = None
        self.inline_answered = 0
        self.inline_reasons: dict[str, int] = dict.fromkeys(INLINE_FALLBACK_REASONS, 0)
        # run_blocking() before the reactor starts (start-up checks in twistd's main thread)
        # leaves a connection keyed to what becomes the reactor thread, where run_blocking() is
        # refused from then on: close it when the reactor starts.
        self._startup_trigger = reactor.callWhenRunning(self._drop_reactor_thread_connection)

    def _drop_reactor_thread_connection(self) -> None:
        self._startup_trigger = None
        pool = self._pool
        conn = pool.connections.get(threading.get_ident())
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
        """Open a pool for ``sqlite:///abs/path``, ``postgresql://user:pass@host:port/db`` or
        ``mysql://user:pass@host:port/db``.

        No connection is made yet: threads and their connections are started when work needs
        them, up to ``max_connections`` (default 4 on SQLite, 10 on PostgreSQL and
        MariaDB/MySQL); ``min_connections`` is accepted and ignored. ``reactor`` defaults to the
        global reactor.
        Raises :class:`koha_gateway.db.url.InvalidDatabaseURL` (a ``ValueError``).
        """
        parsed = url if isinstance(url, DatabaseURL) else parse_url(url)
        if parsed.engine == "sqlite":
            engine: Engine = SQLiteEngine(parsed)
        elif parsed.engine == "mysql":
            engine = MySQLEngine(parsed)
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
    def inline_reads(self) -> bool:
        """True while ``run(..., inline=True)`` tries transactions on the calling thread (SQLite
        in WAL mode, without ``inline_reads=off``)."""
        return self._inline_on

    @property
    def inline_fallbacks(self) -> int:
        """Transactions asked to run inline that ran on the database threads (every reason)."""
        return sum(self.inline_reasons.values())

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
        inline: bool = False,
        **kw: Any,
    ):
        """Run ``fn(txn, *args, **kw)`` in a pool thread inside one transaction.

        Returns a Deferred firing with ``fn``'s result, or failing with its exception
        (database errors as :class:`DatabaseError` subclasses). ``retry=True`` declares ``fn``
        an idempotent read that may be run a second time after a dropped connection;
        ``readonly=True`` runs it in a read-only transaction. ``inline=True`` says ``fn``
        probably only reads: on SQLite (unless the URL says ``inline_reads=off``) it is
        first tried right here, on the reactor thread (see :meth:`_run_inline`), and the
        Deferred has fired when ``run`` returns; PostgreSQL and MariaDB/MySQL ignore it. These
        keywords are consumed here, every other keyword goes to ``fn``.
        """
        from twisted.internet import defer

        if self._closed:
            return defer.fail(DatabaseError("the database pool is closed"))
        self._reactor_ident = threading.get_ident()
        if inline:
            if self._inline_on:
                done = self._run_inline(fn, args, kw)
                if done is not None:
                    return done
            elif self._inline_not_wal:
                self.inline_reasons["not_wal"] += 1
        try:
            return self._pool.submit(self._attempt, (fn, args, kw, readonly, retry))
        except DatabaseError as exc:
            return defer.fail(exc)

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
        return self._attempt(fn, args, kw, readonly, retry)

    def _attempt(self, fn, args, kw, readonly: bool, retry: bool) -> Any:
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
                txn._rollback()
                raise
            txn._commit()
            return result
        finally:
            engine.end(conn, readonly)

    def _run_inline(self, fn, args, kw):
        """Try ``fn`` on the reactor thread's own SQLite connection; ``None`` when it must run
        on the pool instead (what it did is rolled back; the pool then runs it as a read-write
        transaction, exactly as without inline reads).

        The connection is opened on first use (never creating the file), refuses writes
        (``PRAGMA query_only``) and never waits for a lock (busy timeout 0): in WAL mode a
        reader does not wait for writers, so a transaction here is as long as its reads.
        It falls back to the pool when a statement meets a lock (``SQLITE_BUSY``,
        ``SQLITE_LOCKED``) or tries to write (``SQLITE_READONLY``; e.g. ``borrowers.lastseen``),
        when ``fn`` raises :class:`WouldWait`, and when the connection cannot be opened (the
        pool's connections may still work). Every transaction is ``BEGIN`` ... ``COMMIT``, so
        that no read transaction stays open between two (it would keep the WAL from being
        checkpointed) and each sees the last committed state. Other errors are reported as
        the pool reports them.
        """
        from twisted.internet import defer
        from twisted.python.failure import Failure

        conn = self._inline_conn
        reasons = self.inline_reasons
        if conn is None:
            if self._inline_ident not in (None, threading.get_ident()):
                reasons["other_thread"] += 1
                return None
            try:
                conn = self.engine.inline_connect()
            except (sqlite3.Error, OSError) as exc:
                reasons[_fall_back_reason(exc) or "cannot_open"] += 1
                return None
            if conn is None:  # not in WAL mode (yet: the pool's connections switch to it)
                if self._pool.connections:
                    self._inline_on = False
                    self._inline_not_wal = True
                    log.info(
                        "SQLite database {path} is not in WAL mode: no inline reads",
                        path=self.engine.path,
                    )
                reasons["not_wal"] += 1
                return None
            self._inline_conn = conn
            self._inline_ident = threading.get_ident()
        elif self._inline_ident != threading.get_ident():
            reasons["other_thread"] += 1
            return None
        elif conn.in_transaction:  # a run() from inside an inline transaction
            reasons["nested"] += 1
            return None
        engine = self.engine
        conn.refused = None
        try:
            conn.execute("BEGIN")
        except sqlite3.Error as exc:
            return self._inline_failed(conn, engine.wrap(exc), _fall_back_reason(exc))
        # Txn's readonly flag stays False: for the code in fn this is the transaction it gets
        # from the pool; only SQLite's query_only makes the difference.
        txn = Txn(engine, conn, False)
        try:
            result = fn(txn, *args, **kw)
        except WouldWait:
            txn.close()
            return self._inline_failed(conn, None, "would_wait")
        except BaseException:
            failure = Failure()
            txn.close()
            return self._inline_failed(conn, failure, conn.refused)
        txn.close()
        if conn.refused:  # fn caught the error of a refused statement and went on
            return self._inline_failed(conn, None, conn.refused)
        try:
            conn.commit()
        except sqlite3.Error as exc:
            return self._inline_failed(conn, engine.wrap(exc), _fall_back_reason(exc))
        self.inline_answered += 1
        self._note(None)
        return defer.succeed(result)

    def _inline_failed(self, conn, error, fall_back: str | None):
        """End the inline transaction (rolled back); ``None`` to fall back to the pool (counted
        under the reason ``fall_back``), else a failed Deferred with ``error`` (a Failure or a
        DatabaseError)."""
        from twisted.internet import defer
        from twisted.python.failure import Failure

        try:
            if conn.in_transaction:
                conn.rollback()
        except sqlite3.Error:
            pass
        if conn.in_transaction:  # never keep a read transaction open: start afresh next time
            self._close_inline()
        if fall_back:
            self.inline_reasons[fall_back] += 1
            return None
        if not isinstance(error, Failure):
            error = Failure(error)
        if error.check(Unavailable):
            self._note(error.value)
        return defer.fail(error)

    def _close_inline(self) -> None:
        conn, self._inline_conn = self._inline_conn, None
        if conn is not None:
            try:
                conn.close()
            except sqlite3.Error:
                pass

    def _rollback(self, conn) -> None:
        try:
            conn.rollback()
        except self.engine.driver_error:
            # A dead connection cannot roll back; the server discards the transaction.
            pass

    def _drop(self, conn) -> None:
        self._pool.disconnect(conn)

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
        """Stop the pool threads (after the work already queued) and close every connection.
        Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._startup_trigger is not None:
            try:
                self._reactor.removeSystemEventTrigger(self._startup_trigger)
            except (ValueError, KeyError):
                pass
            self._startup_trigger = None
        self._close_inline()
        self._pool.stop()
        self._pool.close_all()
