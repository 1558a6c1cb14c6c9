#!/usr/bin/env python3
"""The ceiling: a Twisted process answering SIP2 with canned answers (no database, no auth).

Every benchmark of bench/ measures it in the same run as the gateway and prints its figure
beside the gateway's: what one Python process with Twisted's reactor can answer on one core
when a message costs nothing but the network, the framing and the error detection. The
gateway's throughput as a share of this ceiling is a figure that a busy machine disturbs far
less than a rate (both suffer the same load), and the CI guard (``bench/guard.py``) watches it.

It frames input as the gateway does (:class:`koha_gateway.sip2.framing.LineFramer`: CR, CR LF
or LF), checks the ``AY<n>AZ<xxxx>`` error detection of a request that carries it (a wrong
checksum is answered ``96``, as the gateway does) and answers with the request's sequence
number and a correct checksum. The answers are fixed strings of about the gateway's length:

    93 -> 941   99 -> 98...   63 -> 64...   23 -> 24...   17 -> 18...   11 -> 121...
    09 -> 101...   29 -> 301...   35 -> 36Y...   anything else -> 96

Each answer ends with ``--terminator`` (CR by default, as the gateway answers accounts with
``terminator="CR"``; CRLF on request). The process pins itself to ``--cpu`` (as
``taskset -c``), and prints ``ceiling listening on 127.0.0.1:<port>`` once it listens (with
``--port 0`` the kernel picks the port).

    python bench/ceiling.py --port 6001 [--host 127.0.0.1] [--cpu 0] [--terminator cr|crlf]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from koha_gateway.sip2.checksum import checksum, verify  # noqa: E402
from koha_gateway.sip2.framing import LineFramer, LineTooLong  # noqa: E402

DATE = "20261129    120000"

#: Canned answer (without error detection) per request code; the lengths are about those of
#: the gateway's answers for the demo data.
CANNED: dict[bytes, str] = {
    b"93": "941",
    b"99": f"98YYYYNN100003{DATE}2.00AOWEL|AMCentrerville|BXYYYYYYYYYYYYYYYY|AFceiling|",
    b"63": (
        f"64              001{DATE}000000000000000000000000AOWEL|AA23529800000000|"
        "AEKiosk Patron|BLY|CQY|BHEUR|BV0.00|CC5.00|BDCeiling street|PB19700101|PCPT|PIY|"
        "AFGreetings from the ceiling|"
    ),
    b"23": (
        f"24              001{DATE}AOWEL|AA23529800000000|AEKiosk Patron|BLY|CQY|BHEUR|BV0.00|"
    ),
    b"17": (
        f"1803000001{DATE}AB39999800000000|AJBenchmark title|CTWEL|CK001|AQWEL|APWEL|BGWEL|CSBENCH|"
    ),
    b"11": (
        f"121NNY{DATE}AOWEL|AA23529800000000|AB39999800000000|AJBenchmark title|"
        f"AH{DATE}|BK123|CK001|"
    ),
    b"09": f"101YNN{DATE}AOWEL|AB39999800000000|AQWEL|AJBenchmark title|CK001|CTWEL|",
    b"29": (
        f"301YNN{DATE}AOWEL|AA23529800000000|AB39999800000000|AJBenchmark title|AH{DATE}|CK001|"
    ),
    b"35": f"36Y{DATE}AOWEL|AA23529800000000|",
}
RESEND = "96"


def answers(terminator: bytes = b"\r") -> tuple[dict, dict]:
    """``(plain, sequenced)``: the bytes to send per request code, without error detection,
    and per (code, sequence digit) with ``AY<digit>AZ<checksum>``; computed once."""
    plain = {code: text.encode("ascii") + terminator for code, text in CANNED.items()}
    sequenced = {}
    for code, text in [*CANNED.items(), (None, RESEND)]:
        for digit in b"0123456789":
            data = text.encode("ascii") + b"AY" + bytes([digit]) + b"AZ"
            sequenced[code, digit] = data + checksum(data).encode("ascii") + terminator
    return plain, sequenced


def answer(line: bytes, plain: dict, sequenced: dict, resend: bytes) -> bytes:
    """The answer to one request line (terminator removed)."""
    code = line[:2]
    n = len(line)
    if n >= 9 and line[n - 6 : n - 4] == b"AZ":
        if not verify(line):
            return resend
        digit = line[n - 7] if line[n - 9 : n - 7] == b"AY" else 0x30
        return sequenced.get((code, digit)) or sequenced[None, digit]
    return plain.get(code) or resend


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True, help="TCP port (0: any free one)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--cpu", type=int, help="pin this process to this core")
    parser.add_argument("--terminator", choices=("cr", "crlf"), default="cr")
    parser.add_argument("--backlog", type=int, default=1024)
    args = parser.parse_args(argv)
    if args.cpu is not None and args.cpu in os.sched_getaffinity(0):
        os.sched_setaffinity(0, {args.cpu})

    from twisted.internet import protocol, reactor

    terminator = b"\r\n" if args.terminator == "crlf" else b"\r"
    plain, sequenced = answers(terminator)
    resend = RESEND.encode("ascii") + terminator

    class Canned(protocol.Protocol):
        def connectionMade(self):
            self.framer = LineFramer()

        def dataReceived(self, data):
            try:
                lines = self.framer.feed(data)
            except LineTooLong:
                self.transport.loseConnection()
                return
            if len(lines) == 1 and lines[0]:
                self.transport.write(answer(lines[0], plain, sequenced, resend))
            elif lines:
                self.transport.write(
                    b"".join(answer(line, plain, sequenced, resend) for line in lines if line)
                )

    factory = protocol.Factory.forProtocol(Canned)
    port = reactor.listenTCP(args.port, factory, backlog=args.backlog, interface=args.host)
    print(f"ceiling listening on {args.host}:{port.getHost().port}", flush=True)
    reactor.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
