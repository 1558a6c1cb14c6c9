"""A small certificate authority for TLS listeners: demo set-ups, kiosks and tests.

``python -m koha_gateway.certs --out DIR [--kiosk NAME ...]`` creates, only when absent:

``ca.pem`` / ``ca.key``
    a self-signed certificate authority ("koha-gateway test CA"). Use ``ca.pem`` as the
    listener's ``tls_client_ca`` and give it to kiosks as the CA they trust.
``server.pem`` / ``server.key``
    the listener's certificate for ``localhost``, ``127.0.0.1`` and ``::1`` (plus any
    ``--server-name``), signed by the CA.
``kiosks/NAME.pem`` / ``kiosks/NAME.key``
    a client certificate per ``--kiosk NAME`` (subject CN and DNS subjectAltName ``NAME``),
    signed by the CA, for ``<login ... client_certificate="NAME">``.

Running it again creates only what is missing, so ``make run`` can call it every time.
Private keys are written with mode 0600. The certificates are RFC 5280 X.509 v3 certificates
(basic constraints, key usage, extended key usage ``serverAuth`` / ``clientAuth``, key
identifiers) that OpenSSL at Debian's default security level accepts.

This is a convenience for test and small set-ups; a library with its own PKI should issue
the kiosk certificates there (see docs/tls.md).

The functions are importable for tests: :func:`create_ca`, :func:`issue` and
:func:`ensure_pki`.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "CA_NAME",
    "Issued",
    "PKI",
    "create_ca",
    "ensure_pki",
    "issue",
    "main",
    "new_key",
]

CA_NAME = "koha-gateway test CA"
SERVER_NAMES = ("localhost", "127.0.0.1", "::1")

# Kiosk names become file names and DNS subjectAltNames: keep them to a safe alphabet.
_NAME_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,62})$")


def new_key(key_type: str = "rsa"):
    """A new private key: ``"rsa"`` (2048 bits, the most compatible) or ``"ec"`` (P-256)."""
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    raise ValueError(f"unknown key type {key_type!r} (rsa or ec)")


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key (``cryptography`` objects)."""

    cert: x509.Certificate
    key: object = field(repr=False)

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def write(self, cert_path: str | os.PathLike, key_path: str | os.PathLike) -> None:
        """Write the certificate (mode 0644) and the key (mode 0600), replacing both."""
        _write(Path(cert_path), self.cert_pem(), 0o644)
        _write(Path(key_path), self.key_pem(), 0o600)


def _utcnow() -> datetime.datetime:
    # Naive UTC: accepted by every cryptography release from Debian bookworm's 38 on.
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _validity(
    not_before: datetime.datetime | None, not_after: datetime.datetime | None, days: int
) -> tuple[datetime.datetime, datetime.datetime]:
    start = not_before if not_before is not None else _utcnow() - datetime.timedelta(minutes=5)
    end = not_after if not_after is not None else start + datetime.timedelta(days=days)
    return start, end


def create_ca(
    common_name: str = CA_NAME,
    *,
    days: int = 3650,
    key_type: str = "rsa",
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
    path_length: int | None = 0,
) -> Issued:
    """A self-signed CA certificate (RFC 5280 4.2.1.9 basic constraints CA).

    ``path_length`` 0 (the default) lets it sign only leaf certificates.
    """
    key = new_key(key_type)
    start, end = _validity(not_before, not_after, days)
    subject = _name(common_name)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(cert, key)


def issue(
    ca: Issued,
    common_name: str,
    *,
    dns_names: Iterable[str] = (),
    ip_addresses: Iterable[str] = (),
    server: bool = False,
    client: bool = False,
    days: int = 825,
    key_type: str = "rsa",
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
) -> Issued:
    """A leaf certificate signed by ``ca`` for a TLS server and/or a TLS client.

    ``dns_names`` and ``ip_addresses`` become the subjectAltName (RFC 5280 4.2.1.6), which is
    what TLS clients check (RFC 6125) and what a ``client_certificate`` binding matches.
    """
    if not (server or client):
        raise ValueError("a certificate is for a server, a client or both")
    key = new_key(key_type)
    public = key.public_key()
    start, end = _validity(not_before, not_after, days)
    usages = []
    if server:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    if client:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    is_rsa = isinstance(key, rsa.RSAPrivateKey)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca.cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=is_rsa,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
    )
    alt_names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    alt_names += [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]
    if alt_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    return Issued(builder.sign(ca.key, hashes.SHA256()), key)


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write a file atomically with ``mode`` (the key never exists with looser permissions)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _load(cert_path: Path, key_path: Path) -> Issued:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    return Issued(cert, key)


