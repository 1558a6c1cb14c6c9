"""Live reload of certificates, HAProxy PROXY protocol and TCP keepalive on a real Listener."""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import struct

import pytest


def _served_cn(port, pki, tools) -> str:
    with tools.connect(port, tools.client_context(pki.ca)) as sock:
        cert = sock.getpeercert()
        return dict(x[0] for x in cert["subject"])["commonName"]


def test_reload_swaps_certificate_and_keeps_open_connections(echo_server, pki, tools, tmp_path):
    cert, key = tmp_path / "sip.pem", tmp_path / "sip.key"
    shutil.copy(pki.server_cert, cert)
    shutil.copy(pki.server_key, key)
    server = echo_server({"tls_certificate": cert, "tls_private_key": key})
    old = tools.connect(server.port, tools.client_context(pki.ca))
    try:
        assert dict(x[0] for x in old.getpeercert()["subject"])["commonName"] == "localhost"
        assert tools.exchange(old, "before") == "ECHO before"

        # Renewal: new files in place, then SIGHUP.
        shutil.copy(pki.renewed[0], cert)
        shutil.copy(pki.renewed[1], key)
        assert server.reload() == "RELOADED"
        assert _served_cn(server.port, pki, tools) == "renewed.localhost"
        # The connection opened before the reload still works on its old session.
        assert tools.exchange(old, "after") == "ECHO after"
    finally:
        old.close()


def test_broken_reload_keeps_old_certificate(echo_server, pki, tools, tmp_path):
    cert, key = tmp_path / "sip.pem", tmp_path / "sip.key"
    shutil.copy(pki.server_cert, cert)
    shutil.copy(pki.server_key, key)
    server = echo_server({"tls_certificate": cert, "tls_private_key": key})

    # Half-finished renewal: new certificate, old key.
    shutil.copy(pki.renewed[0], cert)
    answer = server.reload()
    assert answer.startswith("RELOAD-FAILED"), answer
    assert "does not match" in answer and str(key) in answer
    assert _served_cn(server.port, pki, tools) == "localhost"

    cert.write_text("not a certificate\n")
    answer = server.reload()
    assert answer.startswith("RELOAD-FAILED") and "no PEM certificate" in answer
    assert _served_cn(server.port, pki, tools) == "localhost"

    # Finishing the renewal works.
    shutil.copy(pki.renewed[0], cert)
    shutil.copy(pki.renewed[1], key)
    assert server.reload() == "RELOADED"
    assert _served_cn(server.port, pki, tools) == "renewed.localhost"


def test_reload_turns_on_client_certificates(echo_server, tls_service_for, pki, tools):
    server = echo_server(tls_service_for())
    with tools.connect(server.port, tools.client_context(pki.ca)) as sock:
        assert tools.exchange(sock, "a") == "ECHO a"
    server.write_config(tls_service_for(tls_client_ca=pki.ca))
    assert server.reload() == "RELOADED"
    with pytest.raises((ssl.SSLError, ConnectionError)):
        sock = tools.connect(server.port, tools.client_context(pki.ca))
        with sock:
            tools.exchange(sock, "a")
            raise AssertionError("served without client certificate after reload")
    cert, key = pki.kiosk("kiosk-01")
    with tools.connect(server.port, tools.client_context(pki.ca, cert=cert, key=key)) as sock:
        assert tools.exchange(sock, "MATCH kiosk-01") == "yes"


# -- PROXY protocol ----------------------------------------------------------------------------


def _v2_header(src: str, sport: int, dst: str, dport: int) -> bytes:
    body = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)
    return b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack("!H", len(body)) + body


def test_proxy_v1_sets_peer(echo_server, tools):
    server = echo_server({"proxy_protocol": "v1"})
    with tools.connect(server.port, None) as sock:
        # Header split over several segments, as a slow balancer might send it.
        sock.sendall(b"PRO")
        sock.sendall(b"XY TCP4 198.51.100.7 192.0.2.1 40123 6001\r\n")
        info = tools.who(sock)
    assert info["peer"] == "198.51.100.7:40123"
    assert info["host"] == "192.0.2.1:6001"
    # The SIP factory and the protocol saw the kiosk's address from the start.
    assert info["built_addr"] == "198.51.100.7:40123"
    assert info["made_peer"] == "198.51.100.7:40123"


def test_proxy_v2_sets_peer(echo_server, tools):
    server = echo_server({"proxy_protocol": "v2"})
    with tools.connect(server.port, None) as sock:
        header = _v2_header("203.0.113.9", 5555, "192.0.2.1", 6001)
        sock.sendall(header[:10])
        sock.sendall(header[10:] + b"WHO\n")  # header and first line in one segment
        data = b""
        while not data.endswith(b"\n"):
            data += sock.recv(4096)
    info = json.loads(data)
    assert info["peer"] == "203.0.113.9:5555"
    assert info["made_peer"] == "203.0.113.9:5555"


