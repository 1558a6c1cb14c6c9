#!/usr/bin/env python3
"""Benchmark: the same SIP2 message mix against a gateway on SQLite, PostgreSQL and MariaDB.

For each engine a fresh database gets the schema, the demo data set and one extra patron and
item per simulated kiosk; a real ``twistd koha-gateway`` process serves it on 127.0.0.1, and
``--clients`` kiosks (threads, one logged-in RAW connection each) loop over a kiosk-like session:

    99 SC Status, 63 Patron Information, 23 Patron Status, 17 Item Information, 11 Checkout,
    17 Item Information, 29 Renew, 09 Checkin, 35 End Patron Session

Every kiosk works with its own patron and item, so the figures measure the request path (SIP
parsing, one database transaction per request, the response), not lock contention. Each request
waits for its answer before the next is sent, as a self-check machine does.

The kiosks log in with one SIP account (``joe``) from 127.0.0.1, so for the request journal
(``ils/journal.py``: a terminal is a SIP account at a peer address) they are one terminal, as
kiosks behind one NAT address sharing an account are. Each session's requests carry a
transaction date of their own, so that their bytes differ from every earlier session's, as a
kiosk's new requests do. ``--terminals own`` connects
kiosk n from 127.0.1.n instead (any 127/8 address reaches the loopback listener on Linux): each
kiosk is then a terminal of its own, as with one SIP account per kiosk.

Printed per engine: messages per second over all kiosks, p50 and p99 latency (client-side, from
sending the request to reading the whole answer), per message type p50, and the number of
answers that were not the expected success (must be 0). Before each engine the same kiosks run
the same sessions against the ceiling (``bench/ceiling.py``: canned answers, no database) in the
same run; its row is printed above the engine's, and the engine's messages a second and CPU per
message as a share of the ceiling's (``--no-ceiling`` skips it).

PostgreSQL is a throwaway cluster from ``tests/support/postgres.py`` (``fsync=off``: it measures
the gateway, not the disk; SQLite runs in WAL mode with ``synchronous=NORMAL``, which does not
wait for the disk on commit either), unless ``--postgresql URL`` names an empty database.
MariaDB (``--engines ...,mysql``) is a throwaway server from ``tests/support/mariadb.py`` holding
Koha's own schema and mandatory data (``../shared/koha``), with the demo data set on top: the
gateway runs on it as on a live Koha database.

    python bench/sip_mix.py [--clients 8] [--rounds 60] [--engines sqlite,postgresql,mysql]
        [--workers 1,2,4]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from koha_gateway import demo  # noqa: E402
from koha_gateway.db import Database, schema  # noqa: E402
from tests.gateway import GatewayProcess  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Ceiling  # noqa: E402

BLANK = " " * 18
MESSAGES = ("99", "63", "23", "17", "11", "17b", "29", "09", "35")


def bench_patron(n: int) -> str:
    return f"2352990{n:07d}"


def bench_item(n: int) -> str:
    return f"3999990{n:07d}"


def prepare(url: str, clients: int) -> None:
    """Schema, demo data, and one patron and one item per kiosk."""
    now = datetime.now().astimezone()
    db = Database.from_url(url)
    try:
        db.run_blocking(schema.migrate)
        db.run_blocking(demo.load, now)

        def add_kiosk_data(txn):
            today = now.date()
            for n in range(clients):
                txn.insert(
                    "INSERT INTO borrowers (cardnumber, userid, surname, firstname, branchcode, "
                    "categorycode, dateenrolled, dateexpiry) "
                    "VALUES (?, ?, ?, ?, 'WEL', 'PT', ?, ?)",
                    (
                        bench_patron(n),
                        f"bench{n}",
                        "Kiosk",
                        f"Patron {n}",
                        today,
                        today + timedelta(days=365),
                    ),
                    pk="borrowernumber",
                )
                demo.add_title_with_item(
                    txn,
                    title=f"Benchmark title {n}",
                    author="Bench, Mark",
                    barcode=bench_item(n),
                    branch="WEL",
                    itemtype="BK",
                    callnumber="BENCH",
                    price=10,
                    accessioned=str(today),
                )

        db.run_blocking(add_kiosk_data)
    finally:
        db.close()


def stamp() -> str:
    return datetime.now().strftime("%Y%m%d    %H%M%S")


_START = datetime.now()
_SESSIONS = itertools.count()


def session_stamp() -> str:
    """A transaction date of its own for each session (a second earlier than the previous
    one's): a kiosk's new requests differ in their bytes, and the request journal takes the
    same bytes within its retry window for a possible resend, whose check reads the item's and
    patron's state first (``ils/journal.py``). No message of the session uses the date."""
    return (_START - timedelta(seconds=next(_SESSIONS))).strftime("%Y%m%d    %H%M%S")


def session_requests(n: int) -> list[tuple[str, str, str]]:
    """(kind, request, expected answer prefix) for one kiosk session: the transaction dates
    are the session's own (:func:`session_stamp`), 09's return date is now."""
    patron, item = bench_patron(n), bench_item(n)
    when, now = session_stamp(), stamp()
    return [
        ("99", "9900302.00", "98"),
        ("63", f"63001{when}          AOWEL|AA{patron}|", "64"),
        ("23", f"23001{when}AOWEL|AA{patron}|AC|", "24"),
        ("17", f"17{when}AOWEL|AB{item}|", "18"),
        ("11", f"11YN{when}{BLANK}AOWEL|AA{patron}|AB{item}|AC|", "121"),
        ("17b", f"17{when}AOWEL|AB{item}|", "18"),
        ("29", f"29NN{when}{BLANK}AOWEL|AA{patron}|AB{item}|AC|", "301"),
        ("09", f"09N{when}{now}AOWEL|AB{item}|AC|", "101"),
        ("35", f"35{when}AOWEL|AA{patron}|", "36"),
    ]


def kiosk(
    gateway, n: int, rounds: int, start: threading.Barrier, out: dict, own_terminal: bool = False
) -> None:
    latencies: dict[str, list[float]] = {kind: [] for kind in MESSAGES}
    failures: list[str] = []
    kw = {"source_address": (f"127.0.1.{n + 1}", 0)} if own_terminal else {}
    with gateway.logged_in(**kw) as client:
        for _kind, request, _expect in session_requests(n):  # warm-up round, not measured
            client.request(request)
        start.wait(60)
        for _ in range(rounds):
            for kind, request, expect in session_requests(n):
                began = time.perf_counter()
                answer = client.request(request)
                latencies[kind].append(time.perf_counter() - began)
                if not answer.startswith(expect):
                    failures.append(f"{kind}: {answer[:60]}")
    out[n] = (latencies, failures)


def run_engine(
    name: str,
    url: str,
    clients: int,
    rounds: int,
    workdir: Path,
    metrics: bool = False,
    workers: int = 1,
    own_terminals: bool = False,
) -> dict:
    prepare(url, clients)
    extra = ["--log-level", "info"]
    if workers > 1:
        extra += ["--workers", str(workers)]
        name += f" x{workers}"
    if metrics:
        from tests.gateway import free_port

        admin_port = free_port()
        extra += ["--admin-port", str(admin_port)]
        name += "+metrics"
    gateway = GatewayProcess(workdir, url, extra_args=extra)
    gateway.start()
    try:
        result = measure(name, gateway, clients, rounds, own_terminals)
        if metrics:
            # The counters saw the run: the admin listener was live while it was measured.
            import urllib.request

            with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics") as answer:
                text = answer.read().decode()
            counted = sum(
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith("koha_gateway_messages_total{")
            )
            print(f"  /metrics counted {counted:.0f} messages", flush=True)
    finally:
        gateway.stop()
    return result


def measure(name: str, target, clients: int, rounds: int, own_terminals: bool = False) -> dict:
    """The kiosks' sessions against a running ``target`` (a gateway or the ceiling)."""
    results: dict = {}
    barrier = threading.Barrier(clients + 1)
    threads = [
        threading.Thread(target=kiosk, args=(target, n, rounds, barrier, results, own_terminals))
        for n in range(clients)
    ]
    for thread in threads:
        thread.start()
    barrier.wait(120)
    cpu_before = process_cpu_seconds(target.process.pid)
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    cpu = process_cpu_seconds(target.process.pid) - cpu_before
    if len(results) != clients:
        raise RuntimeError(f"{name}: {clients - len(results)} kiosks failed")
    every: list[float] = []
    per_kind: dict[str, list[float]] = {kind: [] for kind in MESSAGES}
    failures: list[str] = []
    for latencies, kiosk_failures in results.values():
        failures += kiosk_failures
        for kind, values in latencies.items():
            per_kind[kind] += values
            every += values
    return {
        "engine": name,
        "messages": len(every),
        "seconds": elapsed,
        "rate": len(every) / elapsed,
        "p50": percentile(every, 50),
        "p99": percentile(every, 99),
        "cpu_us": cpu / len(every) * 1e6 if every else float("nan"),
        "per_kind": {kind: percentile(v, 50) for kind, v in per_kind.items()},
        "failures": failures,
    }


def process_cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process (Linux /proc), a figure a loaded machine disturbs
    far less than a message rate."""
    from harness import tree_cpu_seconds

    return tree_cpu_seconds(pid)  # with --workers: the master and its workers


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(pct) - 1]


def report(results: list[dict], clients: int, rounds: int) -> None:
    print(
        f"\nSIP message mix: {clients} kiosks x {rounds} sessions x {len(MESSAGES)} messages "
        f"({', '.join(MESSAGES)})\n"
    )
    print(
        f"{'engine':<16}{'messages':>10}{'seconds':>9}{'msg/s':>9}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'CPU us/msg':>12}  share of the ceiling (msg/s, CPU/msg)"
    )
    ceiling = None
    for r in results:
        share = ""
        if r["engine"] == "ceiling":
            ceiling = r
        elif ceiling is not None:
            share = f"{r['rate'] / ceiling['rate']:.3f}, {ceiling['cpu_us'] / r['cpu_us']:.3f}"
        print(
            f"{r['engine']:<16}{r['messages']:>10}{r['seconds']:>9.2f}{r['rate']:>9.0f}"
            f"{r['p50'] * 1000:>9.2f}{r['p99'] * 1000:>9.2f}{r['cpu_us']:>12.0f}  {share}"
        )
    print("\np50 per message type (ms):")
    print(f"{'engine':<12}" + "".join(f"{kind:>7}" for kind in MESSAGES))
    for r in results:
        print(f"{r['engine']:<12}" + "".join(f"{r['per_kind'][k] * 1000:>7.2f}" for k in MESSAGES))
    for r in results:
        if r["failures"]:
            print(f"\n{r['engine']}: {len(r['failures'])} unexpected answers, first ones:")
            for line in r["failures"][:5]:
                print(f"  {line}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8, help="simulated kiosks (default 8)")
    parser.add_argument("--rounds", type=int, default=60, help="sessions per kiosk (default 60)")
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument("--postgresql", metavar="URL", help="an empty PostgreSQL database to use")
    parser.add_argument(
        "--workers",
        default="1",
        help="gateway processes, a comma list to measure each (e.g. 1,2,4): throughput against N",
    )
    parser.add_argument(
        "--metrics",
        choices=("off", "on", "both"),
        default="off",
        help="run with the admin listener (--admin-port) and its metrics; both: without, then with",
    )
    parser.add_argument(
        "--terminals",
        choices=("shared", "own"),
        default="shared",
        help="shared: every kiosk is joe@127.0.0.1 (one journal row); own: kiosk n at 127.0.1.n",
    )
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    modes = {"off": [False], "on": [True], "both": [False, True]}[args.metrics]
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    try:
        counts = [int(n) for n in args.workers.split(",") if n.strip()]
    except ValueError:
        parser.error("--workers takes numbers, e.g. 1,2,4")
    if not counts or min(counts) < 1:
        parser.error("--workers takes numbers of at least 1")
    if args.postgresql and len(counts) * len(modes) > 1:
        parser.error("several runs need a throwaway cluster, not --postgresql")
    results = []
    cluster = None
    mariadb = None
    ceiling = None
    with tempfile.TemporaryDirectory(prefix="kgw-bench-") as tmp:
        try:
            if not args.no_ceiling:
                ceiling = Ceiling(cpus=None).start()
            for name in engines:
                if name not in ("sqlite", "postgresql", "mysql"):
                    parser.error(f"unknown engine {name!r}")
                if name == "postgresql" and args.postgresql and len(modes) > 1:
                    parser.error("--metrics both needs a throwaway cluster, not --postgresql")
                for metrics, workers in [(m, w) for m in modes for w in counts]:
                    tag = f"{'m' if metrics else 'p'}{workers}"
                    workdir = Path(tmp) / f"{name}-{tag}"
                    workdir.mkdir()
                    if name == "sqlite":
                        url = f"sqlite://{workdir / 'bench.sqlite'}"
                    elif name == "mysql":
                        if mariadb is None:
                            from tests.support.mariadb import KOHA_TEMPLATE, MariaDBServer

                            mariadb = MariaDBServer()
                            mariadb.start()
                        url = mariadb.create_database(f"bench_{tag}", template=KOHA_TEMPLATE)
                    elif args.postgresql:
                        url = args.postgresql
                    else:
                        if cluster is None:
                            from tests.support.postgres import PostgresCluster

                            cluster = PostgresCluster()
                            cluster.start()
                        url = cluster.create_database(f"bench_{tag}")
                    if ceiling is not None:
                        print("running the ceiling ...", flush=True)
                        results.append(measure("ceiling", ceiling, args.clients, args.rounds))
                    print(
                        f"running {name}{' with metrics' if metrics else ''}"
                        f" ({workers} gateway process{'es' if workers > 1 else ''}) ...",
                        flush=True,
                    )
                    results.append(
                        run_engine(
                            name,
                            url,
                            args.clients,
                            args.rounds,
                            workdir,
                            metrics,
                            workers,
                            own_terminals=args.terminals == "own",
                        )
                    )
        finally:
            if ceiling is not None:
                ceiling.stop()
            if cluster is not None:
                cluster.destroy()
            if mariadb is not None:
                mariadb.destroy()
    report(results, args.clients, args.rounds)
    return 1 if any(r["failures"] for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
