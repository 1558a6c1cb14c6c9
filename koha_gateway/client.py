r"""A small blocking SIP2 client, the counterpart of Koha's ``misc/sip_cli_emulator.pl``.

Used by the tests, the benchmarks and the package test; also handy by hand::

    python -m koha_gateway.client --port 6001 --user joe --password joes \
        '6300020261129    120000Y         AOWEL|AA23529000000001|'

Each argument after the options is one request message; with ``--checksum`` the client appends
``AY<n>AZ<checksum>`` (3M SIP2 2.00 "Error detection") and checks the answer's checksum.
"""

from __future__ import annotations

import argparse
import socket
import ssl
import sys

from koha_gateway.sip2.checksum import checksum, verify


class SIPError(Exception):
    """The server closed the connection or answered something that is not a SIP2 message."""


class SIPClient:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 6001,
        *,
        timeout: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        error_detection: bool = False,
        terminator: bytes = b"\r",
        encoding: str = "utf-8",
        source_address: tuple[str, int] | None = None,
    ):
        sock = socket.create_connection(
            (host, port), timeout=timeout, source_address=source_address
        )
        if ssl_context is not None:
            sock = ssl_context.wrap_socket(sock, server_hostname=server_hostname or host)
        self.sock = sock
        self.error_detection = error_detection
        self.terminator = terminator
        self.encoding = encoding
        self._seq = 0
        self._buffer = b""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_line(self) -> bytes:
        """One response without its terminator (CR or CRLF)."""
        while b"\r" not in self._buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise SIPError(f"connection closed by the server (buffer {self._buffer!r})")
            self._buffer += chunk
        line, _, rest = self._buffer.partition(b"\r")
        self._buffer = rest[1:] if rest.startswith(b"\n") else rest
        return line

    def read_until(self, marker: bytes) -> bytes:
        """Everything up to and including ``marker`` (telnet prompts end without a CR)."""
        while marker not in self._buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise SIPError(f"connection closed by the server (buffer {self._buffer!r})")
            self._buffer += chunk
        head, _, rest = self._buffer.partition(marker)
        self._buffer = rest
        return head + marker

    def frame(self, text: str) -> bytes:
        data = text.encode(self.encoding)
        if self.error_detection:
            data += f"AY{self._seq}AZ".encode("ascii")
            data += checksum(data).encode("ascii")
            self._seq = (self._seq + 1) % 10
        return data + self.terminator

    def request(self, text: str) -> str:
        """Send one message, return the answer as text (checksum verified with --checksum)."""
        self.send_raw(self.frame(text))
        line = self.read_line()
        if self.error_detection and b"AY" in line[-9:-6] and not verify(line):
            raise SIPError(f"bad checksum in {line!r}")
        return line.decode(self.encoding, errors="replace")

    def login(self, user: str, password: str, location: str = "") -> str:
        return self.request(f"9300CN{user}|CO{password}|CP{location}|")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m koha_gateway.client",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=6001)
    parser.add_argument("--user")
    parser.add_argument("--password")
    parser.add_argument("--location", default="")
    parser.add_argument("--checksum", action="store_true", help="use AY/AZ error detection")
    parser.add_argument("--tls", action="store_true", help="connect with TLS")
    parser.add_argument("--ca", help="CA certificate that signed the server's (with --tls)")
    parser.add_argument("--cert", help="client certificate PEM (with --tls)")
    parser.add_argument("--key", help="client private key PEM (with --tls)")
    parser.add_argument("messages", nargs="*")
    args = parser.parse_args(argv)
    context = None
    if args.tls:
        context = ssl.create_default_context(cafile=args.ca)
        if args.cert:
            context.load_cert_chain(args.cert, args.key)
    try:
        with SIPClient(
            args.host, args.port, ssl_context=context, error_detection=args.checksum
        ) as client:
            if args.user:
                print(client.login(args.user, args.password or "", args.location))
            for message in args.messages:
                print(client.request(message))
    except (OSError, SIPError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
