"""End to end over the real ``twistd koha-gateway`` service: SIP2 over TLS listeners.

3M SIP2 2.00 Login (93/94) and Patron Information (63/64) over TLS, kiosk certificates bound
to accounts (``client_certificate``), SIGHUP certificate reload, PROXY protocol peer.
"""

from __future__ import annotations

import shutil
import signal
import socket
import ssl

import pytest
from lxml import etree

from koha_gateway.client import SIPClient
from tests.gateway import elements, free_port

PATRON = "23529000000001"


@pytest.fixture
def engine():
    """The TLS layer does not touch the database: SQLite is enough here."""
    return "sqlite"


def _child(parent, name):
    namespace = etree.QName(parent).namespace
    return etree.SubElement(parent, f"{{{namespace}}}{name}" if namespace else name)


def tls_gateway(
    make_gateway, pki, tmp_path, *, client_ca=True, proxy=None, bind=True, transport="RAW"
):
    """Start a gateway with an extra TLS listener ("kiosk-tls") using copies of the test
    certificates (so a test may replace them), joe bound to kiosk-01, kilsc to kiosk-02."""
    cert, key = tmp_path / "sip.pem", tmp_path / "sip.key"
    if not cert.exists():
        shutil.copy(pki.server_cert, cert)
        shutil.copy(pki.server_key, key)

    def customise(tree, process):
        listeners = elements(tree, "listeners")[0]
        service = _child(listeners, "service")
        port = free_port()
        attributes = {
            "port": f"127.0.0.1:{port}/tcp/IPv4",
            "transport": transport,
            "protocol": "SIP/2.00",
            "timeout": "60",
            "client_timeout": "600",
            "tls_certificate": str(cert),
            "tls_private_key": str(key),
        }
        if client_ca:
            attributes["tls_client_ca"] = str(pki.ca)
        if proxy:
            attributes["proxy_protocol"] = proxy
        for name, value in attributes.items():
            service.set(name, value)
        process.ports["kiosk-tls"] = port
        if bind:
            for login in elements(tree, "login"):
                if login.get("id") == "joe":
                    login.set("client_certificate", "kiosk-01")
                elif login.get("id") == "kilsc":
                    login.set("client_certificate", "kiosk-02")

    return make_gateway(customise=customise)


def tls_client(gateway, pki, tools, kiosk=None, **kw) -> SIPClient:
    cert, key = pki.kiosk(kiosk) if kiosk else (None, None)
    ctx = tools.client_context(pki.ca, cert=cert, key=key, **kw)
    return SIPClient(
        "127.0.0.1", gateway.ports["kiosk-tls"], ssl_context=ctx, server_hostname="localhost"
    )


def test_sip2_login_and_patron_information_over_tls(make_gateway, pki, tmp_path, tools):
    gateway = tls_gateway(make_gateway, pki, tmp_path, client_ca=False, bind=False)
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        with tls_client(gateway, pki, tools, minimum=version, maximum=version) as client:
            assert client.login("joe", "joes") == "941"
            answer = client.request(f"6300020261129    120000          AOWEL|AA{PATRON}|")
            assert answer.startswith("64")
            assert f"AA{PATRON}|" in answer and "AEAda Lovelace|" in answer
    # The plain listener keeps working beside the TLS one.
    with gateway.client("raw") as client:
        assert client.login("joe", "joes") == "941"


def test_tls11_refused_by_gateway(make_gateway, pki, tmp_path, tools):
    gateway = tls_gateway(make_gateway, pki, tmp_path, client_ca=False, bind=False)
    with pytest.raises(ssl.SSLError):
        tls_client(
            gateway, pki, tools, minimum=ssl.TLSVersion.TLSv1_1, maximum=ssl.TLSVersion.TLSv1_1
        )


def test_kiosk_certificate_logs_in_as_its_account_only(make_gateway, pki, tmp_path, tools):
    gateway = tls_gateway(make_gateway, pki, tmp_path)
    with tls_client(gateway, pki, tools, "kiosk-01") as client:
        assert client.login("kilsc", "kilsc1") == "940"  # kiosk-02's account
        assert client.login("joe", "joes") == "941"
        answer = client.request(f"6300020261129    120000          AOWEL|AA{PATRON}|")
        assert answer.startswith("64")
    with tls_client(gateway, pki, tools, "kiosk-02") as client:
        assert client.login("joe", "joes") == "940"
        assert client.login("kilsc", "kilsc1") == "941"
    # The bound account cannot log in without TLS at all.
    with gateway.client("raw") as client:
        assert client.login("joe", "joes") == "940"
    log = gateway.read_log()
    assert "requires the client certificate 'kiosk-02'" in log
    assert "requires the client certificate 'kiosk-01'" in log


