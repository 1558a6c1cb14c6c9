"""What the benchmarks of bench/ share: a database, a gateway process, the ceiling, figures.

* :func:`database` gives a migrated database with the demo data set on SQLite (a file in the
  work directory), on a throwaway PostgreSQL cluster (``tests/support/postgres.py``) or on a
  throwaway MariaDB server holding Koha's own schema and mandatory data
  (``tests/support/mariadb.py``, engine ``mysql``);
* :func:`add_kiosks` adds one patron (optionally with a password) and one item per simulated
  kiosk;
* :func:`add_accounts` adds SIP accounts (staff patrons with the circulate permission and
  their own bcrypt hash, or one shared password) and returns the ``<login>`` entries for
  SIPconfig.xml;
* :class:`BenchGateway` is ``tests/gateway.py``'s ``GatewayProcess`` started through
  ``taskset`` (pinned to a core) and ``prlimit`` (a raised open-file limit), with logging at
  ``info`` instead of the tests' ``debug`` and the machine's clock (the data is loaded as of
  now);
* :class:`Ceiling` is ``bench/ceiling.py`` (canned SIP2 answers, no database) started the same
  way, the figure every bench prints beside the gateway's;
* :class:`Profiler` samples a running gateway with py-spy (all threads: the reactor, the
  database pool and bcrypt) and sums the samples per function;
* :func:`rss_kib` reads a process's resident set size; :func:`percentile` and
  :func:`raise_nofile` are small helpers.

The load generators of bench/ are single processes (asyncio), never a thread per kiosk.
"""

from __future__ import annotations

import collections
import contextlib
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from koha_gateway import demo  # noqa: E402
from koha_gateway.auth.passwords import hash_password  # noqa: E402
from koha_gateway.db import schema  # noqa: E402
from koha_gateway.db.engine import Database  # noqa: E402
from koha_gateway.db.schema import CIRCULATE  # noqa: E402
from tests.gateway import GatewayProcess  # noqa: E402

ENGINES = ("sqlite", "postgresql", "mysql")


def kiosk_patron(n: int) -> str:
    return f"2352980{n:07d}"


def kiosk_item(n: int) -> str:
    return f"3999980{n:07d}"


@contextlib.contextmanager
def database(engine: str, workdir: Path, postgresql_url: str | None = None):
    """Yield the URL of a migrated database with the demo data set on ``engine`` (sqlite,
    postgresql, or mysql: MariaDB with Koha's schema and mandatory data underneath)."""
    cluster = None
    mariadb = None
    try:
        if engine == "sqlite":
            url = f"sqlite:///{workdir / 'bench.sqlite'}"
        elif engine == "postgresql":
            if postgresql_url:
                url = postgresql_url
            else:
                from tests.support.postgres import PostgresCluster

                cluster = PostgresCluster()
                cluster.start()
                url = cluster.create_database("bench")
        elif engine == "mysql":
            from tests.support.mariadb import KOHA_TEMPLATE, MariaDBServer

            mariadb = MariaDBServer()
            mariadb.start()
            url = mariadb.create_database("bench", template=KOHA_TEMPLATE)
        else:
            raise ValueError(f"unknown engine {engine!r} (sqlite, postgresql or mysql)")
        now = datetime.now().astimezone()
        db = Database.from_url(url)
        try:
            db.run_blocking(schema.migrate)
            db.run_blocking(demo.load, now)
        finally:
            db.close()
        yield url
    finally:
        if cluster is not None:
            cluster.destroy()
        if mariadb is not None:
            mariadb.destroy()


#: The password of the kiosk patrons when :func:`add_kiosks` is asked for one (AD).
KIOSK_PATRON_PASSWORD = "1234"


