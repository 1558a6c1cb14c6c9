"""One listening socket per SIPconfig.xml ``<service>``: endpoint plus wrapped SIP2 factory.

A :class:`Listener` turns a ``ServiceConfig`` into what
``StreamServerEndpointService(listener.endpoint, listener.factory)`` needs. Each accepted
connection passes, from the socket inwards, through:

1. TCP keepalive (``<server-params custom_tcp_keepalive=...>``, Koha bug 37087): SO_KEEPALIVE,
   TCP_KEEPIDLE and TCP_KEEPINTVL set on the accepted socket;
2. the HAProxy PROXY protocol (``proxy_protocol="v1"`` or ``"v2"``), so that the peer seen by
   the SIP2 layer, its logs and its throttling is the kiosk behind the load balancer;
3. TLS (``tls_certificate`` ...; see :mod:`koha_gateway.tls`);
4. the SIP2 protocol built by the factory the service passes in.

Layers that a service does not use are left out. :meth:`Listener.reload` applies a changed
``<service>`` (certificates, TLS settings, PROXY protocol, keepalive) to new connections
while connections already open keep the layers they were accepted with. A listening address
cannot change without a restart.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable

from OpenSSL import SSL
from twisted.internet import endpoints
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.protocols.haproxy._exceptions import InvalidProxyHeader
from twisted.protocols.haproxy._v1parser import V1Parser
from twisted.protocols.haproxy._v2parser import V2Parser
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from zope.interface import directlyProvides, providedBy

from .tls import (
    ReloadableContextFactory,
    TLSConfigError,
    TLSSettings,
    peer_identity,
    ssl_error_text,
)

__all__ = [
    "PROXY_HEADER_TIMEOUT",
    "TLS_HANDSHAKE_TIMEOUT",
    "KeepAliveFactory",
    "KeepAliveOptions",
    "Listener",
    "ProxyProtocolFactory",
    "TLSConfigError",
    "TLSServerFactory",
]

log = Logger(namespace="koha_gateway.listeners")

# Seconds a PROXY-protocol listener waits for the header before dropping the connection.
PROXY_HEADER_TIMEOUT = 10.0
# Seconds a TLS listener waits for the end of the TLS handshake (stunnel's TIMEOUTbusy).
TLS_HANDSHAKE_TIMEOUT = 30.0

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V1_SIGNATURE = b"PROXY "


# -- 1. TCP keepalive ---------------------------------------------------------------------------


def _positive_int(value) -> int | None:
    """Koha's rule for custom_tcp_keepalive_time/intvl: only positive integers count."""
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def _truthy(value) -> bool:
    """Perl truthiness, as Koha reads ``custom_tcp_keepalive``: "0" and "" are false."""
    if isinstance(value, str):
        return value.strip() not in ("", "0")
    return bool(value)


class KeepAliveOptions:
    """TCP keepalive settings from ``<server-params>`` (Koha SIPServer.pm, bug 37087)."""

    def __init__(self, enabled: bool, idle: int | None = None, interval: int | None = None):
        self.enabled = enabled
        self.idle = idle
        self.interval = interval

    @classmethod
    def from_server_params(cls, params) -> KeepAliveOptions:
        if params is None:
            return cls(False)
        return cls(
            _truthy(getattr(params, "custom_tcp_keepalive", False)),
            _positive_int(getattr(params, "custom_tcp_keepalive_time", None)),
            _positive_int(getattr(params, "custom_tcp_keepalive_intvl", None)),
        )

    def __eq__(self, other) -> bool:
        if not isinstance(other, KeepAliveOptions):
            return NotImplemented
        return (self.enabled, self.idle, self.interval) == (
            other.enabled,
            other.idle,
            other.interval,
        )

    def __repr__(self) -> str:
        return f"KeepAliveOptions({self.enabled!r}, idle={self.idle!r}, interval={self.interval!r})"

    def apply(self, transport) -> None:
        """Set the options on an accepted TCP transport (errors are logged, not raised)."""
        try:
            transport.setTcpKeepAlive(1)
            sock = transport.getHandle()
            if self.idle and hasattr(socket, "TCP_KEEPIDLE"):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, self.idle)
            if self.interval and hasattr(socket, "TCP_KEEPINTVL"):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, self.interval)
        except (OSError, AttributeError) as exc:
            log.warn("cannot set TCP keepalive options: {error}", error=exc)


class _KeepAliveProtocol(ProtocolWrapper):
    def makeConnection(self, transport):  # noqa: N802 (Twisted interface name)
        self.factory.options.apply(transport)
        super().makeConnection(transport)


