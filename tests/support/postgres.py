"""A throwaway PostgreSQL cluster for the test suite.

``PostgresCluster`` runs ``initdb`` in a fresh temporary directory, starts the server with
``pg_ctl`` on a free port of 127.0.0.1, hands out one new database per test
(:meth:`PostgresCluster.create_database` returns a ``postgresql://`` URL with a password, so the
password path of the engine is exercised), can be stopped and started again (outage tests), and
removes everything when destroyed.

The binaries are looked up in ``$KGW_PG_BIN`` or the newest ``/usr/lib/postgresql/<ver>/bin``
(Debian package ``postgresql``). PostgreSQL refuses to run as root, so when the tests run as root
every server command runs as the ``postgres`` user and the temporary directory is handed to it.

The server trades durability against a machine crash for speed (``fsync=off``); a stopped or killed
*server process* still loses nothing that was committed, which is what the outage tests check.

Use :func:`shared_cluster` for the one cluster that all tests of a pytest process share, and
:func:`cluster_or_skip` in fixtures: it skips when PostgreSQL cannot start, and fails under
``CI=true``.
"""

from __future__ import annotations

import atexit
import glob
import itertools
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from urllib.parse import quote

__all__ = [
    "PostgresCluster",
    "PostgresUnavailable",
    "cluster_or_skip",
    "find_pg_bin",
    "shared_cluster",
]


_WATCHDOG = """
import ast, os, shutil, subprocess, sys
pg_ctl, data, base, owner = sys.argv[1], sys.argv[2], sys.argv[3], ast.literal_eval(sys.argv[4])
sys.stdin.read()
if os.path.exists(os.path.join(data, "postmaster.pid")):
    kw = {"user": owner[0], "group": owner[1], "extra_groups": []} if owner else {}
    subprocess.run([pg_ctl, "-D", data, "-m", "immediate", "-w", "stop"], cwd=base,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
shutil.rmtree(base, ignore_errors=True)
"""


class PostgresUnavailable(RuntimeError):
    """PostgreSQL binaries are missing or the server could not be started."""