def test_no_or_foreign_certificate_refused_by_gateway(make_gateway, pki, tmp_path, tools):
    gateway = tls_gateway(make_gateway, pki, tmp_path)
    rogue_cert, rogue_key = pki.rogue_kiosk
    for ctx in (
        tools.client_context(pki.ca),
        tools.client_context(pki.ca, cert=rogue_cert, key=rogue_key),
    ):
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            port = gateway.ports["kiosk-tls"]
            client = SIPClient("127.0.0.1", port, ssl_context=ctx, server_hostname="localhost")
            with client:
                answer = client.login("joe", "joes")
                raise AssertionError(f"login answered without a valid certificate: {answer}")


def test_sighup_swaps_certificate_keeping_open_sessions(make_gateway, pki, tmp_path, tools):
    gateway = tls_gateway(make_gateway, pki, tmp_path)
    old = tls_client(gateway, pki, tools, "kiosk-01")
    try:
        assert old.login("joe", "joes") == "941"
        shutil.copy(pki.renewed[0], tmp_path / "sip.pem")
        shutil.copy(pki.renewed[1], tmp_path / "sip.key")
        gateway.signal(signal.SIGHUP)
        assert tools.wait_for(
            lambda: "reloaded certificate CN=renewed.localhost" in gateway.read_log()
        )

        def served_cn():
            cert, key = pki.kiosk("kiosk-02")
            ctx = tools.client_context(pki.ca, cert=cert, key=key)
            address = ("127.0.0.1", gateway.ports["kiosk-tls"])
            with (
                socket.create_connection(address, timeout=10) as raw,
                ctx.wrap_socket(raw, server_hostname="localhost") as tls,
            ):
                return dict(x[0] for x in tls.getpeercert()["subject"])["commonName"]

        assert served_cn() == "renewed.localhost"
        # The session opened before the reload still answers.
        assert old.request("9900302.00").startswith("98")

        # A broken renewal is refused and the running certificate stays.
        shutil.copy(pki.server_cert, tmp_path / "sip.pem")  # key no longer matches
        gateway.signal(signal.SIGHUP)
        assert tools.wait_for(lambda: "reload refused" in gateway.read_log())
        assert served_cn() == "renewed.localhost"
        assert gateway.alive()
    finally:
        old.close()


def test_proxy_header_sets_logged_peer(make_gateway, pki, tmp_path, tools):
    gateway = tls_gateway(make_gateway, pki, tmp_path, proxy="v1")
    raw = socket.create_connection(("127.0.0.1", gateway.ports["kiosk-tls"]), timeout=10)
    raw.sendall(b"PROXY TCP4 198.51.100.7 192.0.2.10 40123 6443\r\n")
    cert, key = pki.kiosk("kiosk-01")
    with tools.client_context(pki.ca, cert=cert, key=key).wrap_socket(
        raw, server_hostname="localhost"
    ) as sock:
        sock.sendall(b"9300CNjoe|COwrong|CP|\r")
        data = b""
        while not data.endswith(b"\n") and not data.endswith(b"\r"):
            chunk = sock.recv(100)
            if not chunk:
                break
            data += chunk
        assert data.startswith(b"940")
    assert tools.wait_for(lambda: "@198.51.100.7: login failed for 'joe'" in gateway.read_log())


def _read_until(sock, marker: bytes) -> bytes:
    data = b""
    while marker not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def test_telnet_transport_over_tls_with_kiosk_certificate(make_gateway, pki, tmp_path, tools):
    gateway = tls_gateway(make_gateway, pki, tmp_path, transport="telnet")
    cert, key = pki.kiosk("kiosk-01")
    ctx = tools.client_context(pki.ca, cert=cert, key=key)
    with tools.connect(gateway.ports["kiosk-tls"], ctx) as sock:
        assert _read_until(sock, b"login: ").endswith(b"login: ")
        sock.sendall(b"joe\r\n")
        _read_until(sock, b"password: ")
        sock.sendall(b"joes\r\n")
        assert b"Login OK" in _read_until(sock, b"SIP\r\n")
        sock.sendall(f"6300020261129    120000          AOWEL|AA{PATRON}|\r\n".encode())
        assert _read_until(sock, b"\r\n").startswith(b"64")
    cert, key = pki.kiosk("kiosk-02")
    ctx = tools.client_context(pki.ca, cert=cert, key=key)
    with tools.connect(gateway.ports["kiosk-tls"], ctx) as sock:
        _read_until(sock, b"login: ")
        sock.sendall(b"joe\r\n")
        _read_until(sock, b"password: ")
        sock.sendall(b"joes\r\n")
        assert b"Invalid login" in _read_until(sock, b"Invalid login")
