#!/usr/bin/env python3
"""Benchmark: N self-check kiosks, each sending one SIP2 message a second, against one gateway.

The target (docs/architecture.md, "design for what is coming"): 2,000 kiosks at one message a
second each, answered with p99 under 10 ms, by one gateway process on one core with the real
database.

A fresh database gets the demo data set plus one patron and one item per kiosk; a real
``twistd koha-gateway`` serves it on 127.0.0.1, pinned to core 0 (``taskset -c 0``) when the
machine has two cores or more; this load generator runs on core 1. It is one asyncio process,
not a thread per kiosk. Every kiosk logs in (the shared ``joe`` account, as many kiosks of one
library do) and then, once a second, sends the next message of its cycle::

    99 23 63 17 11 99 23 63 17 09     (3M SIP2 2.00: SC Status, Patron Status, Patron
                                       Information, Item Information, Checkout, Checkin)

so one message in five changes the database. Kiosks start evenly spread over the first second.
Latency is measured from the moment a kiosk was due to send (not from when it could send), so
a gateway that falls behind shows it in the figures instead of slowing the kiosks down.

Printed: kiosks, seconds, messages answered, achieved rate, latency p50/p90/p99/max (ms), the
gateway's CPU use (share of one core), and errors (timeouts, closed connections, answers that
are not the expected success), each beside the same figures of the ceiling (``ceiling.py``,
canned answers, same core, measured first in the same run; ``--no-ceiling`` skips it). With
``--profile FILE`` the gateway is sampled
(py-spy, every thread) and the functions with the most samples are printed; sampling costs the
gateway a little: use it to find costs, not for the figures.

    python bench/kiosks.py [--kiosks 2000] [--seconds 30] [--engine sqlite|postgresql|mysql]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (  # noqa: E402
    BenchGateway,
    Ceiling,
    Profiler,
    add_kiosks,
    database,
    kiosk_item,
    kiosk_patron,
    percentile,
    pin_self,
    raise_nofile,
    stamp,
)

BLANK = " " * 18
TIMEOUT = 10.0


def cycle(n: int) -> list[tuple[str, object, bytes]]:
    """(kind, request builder, expected answer prefix) for kiosk ``n``'s ten-second cycle."""
    patron, item = kiosk_patron(n), kiosk_item(n)

    def status():
        return "9900302.00"

    def patron_status():
        return f"23001{stamp()}AOWEL|AA{patron}|AC|"

    def patron_info():
        return f"63001{stamp()}          AOWEL|AA{patron}|AC|"

    def item_info():
        return f"17{stamp()}AOWEL|AB{item}|AC|"

    def checkout():
        return f"11YN{stamp()}{BLANK}AOWEL|AA{patron}|AB{item}|AC|"

    def checkin():
        now = stamp()
        return f"09N{now}{now}AOWEL|AB{item}|AC|"

    return [
        ("99", status, b"98"),
        ("23", patron_status, b"24"),
        ("63", patron_info, b"64"),
        ("17", item_info, b"18"),
        ("11", checkout, b"121"),
        ("99", status, b"98"),
        ("23", patron_status, b"24"),
        ("63", patron_info, b"64"),
        ("17", item_info, b"18"),
        ("09", checkin, b"101"),
    ]


class Kiosk(asyncio.Protocol):
    """One RAW SIP2 connection that sends a request and waits for its one-line answer."""

    def __init__(self):
        self.transport = None
        self._buffer = b""
        self._waiter: asyncio.Future | None = None
        self.lost = False

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self._buffer += data
        while b"\r" in self._buffer:
            line, _, self._buffer = self._buffer.partition(b"\r")
            line = line.lstrip(b"\n")
            if self._waiter is not None and not self._waiter.done():
                self._waiter.set_result(line)

    def connection_lost(self, exc):
        self.lost = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(ConnectionError("connection closed by the gateway"))

    async def request(self, text: str) -> bytes:
        if self.lost:
            raise ConnectionError("connection closed by the gateway")
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(text.encode("utf-8") + b"\r")
        return await asyncio.wait_for(self._waiter, TIMEOUT)


async def connect(port: int, limit: asyncio.Semaphore, user: str, password: str) -> Kiosk:
    loop = asyncio.get_running_loop()
    async with limit:
        for attempt in range(5):
            try:
                _, kiosk = await loop.create_connection(Kiosk, "127.0.0.1", port)
                break
            except OSError:
                if attempt == 4:
                    raise
                await asyncio.sleep(0.2 * (attempt + 1))
        answer = await kiosk.request(f"9300CN{user}|CO{password}|CP|")
        if not answer.startswith(b"941"):
            raise RuntimeError(f"login refused: {answer!r}")
        return kiosk


