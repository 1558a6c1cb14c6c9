"""Building TLS contexts from real PEM files: every file error stops start-up with a message
naming the attribute and the file."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from OpenSSL import SSL, crypto
from twisted.internet import reactor

from koha_gateway import certs
from koha_gateway.listeners import Listener
from koha_gateway.tls import (
    PeerIdentity,
    ReloadableContextFactory,
    TLSConfigError,
    TLSSettings,
    build_context,
    identity_matches,
)


def settings(pki, **extra) -> TLSSettings:
    values = {"certificate": str(pki.server_cert), "private_key": str(pki.server_key)}
    values.update({k: (str(v) if v is not None else None) for k, v in extra.items()})
    return TLSSettings(**values)


def error_of(value: TLSSettings) -> str:
    with pytest.raises(TLSConfigError) as info:
        build_context(value)
    return str(info.value)


def test_good_settings_build(pki):
    ctx, leaf = build_context(settings(pki))
    assert isinstance(ctx, SSL.Context)
    assert leaf.get_subject().CN == "localhost"


def test_missing_files_named(pki, tmp_path):
    missing = tmp_path / "nope.pem"
    assert error_of(settings(pki, certificate=missing)) == (
        f"tls_certificate {missing}: file not found"
    )
    assert error_of(settings(pki, private_key=missing)) == (
        f"tls_private_key {missing}: file not found"
    )
    assert error_of(settings(pki, chain=missing)) == f"tls_chain {missing}: file not found"
    assert error_of(settings(pki, client_ca=missing)) == f"tls_client_ca {missing}: file not found"
    assert "is a directory" in error_of(settings(pki, certificate=tmp_path))
    assert error_of(settings(pki, chain="/dev/zero")) == "tls_chain /dev/zero: not a regular file"


def test_unreadable_key(pki):
    """The key readable only by root, the gateway running as another user."""
    directory = Path(tempfile.mkdtemp(prefix="kgw-tls-"))
    try:
        os.chmod(directory, 0o755)
        cert, key = directory / "sip.pem", directory / "sip.key"
        shutil.copy(pki.server_cert, cert)
        shutil.copy(pki.server_key, key)
        os.chmod(cert, 0o644)
        os.chmod(key, 0o600 if os.geteuid() == 0 else 0)
        message = _as_unprivileged_user(lambda: build_context(TLSSettings(str(cert), str(key))))
    finally:
        shutil.rmtree(directory)
    assert message == (
        f"tls_private_key {key}: permission denied (the service user must be able to read it)"
    )


def _as_unprivileged_user(fn) -> str:
    """Run ``fn`` in a forked child that dropped root (if root); returns its TLSConfigError."""
    if os.geteuid() != 0:
        try:
            fn()
        except TLSConfigError as exc:
            return str(exc)
        return "no error"
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: only os calls and already-imported code from here on
        os.close(read)
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            try:
                fn()
                result = "no error"
            except TLSConfigError as exc:
                result = str(exc)
        except BaseException as exc:  # noqa: BLE001 - report anything to the parent
            result = f"child failed: {exc!r}"
        os.write(write, result.encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as fh:
        data = fh.read()
    os.waitpid(pid, 0)
    return data.decode()


def test_not_pem(pki, tmp_path):
    junk = tmp_path / "junk.pem"
    junk.write_bytes(b"\x30\x82\x01\x0a garbage DER")
    assert error_of(settings(pki, certificate=junk)) == (
        f"tls_certificate {junk}: no PEM certificate (BEGIN CERTIFICATE) found"
    )
    assert error_of(settings(pki, private_key=junk)) == (
        f"tls_private_key {junk}: no PEM private key (BEGIN PRIVATE KEY) found"
    )
    broken = tmp_path / "broken.pem"
    broken.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    assert error_of(settings(pki, certificate=broken)).startswith(
        f"tls_certificate {broken}: certificate 1 is not valid PEM"
    )
    # A certificate given as the key file is not a key.
    assert "no PEM private key" in error_of(settings(pki, private_key=pki.server_cert))


def test_key_not_matching(pki):
    other_key = pki.renewed[1]
    message = error_of(settings(pki, private_key=other_key))
    assert message == (
        f"tls_private_key {other_key}: private key does not match the certificate CN=localhost "
        f"in tls_certificate {pki.server_cert}"
    )


def test_encrypted_key_refused(pki, tmp_path):
    from cryptography.hazmat.primitives import serialization

    issued = certs._load(pki.server_cert, pki.server_key)
    encrypted = tmp_path / "enc.key"
    encrypted.write_bytes(
        issued.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    assert "the private key is encrypted" in error_of(settings(pki, private_key=encrypted))


def test_expired_and_not_yet_valid(pki):
    cert, key = pki.expired
    message = error_of(settings(pki, certificate=cert, private_key=key))
    assert message.startswith(f"tls_certificate {cert}: certificate CN=expired expired on ")
    cert, key = pki.future
    message = error_of(settings(pki, certificate=cert, private_key=key))
    assert message.startswith(f"tls_certificate {cert}: certificate CN=future is not valid before")
    # An expired CA in the client CA bundle is refused too.
    message = error_of(settings(pki, client_ca=pki.expired[0]))
    assert message.startswith(f"tls_client_ca {pki.expired[0]}: certificate CN=expired expired")


def test_min_version_and_ciphers(pki):
    assert "tls_min_version '1.1': must be 1.2 or 1.3" in error_of(settings(pki, min_version="1.1"))
    assert error_of(settings(pki, ciphers="NO-SUCH-CIPHER")).startswith(
        "tls_ciphers 'NO-SUCH-CIPHER'"
    )
    build_context(settings(pki, ciphers="ECDHE+AESGCM"))


def test_client_ca_names_sent(pki, tmp_path):
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(pki.ca.read_bytes() + pki.rogue_ca.read_bytes() + pki.ca.read_bytes())
    ctx, _ = build_context(settings(pki, client_ca=bundle))
    names = [n.CN for n in SSL.Connection(ctx, None).get_client_ca_list()]
    assert names == ["koha-gateway test CA", "rogue CA", "koha-gateway test CA"]
    assert ctx.get_verify_mode() & SSL.VERIFY_FAIL_IF_NO_PEER_CERT


def test_reloadable_factory_keeps_context_on_error(pki, tmp_path):
    factory = ReloadableContextFactory(settings(pki))
    first = factory.getContext()
    with pytest.raises(TLSConfigError):
        factory.reload(settings(pki, private_key=pki.renewed[1]))
    assert factory.getContext() is first
    assert factory.certificate == "CN=localhost"
    apply = factory.prepare(settings(pki, certificate=pki.renewed[0], private_key=pki.renewed[1]))
    assert factory.getContext() is first  # nothing changes before apply()
    apply()
    assert factory.getContext() is not first
    assert factory.certificate == "CN=renewed.localhost"


class _Address:
    def __init__(self, host, port, family=None, spec="x"):
        self.host, self.port, self.family, self.spec = host, port, family, spec


class _Service:
    def __init__(self, **kw):
        self.address = kw.pop("address", _Address("127.0.0.1", 0))
        self.transport = "RAW"
        self.tls_certificate = None
        self.tls_private_key = None
        self.tls_chain = None
        self.tls_client_ca = None
        self.tls_min_version = "1.2"
        self.tls_ciphers = None
        self.proxy_protocol = None
        self.__dict__.update(kw)

    @property
    def tls(self):
        return self.tls_certificate is not None


def test_listener_start_error_names_file(pki, tmp_path):
    from twisted.internet.protocol import Factory

    missing = tmp_path / "sip.pem"
    service = _Service(tls_certificate=str(missing), tls_private_key=str(pki.server_key))
    with pytest.raises(TLSConfigError, match=f"tls_certificate {missing}: file not found"):
        Listener(reactor, service, Factory(), None)


def test_listener_endpoints(pki):
    from twisted.internet import endpoints
    from twisted.internet.protocol import Factory

    v4 = Listener(reactor, _Service(address=_Address("", 6001)), Factory())
    assert isinstance(v4.endpoint, endpoints.TCP4ServerEndpoint)
    assert v4.endpoint._interface == ""
    v6 = Listener(reactor, _Service(address=_Address("::1", 6001, "IPv6")), Factory())
    assert isinstance(v6.endpoint, endpoints.TCP6ServerEndpoint)
    assert v6.endpoint._interface == "::1"
    any6 = Listener(reactor, _Service(address=_Address("", 6001, "IPv6")), Factory())
    assert any6.endpoint._interface == "::"
    tls = Listener(
        reactor,
        _Service(
            tls_certificate=str(pki.server_cert),
            tls_private_key=str(pki.server_key),
            tls_client_ca=str(pki.ca),
            proxy_protocol="v2",
        ),
        Factory(),
        type("P", (), {"custom_tcp_keepalive": "1", "custom_tcp_keepalive_time": "0"})(),
    )
    assert tls.describe() == "RAW, TLS 1.2+, client certificates required, PROXY v2, TCP keepalive"
    assert tls.keepalive.idle is None  # 0 is ignored, as in Koha


def test_identity_from_certificates(pki):
    def identity(path):
        return PeerIdentity.from_certificate(
            crypto.load_certificate(crypto.FILETYPE_PEM, path.read_bytes())
        )

    kiosk = identity(pki.kiosk("kiosk-01")[0])
    assert kiosk.common_name == "kiosk-01" and kiosk.dns_names == ("kiosk-01",)
    assert str(kiosk).startswith("kiosk-01 (sha256 ")
    assert identity_matches(kiosk, "kiosk-01")
    assert not identity_matches(kiosk, "kiosk-02")
    assert not identity_matches(kiosk, "")
    assert not identity_matches(None, "kiosk-01")
    # The rogue CA's "kiosk-01" carries the same names: only the listener's CA check keeps it
    # out, which the handshake tests cover.
    wild = identity(pki.wildcard[0])
    assert identity_matches(wild, "desk-3.kiosks.example.org")
    assert not identity_matches(wild, "kiosks.example.org")
    assert not identity_matches(wild, "x.desk-3.kiosks.example.org")
    cn_only = identity(pki.cn_only[0])
    assert cn_only.dns_names == ()
    assert identity_matches(cn_only, "KIOSK-CN")
