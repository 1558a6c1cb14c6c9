"""Fixtures for the TLS listener tests: certificates made with koha_gateway.certs, a real
listener in a subprocess (echo_server.py) and real TLS clients (Python ssl, openssl s_client).
"""

from __future__ import annotations

import datetime
import json
import os
import queue
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest

from koha_gateway import certs

ROOT = Path(__file__).resolve().parents[2]
ECHO_SERVER = Path(__file__).with_name("echo_server.py")
START_TIMEOUT = 20.0


def _fail_or_skip(message: str):
    """In CI a missing tool or server is a failure, elsewhere a skip."""
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    """A test CA with a server and two kiosk certificates, plus a rogue CA whose
    ``kiosk-01`` certificate must never be accepted, and spare certificates for error cases."""
    base = tmp_path_factory.mktemp("pki")
    made = certs.ensure_pki(base / "ca", ["kiosk-01", "kiosk-02"], key_type="ec")
    ca = certs._load(made.ca_cert, made.ca_key)

    rogue_ca = certs.create_ca("rogue CA", key_type="ec")
    rogue_ca.write(base / "rogue-ca.pem", base / "rogue-ca.key")
    rogue_kiosk = certs.issue(
        rogue_ca, "kiosk-01", dns_names=["kiosk-01"], client=True, key_type="ec"
    )
    rogue_kiosk.write(base / "rogue-kiosk.pem", base / "rogue-kiosk.key")
    rogue_server = certs.issue(
        rogue_ca,
        "localhost",
        dns_names=["localhost"],
        ip_addresses=["127.0.0.1"],
        server=True,
        key_type="ec",
    )
    rogue_server.write(base / "rogue-server.pem", base / "rogue-server.key")

    renewed = certs.issue(
        ca,
        "renewed.localhost",
        dns_names=["localhost", "renewed.localhost"],
        ip_addresses=["127.0.0.1", "::1"],
        server=True,
        key_type="ec",
    )
    renewed.write(base / "renewed.pem", base / "renewed.key")

    now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    expired = certs.issue(
        ca,
        "expired",
        dns_names=["localhost"],
        server=True,
        key_type="ec",
        not_before=now - datetime.timedelta(days=30),
        not_after=now - datetime.timedelta(days=1),
    )
    expired.write(base / "expired.pem", base / "expired.key")
    future = certs.issue(
        ca,
        "future",
        dns_names=["localhost"],
        server=True,
        key_type="ec",
        not_before=now + datetime.timedelta(days=2),
        not_after=now + datetime.timedelta(days=40),
    )
    future.write(base / "future.pem", base / "future.key")

    # An intermediate CA: the served chain must carry it for clients that trust only the root.
    root = certs.create_ca("chain root", key_type="ec", path_length=1)
    root.write(base / "chain-root.pem", base / "chain-root.key")
    intermediate = _intermediate(root, "chain intermediate")
    intermediate.write(base / "chain-intermediate.pem", base / "chain-intermediate.key")
    leaf = certs.issue(
        intermediate,
        "chained.localhost",
        dns_names=["localhost"],
        ip_addresses=["127.0.0.1"],
        server=True,
        key_type="ec",
    )
    leaf.write(base / "chain-leaf.pem", base / "chain-leaf.key")

    wildcard = certs.issue(
        ca, "wild", dns_names=["*.kiosks.example.org"], client=True, key_type="ec"
    )
    wildcard.write(base / "wild.pem", base / "wild.key")
    cn_only = certs.issue(ca, "kiosk-cn", client=True, key_type="ec")
    cn_only.write(base / "cn-only.pem", base / "cn-only.key")

    return SimpleNamespace(
        dir=base,
        ca=made.ca_cert,
        server_cert=made.server_cert,
        server_key=made.server_key,
        kiosk=lambda name: (made.kiosk_cert(name), made.kiosk_key(name)),
        rogue_ca=base / "rogue-ca.pem",
        rogue_kiosk=(base / "rogue-kiosk.pem", base / "rogue-kiosk.key"),
        rogue_server=(base / "rogue-server.pem", base / "rogue-server.key"),
        renewed=(base / "renewed.pem", base / "renewed.key"),
        expired=(base / "expired.pem", base / "expired.key"),
        future=(base / "future.pem", base / "future.key"),
        chain_root=base / "chain-root.pem",
        chain_intermediate=base / "chain-intermediate.pem",
        chain_leaf=(base / "chain-leaf.pem", base / "chain-leaf.key"),
        wildcard=(base / "wild.pem", base / "wild.key"),
        cn_only=(base / "cn-only.pem", base / "cn-only.key"),
    )


