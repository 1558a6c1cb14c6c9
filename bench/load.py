#!/usr/bin/env python3
"""Load client: the gateway and the canned-answer ceiling, measured in the same run.

An independent asyncio process (one event loop, never a thread per connection) pinned to core
1; the targets run on core 0 (``taskset -c 0``): first the ceiling (``bench/ceiling.py``), then
the gateway on each engine asked for, each on a fresh database with the demo data set plus one
patron (password ``1234``) and one item per connection. Every table shows the ceiling's figure,
the gateway's, and the gateway's as a share of the ceiling's.

Modes:

``saturation``
    ``--connections`` (50) logged-in connections send back to back, each waiting for its
    answer before the next request, the mix ``63 (with AD), 17, 23 (with AD), 99`` for their
    own patron and item. Printed: messages a second, p50/p99/max latency (send to answer),
    CPU of the target per message, errors.
``rate``
    ``--connections`` (1000) logged-in connections each send the same mix at ``--rate`` (1)
    messages a second, started evenly spread over the first interval. Latency runs from the
    moment a message was *due* (no coordinated omission): a target that falls behind shows it.
``pairs``
    ``--connections`` (50) connections send checkout (11) + checkin (09) of their own item for
    their own patron back to back; printed in pairs a second. By default every connection logs
    in with its OWN SIP account (``sc0000`` ...): the gateway's request journal serialises the
    writes of one terminal (SIP account + peer address), and all connections of the machine
    come from 127.0.0.1. ``--shared-account`` logs them all in as ``joe`` to show the difference.
``workers``
    saturation against a SQLite gateway started with ``--workers N`` for each N of
    ``--workers 1,2`` (the ceiling stays one process). On a 2-core machine the load client
    shares the second core with the second worker: read the table as such.

Requests carry error detection (``AY<n>AZ<checksum>``) unless ``--no-error-detection``; every
answer is checked: its code (``64``, ``18``, ``24``, ``98``, ``121``, ``101``), ``CQY`` where AD
was sent, the echoed sequence number and its checksum. A wrong answer counts as an error.

    python bench/load.py saturation [--engines sqlite,postgresql,mysql] [--seconds 10]
    python bench/load.py rate --connections 2000 [--engines sqlite]
    python bench/load.py pairs [--shared-account] [--engines postgresql,mysql]
    python bench/load.py workers [--workers 1,2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (  # noqa: E402
    KIOSK_PATRON_PASSWORD,
    BenchGateway,
    Ceiling,
    accounts_customiser,
    add_accounts,
    add_kiosks,
    database,
    kiosk_item,
    kiosk_patron,
    percentile,
    pin_self,
    raise_nofile,
)

from koha_gateway.sip2.checksum import checksum, verify  # noqa: E402

BLANK = " " * 18
TIMEOUT = 30.0
#: The password all SIP accounts of ``pairs`` share (one bcrypt check for all their logins).
ACCOUNT_PASSWORD = "bench-account"

# -- requests and answers ------------------------------------------------------------------------

_stamp = [0, ""]


def stamp() -> str:
    """A SIP2 transaction date for now (local time), computed once a second."""
    now = int(time.time())
    if now != _stamp[0]:
        _stamp[0] = now
        _stamp[1] = time.strftime("%Y%m%d    %H%M%S", time.localtime(now))
    return _stamp[1]


def frame(text: str, seq: int | None) -> bytes:
    """The bytes of one request: ``text``, with ``AY<seq>AZ<checksum>`` when ``seq`` is given,
    and the CR that ends a SIP2 message."""
    data = text.encode("utf-8")
    if seq is not None:
        data += b"AY%dAZ" % seq
        data += checksum(data).encode("ascii")
    return data + b"\r"


def check(answer: bytes, expect: bytes, seq: int | None, contains: bytes = b"") -> str | None:
    """``None`` when ``answer`` (terminator removed) is the expected one, else what is wrong:
    it must start with ``expect``, hold ``contains``, and, when the request carried sequence
    number ``seq``, end with ``AY<seq>AZ<checksum>`` and a correct checksum."""
    if not answer.startswith(expect):
        text = answer.decode("utf-8", "replace")
        screen = [f for f in text.split("|") if f.startswith("AF")]
        return f"expected {expect.decode()}..., got {text[:24]}" + (
            f" ({screen[0][2:]})" if screen else ""
        )
    if contains and contains not in answer:
        return f"no {contains.decode()} in {answer[:60].decode('utf-8', 'replace')}"
    if seq is not None:
        n = len(answer)
        if n < 9 or answer[n - 9 : n - 7] != b"AY" or answer[n - 7] != 0x30 + seq:
            return f"sequence {seq} not echoed: ...{answer[-12:].decode('utf-8', 'replace')}"
        if not verify(answer):
            return f"bad checksum: ...{answer[-12:].decode('utf-8', 'replace')}"
    return None


@dataclass(frozen=True)
class Step:
    """One request of a connection's cycle: ``build()`` gives its text."""

    kind: str
    build: Callable[[], str]
    expect: bytes
    contains: bytes = b""


