#!/usr/bin/env python3
"""Benchmark: memory of N logged-in, idle kiosk connections in one gateway process.

The target (docs/architecture.md, "design for what is coming"): 10,000 idle connections in one
process at under 50 KiB each. Self-check machines keep their connection open all day and send
a 99 SC Status every few minutes, so a library system with thousands of kiosks holds
thousands of mostly idle connections.

A gateway on a fresh demo database (SQLite, PostgreSQL with ``--engine postgresql``, MariaDB
with Koha's schema with ``--engine mysql``) is started with a raised open-file limit
(``prlimit``, within the hard limit of this shell). One warm-up connection logs in and sends
a 99, so that the code paths and caches of a login exist before the first measurement. Then
this process (one asyncio loop) opens ``--connections`` RAW connections, logs each in (93 with
the demo account ``joe``) and leaves them idle. The gateway's resident set size (``VmRSS``) is
read before and after; the difference divided by the number of connections is the cost of one
idle, logged-in connection. At the end a sample of the connections sends a 99 each, to show
they are still served.

The same connections are first opened to the ceiling (``ceiling.py``: Twisted and the framing,
nothing else; ``--no-ceiling`` skips it) and its figures printed beside the gateway's.

    python bench/idle_connections.py [--connections 10000] [--engine sqlite|postgresql|mysql]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import ENGINES, BenchGateway, Ceiling, database, pin_self, raise_nofile  # noqa: E402

TIMEOUT = 30.0


class Idle(asyncio.Protocol):
    """A RAW SIP2 connection: log in, then stay quiet until asked to send a 99."""

    def __init__(self):
        self.transport = None
        self._buffer = b""
        self._waiter: asyncio.Future | None = None

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self._buffer += data
        if b"\r" in self._buffer:
            line, _, self._buffer = self._buffer.partition(b"\r")
            if self._waiter is not None and not self._waiter.done():
                self._waiter.set_result(line.lstrip(b"\n"))

    def connection_lost(self, exc):
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(ConnectionError("closed by the gateway"))

    async def request(self, text: str) -> bytes:
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(text.encode() + b"\r")
        return await asyncio.wait_for(self._waiter, TIMEOUT)


async def open_one(port: int, limit: asyncio.Semaphore, user: str, password: str) -> Idle:
    loop = asyncio.get_running_loop()
    async with limit:
        for attempt in range(5):
            try:
                _, conn = await loop.create_connection(Idle, "127.0.0.1", port)
                break
            except OSError:
                if attempt == 4:
                    raise
                await asyncio.sleep(0.2 * (attempt + 1))
        answer = await conn.request(f"9300CN{user}|CO{password}|CP|")
        if not answer.startswith(b"941"):
            raise RuntimeError(f"login refused: {answer!r}")
        return conn


async def settle(gateway: BenchGateway, seconds: float = 2.0) -> int:
    """The gateway's RSS once it has stopped changing for a moment (KiB)."""
    await asyncio.sleep(seconds)
    return gateway.rss_kib()


async def run(gateway: BenchGateway, args) -> dict:
    port = gateway.ports["raw"]
    limit = asyncio.Semaphore(args.connect_concurrency)
    warm = await open_one(port, limit, args.user, args.password)
    assert (await warm.request("9900302.00")).startswith(b"98")
    before = await settle(gateway)
    began = time.perf_counter()
    conns = await asyncio.gather(
        *(open_one(port, limit, args.user, args.password) for _ in range(args.connections))
    )
    opened = time.perf_counter() - began
    after = await settle(gateway, args.idle)
    sample = random.Random(1).sample(conns, min(100, len(conns)))
    answers = await asyncio.gather(*(c.request("9900302.00") for c in sample))
    alive = sum(1 for a in answers if a.startswith(b"98"))
    for conn in conns + [warm]:
        conn.transport.close()
    return {
        "before": before,
        "after": after,
        "opened": opened,
        "alive": alive,
        "sample": len(sample),
        "threads": _threads(gateway.pid),
    }


def _threads(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--idle", type=float, default=5.0, help="seconds idle before measuring")
    parser.add_argument("--engine", choices=ENGINES, default="sqlite")
    parser.add_argument("--postgresql", metavar="URL", help="an empty PostgreSQL database")
    parser.add_argument("--connect-concurrency", type=int, default=200)
    parser.add_argument("--user", default="joe")
    parser.add_argument("--password", default="joes")
    parser.add_argument("--no-ceiling", action="store_true", help="skip the ceiling's run")
    args = parser.parse_args(argv)
    need = args.connections + 512
    soft = raise_nofile(need)
    if soft < need:
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        parser.error(
            f"{args.connections} connections need {need} open files here, the limit is {soft} "
            f"(hard limit {hard}: raise it with 'ulimit -Hn' as root, or use fewer connections)"
        )
    pin_self({1})
    ceiling_result = None
    if not args.no_ceiling:
        with Ceiling(nofile=need) as ceiling:
            ceiling_result = asyncio.run(run(ceiling, args))
    with tempfile.TemporaryDirectory(prefix="kgw-idle-") as tmp:
        workdir = Path(tmp)
        with database(args.engine, workdir, args.postgresql) as url:
            gwdir = workdir / "gateway"
            gwdir.mkdir()
            gateway = BenchGateway(gwdir, url, cpus="0", nofile=need)
            gateway.start()
            try:
                result = asyncio.run(run(gateway, args))
            finally:
                gateway.stop()
    columns = [("gateway", result)] + ([("ceiling", ceiling_result)] if ceiling_result else [])
    print(f"\nidle connections: {args.connections} logged-in RAW connections on {args.engine}")
    print(f"  {'':<24}" + "".join(f"{name:>12}" for name, _ in columns))

    def row(name, value):
        print(f"  {name:<24}" + "".join(f"{value(r):>12}" for _, r in columns))

    row("opened and logged in s", lambda r: f"{r['opened']:.1f}")
    row("RSS before MiB", lambda r: f"{r['before'] / 1024:.1f}")
    row(f"RSS after {args.idle:g}s idle MiB", lambda r: f"{r['after'] / 1024:.1f}")
    row("per connection KiB", lambda r: f"{(r['after'] - r['before']) / args.connections:.1f}")
    row("threads", lambda r: r["threads"])
    row("still served (99)", lambda r: f"{r['alive']}/{r['sample']}")
    return 0 if result["alive"] == result["sample"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
