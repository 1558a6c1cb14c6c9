#!/usr/bin/env python3
"""Benchmark: what the database layer (``koha_gateway/db/engine.py``) costs per request.

In one process, without a gateway or sockets, on a fresh database per engine (schema, demo data
and one patron and item, as ``sip_mix.py`` prepares them):

* **transactions** -- each message of the kiosk session (``99 63 23 17 11 17 29 09 35``) run
  as the gateway runs it (``journal.handle`` -> ``ACS.handle`` in one transaction) with
  ``Database.run_blocking`` in this thread: CPU and wall time per message and the round trips
  it takes, and the same for an empty transaction (read-write and read-only) and one ``SELECT 1``:
  the engine's fixed cost per transaction and per statement; and three rows of ``borrowers``
  (every column: 33 on the gateway's schema, 82 on Koha's) per statement, a write transaction
  (one ``UPDATE`` and the ``COMMIT``) and a read followed by two deferred writes
  (``execute_later``, sent with the ``COMMIT``).
* **hop** -- the same work handed from a running reactor to the database threads and back
  (``Database.run``, the gateway's path): one request at a time, and ``--concurrency``
  requests in flight. "hop" is the CPU per request above the same work done with
  ``run_blocking``: the thread switch(es), the queues, the Deferred, the wake-up of the reactor.
  On SQLite the read messages (99, 63, 23, 17) run inline on the reactor thread
  (``Database.run(..., inline=True)``, what ``Gateway.apply`` asks for), so their "hop" is
  the cost of that path; ``--inline-reads both`` (the default) also measures the same database
  with ``?inline_reads=off`` (every transaction on the pool), as a second table.

CPU is ``time.process_time()`` of the whole process (every thread), so the figures do not depend
much on what else runs on the machine; wall times do.

    python bench/db_layer.py [--engines sqlite,postgresql,mysql] [--n 400] [--concurrency 8]
                             [--inline-reads both|on|off]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import sip_mix  # noqa: E402

from koha_gateway.acs.dispatch import ACS  # noqa: E402
from koha_gateway.config.sipconfig import load_sip_config  # noqa: E402
from koha_gateway.db.engine import Database, Txn  # noqa: E402
from koha_gateway.ils import journal  # noqa: E402
from koha_gateway.ils import sysprefs as sysprefs_mod  # noqa: E402
from koha_gateway.service import Gateway  # noqa: E402
from koha_gateway.sip2.codec import parse  # noqa: E402

#: Each figure is the best of this many runs (--repeat).
REPEAT = 3
#: --same-terminal: the kiosks in flight share one journal terminal (account and address).
SAME_TERMINAL = False
KINDS = ("99", "63", "23", "17", "11", "17b", "29", "09", "35")
READS = ("99", "63", "23", "17")


class Counter:
    """Counts what :class:`Txn` sends (wraps ``Txn._send``): on PostgreSQL and MariaDB the
    round trips to the server (``COMMIT`` included; ``BEGIN`` and deferred writes travel with
    a statement), on SQLite the statements (its ``BEGIN``/``COMMIT`` are not counted)."""

    def __init__(self) -> None:
        self.n = 0
        self._orig = Txn._send

        counter = self

        def counting(txn, parts, params):
            counter.n += 1
            return counter._orig(txn, parts, params)

        Txn._send = counting

    def restore(self) -> None:
        Txn._send = self._orig


def session(n: int):
    """(kind, parsed message, raw bytes) of one kiosk session; every call gives requests of
    their own bytes (``sip_mix.session_stamp``), as a kiosk's next session has."""
    out = []
    for kind, text, _expect in sip_mix.session_requests(n):
        out.append((kind, parse(text), text.encode()))
    return out


def make_gateway(db: Database, prefs=None) -> tuple[Gateway, object]:
    config = load_sip_config(ROOT / "conf" / "SIPconfig.xml")
    if prefs is None:
        prefs = db.run_blocking(sysprefs_mod.load)
    gateway = Gateway(config, db, None, prefs)
    account = config.accounts["joe"]
    return gateway, account


def ctx_for(gateway: Gateway, account):
    ctx = gateway.context(account, SimpleNamespace(protocol_version=2), "127.0.0.1")
    return ctx