def mix(n: int, password: str = KIOSK_PATRON_PASSWORD) -> list[Step]:
    """The saturation and rate mix for connection ``n``: 63 with AD, 17, 23 with AD, 99."""
    patron, item = kiosk_patron(n), kiosk_item(n)
    return [
        Step(
            "63",
            lambda: f"63001{stamp()}          AOWEL|AA{patron}|AC|AD{password}|",
            b"64",
            b"|CQY|",
        ),
        Step("17", lambda: f"17{stamp()}AOWEL|AB{item}|AC|", b"18"),
        Step("23", lambda: f"23001{stamp()}AOWEL|AA{patron}|AC|AD{password}|", b"24", b"|CQY|"),
        Step("99", lambda: "9900302.00", b"98"),
    ]


def pair(n: int) -> list[Step]:
    """Checkout then checkin of connection ``n``'s own item for its own patron."""
    patron, item = kiosk_patron(n), kiosk_item(n)

    def checkin():
        now = stamp()
        return f"09N{now}{now}AOWEL|AB{item}|AC|"

    return [
        Step("11", lambda: f"11YN{stamp()}{BLANK}AOWEL|AA{patron}|AB{item}|AC|", b"121"),
        Step("09", checkin, b"101"),
    ]


# -- connections ---------------------------------------------------------------------------------


class Connection(asyncio.Protocol):
    """One RAW SIP2 connection. Answers (CR or CR LF terminated) go to ``on_answer`` when set,
    else to the future of the pending :meth:`request`."""

    def __init__(self, error_detection: bool = True):
        self.transport = None
        self.error_detection = error_detection
        self.seq = 0
        self.on_answer: Callable[[bytes], None] | None = None
        self.on_lost: Callable[[], None] | None = None
        self.lost = False
        self._buffer = b""
        self._waiter: asyncio.Future | None = None

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        if self._buffer:
            data = self._buffer + data
        if b"\r" not in data:
            self._buffer = data
            return
        *lines, self._buffer = data.split(b"\r")
        for line in lines:
            if line[:1] == b"\n":
                line = line[1:]
            if not line:
                continue
            if self.on_answer is not None:
                self.on_answer(line)
            elif self._waiter is not None and not self._waiter.done():
                self._waiter.set_result(line)

    def connection_lost(self, exc):
        self.lost = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(ConnectionError("connection closed by the server"))
        if self.on_lost is not None:
            self.on_lost()

    def send(self, text: str) -> int | None:
        """Write one request; returns the sequence number it carries (None: no AY/AZ)."""
        if self.error_detection:
            seq = self.seq
            self.seq = (seq + 1) % 10
        else:
            seq = None
        self.transport.write(frame(text, seq))
        return seq

    async def request(self, text: str, timeout: float = TIMEOUT) -> tuple[bytes, int | None]:
        if self.lost:
            raise ConnectionError("connection closed by the server")
        self._waiter = asyncio.get_running_loop().create_future()
        seq = self.send(text)
        return await asyncio.wait_for(self._waiter, timeout), seq

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def connect(
    port: int,
    limit: asyncio.Semaphore,
    user: str,
    password: str,
    error_detection: bool = True,
    host: str = "127.0.0.1",
) -> Connection:
    """A connection logged in with 93 (``941`` expected)."""
    loop = asyncio.get_running_loop()
    async with limit:
        for attempt in range(5):
            try:
                _, conn = await loop.create_connection(
                    lambda: Connection(error_detection), host, port
                )
                break
            except OSError:
                if attempt == 4:
                    raise
                await asyncio.sleep(0.2 * (attempt + 1))
        answer, seq = await conn.request(f"9300CN{user}|CO{password}|CP|")
        problem = check(answer, b"941", seq)
        if problem:
            conn.close()
            raise RuntimeError(f"login of {user} refused: {problem}")
        return conn


