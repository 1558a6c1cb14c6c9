"""The SIP log level of Koha's log4perl.conf (``<log4perl_conf>`` of koha-conf.xml).

Koha's SIP server logs through log4perl in the ``sip`` category: Koha's Debian template
(``log4perl-site.conf.in``) has ``log4perl.logger.sip = DEBUG, SIP``, so every message in and
out is logged, and an administrator changes the level on that line and restarts SIP. The gateway
reads the same line to choose its ``--log-level`` when none is given on the command line.

The file is read as log4perl's property configurator reads it: ``key = value`` lines; ``#``
starts a comment anywhere on a line; a line ending in a backslash continues on the next (whose
leading spaces are dropped); a line without ``=`` is skipped; the last of two equal keys wins.
A key may start with ``log4perl.``, ``log4j.`` or ``l4p.``, ``category`` is a synonym of
``logger``, and ``::`` of ``.``. The level is the first comma-separated word of the value (the
rest names appenders).

``logger.sip`` gives the level. When it is not set, the ``sip`` category inherits the root
logger's (``rootLogger``), as log4perl does; when neither is set the gateway's default, ``info``,
stays. Koha's level names map to the gateway's levels so that sip.log holds what Koha's would:
Koha writes ``INPUT MSG``/``OUTPUT MSG`` at log4perl's INFO, the gateway at its ``debug``.

=========================================  ===========  =======================================
log4perl                                   gateway      what the gateway logs
=========================================  ===========  =======================================
``ALL``, ``TRACE``, ``DEBUG``, ``INFO``    ``debug``    everything, every message in and out
``WARN``, ``ERROR``, ``FATAL``             ``warn``     warnings and errors (its highest)
``OFF``                                    ``warn``     warnings and errors: the gateway never
                                                        turns its SIP log off (leave out
                                                        ``--sip-log``)
=========================================  ===========  =======================================

The gateway's ``info`` (logins and warnings, no messages) has no log4perl level: it is the
default without a log4perl.conf, or ``--log-level info``.

Not read: the appenders (the gateway writes to ``--sip-log``, never to the appender's
``filename``), levels of sub-categories (``log4perl.logger.sip.<account>``), appender thresholds
and ``log4perl.threshold``, and the ``LOG4PERL_CONF`` environment variable. Nothing here stops
start-up: a file that cannot be read or a level log4perl does not know (log4perl takes them in
capitals) gives a warning, with the file and line where there is one, and the default level.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from koha_gateway.config.errors import MAX_CONFIG_BYTES, located

__all__ = ["DEFAULT_LEVEL", "LEVELS", "SipLevel", "parse_sip_level", "read_sip_level"]

#: The gateway's level when nothing sets one.
DEFAULT_LEVEL = "info"

#: log4perl's levels (Log::Log4perl::Level) and the gateway's level each one gives.
LEVELS = {
    "ALL": "debug",
    "TRACE": "debug",
    "DEBUG": "debug",
    "INFO": "debug",  # Koha logs INPUT MSG / OUTPUT MSG at INFO
    "WARN": "warn",
    "ERROR": "warn",
    "FATAL": "warn",
    "OFF": "warn",
}

_KEY_VALUE = re.compile(r"(\S+?)\s*=\s*(.*)")
_CONTINUED = re.compile(r"(.+?)\\\s*$")
_PREFIX = re.compile(r"^(?:log4perl|log4j|l4p)\.", re.IGNORECASE)
_SIP_KEYS = ("logger.sip", "category.sip")
_ROOT_KEY = "rootLogger"


@dataclass(frozen=True)
class SipLevel:
    """The gateway's level (``debug``, ``info`` or ``warn``), where it came from (``source``,
    for ``--check-config`` and the log) and what was wrong on the way (``warnings``, each
    ``path:line: message``)."""

    level: str
    source: str
    warnings: tuple[str, ...] = ()


def _statements(text: str):
    """``(line, key, value)`` of each ``key = value`` statement, continuation lines joined;
    ``line`` is where the statement starts."""
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        start = index + 1
        current = lines[index].split("#", 1)[0]
        index += 1
        if not current.strip():
            continue
        while True:
            continued = _CONTINUED.match(current)
            if continued is None:
                break
            current = continued.group(1)
            if index < len(lines):
                current += lines[index].lstrip(" ").split("#", 1)[0]
                index += 1
        match = _KEY_VALUE.search(current)
        if match is not None:
            yield start, match.group(1), match.group(2).rstrip()


def _key(raw: str) -> str:
    return _PREFIX.sub("", raw.replace("::", "."))


def parse_sip_level(text: str, path: str) -> SipLevel:
    """The level of the ``sip`` category in the log4perl configuration ``text`` read from
    ``path`` (named in the source and the warnings)."""
    found: dict[str, tuple[int, str, str]] = {}
    for line, raw_key, value in _statements(text):
        key = _key(raw_key)
        if key in _SIP_KEYS:
            found["sip"] = (line, raw_key, value)
        elif key == _ROOT_KEY:
            found["root"] = (line, raw_key, value)
    for which in ("sip", "root"):
        if which not in found:
            continue
        line, raw_key, value = found[which]
        word = value.split(",", 1)[0].strip()
        level = LEVELS.get(word)
        if level is None:
            known = ", ".join(LEVELS)
            warning = located(
                path,
                line,
                f"{raw_key}: unknown level {word!r} (log4perl takes {known}, in capitals); "
                f"SIP log level {DEFAULT_LEVEL}",
            )
            return SipLevel(DEFAULT_LEVEL, f"default; {path}:{line} not understood", (warning,))
        inherited = " (the sip category inherits the root logger's)" if which == "root" else ""
        return SipLevel(level, f"{located(path, line, f'{raw_key} = {word}')}{inherited}")
    return SipLevel(DEFAULT_LEVEL, f"default; {path} sets no level for sip nor the root logger")


def read_sip_level(path: str | os.PathLike[str]) -> SipLevel:
    """:func:`parse_sip_level` of the file at ``path``; a file that cannot be read gives a
    warning and the default level."""
    spath = os.fspath(path)
    try:
        with open(spath, "rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        warning = located(
            spath,
            None,
            f"cannot read log4perl.conf: {exc.strerror or exc}; SIP log level {DEFAULT_LEVEL}",
        )
        return SipLevel(DEFAULT_LEVEL, f"default; {spath} not read", (warning,))
    if len(data) > MAX_CONFIG_BYTES:
        warning = located(
            spath,
            None,
            f"larger than {MAX_CONFIG_BYTES // (1024 * 1024)} MiB, not read; SIP log level "
            f"{DEFAULT_LEVEL}",
        )
        return SipLevel(DEFAULT_LEVEL, f"default; {spath} not read", (warning,))
    return parse_sip_level(data.decode("utf-8", errors="replace"), spath)
