"""A real HAProxy in front of a real gateway, as docs/multi-host.md describes.

HAProxy (TCP mode, ``send-proxy-v2``, an HTTP health check against the gateway's ``/health``)
listens on 127.0.0.1 and connects to the gateway from 127.0.0.3; the kiosk connects to HAProxy
from 127.0.0.2 (any 127/8 address reaches the loopback on Linux). The gateway must see the
kiosk's address, not the balancer's: in its log, and in the request journal, where a terminal
is a SIP account at a peer address. The ``haproxy.cfg`` example of the documentation is
checked by ``haproxy -c`` too.

HAProxy comes from Debian (``apt-get install haproxy``; ``.ci/run`` installs it). Without it
the tests are skipped, except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from koha_gateway.client import SIPClient, SIPError
from tests.gateway import ROOT, elements, free_port, sip_date, wait_for

DOC = ROOT / "docs" / "multi-host.md"
KIOSK = "127.0.0.2"
BALANCER = "127.0.0.3"
BLANK = " " * 18
ADA = "23529000000001"
AVAILABLE = "39999000000001"


def _haproxy() -> str:
    path = shutil.which("haproxy") or (
        "/usr/sbin/haproxy" if os.path.exists("/usr/sbin/haproxy") else None
    )
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("haproxy is not installed (.ci/run installs it)")
        pytest.skip("haproxy is not installed (apt-get install haproxy)")
    return path


class HAProxy:
    """``haproxy -db -f haproxy.cfg`` in the foreground, with an admin socket for its state."""

    def __init__(self, executable: str, workdir: Path, config: str):
        self.executable = executable
        self.config = workdir / "haproxy.cfg"
        self.config.write_text(config)
        self.socket = workdir / "haproxy.sock"
        self.process: subprocess.Popen | None = None

    def start(self, front: int) -> HAProxy:
        self.process = subprocess.Popen(
            [self.executable, "-db", "-f", str(self.config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )

        def listening():
            if self.process.poll() is not None:
                output = self.process.stdout.read().decode(errors="replace")
                pytest.fail(f"haproxy exited with {self.process.returncode}:\n{output}")
            try:
                with socket.create_connection(("127.0.0.1", front), timeout=0.5):
                    return True
            except OSError:
                return False

        wait_for(listening, timeout=15, what="haproxy listening")
        return self

    def command(self, line: str) -> str:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(str(self.socket))
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode(errors="replace")

    def server_check(self, backend: str, server: str) -> str:
        """The last health check status of ``server`` (``L7OK``, ``L4CON`` ...)."""
        lines = self.command("show stat").splitlines()
        header = lines[0].lstrip("# ").split(",")
        for line in lines[1:]:
            row = dict(zip(header, line.split(",")))
            if row.get("pxname") == backend and row.get("svname") == server:
                return row.get("check_status", "")
        return ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self.process is not None and self.process.stdout:
            self.process.stdout.close()


@pytest.fixture
def haproxy_path():
    return _haproxy()


def _proxy_v2_on_raw(tree, gateway):
    for service in elements(tree, "service"):
        if service.get("port") == f"127.0.0.1:{gateway.ports['raw']}/tcp":
            service.set("proxy_protocol", "v2")


def test_gateway_behind_haproxy_sees_the_kiosk_address(make_gateway, haproxy_path, tmp_path):
    admin = free_port()
    gateway = make_gateway(
        customise=_proxy_v2_on_raw,
        extra_args=["--admin-port", str(admin), "--admin-interface", "127.0.0.1"],
    )
    front = free_port()
    config = f"""
global
    maxconn 1000
    stats socket {tmp_path / "haproxy.sock"} mode 600 level admin

defaults
    mode tcp
    timeout connect 5s
    timeout client 30m
    timeout server 30m

frontend sip2
    bind 127.0.0.1:{front}
    default_backend gateways

backend gateways
    balance leastconn
    option httpchk
    http-check send meth GET uri /health
    http-check expect status 200
    default-server send-proxy-v2 check port {admin} inter 200ms
    server gw1 127.0.0.1:{gateway.ports["raw"]} source {BALANCER}
"""
    proxy = HAProxy(haproxy_path, tmp_path, config).start(front)
    try:
        wait_for(
            lambda: proxy.server_check("gateways", "gw1") == "L7OK",
            timeout=15,
            what="haproxy's health check of the gateway's /health",
        )
        now = sip_date()
        with SIPClient("127.0.0.1", front, source_address=(KIOSK, 0)) as client:
            assert client.login("joe", "joes") == "941"
            assert client.request("9900302.00").startswith("98")
            checkout = client.request(f"11YN{now}{BLANK}AOWEL|AA{ADA}|AB{AVAILABLE}|AC|")
            assert checkout.startswith("121"), checkout
            checkin = client.request(f"09N{now}{now}AOWEL|APWEL|AB{AVAILABLE}|AC|")
            assert checkin.startswith("101"), checkin
        # The peer is the kiosk's address from the PROXY header, not HAProxy's.
        log = gateway.wait_for_log(f"joe@{KIOSK}: Successful login")
        assert f"@{BALANCER}:" not in log
        rows = gateway.query("SELECT DISTINCT account, peer FROM kgw_request_journal")
        assert rows == [{"account": "joe", "peer": KIOSK}]
    finally:
        proxy.stop()


def test_a_connection_without_the_proxy_header_is_refused(make_gateway, haproxy_path):
    # Only the balancer may reach a PROXY listener: a kiosk that connects directly and speaks
    # SIP2 is dropped, never served under an address it could have made up.
    gateway = make_gateway(customise=_proxy_v2_on_raw)
    with gateway.client(source_address=(KIOSK, 0)) as client:
        client.send_raw(client.frame("9300CNjoe|COjoes|CP|"))
        with pytest.raises((SIPError, OSError)):
            client.read_line()
    gateway.wait_for_log(f"closing connection from {KIOSK}")
    assert "expected a PROXY protocol v2 header" in gateway.read_log()


def test_the_documented_haproxy_cfg_is_valid(haproxy_path, tmp_path):
    text = DOC.read_text()
    blocks = re.findall(r"```haproxy\n(.*?)```", text, re.S)
    assert blocks, "docs/multi-host.md has no haproxy.cfg example"
    for n, block in enumerate(blocks):
        # Paths of the example that do not exist here: a socket directory and a certificate.
        block = block.replace("/run/haproxy/admin.sock", str(tmp_path / f"admin{n}.sock"))
        block = block.replace("/etc/haproxy/certs/sip.pem", str(_pem(tmp_path)))
        config = tmp_path / f"example{n}.cfg"
        config.write_text(block)
        result = subprocess.run(
            [haproxy_path, "-c", "-f", str(config)], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, f"example {n + 1}:\n{result.stdout}{result.stderr}"


def _pem(tmp_path: Path) -> Path:
    """A certificate and key in one file, as HAProxy's ``crt`` wants them."""
    from tests.gateway import shared_pki

    pki = shared_pki()
    pem = tmp_path / "sip.pem"
    if not pem.exists():
        pem.write_bytes(Path(pki.server_cert).read_bytes() + Path(pki.server_key).read_bytes())
    return pem
