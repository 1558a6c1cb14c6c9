"""A real ``twistd koha-gateway`` process for end-to-end tests.

The gateway runs as a child process on free ports of 127.0.0.1, with a SIPconfig.xml derived from
the shipped ``conf/SIPconfig.xml`` and its own copy of a demo database; the tests talk to it over
real sockets with :class:`koha_gateway.client.SIPClient`.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from lxml import etree

from koha_gateway.client import SIPClient

ROOT = Path(__file__).resolve().parent.parent
SHIPPED_SIPCONFIG = ROOT / "conf" / "SIPconfig.xml"

#: The instant every test gateway starts at (``KOHA_GATEWAY_CLOCK``, see koha_gateway/clock.py)
#: and the demo data is loaded at; request dates derive from it too, so that nothing a test
#: checks depends on the day it runs. The gateway's clock advances normally from there.
NOW = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)
#: The gateway's time zone: SIP2 dates are local time, so it is fixed as well.
GATEWAY_TZ = "UTC"


def sip_date(at: datetime | None = None, **delta) -> str:
    """A SIP2 transaction date (YYYYMMDDZZZZHHMMSS) at ``at`` (default NOW) plus ``delta``."""
    return ((at or NOW) + timedelta(**delta)).strftime("%Y%m%d    %H%M%S")


@functools.lru_cache(maxsize=1)
def shared_pki():
    """One test CA with a server certificate and kiosks ``kiosk-01`` and ``kiosk-02``."""
    from koha_gateway.certs import ensure_pki

    directory = Path(tempfile.mkdtemp(prefix="koha-gateway-pki-"))
    atexit.register(shutil.rmtree, directory, True)
    return ensure_pki(directory, ["kiosk-01", "kiosk-02"])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition, timeout: float = 10.0, interval: float = 0.02, what: str = "condition"):
    """Poll ``condition()`` until it returns something true (returned) or ``timeout`` passes
    (AssertionError). Tests wait for what they check, never for a fixed time."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s")
        time.sleep(interval)


def _local(tag) -> str:
    return etree.QName(tag).localname if isinstance(tag, str) else ""


def sipconfig_tree(source: Path = SHIPPED_SIPCONFIG):
    return etree.parse(str(source), etree.XMLParser(resolve_entities=False, no_network=True))


def elements(tree, name: str):
    return [e for e in tree.iter() if _local(e.tag) == name]


class GatewayProcess:
    """One running gateway; ``ports`` maps "raw", "telnet" (and "tls" ...) to port numbers."""

    def __init__(
        self,
        workdir: Path,
        database_url: str,
        *,
        customise=None,
        koha_conf=None,
        extra_args=(),
        clock: datetime | None = NOW,
    ):
        self.workdir = workdir
        self.clock = clock
        self.database_url = database_url
        self.sipconfig = workdir / "SIPconfig.xml"
        self.log = workdir / "twistd.log"
        self.sip_log = workdir / "sip.log"
        self.error_log = workdir / "sip-error.log"
        self.koha_conf = koha_conf
        self.extra_args = list(extra_args)
        #: --log-level given to the gateway; None: not given (Koha's log4perl.conf, else info)
        self.log_level: str | None = "debug"
        self.ports: dict[str, int] = {}
        tree = sipconfig_tree()
        self.pki = None
        for service in elements(tree, "service"):
            if service.get("tls_certificate"):
                self.pki = shared_pki()
                service.set("tls_certificate", str(self.pki.server_cert))
                service.set("tls_private_key", str(self.pki.server_key))
                kind = "tls" if "tls" not in self.ports else f"tls{len(self.ports)}"
            else:
                kind = "telnet" if service.get("transport", "").lower() == "telnet" else "raw"
            port = free_port()
            while port in self.ports.values():  # the kernel may hand out a port twice
                port = free_port()
            self.ports[kind] = port
            service.set("port", f"127.0.0.1:{port}/tcp")
        if customise is not None:
            customise(tree, self)
        tree.write(str(self.sipconfig), xml_declaration=True, encoding="utf-8")
        self.process: subprocess.Popen | None = None
        # False: start without --sip-config (the configuration is in Koha's sip_* tables)
        self.use_sipconfig = True

    def command(self) -> list[str]:
        cmd = [
            sys.executable,
            "-c",
            "from twisted.scripts.twistd import run; run()",
            "-n",
            "--pidfile=",
            "--logfile",
            str(self.log),
            "koha-gateway",
            *(["--sip-config", str(self.sipconfig)] if self.use_sipconfig else []),
            "--database",
            self.database_url,
            "--sip-log",
            str(self.sip_log),
            "--error-log",
            str(self.error_log),
            *(["--log-level", self.log_level] if self.log_level else []),
        ]
        if self.koha_conf:
            cmd += ["--koha-conf", str(self.koha_conf)]
        return cmd + self.extra_args

    def start(self, timeout: float = 30.0) -> GatewayProcess:
        env = dict(os.environ, PYTHONPATH=str(ROOT), TZ=GATEWAY_TZ)
        env.pop("KOHA_GATEWAY_CLOCK", None)
        if self.clock is not None:
            env["KOHA_GATEWAY_CLOCK"] = self.clock.isoformat()
        self.process = subprocess.Popen(
            self.command(),
            cwd=self.workdir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        waiting = set(self.ports.values())
        while waiting:
            if self.process.poll() is not None:
                output = self.process.stdout.read().decode(errors="replace")
                raise RuntimeError(
                    f"gateway exited with {self.process.returncode}:\n{output}\n{self.read_log()}"
                )
            for port in list(waiting):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    waiting.discard(port)
                except OSError:
                    pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"gateway did not listen within {timeout}s:\n{self.read_log()}")
            time.sleep(0.05)
        return self

    def read_log(self) -> str:
        parts = []
        for path in (self.log, self.sip_log):
            if path.exists():
                parts.append(path.read_text(errors="replace"))
        return "\n".join(parts)

    def sip_log_text(self) -> str:
        """The SIP log (--sip-log) so far; empty before the gateway has written it."""
        return self.sip_log.read_text(errors="replace") if self.sip_log.exists() else ""

    def wait_for_log(self, text: str, timeout: float = 10.0, count: int = 1) -> str:
        """The logs once ``text`` appears in them (``count`` times); AssertionError otherwise."""

        def found():
            log = self.read_log()
            return log if log.count(text) >= count else None

        return wait_for(found, timeout, what=f"{text!r} in the gateway's log")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        if self.process.stdout:
            self.process.stdout.close()

    def query(self, sql: str, params=()) -> list[dict]:
        """Rows from the gateway's database, whatever its engine."""
        from koha_gateway.db.engine import Database

        db = Database.from_url(self.database_url)
        try:
            return db.run_blocking(lambda txn: txn.query(sql, params))
        finally:
            db.close()

    def client(self, kind: str = "raw", **kw) -> SIPClient:
        return SIPClient("127.0.0.1", self.ports[kind], **kw)

    def logged_in(self, user: str = "joe", password: str = "joes", **kw) -> SIPClient:
        client = self.client(**kw)
        answer = client.login(user, password)
        assert answer.startswith("941"), answer
        return client


def copy_database(template: Path, target: Path) -> str:
    shutil.copyfile(template, target)
    return f"sqlite:///{target}"