async def connect_all(port: int, logins: list[tuple[str, str]], error_detection=True):
    limit = asyncio.Semaphore(200)
    return await asyncio.gather(
        *(connect(port, limit, user, pw, error_detection) for user, pw in logins)
    )


# -- figures -------------------------------------------------------------------------------------


@dataclass
class Result:
    """The figures of one target in one mode."""

    target: str
    messages: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list, repr=False)
    errors: int = 0
    first_errors: list[str] = field(default_factory=list)
    cpu_seconds: float = float("nan")
    per_message: int = 1  # 2 in pairs: the rate is counted in pairs

    def error(self, detail: str) -> None:
        self.errors += 1
        if len(self.first_errors) < 5:
            self.first_errors.append(detail)

    @property
    def rate(self) -> float:
        return self.messages / self.seconds / self.per_message if self.seconds else 0.0

    def pct(self, p: float) -> float:
        return percentile(self.latencies, p) * 1000

    @property
    def max_ms(self) -> float:
        return max(self.latencies) * 1000 if self.latencies else float("nan")

    @property
    def cpu_us(self) -> float:
        return self.cpu_seconds / self.messages * 1e6 if self.messages else float("nan")

    @property
    def cpu_share(self) -> float:
        return self.cpu_seconds / self.seconds if self.seconds else float("nan")


class BackToBack:
    """One connection sending its cycle of steps back to back, driven from its callbacks."""

    def __init__(self, conn: Connection, steps: list[Step], result: Result, window: list[float]):
        self.conn = conn
        self.steps = steps
        self.result = result
        self.window = window  # [start, end] of the measured time (perf_counter)
        self.i = 0
        self.stopping = False
        self.sent_at = 0.0
        self.seq: int | None = None
        self.done = asyncio.get_running_loop().create_future()
        conn.on_answer = self.answered
        conn.on_lost = self.lost

    def send(self) -> None:
        self.sent_at = time.perf_counter()
        self.seq = self.conn.send(self.steps[self.i].build())

    def answered(self, line: bytes) -> None:
        now = time.perf_counter()
        step = self.steps[self.i]
        start, end = self.window
        if start <= now < end:
            result = self.result
            result.messages += 1
            result.latencies.append(now - self.sent_at)
            problem = check(line, step.expect, self.seq, step.contains)
            if problem:
                result.error(f"{step.kind}: {problem}")
        self.i = (self.i + 1) % len(self.steps)
        if self.stopping and self.i == 0:  # whole cycles: a checkout is always checked in
            if not self.done.done():
                self.done.set_result(None)
            return
        self.send()

    def lost(self) -> None:
        if not self.done.done():
            self.result.error("connection closed by the server")
            self.done.set_result(None)


async def back_to_back(
    port: int,
    target: str,
    logins: list[tuple[str, str]],
    cycles: list[list[Step]],
    seconds: float,
    warmup: float,
    *,
    error_detection: bool = True,
    cpu: Callable[[], float] | None = None,
    per_message: int = 1,
) -> Result:
    """Connect and log in ``logins``, then send each connection's cycle back to back for
    ``warmup`` + ``seconds``; the figures cover the last ``seconds``."""
    conns = await connect_all(port, logins, error_detection)
    result = Result(target, per_message=per_message)
    now = time.perf_counter()
    window = [now + warmup, now + warmup + seconds]
    drivers = [BackToBack(c, steps, result, window) for c, steps in zip(conns, cycles)]
    for driver in drivers:
        driver.send()
    await asyncio.sleep(warmup)
    cpu_before = cpu() if cpu else None
    await asyncio.sleep(max(0.0, window[1] - time.perf_counter()))
    if cpu:
        result.cpu_seconds = cpu() - cpu_before
    result.seconds = seconds
    for driver in drivers:
        driver.stopping = True
    done, pending = await asyncio.wait([d.done for d in drivers], timeout=TIMEOUT)
    for _ in pending:
        result.error("no answer within the time limit")
    for conn in conns:
        conn.close()
    return result