class KeepAliveFactory(WrappingFactory):
    """Applies :class:`KeepAliveOptions` to each accepted connection."""

    protocol = _KeepAliveProtocol

    def __init__(self, wrappedFactory, options: KeepAliveOptions):  # noqa: N803
        super().__init__(wrappedFactory)
        self.options = options

    def buildProtocol(self, addr):  # noqa: N802
        inner = self.wrappedFactory.buildProtocol(addr)
        return None if inner is None else self.protocol(self, inner)


# -- 2. HAProxy PROXY protocol ------------------------------------------------------------------


def _valid_address(address) -> bool:
    """A PROXY header's address must be a real IP address and port (v1 text is not checked
    by Twisted's parser)."""
    if address is None:
        return True
    if not isinstance(address, (IPv4Address, IPv6Address)):
        return False
    try:
        ipaddress.ip_address(address.host)
    except ValueError:
        return False
    return 0 <= address.port <= 65535


class _V1LineParser:
    """Collects the version 1 header line (at most 107 bytes with its CRLF) and parses it with
    Twisted's parser; also accepts the bare ``PROXY UNKNOWN`` line that the spec allows and
    Twisted's parser refuses."""

    MAX_LENGTH = 107

    def __init__(self):
        self._buffer = b""

    def feed(self, data: bytes):
        self._buffer += data
        end = self._buffer.find(b"\r\n")
        if end < 0:
            if len(self._buffer) >= self.MAX_LENGTH:
                raise InvalidProxyHeader()
            return None, None
        if end + 2 > self.MAX_LENGTH:
            raise InvalidProxyHeader()
        line, rest = self._buffer[:end], self._buffer[end + 2 :]
        if line == b"PROXY UNKNOWN":
            line += b" "
        info, _ = V1Parser().feed(line + b"\r\n")
        return info, rest


class _ProxyProtocol(ProtocolWrapper):
    """Reads the PROXY header (HAProxy "The PROXY protocol" versions 1 and 2) before anything.

    The inner protocol is built only once the header has been read, with the client's address
    from the header, so its ``buildProtocol(addr)``, ``connectionMade`` and ``getPeer()`` all
    see the kiosk rather than the load balancer. ``PROXY UNKNOWN`` and v2 ``LOCAL`` headers
    (the balancer's own health checks) leave the socket's addresses in place. A connection
    whose first bytes are not the configured version's header, whose header is invalid or
    incomplete after :data:`PROXY_HEADER_TIMEOUT` seconds is closed.
    """

    def __init__(self, factory, wrappedProtocol=None):  # noqa: N803
        super().__init__(factory, wrappedProtocol)
        self._buffer = b""
        self._parser = None
        self._info = None
        self._timeout = None

    def logPrefix(self):  # noqa: N802
        return "PROXY"

    def makeConnection(self, transport):  # noqa: N802
        directlyProvides(self, providedBy(transport))
        Protocol.makeConnection(self, transport)
        self.factory.registerProtocol(self)
        self._timeout = self.factory.reactor.callLater(
            self.factory.header_timeout, self._header_timed_out
        )

    def _header_timed_out(self):
        self._timeout = None
        self._refuse(f"no PROXY header within {self.factory.header_timeout:g} s")

    def _refuse(self, reason: str) -> None:
        address = self.transport.getPeer()
        log.warn(
            "closing connection from {address}: {reason}",
            address=_format_address(address),
            peer=getattr(address, "host", None),
            reason=reason,
        )
        self._cancel_timeout()
        self.loseConnection()

    def _cancel_timeout(self):
        if self._timeout is not None and self._timeout.active():
            self._timeout.cancel()
        self._timeout = None

    def dataReceived(self, data):  # noqa: N802
        if self.wrappedProtocol is not None:
            self.wrappedProtocol.dataReceived(data)
            return
        if self.disconnecting or self.transport is None:
            return
        if self._parser is None:
            self._buffer += data
            parser = self._choose_parser()
            if parser is None:
                return
            self._parser, data, self._buffer = parser, self._buffer, b""
        try:
            info, remaining = self._parser.feed(data)
        except InvalidProxyHeader as exc:
            self._refuse(f"invalid PROXY header ({exc.__class__.__name__})")
            return
        if info is None:
            return
        if not (_valid_address(info.source) and _valid_address(info.destination)):
            self._refuse("invalid address in PROXY header")
            return
        self._cancel_timeout()
        self._info = info
        self._connect_inner()
        if remaining and self.wrappedProtocol is not None:
            self.wrappedProtocol.dataReceived(remaining)

    def _choose_parser(self):
        """The parser for the configured version once enough bytes are there, else None."""
        buf = self._buffer
        if self.factory.version == "v2":
            # Twisted's v2 parser needs the 16-byte fixed part in its first feed.
            if not buf.startswith(V2_SIGNATURE[: len(buf)]) or (
                len(buf) > 12 and (buf[12] & 0xF0) != 0x20
            ):
                self._refuse("expected a PROXY protocol v2 header")
                return None
            return V2Parser() if len(buf) >= 16 else None
        if not buf.startswith(V1_SIGNATURE[: len(buf)]):
            self._refuse("expected a PROXY protocol v1 header")
            return None
        return _V1LineParser() if len(buf) >= len(V1_SIGNATURE) else None

    def _connect_inner(self):
        inner = self.factory.wrappedFactory.buildProtocol(self.getPeer())
        if inner is None:
            self.loseConnection()
            return
        self.wrappedProtocol = inner
        inner.makeConnection(self)

    def getPeer(self):  # noqa: N802
        if self._info is not None and self._info.source is not None:
            return self._info.source
        return self.transport.getPeer()

    def getHost(self):  # noqa: N802
        if self._info is not None and self._info.destination is not None:
            return self._info.destination
        return self.transport.getHost()

    def connectionLost(self, reason):  # noqa: N802
        self._cancel_timeout()
        self.factory.unregisterProtocol(self)
        inner, self.wrappedProtocol = self.wrappedProtocol, None
        if inner is not None:
            inner.connectionLost(reason)