def add_kiosks(url: str, count: int, *, password: str | None = None) -> None:
    """One patron (:func:`kiosk_patron`) and one available item (:func:`kiosk_item`) each.

    With ``password`` every patron gets it, all with the same bcrypt hash: the gateway's
    authenticator remembers a verified (hash, password) pair, so the whole set costs one bcrypt
    check, not one per kiosk."""
    today = datetime.now().date()
    stored = hash_password(password) if password else None

    def add(txn):
        for n in range(count):
            txn.execute(
                "INSERT INTO borrowers (cardnumber, userid, password, surname, firstname, "
                "branchcode, categorycode, dateenrolled, dateexpiry) "
                "VALUES (?, ?, ?, ?, ?, 'WEL', 'PT', ?, ?)",
                (
                    kiosk_patron(n),
                    f"kiosk{n}",
                    stored,
                    "Kiosk",
                    f"Patron {n}",
                    today,
                    today + _YEAR,
                ),
            )
            demo.add_title_with_item(
                txn,
                title=f"Benchmark title {n}",
                author="Bench, Mark",
                barcode=kiosk_item(n),
                branch="WEL",
                itemtype="BK",
                callnumber="BENCH",
                price=10,
                accessioned=str(today),
            )

    _run(url, add)


_YEAR = timedelta(days=365)


def add_accounts(url: str, count: int, *, password: str | None = None) -> list[tuple[str, str]]:
    """``count`` SIP accounts ``sc0000`` ... with passwords ``pw-sc0000`` ...; each has its own
    bcrypt hash (Koha's cost), so that no two logins can share a bcrypt computation.

    With ``password`` all accounts have that password and one shared hash (one bcrypt check
    for all their logins): distinct terminals for the request journal, cheap to log in."""
    today = datetime.now().date()
    if password is None:
        accounts = [(f"sc{n:04d}", f"pw-sc{n:04d}") for n in range(count)]
        hashes = [hash_password(secret) for _, secret in accounts]
    else:
        accounts = [(f"sc{n:04d}", password) for n in range(count)]
        hashes = [hash_password(password)] * count

    def add(txn):
        for n, ((userid, _), stored) in enumerate(zip(accounts, hashes)):
            txn.execute(
                "INSERT INTO borrowers (cardnumber, userid, password, surname, firstname, "
                "branchcode, categorycode, dateenrolled, dateexpiry, flags) "
                "VALUES (?, ?, ?, 'Self-check', ?, 'WEL', 'S', ?, ?, ?)",
                (f"2352970{n:07d}", userid, stored, userid, today, today + _YEAR, CIRCULATE),
            )

    _run(url, add)
    return accounts


def _run(url: str, fn) -> None:
    db = Database.from_url(url)
    try:
        db.run_blocking(fn)
    finally:
        db.close()


def accounts_customiser(accounts: list[tuple[str, str]]):
    """A ``GatewayProcess`` customiser adding one ``<login>`` per account (institution WEL)."""

    def customise(tree, _process):
        parent = next(e for e in tree.iter("{*}accounts"))
        template = next(e for e in parent.iter("{*}login") if e.get("id") == "joe")
        for userid, password in accounts:
            login = parent.makeelement(template.tag, dict(template.attrib))
            login.set("id", userid)
            login.set("password", password)
            parent.append(login)

    return customise