async def at_rate(
    port: int,
    target: str,
    logins: list[tuple[str, str]],
    cycles: list[list[Step]],
    seconds: float,
    rate: float,
    warmup: float = 0.0,
    *,
    error_detection: bool = True,
    cpu: Callable[[], float] | None = None,
) -> Result:
    """Every connection sends the next step of its cycle at ``rate`` a second for ``warmup`` +
    ``seconds``; latency from the moment each message was due. The figures cover the messages
    due in the last ``seconds``: the first ones pay for what a gateway does once after a start
    (its database connections, the reference cache, the first bcrypt check of the kiosks'
    shared patron password hash), which a fleet in its steady state does not see."""
    conns = await connect_all(port, logins, error_detection)
    result = Result(target)
    loop = asyncio.get_running_loop()
    interval = 1.0 / rate
    first = loop.time() + 0.5
    start = first + warmup
    end = start + seconds
    count = len(conns)
    cpu_at: list[float] = []
    if cpu:
        loop.call_at(start, lambda: cpu_at.append(cpu()))

    async def drive(n: int, conn: Connection, steps: list[Step]) -> None:
        due = first + interval * n / count
        i = n % len(steps)
        while due < end:
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            step = steps[i]
            try:
                answer, seq = await conn.request(step.build())
            except (TimeoutError, ConnectionError) as exc:
                result.error(f"{step.kind}: {type(exc).__name__} {exc}")
                return
            if due >= start:
                result.messages += 1
                result.latencies.append(loop.time() - due)
            problem = check(answer, step.expect, seq, step.contains)
            if problem:
                result.error(f"{step.kind}: {problem}")
            i = (i + 1) % len(steps)
            due += interval

    await asyncio.sleep(max(0.0, first - loop.time()))
    await asyncio.gather(*(drive(n, c, s) for n, (c, s) in enumerate(zip(conns, cycles))))
    result.seconds = loop.time() - start
    if cpu:
        result.cpu_seconds = cpu() - cpu_at[0]
    for conn in conns:
        conn.close()
    return result


# -- one run: ceiling and gateway ----------------------------------------------------------------


@dataclass
class Plan:
    """What a mode sends: logins and cycles per connection, and how it is driven."""

    mode: str
    connections: int
    seconds: float
    warmup: float = 2.0
    rate: float = 1.0
    shared_account: bool = False
    error_detection: bool = True

    def logins(self) -> list[tuple[str, str]]:
        if self.mode == "pairs" and not self.shared_account:
            return [(f"sc{n:04d}", ACCOUNT_PASSWORD) for n in range(self.connections)]
        return [("joe", "joes")] * self.connections

    def cycles(self) -> list[list[Step]]:
        build = pair if self.mode == "pairs" else mix
        return [build(n) for n in range(self.connections)]

    async def measure(self, port: int, target: str, cpu=None) -> Result:
        if self.mode == "rate":
            return await at_rate(
                port,
                target,
                self.logins(),
                self.cycles(),
                self.seconds,
                self.rate,
                self.warmup,
                error_detection=self.error_detection,
                cpu=cpu,
            )
        return await back_to_back(
            port,
            target,
            self.logins(),
            self.cycles(),
            self.seconds,
            self.warmup,
            error_detection=self.error_detection,
            cpu=cpu,
            per_message=2 if self.mode == "pairs" else 1,
        )

    def describe(self) -> str:
        what = {
            "saturation": "back to back, mix 63(AD) 17 23(AD) 99",
            "workers": "back to back, mix 63(AD) 17 23(AD) 99",
            "rate": f"{self.rate:g} msg/s each, mix 63(AD) 17 23(AD) 99, latency from due",
            "pairs": "back to back checkout+checkin of their own item, "
            + ("all as joe" if self.shared_account else "each its own SIP account"),
        }[self.mode]
        ed = "with" if self.error_detection else "without"
        return (
            f"{self.connections} connections, {what}, {self.seconds:g}s measured after "
            f"{self.warmup:g}s warm-up, {ed} AY/AZ"
        )


