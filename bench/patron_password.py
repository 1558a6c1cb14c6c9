#!/usr/bin/env python3
"""Benchmark: what a 63 with a patron password (AD) costs, transactions, statements and CPU.

The real protocol adapter, authenticator, gateway and ACS of ``bench/inprocess.py`` (everything
in the calling thread: each transaction runs at once with ``Database.run_blocking``) send one
kind of message over and over after a login: a 63 for the kiosk patron with its right password,
whose credentials the authenticator remembers after the first one (as a kiosk's patrons' are
after their first message). Printed per message: the transactions (each a hop to a database
thread in a running gateway), the SQL statements (each a round trip on PostgreSQL and MariaDB;
``BEGIN``/``COMMIT`` come on top), and the process CPU in microseconds (best of ``--repeat``;
on PostgreSQL and MariaDB the server's own CPU is not in it).

    python bench/patron_password.py [--engines sqlite,postgresql,mysql] [--messages 2000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from twisted.logger import globalLogBeginner, textFileLogObserver  # noqa: E402

from bench import inprocess  # noqa: E402
from bench.harness import add_kiosks, database  # noqa: E402
from koha_gateway import logs  # noqa: E402
from tests.support.statements import recording  # noqa: E402


def measure(url: str, workdir: Path, messages: int, repeat: int) -> dict:
    add_kiosks(url, 1, password=inprocess.PIN)
    # Statements as published (RESULTS.md): the reference data read per request.
    bench = inprocess.Bench(url, workdir, reference_max_age=0)
    try:
        protocol, transport = bench.connect()
        bench.round = [entry for entry in bench.round if entry[0] == "63"]
        bench.rounds(protocol, transport, 3)  # the first one runs bcrypt
        transactions = []
        run = bench.sync.run

        def counted(fn, *args, **kw):
            transactions.append(fn)
            return run(fn, *args, **kw)

        bench.sync.run = counted
        with recording() as statements:
            bench.rounds(protocol, transport, 100)
        bench.sync.run = run
        cpu = [bench.measure(protocol, transport, messages) for _ in range(repeat)]
        return {
            "transactions": len(transactions) / 100,
            "statements": len(statements) / 100,
            "cpu": min(cpu),
            "runs": cpu,
        }
    finally:
        bench.real.close()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engines", default="sqlite")
    parser.add_argument("--messages", type=int, default=2000, help="messages per CPU run")
    parser.add_argument("--repeat", type=int, default=5, help="CPU runs (the best is shown)")
    args = parser.parse_args(argv)
    print(f"{'engine':<12}{'transactions':>14}{'statements':>12}{'CPU µs/msg':>12}   runs")
    with tempfile.TemporaryDirectory(prefix="kgw-password-") as tmp:
        # Logging as twistd sets it up at info (bench/inprocess.py).
        twistd_log = open(Path(tmp) / "twistd.log", "a")  # noqa: SIM115
        globalLogBeginner.beginLoggingTo(
            [textFileLogObserver(twistd_log)], redirectStandardIO=False
        )
        observers = logs.install(str(Path(tmp) / "sip.log"), str(Path(tmp) / "error.log"), "info")
        try:
            for name in [e.strip() for e in args.engines.split(",") if e.strip()]:
                workdir = Path(tmp) / name
                workdir.mkdir()
                with database(name, workdir) as url:
                    got = measure(url, workdir, args.messages, args.repeat)
                runs = ", ".join(f"{r:.0f}" for r in got["runs"])
                print(
                    f"{name:<12}{got['transactions']:>14.1f}{got['statements']:>12.1f}"
                    f"{got['cpu']:>12.1f}   {runs}",
                    flush=True,
                )
        finally:
            logs.uninstall(observers)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