class ProxyProtocolFactory(WrappingFactory):
    """Wraps a factory with PROXY protocol ``version`` ("v1" or "v2") header reading.

    Uses the header parsers of Twisted's ``twisted.protocols.haproxy`` (present with the same
    ``feed()`` interface from Twisted 16 to current releases); the wrapper is ours so that the
    inner protocol is built with the kiosk's address and the version is enforced.
    """

    protocol = _ProxyProtocol

    def __init__(
        self,
        wrappedFactory,  # noqa: N803
        version: str,
        reactor,
        header_timeout: float = PROXY_HEADER_TIMEOUT,
    ):
        if version not in ("v1", "v2"):
            raise ValueError(f"proxy_protocol must be v1 or v2, not {version!r}")
        super().__init__(wrappedFactory)
        self.version = version
        self.reactor = reactor
        self.header_timeout = header_timeout

    def buildProtocol(self, addr):  # noqa: N802
        return self.protocol(self, None)


# -- 3. TLS ---------------------------------------------------------------------------------------


class _TLSServerProtocol(TLSMemoryBIOProtocol):
    """Twisted's TLS protocol with a handshake deadline, logging why a handshake failed
    (wrong client certificate, old TLS version, ...) so that a refused kiosk shows up in the
    SIP log.

    The deadline (:data:`TLS_HANDSHAKE_TIMEOUT`) closes connections that never finish the
    handshake; without it, a connection whose SIP2 side already queued output (the telnet
    ``login:`` prompt) would wait for the handshake forever.
    """

    _handshake_timer = None
    _timed_out = False
    _announced = False

    def makeConnection(self, transport):  # noqa: N802
        super().makeConnection(transport)
        if not getattr(self, "_handshakeDone", True) and self.factory.reactor is not None:
            self._handshake_timer = self.factory.reactor.callLater(
                self.factory.handshake_timeout, self._handshake_timed_out
            )

    def dataReceived(self, data):  # noqa: N802
        super().dataReceived(data)
        if self._announced or not getattr(self, "_handshakeDone", False):
            return
        self._announced = True
        self._cancel_handshake_timer()
        _count_handshake(self, True)
        if self.wrappedProtocol is None:
            return
        address = self.getPeer()
        try:
            connection = self.getHandle()
            version = connection.get_protocol_version_name()
            cipher = connection.get_cipher_name()
        except (AttributeError, SSL.Error):
            version = cipher = "?"
        identity = peer_identity(self)
        log.info(
            "TLS handshake with {address}: {version} {cipher}{client}",
            address=_format_address(address),
            peer=getattr(address, "host", None),
            version=version,
            cipher=cipher,
            client=f", client certificate {identity}" if identity is not None else "",
        )

    def _cancel_handshake_timer(self):
        if self._handshake_timer is not None and self._handshake_timer.active():
            self._handshake_timer.cancel()
        self._handshake_timer = None

    def _handshake_timed_out(self):
        self._handshake_timer = None
        if getattr(self, "_handshakeDone", True) or self.transport is None:
            return
        self._timed_out = True
        _count_handshake(self, False)
        address = self.getPeer()
        log.info(
            "TLS handshake with {address} not finished within {timeout:g} s: closing",
            address=_format_address(address),
            peer=getattr(address, "host", None),
            timeout=self.factory.handshake_timeout,
        )
        self.transport.abortConnection()

    def connectionLost(self, reason):  # noqa: N802
        self._cancel_handshake_timer()
        if not getattr(self, "_handshakeDone", True) and not self._timed_out:
            failure = getattr(self, "_reason", None) or reason
            address = self.getPeer()
            if failure.check(SSL.Error):
                _count_handshake(self, False)
                log.info(
                    "TLS handshake with {address} failed: {error}",
                    address=_format_address(address),
                    peer=getattr(address, "host", None),
                    error=ssl_error_text(failure.value),
                )
            else:
                log.debug(
                    "{address} closed the connection before the TLS handshake",
                    address=_format_address(address),
                    peer=getattr(address, "host", None),
                )
        super().connectionLost(reason)