def measure(plan: Plan, port: int, target: str, cpu=None) -> Result:
    return asyncio.run(plan.measure(port, target, cpu))


def prepare(url: str, plan: Plan):
    """Kiosk patrons and items (and, for ``pairs``, SIP accounts) in the database at ``url``;
    returns the SIPconfig customiser the gateway needs for them (or None)."""
    add_kiosks(url, plan.connections, password=KIOSK_PATRON_PASSWORD)
    if plan.mode == "pairs" and not plan.shared_account:
        return accounts_customiser(add_accounts(url, plan.connections, password=ACCOUNT_PASSWORD))
    return None


def gateway_for(
    workdir: Path,
    url: str,
    plan: Plan,
    customise=None,
    *,
    cpus: str | None = "0",
    workers: int = 1,
    extra_args=(),
) -> BenchGateway:
    """A gateway (not started) serving ``url`` for ``plan``, with ``--workers`` when > 1."""
    workdir.mkdir(parents=True, exist_ok=True)
    extra = list(extra_args) + (["--workers", str(workers)] if workers > 1 else [])
    return BenchGateway(
        workdir,
        url,
        cpus=cpus,
        nofile=max(65536, plan.connections + 1024),
        customise=customise,
        extra_args=extra,
    )


# -- printing ------------------------------------------------------------------------------------


def table(plan: Plan, rows: list[tuple[str, Result, Result]]) -> str:
    """``rows``: (label, ceiling result, gateway result) of the same run."""
    unit = "pairs/s" if plan.mode == "pairs" else "msg/s"
    header = (
        f"{'target':<26}{unit:>9}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"
        f"{'CPU':>6}{'µs/msg':>8}{'errors':>7}  gateway/ceiling (wall, per CPU s)"
    )
    lines = [f"\n{plan.mode}: {plan.describe()}", header]
    printed_ceilings: set[int] = set()
    for label, ceiling, gateway in rows:
        for r in (ceiling, gateway):
            if r is ceiling and id(r) in printed_ceilings:
                continue
            printed_ceilings.add(id(ceiling))
            if r is gateway:
                if plan.mode == "rate":
                    ratio = f"p99 x{gateway.pct(99) / ceiling.pct(99):.1f}"
                else:
                    ratio = f"{share(gateway, ceiling):.3f}, {cpu_share(gateway, ceiling):.3f}"
            else:
                ratio = ""
            lines.append(
                f"{(r.target if r is ceiling else label):<26}{r.rate:>9.0f}{r.pct(50):>9.2f}"
                f"{r.pct(99):>9.2f}{r.max_ms:>9.1f}{r.cpu_share * 100:>5.0f}%{r.cpu_us:>8.0f}"
                f"{r.errors:>7}  {ratio}"
            )
    for _label, ceiling, gateway in rows:
        for r in (ceiling, gateway):
            for line in r.first_errors:
                lines.append(f"  {r.target}: {line}")
    return "\n".join(lines)


def share(gateway: Result, ceiling: Result) -> float:
    """The gateway's messages a second as a share of the ceiling's (wall clock)."""
    return gateway.rate / ceiling.rate if ceiling.rate else float("nan")


def cpu_share(gateway: Result, ceiling: Result) -> float:
    """The gateway's messages per second of its CPU time as a share of the ceiling's: what one
    core can answer, whatever else the machine runs. At saturation the ceiling's wall-clock
    rate is bounded by this load client (one Python process), not by the ceiling's core."""
    if not (gateway.cpu_us > 0 and ceiling.cpu_us > 0):
        return float("nan")
    return ceiling.cpu_us / gateway.cpu_us


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


