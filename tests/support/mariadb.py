"""A throwaway MariaDB server holding Koha's real schema, for the test suite.

:class:`MariaDBServer` builds the server with ``../shared/koha/load.sh`` (Koha's
``kohastructure.sql`` and mandatory data, loaded as Koha's installer does, into the database
``koha_template``), in a fresh temporary directory (on ``/dev/shm`` when there is one: DDL on
tmpfs is several times faster), on a free port of 127.0.0.1 and a Unix socket. It then restarts
the server once with settings that trade durability against a machine crash for speed
(``innodb_flush_log_at_trx_commit=2``: a commit reaches the operating system at once, so a
killed *server process* loses nothing acknowledged; no doublewrite buffer; tables in the system
tablespace so that creating one creates no file).

Databases
    :meth:`MariaDBServer.create_database` makes an empty database, or with
    ``template=KOHA_TEMPLATE`` a copy of Koha's: MariaDB has no ``CREATE DATABASE ...
    TEMPLATE``, so the template's ``SHOW CREATE TABLE`` statements (foreign keys and
    ``AUTO_INCREMENT`` counters included) are read once and replayed in one multi-statement
    round trip, then the tables that hold rows (system preferences, permissions, account types,
    ...) are copied with ``INSERT ... SELECT``. About 0.2 s for Koha's 249 tables on this machine
    (0.5 s without the restart's settings). It returns a ``mysql://`` URL over TCP with a
    password that needs URL quoting, so the engine's URL handling is exercised;
    :meth:`MariaDBServer.socket_url` gives the same database over the Unix socket.
    :meth:`MariaDBServer.drop_database` drops it.

Outages
    :meth:`MariaDBServer.stop` (``fast``: shut down; ``immediate``: SIGKILL, like a crash) and
    :meth:`MariaDBServer.start` again, on the same port and socket.

Clean-up
    :meth:`MariaDBServer.destroy` stops the server and removes the directory; a watchdog process
    does the same if the test process dies without cleaning up, so no ``mariadbd`` is left
    running. Under ``CI=true`` a server that cannot start fails the test
    (:func:`server_or_skip`); elsewhere the test is skipped.

Use :func:`shared_server` for the one server that all tests of a pytest process share (never
stop it), and a private :class:`MariaDBServer` for outage tests.
"""

from __future__ import annotations

import atexit
import itertools
import os
import pathlib
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from urllib.parse import quote

__all__ = [
    "KOHA_TEMPLATE",
    "LOAD_SH",
    "MariaDBServer",
    "MariaDBUnavailable",
    "server_or_skip",
    "shared_server",
]

ROOT = pathlib.Path(__file__).resolve().parents[2]
LOAD_SH = ROOT.parent / "shared" / "koha" / "load.sh"
KOHA_TEMPLATE = "koha_template"

# Restart settings (see the module docstring); the rest of the command line is load.sh's.
_FAST_OPTIONS = (
    "--innodb-flush-log-at-trx-commit=2",
    "--innodb-doublewrite=0",
    "--innodb-file-per-table=0",
    "--sync-frm=0",
    "--max-connections=300",
)

_WATCHDOG = """
import os, shutil, signal, sys, time
pidfile, base = sys.argv[1], sys.argv[2]
sys.stdin.read()
try:
    pid = int(open(pidfile).read().strip())
    cmdline = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace")
    if "--datadir=" + base in cmdline:
        os.kill(pid, signal.SIGKILL)
        for _ in range(100):
            if not os.path.exists(f"/proc/{pid}"):
                break
            time.sleep(0.05)
except (OSError, ValueError):
    pass
shutil.rmtree(base, ignore_errors=True)
"""


