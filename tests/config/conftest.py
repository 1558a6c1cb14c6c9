"""Fixtures for the configuration tests: XML documents written to real files, and a real
self-signed certificate for the TLS attributes of ``<service>``."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from pathlib import Path

import pytest
from config_helpers import build_sip_xml


@pytest.fixture
def write_file(tmp_path: Path) -> Callable[..., Path]:
    """Write ``content`` (str or bytes) to ``tmp_path/name`` and return the path."""

    def write(content: str | bytes, name: str = "SIPconfig.xml") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path

    return write


@pytest.fixture
def sip_file(write_file: Callable[..., Path]) -> Callable[..., tuple[Path, str]]:
    """Build a SIPconfig.xml with :func:`build_sip_xml` and write it; returns (path, text)."""

    def make(**parts: object) -> tuple[Path, str]:
        text = build_sip_xml(**parts)  # type: ignore[arg-type]
        return write_file(text), text

    return make


@pytest.fixture(scope="session")
def certificate_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A real self-signed EC certificate and its private key, as PEM files in ``tls/``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    base = tmp_path_factory.mktemp("pki") / "tls"
    base.mkdir()
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sip.example.org")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("sip.example.org")]), False)
        .sign(key, hashes.SHA256())
    )
    cert_path = base / "sip.pem"
    key_path = base / "sip.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path
