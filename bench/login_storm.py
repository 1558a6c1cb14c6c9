#!/usr/bin/env python3
"""Benchmark: thousands of kiosks logging in at the same moment after a gateway restart.

The target (docs/architecture.md, "design for what is coming"): after a restart every kiosk
of a library system reconnects and sends its 93 Login at once; bcrypt (Koha's cost 10, tens of
milliseconds) must not turn that into minutes. The authenticator remembers verified
credentials and lets identical checks in flight share one bcrypt computation, so the storm
costs one bcrypt per distinct SIP account, not one per kiosk.

A fresh database gets the demo data set plus ``--accounts`` SIP accounts (staff patrons with
the circulate permission, each with its own bcrypt hash, and a ``<login>`` each in
SIPconfig.xml); kiosks are spread over them round-robin. A freshly started gateway (pinned to
core 0 when the machine has two cores) is hit by ``--kiosks`` kiosks from this process (one
asyncio loop on core 1) that all, at the same moment, open a RAW connection and send their 93
as soon as it is open, as kiosks do when their server comes back. Each kiosk's time runs from
that moment to its 941, so it includes the TCP handshake: when the gateway's listen queue
overflows, the kernel drops handshakes and the kiosk's SYN is retried after 1, 3, 7 ...
seconds; the number of dropped handshakes (``TcpExt: ListenOverflows``) is printed too.

Printed: time until every kiosk had its 941, p50/p99 login latency, refused or missing logins,
and the lower bound set by bcrypt (accounts x one bcrypt / bcrypt threads), beside the same
storm against the ceiling (``ceiling.py``: canned 941, no bcrypt, no database; same core, same
listen queue of 1024, run first in the same run; ``--no-ceiling`` skips it): what the TCP
handshakes and the framing alone cost.

    python bench/login_storm.py [--kiosks 3000] [--accounts 30] [--engine sqlite|postgresql|mysql]
        [--workers N]
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
    ENGINES,
    BenchGateway,
    Ceiling,
    Profiler,
    accounts_customiser,
    add_accounts,
    database,
    listen_overflows,
    percentile,
    pin_self,
    raise_nofile,
)

TIMEOUT = 120.0


class Kiosk(asyncio.Protocol):
    """A RAW connection that sends its 93 when told and notes when the answer came."""

    def __init__(self):
        self.transport = None
        self._buffer = b""
        self.answer: asyncio.Future | None = None

    def connection_made(self, transport):
        self.transport = transport
        self.answer = asyncio.get_running_loop().create_future()

    def data_received(self, data):
        self._buffer += data
        if b"\r" in self._buffer and not self.answer.done():
            line = self._buffer.partition(b"\r")[0].lstrip(b"\n")
            self.answer.set_result((time.perf_counter(), line))

    def connection_lost(self, exc):
        if self.answer is not None and not self.answer.done():
            self.answer.set_exception(ConnectionError("closed by the gateway"))


async def storm_one(port: int, login: bytes, start: float) -> tuple[float, bytes]:
    """Connect (retrying refused connections), send the 93, return (seconds, answer)."""
    loop = asyncio.get_running_loop()
    for attempt in range(8):
        try:
            transport, kiosk = await loop.create_connection(Kiosk, "127.0.0.1", port)
            break
        except OSError:
            if attempt == 7:
                raise
            await asyncio.sleep(0.1 * (attempt + 1))
    try:
        transport.write(login)
        at, line = await asyncio.wait_for(kiosk.answer, TIMEOUT)
    finally:
        transport.close()
    return at - start, line


async def run(gateway, args, accounts) -> dict:
    logins = [
        f"9300CN{user}|CO{password}|CP|\r".encode()
        for user, password in (accounts[n % len(accounts)] for n in range(args.kiosks))
    ]
    overflows = listen_overflows()
    port = gateway.ports["raw"]
    cpu, own_cpu = gateway.cpu_seconds(), time.process_time()
    start = time.perf_counter()
    results = await asyncio.gather(
        *(storm_one(port, login, start) for login in logins), return_exceptions=True
    )
    cpu, own_cpu = gateway.cpu_seconds() - cpu, time.process_time() - own_cpu
    overflows = listen_overflows() - overflows if overflows >= 0 else -1
    latencies, refused, lost = [], 0, 0
    first_problem = None
    for result in results:
        if isinstance(result, BaseException):
            lost += 1
            first_problem = first_problem or repr(result)
            continue
        seconds, line = result
        if line.startswith(b"941"):
            latencies.append(seconds)
        else:
            refused += 1
            first_problem = first_problem or repr(line[:60])
    return {
        "overflows": overflows,
        "latencies": sorted(latencies),
        "refused": refused,
        "lost": lost,
        "first_problem": first_problem,
        "cpu": cpu,
        "client_cpu": own_cpu,
    }


def bcrypt_seconds() -> float:
    """One bcrypt check at Koha's cost, on this machine."""
    from koha_gateway.auth.passwords import hash_password, verify_password

    stored = hash_password("probe")
    began = time.perf_counter()
    for _ in range(3):
        verify_password("probe", stored)
    return (time.perf_counter() - began) / 3


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kiosks", type=int, default=3000)
    parser.add_argument("--accounts", type=int, default=30, help="distinct SIP accounts")
    parser.add_argument("--engine", choices=ENGINES, default="sqlite")
    parser.add_argument("--postgresql", metavar="URL", help="an empty PostgreSQL database")
    parser.add_argument("--bcrypt-threads", type=int, default=2, help="the authenticator's pool")
    parser.add_argument(
        "--backlog", type=int, help="experiment: listen queue length for the gateway's listeners"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="gateway processes (--workers N); more than one are not pinned to a core",
    )
    parser.add_argument("--profile", metavar="FILE", help="sample the gateway with py-spy")
    parser.add_argument("--py-spy", metavar="PATH", help="py-spy executable (default: $PATH)")
    parser.add_argument("--no-ceiling", action="store_true", help="skip the ceiling's run")
    args = parser.parse_args(argv)
    if args.accounts < 1:
        parser.error("--accounts must be at least 1")
    raise_nofile(args.kiosks + 512)
    pin_self({1})
    ceiling_result = None
    if not args.no_ceiling:
        accounts = [(f"sc{n:04d}", f"pw-sc{n:04d}") for n in range(args.accounts)]
        with Ceiling(nofile=args.kiosks + 512) as ceiling:
            ceiling_result = asyncio.run(run(ceiling, args, accounts))
    with tempfile.TemporaryDirectory(prefix="kgw-storm-") as tmp:
        workdir = Path(tmp)
        with database(args.engine, workdir, args.postgresql) as url:
            accounts = add_accounts(url, args.accounts)
            gwdir = workdir / "gateway"
            gwdir.mkdir()
            gateway = BenchGateway(
                gwdir,
                url,
                cpus="0" if args.workers == 1 else None,
                extra_args=["--workers", str(args.workers)] if args.workers > 1 else [],
                nofile=args.kiosks + 512,
                customise=accounts_customiser(accounts),
                backlog=args.backlog,
            )
            gateway.start()
            profiler = None
            try:
                if args.profile:
                    profiler = Profiler(gateway.pid, Path(args.profile), args.py_spy)
                result = asyncio.run(run(gateway, args, accounts))
            finally:
                if profiler is not None:
                    profiler.stop()
                gateway.stop()
    bound = args.accounts * bcrypt_seconds() / max(1, args.bcrypt_threads)
    print(
        f"\nlogin storm: {args.kiosks} kiosks over {args.accounts} SIP accounts on {args.engine}, "
        "all 93s written at once"
        + (f", {args.workers} gateway processes" if args.workers > 1 else "")
        + (f" (experiment: listen backlog {args.backlog})" if args.backlog else "")
    )
    columns = [("gateway", result)] + ([("ceiling", ceiling_result)] if ceiling_result else [])
    print(f"  {'':<24}" + "".join(f"{name:>12}" for name, _ in columns))

    def row(name, value):
        print(f"  {name:<24}" + "".join(f"{value(r):>12}" for _, r in columns))

    def ms(r, pct):
        lat = r["latencies"]
        if not lat:
            return "-"
        return f"{(lat[-1] if pct == 100 else percentile(lat, pct)) * 1000:.0f}"

    row("handshakes dropped", lambda r: r["overflows"])
    row("941 answers", lambda r: f"{len(r['latencies'])}/{args.kiosks}")
    row("time to all 941 ms", lambda r: ms(r, 100))
    row("login latency p50 ms", lambda r: ms(r, 50))
    row("login latency p99 ms", lambda r: ms(r, 99))
    row("refused / no answer", lambda r: f"{r['refused']} / {r['lost']}")
    print(
        f"  CPU seconds            gateway {result['cpu']:.2f} "
        f"({result['cpu'] * 1e6 / args.kiosks:.0f} µs a login), "
        f"load client {result['client_cpu']:.2f}"
    )
    print(
        f"  bcrypt lower bound     {bound * 1000:.0f} ms ({args.accounts} accounts x one bcrypt "
        f"/ {args.bcrypt_threads} threads)"
    )
    for name, r in columns:
        if r["first_problem"]:
            print(f"    {name}, first problem: {r['first_problem']}")
    if profiler is not None:
        print(f"\ngateway profile (py-spy, {args.profile}):\n{profiler.summary()}")
    return 0 if len(result["latencies"]) == args.kiosks else 1


if __name__ == "__main__":
    raise SystemExit(main())
