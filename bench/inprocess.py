#!/usr/bin/env python3
"""Benchmark: the CPU one SIP2 message costs the gateway, measured in one process.

The real protocol adapter (``koha_gateway.protocol.SIPProtocol``), the real session, gateway,
authenticator, ACS and ILS run on a SQLite database with the demo data set; bytes go in with
``dataReceived`` over Twisted's ``StringTransport`` and the answer is read back from it. Logging
is set up as ``twistd`` does it (the ``--logfile`` observer plus ``--sip-log`` and
``--error-log`` at ``--log-level info``), to files in a temporary directory.

Nothing runs in a thread: the database runs each transaction in the calling thread
(``Database.run_blocking``) and the authenticator's bcrypt pool runs its work at once, so the
figure is the CPU of the request path itself, without the hop to a pool thread and back (which
a running gateway pays on top).

The reference data (``koha_gateway.ils.reference``) are kept in memory as ``service.py`` keeps
them (``--reference-max-age``, 10 seconds by default; ``0`` reads them per request as the gateway
does with ``--reference-max-age 0``). The running gateway checks them in the background every
half bound, so that a request seldom pays for the check; here the cache's clock stands still, so
the one check (and load) is made by the warm-up and none falls inside a measured run.

Two modes, each printing CPU microseconds per message (process time, best of ``--repeat``), and
per message kind (the best of the runs for each kind, measured around each message):

* ``sqlite``: every statement runs on SQLite;
* ``replay``: every transaction gets the results its statements had in a recorded round of
  the same mix (each statement answered from a list), so the figure is everything from bytes
  received to bytes sent except the database's own work.

The mix, after one login (93): 63 with AD, 17, 23 with AD, 99, 11, 09 (the checkin returns
the item the checkout lent, so every round leaves the database as it found it). Each 11 and 09
carries a transaction date of its own, as a kiosk's do, so that the request journal meets new
bytes every time (``--same-bytes`` sends the same ones every round, as this script did before:
each then reads the journal's row of the round before and computes its fingerprint twice).

    python bench/inprocess.py [--rounds 2000] [--repeat 5] [--mode both] [--profile FILE]
                              [--reference-max-age 10] [--callgrind-kind 11]

Instruction counts, which a busy machine does not change: ``--callgrind-kind KIND`` sends each
message of that kind of the per-kind runs through ``ctypes`` (``PyEval_CallObjectWithKeywords``
called with libffi's ``ffi_call``, which nothing else in the request path calls), so that callgrind
counts those messages only::

    valgrind --tool=callgrind --collect-atstart=no \\
        --toggle-collect=ffi_call --callgrind-out-file=/tmp/cg.out \\
        .venv/bin/python bench/inprocess.py --mode replay --rounds 100 --repeat 1 \\
        --callgrind-kind 11

The instructions a message of that kind takes are then the total callgrind prints (``Collected``)
divided by ``--rounds`` x ``--repeat`` (the call through ``ctypes`` adds a few hundred).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import ctypes
import os
import pstats
import sys
import tempfile
import time
from collections import deque
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from twisted.internet import defer, task  # noqa: E402
from twisted.logger import globalLogBeginner, globalLogPublisher, textFileLogObserver  # noqa: E402

try:  # Twisted >= 23.8
    from twisted.internet.testing import StringTransport  # noqa: E402
except ImportError:  # Debian bookworm's Twisted 22.4
    from twisted.test.proto_helpers import StringTransport  # noqa: E402

from bench.harness import add_kiosks, kiosk_item, kiosk_patron  # noqa: E402
from koha_gateway import clock as clock_mod  # noqa: E402
from koha_gateway import demo, logs  # noqa: E402
from koha_gateway.auth.authenticator import Authenticator  # noqa: E402
from koha_gateway.auth.passwords import hash_password  # noqa: E402
from koha_gateway.config import load_sip_config  # noqa: E402
from koha_gateway.db import Database, koha, schema  # noqa: E402
from koha_gateway.ils import reference  # noqa: E402
from koha_gateway.ils import sysprefs as sysprefs_mod  # noqa: E402
from koha_gateway.ils.journal import MUTATING  # noqa: E402
from koha_gateway.protocol import SIPFactory  # noqa: E402
from koha_gateway.service import Gateway  # noqa: E402
from tests.gateway import SHIPPED_SIPCONFIG  # noqa: E402

BLANK = " " * 18
STAMP = "%Y%m%d    %H%M%S"
PIN = "1234"


def mix(stamp: str) -> list[tuple[str, bytes, bytes]]:
    """(kind, request line, expected answer prefix) of one round."""
    patron, item = kiosk_patron(0), kiosk_item(0)
    requests = [
        ("63", f"63001{stamp}          AOWEL|AA{patron}|AD{PIN}|", "64"),
        ("17", f"17{stamp}AOWEL|AB{item}|", "18"),
        ("23", f"23001{stamp}AOWEL|AA{patron}|AD{PIN}|AC|", "24"),
        ("99", "9900302.00", "98"),
        ("11", f"11YN{stamp}{BLANK}AOWEL|AA{patron}|AB{item}|AC|", "121"),
        ("09", f"09N{stamp}{stamp}AOWEL|AB{item}|AC|", "101"),
    ]
    return [(kind, (text + "\r").encode(), expect.encode()) for kind, text, expect in requests]


# -- databases that run in the calling thread ---------------------------------------------------


class SyncDatabase:
    """``Database.run`` in the calling thread (a fired Deferred); optionally records each
    transaction's statements and results for :class:`ReplayDatabase`."""

    def __init__(self, db: Database):
        self.db = db
        self.engine = db.engine
        self.url = db.url
        self.available = True
        self.recording: list | None = None

    def run(self, fn, *args, retry=False, readonly=False, inline=False, **kw):
        def body(txn):
            if self.recording is not None:
                transcript: list = []
                self.recording.append(transcript)
                txn = RecordingTxn(txn, transcript)
            return fn(txn, *args, **kw)

        try:
            return defer.succeed(self.db.run_blocking(body, retry=retry, readonly=readonly))
        except Exception:
            return defer.fail()


