"""TLS for SIP2 listeners: server contexts, live reload and client-certificate names.

The 3M SIP2 2.00 protocol has no security of its own: the login (93, fields CN/CO) and patron
PINs (AD) cross the network in clear text, which is why the Koha manual asks for a VPN or
stunnel. A ``<service>`` with ``tls_certificate`` terminates TLS in the gateway instead.

The context is built with pyOpenSSL directly (the same code on Debian bookworm's pyOpenSSL
23.0 / Twisted 22.4 and on current releases):

* TLS 1.2 minimum (RFC 8996 deprecates 1.0 and 1.1), TLS 1.3 only when
  ``tls_min_version="1.3"``; SSL 2/3, compression, renegotiation and session tickets off;
  the server's cipher order wins. ``tls_ciphers`` is an OpenSSL cipher string for TLS 1.2
  (like stunnel's ``ciphers``); TLS 1.3 always uses OpenSSL's default suites.
* ``tls_certificate`` holds the server certificate first, optionally followed by its chain;
  ``tls_chain`` may name a separate chain file; ``tls_private_key`` may name the certificate file
  itself when that file also holds the key (stunnel's ``key`` defaults to ``cert``).
* ``tls_client_ca`` (a PEM bundle) makes a client certificate mandatory: it must chain to one
  of these CAs (RFC 5246 7.4.4 / RFC 8446 4.3.2 CertificateRequest) and the CA names are sent
  to the client so that it can pick the right certificate.

Every file problem (missing, unreadable, not PEM, encrypted key, key not matching the
certificate, certificate expired or not yet valid, bad cipher string) raises
:class:`TLSConfigError` naming the attribute and the file, so start-up stops with a clear line.

:class:`ReloadableContextFactory` is the context factory handed to Twisted's
``TLSMemoryBIOFactory``: Twisted asks it for a context for every new connection, so
:meth:`ReloadableContextFactory.reload` swapping in a newly built context changes the
certificate for new connections while open ones keep theirs. A failed reload leaves the old
context in force.

After the handshake the SIP2 protocol calls :func:`peer_identity` on its transport to get the
verified client certificate's names, and :func:`identity_matches` to check an account's
``client_certificate`` binding (a DNS subjectAltName, matched with service_identity as in
RFC 6125, or the subject common name).
"""

from __future__ import annotations

import datetime
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.x509.oid import NameOID
from OpenSSL import SSL, crypto
from twisted.internet.interfaces import IOpenSSLContextFactory
from twisted.logger import Logger
from zope.interface import implementer

__all__ = [
    "DEFAULT_CIPHERS",
    "PeerIdentity",
    "ReloadableContextFactory",
    "TLSConfigError",
    "TLSSettings",
    "build_context",
    "identity_matches",
    "peer_identity",
    "ssl_error_text",
]

log = Logger(namespace="koha_gateway.tls")

# TLS 1.2 suites: ECDHE (forward secrecy) with AEAD first, then ECDHE with AES-CBC for older
# kiosk stunnels; never anonymous, export, RC4, 3DES or MD5. TLS 1.3 suites are OpenSSL's own.
DEFAULT_CIPHERS = (
    "ECDHE+AESGCM:ECDHE+CHACHA20:ECDHE+AES:!aNULL:!eNULL:!EXPORT:!DSS:!RC4:!3DES:!MD5:!PSK:!SRP"
)

_MIN_VERSIONS = {"1.2": SSL.TLS1_2_VERSION, "1.3": SSL.TLS1_3_VERSION}

_OPTIONS = (
    SSL.OP_NO_SSLv2
    | SSL.OP_NO_SSLv3
    | SSL.OP_NO_TLSv1
    | SSL.OP_NO_TLSv1_1
    | SSL.OP_NO_COMPRESSION
    | SSL.OP_CIPHER_SERVER_PREFERENCE
    | SSL.OP_NO_TICKET
    | SSL.OP_SINGLE_DH_USE
    | SSL.OP_SINGLE_ECDH_USE
    | getattr(SSL, "OP_NO_RENEGOTIATION", 0)
)

