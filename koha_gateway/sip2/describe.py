"""A SIP2 message explained for a person: every field with its name and decoded meaning.

Used by ``koha-gateway-client`` to print answers. The names and the meanings of coded values come
from the tables of :mod:`koha_gateway.sip2.spec`; nothing here performs I/O or reads the clock.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from koha_gateway.sip2.codec import parse, parse_timestamp
from koha_gateway.sip2.spec import (
    CODED_FIELDS,
    CODED_FIXED_FIELDS,
    DATE_FIELDS,
    DATE_FIXED_FIELDS,
    FIELDS,
    PATRON_STATUS_FLAGS,
    SUMMARY_ITEMS,
    SUPPORTED_MESSAGES,
    YES_NO_FIELDS,
    YES_NO_FIXED_FIELDS,
    lookup,
)

__all__ = ["Described", "DescribedField", "describe", "split_error_detection"]


@dataclass(slots=True)
class DescribedField:
    """One field: ``id`` is the two-character identifier (``None`` for a fixed field)."""

    name: str
    value: str
    meaning: str | None = None
    id: str | None = None
    #: For fields made of positions (patron status, BX, summary): ``[(position name, set?)]``.
    flags: list[tuple[str, bool]] | None = None


@dataclass(slots=True)
class Described:
    code: str
    name: str
    fixed: list[DescribedField] = field(default_factory=list)
    fields: list[DescribedField] = field(default_factory=list)
    sequence: str | None = None
    checksum: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def split_error_detection(text: str) -> tuple[str, str | None, str | None]:
    """``(message, sequence, checksum)``: the text without a trailing ``AY<n>AZ<xxxx>``."""
    if len(text) >= 9 and text[-9:-7] == "AY" and text[-6:-4] == "AZ":
        return text[:-9], text[-7:-6], text[-4:]
    if len(text) >= 6 and text[-6:-4] == "AZ":
        return text[:-6], None, text[-4:]
    return text, None, None


def _date(value: str) -> str | None:
    when = parse_timestamp(value)
    if when is None:
        return None
    if value.strip().isdigit() and len(value.strip()) == 8:
        return when.date().isoformat()
    return when.isoformat(sep=" ")


def _yes_no(value: str) -> str | None:
    return {"Y": "yes", "1": "yes", "N": "no", "0": "no", "U": "unknown", " ": "no", "": "no"}.get(
        value
    )


def _positions(value: str, names) -> list[tuple[str, bool]]:
    padded = value.ljust(len(names))
    return [(name, padded[i] == "Y") for i, name in enumerate(names)]


def _fixed(name: str, value: str) -> DescribedField:
    out = DescribedField(name, value)
    if name == "patron_status":
        out.flags = _positions(value, PATRON_STATUS_FLAGS)
        set_flags = [n for n, on in out.flags if on]
        out.meaning = ", ".join(set_flags) if set_flags else "no restriction"
    elif name == "summary":
        out.flags = _positions(value, [label for _, label in SUMMARY_ITEMS])
        wanted = [n for n, on in out.flags if on]
        out.meaning = ", ".join(wanted) if wanted else "no item list"
    elif name in DATE_FIXED_FIELDS:
        out.meaning = _date(value) if value.strip() else "not given"
    elif name in YES_NO_FIXED_FIELDS:
        out.meaning = _yes_no(value)
    elif name in CODED_FIXED_FIELDS:
        out.meaning = CODED_FIXED_FIELDS[name].get(value)
    elif name in ("timeout_period", "retries_allowed") and value.strip():
        if value == "000":
            out.meaning = "no timeout" if name == "timeout_period" else "no retries"
        elif value == "999":
            out.meaning = "unknown"
        elif value.isdigit():
            unit = "tenths of a second" if name == "timeout_period" else "retries"
            out.meaning = f"{int(value)} {unit}"
    elif name.endswith("_count") and value.strip():
        out.meaning = str(int(value)) if value.isdigit() else None
    elif name.endswith("_count"):
        out.meaning = "unknown"
    return out


def _variable(fid: str, value: str) -> DescribedField:
    spec = FIELDS.get(fid)
    out = DescribedField(spec.name if spec else f"unknown field {fid}", value, id=fid)
    if fid == "BX":
        out.flags = _positions(value, [label for _, label in SUPPORTED_MESSAGES])
        missing = [n for n, on in out.flags if not on]
        out.meaning = "all 16 messages" if not missing else "not supported: " + ", ".join(missing)
    elif fid in DATE_FIELDS:
        out.meaning = _date(value)
    elif fid in YES_NO_FIELDS:
        out.meaning = _yes_no(value)
    elif fid in CODED_FIELDS:
        out.meaning = CODED_FIELDS[fid].get(value)
    return out


def describe(text: str, delimiter: str = "|") -> Described:
    """``text`` (a request or a response, with or without ``AY…AZ…``) explained field by field.

    Raises :class:`~koha_gateway.sip2.codec.ParseError` for an unknown command code or a fixed
    part that is too short.
    """
    body, sequence, check = split_error_detection(text.rstrip("\r\n"))
    message = parse(body, delimiter, responses=True)
    spec = lookup(message.code)
    out = Described(message.code, message.name, sequence=sequence, checksum=check)
    pos = 2
    for ff in spec.fixed:
        # The raw slice, blanks kept: positions count in patron status and summary.
        out.fixed.append(_fixed(ff.name, body[pos : pos + ff.length]))
        pos += ff.length
    # parse() keeps only the first value of a non-repeatable field: a person wants them all.
    for piece in body[pos:].split(delimiter):
        if len(piece) >= 2:
            out.fields.append(_variable(piece[:2], piece[2:]))
    return out
