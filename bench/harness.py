"""What the benchmarks of bench/ share: a database, a gateway process, figures.

* :func:`database` gives a migrated database with the demo data set on SQLite (a file in the
  work directory) or on a throwaway PostgreSQL cluster (``tests/support/postgres.py``);
* :func:`add_kiosks` adds one patron and one item per simulated kiosk;
* :func:`add_accounts` adds SIP accounts (staff patrons with the circulate permission and
  their own bcrypt hash) and returns the ``<login>`` entries for SIPconfig.xml;
* :class:`BenchGateway` is ``tests/gateway.py``'s ``GatewayProcess`` started through
  ``taskset`` (pinned to a core) and ``prlimit`` (a raised open-file limit), with logging at
  ``info`` instead of the tests' ``debug``;
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
    """Yield the URL of a migrated database with the demo data set on ``engine``.

    ``mysql`` is a throwaway MariaDB server (``tests/support/mariadb.py``) holding Koha's own
    schema and mandatory data, with the demo data set on top."""
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


def add_kiosks(url: str, count: int) -> None:
    """One patron (:func:`kiosk_patron`) and one available item (:func:`kiosk_item`) each."""
    today = datetime.now().date()

    def add(txn):
        for n in range(count):
            txn.execute(
                "INSERT INTO borrowers (cardnumber, userid, surname, firstname, branchcode, "
                "categorycode, dateenrolled, dateexpiry) VALUES (?, ?, ?, ?, 'WEL', 'PT', ?, ?)",
                (kiosk_patron(n), f"kiosk{n}", "Kiosk", f"Patron {n}", today, today + _YEAR),
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


def add_accounts(url: str, count: int) -> list[tuple[str, str]]:
    """``count`` SIP accounts ``sc0000`` ... with passwords ``pw-sc0000`` ...; each has its own
    bcrypt hash (Koha's cost), so that no two logins can share a bcrypt computation."""
    today = datetime.now().date()
    accounts = [(f"sc{n:04d}", f"pw-sc{n:04d}") for n in range(count)]
    hashes = [hash_password(password) for _, password in accounts]

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
        """User + system CPU time the gateway has used so far: the master process and, with
        ``--workers``, its worker processes (children that exited no longer count)."""
        total = 0
        for pid in [self.pid, *_children(self.pid)]:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    """The child processes of ``pid`` (the worker processes of a ``--workers`` master)."""
    found = []
    try:
        for task in os.scandir(f"/proc/{pid}/task"):
            with open(f"{task.path}/children") as f:
                found += [int(p) for p in f.read().split()]
    except OSError:
        pass
    return found


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
