"""Real TLS handshakes against a Listener: protocol versions, server CA, client certificates.

Clients: Python's ssl module and Debian's ``openssl s_client``.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import time

import pytest


def test_tls12_and_tls13_accepted(echo_server, tls_service_for, pki, tools):
    server = echo_server(tls_service_for())
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        ctx = tools.client_context(pki.ca, minimum=version, maximum=version)
        with tools.connect(server.port, ctx) as sock:
            assert sock.version() == ("TLSv1.2" if version == ssl.TLSVersion.TLSv1_2 else "TLSv1.3")
            assert tools.exchange(sock, "hello") == "ECHO hello"
            info = tools.who(sock)
            assert info["identity"] is None  # no client certificates on this listener


@pytest.mark.parametrize(
    "old", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1], ids=["TLSv1.0", "TLSv1.1"]
)
def test_tls10_and_tls11_refused(echo_server, tls_service_for, pki, tools, old):
    server = echo_server(tls_service_for())
    ctx = tools.client_context(pki.ca, minimum=old, maximum=old)
    with pytest.raises(ssl.SSLError, match="(?i)protocol.version"):
        tools.connect(server.port, ctx)
    # The client did offer the old version: the server refused it.
    assert tools.wait_for(lambda: "failed: unsupported protocol" in server.log())


def test_min_version_13_refuses_tls12(echo_server, tls_service_for, pki, tools):
    server = echo_server(tls_service_for(tls_min_version="1.3"))
    ctx12 = tools.client_context(
        pki.ca, minimum=ssl.TLSVersion.TLSv1_2, maximum=ssl.TLSVersion.TLSv1_2
    )
    with pytest.raises(ssl.SSLError, match="(?i)version"):
        tools.connect(server.port, ctx12)
    with tools.connect(server.port, tools.client_context(pki.ca)) as sock:
        assert sock.version() == "TLSv1.3"


def test_client_with_other_ca_rejects_server(echo_server, tls_service_for, pki, tools):
    server = echo_server(tls_service_for())
    with pytest.raises(ssl.SSLCertVerificationError):
        tools.connect(server.port, tools.client_context(pki.rogue_ca))


def test_hostname_and_ip_checked_by_client(echo_server, tls_service_for, pki, tools):
    server = echo_server(tls_service_for())
    ctx = tools.client_context(pki.ca)
    with tools.connect(server.port, ctx, server_hostname="127.0.0.1") as sock:
        assert tools.exchange(sock, "x") == "ECHO x"
    with pytest.raises(ssl.SSLCertVerificationError, match="(?i)hostname|match"):
        tools.connect(server.port, ctx, server_hostname="sip.other.example")


def test_openssl_s_client_versions(echo_server, tls_service_for, pki, s_client):
    server = echo_server(tls_service_for())
    for flag, name in (("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")):
        done = s_client(
            server.port,
            flag,
            "-CAfile",
            pki.ca,
            "-verify_return_error",
            "-servername",
            "localhost",
            lines=("hello",),
        )
        out = done.stdout.decode(errors="replace")
        assert done.returncode == 0, done.stderr.decode(errors="replace")
        assert f"Protocol  : {name}" in out or f"Protocol: {name}" in out or name in out
        assert "Verify return code: 0 (ok)" in out
        assert "ECHO hello" in out
    refused = s_client(
        server.port,
        "-tls1_1",
        "-cipher",
        "DEFAULT:@SECLEVEL=0",
        "-CAfile",
        pki.ca,
        lines=("hello",),
    )
    assert refused.returncode != 0
    assert "ECHO hello" not in refused.stdout.decode(errors="replace")


def test_openssl_s_client_wrong_ca(echo_server, tls_service_for, pki, s_client):
    server = echo_server(tls_service_for())
    done = s_client(server.port, "-CAfile", pki.rogue_ca, "-verify_return_error")
    assert done.returncode != 0
    assert "ECHO hello" not in done.stdout.decode(errors="replace")


def test_chain_served_to_client_trusting_root(echo_server, pki, tools):
    leaf, key = pki.chain_leaf
    # The chain in a separate file ...
    server = echo_server(
        {"tls_certificate": leaf, "tls_private_key": key, "tls_chain": pki.chain_intermediate}
    )
    with tools.connect(server.port, tools.client_context(pki.chain_root)) as sock:
        assert tools.exchange(sock, "a") == "ECHO a"
    # ... or appended to the certificate, with the key in the same file (stunnel's cert=).
    combined = pki.dir / "combined.pem"
    combined.write_bytes(leaf.read_bytes() + pki.chain_intermediate.read_bytes() + key.read_bytes())
    server = echo_server({"tls_certificate": combined})
    with tools.connect(server.port, tools.client_context(pki.chain_root)) as sock:
        assert tools.exchange(sock, "b") == "ECHO b"
    # Without the chain a client that trusts only the root cannot verify.
    server = echo_server({"tls_certificate": leaf, "tls_private_key": key})
    with pytest.raises(ssl.SSLCertVerificationError):
        tools.connect(server.port, tools.client_context(pki.chain_root))


def test_ipv6_listener(echo_server, tls_service_for, pki, tools):
    try:
        probe = socket.socket(socket.AF_INET6)
        probe.bind(("::1", 0))
        probe.close()
    except OSError:
        tools.fail_or_skip("no IPv6 loopback on this machine")
    server = echo_server(
        tls_service_for(
            address={"host": "::1", "port": 0, "family": "IPv6", "spec": "[::1]:0/tcp/IPv6"}
        )
    )
    with tools.connect(
        server.port, tools.client_context(pki.ca), host="::1", server_hostname="::1"
    ) as sock:
        assert tools.who(sock)["peer"].startswith("::1:")


# -- client certificates -----------------------------------------------------------------------


def _read_fails(sock, tools):
    """With TLS 1.3 the client finishes its handshake before the server checks the client
    certificate; the refusal then arrives as an alert on the first read."""
    tools.exchange(sock, "hello")


def test_client_certificate_required(echo_server, tls_service_for, pki, tools):
    server = echo_server(tls_service_for(tls_client_ca=pki.ca))
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        ctx = tools.client_context(pki.ca, minimum=version, maximum=version)
        with pytest.raises((ssl.SSLError, ConnectionError)):
            sock = tools.connect(server.port, ctx)
            with sock:
                _read_fails(sock, tools)
                raise AssertionError("a connection without client certificate was served")


def test_foreign_client_certificate_refused(echo_server, tls_service_for, pki, tools):
    server = echo_server(tls_service_for(tls_client_ca=pki.ca))
    cert, key = pki.rogue_kiosk  # CN kiosk-01, but signed by another CA
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        ctx = tools.client_context(pki.ca, cert=cert, key=key, minimum=version, maximum=version)
        with pytest.raises((ssl.SSLError, ConnectionError)):
            sock = tools.connect(server.port, ctx)
            with sock:
                _read_fails(sock, tools)
                raise AssertionError("a foreign client certificate was accepted")


def test_kiosk_certificate_identity(echo_server, tls_service_for, pki, tools):
    server = echo_server(tls_service_for(tls_client_ca=pki.ca))
    cert, key = pki.kiosk("kiosk-01")
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        ctx = tools.client_context(pki.ca, cert=cert, key=key, minimum=version, maximum=version)
        with tools.connect(server.port, ctx) as sock:
            identity = tools.who(sock)["identity"]
            assert identity["common_name"] == "kiosk-01"
            assert identity["dns_names"] == ["kiosk-01"]
            assert len(identity["fingerprint"].split(":")) == 32
            assert tools.exchange(sock, "MATCH kiosk-01") == "yes"
            assert tools.exchange(sock, "MATCH KIOSK-01") == "yes"
            assert tools.exchange(sock, "MATCH kiosk-02") == "no"
            assert tools.exchange(sock, "MATCH kiosk") == "no"
    log = server.log()
    assert "TLSv1.2 ECDHE-" in log and "TLSv1.3 TLS_" in log
    assert log.count(", client certificate kiosk-01 (sha256 ") == 2


def test_wildcard_and_cn_only_identities(echo_server, tls_service_for, pki, tools):
    server = echo_server(tls_service_for(tls_client_ca=pki.ca))
    with tools.connect(
        server.port, tools.client_context(pki.ca, cert=pki.wildcard[0], key=pki.wildcard[1])
    ) as sock:
        assert tools.exchange(sock, "MATCH k1.kiosks.example.org") == "yes"
        assert tools.exchange(sock, "MATCH a.b.kiosks.example.org") == "no"
        assert tools.exchange(sock, "MATCH wild") == "yes"  # subject CN
    with tools.connect(
        server.port, tools.client_context(pki.ca, cert=pki.cn_only[0], key=pki.cn_only[1])
    ) as sock:
        info = tools.who(sock)["identity"]
        assert info["dns_names"] == []
        assert tools.exchange(sock, "MATCH kiosk-cn") == "yes"
        assert tools.exchange(sock, "MATCH kiosk-01") == "no"


def test_plain_listener_has_no_identity(echo_server, pki, tools):
    server = echo_server({})
    with tools.connect(server.port, None) as sock:
        info = tools.who(sock)
        assert info["identity"] is None
        assert tools.exchange(sock, "MATCH kiosk-01") == "no"


def test_s_client_sees_acceptable_ca_names(echo_server, tls_service_for, pki, s_client):
    server = echo_server(tls_service_for(tls_client_ca=pki.ca))
    cert, key = pki.kiosk("kiosk-02")
    done = s_client(
        server.port,
        "-tls1_2",
        "-CAfile",
        pki.ca,
        "-cert",
        cert,
        "-key",
        key,
        lines=("MATCH kiosk-02",),
    )
    out = done.stdout.decode(errors="replace")
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert "Acceptable client certificate CA names" in out
    assert "koha-gateway test CA" in out
    assert "\nyes\n" in out
    missing = s_client(server.port, "-tls1_2", "-CAfile", pki.ca)
    assert "ECHO hello" not in missing.stdout.decode(errors="replace")


def test_failed_handshakes_are_logged(echo_server, tls_service_for, pki, tools):
    server = echo_server(tls_service_for(tls_client_ca=pki.ca))
    cert, key = pki.rogue_kiosk
    ctx = tools.client_context(pki.ca, cert=cert, key=key, maximum=ssl.TLSVersion.TLSv1_2)
    with pytest.raises(ssl.SSLError):
        tools.connect(server.port, ctx)
    old = ssl.TLSVersion.TLSv1_1
    with pytest.raises(ssl.SSLError):
        tools.connect(server.port, tools.client_context(pki.ca, minimum=old, maximum=old))
    assert tools.wait_for(lambda: server.log().count("TLS handshake with 127.0.0.1:") == 2)
    log = server.log()
    assert "certificate verify failed" in log
    assert "unsupported protocol" in log or "version" in log


def test_unfinished_handshake_closed(echo_server, tls_service_for, pki, tools):
    """The echo server runs with a 3 s handshake deadline (30 s in production)."""
    server = echo_server(tls_service_for())
    with tools.connect(server.port, None) as sock:
        sock.settimeout(30)
        sock.sendall(b"\x16\x03\x01\x00\xa5")  # the start of a ClientHello, then silence
        try:
            assert sock.recv(100) == b""
        except ConnectionResetError:
            pass
    assert "not finished within 3 s: closing" in server.log()
    # A normal client is not affected by the deadline.
    with tools.connect(server.port, tools.client_context(pki.ca)) as sock:
        time.sleep(3.5)
        assert tools.exchange(sock, "still here") == "ECHO still here"


def test_docs_openssl_recipe_makes_a_working_kiosk_certificate(
    echo_server, tls_service_for, pki, tools, openssl_bin, tmp_path
):
    """The 'Your own CA with openssl' commands of docs/tls.md, run as written."""
    recipe = f"""