class ReplayDatabase:
    """Answers each transaction from the next recorded transcript, in recorded order."""

    def __init__(self, engine, url, transcripts: list):
        self.engine = engine
        self.url = url
        self.available = True
        self.transcripts = transcripts
        self.position = 0

    def run(self, fn, *args, retry=False, readonly=False, inline=False, **kw):
        transcript = self.transcripts[self.position]
        self.position = (self.position + 1) % len(self.transcripts)
        try:
            return defer.succeed(fn(ReplayTxn(self.engine, readonly, transcript), *args, **kw))
        except Exception:
            return defer.fail()


_CALLS = (
    "execute",
    "execute_later",
    "executemany",
    "query",
    "one",
    "scalar",
    "insert",
    "upsert",
)


class _Savepoints:
    @contextlib.contextmanager
    def savepoint(self):
        self.execute("SAVEPOINT kgw_sp")
        try:
            yield self
        except BaseException:
            self.execute("ROLLBACK TO SAVEPOINT kgw_sp")
            self.execute("RELEASE SAVEPOINT kgw_sp")
            raise
        else:
            self.execute("RELEASE SAVEPOINT kgw_sp")


class RecordingTxn(_Savepoints):
    def __init__(self, txn, transcript: list):
        self._txn = txn
        self._transcript = transcript
        self.engine = txn.engine
        self.readonly = txn.readonly
        self.for_update = txn.for_update

    def flush(self):
        self._txn.flush()

    def __getattr__(self, name):
        if name not in _CALLS:
            raise AttributeError(f"the benchmark's Txn does not record {name}")
        method = getattr(self._txn, name)

        def call(sql, *args, **kw):
            try:
                result = method(sql, *args, **kw)
            except Exception as exc:
                self._transcript.append((name, sql, exc))
                raise
            self._transcript.append((name, sql, result))
            return result

        return call


class ReplayTxn(_Savepoints):
    def __init__(self, engine, readonly, transcript):
        self.engine = engine
        self.readonly = readonly
        self.for_update = engine.for_update
        self._left = deque(transcript)

    def _next(self, name, sql):
        recorded, recorded_sql, result = self._left.popleft()
        if recorded != name or recorded_sql != sql:
            raise AssertionError(f"replay out of step: {name} {sql!r}, recorded {recorded_sql!r}")
        if isinstance(result, Exception):
            raise result
        if isinstance(result, list):
            return [dict(row) for row in result]
        if isinstance(result, dict):
            return dict(result)
        return result

    def execute(self, sql, params=()):
        return self._next("execute", sql)

    def execute_later(self, sql, params=()):
        return self._next("execute_later", sql)

    def flush(self):
        pass

    def executemany(self, sql, rows):
        return self._next("executemany", sql)

    def query(self, sql, params=()):
        return self._next("query", sql)

    def one(self, sql, params=()):
        return self._next("one", sql)

    def scalar(self, sql, params=()):
        return self._next("scalar", sql)

    def insert(self, sql, params=(), *, pk=None):
        return self._next("insert", sql)

    def upsert(self, table, keys, values, **kw):
        return self._next("upsert", table)


class _InlinePool:
    """A thread pool stand-in that runs the work at once (bcrypt, in the calling thread)."""

    def callInThreadWithCallback(self, on_result, fn, *args, **kw):
        try:
            result = fn(*args, **kw)
        except Exception:
            from twisted.python.failure import Failure

            on_result(False, Failure())
        else:
            on_result(True, result)