# Client certificates need a session id context (SSL_CTX_set_session_id_context).
_SESSION_ID = b"koha-gateway-sip2"

_PEM_CERT_RE = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n.+?\r?\n-----END CERTIFICATE-----", re.DOTALL
)
_PEM_KEY_RE = re.compile(
    rb"-----BEGIN ((?:RSA |EC |ENCRYPTED )?PRIVATE KEY)-----\r?\n.+?"
    rb"\r?\n-----END \1-----",
    re.DOTALL,
)

# Certificates that expire sooner than this are logged as a warning at (re)load.
EXPIRY_WARNING = datetime.timedelta(days=30)


class TLSConfigError(Exception):
    """A TLS setting or file of a ``<service>`` cannot be used; ``str()`` names the file."""


@dataclass(frozen=True)
class TLSSettings:
    """The TLS attributes of one ``<service>`` (names as in SIPconfig.xml)."""

    certificate: str
    private_key: str | None = None
    chain: str | None = None
    client_ca: str | None = None
    min_version: str = "1.2"
    ciphers: str | None = None

    @classmethod
    def from_service(cls, service) -> TLSSettings:
        """The settings of a ``config.sipconfig.ServiceConfig`` with ``tls_certificate``."""
        certificate = getattr(service, "tls_certificate", None)
        if not certificate:
            raise TLSConfigError(f"service {_service_name(service)}: no tls_certificate")
        return cls(
            certificate=str(certificate),
            private_key=_opt_str(getattr(service, "tls_private_key", None)),
            chain=_opt_str(getattr(service, "tls_chain", None)),
            client_ca=_opt_str(getattr(service, "tls_client_ca", None)),
            min_version=str(getattr(service, "tls_min_version", None) or "1.2"),
            ciphers=_opt_str(getattr(service, "tls_ciphers", None)),
        )


def _opt_str(value) -> str | None:
    return str(value) if value else None


def _service_name(service) -> str:
    address = getattr(service, "address", None)
    spec = getattr(address, "spec", None)
    return str(spec) if spec else repr(service)


# -- reading the files ------------------------------------------------------------------------


# PEM bundles are a few kilobytes; a CA bundle of the whole web is about 250 KiB.
MAX_PEM_SIZE = 4 * 1024 * 1024