def blocking_figures(db: Database, n: int) -> dict:
    """CPU/wall µs and statements per message, each run with run_blocking in this thread."""
    gateway, account = make_gateway(db)
    acs = ACS()
    counter = Counter()
    cpu: dict[str, list[float]] = {k: [] for k in KINDS}
    wall: dict[str, list[float]] = {k: [] for k in KINDS}
    stmts: dict[str, int] = {}
    try:
        for i in range(n + 1):
            for kind, msg, raw in session(0):
                ctx = ctx_for(gateway, account)
                counter.n = 0
                c0, w0 = time.process_time(), time.perf_counter()
                db.run_blocking(lambda txn: journal.handle(txn, ctx, msg, raw, acs.handle))  # noqa: B023
                c1, w1 = time.process_time(), time.perf_counter()
                if i:  # the first session warms the caches
                    cpu[kind].append(c1 - c0)
                    wall[kind].append(w1 - w0)
                stmts[kind] = counter.n
    finally:
        counter.restore()
    out = {
        k: (statistics.median(cpu[k]) * 1e6, statistics.median(wall[k]) * 1e6, stmts[k])
        for k in KINDS
    }

    def bare(fn, readonly):
        for _ in range(50):
            db.run_blocking(fn, readonly=readonly)
        best = None
        for _ in range(REPEAT):
            c0, w0 = time.process_time(), time.perf_counter()
            for _ in range(n * 5):
                db.run_blocking(fn, readonly=readonly)
            c1, w1 = time.process_time(), time.perf_counter()
            figure = ((c1 - c0) / (n * 5) * 1e6, (w1 - w0) / (n * 5) * 1e6, 0)
            best = figure if best is None or figure[0] < best[0] else best
        return best

    out["empty rw"] = bare(lambda txn: None, False)
    out["empty ro"] = bare(lambda txn: None, True)
    out["SELECT 1 ro"] = bare(lambda txn: txn.scalar("SELECT 1"), True)

    def statements(txn):
        for _ in range(100):
            txn.one("SELECT branchcode, branchname FROM branches WHERE branchcode = ?", ("WEL",))

    c, w, _ = bare(statements, True)
    e, ew, _ = out["empty ro"]
    out["1 stmt (of 100)"] = ((c - e) / 100, (w - ew) / 100, 1)

    def wide_rows(txn):
        for _ in range(10):
            txn.query("SELECT * FROM borrowers ORDER BY borrowernumber LIMIT 3")

    c, w, _ = bare(wide_rows, True)
    out["3 wide rows (of 10)"] = ((c - e) / 10, (w - ew) / 10, 1)
    # A write transaction: BEGIN with the UPDATE, then COMMIT (PostgreSQL, MariaDB: 2 trips).
    update = "UPDATE branches SET branchname = branchname WHERE branchcode = ?"
    out["UPDATE txn"] = bare(lambda txn: txn.execute(update, ("WEL",)), False)

    def deferred(txn):
        txn.one("SELECT branchcode FROM branches WHERE branchcode = ?", ("WEL",))
        txn.execute_later(update, ("WEL",))
        txn.execute_later(update, ("WEL",))

    # A read, then two deferred writes sent with the COMMIT (MariaDB: 4 results in one trip).
    out["SELECT+2 later txn"] = bare(deferred, False)
    return out


