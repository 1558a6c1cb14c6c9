#!/usr/bin/env python3
"""CI guard: the gateway's SQLite saturation throughput as a share of the ceiling's.

Never an absolute time: the ceiling (``bench/ceiling.py``, canned answers) and the gateway (a
fresh SQLite demo database) are measured by the same load client (``bench/load.py``,
``saturation`` mode: 50 connections back to back, mix 63 with AD, 17, 23 with AD, 99) in the
same run, round after round: ceiling, then gateway, ``--rounds`` times, each after a short
warm-up. The guard takes the median of the rounds, so one round disturbed by another process
does not decide.

The share of a round is the throughput per second of CPU: the gateway's messages per CPU
second of its process divided by the ceiling's (equal to the ceiling's CPU per message divided
by the gateway's), i.e. the saturation throughput of one core of each. The wall-clock share
(messages a second over messages a second) is printed too but not judged: at saturation the
ceiling's wall-clock rate is bounded by the load client (one Python process answering needs
about as much CPU as the ceiling), so on a shared 2-core machine it swings by a factor of three
from round to round with whatever else runs on the client's core, while the CPU-based share
stays within a few per cent.

The guard fails (exit status 1) when that median falls below half of the share recorded in
``bench/RESULTS.md``, in its fenced ``guard`` block::

    ```guard
    sqlite saturation share: 0.180
    ```

``--write`` records the share just measured there instead (after a measurement on a quiet
machine). About 40 seconds on a 2-core machine (``make bench-guard``).

    python bench/guard.py [--rounds 5] [--seconds 2] [--results bench/RESULTS.md] [--write]
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import load  # noqa: E402
from harness import Ceiling, database, pin_self  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
KEY = "sqlite saturation share"
#: The guard fails below this fraction of the recorded share.
TOLERANCE = 0.5

_BLOCK = re.compile(r"^```guard[ \t]*\n(.*?)^```", re.MULTILINE | re.DOTALL)


class GuardError(ValueError):
    """The results file has no usable guard block."""


def recorded_shares(text: str) -> dict[str, float]:
    """The ``name: value`` lines of the fenced ``guard`` block of ``text`` (RESULTS.md)."""
    match = _BLOCK.search(text)
    if match is None:
        raise GuardError("no ```guard block in the results file")
    values: dict[str, float] = {}
    for number, line in enumerate(match.group(1).splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise GuardError(f"guard block line {number}: expected 'name: value', got {line!r}")
        try:
            values[name.strip()] = float(value)
        except ValueError:
            raise GuardError(f"guard block line {number}: {value.strip()!r} is no number") from None
    return values


def recorded_share(text: str, key: str = KEY) -> float:
    values = recorded_shares(text)
    if key not in values:
        raise GuardError(f"no {key!r} in the guard block")
    if not values[key] > 0:
        raise GuardError(f"{key!r} must be above 0, not {values[key]}")
    return values[key]


def with_share(text: str, share: float, key: str = KEY) -> str:
    """``text`` with the guard block's ``key`` set to ``share`` (the block added if missing)."""
    line = f"{key}: {share:.3f}"
    match = _BLOCK.search(text)
    if match is None:
        return text.rstrip("\n") + f"\n\n```guard\n{line}\n```\n"
    body = match.group(1)
    pattern = re.compile(rf"^{re.escape(key)}[ \t]*:.*$", re.MULTILINE)
    body = pattern.sub(line, body, count=1) if pattern.search(body) else body + line + "\n"
    return text[: match.start(1)] + body + text[match.end(1) :]


def decide(measured: list[float], recorded: float, tolerance: float = TOLERANCE):
    """``(ok, message)``: the median of the ``measured`` round shares against ``recorded``."""
    if not measured:
        return False, "no round measured"
    median = statistics.median(measured)
    floor = recorded * tolerance
    rounds = ", ".join(f"{share:.3f}" for share in measured)
    detail = (
        f"gateway/ceiling throughput share per CPU second {median:.3f} "
        f"(median of rounds {rounds}); "
        f"recorded {recorded:.3f}, floor {floor:.3f} ({tolerance:.0%} of it)"
    )
    if median < floor:
        return False, (
            f"FAIL: {detail}. The gateway's SQLite throughput fell below half of its recorded "
            "share of the ceiling: a performance regression (or a machine too busy to "
            "measure: run `make bench-guard` again on a quiet one)"
        )
    return True, f"ok: {detail}"


def measure(rounds: int, seconds: float, warmup: float, connections: int) -> list[dict]:
    """Ceiling then gateway, ``rounds`` times, on one SQLite demo database."""
    plan = load.Plan("saturation", connections, seconds, warmup=warmup)
    out = []
    with tempfile.TemporaryDirectory(prefix="kgw-guard-") as tmp:
        workdir = Path(tmp)
        with database("sqlite", workdir) as url:
            customise = load.prepare(url, plan)
            gateway = load.gateway_for(workdir / "gateway", url, plan, customise)
            with Ceiling() as ceiling:
                gateway.start(timeout=60)
                try:
                    for n in range(rounds):
                        top = load.measure(plan, ceiling.port, "ceiling", ceiling.cpu_seconds)
                        mine = load.measure(
                            plan, gateway.ports["raw"], "gateway", gateway.cpu_seconds
                        )
                        if top.errors or mine.errors:
                            raise RuntimeError(
                                "wrong answers: " + "; ".join(top.first_errors + mine.first_errors)
                            )
                        row = {
                            "ceiling": top.rate,
                            "gateway": mine.rate,
                            "share": load.cpu_share(mine, top),
                            "wall_share": load.share(mine, top),
                            "ceiling_us": top.cpu_us,
                            "gateway_us": mine.cpu_us,
                        }
                        print(
                            f"  round {n + 1}: ceiling {row['ceiling']:7.0f} msg/s "
                            f"({row['ceiling_us']:.0f} µs CPU/msg), gateway "
                            f"{row['gateway']:6.0f} msg/s ({row['gateway_us']:.0f} µs CPU/msg), "
                            f"share {row['share']:.3f} (wall clock {row['wall_share']:.3f})",
                            flush=True,
                        )
                        out.append(row)
                finally:
                    gateway.stop()
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0, help="measured per target and round")
    parser.add_argument("--warmup", type=float, default=0.5, help="per target and round")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--write", action="store_true", help="record the measured share")
    args = parser.parse_args(argv)
    text = args.results.read_text(encoding="utf-8") if args.results.exists() else ""
    recorded = None
    if not args.write:
        try:
            recorded = recorded_share(text)
        except GuardError as exc:
            print(f"bench guard: {args.results}: {exc}", file=sys.stderr)
            return 1
    pin_self({1})
    began = time.monotonic()
    print(
        f"bench guard: {args.rounds} rounds of ceiling then gateway (SQLite), "
        f"{args.seconds:g}s each after {args.warmup:g}s warm-up",
        flush=True,
    )
    rows = measure(args.rounds, args.seconds, args.warmup, args.connections)
    shares = [row["share"] for row in rows]
    walls = [row["wall_share"] for row in rows]
    print(f"  wall-clock share (not judged): median {statistics.median(walls):.3f}")
    if args.write:
        median = statistics.median(shares)
        args.results.write_text(with_share(text, median), encoding="utf-8")
        print(f"bench guard: recorded {KEY}: {median:.3f} in {args.results}")
        return 0
    ok, message = decide(shares, recorded)
    print(f"bench guard ({time.monotonic() - began:.0f}s): {message}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
