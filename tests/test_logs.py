"""koha_gateway/logs.py: the SIP log observers (level filter, Koha's line format, JSON)."""

from __future__ import annotations

import json
import os
import re
import time

import pytest
from twisted.logger import Logger, LogLevel, globalLogPublisher
from twisted.python.failure import Failure

from koha_gateway import logs


@pytest.fixture
def installed(tmp_path):
    """install() at a level and format; yields (read sip.log, read error.log, logger)."""
    added = []

    def make(level="info", fmt="koha"):
        sip, error = tmp_path / "sip.log", tmp_path / "error.log"
        added.extend(logs.install(str(sip), str(error), level, fmt))
        log = Logger(namespace="koha_gateway.test")
        return (lambda: sip.read_text()), (lambda: error.read_text()), log

    make.observers = added
    yield make
    logs.uninstall(added)


LINE = re.compile(
    r"^\[(\d{4}/\d\d/\d\d \d\d:\d\d:\d\d)\] \[(\d+)\] \[([A-Z]+)\] ([^@]+)@(\S+): (.*)$"
)


def test_levels_reach_the_files_they_are_meant_for(installed):
    sip, error, log = installed("info")
    log.debug("not at info {x}", x=1, account="joe", peer="10.0.0.1")
    log.info(
        "checkout of {item} to {patron!r}",
        item="3999",
        patron="2352",
        account="joe",
        peer="10.0.0.1",
    )
    log.warn("login failed for {userid!r}", userid="x", account=None, peer="10.0.0.2")
    lines = sip().splitlines()
    assert [LINE.match(line).group(3, 4, 5, 6) for line in lines] == [
        ("INFO", "joe", "10.0.0.1", "checkout of 3999 to '2352'"),
        ("WARN", "-", "10.0.0.2", "login failed for 'x'"),
    ]
    assert [LINE.match(line).group(3) for line in error().splitlines()] == ["WARN"]
    stamp, pid = LINE.match(lines[0]).group(1, 2)
    assert int(pid) == os.getpid()
    assert abs(time.mktime(time.strptime(stamp, "%Y/%m/%d %H:%M:%S")) - time.time()) < 5


def test_debug_level_writes_debug_events(installed):
    sip, _, log = installed("debug")
    log.debug("INPUT MSG: '{text}'", text="9900302.00", account="joe", peer="p")
    assert sip().endswith("[DEBUG] joe@p: INPUT MSG: '9900302.00'\n")


def test_set_level_changes_the_sip_log_and_not_the_error_log(installed):
    """A reload that reads another level from Koha's log4perl.conf (service.py)."""
    sip, error, log = installed("info")
    assert not logs.messages_logged()
    log.debug("hidden")
    logs.set_level(installed.observers, "debug")
    assert logs.messages_logged()
    log.debug("shown")
    logs.set_level(installed.observers, "warn")
    assert not logs.messages_logged()
    log.info("hidden too")
    log.warn("a warning")
    assert [LINE.match(line).group(3, 6) for line in sip().splitlines()] == [
        ("DEBUG", "shown"),
        ("WARN", "a warning"),
    ]
    assert [LINE.match(line).group(6) for line in error().splitlines()] == ["a warning"]


def test_the_time_stamp_is_the_events_second_in_local_time():
    for when in (1_800_000_000.0, 1_800_000_000.9, 1_800_000_001.2, 1_700_000_000.5):
        event = {"log_format": "x", "log_level": LogLevel.info, "log_time": when}
        expected = time.strftime("%Y/%m/%d %H:%M:%S", time.localtime(when))
        assert logs.format_koha(event).startswith(f"[{expected}] ")


def test_formats_twisted_accepts_come_out_as_twisted_writes_them():
    def event(fmt, **kw):
        return {"log_format": fmt, "log_level": LogLevel.info, "log_time": 0.0, **kw}

    def message(line):
        return line.split(": ", 1)[1].rstrip("\n")

    assert message(logs.format_koha(event("{n:.1f}s {s!r}", n=2, s="a"))) == "2.0s 'a'"
    assert message(logs.format_koha(event("{f()} done", f=lambda: "called"))) == "called done"
    # A format naming a missing key: Twisted's own account of the event, never an exception.
    assert "Unable to format event" in logs.format_koha(event("{missing}"))
    assert logs.format_koha(event("")) is None


def test_a_failure_comes_with_its_traceback(installed):
    sip, error, log = installed("info")
    try:
        raise ValueError("boom")
    except ValueError:
        log.failure("request failed", Failure(), account="joe", peer="p")
    text = error()
    assert "[FATAL] joe@p: request failed\nTraceback" in text and "ValueError: boom" in text
    assert sip() == text


def test_json_lines(installed):
    sip, _, log = installed("info", "json")
    log.info("checkout of {item}", item="3999", account="joe", peer="p")
    record = json.loads(sip())
    assert record["message"] == "checkout of 3999" and record["level"] == "INFO"
    assert record["account"] == "joe" and record["pid"] == os.getpid()


def test_message_lines_go_to_the_sip_log_only(installed):
    """INPUT MSG / OUTPUT MSG reach --sip-log, not twistd's own log (a second copy of every
    message in sip-output.log); without --sip-log they go to Twisted's publisher as before."""
    seen = []
    globalLogPublisher.addObserver(seen.append)
    try:
        message_log = logs.message_log("koha_gateway.test")
        message_log.debug("INPUT MSG: '{text}'", account="-", peer="-", text="before install")
        assert [e["text"] for e in seen if "text" in e] == ["before install"]

        sip, _, _ = installed("debug")
        message_log.debug("INPUT MSG: '{text}'", account="joe", peer="10.0.0.1", text="9900302.00")
        assert "joe@10.0.0.1: INPUT MSG: '9900302.00'" in sip()
        assert [e["text"] for e in seen if "text" in e] == ["before install"]

        logs.uninstall(installed.observers)
        message_log.debug("INPUT MSG: '{text}'", account="-", peer="-", text="after")
        assert [e["text"] for e in seen if "text" in e] == ["before install", "after"]
        assert "after" not in sip()
    finally:
        globalLogPublisher.removeObserver(seen.append)