class _Reactor(task.Clock):
    def callFromThread(self, fn, *args, **kw):
        fn(*args, **kw)


# -- the run -------------------------------------------------------------------------------------


def prepare(workdir: Path) -> str:
    url = f"sqlite:///{workdir / 'inprocess.sqlite'}"
    # bcrypt at its lowest cost: the figures are of requests whose password checks are cached
    # (as a kiosk's are after its first), and a run under valgrind starts in seconds.
    demo.hash_password = lambda password: hash_password(password, 4)
    now = clock_mod.default().now()
    db = Database.from_url(url)
    try:
        db.run_blocking(schema.migrate)
        db.run_blocking(demo.load, now)
    finally:
        db.close()
    add_kiosks(url, 1)
    stored = hash_password(PIN, 4)
    db = Database.from_url(url)
    try:
        db.run_blocking(
            lambda txn: txn.execute(
                "UPDATE borrowers SET password = ? WHERE cardnumber = ?", (stored, kiosk_patron(0))
            )
        )
    finally:
        db.close()
    return url


def _call_through_c(fn, arg) -> None:
    """``fn(arg)`` called through libffi's ``ffi_call`` (``--callgrind-kind``)."""
    _CALL_WITH_KEYWORDS(fn, (arg,), {})


_CALL_WITH_KEYWORDS = ctypes.pythonapi.PyEval_CallObjectWithKeywords
_CALL_WITH_KEYWORDS.argtypes = (ctypes.py_object, ctypes.py_object, ctypes.py_object)
_CALL_WITH_KEYWORDS.restype = ctypes.py_object


class Bench:
    def __init__(
        self,
        url: str,
        workdir: Path,
        reference_max_age: float = reference.DEFAULT_MAX_AGE,
        same_bytes: bool = False,
    ):
        self.real = Database.from_url(url)
        self.sync = SyncDatabase(self.real)
        self.reactor = _Reactor()
        wall = clock_mod.default()
        self.config = load_sip_config(SHIPPED_SIPCONFIG)
        prefs = self.real.run_blocking(sysprefs_mod.load)
        found = self.real.run_blocking(koha.check)
        koha.remember(self.real.engine, found)
        self.auth = Authenticator(self.sync, reactor=self.reactor, clock=wall)
        self.auth._bcrypt_pool = _InlinePool()
        self.gateway = Gateway(self.config, self.sync, self.auth, prefs, clock=wall)
        self.gateway.koha_schema = found
        if reference_max_age > 0:
            # As service.py installs it; the clock stands still (see the module's docstring).
            cache = reference.ReferenceCache(reference_max_age, clock=self.reactor.seconds)
            self.gateway.reference = reference.install(self.real.engine, cache)
        self.service = next(s for s in self.config.services if s.transport == "RAW")
        self.began = wall.now()
        self.stamp = self.began.strftime(STAMP)
        self.round = mix(self.stamp)
        self.same_bytes = same_bytes
        self.sent = 0  # journalled messages' dates so far (plan)

    def use(self, db) -> None:
        self.gateway.db = db
        self.auth.db = db

    def connect(self):
        factory = SIPFactory(self.gateway, self.service, self.reactor)
        protocol = factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(b"9300CNjoe|COjoes|CP|\r")
        answer = transport.value()
        if not answer.startswith(b"941"):
            raise RuntimeError(f"login failed: {answer!r}")
        transport.clear()
        return protocol, transport

    def plan(self, n: int) -> list[list[tuple[str, bytes, bytes]]]:
        """``n`` rounds of ``self.round``. Unless ``same_bytes``, each journalled message (11,
        09) carries a transaction date of its own, one second earlier than the one before, as
        a kiosk's requests do (a kiosk stamps each with its clock): the request journal then
        finds no earlier row of the same bytes (as for a request that is not a resend)."""
        if self.same_bytes:
            return [self.round] * n
        plan = []
        stamp = self.stamp.encode()
        for _ in range(n):
            self.sent += 1
            fresh = (self.began - timedelta(seconds=self.sent)).strftime(STAMP).encode()
            plan.append(
                [
                    (kind, line.replace(stamp, fresh, 1) if kind in MUTATING else line, expect)
                    for kind, line, expect in self.round
                ]
            )
        return plan

    def rounds(self, protocol, transport, n: int, check: bool = True, plan=None) -> None:
        for messages in plan or self.plan(n):
            for kind, line, expect in messages:
                protocol.dataReceived(line)
                if check and not transport.value().startswith(expect):
                    raise RuntimeError(f"{kind}: unexpected answer {transport.value()!r}")
                transport.clear()

    def measure(self, protocol, transport, n: int) -> float:
        """CPU microseconds per message over ``n`` rounds."""
        plan = self.plan(n)
        began = time.process_time()
        self.rounds(protocol, transport, n, check=False, plan=plan)
        return (time.process_time() - began) / (n * len(self.round)) * 1e6

    def measure_kinds(
        self, protocol, transport, n: int, through_c: str | None = None
    ) -> dict[str, float]:
        """CPU microseconds per message of each kind over ``n`` rounds (process time read
        around each message). Messages of kind ``through_c`` go through
        :func:`_call_through_c`, for callgrind."""
        clock = time.process_time
        spent = dict.fromkeys((kind for kind, _, _ in self.round), 0.0)
        received = protocol.dataReceived
        for messages in self.plan(n):
            for kind, line, _expect in messages:
                began = clock()
                if kind == through_c:
                    _call_through_c(received, line)
                else:
                    received(line)
                spent[kind] += clock() - began
                transport.clear()
        counts = {kind: 0 for kind in spent}
        for kind, _, _ in self.round:
            counts[kind] += n
        return {kind: spent[kind] / counts[kind] * 1e6 for kind in spent}

    def record(self, protocol, transport) -> ReplayDatabase:
        self.use(self.sync)
        self.sync.recording = []
        self.rounds(protocol, transport, 1)
        transcripts, self.sync.recording = self.sync.recording, None
        return ReplayDatabase(self.real.engine, self.real.url, transcripts)