def _count_handshake(protocol, ok: bool) -> None:
    """One TLS handshake in the metrics (when the admin listener is on)."""
    from koha_gateway import metrics

    m = metrics.current
    if m is None:
        return
    service = getattr(protocol.factory.wrappedFactory, "service", None)
    address = getattr(service, "address", None)
    m.tls_handshake(getattr(address, "spec", "?"), ok)


class TLSServerFactory(TLSMemoryBIOFactory):
    """Twisted's TLS wrapper (server side) that also lets the SIP factory refuse a connection
    (``buildProtocol`` returning None), logs failed handshakes and closes connections whose
    handshake is not finished within ``handshake_timeout`` seconds."""

    protocol = _TLSServerProtocol

    def __init__(
        self,
        contextFactory,  # noqa: N803
        wrappedFactory,  # noqa: N803
        reactor=None,
        handshake_timeout: float | None = None,
    ):
        super().__init__(contextFactory, False, wrappedFactory)
        self.reactor = reactor
        self.handshake_timeout = (
            TLS_HANDSHAKE_TIMEOUT if handshake_timeout is None else handshake_timeout
        )

    def buildProtocol(self, addr):  # noqa: N802
        inner = self.wrappedFactory.buildProtocol(addr)
        return None if inner is None else self.protocol(self, inner)


# -- the listener ----------------------------------------------------------------------------------


def _format_address(address) -> str:
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    if host is None:
        return str(address)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _is_ipv6(address) -> bool:
    family = getattr(address, "family", None)
    if family in (socket.AF_INET6, 6):
        return True
    if isinstance(family, str) and family.strip().lower() in ("6", "ipv6", "inet6", "tcp6"):
        return True
    host = getattr(address, "host", "") or ""
    return ":" in host


#: Listen queue length (the kernel caps it at ``net.core.somaxconn``, 4096 by default since
#: Linux 5.4): after a restart every kiosk reconnects at once, and a connection that does not
#: fit is dropped and retried by the kiosk 1, 3, 7 ... seconds later. 10,000 kiosks
#: reconnecting at once overflowed a queue of 1024 about 8,000 times (bench/login_storm.py).
LISTEN_BACKLOG = 4096


def _endpoint(reactor, address, backlog: int = LISTEN_BACKLOG):
    """TCP4/TCP6 server endpoint for a ``ListenAddress``; host "" (or "*") = all interfaces."""
    host = (getattr(address, "host", "") or "").strip("[]")
    if host == "*":
        host = ""
    port = int(address.port)
    if _is_ipv6(address):
        return endpoints.TCP6ServerEndpoint(reactor, port, backlog=backlog, interface=host or "::")
    return endpoints.TCP4ServerEndpoint(reactor, port, backlog=backlog, interface=host)


def _address_key(address) -> tuple:
    return (getattr(address, "host", None), int(address.port), _is_ipv6(address))


def _service_label(service) -> str:
    address = service.address
    spec = getattr(address, "spec", None)
    return spec or _format_address(address)


def _uses_tls(service) -> bool:
    tls = getattr(service, "tls", None)
    if tls is None:
        tls = bool(getattr(service, "tls_certificate", None))
    return bool(tls)


class _ListenerFactory(Factory):
    """The factory the endpoint listens with: builds each connection through the current
    chain of wrappers, which :meth:`Listener.reload` can replace."""

    def __init__(self, listener: Listener):
        self._listener = listener

    def logPrefix(self):  # noqa: N802
        return f"SIP2 {self._listener.name}"

    def startFactory(self):  # noqa: N802
        self._listener.sip_factory.doStart()

    def stopFactory(self):  # noqa: N802
        self._listener.sip_factory.doStop()

    def buildProtocol(self, addr):  # noqa: N802
        return self._listener._chain.buildProtocol(addr)