def test_proxy_local_and_unknown_keep_socket_peer(echo_server, tools):
    server = echo_server({"proxy_protocol": "v1"})
    with tools.connect(server.port, None) as sock:
        sock.sendall(b"PROXY UNKNOWN\r\n")
        assert tools.who(sock)["peer"].startswith("127.0.0.1:")
    server = echo_server({"proxy_protocol": "v2"})
    with tools.connect(server.port, None) as sock:
        sock.sendall(b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x20, 0x00, 0, 0]))  # LOCAL
        assert tools.who(sock)["peer"].startswith("127.0.0.1:")


@pytest.mark.parametrize(
    "version, first",
    [
        ("v1", b"WHO\n"),  # no header at all
        ("v1", b"PROXY TCP4 not-an-ip 192.0.2.1 1 2\r\n"),
        ("v1", _v2_header("203.0.113.9", 5555, "192.0.2.1", 6001)),  # wrong version
        ("v2", b"PROXY TCP4 198.51.100.7 192.0.2.1 40123 6001\r\n"),
        ("v2", b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + b"\x00" * 8),  # TLS hello
    ],
)
def test_proxy_bad_header_closes(echo_server, tools, version, first):
    server = echo_server({"proxy_protocol": version})
    with tools.connect(server.port, None) as sock:
        sock.sendall(first)
        try:
            assert sock.recv(100) == b""
        except ConnectionResetError:
            pass
    assert "closing connection" in server.log()


def test_proxy_header_timeout(echo_server, tools):
    server = echo_server({"proxy_protocol": "v1"})
    with tools.connect(server.port, None) as sock:
        sock.settimeout(30)
        sock.sendall(b"PROXY TCP4 ")  # and nothing more
        assert sock.recv(100) == b""
    assert "no PROXY header within" in server.log()


def test_proxy_then_tls_with_client_certificate(echo_server, tls_service_for, pki, tools):
    server = echo_server(tls_service_for(tls_client_ca=pki.ca, proxy_protocol="v1"))
    cert, key = pki.kiosk("kiosk-02")
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    raw.sendall(b"PROXY TCP6 2001:db8::7 2001:db8::1 4444 6443\r\n")
    ctx = tools.client_context(pki.ca, cert=cert, key=key)
    with ctx.wrap_socket(raw, server_hostname="localhost") as sock:
        info = tools.who(sock)
    assert info["peer"] == "2001:db8::7:4444"
    assert info["identity"]["common_name"] == "kiosk-02"


# -- TCP keepalive -------------------------------------------------------------------------------


def test_keepalive_options_applied(echo_server, tools):
    server = echo_server(
        {},
        {
            "custom_tcp_keepalive": True,
            "custom_tcp_keepalive_time": 120,
            "custom_tcp_keepalive_intvl": 30,
        },
    )
    with tools.connect(server.port, None) as sock:
        keepalive, idle, interval = tools.who(sock)["keepalive"]
    assert keepalive == 1 and idle == 120 and interval == 30


def test_keepalive_off_by_default(echo_server, tools):
    server = echo_server({})
    with tools.connect(server.port, None) as sock:
        assert tools.who(sock)["keepalive"][0] == 0


def test_keepalive_with_proxy_and_tls(echo_server, tls_service_for, pki, tools):
    server = echo_server(
        tls_service_for(proxy_protocol="v2"),
        {"custom_tcp_keepalive": True, "custom_tcp_keepalive_time": 300},
    )
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    raw.sendall(_v2_header("198.51.100.20", 1000, "192.0.2.1", 6443))
    with tools.client_context(pki.ca).wrap_socket(raw, server_hostname="localhost") as sock:
        info = tools.who(sock)
    assert info["peer"] == "198.51.100.20:1000"
    assert info["keepalive"][:2] == [1, 300]


def test_reload_plain_listener_to_tls_and_proxy(echo_server, tls_service_for, pki, tools):
    server = echo_server({})
    plain = tools.connect(server.port, None)
    try:
        assert tools.exchange(plain, "a") == "ECHO a"
        server.write_config(tls_service_for(proxy_protocol="v1"))
        assert server.reload() == "RELOADED"
        assert "now RAW, TLS 1.2+, PROXY v1 (was RAW)" in server.log()
        raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        raw.sendall(b"PROXY TCP4 198.51.100.8 192.0.2.1 1234 6443\r\n")
        with tools.client_context(pki.ca).wrap_socket(raw, server_hostname="localhost") as tls:
            assert tools.who(tls)["peer"] == "198.51.100.8:1234"
        # The plain connection accepted before the reload is still served as it was.
        assert tools.exchange(plain, "b") == "ECHO b"
    finally:
        plain.close()