def _read(attribute: str, path: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                raise TLSConfigError(f"{attribute} {path}: not a regular file")
            data = fh.read(MAX_PEM_SIZE + 1)
    except FileNotFoundError:
        raise TLSConfigError(f"{attribute} {path}: file not found") from None
    except PermissionError:
        raise TLSConfigError(
            f"{attribute} {path}: permission denied (the service user must be able to read it)"
        ) from None
    except IsADirectoryError:
        raise TLSConfigError(f"{attribute} {path}: is a directory, not a PEM file") from None
    except OSError as exc:
        raise TLSConfigError(f"{attribute} {path}: cannot read: {exc.strerror}") from None
    if len(data) > MAX_PEM_SIZE:
        raise TLSConfigError(f"{attribute} {path}: larger than 4 MiB, not a PEM file")
    return data


def _certificates(attribute: str, path: str, data: bytes) -> list[crypto.X509]:
    blocks = _PEM_CERT_RE.findall(data)
    if not blocks:
        raise TLSConfigError(f"{attribute} {path}: no PEM certificate (BEGIN CERTIFICATE) found")
    certs = []
    for number, block in enumerate(blocks, 1):
        try:
            certs.append(crypto.load_certificate(crypto.FILETYPE_PEM, block))
        except crypto.Error as exc:
            raise TLSConfigError(
                f"{attribute} {path}: certificate {number} is not valid PEM: {ssl_error_text(exc)}"
            ) from None
    return certs


def _private_key(attribute: str, path: str, data: bytes) -> crypto.PKey:
    found = _PEM_KEY_RE.search(data)
    if found is None:
        raise TLSConfigError(f"{attribute} {path}: no PEM private key (BEGIN PRIVATE KEY) found")
    block = found.group(0)
    if found.group(1) == b"ENCRYPTED PRIVATE KEY" or b"Proc-Type: 4,ENCRYPTED" in block:
        raise TLSConfigError(
            f"{attribute} {path}: the private key is encrypted; the gateway starts unattended, "
            "so store it unencrypted with tight permissions (openssl pkey -in KEY -out NEW)"
        )

    def no_passphrase(*_args) -> bytes:
        raise TLSConfigError(f"{attribute} {path}: the private key asks for a passphrase")

    try:
        return crypto.load_privatekey(crypto.FILETYPE_PEM, block, passphrase=no_passphrase)
    except crypto.Error as exc:
        raise TLSConfigError(
            f"{attribute} {path}: private key is not valid PEM: {ssl_error_text(exc)}"
        ) from None


def ssl_error_text(exc: Exception) -> str:
    """The OpenSSL reason strings of a pyOpenSSL error, without the tuple noise."""
    parts = []
    for item in exc.args[0] if exc.args and isinstance(exc.args[0], list) else ():
        if isinstance(item, tuple) and item:
            parts.append(str(item[-1]))
    return "; ".join(p for p in parts if p) or str(exc) or exc.__class__.__name__


def _asn1_time(value: bytes | None) -> datetime.datetime | None:
    if not value:
        return None
    text = value.decode("ascii")
    for fmt in ("%Y%m%d%H%M%SZ", "%y%m%d%H%M%SZ"):
        try:
            parsed = datetime.datetime.strptime(text, fmt)
        except ValueError:
            continue
        return parsed.replace(tzinfo=datetime.UTC)
    return None


def _subject(cert: crypto.X509) -> str:
    return cert.to_cryptography().subject.rfc4514_string()


def _check_validity(attribute: str, path: str, cert: crypto.X509, now: datetime.datetime):
    """RFC 5280 4.1.2.5: refuse a certificate outside its validity period."""
    not_before = _asn1_time(cert.get_notBefore())
    not_after = _asn1_time(cert.get_notAfter())
    subject = _subject(cert)
    if not_after is not None and now > not_after:
        raise TLSConfigError(
            f"{attribute} {path}: certificate {subject} expired on {not_after:%Y-%m-%d %H:%M} UTC"
        )
    if not_before is not None and now < not_before:
        raise TLSConfigError(
            f"{attribute} {path}: certificate {subject} is not valid before "
            f"{not_before:%Y-%m-%d %H:%M} UTC"
        )
    if not_after is not None and not_after - now < EXPIRY_WARNING:
        log.warn(
            "{attribute} {path}: certificate {subject} expires on {when} UTC",
            attribute=attribute,
            path=path,
            subject=subject,
            when=f"{not_after:%Y-%m-%d %H:%M}",
        )


# -- building the context ---------------------------------------------------------------------


def _verify_callback(_conn, _cert, _errno, _depth, ok) -> bool:
    # OpenSSL's own chain verification decides; the gateway adds no exceptions.
    return bool(ok)


def build_context(
    settings: TLSSettings, *, now: datetime.datetime | None = None
) -> tuple[SSL.Context, crypto.X509]:
    """Build the server ``SSL.Context`` for ``settings``; returns it with the leaf certificate.

    Raises :class:`TLSConfigError` naming the attribute and file for any problem.
    """
    if now is None:
        now = datetime.datetime.now(datetime.UTC)
    if settings.min_version not in _MIN_VERSIONS:
        raise TLSConfigError(
            f"tls_min_version {settings.min_version!r}: must be 1.2 or 1.3 "
            f"(certificate {settings.certificate})"
        )

    cert_data = _read("tls_certificate", settings.certificate)
    certs = _certificates("tls_certificate", settings.certificate, cert_data)
    leaf = certs[0]
    chain = [("tls_certificate", settings.certificate, c) for c in certs[1:]]
    if settings.chain:
        data = _read("tls_chain", settings.chain)
        chain += [
            ("tls_chain", settings.chain, c)
            for c in _certificates("tls_chain", settings.chain, data)
        ]
    if settings.private_key:
        key_attr, key_path = "tls_private_key", settings.private_key
        key = _private_key(key_attr, key_path, _read(key_attr, key_path))
    else:
        key_attr, key_path = "tls_certificate", settings.certificate
        key = _private_key(key_attr, key_path, cert_data)

    _check_validity("tls_certificate", settings.certificate, leaf, now)
    for attribute, path, cert in chain:
        _check_validity(attribute, path, cert, now)

    ctx = SSL.Context(SSL.TLS_METHOD)
    ctx.set_min_proto_version(_MIN_VERSIONS[settings.min_version])
    ctx.set_options(_OPTIONS)
    ctx.set_session_cache_mode(SSL.SESS_CACHE_OFF)
    ctx.set_session_id(_SESSION_ID)
    ciphers = settings.ciphers or DEFAULT_CIPHERS
    try:
        ctx.set_cipher_list(ciphers.encode("ascii"))
    except (SSL.Error, UnicodeEncodeError) as exc:
        raise TLSConfigError(
            f"tls_ciphers {ciphers!r} (service with certificate {settings.certificate}): "
            f"no usable cipher: {ssl_error_text(exc)}"
        ) from None

    try:
        ctx.use_certificate(leaf)
        ctx.use_privatekey(key)
        ctx.check_privatekey()
    except SSL.Error:
        raise TLSConfigError(
            f"{key_attr} {key_path}: private key does not match the certificate "
            f"{_subject(leaf)} in tls_certificate {settings.certificate}"
        ) from None
    for _attribute, _path, cert in chain:
        ctx.add_extra_chain_cert(cert)

    if settings.client_ca:
        data = _read("tls_client_ca", settings.client_ca)
        authorities = _certificates("tls_client_ca", settings.client_ca, data)
        store = ctx.get_cert_store()
        for ca in authorities:
            _check_validity("tls_client_ca", settings.client_ca, ca, now)
            try:
                store.add_cert(ca)
            except crypto.Error as exc:
                # The same CA twice in the bundle is harmless; anything else is not.
                if "already in hash table" not in ssl_error_text(exc):
                    raise TLSConfigError(
                        f"tls_client_ca {settings.client_ca}: {ssl_error_text(exc)}"
                    ) from None
        ctx.set_verify(
            SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT | SSL.VERIFY_CLIENT_ONCE,
            _verify_callback,
        )
        ctx.set_verify_depth(9)
        # Twisted's CertificateOptions does not send the acceptable CA names; kiosks that
        # hold several certificates choose theirs from this list (RFC 8446 4.2.4).
        ctx.set_client_ca_list([ca.get_subject() for ca in authorities])
    return ctx, leaf


@implementer(IOpenSSLContextFactory)
class ReloadableContextFactory:
    """A context factory whose context can be replaced while the listener runs.

    Twisted's ``TLSMemoryBIOFactory`` calls :meth:`getContext` for each new connection, so a
    connection uses the context that was current when it was accepted.
    """

    def __init__(self, settings: TLSSettings, *, name: str = ""):
        self._name = name or settings.certificate
        self._context, leaf = build_context(settings)
        self.settings = settings
        self.certificate = _subject(leaf)
        self.not_after = _asn1_time(leaf.get_notAfter())
        self._log_loaded(leaf, "loaded")

    def _log_loaded(self, leaf: crypto.X509, verb: str) -> None:
        not_after = _asn1_time(leaf.get_notAfter())
        log.info(
            "TLS {name}: {verb} certificate {subject} (valid until {until}, TLS {version}+"
            "{clients})",
            name=self._name,
            verb=verb,
            subject=self.certificate,
            until=f"{not_after:%Y-%m-%d}" if not_after else "?",
            version=self.settings.min_version,
            clients=(
                f", client certificates required from {self.settings.client_ca}"
                if self.settings.client_ca
                else ""
            ),
        )

    @property
    def requires_client_certificate(self) -> bool:
        return bool(self.settings.client_ca)

    def getContext(self) -> SSL.Context:  # noqa: N802 (Twisted interface name)
        """The current context (``IOpenSSLContextFactory``)."""
        return self._context

    def prepare(self, settings: TLSSettings) -> Callable[[], None]:
        """Read and check the files now; returns the function that puts them in force.

        Raises :class:`TLSConfigError` (and changes nothing) when the files cannot be used.
        """
        context, leaf = build_context(settings)

        def apply() -> None:
            self._context = context
            self.settings = settings
            self.certificate = _subject(leaf)
            self.not_after = _asn1_time(leaf.get_notAfter())
            self._log_loaded(leaf, "reloaded")

        return apply

    def reload(self, settings: TLSSettings) -> None:
        """Re-read the files; on :class:`TLSConfigError` the current context stays in force."""
        self.prepare(settings)()


# -- the client's certificate -----------------------------------------------------------------


@dataclass(frozen=True)
class PeerIdentity:
    """The verified client certificate of a TLS connection.

    ``fingerprint`` is the SHA-256 of the DER certificate, ``AA:BB:...``; ``subject`` the RFC
    4514 string. ``certificate`` is the ``cryptography`` object, for further checks.
    """

    common_name: str | None
    dns_names: tuple[str, ...]
    fingerprint: str
    subject: str
    certificate: x509.Certificate = field(repr=False, compare=False)

    def __str__(self) -> str:
        name = self.common_name or self.subject
        return f"{name} (sha256 {self.fingerprint})"

    @classmethod
    def from_certificate(cls, peer: crypto.X509) -> PeerIdentity:
        """The names of a pyOpenSSL certificate (subject CN, DNS subjectAltNames)."""
        cert = peer.to_cryptography()
        cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            dns_names = tuple(san.value.get_values_for_type(x509.DNSName))
        except x509.ExtensionNotFound:
            dns_names = ()
        return cls(
            common_name=str(cns[0].value) if cns else None,
            dns_names=dns_names,
            fingerprint=peer.digest("sha256").decode("ascii"),
            subject=cert.subject.rfc4514_string(),
            certificate=cert,
        )


def peer_identity(transport) -> PeerIdentity | None:
    """The client certificate of ``transport`` after the TLS handshake, else None.

    None on plain connections, before the handshake and when the listener does not ask for
    client certificates. A listener with ``tls_client_ca`` refuses the handshake of a client
    whose certificate does not verify, so a certificate seen here has been verified.
    """
    get = getattr(transport, "getPeerCertificate", None)
    if get is None:
        return None
    try:
        peer = get()
    except (AttributeError, SSL.Error):
        return None
    if peer is None:
        return None
    return PeerIdentity.from_certificate(peer)


def identity_matches(identity: PeerIdentity | None, name: str | None) -> bool:
    """Whether a ``<login client_certificate="name">`` binding accepts ``identity``.

    The name matches a DNS subjectAltName by the RFC 6125 rules as implemented by
    service_identity (case-insensitive, ``*.kiosks.example.org`` wildcards), or equals the
    subject common name (case-insensitive). No identity or no name never matches.
    """
    if identity is None or not name:
        return False
    if identity.dns_names:
        from service_identity import CertificateError, VerificationError
        from service_identity.cryptography import verify_certificate_hostname

        try:
            verify_certificate_hostname(identity.certificate, name)
        except (VerificationError, CertificateError, ValueError, UnicodeError):
            pass
        else:
            return True
    cn = identity.common_name
    return cn is not None and cn.casefold() == name.casefold()
