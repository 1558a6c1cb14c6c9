"""Configuration errors and the hardened XML reader that both Koha files go through.

Every problem found in SIPconfig.xml or koha-conf.xml is reported as a :class:`ConfigError`
that names the file and the line (``path:line: message``), so a systems librarian can go
straight to the offending element. Non-fatal findings use the same format (see
:func:`located`) and are collected as warnings by the loaders.

The reader refuses anything an XML document could use to reach outside itself or to blow up
in memory: entities are never resolved, no DTD is loaded, no network access happens, libxml2's
size limits stay on (``huge_tree=False``) and a document whose DOCTYPE declares entities is
refused before it is parsed (billion laughs, XXE). This works the same on lxml 4.9 (Debian
bookworm) and lxml 6.
"""

from __future__ import annotations

import codecs
import os
import re

from lxml import etree

__all__ = [
    "ACS_NAMESPACE",
    "MAX_CONFIG_BYTES",
    "ConfigError",
    "located",
    "local_name",
    "read_xml",
]

#: The namespace of Koha's SIPconfig.xml root. Koha ignores it; so do we.
ACS_NAMESPACE = "http://openncip.org/acs-config/1.0/"

#: Configuration files larger than this are refused before parsing.
MAX_CONFIG_BYTES = 16 * 1024 * 1024

_LXML_POSITION = re.compile(r",\s*line \d+, column \d+\s*$")
_ENTITY_DECL = re.compile(r"<!ENTITY\b")
_DOCTYPE = re.compile(r"<!DOCTYPE\b")


def located(path: str, line: int | None, message: str) -> str:
    """Format ``message`` as ``path:line: message`` (``path: message`` without a line)."""
    if line is None:
        return f"{path}: {message}"
    return f"{path}:{line}: {message}"


class ConfigError(Exception):
    """A configuration problem that stops start-up (or a reload).

    ``str(error)`` is ``"path:line: message"``; ``message``, ``path`` and ``line`` are also
    available as attributes. Messages never contain passwords.
    """

    def __init__(self, message: str, path: str | os.PathLike[str], line: int | None = None):
        self.message = message
        self.path = os.fspath(path)
        self.line = line
        super().__init__(message, self.path, line)

    def __str__(self) -> str:
        return located(self.path, self.line, self.message)

    def __repr__(self) -> str:
        return f"ConfigError({self.message!r}, {self.path!r}, {self.line!r})"


def local_name(element: etree._Element) -> str | None:
    """The tag of ``element`` without its namespace; ``None`` for comments and PIs."""
    tag = element.tag
    if not isinstance(tag, str):
        return None
    return etree.QName(tag).localname


def _make_parser() -> etree.XMLParser:
    # A new parser per document: lxml parsers are not shareable between threads.
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )


def _text_for_scan(data: bytes) -> str:
    """Decode ``data`` well enough to look for markup (``<!DOCTYPE``, ``<!ENTITY``).

    UTF-16/32 documents (with a BOM or with NUL bytes around the first ``<``) are decoded with
    their codec; anything else is ASCII-compatible for markup, so latin-1 never fails.
    """
    boms = (
        (codecs.BOM_UTF32_LE, "utf-32"),
        (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    )
    for bom, codec in boms:
        if data.startswith(bom):
            return data.decode(codec, errors="replace")
    head = data[:4]
    if head == b"<\x00\x00\x00":
        return data.decode("utf-32-le", errors="replace")
    if head == b"\x00\x00\x00<":
        return data.decode("utf-32-be", errors="replace")
    if head[:2] == b"<\x00":
        return data.decode("utf-16-le", errors="replace")
    if head[:2] == b"\x00<":
        return data.decode("utf-16-be", errors="replace")
    return data.decode("latin-1")


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def read_xml(path: str | os.PathLike[str]) -> etree._Element:
    """Read and parse the XML file at ``path`` safely; return its root element.

    Raises :class:`ConfigError` when the file cannot be read, is too large, declares entities
    in a DOCTYPE, or is not well-formed XML (with the parser's line).
    """
    spath = os.fspath(path)
    try:
        with open(spath, "rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read the file: {exc.strerror or exc}", spath) from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"the file is larger than {MAX_CONFIG_BYTES // (1024 * 1024)} MiB; refusing it",
            spath,
        )

    text = _text_for_scan(data)
    doctype = _DOCTYPE.search(text)
    if doctype is not None:
        entity = _ENTITY_DECL.search(text, doctype.start())
        if entity is not None:
            raise ConfigError(
                "refusing a DOCTYPE that declares entities (entity expansion is not allowed "
                "in configuration files)",
                spath,
                _line_of(text, entity.start()),
            )

    try:
        root = etree.fromstring(data, _make_parser())
    except etree.XMLSyntaxError as exc:
        message = _LXML_POSITION.sub("", exc.msg or "syntax error")
        line = exc.position[0] if exc.position and exc.position[0] else exc.lineno
        raise ConfigError(f"malformed XML: {message}", spath, line or None) from None

    docinfo = root.getroottree().docinfo
    dtd = docinfo.internalDTD
    if dtd is not None and any(True for _ in dtd.iterentities()):
        # Reached only when the declaration escaped the text scan (unusual encodings).
        line = _line_of(text, doctype.start()) if doctype is not None else 1
        raise ConfigError(
            "refusing a DOCTYPE that declares entities (entity expansion is not allowed "
            "in configuration files)",
            spath,
            line,
        )
    return root