@dataclass(frozen=True)
class PKI:
    """The paths of a directory made by :func:`ensure_pki`."""

    directory: Path
    created: tuple[Path, ...]

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def server_cert(self) -> Path:
        return self.directory / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.directory / "server.key"

    def kiosk_cert(self, name: str) -> Path:
        return self.directory / "kiosks" / f"{name}.pem"

    def kiosk_key(self, name: str) -> Path:
        return self.directory / "kiosks" / f"{name}.key"


def check_name(name: str) -> str:
    """Validate a kiosk or server name (letters, digits, ``.``, ``-``, ``_``; 63 at most)."""
    if not _NAME_RE.match(name):
        raise ValueError(
            f"invalid name {name!r}: use letters, digits, '.', '-' or '_' (at most 63)"
        )
    return name


def ensure_pki(
    out: str | os.PathLike,
    kiosks: Sequence[str] = (),
    *,
    server_names: Sequence[str] = (),
    days: int = 825,
    key_type: str = "rsa",
) -> PKI:
    """Create in ``out`` whatever of the CA, server and kiosk certificates is missing.

    Existing files are never overwritten. A missing CA is created only when no certificate
    signed by an earlier CA would be orphaned; new kiosk certificates are signed by the CA
    already in ``out``.
    """
    directory = Path(out)
    if days < 1:
        raise ValueError(f"days must be at least 1, not {days}")
    for name in kiosks:
        check_name(name)
    for name in server_names:
        if not _is_ip(name):
            check_name(name)
    pki = PKI(directory, ())
    created: list[Path] = []
    directory.mkdir(parents=True, exist_ok=True)

    if pki.ca_cert.exists() != pki.ca_key.exists():
        missing = pki.ca_key if pki.ca_cert.exists() else pki.ca_cert
        raise FileNotFoundError(f"{missing}: the CA certificate and key must both exist")
    if pki.ca_cert.exists():
        ca = _load(pki.ca_cert, pki.ca_key)
    else:
        orphans = [p for p in (pki.server_cert, *directory.glob("kiosks/*.pem")) if p.exists()]
        if orphans:
            raise FileNotFoundError(
                f"{pki.ca_cert}: missing, but {orphans[0]} exists; a new CA would not "
                "match it: restore the CA or remove the old certificates"
            )
        ca = create_ca(key_type=key_type)
        ca.write(pki.ca_cert, pki.ca_key)
        created += [pki.ca_cert, pki.ca_key]

    wanted = [
        (pki.server_cert, pki.server_key, "server", None),
        *((pki.kiosk_cert(k), pki.kiosk_key(k), "client", k) for k in kiosks),
    ]
    for cert_path, key_path, role, name in wanted:
        if cert_path.exists() and key_path.exists():
            continue
        if role == "server":
            names = [*SERVER_NAMES, *server_names]
            ips = [n for n in names if _is_ip(n)]
            dns = [n for n in names if not _is_ip(n)]
            leaf = issue(
                ca,
                dns[0] if dns else "localhost",
                dns_names=dns,
                ip_addresses=ips,
                server=True,
                days=days,
                key_type=key_type,
            )
        else:
            leaf = issue(ca, name, dns_names=[name], client=True, days=days, key_type=key_type)
        leaf.write(cert_path, key_path)
        created += [cert_path, key_path]
    return PKI(directory, tuple(created))


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m koha_gateway.certs --out DIR [--kiosk NAME ...]``."""
    parser = argparse.ArgumentParser(
        prog="python -m koha_gateway.certs",
        description="Create a test CA, a server certificate and kiosk client certificates "
        "for koha-gateway's TLS listeners (only the files that are missing).",
    )
    parser.add_argument("--out", required=True, help="directory for the PEM files")
    parser.add_argument(
        "--kiosk",
        action="append",
        default=[],
        metavar="NAME",
        help="create kiosks/NAME.pem/.key (repeatable); NAME goes into client_certificate=",
    )
    parser.add_argument(
        "--server-name",
        action="append",
        default=[],
        metavar="NAME",
        help="extra DNS name or IP address for server.pem (repeatable)",
    )
    parser.add_argument("--days", type=int, default=825, help="validity of new leaf certs")
    parser.add_argument("--key-type", choices=("rsa", "ec"), default="rsa")
    args = parser.parse_args(argv)
    try:
        pki = ensure_pki(
            args.out,
            args.kiosk,
            server_names=args.server_name,
            days=args.days,
            key_type=args.key_type,
        )
    except (OSError, ValueError) as exc:
        print(f"koha_gateway.certs: {exc}", file=sys.stderr)
        return 1
    for path in pki.created:
        print(f"created {path}")
    if not pki.created:
        print(f"{pki.directory}: nothing to do, all files exist")
    return 0


if __name__ == "__main__":
    sys.exit(main())