def _intermediate(root: certs.Issued, name: str) -> certs.Issued:
    """An intermediate CA signed by ``root`` (certs.create_ca makes only self-signed ones)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    key = certs.new_key("ec")
    now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(root.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(root.key, hashes.SHA256())
    )
    return certs.Issued(cert, key)


class EchoServer:
    """tests/tls/echo_server.py in a subprocess: a real Listener on a real socket."""

    def __init__(self, workdir: Path, service: dict, server_params: dict | None = None):
        self.workdir = workdir
        self.config = workdir / "listener.json"
        self.stderr_path = workdir / "server.log"
        self.write_config(service, server_params)
        self.lines: queue.Queue[str] = queue.Queue()
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None
        self.host = service.get("address", {}).get("host") or "127.0.0.1"

    def write_config(self, service: dict, server_params: dict | None = None) -> None:
        service = {
            "address": {"host": "127.0.0.1", "port": 0, "family": None, "spec": "test"},
            **{k: (str(v) if isinstance(v, Path) else v) for k, v in service.items()},
        }
        tmp = self.config.with_suffix(".tmp")
        tmp.write_text(json.dumps({"service": service, "server_params": server_params}))
        tmp.replace(self.config)

    def start(self) -> str:
        """Start and wait for ``READY``; returns the first line (READY or START-FAILED ...)."""
        env = dict(
            os.environ, PYTHONPATH=str(ROOT), PROXY_HEADER_TIMEOUT="2", TLS_HANDSHAKE_TIMEOUT="3"
        )
        self._stderr = open(self.stderr_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, str(ECHO_SERVER), str(self.config)],
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=str(self.workdir),
        )
        threading.Thread(target=self._read, daemon=True).start()
        line = self.next_line(START_TIMEOUT)
        if line.startswith("READY "):
            self.port = int(line.split()[1])
        return line

    def _read(self):
        for raw in self.proc.stdout:
            self.lines.put(raw.decode().rstrip("\n"))
        self.lines.put("EOF")

    def next_line(self, timeout: float = 10.0) -> str:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            return "TIMEOUT"

    def reload(self) -> str:
        self.proc.send_signal(signal.SIGHUP)
        return self.next_line()

    def log(self) -> str:
        self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None:
            self.proc.stdout.close()
            self._stderr.close()


@pytest.fixture
def echo_server(tmp_path):
    """``start(service: dict, server_params=None) -> EchoServer`` (already listening)."""
    servers: list[EchoServer] = []

    def start(service: dict, server_params: dict | None = None, *, expect_ready=True):
        workdir = tmp_path / f"server{len(servers)}"
        workdir.mkdir()
        server = EchoServer(workdir, service, server_params)
        servers.append(server)
        first = server.start()
        if expect_ready and not first.startswith("READY "):
            pytest.fail(f"echo server did not start: {first}\n{server.log()}")
        return server

    yield start
    for server in servers:
        server.stop()


def tls_service(pki, **extra) -> dict:
    service = {"tls_certificate": pki.server_cert, "tls_private_key": pki.server_key}
    service.update(extra)
    return service


@pytest.fixture
def tls_service_for(pki):
    return lambda **extra: tls_service(pki, **extra)


def client_context(
    ca,
    *,
    cert=None,
    key=None,
    minimum=ssl.TLSVersion.TLSv1_2,
    maximum=ssl.TLSVersion.MAXIMUM_SUPPORTED,
) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(str(ca))
    if minimum < ssl.TLSVersion.TLSv1_2:
        # Let the client offer the old versions the server must refuse.
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.0/1.1 on purpose
        ctx.minimum_version = minimum
        ctx.maximum_version = maximum
    if cert is not None:
        ctx.load_cert_chain(str(cert), str(key))
    return ctx


def connect(port, ctx: ssl.SSLContext | None, host="127.0.0.1", server_hostname="localhost"):
    sock = socket.create_connection((host, port), timeout=10)
    if ctx is None:
        return sock
    try:
        return ctx.wrap_socket(sock, server_hostname=server_hostname)
    except BaseException:
        sock.close()
        raise


def exchange(sock, line: str) -> str:
    """Send a line, read one line back ('' when the server closed the connection)."""
    sock.sendall(line.encode() + b"\n")
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.decode().rstrip("\n")


def who(sock) -> dict:
    return json.loads(exchange(sock, "WHO"))


@pytest.fixture
def tools():
    return SimpleNamespace(
        client_context=client_context,
        connect=connect,
        exchange=exchange,
        who=who,
        wait_for=wait_for,
        fail_or_skip=_fail_or_skip,
    )


@pytest.fixture(scope="session")
def openssl_bin():
    path = shutil.which("openssl")
    if path is None:
        _fail_or_skip("openssl command not installed (apt-get install openssl)")
    return path


@pytest.fixture
def s_client(openssl_bin):
    """Run ``openssl s_client`` against a port, send ``lines`` then BYE; returns the
    CompletedProcess (stdout holds the session and the echoed lines)."""

    def run(port, *args, lines=("hello",), host="127.0.0.1", timeout=20):
        stdin = "".join(f"{line}\n" for line in (*lines, "BYE"))
        cmd = [openssl_bin, "s_client", "-connect", f"{host}:{port}", "-ign_eof", *map(str, args)]
        return subprocess.run(
            cmd, input=stdin.encode(), capture_output=True, timeout=timeout, check=False
        )

    return run


def wait_for(predicate, timeout=10.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