class BenchGateway(GatewayProcess):
    """A gateway process pinned to ``cpus`` (``taskset -c``) with ``nofile`` open files.

    ``backlog`` is an experiment: the listen queue length the gateway's listeners get instead
    of the one ``koha_gateway.listeners`` chooses (the process starts with that module's
    ``_endpoint`` given another default), to measure what a different setting would change.
    """

    def __init__(
        self,
        workdir: Path,
        url: str,
        *,
        cpus: str | None = "0",
        nofile=65536,
        backlog: int | None = None,
        **kw,
    ):
        extra = list(kw.pop("extra_args", ())) + ["--log-level", "info"]
        kw.setdefault("clock", None)
        super().__init__(workdir, url, extra_args=extra, **kw)
        self.cpus = cpus if cpus and shutil.which("taskset") and (os.cpu_count() or 1) > 1 else None
        # Raising the hard limit needs CAP_SYS_RESOURCE: stay within this process's hard limit.
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        self.nofile = nofile if hard == resource.RLIM_INFINITY else min(nofile, hard)
        self.backlog = backlog

    def command(self) -> list[str]:
        prefix = []
        if self.cpus is not None:
            prefix += ["taskset", "-c", self.cpus]
        if self.nofile and shutil.which("prlimit"):
            prefix += ["prlimit", f"--nofile={self.nofile}:{self.nofile}"]
        command = super().command()
        if self.backlog is not None:
            boot = (
                "import functools, koha_gateway.listeners as listeners; "
                "listeners._endpoint = functools.partial(listeners._endpoint, "
                f"backlog={int(self.backlog)}); "
            )
            command[2] = boot + command[2]
        return prefix + command

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss_kib(self) -> int:
        return rss_kib(self.pid)

    def cpu_seconds(self) -> float:
        """User + system CPU time the gateway has used so far (with its ``--workers``)."""
        return tree_cpu_seconds(self.pid)