set -e
cd {tmp_path}
{openssl_bin} req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=Library kiosk CA" \\
    -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \\
    -addext "keyUsage=critical,keyCertSign,cRLSign" \\
    -keyout kiosk-ca.key -out kiosk-ca.pem
{openssl_bin} req -newkey rsa:2048 -nodes -subj "/CN=kiosk-01" \\
    -keyout kiosk-01.key -out kiosk-01.csr
{openssl_bin} x509 -req -in kiosk-01.csr -CA kiosk-ca.pem -CAkey kiosk-ca.key -CAcreateserial \\
    -days 825 -out kiosk-01.pem -extfile <(printf '%s\\n' \\
    "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \\
    "extendedKeyUsage=clientAuth" "subjectAltName=DNS:kiosk-01")
"""
    done = subprocess.run(["bash", "-c", recipe], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    server = echo_server(tls_service_for(tls_client_ca=tmp_path / "kiosk-ca.pem"))
    ctx = tools.client_context(
        pki.ca, cert=tmp_path / "kiosk-01.pem", key=tmp_path / "kiosk-01.key"
    )
    with tools.connect(server.port, ctx) as sock:
        assert tools.exchange(sock, "MATCH kiosk-01") == "yes"
        assert tools.exchange(sock, "MATCH kiosk-02") == "no"
