"""The documentation site: it builds with ``mkdocs build --strict`` (a broken link, a missing
anchor or a page left out of the navigation fails), and the log lines the troubleshooting page
quotes are the ones the code writes."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "koha_gateway").rglob("*.py"))

# The constant parts of the lines docs/troubleshooting.md quotes, as the code writes them.
QUOTED = [
    "listening: {name}",
    "two services on the same address",
    "each service needs its own port",
    "is defined twice (lines",
    "each SIP login id must be unique",
    "SIP access not authorized for user",
    "invalid user id or password",
    "password does not match the SIPconfig.xml account",
    "user lacks the circulate permission",
    "account requires TLS with the client certificate",
    "unsupported non-zero encryption method(s)",
    "slowing down login for {userid!r} by {wait:.1f}s after failures",
    "with that userid in the database; it cannot log in",
    "branchcode in the database",
    "first message was not a Login (93)",
    '"idle" if self.account is not None else "login"',
    "{phase} timeout",
    "failed telnet logins",
    "TLS handshake with {address} failed: {error}",
    "database {url} unavailable: {error}",
    "database unavailable for {code}: {error}",
    "database {url} available again",
    "LDAP bind failed as ldapuser",
    "LDAP did not handle {userid!r} ({reason}); checking the local password",
    "LDAP rejected {userid!r}: {reason}",
    "LDAP Auth rejected: invalid password for user",
    "LDAP search base {base!r} does not exist: {error}",
    "LDAP replicate: created borrower {number} for {userid!r} ({category}/{branch})",
    "no valid {what} (map it or give a default)",
    "reload refused, keeping the running configuration: {error}",
    "the database has no koha-gateway tables yet",
    "the database schema is at version {version}",
    "this gateway needs schema version {schema.LATEST}: run ",
    "'koha-gateway-admin init' with the same --koha-conf or --database",
    "the database lacks Koha tables or columns that koha-gateway uses (is it a ",
    "cannot reach the database: {exc}",
]


@pytest.mark.parametrize("text", QUOTED)
def test_quoted_log_lines_exist_in_the_code(text):
    assert text in SOURCES


def test_troubleshooting_quotes_them():
    page = (ROOT / "docs" / "troubleshooting.md").read_text(encoding="utf-8")
    for text in ("SIP access not authorized for user 'ghost'", "user lacks the circulate"):
        assert text in page


@pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None,
    reason="mkdocs is not installed (make docs installs it; .ci/run builds the site)",
)
def test_the_site_builds_strictly(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "troubleshooting.html").exists()
