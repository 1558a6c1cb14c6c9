"""python -m koha_gateway.certs: the test CA, server and kiosk certificates."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from koha_gateway import certs
from koha_gateway.tls import TLSSettings, build_context

ROOT = Path(__file__).resolve().parents[2]


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_cli_creates_then_is_idempotent(tmp_path):
    out = tmp_path / "var" / "tls"
    cmd = [sys.executable, "-m", "koha_gateway.certs", "--out", str(out), "--kiosk", "kiosk-01"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    first = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "ca.key",
        "ca.pem",
        "kiosks/kiosk-01.key",
        "kiosks/kiosk-01.pem",
        "server.key",
        "server.pem",
    ]
    assert first.stdout.count("created ") == 6
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    second = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    assert "nothing to do" in second.stdout
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    for key in out.rglob("*.key"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_server_and_kiosk_certificates(tmp_path):
    pki = certs.ensure_pki(tmp_path, ["kiosk-01"], key_type="ec")
    ca = _cert(pki.ca_cert)
    server = _cert(pki.server_cert)
    kiosk = _cert(pki.kiosk_cert("kiosk-01"))
    assert server.issuer == ca.subject and kiosk.issuer == ca.subject
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "::1"]
    eku = kiosk.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    kiosk_san = kiosk.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert kiosk_san.get_values_for_type(x509.DNSName) == ["kiosk-01"]
    # The listener accepts what the tool makes.
    build_context(
        TLSSettings(str(pki.server_cert), str(pki.server_key), client_ca=str(pki.ca_cert))
    )


def test_new_kiosk_signed_by_existing_ca(tmp_path):
    certs.ensure_pki(tmp_path, ["kiosk-01"], key_type="ec")
    ca_before = (tmp_path / "ca.pem").read_bytes()
    made = certs.ensure_pki(tmp_path, ["kiosk-01", "kiosk-02"], key_type="ec")
    assert made.created == (made.kiosk_cert("kiosk-02"), made.kiosk_key("kiosk-02"))
    assert (tmp_path / "ca.pem").read_bytes() == ca_before
    assert _cert(made.kiosk_cert("kiosk-02")).issuer == _cert(made.ca_cert).subject


def test_lost_ca_is_not_silently_replaced(tmp_path):
    made = certs.ensure_pki(tmp_path, key_type="ec")
    made.ca_key.unlink()
    with pytest.raises(FileNotFoundError, match="must both exist"):
        certs.ensure_pki(tmp_path)
    made.ca_cert.unlink()
    with pytest.raises(FileNotFoundError, match="a new CA would not match"):
        certs.ensure_pki(tmp_path)


def test_bad_names_refused(tmp_path, capsys):
    with pytest.raises(ValueError):
        certs.ensure_pki(tmp_path, ["../evil"])
    assert certs.main(["--out", str(tmp_path), "--kiosk", "a b"]) == 1
    assert "invalid name" in capsys.readouterr().err
    assert certs.main(["--out", str(tmp_path), "--server-name=bad name"]) == 1
    assert certs.main(["--out", str(tmp_path), "--days", "0"]) == 1
    assert not (tmp_path / "ca.pem").exists()