class Listener:
    """The endpoint and wrapped factory for one ``<service>``.

    ``Listener(reactor, service, factory, server_params)`` raises
    :class:`~koha_gateway.tls.TLSConfigError` when the service's TLS files cannot be used.
    ``endpoint`` (an ``IStreamServerEndpoint``) and ``factory`` go to
    ``StreamServerEndpointService``; ``context_factory`` is the TLS context factory (None on
    a plain listener).
    """

    def __init__(self, reactor, service, factory, server_params=None):
        self.reactor = reactor
        self.service = service
        self.sip_factory = factory
        self.server_params = server_params
        self.name = _service_label(service)
        self.context_factory: ReloadableContextFactory | None = None
        if _uses_tls(service):
            self.context_factory = ReloadableContextFactory(
                TLSSettings.from_service(service), name=self.name
            )
        self.keepalive = KeepAliveOptions.from_server_params(server_params)
        self._chain = self._build_chain(service, self.context_factory, self.keepalive)
        self.endpoint = _endpoint(reactor, service.address)
        self.factory = _ListenerFactory(self)

    def __repr__(self) -> str:
        return f"<Listener {self.name} {self.describe()}>"

    @property
    def tls(self) -> bool:
        return self.context_factory is not None

    def describe(self) -> str:
        """A short summary for logs: transport, TLS, client certificates, PROXY, keepalive."""
        parts = [str(getattr(self.service, "transport", "RAW") or "RAW")]
        if self.context_factory is not None:
            settings = self.context_factory.settings
            parts.append(f"TLS {settings.min_version}+")
            if settings.client_ca:
                parts.append("client certificates required")
        proxy = getattr(self.service, "proxy_protocol", None)
        if proxy:
            parts.append(f"PROXY {proxy}")
        if self.keepalive.enabled:
            parts.append("TCP keepalive")
        return ", ".join(parts)

    def _build_chain(self, service, context_factory, keepalive: KeepAliveOptions):
        chain = self.sip_factory
        if context_factory is not None:
            chain = TLSServerFactory(
                context_factory, chain, self.reactor, handshake_timeout=TLS_HANDSHAKE_TIMEOUT
            )
        proxy = getattr(service, "proxy_protocol", None)
        if proxy:
            chain = ProxyProtocolFactory(
                chain, str(proxy), self.reactor, header_timeout=PROXY_HEADER_TIMEOUT
            )
        if keepalive.enabled:
            chain = KeepAliveFactory(chain, keepalive)
        return chain

    def reload(self, service, server_params=None) -> None:
        """Apply a changed ``<service>`` to new connections; open connections are untouched.

        Certificates and keys are re-read even when the attributes did not change (the
        files may have been renewed). On :class:`~koha_gateway.tls.TLSConfigError` nothing
        changes. The listening address cannot change here: that needs a restart and is
        logged as a warning.
        """
        self.prepare_reload(service, server_params)()

    def prepare_reload(self, service, server_params=None) -> Callable[[], None]:
        """First half of :meth:`reload`: read and check everything, change nothing.

        Returns the function that puts the new settings in force (it cannot fail), so a
        caller reloading several listeners can check them all before applying any. Raises
        :class:`~koha_gateway.tls.TLSConfigError`.
        """
        if _address_key(service.address) != _address_key(self.service.address):
            log.warn(
                "listener {name}: the address changed to {new}; restart the gateway to apply",
                name=self.name,
                new=_service_label(service),
            )
        if server_params is None:
            server_params = self.server_params
        if _uses_tls(service):
            settings = TLSSettings.from_service(service)
            if self.context_factory is not None:
                context_factory = self.context_factory
                apply_tls = context_factory.prepare(settings)
            else:
                context_factory = ReloadableContextFactory(settings, name=self.name)
                apply_tls = None
        else:
            context_factory = apply_tls = None
        keepalive = KeepAliveOptions.from_server_params(server_params)
        chain = self._build_chain(service, context_factory, keepalive)

        def apply() -> None:
            old = self.describe()
            if apply_tls is not None:
                apply_tls()
            self.service = service
            self.server_params = server_params
            self.context_factory = context_factory
            self.keepalive = keepalive
            self._chain = chain
            new = self.describe()
            if new != old:
                log.info(
                    "listener {name}: now {new} (was {old}) for new connections",
                    name=self.name,
                    new=new,
                    old=old,
                )

        return apply