# -- command line --------------------------------------------------------------------------------


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=("saturation", "rate", "pairs", "workers"))
    parser.add_argument("--engines", default="sqlite", help="sqlite,postgresql,mysql")
    parser.add_argument("--postgresql", metavar="URL", help="an empty PostgreSQL database")
    parser.add_argument("--connections", type=int, help="default 50; rate: 1000")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured time (default 10)")
    parser.add_argument(
        "--warmup", type=float, default=2.0, help="warm-up seconds, not measured (default 2)"
    )
    parser.add_argument("--rate", type=float, default=1.0, help="rate: messages a second each")
    parser.add_argument("--shared-account", action="store_true", help="pairs: all log in as joe")
    parser.add_argument("--no-error-detection", action="store_true", help="no AY/AZ")
    parser.add_argument("--workers", default="1,2", help="workers: the values of N (1,2)")
    parser.add_argument("--target-cpus", default="0", help="taskset list of the targets (0)")
    parser.add_argument("--client-cpu", type=int, default=1, help="core of this client (1)")
    parser.add_argument("--gateway-arg", action="append", default=[], help="passed to the gateway")
    parser.add_argument(
        "--url-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="added to the gateway's database URL (e.g. inline_reads=off on SQLite)",
    )
    args = parser.parse_args(argv)
    connections = args.connections or (1000 if args.mode == "rate" else 50)
    plan = Plan(
        args.mode,
        connections,
        args.seconds,
        warmup=args.warmup,
        rate=args.rate,
        shared_account=args.shared_account,
        error_detection=not args.no_error_detection,
    )
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    if args.mode == "workers":
        engines = engines[:1]
    for engine in engines:
        if engine not in ("sqlite", "postgresql", "mysql"):
            parser.error(f"unknown engine {engine!r}")
    counts = [int(n) for n in args.workers.split(",")] if args.mode == "workers" else [1]
    raise_nofile(2 * connections + 1024)
    pinned = pin_self({args.client_cpu})
    print(
        f"load client {'on cpu ' + str(args.client_cpu) if pinned else 'unpinned'}, "
        f"targets on cpu {args.target_cpus}; {os.cpu_count()} cores",
        flush=True,
    )
    rows: list[tuple[str, Result, Result]] = []
    failed = False
    with tempfile.TemporaryDirectory(prefix="kgw-load-") as tmp:
        ceiling = Ceiling(cpus=args.target_cpus, nofile=max(65536, connections + 1024))
        ceiling.start()
        try:
            for engine in engines:
                workdir = Path(tmp) / engine
                workdir.mkdir()
                with database(engine, workdir, args.postgresql) as url:
                    customise = prepare(url, plan)
                    for n in counts:
                        cpus = args.target_cpus
                        if n > 1 and args.target_cpus == "0":
                            cpus = f"0-{min(n, os.cpu_count() or 1) - 1}"
                        gateway_url = url
                        if args.url_option:
                            sep = "&" if "?" in url else "?"
                            gateway_url = url + sep + "&".join(args.url_option)
                        gateway = gateway_for(
                            workdir / f"gateway-{n}",
                            gateway_url,
                            plan,
                            customise,
                            cpus=cpus,
                            workers=n,
                            extra_args=args.gateway_arg,
                        )
                        label = f"gateway {engine}" + (f" --workers {n}" if n > 1 else "")
                        print(f"measuring the ceiling, then {label} ...", flush=True)
                        top = measure(plan, ceiling.port, "ceiling", ceiling.cpu_seconds)
                        gateway.start(timeout=120)
                        try:
                            mine = measure(plan, gateway.ports["raw"], label, gateway.cpu_seconds)
                        finally:
                            gateway.stop()
                        rows.append((label, top, mine))
                        failed |= bool(top.errors or mine.errors)
        finally:
            ceiling.stop()
    print(table(plan, rows))
    if args.mode == "workers" and (os.cpu_count() or 1) <= 2:
        print(
            "  (2 cores: with --workers 2 the second worker shares core 1 with this client; "
            "the ceiling stays one process on core 0)"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
