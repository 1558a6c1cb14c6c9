"""Logs in Koha's SIP log format (koha-sip-and-ldap.md section 8.3).

Each line reads ``[YYYY/MM/DD HH:MM:SS] [pid] [LEVEL] account@peer: message``, as Koha's
log4perl layout for ``sip.log`` does, so that the greps a Koha administrator already knows keep
working. Modules log through ``twisted.logger.Logger`` with ``account`` and ``peer`` keys; the
observers here write the files given by ``--sip-log`` and ``--error-log``. Passwords never reach a
log: the protocol logs messages through ``Session.mask`` (CO, AD and AC hidden).

The level of ``--sip-log`` (``debug``, ``info``, ``warn``) can change while the gateway runs
(:func:`set_level`: a reload re-reads Koha's log4perl.conf); ``--error-log`` is always ``warn``.

``--log-format json`` writes the same events as one JSON object per line instead
(:func:`format_json`): ``time`` (ISO 8601 with the offset), ``pid``, ``level``, ``account``,
``peer``, ``message`` and ``namespace``. The message is the same masked text as in Koha's
format; no other field of the event is copied, so nothing unmasked can slip through.
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime

from twisted.logger import (
    ILogObserver,
    Logger,
    LogLevel,
    LogPublisher,
    formatEvent,
    globalLogPublisher,
)
from zope.interface import implementer

_LEVELS = {
    LogLevel.debug: "DEBUG",
    LogLevel.info: "INFO",
    LogLevel.warn: "WARN",
    LogLevel.error: "ERROR",
    LogLevel.critical: "FATAL",
}


_message_logging = False

#: Where the SIP messages in and out (``INPUT MSG`` / ``OUTPUT MSG``) go: to the ``--sip-log``
#: observer only once :func:`install` has one, so that twistd's own log (``sip-output.log``
#: with the Debian package) does not get a second copy of every message; until then, and
#: without ``--sip-log``, to Twisted's global publisher like any other event.
_message_publisher = LogPublisher(globalLogPublisher)


def message_log(namespace: str) -> Logger:
    """A logger for the SIP message lines of ``namespace`` (see ``_message_publisher``)."""
    return Logger(namespace=namespace, observer=_message_publisher)


def messages_logged() -> bool:
    """Whether every SIP message is logged (``--log-level debug``): masking costs time."""
    return _message_logging


def _text(event: dict) -> str:
    """The event's message: ``log_format`` filled from the event, as Twisted's ``formatEvent``
    does; plain ``str.format_map`` for the usual event (Twisted's formatter goes through
    ``string.Formatter`` in Python, several times slower), Twisted's for anything else
    (``{callable()}`` fields, flattened events, an event that does not format)."""
    fmt = event.get("log_format")
    if type(fmt) is str and "log_flattened" not in event and "()" not in fmt:
        try:
            return fmt.format_map(event)
        except Exception:  # noqa: BLE001 - Twisted's formatter reports what is wrong
            pass
    return formatEvent(event)


class _Stamp:
    """``YYYY/MM/DD HH:MM:SS`` in local time of a Unix time, formatted once per second."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: tuple[int, str] = (-1, "")

    def __call__(self, when: float) -> str:
        second = int(when)
        last = self._last  # one tuple: a thread never sees one second's text for another
        if last[0] == second:
            return last[1]
        text = time.strftime("%Y/%m/%d %H:%M:%S", time.localtime(second))
        self._last = (second, text)
        return text


_stamp = _Stamp()
_pid = os.getpid()


def format_koha(event: dict) -> str | None:
    """One event as a Koha log line (with a trailing newline), or None to skip it."""
    text = _text(event)
    failure = event.get("log_failure")
    if failure is not None:
        text = f"{text}\n{failure.getTraceback()}"
    if not text:
        return None
    when = _stamp(event.get("log_time") or time.time())
    level = _LEVELS.get(event.get("log_level"), "INFO")
    account = event.get("account") or "-"
    peer = event.get("peer") or "-"
    return f"[{when}] [{_pid}] [{level}] {account}@{peer}: {text}\n"