class Ceiling:
    """``bench/ceiling.py`` as a child process on a free port of 127.0.0.1, pinned to ``cpus``
    (``taskset -c``) with ``nofile`` open files, like :class:`BenchGateway`."""

    script = Path(__file__).resolve().parent / "ceiling.py"

    def __init__(self, *, cpus: str | None = "0", nofile=65536, terminator: str = "cr"):
        self.cpus = cpus if cpus and shutil.which("taskset") and (os.cpu_count() or 1) > 1 else None
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        self.nofile = nofile if hard == resource.RLIM_INFINITY else min(nofile, hard)
        self.terminator = terminator
        self.process: subprocess.Popen | None = None
        self.port: int | None = None

    def command(self) -> list[str]:
        prefix = []
        if self.cpus is not None:
            prefix += ["taskset", "-c", self.cpus]
        if self.nofile and shutil.which("prlimit"):
            prefix += ["prlimit", f"--nofile={self.nofile}:{self.nofile}"]
        return prefix + [
            sys.executable,
            str(self.script),
            "--port",
            "0",
            "--terminator",
            self.terminator,
        ]

    def start(self, timeout: float = 30.0) -> Ceiling:
        self.process = subprocess.Popen(
            self.command(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
        )
        deadline = time.monotonic() + timeout
        # The first line says where it listens; readline blocks, so bound it with a timer.
        import threading

        timer = threading.Timer(timeout, self.process.kill)
        timer.start()
        try:
            line = self.process.stdout.readline().decode(errors="replace")
        finally:
            timer.cancel()
        if not line.startswith("ceiling listening on ") or time.monotonic() > deadline:
            rest = self.process.stdout.read().decode(errors="replace") if self.alive() else ""
            self.stop()
            raise RuntimeError(f"the ceiling server did not start: {line}{rest}")
        self.port = int(line.rsplit(":", 1)[1])
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu_seconds(self) -> float:
        return tree_cpu_seconds(self.pid)

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self.process.stdout:
            self.process.stdout.close()

    def __enter__(self) -> Ceiling:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (/proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of ``pid`` and of its descendants still running (a ``--workers`` master and
    its workers; ``taskset`` and ``prlimit`` exec the program, so the pid is the program)."""
    total = 0.0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            total += cpu_seconds(current)
        except OSError:
            continue
        for task in _tasks(current):
            try:
                with open(f"/proc/{current}/task/{task}/children") as f:
                    pending += [int(c) for c in f.read().split()]
            except OSError:
                pass
    return total


def _tasks(pid: int) -> list[str]:
    try:
        return os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []


class Profiler:
    """``py-spy record`` of a running process, summed per function.

    py-spy (``pip install py-spy``; on ``$PATH`` or given as ``executable``) samples, without
    stopping the process (``--nonblocking``), whichever thread holds the GIL (``--gil``): the
    reactor thread and the pool threads alike, and only while they run Python code or C code
    that keeps the GIL, which is what one core spends its time on.
    """

    def __init__(self, pid: int, output: Path, executable: str | None = None, rate: int = 250):
        self.output = Path(output)
        exe = executable or shutil.which("py-spy")
        if exe is None:
            raise RuntimeError("py-spy is not installed (pip install py-spy)")
        self._process = subprocess.Popen(
            [exe, "record", "--pid", str(pid), "--rate", str(rate), "--nonblocking", "--gil"]
            + ["--format", "raw", "--output", str(self.output)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def stop(self) -> None:
        """End the recording (SIGINT, as py-spy expects) and wait for the file."""
        import signal

        if self._process.poll() is None:
            self._process.send_signal(signal.SIGINT)
        try:
            self._process.wait(60)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(5)

    def summary(self, top: int = 15) -> str:
        """Own (leaf) samples per function, and inclusive samples per koha_gateway function."""
        own: collections.Counter = collections.Counter()
        inclusive: collections.Counter = collections.Counter()
        total = 0
        if not self.output.exists():
            return "  (no py-spy samples recorded)"
        for line in self.output.read_text(errors="replace").splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            samples = int(count)
            total += samples
            frames = stack.split(";")
            own[_short_frame(frames[-1])] += samples
            for frame in {_short_frame(f) for f in frames if "koha_gateway/" in f}:
                inclusive[frame] += samples
        if not total:
            return "  (no py-spy samples recorded)"
        lines = [f"  {total} samples with the GIL held; own time (the function itself):"]
        lines += [f"    {n * 100 / total:5.1f}%  {f}" for f, n in own.most_common(top)]
        lines.append("  inclusive time of koha_gateway functions (with what they call):")
        lines += [f"    {n * 100 / total:5.1f}%  {f}" for f, n in inclusive.most_common(top)]
        return "\n".join(lines)

    @classmethod
    def from_file(cls, output: Path) -> Profiler:
        """A summary-only profiler over an existing ``--format raw`` recording."""
        profiler = cls.__new__(cls)
        profiler.output = Path(output)
        return profiler


def _short_frame(frame: str) -> str:
    """``function (path/to/file.py:123)`` -> ``function (to/file.py)``: lines merged."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    parts = Path(path).parts
    short = "/".join(parts[-2:]) if parts else path
    return f"{name} ({short})"


def socket_count(pid: int) -> int:
    """How many sockets process ``pid`` has open (its accepted connections and listeners)."""
    count = 0
    for fd in os.scandir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(fd.path).startswith("socket:"):
                count += 1
        except OSError:
            pass
    return count


def listen_overflows() -> int:
    """The kernel's count of connections dropped because an accept queue was full
    (``TcpExt: ListenOverflows``, /proc/net/netstat); -1 when unavailable."""
    try:
        with open("/proc/net/netstat") as f:
            lines = f.read().splitlines()
    except OSError:
        return -1
    for names, values in zip(lines[::2], lines[1::2]):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], values.split()[1:]))
            return int(table.get("ListenOverflows", -1))
    return -1


def rss_kib(pid: int) -> int:
    """Resident set size of ``pid`` in KiB (``VmRSS`` of /proc/<pid>/status)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


def raise_nofile(wanted: int) -> int:
    """Raise this process's open-file limit towards ``wanted``; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def pin_self(cpus: set[int]) -> bool:
    """Run this process on ``cpus`` when the machine has them; whether it was pinned."""
    available = os.sched_getaffinity(0)
    if not cpus <= available or len(available) < 2:
        return False
    os.sched_setaffinity(0, cpus)
    return True


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[int(pct * 10) - 1]


def stamp(at: float | None = None) -> str:
    """A SIP2 transaction date (YYYYMMDDZZZZHHMMSS) for the local time ``at``."""
    return time.strftime("%Y%m%d    %H%M%S", time.localtime(at))
