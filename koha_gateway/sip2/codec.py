"""SIP2 message codec: parse requests into :class:`Message`, build responses with :class:`Response`.

Implements the 3M SIP2 2.00 message layout ("Message formats"): a two-character command
code, fixed-length fields, then variable fields ``<2-char id><value><delimiter>``, with the
optional error-detection suffix ``AY<sequence>AZ<checksum>`` ("Error detection").

Parsing follows Koha's ``C4::SIP::Sip::MsgType``: fixed fields lose their trailing spaces (Perl
``unpack 'A'``), fields not defined for the message are kept for the ACS to ignore, and the first
value of a duplicated field wins. Unlike Koha, trailing punctuation of the last value is kept
(Koha strips it, so a password ending in ``!`` is damaged).

Encoding follows ``C4::SIP::Sip`` ``add_field`` / ``maybe_add`` / ``write_msg``: every field ends
with the delimiter, a delimiter inside a value is written as an HTML numeric entity
(``&#124;``), a CR inside a value becomes a space, then the account's
:class:`~koha_gateway.sip2.output.OutputPolicy` is applied and the checksum is computed over the
encoded bytes.

Nothing here performs I/O or reads the clock.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from koha_gateway.sip2.checksum import checksum
from koha_gateway.sip2.output import DEFAULT_POLICY, OutputPolicy
from koha_gateway.sip2.spec import FIELDS, REQUESTS, RESPONSES, MessageSpec

__all__ = [
    "Message",
    "ParseError",
    "Response",
    "count",
    "money",
    "parse",
    "parse_timestamp",
    "sip_bool",
    "timestamp",
    "yes_space",
]


class ParseError(ValueError):
    """A request that cannot be parsed (unknown command, fixed part too short, ...)."""


@dataclass(frozen=True, slots=True)
class Message:
    """A parsed SIP2 message.

    ``fixed`` maps the snake_case fixed-field names of the spec to their values (trailing
    spaces removed); ``fields`` keeps the variable fields in received order.
    """

    code: str
    name: str
    fixed: dict[str, str]
    fields: tuple[tuple[str, str], ...]

    def get(self, fid: str, default: str | None = None) -> str | None:
        """The first value of field ``fid`` (Koha: the first occurrence wins), or ``default``."""
        for key, value in self.fields:
            if key == fid:
                return value
        return default

    def get_all(self, fid: str) -> list[str]:
        """Every value of field ``fid`` in received order (repeatable fields such as AF)."""
        return [value for key, value in self.fields if key == fid]

    def __contains__(self, fid: object) -> bool:
        return any(key == fid for key, _ in self.fields)


# Precomputed layouts: code -> (spec, ((name, start, end), ...), end of fixed part).
def _layouts(table: dict[str, MessageSpec]) -> dict[str, tuple[MessageSpec, tuple, int]]:
    out = {}
    for code, spec in table.items():
        slices = []
        pos = 2
        for ff in spec.fixed:
            slices.append((ff.name, pos, pos + ff.length))
            pos += ff.length
        out[code] = (spec, tuple(slices), pos)
    return out


_REQUEST_LAYOUTS = _layouts(REQUESTS)
_ALL_LAYOUTS = {**_REQUEST_LAYOUTS, **_layouts(RESPONSES)}
_REPEATABLE = frozenset(code for code, f in FIELDS.items() if f.repeatable)


def parse(text: str, delimiter: str = "|", *, responses: bool = False) -> Message:
    """Parse one SIP2 message (without its error-detection suffix) into a :class:`Message`.

    ``text`` may still end with CR/LF; they are removed, as is the empty piece after a final
    delimiter. Only request codes are recognised unless ``responses`` is true (for tests and
    clients). Raises :class:`ParseError` for an unknown command or a message shorter than its
    fixed part.
    """
    text = text.rstrip("\r\n")
    layouts = _ALL_LAYOUTS if responses else _REQUEST_LAYOUTS
    code = text[:2]
    layout = layouts.get(code)
    if layout is None:
        raise ParseError(f"unknown command {code!r}")
    spec, slices, end = layout
    if len(text) < end:
        raise ParseError(
            f"{spec.name} ({code}) needs {end} characters of fixed part, got {len(text)}"
        )
    fixed = {name: text[a:b].rstrip(" ") for name, a, b in slices}
    fields: list[tuple[str, str]] = []
    rest = text[end:]
    if rest:
        seen: set[str] = set()
        for piece in rest.split(delimiter):
            if len(piece) < 2:
                continue  # empty piece ("||" or the final delimiter) or a stray character
            fid = piece[:2]
            if fid in seen and fid not in _REPEATABLE:
                continue
            seen.add(fid)
            fields.append((fid, piece[2:]))
    return Message(code, spec.name, fixed, tuple(fields))


# --- formatting helpers -------------------------------------------------------------------


def sip_bool(value: Any) -> str:
    """``Y`` when ``value`` is true, else ``N`` (Koha ``sipbool``)."""
    return "Y" if value else "N"


def yes_space(value: Any) -> str:
    """``Y`` when ``value`` is true, else a space (Koha ``boolspace``; patron status flags)."""
    return "Y" if value else " "


def timestamp(value: _dt.datetime | _dt.date | None) -> str:
    """3M SIP2 2.00 date/time ``YYYYMMDDZZZZHHMMSS`` with four blanks for the zone.

    A datetime (naive or aware) is printed as given: convert to the server's local time first.
    A plain date gives ``235900`` (Koha's rule for due dates without a time). ``None`` gives 18
    spaces.
    """
    if value is None:
        return " " * 18
    if isinstance(value, _dt.datetime):
        return (
            f"{value.year:04d}{value.month:02d}{value.day:02d}    "
            f"{value.hour:02d}{value.minute:02d}{value.second:02d}"
        )
    return f"{value.year:04d}{value.month:02d}{value.day:02d}    235900"


def count(n: Any) -> str:
    """A 4-digit zero-padded count; ``None``, negative or above 9999 gives 4 spaces (unknown)."""
    if n is None:
        return "    "
    try:
        value = int(n)
    except (TypeError, ValueError):
        return "    "
    if value < 0 or value > 9999:
        return "    "
    return f"{value:04d}"


def money(amount: Any) -> str:
    """An amount with two decimals and a ``.`` separator whatever the locale; ``None`` -> ``""``."""
    if amount is None or amount == "":
        return ""
    if isinstance(amount, (int, float, Decimal)):
        return f"{amount:.2f}"
    try:
        return f"{Decimal(str(amount).strip()):.2f}"
    except InvalidOperation:
        raise ValueError(f"not an amount: {amount!r}") from None


def parse_timestamp(value: str | None) -> _dt.datetime | None:
    """Lenient reading of a SIP2 date/time; ``None`` when blank or unreadable.

    Accepts ``YYYYMMDDZZZZHHMMSS`` (zone blank: naive local time; ``   Z``: UTC), a bare
    ``YYYYMMDD`` (midnight), and the common variants with other separators (``YYYYMMDD
    HHMMSS``, ``YYYY-MM-DD HH:MM:SS``, ``YYYYMMDDHHMMSS``).
    """
    if not value:
        return None
    text = value.strip()
    if not text:
        return None
    tz = None
    if len(value) == 18 and value[:8].isdigit() and value[12:].isdigit():
        zone = value[8:12].strip()
        if zone.upper() in ("Z", "UTC", "GMT"):
            tz = _dt.UTC
        digits = value[:8] + value[12:]
    else:
        if text.upper().endswith("Z"):
            tz = _dt.UTC
            text = text[:-1]
        digits = "".join(ch for ch in text if ch.isdigit())
        if not digits.isascii():
            return None
    try:
        if len(digits) == 8:
            return _dt.datetime(int(digits[:4]), int(digits[4:6]), int(digits[6:8]), tzinfo=tz)
        if len(digits) in (12, 14):
            return _dt.datetime(
                int(digits[:4]),
                int(digits[4:6]),
                int(digits[6:8]),
                int(digits[8:10]),
                int(digits[10:12]),
                int(digits[12:14] or 0),
                tzinfo=tz,
            )
    except ValueError:
        return None
    return None


# --- response builder ---------------------------------------------------------------------


def _nonprinting_replacer(replacement: str):
    def convert(text: str) -> str:
        if text.isprintable():
            return text
        return "".join(ch if ch.isprintable() else replacement for ch in text)

    return convert


class Response:
    """Builder for one outgoing SIP2 message (any request or response code).

    ::

        r = Response("12").fixed("1", "N", "N", "Y", timestamp(now))
        r.add("AO", inst).add("AA", patron).add("AB", item).add("AJ", title).add("AH", due)
        r.maybe("AF", message)
        data = r.encode(policy, seq="3")
    """

    __slots__ = ("code", "spec", "fixed_values", "fields")

    def __init__(self, code: str) -> None:
        spec = REQUESTS.get(code) or RESPONSES.get(code)
        if spec is None:
            raise ValueError(f"unknown SIP2 message code {code!r}")
        self.code = code
        self.spec: MessageSpec = spec
        self.fixed_values: list[str] = []
        self.fields: list[tuple[str, str]] = []

    def fixed(self, *values: str) -> Response:
        """Append already formatted fixed-field values, in wire order."""
        self.fixed_values.extend(values)
        return self

    def add(self, fid: str, value: Any = None) -> Response:
        """Always send field ``fid`` (``None`` is sent empty), as Koha ``add_field``."""
        self.fields.append((fid, "" if value is None else str(value)))
        return self

    def maybe(self, fid: str, value: Any = None) -> Response:
        """Send field ``fid`` only when ``value`` is neither ``None`` nor ``""`` ("0" is sent)."""
        if value is not None and value != "":
            self.fields.append((fid, str(value)))
        return self

    def __repr__(self) -> str:
        return f"Response({self.code!r}, fixed={self.fixed_values!r}, fields={self.fields!r})"

    def _check_fixed(self) -> str:
        spec = self.spec
        values = self.fixed_values
        if not all(isinstance(v, str) for v in values):
            raise ValueError(f"{spec.name} ({self.code}): fixed values must be strings: {values!r}")
        joined = "".join(values)
        if len(values) == len(spec.fixed):
            for ff, value in zip(spec.fixed, values):
                if len(value) != ff.length:
                    raise ValueError(
                        f"{spec.name} ({self.code}): fixed field {ff.name} must be "
                        f"{ff.length} characters, got {value!r}"
                    )
        elif len(joined) != spec.fixed_length:
            raise ValueError(
                f"{spec.name} ({self.code}): fixed part must be {spec.fixed_length} "
                f"characters, got {joined!r}"
            )
        return joined

    def text(self, policy: OutputPolicy = DEFAULT_POLICY) -> str:
        """The message text before encoding: fixed part and fields, filtered and escaped."""
        delimiter = policy.delimiter
        escaped_delim = f"&#{ord(delimiter)};"
        parts = [self.code, self._check_fixed()]
        hide = policy.hide_fields
        allow = policy.allow_fields
        rules = policy._af_rules
        for fid, value in self.fields:
            if fid in hide or (allow is not None and fid not in allow):
                continue
            if rules and fid == "AF":
                value = policy.screen_message(value)
            if delimiter in value:
                value = value.replace(delimiter, escaped_delim)
            if "\r" in value:
                value = value.replace("\r", " ")
            parts.append(fid)
            parts.append(value)
            parts.append(delimiter)
        text = "".join(parts)
        if policy.convert_nonprinting is not None:
            text = _nonprinting_replacer(policy.convert_nonprinting)(text)
        return text

    def encode(self, policy: OutputPolicy = DEFAULT_POLICY, seq: str | int | None = None) -> bytes:
        """The bytes to write: encoded text, ``AY<seq>AZ<checksum>`` when ``seq`` is given, then
        the policy's terminator. Raises ``ValueError`` when the fixed part does not match the
        spec (a programming error)."""
        data = self.text(policy).encode(policy.encoding, "replace")
        if seq is not None:
            data += b"AY" + str(seq).encode("ascii") + b"AZ"
            data += checksum(data).encode("ascii")
        return data + policy.terminator