class MariaDBUnavailable(RuntimeError):
    """MariaDB is not installed here, or the server could not be started."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _temp_parent() -> str | None:
    shm = "/dev/shm"
    if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK):
        try:
            if shutil.disk_usage(shm).free > 1 << 30:
                return shm
        except OSError:
            pass
    return None


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MYSQL", "MARIADB"))}
    env["PATH"] = env.get("PATH", "/usr/bin:/bin") + ":/usr/sbin:/sbin"
    env["LC_ALL"] = "C"
    return env


class MariaDBServer:
    """One private MariaDB server with Koha's schema (see the module docstring)."""

    user = "kgw"

    def __init__(self) -> None:
        if not LOAD_SH.is_file():
            raise MariaDBUnavailable(f"{LOAD_SH} is missing (the shared Koha fixtures)")
        if not any(shutil.which(b, path=_env()["PATH"]) for b in ("mariadbd", "mysqld")):
            raise MariaDBUnavailable("mariadbd not found (Debian package: mariadb-server)")
        try:
            import MySQLdb  # noqa: F401
        except ImportError as exc:
            raise MariaDBUnavailable(f"mysqlclient is not installed: {exc}") from exc
        self.password = secrets.token_urlsafe(12) + "%:@/"  # characters that need URL quoting
        self.base = tempfile.mkdtemp(prefix="kgw-my-", dir=_temp_parent())
        self.datadir = os.path.join(self.base, "data")
        self.socket = os.path.join(self.base, "mysqld.sock")
        self.port: int | None = None
        self.running = False
        self.startup_seconds: float | None = None
        self._argv: list[str] | None = None
        self._process: subprocess.Popen | None = None
        self._counter = itertools.count(1)
        self._lock = threading.RLock()
        self._admin_conn = None
        self._templates: dict[str, str] = {}
        self._watchdog = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, os.path.join(self.datadir, "server.pid"), self.base],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    # -- the server process ------------------------------------------------------------------

    def start(self) -> None:
        """Build and start the server on first call; start it again after :meth:`stop`."""
        with self._lock:
            if self.running:
                return
            started = time.monotonic()
            if self._argv is None:
                self._load()
            self._spawn()
            self.running = True
            if self.startup_seconds is None:
                self._setup_users()
                self.startup_seconds = time.monotonic() - started

    def _load(self) -> None:
        last = ""
        for _ in range(3):  # a free port may be taken meanwhile
            self.port = _free_port()
            shutil.rmtree(self.datadir, ignore_errors=True)
            proc = subprocess.run(
                ["bash", str(LOAD_SH), self.datadir, self.socket, KOHA_TEMPLATE, str(self.port)],
                cwd=self.base,
                env=_env(),
                capture_output=True,
                text=True,
                timeout=180,
                check=False,
            )
            pid = self._recorded_pid()
            if proc.returncode == 0 and pid is not None:
                break
            last = (proc.stderr or proc.stdout).strip()[-3000:]
            self._kill(pid, signal.SIGKILL)
        else:
            raise MariaDBUnavailable(f"load.sh failed: {last}")
        # Take over load.sh's server: same command line plus the speed settings.
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            argv = [a.decode() for a in fh.read().split(b"\0") if a]
        self._kill(pid, signal.SIGTERM)
        self._argv = [*argv, *_FAST_OPTIONS]

    def _spawn(self) -> None:
        log = open(os.path.join(self.base, "mariadbd.out"), "ab")  # noqa: SIM115
        try:
            self._process = subprocess.Popen(
                self._argv,
                cwd=self.base,
                env=_env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        finally:
            log.close()
        with open(os.path.join(self.datadir, "server.pid"), "w") as fh:
            fh.write(f"{self._process.pid}\n")
        deadline = time.monotonic() + 60
        import MySQLdb

        while True:
            try:
                MySQLdb.connect(unix_socket=self.socket, user="root", connect_timeout=2).close()
                return
            except MySQLdb.Error:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    raise MariaDBUnavailable(
                        f"mariadbd did not start:\n{self.server_log()}"
                    ) from None
                time.sleep(0.05)

    def _recorded_pid(self) -> int | None:
        try:
            with open(os.path.join(self.datadir, "server.pid")) as fh:
                return int(fh.read().strip())
        except (OSError, ValueError):
            return None

    def _kill(self, pid: int | None, sig: int, timeout: float = 60.0) -> None:
        if pid is None:
            return
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                if f"--datadir={self.datadir}".encode() not in fh.read():
                    return  # not our server (the pid was reused)
            os.kill(pid, sig)
        except OSError:
            return
        process = self._process if self._process and self._process.pid == pid else None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process is not None:
                if process.poll() is not None:
                    return
            elif not os.path.exists(f"/proc/{pid}"):
                return
            time.sleep(0.02)
        os.kill(pid, signal.SIGKILL)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: ``fast`` shuts it down, ``immediate`` kills it (like a crash)."""
        with self._lock:
            if not self.running:
                return
            self._close_admin()
            sig = signal.SIGKILL if mode == "immediate" else signal.SIGTERM
            self._kill(self._process.pid if self._process else None, sig)
            self.running = False

    def server_log(self) -> str:
        try:
            with open(os.path.join(self.datadir, "mariadbd.err"), errors="replace") as fh:
                return fh.read()[-4000:]
        except OSError:
            return ""

    def destroy(self) -> None:
        """Stop the server and remove the temporary directory. Safe to call twice."""
        with self._lock:
            try:
                self.stop("immediate")
            except OSError:
                pass
            shutil.rmtree(self.base, ignore_errors=True)
            watchdog = getattr(self, "_watchdog", None)
            if watchdog is not None:
                watchdog.stdin.close()
                try:
                    watchdog.wait(30)
                except subprocess.TimeoutExpired:
                    watchdog.kill()
                self._watchdog = None

    def __enter__(self) -> MariaDBServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.destroy()

    # -- administration ----------------------------------------------------------------------

    def _admin(self):
        import MySQLdb
        from MySQLdb.constants import CLIENT

        if self._admin_conn is None:
            self._admin_conn = MySQLdb.connect(
                unix_socket=self.socket,
                user="root",
                charset="utf8mb4",
                autocommit=True,
                client_flag=CLIENT.MULTI_STATEMENTS,
                connect_timeout=10,
            )
        return self._admin_conn

    def _close_admin(self) -> None:
        if self._admin_conn is not None:
            try:
                self._admin_conn.close()
            except Exception:  # noqa: BLE001 - the server is going away
                pass
            self._admin_conn = None

    def execute(self, sql: str, params=None) -> list[tuple]:
        """Run statements as root (several, separated by ``;``); the last one's rows."""
        import MySQLdb

        with self._lock:
            if not self.running:
                raise MariaDBUnavailable("the server is not running")
            for attempt in (1, 2):
                try:
                    cursor = self._admin().cursor()
                    cursor.execute(sql, params)
                    rows = list(cursor.fetchall())
                    while cursor.nextset():
                        rows = list(cursor.fetchall() or ())
                    cursor.close()
                    return rows
                except MySQLdb.OperationalError as exc:
                    # A restart since the last call: connect afresh, once.
                    if attempt == 2 or exc.args[0] not in (2006, 2013):
                        raise
                    self._close_admin()
        raise AssertionError("not reached")

    def _setup_users(self) -> None:
        pw = self.password.replace("\\", "\\\\").replace("'", "\\'")
        self.execute(
            f"CREATE USER '{self.user}'@'127.0.0.1' IDENTIFIED BY '{pw}';"
            f"GRANT ALL PRIVILEGES ON *.* TO '{self.user}'@'127.0.0.1';"
            f"CREATE USER '{self.user}'@'localhost' IDENTIFIED BY '{pw}';"
            f"GRANT ALL PRIVILEGES ON *.* TO '{self.user}'@'localhost'"
        )

    # -- databases ---------------------------------------------------------------------------

    def url(self, dbname: str = KOHA_TEMPLATE) -> str:
        """A ``mysql://`` URL for ``dbname`` over TCP, with the password URL-quoted."""
        return f"mysql://{self.user}:{quote(self.password, safe='')}@127.0.0.1:{self.port}/{dbname}"

    def socket_url(self, dbname: str = KOHA_TEMPLATE) -> str:
        """The same database over the Unix socket (``?unix_socket=``)."""
        return (
            f"mysql://{self.user}:{quote(self.password, safe='')}@localhost/{dbname}"
            f"?unix_socket={quote(self.socket, safe='')}"
        )

    def _template_script(self, template: str) -> str:
        script = self._templates.get(template)
        if script is not None:
            return script
        tables = [
            row[0]
            for row in self.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
                "AND table_type = 'BASE TABLE' ORDER BY table_name",
                (template,),
            )
        ]
        statements = ["SET SESSION foreign_key_checks = 0"]
        copies = []
        for table in tables:
            statements.append(self.execute(f"SHOW CREATE TABLE `{template}`.`{table}`")[0][1])
            if self.execute(f"SELECT EXISTS (SELECT 1 FROM `{template}`.`{table}`)")[0][0]:
                copies.append(f"INSERT INTO `{table}` SELECT * FROM `{template}`.`{table}`")
        statements += copies
        statements.append("SET SESSION foreign_key_checks = 1")
        script = ";\n".join(statements)
        self._templates[template] = script
        return script

    def create_database(self, name: str | None = None, *, template: str | None = None) -> str:
        """Create an empty database, or a copy of ``template`` (:data:`KOHA_TEMPLATE`: Koha's
        schema and mandatory data); return its URL."""
        with self._lock:
            if name is None:
                name = f"kgw_test_{os.getpid()}_{next(self._counter)}"
            create = f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
            if template is None:
                self.execute(create)
            else:
                self.execute(f"{create}; USE `{name}`;\n{self._template_script(template)}")
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, ending its remaining sessions first."""
        with self._lock:
            self._templates.pop(name, None)
            if not self.running:
                return
            for (ident,) in self.execute(
                "SELECT id FROM information_schema.processlist WHERE db = %s AND id <> "
                "CONNECTION_ID()",
                (name,),
            ):
                try:
                    self.execute(f"KILL CONNECTION {int(ident)}")
                except Exception:  # noqa: BLE001 - it ended meanwhile
                    pass
            self.execute(f"DROP DATABASE IF EXISTS `{name}`")


_shared: MariaDBServer | None = None
_shared_error: str | None = None
_shared_lock = threading.Lock()


def shared_server() -> MariaDBServer:
    """The server shared by every test of this process, started on first use.

    Removed when the process exits. Raises :class:`MariaDBUnavailable` (every time) when it
    cannot start. Tests that stop the server must use their own :class:`MariaDBServer`.
    """
    global _shared, _shared_error
    with _shared_lock:
        if _shared is not None:
            return _shared
        if _shared_error is not None:
            raise MariaDBUnavailable(_shared_error)
        try:
            server = MariaDBServer()
        except (MariaDBUnavailable, OSError, subprocess.SubprocessError) as exc:
            _shared_error = str(exc)
            raise MariaDBUnavailable(_shared_error) from exc
        atexit.register(server.destroy)
        try:
            server.start()
        except Exception as exc:  # noqa: BLE001 - reported as unavailable
            _shared_error = f"{type(exc).__name__}: {exc}"
            server.destroy()
            raise MariaDBUnavailable(_shared_error) from exc
        _shared = server
        return server


def server_or_skip() -> MariaDBServer:
    """:func:`shared_server`, or skip the test (fail it under ``CI=true``)."""
    from tests.support import server_unavailable

    try:
        return shared_server()
    except MariaDBUnavailable as exc:
        server_unavailable(f"MariaDB: {exc}")
        raise  # not reached: server_unavailable always raises


def private_server_or_skip() -> MariaDBServer:
    """A new, started :class:`MariaDBServer` of the caller's own (for outage tests), or skip
    (fail under ``CI=true``). The caller must :meth:`MariaDBServer.destroy` it."""
    from tests.support import server_unavailable

    try:
        server = MariaDBServer()
    except MariaDBUnavailable as exc:
        server_unavailable(f"MariaDB: {exc}")
        raise
    try:
        server.start()
    except Exception as exc:  # noqa: BLE001 - reported as unavailable
        server.destroy()
        server_unavailable(f"MariaDB: {type(exc).__name__}: {exc}")
    return server