def hop_figures(db: Database, n: int, concurrency: int) -> dict:
    """CPU per request through Database.run from a running reactor."""
    from twisted.internet import defer

    holder: dict = {}
    acs = ACS()
    results: dict = {}

    def gateway_account():
        return holder["gateway"], holder["account"]

    def work_for(kind_filter, kiosk=0):
        items = [(k, m, r) for k, m, r in session(kiosk) if k in kind_filter]
        return items

    prepared: dict = {}

    def rounds_of(kinds, rounds, kiosk=0):
        """The sessions of ``rounds`` rounds, each with bytes of its own (``session``), made
        before the run is timed (``measure`` takes them from ``prepared``)."""
        return prepared.pop((tuple(kinds), rounds, kiosk))

    def prepare(kinds, rounds, kiosk=0):
        prepared[(tuple(kinds), rounds, kiosk)] = [work_for(kinds, kiosk) for _ in range(rounds)]

    @defer.inlineCallbacks
    def sequential(kinds, rounds):
        for items in rounds_of(kinds, rounds):
            for _kind, msg, raw in items:
                gateway, account = gateway_account()
                ctx = ctx_for(gateway, account)
                yield gateway.apply(ctx, msg, raw)

    @defer.inlineCallbacks
    def parallel(kinds, rounds, width):
        # Every lane is a kiosk with its own patron, item and journal terminal (peer).
        def lane(i):
            sessions = rounds_of(kinds, rounds, i)
            peer = "127.0.0.1" if SAME_TERMINAL else f"10.0.0.{i}"

            @defer.inlineCallbacks
            def go():
                for items in sessions:
                    for _kind, msg, raw in items:
                        gateway, account = gateway_account()
                        ctx = ctx_for(gateway, account)
                        ctx.peer = peer
                        yield gateway.apply(ctx, msg, raw)

            return go()

        yield defer.gatherResults([lane(i) for i in range(width)])

    @defer.inlineCallbacks
    def blocking_in_thread(kinds, rounds):
        sessions = rounds_of(kinds, rounds)

        def go():
            for items in sessions:
                for _kind, msg, raw in items:
                    gateway, account = gateway_account()
                    ctx = ctx_for(gateway, account)
                    db.run_blocking(lambda txn: journal.handle(txn, ctx, msg, raw, acs.handle))  # noqa: B023

        from twisted.internet import threads

        yield threads.deferToThread(go)

    @defer.inlineCallbacks
    def noop_sequential(rounds, readonly):
        for _ in range(rounds):
            yield db.run(lambda txn: None, readonly=readonly)

    @defer.inlineCallbacks
    def noop_parallel(rounds, width, readonly):
        def lane():
            @defer.inlineCallbacks
            def go():
                for _ in range(rounds):
                    yield db.run(lambda txn: None, readonly=readonly)

            return go()

        yield defer.gatherResults([lane() for _ in range(width)])

    @defer.inlineCallbacks
    def measure(name, make, count, work=None):
        """``work``: ``(kinds, rounds, lanes)`` of the sessions to prepare before each run."""

        def ready():
            if work is not None:
                kinds, rounds, lanes = work
                for kiosk in range(lanes):
                    prepare(kinds, rounds, kiosk)

        ready()
        yield make()  # warm-up run with the same shape
        best = None
        for _ in range(REPEAT):  # the best of REPEAT runs: the least disturbed by other load
            ready()
            c0, w0 = time.process_time(), time.perf_counter()
            yield make()
            c1, w1 = time.process_time(), time.perf_counter()
            figure = ((c1 - c0) / count * 1e6, (w1 - w0) / count * 1e6)
            best = figure if best is None or figure[0] < best[0] else best
        results[name] = best

    @defer.inlineCallbacks
    def main():
        prefs = yield db.run(sysprefs_mod.load)
        holder["gateway"], holder["account"] = make_gateway(db, prefs)
        if True:
            r = max(1, n // 4)
            rounds_noop = n * 5
            yield measure(
                "empty rw, 1 at a time", lambda: noop_sequential(rounds_noop, False), rounds_noop
            )
            yield measure(
                "empty ro, 1 at a time", lambda: noop_sequential(rounds_noop, True), rounds_noop
            )
            yield measure(
                f"empty rw, {concurrency} in flight",
                lambda: noop_parallel(rounds_noop // concurrency, concurrency, False),
                rounds_noop // concurrency * concurrency,
            )
            yield measure(
                f"empty ro, {concurrency} in flight",
                lambda: noop_parallel(rounds_noop // concurrency, concurrency, True),
                rounds_noop // concurrency * concurrency,
            )
            rc = max(1, r // concurrency)
            yield measure(
                "reads blocking",
                lambda: blocking_in_thread(READS, r),
                r * len(READS),
                (READS, r, 1),
            )
            yield measure(
                "reads, 1 at a time",
                lambda: sequential(READS, r),
                r * len(READS),
                (READS, r, 1),
            )
            yield measure(
                f"reads, {concurrency} in flight",
                lambda: parallel(READS, rc, concurrency),
                rc * concurrency * len(READS),
                (READS, rc, concurrency),
            )
            yield measure(
                "session blocking",
                lambda: blocking_in_thread(KINDS, r),
                r * len(KINDS),
                (KINDS, r, 1),
            )
            yield measure(
                "session, 1 at a time",
                lambda: sequential(KINDS, r),
                r * len(KINDS),
                (KINDS, r, 1),
            )
            yield measure(
                f"session, {concurrency} in flight",
                lambda: parallel(KINDS, rc, concurrency),
                rc * concurrency * len(KINDS),
                (KINDS, rc, concurrency),
            )
        return results

    return main()


def run_engine(name: str, url: str, n: int, concurrency: int) -> tuple[dict, dict]:
    sip_mix.prepare(url, max(1, concurrency))
    db = Database.from_url(url)
    try:
        blocking = blocking_figures(db, n)
    finally:
        db.close()
    return blocking, url


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engines", default="sqlite")
    parser.add_argument("--n", type=int, default=400, help="sessions per figure (default 400)")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--pool", type=int, default=None, help="max_connections of the pool")
    parser.add_argument("--repeat", type=int, default=3, help="best of N runs (default 3)")
    parser.add_argument(
        "--inline-reads",
        choices=("both", "on", "off"),
        default="both",
        help="SQLite: hop figures with inline reads on, off (?inline_reads=off) or both",
    )
    parser.add_argument(
        "--same-terminal",
        action="store_true",
        help="the kiosks in flight share one SIP account and address (as in sip_mix.py)",
    )
    args = parser.parse_args(argv)
    global REPEAT, SAME_TERMINAL
    REPEAT = args.repeat
    SAME_TERMINAL = args.same_terminal
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    cluster = mariadb = None
    blocking: dict = {}
    urls: dict = {}
    with tempfile.TemporaryDirectory(prefix="kgw-dbbench-") as tmp:
        try:
            for name in engines:
                if name == "sqlite":
                    url = f"sqlite://{Path(tmp) / 'bench.sqlite'}"
                elif name == "mysql":
                    from tests.support.mariadb import KOHA_TEMPLATE, MariaDBServer

                    mariadb = MariaDBServer()
                    mariadb.start()
                    url = mariadb.create_database("bench_db", template=KOHA_TEMPLATE)
                elif name == "postgresql":
                    from tests.support.postgres import PostgresCluster

                    cluster = PostgresCluster()
                    cluster.start()
                    url = cluster.create_database("bench_db")
                else:
                    parser.error(f"unknown engine {name!r}")
                print(f"{name}: transactions ...", flush=True)
                blocking[name], urls[name] = run_engine(name, url, args.n, args.concurrency)
            # The reactor runs once per process: every engine's hop figures in one run.
            targets = []
            for name in engines:
                if name != "sqlite":
                    targets.append((name, urls[name]))
                    continue
                if args.inline_reads in ("both", "on"):
                    targets.append(("sqlite", urls[name]))
                if args.inline_reads in ("both", "off"):
                    targets.append(("sqlite, inline_reads=off", urls[name] + "?inline_reads=off"))
            hops = all_hops(targets, args)
        finally:
            if cluster is not None:
                cluster.destroy()
            if mariadb is not None:
                mariadb.destroy()
    for name in engines:
        print(f"\n== {name}: one transaction in this thread (run_blocking)")
        print(f"{'':<18}{'CPU us':>9}{'wall us':>9}{'trips':>7}")
        for key, (c, w, s) in blocking[name].items():
            print(f"{key:<18}{c:>9.0f}{w:>9.0f}{s:>7}")
    for name, _url in targets:
        print(f"\n== {name}: through Database.run from the reactor")
        print(f"{'':<28}{'CPU us/req':>11}{'wall us/req':>12}")
        for key, (c, w) in hops[name].items():
            print(f"{key:<28}{c:>11.0f}{w:>12.0f}")
    return 0


def all_hops(targets, args) -> dict:
    from twisted.internet import defer, reactor

    hops: dict = {}
    dbs = {name: Database.from_url(url, max_connections=args.pool) for name, url in targets}

    @defer.inlineCallbacks
    def go():
        try:
            for name, _url in targets:
                print(f"{name}: hop ...", flush=True)
                hops[name] = yield hop_figures(dbs[name], args.n, args.concurrency)
        except Exception:
            import traceback

            traceback.print_exc()
        finally:
            for db in dbs.values():
                db.close()
            reactor.stop()

    reactor.callWhenRunning(go)
    reactor.run()
    return hops


if __name__ == "__main__":
    raise SystemExit(main())