class Stats:
    def __init__(self):
        self.latencies: list[float] = []
        self.errors: dict[str, int] = {}
        self.first_errors: list[str] = []

    def error(self, kind: str, detail: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1
        if len(self.first_errors) < 5:
            self.first_errors.append(f"{kind}: {detail}")


async def drive(kiosk: Kiosk, n: int, kiosks: int, start: float, end: float, rate, stats):
    loop = asyncio.get_running_loop()
    messages = cycle(n)
    interval = 1.0 / rate
    due = start + interval * n / kiosks
    i = n % 4  # kiosks are at different points of their cycle, checkouts are spread out
    while due < end:
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        kind, build, expect = messages[i % len(messages)]
        try:
            answer = await kiosk.request(build())
        except (TimeoutError, ConnectionError) as exc:
            stats.error(kind, f"{type(exc).__name__}: {exc}")
            return
        stats.latencies.append(loop.time() - due)
        if not answer.startswith(expect):
            stats.error(kind, answer[:80].decode("utf-8", "replace"))
            if kind == "11":  # keep the cycle consistent: the item may still be out
                i += 4
        i += 1
        due += interval


async def run(port: int, args) -> tuple[Stats, float, list[Kiosk]]:
    limit = asyncio.Semaphore(args.connect_concurrency)
    began = time.perf_counter()
    kiosks = await asyncio.gather(
        *(connect(port, limit, args.user, args.password) for _ in range(args.kiosks))
    )
    print(
        f"  {len(kiosks)} kiosks connected and logged in in {time.perf_counter() - began:.1f}s",
        flush=True,
    )
    loop = asyncio.get_running_loop()
    stats = Stats()
    start = loop.time() + 0.5
    end = start + args.seconds
    await asyncio.gather(
        *(drive(k, n, args.kiosks, start, end, args.rate, stats) for n, k in enumerate(kiosks))
    )
    elapsed = loop.time() - start
    for kiosk in kiosks:
        kiosk.transport.close()
    return stats, elapsed, kiosks


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kiosks", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=30.0, help="measured time (default 30)")
    parser.add_argument("--rate", type=float, default=1.0, help="messages a second per kiosk")
    parser.add_argument("--engine", choices=("sqlite", "postgresql", "mysql"), default="sqlite")
    parser.add_argument("--postgresql", metavar="URL", help="an empty PostgreSQL database")
    parser.add_argument("--gateway-cpus", default="0", help="taskset list for the gateway")
    parser.add_argument("--client-cpu", type=int, default=1, help="core of this load generator")
    parser.add_argument("--db-pool-size", type=int, help="passed to the gateway")
    parser.add_argument("--connect-concurrency", type=int, default=200)
    parser.add_argument("--user", default="joe")
    parser.add_argument("--password", default="joes")
    parser.add_argument("--profile", metavar="FILE", help="sample the gateway with py-spy")
    parser.add_argument("--py-spy", metavar="PATH", help="py-spy executable (default: $PATH)")
    parser.add_argument("--no-ceiling", action="store_true", help="skip the ceiling's run")
    args = parser.parse_args(argv)
    raise_nofile(args.kiosks + 1024)
    pinned = pin_self({args.client_cpu})
    extra = ["--db-pool-size", str(args.db_pool_size)] if args.db_pool_size else []
    rows = []
    if not args.no_ceiling:
        with Ceiling(cpus=args.gateway_cpus, nofile=max(65536, args.kiosks + 1024)) as ceiling:
            cpu_before = ceiling.cpu_seconds()
            stats, elapsed, _ = asyncio.run(run(ceiling.port, args))
            rows.append(("ceiling", stats, elapsed, (ceiling.cpu_seconds() - cpu_before) / elapsed))
    with tempfile.TemporaryDirectory(prefix="kgw-kiosks-") as tmp:
        workdir = Path(tmp)
        with database(args.engine, workdir, args.postgresql) as url:
            add_kiosks(url, args.kiosks)
            gwdir = workdir / "gateway"
            gwdir.mkdir()
            gateway = BenchGateway(
                gwdir,
                url,
                cpus=args.gateway_cpus,
                nofile=max(65536, args.kiosks + 1024),
                extra_args=extra,
            )
            gateway.start()
            profiler = None
            try:
                if args.profile:
                    profiler = Profiler(gateway.pid, Path(args.profile), args.py_spy)
                cpu_before = gateway.cpu_seconds()
                stats, elapsed, _ = asyncio.run(run(gateway.ports["raw"], args))
                cpu = (gateway.cpu_seconds() - cpu_before) / elapsed
            finally:
                if profiler is not None:
                    profiler.stop()
                gateway.stop()
    rows.append((f"gateway {args.engine}", stats, elapsed, cpu))
    print(
        f"\nkiosks: {args.kiosks} x {args.rate:g} msg/s for {elapsed:.1f}s on {args.engine} "
        f"(targets on cpu {gateway.cpus or 'any'}, load generator "
        f"{'on cpu ' + str(args.client_cpu) if pinned else 'unpinned'})"
    )
    print(
        f"  {'target':<18}{'msg/s':>7}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'max ms':>9}"
        f"{'CPU':>6}{'errors':>8}"
    )
    failed = False
    for label, stats, elapsed, cpu in rows:
        lat = sorted(stats.latencies)
        errors = sum(stats.errors.values())
        failed |= bool(errors)
        print(
            f"  {label:<18}{len(lat) / elapsed:>7.0f}"
            + "".join(f"{percentile(lat, p) * 1000:>9.2f}" for p in (50, 90, 99))
            + f"{(lat[-1] if lat else float('nan')) * 1000:>9.2f}{cpu * 100:>5.0f}%{errors:>8}"
        )
        for line in stats.first_errors:
            print(f"    {label}: {line}")
    if len(rows) == 2:
        top, mine = (sorted(r[1].latencies) for r in rows)
        print(
            "  gateway/ceiling  p99 x"
            f"{percentile(mine, 99) / percentile(top, 99):.1f}, CPU x{rows[1][3] / rows[0][3]:.1f}"
        )
    if profiler is not None:
        print(f"\ngateway profile (py-spy, {args.profile}):\n{profiler.summary()}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