def _per_kind(runs: list[dict[str, float]]) -> str:
    """``63 212.3  17 98.1 ...``: the best run of each kind."""
    return "  ".join(f"{kind} {min(run[kind] for run in runs):.1f}" for kind in runs[0])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=1000, help="rounds of the mix per run")
    parser.add_argument("--repeat", type=int, default=5, help="runs per mode (best is shown)")
    parser.add_argument("--mode", choices=("sqlite", "replay", "both"), default="both")
    parser.add_argument("--profile", help="write a cProfile of one replay run to this file")
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warn"))
    parser.add_argument(
        "--reference-max-age",
        type=float,
        default=reference.DEFAULT_MAX_AGE,
        help="the reference cache's bound as the gateway's option (0: no cache)",
    )
    parser.add_argument(
        "--callgrind-kind",
        metavar="KIND",
        help="send the measured messages of this kind through the C function callgrind "
        "toggles on (see the module's docstring)",
    )
    parser.add_argument(
        "--same-bytes",
        action="store_true",
        help="send the same bytes every round: each 11 and 09 then finds the request journal's "
        "row of the round before (a resend's lookup; the figures before 2026-12-05 evening)",
    )
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="kgw-inprocess-") as tmp:
        workdir = Path(tmp)
        url = prepare(workdir)
        twistd_log = open(workdir / "twistd.log", "a")  # noqa: SIM115
        globalLogBeginner.beginLoggingTo(
            [textFileLogObserver(twistd_log)], redirectStandardIO=False
        )
        observers = logs.install(
            str(workdir / "sip.log"), str(workdir / "error.log"), args.log_level
        )
        bench = Bench(url, workdir, args.reference_max_age, args.same_bytes)
        protocol, transport = bench.connect()
        bench.rounds(protocol, transport, 20)  # warm-up: caches, bcrypt results, statements
        results = {}
        modes = ("sqlite", "replay") if args.mode == "both" else (args.mode,)
        for mode in modes:
            if mode == "replay":
                bench.use(bench.record(protocol, transport))
                bench.rounds(protocol, transport, 5)
            else:
                bench.use(bench.sync)
            runs = [bench.measure(protocol, transport, args.rounds) for _ in range(args.repeat)]
            results[mode] = runs
            print(
                f"{mode:7s} {min(runs):8.1f} µs/msg (best of {len(runs)}; "
                f"runs {', '.join(f'{r:.1f}' for r in runs)}; {args.rounds * 6} messages each)",
                flush=True,
            )
            kinds = [
                bench.measure_kinds(protocol, transport, args.rounds, args.callgrind_kind)
                for _ in range(args.repeat)
            ]
            print(f"{mode:7s} per kind, µs/msg (best of {len(kinds)}): {_per_kind(kinds)}")
        if args.profile:
            bench.use(bench.record(protocol, transport) if "replay" in results else bench.sync)
            profiler = cProfile.Profile()
            profiler.enable()
            bench.rounds(protocol, transport, args.rounds, check=False)
            profiler.disable()
            profiler.dump_stats(args.profile)
            pstats.Stats(args.profile).sort_stats("tottime").print_stats(25)
        bench.rounds(protocol, transport, 1)  # the answers are still right
        size = os.path.getsize(workdir / "sip.log")
        print(f"sip.log: {size} bytes", flush=True)
        for observer in observers:
            globalLogPublisher.removeObserver(observer)
        bench.real.close()


if __name__ == "__main__":
    main()