def format_json(event: dict) -> str | None:
    """One event as a JSON object on one line (with a trailing newline), or None to skip it."""
    text = _text(event)
    failure = event.get("log_failure")
    if failure is not None:
        text = f"{text}\n{failure.getTraceback()}"
    if not text:
        return None
    when = datetime.fromtimestamp(event.get("log_time", time.time())).astimezone()
    record = {
        "time": when.isoformat(timespec="milliseconds"),
        "pid": _pid,
        "level": _LEVELS.get(event.get("log_level"), "INFO"),
        "account": event.get("account") or None,
        "peer": event.get("peer") or None,
        "message": text,
        "namespace": event.get("log_namespace"),
    }
    return json.dumps(record, ensure_ascii=False) + "\n"


FORMATS = {"koha": format_koha, "json": format_json}


def _file(path: str):
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    return open(path, "a", encoding="utf-8", buffering=1)


#: The levels of ``--log-level`` and the lowest Twisted level each one writes.
MINIMUM = {"debug": LogLevel.debug, "info": LogLevel.info, "warn": LogLevel.warn}


def install(
    sip_log: str | None, error_log: str | None, level: str = "info", fmt: str = "koha"
) -> list:
    """Add the observers (Koha's line format, or ``json``) to Twisted's global log publisher;
    returns them."""
    global _message_logging, _pid
    _message_logging = level == "debug"
    _pid = os.getpid()  # this process's (a --workers process imports this module anew)
    observers = []
    minimum = MINIMUM[level]
    formatter = FORMATS[fmt]
    if sip_log:
        observer = _filtered(_file(sip_log), minimum, formatter)
        observer.follows_level = True
        observers.append(observer)
        _message_publisher.removeObserver(globalLogPublisher)
        _message_publisher.addObserver(observer)
    if error_log:
        observers.append(_filtered(_file(error_log), LogLevel.warn, formatter))
    for observer in observers:
        globalLogPublisher.addObserver(observer)
    return observers


def uninstall(observers) -> None:
    """Take the observers :func:`install` returned off the publishers; the SIP message lines
    go to Twisted's global publisher again."""
    for observer in observers:
        globalLogPublisher.removeObserver(observer)
        _message_publisher.removeObserver(observer)
    _message_publisher.addObserver(globalLogPublisher)  # added once, whatever was before


def set_level(observers, level: str) -> None:
    """Put ``level`` in force for the ``--sip-log`` observer among ``observers`` (what
    :func:`install` returned) and for the message logging of the protocol. An event logged
    meanwhile by another thread is judged by the old level or the new one, each whole."""
    global _message_logging
    minimum = MINIMUM[level]
    for observer in observers:
        if getattr(observer, "follows_level", False):
            observer.set_minimum(minimum)
    _message_logging = level == "debug"


@implementer(ILogObserver)
class _LevelObserver:
    """Writes the events of ``minimum`` level and above as ``formatter`` gives them.

    What Twisted's ``FilteringLogObserver(FileLogObserver(...), [LogLevelFilterPredicate])``
    does for one level over every namespace, with the level test a set lookup (the
    predicate looks the namespace up and compares constants for every event)."""

    follows_level = False  # True: the --sip-log observer, whose level set_level changes

    def __init__(self, stream, minimum: LogLevel, formatter) -> None:
        self.set_minimum(minimum)
        self._stream = stream
        self._formatter = formatter

    def set_minimum(self, minimum: LogLevel) -> None:
        # One assignment of a new set: a thread logging meanwhile sees the old or the new one.
        self._levels = frozenset(lvl for lvl in LogLevel.iterconstants() if not lvl < minimum)

    def __call__(self, event: dict) -> None:
        if event.get("log_level") not in self._levels:
            return
        text = self._formatter(event)
        if text:
            self._stream.write(text)  # line-buffered: each line reaches the file at once


def _filtered(stream, minimum: LogLevel, formatter=format_koha):
    return _LevelObserver(stream, minimum, formatter)
