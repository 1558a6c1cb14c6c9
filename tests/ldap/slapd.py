"""A throwaway OpenLDAP ``slapd`` for the LDAP tests (Debian packages ``slapd`` and ``ldap-utils``).

:class:`Slapd` writes a ``slapd.conf`` into a temporary directory (mdb database, the core, cosine,
inetorgperson and nis schemas plus two Active-Directory-like attributes), loads an LDIF with
``slapadd`` while the server is down, and runs ``slapd -d 0`` in the foreground on free ports of
127.0.0.1: one ``ldap://`` port (StartTLS available) and, with certificates, one ``ldaps://``
port. It can be stopped and started again on the same ports with the same data (outage tests).

:class:`BlackHole` is a TCP listener that accepts connections and never answers (a hung server).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from ldap3 import MODIFY_REPLACE, Connection, Server

SLAPD = os.environ.get("KGW_SLAPD", "/usr/sbin/slapd")
SLAPADD = os.environ.get("KGW_SLAPADD", "/usr/sbin/slapadd")
SCHEMA_DIR = Path("/etc/ldap/schema")
MODULE_DIR = Path("/usr/lib/ldap")
SUFFIX = "dc=example,dc=org"
ROOT_DN = f"cn=admin,{SUFFIX}"
ROOT_PW = "admin-secret"
READER_DN = f"cn=reader,{SUFFIX}"
READER_PW = "reader-secret"

# Active Directory names its users by cn and logs them in as sAMAccountName or
# userPrincipalName; these two attributes let the directory look like that.
_AD_SCHEMA = """
attributetype ( 1.3.6.1.4.1.32473.1.1.1 NAME 'userPrincipalName'
    EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch
    SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
attributetype ( 1.3.6.1.4.1.32473.1.1.2 NAME 'sAMAccountName'
    EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch
    SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
objectclass ( 1.3.6.1.4.1.32473.1.2.1 NAME 'testAdUser' SUP top AUXILIARY
    MAY ( userPrincipalName $ sAMAccountName ) )
"""


class SlapdUnavailable(RuntimeError):
    """slapd is not installed or did not start."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Slapd:
    """One slapd process with its own configuration, database and ports."""

    def __init__(self, ldif: str, *, tls: tuple[Path, Path, Path] | None = None):
        if not (os.path.exists(SLAPD) and os.path.exists(SLAPADD)):
            raise SlapdUnavailable(f"{SLAPD} or {SLAPADD} is missing (install slapd)")
        self.dir = Path(tempfile.mkdtemp(prefix="kgw-slapd-"))
        self.port = free_port()
        self.ldaps_port = free_port() if tls else None
        self.tls = tls
        self.process: subprocess.Popen | None = None
        (self.dir / "db").mkdir()
        self.conf = self.dir / "slapd.conf"
        self.conf.write_text(self._config())
        (self.dir / "data.ldif").write_text(ldif)
        self._run([SLAPADD, "-q", "-f", str(self.conf), "-l", str(self.dir / "data.ldif")])

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://localhost:{self.ldaps_port}"

    def _config(self) -> str:
        lines = [
            f"include {SCHEMA_DIR / name}"
            for name in ("core.schema", "cosine.schema", "inetorgperson.schema", "nis.schema")
        ]
        lines.append(_AD_SCHEMA)
        if (MODULE_DIR / "back_mdb.la").exists() or (MODULE_DIR / "back_mdb.so").exists():
            lines += [f"modulepath {MODULE_DIR}", "moduleload back_mdb"]
        lines += [
            f"pidfile {self.dir / 'slapd.pid'}",
            f"argsfile {self.dir / 'slapd.args'}",
        ]
        if self.tls:
            ca, cert, key = self.tls
            lines += [
                f"TLSCACertificateFile {ca}",
                f"TLSCertificateFile {cert}",
                f"TLSCertificateKeyFile {key}",
            ]
        lines += [
            "database mdb",
            f'suffix "{SUFFIX}"',
            f'rootdn "{ROOT_DN}"',
            f"rootpw {ROOT_PW}",
            f"directory {self.dir / 'db'}",
            "maxsize 10485760",
            "access to attrs=userPassword by self write by anonymous auth by * none",
            f'access to dn.subtree="ou=private,{SUFFIX}" by dn.exact="{READER_DN}" read'
            " by self read by anonymous auth by * none",
            "access to * by * read",
        ]
        return "\n".join(lines) + "\n"

    def _run(self, argv: list[str]) -> None:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise SlapdUnavailable(f"{' '.join(argv)} failed: {done.stderr.strip()}")

    def start(self, timeout: float = 15.0) -> None:
        urls = [f"ldap://127.0.0.1:{self.port}/"]
        if self.ldaps_port:
            urls.append(f"ldaps://127.0.0.1:{self.ldaps_port}/")
        log = open(self.dir / "slapd.log", "ab")  # noqa: SIM115 (kept open by the process)
        self.process = subprocess.Popen(
            [SLAPD, "-f", str(self.conf), "-h", " ".join(urls), "-d", "0"],
            stdout=log,
            stderr=log,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SlapdUnavailable(f"slapd exited: {self.log_text()[-2000:]}")
            if self._answers():
                return
            time.sleep(0.05)
        self.stop()
        raise SlapdUnavailable(f"slapd did not answer within {timeout}s")

    def _answers(self) -> bool:
        try:
            conn = Connection(Server("127.0.0.1", port=self.port, connect_timeout=1))
            ok = conn.bind()
            conn.unbind()
            return bool(ok)
        except Exception:  # noqa: BLE001 - any failure means "not ready yet"
            return False

    def log_text(self) -> str:
        try:
            return (self.dir / "slapd.log").read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def admin(self) -> Connection:
        conn = Connection(Server("127.0.0.1", port=self.port), ROOT_DN, ROOT_PW, auto_bind=True)
        return conn

    def replace(self, dn: str, **attributes: str | list[str]) -> None:
        """Replace attributes of ``dn`` as the root DN."""
        conn = self.admin()
        try:
            changes = {
                name: [(MODIFY_REPLACE, value if isinstance(value, list) else [value])]
                for name, value in attributes.items()
            }
            if not conn.modify(dn, changes):
                raise AssertionError(f"modify {dn} failed: {conn.result}")
        finally:
            conn.unbind()


class BlackHole:
    """Accepts TCP connections on 127.0.0.1 and never sends a byte (a hung LDAP server)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="black-hole", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted.append(conn)

    def close(self) -> None:
        self._stop = True
        self._thread.join(2)
        for conn in self.accepted:
            conn.close()
        self.sock.close()
