"""Helpers shared by the configuration tests (importable: unique module name)."""

from __future__ import annotations

from pathlib import Path

FIXTURES = Path(__file__).with_name("fixtures")
REPO = Path(__file__).resolve().parents[2]

DEFAULT_SERVICES = '<service port="127.0.0.1:6001/tcp" transport="RAW" timeout="60" />'
DEFAULT_LOGINS = '<login id="term1" password="secret-pw" institution="CPL" />'
DEFAULT_INSTITUTIONS = (
    '<institution id="CPL" implementation="ILS">'
    '<policy checkin="true" checkout="true" renewal="true" timeout="100" retries="5" />'
    "</institution>"
)


def build_sip_xml(
    *,
    services: str = DEFAULT_SERVICES,
    logins: str = DEFAULT_LOGINS,
    institutions: str = DEFAULT_INSTITUTIONS,
    top: str = "",
    root_attrs: str = "",
    namespace: bool = True,
) -> str:
    """A SIPconfig.xml document; each argument lands on its own line(s) in order."""
    xmlns = ' xmlns="http://openncip.org/acs-config/1.0/"' if namespace else ""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<acsconfig{xmlns}{root_attrs}>\n"
        f"{top}\n"
        "<listeners>\n"
        f"{services}\n"
        "</listeners>\n"
        "<accounts>\n"
        f"{logins}\n"
        "</accounts>\n"
        "<institutions>\n"
        f"{institutions}\n"
        "</institutions>\n"
        "</acsconfig>\n"
    )


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    """1-based line of the ``occurrence``-th appearance of ``needle`` in ``text``."""
    start = -1
    for _ in range(occurrence):
        start = text.index(needle, start + 1)
    return text.count("\n", 0, start) + 1
