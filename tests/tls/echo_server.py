"""A real listener for the TLS tests: ``python echo_server.py CONFIG.json``.

It runs :class:`koha_gateway.listeners.Listener` on the real reactor with a small line
protocol in place of SIP2, so that handshakes, client certificates, PROXY headers, keepalive
and reload are tested over real sockets. CONFIG.json holds ``{"service": {...},
"server_params": {...}}`` with the attributes of SIPconfig.xml's ``<service>`` and
``<server-params>``; port 0 picks a free port.

Standard output: ``READY <port>`` once listening, then ``RELOADED`` or ``RELOAD-FAILED
<message>`` after each SIGHUP (which re-reads CONFIG.json). Logs go to standard error.

The line protocol (lines end with LF):
``WHO``      -> one JSON line: peer, peer at connectionMade, address given to buildProtocol,
             the client certificate identity and the socket's keepalive options
``MATCH n``  -> ``yes`` / ``no``: identity_matches(peer identity, n)
``BYE``      -> ``BYE`` and the server closes the connection
other        -> ``ECHO <line>``
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
from dataclasses import dataclass

from twisted.internet import reactor, tcp
from twisted.internet.protocol import Factory
from twisted.logger import globalLogBeginner, textFileLogObserver
from twisted.protocols.basic import LineOnlyReceiver

from koha_gateway import listeners
from koha_gateway.listeners import Listener
from koha_gateway.tls import TLSConfigError, identity_matches, peer_identity


@dataclass(frozen=True)
class ListenAddress:
    host: str
    port: int
    family: str | None = None
    spec: str = ""


@dataclass(frozen=True)
class ServiceConfig:
    address: ListenAddress
    transport: str = "RAW"
    tls_certificate: str | None = None
    tls_private_key: str | None = None
    tls_chain: str | None = None
    tls_client_ca: str | None = None
    tls_min_version: str = "1.2"
    tls_ciphers: str | None = None
    proxy_protocol: str | None = None
    max_line_length: int = 8192

    @property
    def tls(self) -> bool:
        return self.tls_certificate is not None


@dataclass(frozen=True)
class ServerParams:
    custom_tcp_keepalive: bool = False
    custom_tcp_keepalive_time: int | None = None
    custom_tcp_keepalive_intvl: int | None = None


def load(path):
    with open(path) as fh:
        data = json.load(fh)
    raw = dict(data["service"])
    address = ListenAddress(**raw.pop("address"))
    params = data.get("server_params")
    return ServiceConfig(address=address, **raw), ServerParams(**params) if params else None


def _address(addr) -> str:
    return f"{addr.host}:{addr.port}"


def _socket_of(transport):
    while not isinstance(transport, tcp.Server):
        transport = transport.transport
    return transport.socket


class Echo(LineOnlyReceiver):
    delimiter = b"\n"

    def connectionMade(self):  # noqa: N802
        self.made_peer = _address(self.transport.getPeer())

    def lineReceived(self, line):  # noqa: N802
        text = line.decode("utf-8").rstrip("\r")
        if text == "WHO":
            identity = peer_identity(self.transport)
            sock = _socket_of(self.transport)
            reply = {
                "peer": _address(self.transport.getPeer()),
                "host": _address(self.transport.getHost()),
                "made_peer": self.made_peer,
                "built_addr": self.built_addr,
                "identity": None
                if identity is None
                else {
                    "common_name": identity.common_name,
                    "dns_names": list(identity.dns_names),
                    "fingerprint": identity.fingerprint,
                    "subject": identity.subject,
                    "str": str(identity),
                },
                "keepalive": [
                    sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
                    sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
                    sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
                ],
            }
            self.sendLine(json.dumps(reply).encode())
        elif text.startswith("MATCH "):
            ok = identity_matches(peer_identity(self.transport), text[6:])
            self.sendLine(b"yes" if ok else b"no")
        elif text == "BYE":
            self.sendLine(b"BYE")
            self.transport.loseConnection()
        else:
            self.sendLine(b"ECHO " + text.encode())


class EchoFactory(Factory):
    def buildProtocol(self, addr):  # noqa: N802
        proto = Echo()
        proto.factory = self
        proto.built_addr = _address(addr)
        return proto


def main(config_path):
    if os.environ.get("PROXY_HEADER_TIMEOUT"):
        listeners.PROXY_HEADER_TIMEOUT = float(os.environ["PROXY_HEADER_TIMEOUT"])
    if os.environ.get("TLS_HANDSHAKE_TIMEOUT"):
        listeners.TLS_HANDSHAKE_TIMEOUT = float(os.environ["TLS_HANDSHAKE_TIMEOUT"])
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)], redirectStandardIO=False)
    service, params = load(config_path)
    listener = Listener(reactor, service, EchoFactory(), params)

    def reload():
        try:
            new_service, new_params = load(config_path)
            listener.reload(new_service, new_params)
        except TLSConfigError as exc:
            print(f"RELOAD-FAILED {exc}", flush=True)
        else:
            print("RELOADED", flush=True)

    signal.signal(signal.SIGHUP, lambda *_: reactor.callFromThread(reload))

    def listening(port):
        print(f"READY {port.getHost().port}", flush=True)

    def failed(failure):
        print(f"LISTEN-FAILED {failure.getErrorMessage()}", flush=True)
        reactor.stop()

    listener.endpoint.listen(listener.factory).addCallbacks(listening, failed)

    reactor.run()


if __name__ == "__main__":
    try:
        main(sys.argv[1])
    except TLSConfigError as exc:
        print(f"START-FAILED {exc}", flush=True)
        sys.exit(2)