def find_pg_bin() -> str:
    """The directory with ``initdb`` and ``pg_ctl``; raises :class:`PostgresUnavailable`."""
    env = os.environ.get("KGW_PG_BIN")
    candidates = [env] if env else []

    def version(path: str) -> tuple[int, ...]:
        ver = path.rstrip("/").split("/")[-2]
        return tuple(int(p) for p in ver.split(".") if p.isdigit())

    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)
    for directory in candidates:
        if os.path.isfile(os.path.join(directory, "initdb")) and os.path.isfile(
            os.path.join(directory, "pg_ctl")
        ):
            return directory
    raise PostgresUnavailable(
        "PostgreSQL server binaries not found (install the Debian package 'postgresql' "
        "or set KGW_PG_BIN)"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresCluster:
    """One private PostgreSQL server in a temporary directory (see the module docstring)."""

    superuser = "kgw"

    def __init__(self, *, bin_dir: str | None = None) -> None:
        self.bin_dir = bin_dir or find_pg_bin()
        self.password = secrets.token_urlsafe(12) + "%:@/"  # characters that need URL quoting
        self.port: int | None = None
        self.running = False
        self._counter = itertools.count(1)
        self._lock = threading.Lock()
        self._run_as = None
        if os.geteuid() == 0:
            try:
                self._run_as = pwd.getpwnam("postgres")
            except KeyError as exc:
                raise PostgresUnavailable("running as root and no 'postgres' user") from exc
        self.base = tempfile.mkdtemp(prefix="kgw-pg-", dir=self._temp_parent())
        self.data = os.path.join(self.base, "data")
        self.log_path = os.path.join(self.base, "server.log")
        if self._run_as is not None:
            os.chown(self.base, self._run_as.pw_uid, self._run_as.pw_gid)
        self._initdb()
        self._watchdog = self._start_watchdog()

    def _temp_parent(self) -> str | None:
        """The system temporary directory, or /tmp when the server user could not reach it."""
        if self._run_as is None:
            return None
        path = os.path.realpath(tempfile.gettempdir())
        while True:
            if not os.stat(path).st_mode & 0o001:  # others may not traverse it
                return "/tmp"
            parent = os.path.dirname(path)
            if parent == path:
                return None
            path = parent

    # -- process helpers ---------------------------------------------------------------------

    def _run(self, *argv: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
        kwargs = {}
        if self._run_as is not None:
            kwargs = {
                "user": self._run_as.pw_uid,
                "group": self._run_as.pw_gid,
                "extra_groups": [],
            }
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        return subprocess.run(
            [os.path.join(self.bin_dir, argv[0]), *argv[1:]],
            cwd=self.base,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            **kwargs,
        )

    def _initdb(self) -> None:
        pwfile = os.path.join(self.base, "pwfile")
        with open(pwfile, "w", encoding="utf-8") as fh:
            fh.write(self.password + "\n")
        if self._run_as is not None:
            os.chown(pwfile, self._run_as.pw_uid, self._run_as.pw_gid)
        os.chmod(pwfile, 0o600)
        proc = self._run(
            "initdb",
            "-D",
            self.data,
            "-U",
            self.superuser,
            "--pwfile",
            pwfile,
            "--auth-host=scram-sha-256",
            "--auth-local=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )
        os.unlink(pwfile)
        if proc.returncode != 0:
            self.destroy()
            raise PostgresUnavailable(f"initdb failed: {proc.stderr.strip() or proc.stdout}")

    def start(self) -> None:
        """Start (or restart after :meth:`stop`) the server; the port stays the same."""
        if self.running:
            return
        attempts = 3 if self.port is None else 1
        last_error = ""
        for _ in range(attempts):
            port = self.port or _free_port()
            options = (
                f"-c listen_addresses=127.0.0.1 -c port={port} -k {self.base} "
                "-c fsync=off -c full_page_writes=off -c max_connections=200 "
                "-c shared_buffers=16MB"
            )
            proc = self._run(
                "pg_ctl", "-D", self.data, "-l", self.log_path, "-w", "-t", "60",
                "-o", options, "start",
            )  # fmt: skip
            if proc.returncode == 0:
                self.port = port
                self.running = True
                return
            last_error = proc.stderr.strip() or proc.stdout.strip()
        raise PostgresUnavailable(f"pg_ctl start failed: {last_error}\n{self.server_log()}")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: disconnect clients; ``immediate``: like a crash)."""
        if not self.running:
            return
        proc = self._run("pg_ctl", "-D", self.data, "-m", mode, "-w", "-t", "60", "stop")
        self.running = False
        if proc.returncode != 0:
            raise PostgresUnavailable(f"pg_ctl stop failed: {proc.stderr.strip()}")

    def server_log(self) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as fh:
                return fh.read()[-4000:]
        except OSError:
            return ""

    def _start_watchdog(self) -> subprocess.Popen:
        """A helper process that removes the cluster if this process dies without cleaning up.

        It waits for end-of-file on a pipe that only this process holds open; a killed test run
        (SIGKILL, an OOM kill, a CI timeout) closes it, and the watchdog stops the server and
        deletes the directory. After a normal :meth:`destroy` it finds nothing left to do.
        """
        pg_ctl = os.path.join(self.bin_dir, "pg_ctl")
        owner = (self._run_as.pw_uid, self._run_as.pw_gid) if self._run_as else None
        return subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, pg_ctl, self.data, self.base, repr(owner)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def destroy(self) -> None:
        """Stop the server and remove the temporary directory. Safe to call twice."""
        if self.running:
            try:
                self.stop("immediate")
            except (PostgresUnavailable, subprocess.SubprocessError, OSError):
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

    def __enter__(self) -> PostgresCluster:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.destroy()

    # -- databases ---------------------------------------------------------------------------

    def url(self, dbname: str = "postgres") -> str:
        """A ``postgresql://`` URL for ``dbname`` as the superuser, password URL-quoted."""
        return (
            f"postgresql://{self.superuser}:{quote(self.password, safe='')}"
            f"@127.0.0.1:{self.port}/{dbname}"
        )

    def _admin(self, *statements: str) -> None:
        import psycopg2

        conn = psycopg2.connect(
            host="127.0.0.1",
            port=self.port,
            user=self.superuser,
            password=self.password,
            dbname="postgres",
            connect_timeout=10,
        )
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                for statement in statements:
                    cur.execute(statement)
        finally:
            conn.close()

    def create_database(self, name: str | None = None, *, template: str | None = None) -> str:
        """Create an empty database (optionally a copy of ``template``); return its URL."""
        if not self.running:
            raise PostgresUnavailable("the cluster is not running")
        with self._lock:
            if name is None:
                name = f"kgw_test_{os.getpid()}_{next(self._counter)}"
            clause = f' TEMPLATE "{template}"' if template else ""
            self._admin(f'CREATE DATABASE "{name}"{clause}')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, disconnecting its remaining sessions first."""
        self._admin(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{name}' AND pid <> pg_backend_pid()",
            f'DROP DATABASE IF EXISTS "{name}"',
        )


_shared: PostgresCluster | None = None
_shared_error: str | None = None
_shared_lock = threading.Lock()


def shared_cluster() -> PostgresCluster:
    """The cluster shared by every test of this process, started on first use.

    Removed when the process exits. Raises :class:`PostgresUnavailable` (every time) when it
    cannot start. Tests that stop the server must use their own :class:`PostgresCluster`.
    """
    global _shared, _shared_error
    with _shared_lock:
        if _shared is not None:
            return _shared
        if _shared_error is not None:
            raise PostgresUnavailable(_shared_error)
        try:
            cluster = PostgresCluster()
        except (PostgresUnavailable, OSError, subprocess.SubprocessError) as exc:
            _shared_error = str(exc)
            raise PostgresUnavailable(_shared_error) from exc
        atexit.register(cluster.destroy)
        try:
            cluster.start()
        except (PostgresUnavailable, OSError, subprocess.SubprocessError) as exc:
            _shared_error = str(exc)
            cluster.destroy()
            raise PostgresUnavailable(_shared_error) from exc
        _shared = cluster
        return cluster


def cluster_or_skip() -> PostgresCluster:
    """:func:`shared_cluster`, or skip the test (fail it under ``CI=true``)."""
    from tests.support import server_unavailable

    try:
        return shared_cluster()
    except PostgresUnavailable as exc:
        server_unavailable(f"PostgreSQL: {exc}")
        raise  # not reached: server_unavailable always raises
