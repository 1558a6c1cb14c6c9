"""Per-account output policy for SIP2 responses.

Koha's SIPconfig.xml ``<login>`` attributes that change how responses are written
(``C4::SIP::Sip`` ``add_field`` / ``maybe_add`` / ``write_msg``): ``encoding``, ``terminator``,
``delimiter``, ``hide_fields``, ``allow_fields``, ``<screen_msg_regex>`` and
``convert_nonprinting_characters``. An :class:`OutputPolicy` is immutable and compiled once
(per account, at login); :meth:`koha_gateway.sip2.codec.Response.encode` applies it.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "OutputPolicy",
    "DEFAULT_POLICY",
    "normalize_encoding",
    "perl_pattern",
    "perl_replacement",
]

# Koha accepts Perl Encode names; map the spellings seen in SIPconfig.xml to Python codecs.
_ENCODING_ALIASES = {
    "utf8": "utf-8",
    "utf-8": "utf-8",
    "utf-8-strict": "utf-8",
    "ascii": "ascii",
    "us-ascii": "ascii",
    "cp850": "cp850",
    "ibm850": "cp850",
    "latin1": "latin-1",
    "latin-1": "latin-1",
    "iso-8859-1": "latin-1",
    "iso8859-1": "latin-1",
}


def normalize_encoding(name: str | None) -> str:
    """Python codec name for a Koha ``encoding`` attribute (``None``/empty: UTF-8).

    Raises ``ValueError`` for an encoding Python does not know.
    """
    if name is None or not str(name).strip():
        return "utf-8"
    key = str(name).strip().lower()
    if key in _ENCODING_ALIASES:
        return _ENCODING_ALIASES[key]
    try:
        return codecs.lookup(key).name
    except LookupError:
        raise ValueError(f"unknown encoding {name!r}") from None


_PERL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def perl_pattern(pattern: str) -> str:
    """A Perl regular expression (Koha's ``<screen_msg_regex find=...>``) as Python ``re`` text.

    The two dialects agree on everything SIPconfig.xml files use, except the spellings of
    named groups and of the end of the string: ``(?<name>...)`` and ``(?'name'...)`` become
    ``(?P<name>...)``, ``\\k<name>``, ``\\k{name}`` and ``\\k'name'`` become ``(?P=name)``,
    ``\\z`` becomes ``\\Z``. Look-behinds ``(?<=`` / ``(?<!``, escapes and character classes
    are copied unchanged; anything else Python does not know stays an error of ``re.compile``.
    """
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "\\" and i + 1 < n:
            nxt = pattern[i + 1]
            if nxt == "z":
                out.append("\\Z")
                i += 2
                continue
            if nxt == "k" and i + 2 < n and pattern[i + 2] in "<{'":
                close = {"<": ">", "{": "}", "'": "'"}[pattern[i + 2]]
                end = pattern.find(close, i + 3)
                name = pattern[i + 3 : end] if end > 0 else ""
                if _PERL_NAME.fullmatch(name):
                    out.append(f"(?P={name})")
                    i = end + 1
                    continue
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if ch == "[":
            # copy a character class whole: a "]" right after "[" or "[^" is a member
            j = i + 1
            if j < n and pattern[j] == "^":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                j += 2 if pattern[j] == "\\" else 1
            out.append(pattern[i : j + 1])
            i = j + 1
            continue
        if pattern.startswith("(?<", i) or pattern.startswith("(?'", i):
            close = ">" if pattern[i + 2] == "<" else "'"
            end = pattern.find(close, i + 3)
            name = pattern[i + 3 : end] if end > 0 else ""
            if _PERL_NAME.fullmatch(name):
                out.append(f"(?P<{name}>")
                i = end + 1
                continue
        out.append(ch)
        i += 1
    return "".join(out)


_PERL_GROUP = re.compile(
    r"\$(?:(\d+)|\{(\d+)\}|(&)|\+\{([A-Za-z_][A-Za-z0-9_]*)\})|\\(.)", re.DOTALL
)


class _NamedGroup:
    """``$+{name}`` in a replacement: the text of the named group."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


_BACKSLASH_ESCAPES = {"n": "\n", "t": "\t", "r": "\r"}


def perl_replacement(replacement: str) -> Callable[[re.Match[str]], str]:
    """Turn a Perl ``s///`` replacement string into a function for :func:`re.sub`.

    ``$1``, ``${1}``, ``$&`` and ``$+{name}`` refer to groups (a group that did not match, or
    does not exist, gives an empty string, as in Perl); ``\\n``, ``\\t``, ``\\r`` are
    control characters and any other backslash escapes the next character. Everything else is
    literal.
    """
    parts: list[str | int | _NamedGroup] = []
    pos = 0
    for m in _PERL_GROUP.finditer(replacement):
        if m.start() > pos:
            parts.append(replacement[pos : m.start()])
        if m.group(5) is not None:
            parts.append(_BACKSLASH_ESCAPES.get(m.group(5), m.group(5)))
        elif m.group(4) is not None:
            parts.append(_NamedGroup(m.group(4)))
        elif m.group(3):
            parts.append(0)
        else:
            parts.append(int(m.group(1) or m.group(2)))
        pos = m.end()
    if pos < len(replacement):
        parts.append(replacement[pos:])
    if all(isinstance(p, str) for p in parts):
        literal = "".join(parts)  # type: ignore[arg-type]
        return lambda _m: literal
    frozen = tuple(parts)

    def expand(m: re.Match[str]) -> str:
        out = []
        for p in frozen:
            if isinstance(p, str):
                out.append(p)
            else:
                try:
                    out.append(m.group(p.name if isinstance(p, _NamedGroup) else p) or "")
                except IndexError:
                    pass
        return "".join(out)

    return expand


def _fid_set(value: Any) -> frozenset[str]:
    if value is None:
        return frozenset()
    if isinstance(value, str):
        items: Iterable[str] = value.split(",")
    else:
        items = value
    return frozenset(s.strip() for s in items if s and s.strip())


def _terminator(value: Any) -> bytes:
    if value is None:
        return b"\r\n"
    if isinstance(value, str):
        key = value.strip().upper()
        if key == "CR" or value == "\r":
            return b"\r"
        return b"\r\n"
    value = bytes(value)
    if value not in (b"\r", b"\r\n"):
        raise ValueError(f"terminator must be CR or CRLF, not {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class OutputPolicy:
    """How responses are written for one SC account.

    * ``encoding`` -- character encoding of the outgoing bytes (Koha spellings accepted:
      ``utf8``, ``UTF-8``, ``ascii``, ``cp850``, ``latin-1``, ``iso-8859-1``). Characters the
      encoding cannot represent become ``?``.
    * ``terminator`` -- ``b"\\r\\n"`` (Koha's default) or ``b"\\r"``.
    * ``delimiter`` -- field delimiter, ``|``.
    * ``hide_fields`` -- field ids never sent; wins over ``allow_fields``.
    * ``allow_fields`` -- when not ``None``, only these field ids are sent.
    * ``screen_msg_regex`` -- ``(find, replace)`` pairs (Perl syntax, ``$1`` groups) applied
      in order, globally, to every AF value.
    * ``convert_nonprinting`` -- when set, every non-printable character of the outgoing
      message is replaced by this string before encoding and checksum.
    """

    encoding: str = "utf-8"
    terminator: bytes = b"\r\n"
    delimiter: str = "|"
    hide_fields: frozenset[str] = frozenset()
    allow_fields: frozenset[str] | None = None
    screen_msg_regex: tuple[tuple[str, str], ...] = ()
    convert_nonprinting: str | None = None
    _af_rules: tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], str]], ...] = field(
        init=False, repr=False, compare=False, default=()
    )

    def __post_init__(self) -> None:
        setter = object.__setattr__
        setter(self, "encoding", normalize_encoding(self.encoding))
        setter(self, "terminator", _terminator(self.terminator))
        delimiter = self.delimiter or "|"
        if len(delimiter) != 1 or delimiter in "\r\n":
            raise ValueError(f"delimiter must be one character, not {delimiter!r}")
        setter(self, "delimiter", delimiter)
        setter(self, "hide_fields", _fid_set(self.hide_fields))
        if self.allow_fields is not None:
            setter(self, "allow_fields", _fid_set(self.allow_fields))
        pairs = tuple((str(f), "" if r is None else str(r)) for f, r in self.screen_msg_regex)
        setter(self, "screen_msg_regex", pairs)
        rules = []
        for find, replace in pairs:
            try:
                pattern = re.compile(perl_pattern(find))
            except re.error as exc:
                raise ValueError(f"screen_msg_regex find {find!r}: {exc}") from None
            rules.append((pattern, perl_replacement(replace)))
        setter(self, "_af_rules", tuple(rules))
        if self.convert_nonprinting == "":
            setter(self, "convert_nonprinting", None)

    def sends(self, fid: str) -> bool:
        """Whether field ``fid`` may be written under ``hide_fields`` / ``allow_fields``."""
        if fid in self.hide_fields:
            return False
        return self.allow_fields is None or fid in self.allow_fields

    def screen_message(self, value: str) -> str:
        """An AF value after the ``screen_msg_regex`` rewrites."""
        for pattern, repl in self._af_rules:
            value = pattern.sub(repl, value)
        return value

    @classmethod
    def from_account(cls, account: Any) -> OutputPolicy:
        """Build the policy of a configured SIP account.

        Reads ``encoding``, ``terminator`` (``"CR"`` or anything else for CRLF),
        ``delimiter``, ``hide_fields``, ``allow_fields`` (comma lists or collections),
        ``screen_msg_regex`` (a sequence of ``(find, replace)``) and
        ``convert_nonprinting_characters``, as attributes or mapping keys. Missing values
        take the defaults.
        """
        if isinstance(account, Mapping):

            def get(name: str) -> Any:
                return account.get(name)
        else:

            def get(name: str) -> Any:
                return getattr(account, name, None)

        allow = get("allow_fields")
        allow_set = _fid_set(allow) if allow is not None else None
        if allow_set is not None and not allow_set:
            allow_set = None  # an empty allow_fields attribute means "no restriction"
        regex = get("screen_msg_regex") or ()
        pairs = []
        for item in regex:
            if isinstance(item, Mapping):
                pairs.append((item.get("find", ""), item.get("replace", "")))
            elif hasattr(item, "find") and not isinstance(item, (tuple, list, str)):
                pairs.append((item.find, getattr(item, "replace", "")))
            else:
                find, replace = item
                pairs.append((find, replace))
        return cls(
            encoding=get("encoding") or "utf-8",
            terminator=_terminator(get("terminator")),
            delimiter=get("delimiter") or "|",
            hide_fields=_fid_set(get("hide_fields")),
            allow_fields=allow_set,
            screen_msg_regex=tuple(pairs),
            convert_nonprinting=get("convert_nonprinting_characters") or None,
        )


#: The policy used before login and when an account sets nothing: UTF-8, CRLF, ``|``.
DEFAULT_POLICY = OutputPolicy()
