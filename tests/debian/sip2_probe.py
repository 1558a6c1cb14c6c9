"""Minimal SIP2 client used by the package test (tests/debian/install-test.sh).

Deliberately independent of the koha_gateway package (standard library only), so that it
checks the installed server from the outside, the way a self-check machine does:

* 3M SIP2 2.00, Login (93) -> Login Response (94): expects ``941``;
* 3M SIP2 2.00, Patron Information (63) -> Patron Information Response (64);
* with ``--checkout ITEM``: Checkout (11) -> ``121`` (ok, the item is on loan to the patron), then
  Checkin (09) -> ``101`` (ok);
* 3M SIP2 2.00, "Error detection": every request carries AY (sequence) and AZ (checksum);
* with ``--telnet``: Koha's telnet transport instead (``login:`` / ``password:`` prompts,
  ``Login OK.  Initiating SIP``), the Koha manual's ``telnet localhost 8023`` check.

The account, its institution and the first RAW (or telnet) listener are read from the instance's
SIPconfig.xml (Koha's ``<acsconfig>`` format), so the probe follows whatever the template holds.

Usage::

    python3 sip2_probe.py --sip-config /etc/koha/sites/demo/SIPconfig.xml \\
        --patron 23529000000001 [--checkout 39999000000001] [--telnet] [--host 127.0.0.1] \
        [--port N] [--timeout 10]

Prints every request (passwords masked) and response; exits 0 when the login succeeded, the
patron information response came back (and the checkout and checkin succeeded), 1 otherwise.
"""

from __future__ import annotations

import argparse
import datetime
import re
import socket
import sys
import time
import xml.etree.ElementTree as ET

NS = "{http://openncip.org/acs-config/1.0/}"


def checksum(message: str) -> str:
    """3M SIP2 2.00 "Error detection": two's complement of the byte sum, 4 upper-case hex."""
    total = sum(message.encode("ascii", "replace"))
    return f"{(-total) & 0xFFFF:04X}"


def with_checksum(body: str, seq: int) -> str:
    """Append AY<seq>AZ<checksum> to a request body that ends with its field delimiter."""
    head = f"{body}AY{seq % 10}AZ"
    return head + checksum(head)


def find(element: ET.Element, tag: str) -> list[ET.Element]:
    """Children named ``tag`` with or without Koha's acs-config namespace."""
    return element.findall(f".//{NS}{tag}") + element.findall(f".//{tag}")


def read_sipconfig(path: str, transport: str = "RAW") -> tuple[int, str, str, str, str]:
    """(port, login id, password, institution, delimiter): first service of that transport."""
    root = ET.parse(path).getroot()
    port = None
    for service in find(root, "service"):
        if (service.get("transport") or "").upper() != transport.upper():
            continue
        match = re.match(r"^(?:.*:)?(\d+)(?:/.*)?$", service.get("port") or "")
        if match:
            port = int(match.group(1))
            break
    if port is None:
        raise SystemExit(f"{path}: no {transport} <service> with a port")
    logins = find(root, "login")
    if not logins:
        raise SystemExit(f"{path}: no <login> account")
    login = logins[0]
    return (
        port,
        login.get("id") or "",
        login.get("password") or "",
        login.get("institution") or "",
        login.get("delimiter") or "|",
    )


def mask(message: str, delimiter: str) -> str:
    """Hide the password fields CO, AC and AD, as the server's own logs do."""
    fields = message.split(delimiter)
    for i, field in enumerate(fields):
        if i and field[:2] in ("CO", "AC", "AD") and len(field) > 2:
            fields[i] = field[:2] + "***"
    return delimiter.join(fields)


class Connection:
    """One SIP2 connection; requests and responses end with CR."""

    def __init__(self, host: str, port: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.create_connection((host, port), timeout=timeout)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        self.buffer = b""

    def expect(self, text: bytes) -> None:
        """Read until ``text`` arrived (telnet prompts end without a line terminator)."""
        while text not in self.buffer:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise SystemExit(f"connection closed while waiting for {text!r}")
            self.buffer += chunk
        self.buffer = self.buffer.split(text, 1)[1]
        print(f"< {text.decode().strip()}")

    def send_line(self, text: str, shown: str) -> None:
        print(f"> {shown}")
        self.sock.sendall(text.encode("utf-8") + b"\r\n")

    def request(self, message: str, delimiter: str) -> str:
        print(f"> {mask(message, delimiter)}")
        self.sock.sendall(message.encode("ascii") + b"\r")
        while b"\r" not in self.buffer:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise SystemExit("connection closed by the server")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\r")
        text = line.decode("utf-8", "replace").lstrip("\n")
        print(f"< {text}")
        return text

    def close(self) -> None:
        self.sock.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sip-config", required=True)
    parser.add_argument("--patron", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int)
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--telnet", action="store_true", help="use the first telnet listener")
    parser.add_argument("--checkout", metavar="ITEM", help="check ITEM out and in again")
    args = parser.parse_args(argv)

    transport = "telnet" if args.telnet else "RAW"
    port, userid, password, institution, delimiter = read_sipconfig(args.sip_config, transport)
    port = args.port or port
    d = delimiter
    conn = Connection(args.host, port, args.timeout)
    try:
        if args.telnet:
            conn.expect(b"login:")
            conn.send_line(userid, userid)
            conn.expect(b"password:")
            conn.send_line(password, "***")
            conn.expect(b"Login OK")
            conn.expect(b"\n")
        else:
            login = conn.request(with_checksum(f"9300CN{userid}{d}CO{password}{d}CPkiosk{d}", 0), d)
            if not login.startswith("941"):
                print(f"login refused for account {userid!r}: {login!r}", file=sys.stderr)
                return 1
        now = datetime.datetime.now().strftime("%Y%m%d    %H%M%S")
        info = conn.request(
            with_checksum(f"63001{now}{' ' * 10}AO{institution}{d}AA{args.patron}{d}", 1), d
        )
        if not info.startswith("64"):
            print(f"no patron information response: {info!r}", file=sys.stderr)
            return 1
        if f"AA{args.patron}" not in info:
            print(f"the response does not name patron {args.patron}", file=sys.stderr)
            return 1
        if args.checkout:
            item = args.checkout
            now = datetime.datetime.now().strftime("%Y%m%d    %H%M%S")
            out = conn.request(
                with_checksum(
                    f"11YN{now}{now}AO{institution}{d}AA{args.patron}{d}AB{item}{d}AC{d}", 2
                ),
                d,
            )
            if not out.startswith("121") or f"AB{item}" not in out:
                print(f"checkout of {item} refused: {out!r}", file=sys.stderr)
                return 1
            back = conn.request(
                with_checksum(f"09N{now}{now}AP{institution}{d}AO{institution}{d}AB{item}{d}", 3),
                d,
            )
            if not back.startswith("101") or f"AB{item}" not in back:
                print(f"checkin of {item} refused: {back!r}", file=sys.stderr)
                return 1
    finally:
        conn.close()
    done = ", checkout and checkin" if args.checkout else ""
    print(f"SIP2 login ({transport}), patron information{done}: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
