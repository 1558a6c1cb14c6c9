"""What ``/metrics`` of a running gateway tells about inline reads (SQLite) and the reference
data in memory (every engine), and ``reference_max_age`` of ``<server-params>`` in force, at
start and after a SIGHUP.

The gateway starts at the suite's pinned instant (``tests.gateway.NOW``); the reference
cache's bound runs on the process's monotonic clock, so a test that waits for it polls
``/metrics`` with a deadline.
"""

from __future__ import annotations

import signal
import sqlite3

import pytest

from koha_gateway.acs.fallback import UNAVAILABLE
from koha_gateway.admin import main as admin
from koha_gateway.db.engine import Database
from koha_gateway.ils.sysprefs import set_syspref
from tests.gateway import elements, free_port, sip_date, wait_for
from tests.test_admin_http import get, scrape, value

ADA = "23529000000001"
GRACE = "23529000000002"
BOOK = "39999000000001"
BLANK = " " * 18

INLINE = "koha_gateway_database_inline_transactions_total"
FALLBACKS = "koha_gateway_database_inline_fallbacks_total"
CHECKS = "koha_gateway_reference_checks_total"
RELOADS = "koha_gateway_reference_reloads_total"


def _start(make_gateway, *args, **kw):
    port = free_port()
    gateway = make_gateway(extra_args=["--admin-port", str(port), *args], **kw)
    gateway.admin_port = port
    wait_for(lambda: get(port, "/health")[0] == 200, what="the admin listener")
    return gateway


def _due(gateway) -> str:
    """Check the book out to Ada and back in; the 12 answer's due date (14 days: the demo)."""
    with gateway.logged_in() as sc:
        out = sc.request(f"11YN{sip_date()}{BLANK}AOWEL|AA{ADA}|AB{BOOK}|AC|")
        back = sc.request(f"09N{sip_date()}{sip_date()}AOWEL|AB{BOOK}|AC|")
    assert out.startswith("121") and back.startswith("101"), (out, back)
    return out.split("|AH", 1)[1][:8]


def _admin(url, *argv):
    assert admin(["--database", url, *argv]) == 0


def _server_params(**params):
    """A ``customise`` for the gateway's SIPconfig.xml: these ``<server-params>`` added."""

    def customise(tree, _process):
        (element,) = elements(tree, "server-params")
        for key, val in params.items():
            element.set(key, val)

    return customise


@pytest.mark.parametrize("engine", ["sqlite"])
def test_inline_reads_and_their_fallbacks_are_counted(make_gateway, demo_url, capsys):
    """A 99 and a 17 are answered inline; while another process holds the write lock, a 63
    that writes ``borrowers.lastseen`` is refused inline (``readonly``) and waits in the pool
    (ok=0 after the busy timeout), while a 17 is still answered inline."""
    db = Database.from_url(demo_url)
    try:
        db.run_blocking(set_syspref, "TrackLastPatronActivityTriggers", "connection")
    finally:
        db.close()
    path = demo_url.removeprefix("sqlite://")
    gateway = _start(
        make_gateway,
        "--reference-max-age",
        "3600",
        database_url=f"{demo_url}?busy_timeout=300",
    )
    port = gateway.admin_port
    with gateway.logged_in() as sc:
        # Warm: the first read finds the reference data due for a check (would_wait); the
        # database threads run it, and the check with it.
        assert sc.request(f"17{sip_date()}AOWEL|AB{BOOK}|").startswith("18")
        before = scrape(port)
        assert value(before, CHECKS) == 1
        assert value(before, "koha_gateway_database_inline_reads_enabled") == 1
        assert sc.request("9900302.00").startswith("98")
        assert sc.request(f"17{sip_date()}AOWEL|AB{BOOK}|").startswith("18")
        during = scrape(port)
        assert value(during, INLINE) - value(before, INLINE) == 2
        writer = sqlite3.connect(path, isolation_level=None)
        try:
            writer.execute("BEGIN IMMEDIATE")
            answer = sc.request(f"63000{sip_date()}          AOWEL|AA{GRACE}|")
            assert answer.startswith("64") and UNAVAILABLE in answer
            answer = sc.request(f"17{sip_date()}AOWEL|AB{BOOK}|")
            assert answer.startswith("18") and UNAVAILABLE not in answer
        finally:
            writer.execute("ROLLBACK")
            writer.close()
    after = scrape(port)
    assert value(after, INLINE) - value(during, INLINE) == 1
    assert value(during, FALLBACKS, reason="readonly") == 0
    assert value(after, FALLBACKS, reason="readonly") == 1
    assert value(after, FALLBACKS, reason="would_wait") >= 1
    assert value(after, FALLBACKS, reason="busy") == 0
    assert value(after, "koha_gateway_database_errors_total", kind="unavailable") >= 1
    capsys.readouterr()


def test_reference_metrics_and_a_reload_after_sighup(make_gateway, demo_url, engine, capsys):
    gateway = _start(make_gateway, "--reference-max-age", "3600")
    port = gateway.admin_port
    assert _due(gateway) == "20261213"
    first = scrape(port)
    assert value(first, "koha_gateway_reference_cache_enabled") == 1
    assert value(first, "koha_gateway_reference_max_age_seconds") == 3600
    assert value(first, CHECKS) >= 1 and value(first, RELOADS) >= 1
    assert value(first, "koha_gateway_reference_check_errors_total") == 0
    assert 0 <= value(first, "koha_gateway_reference_age_seconds") < 3600
    assert ("koha_gateway_reference_last_check_duration_seconds", ()) in first
    # On PostgreSQL and MariaDB the family is there, and nothing runs inline.
    assert value(first, "koha_gateway_database_inline_reads_enabled") == (engine == "sqlite")
    if engine != "sqlite":
        assert value(first, INLINE) == 0
    _admin(demo_url, "set-rule", "issuelength", "21", "--itemtype", "BK")
    capsys.readouterr()
    assert _due(gateway) == "20261213"  # from memory
    assert value(scrape(port), RELOADS) == value(first, RELOADS)
    gateway.signal(signal.SIGHUP)
    gateway.wait_for_log("reloaded")
    assert _due(gateway) == "20261220"
    assert value(scrape(port), RELOADS) == value(first, RELOADS) + 1


@pytest.mark.parametrize("engine", ["sqlite"])
def test_a_change_is_reloaded_within_the_bound(make_gateway, demo_url, capsys):
    """No request needed: the background check (every half bound) finds the change."""
    gateway = _start(make_gateway, "--reference-max-age", "1")
    port = gateway.admin_port
    assert _due(gateway) == "20261213"
    loaded = wait_for(
        lambda: (s := scrape(port)) and value(s, RELOADS) >= 1 and s, what="the first load"
    )
    _admin(demo_url, "set-rule", "issuelength", "21", "--itemtype", "BK")
    capsys.readouterr()
    wait_for(
        lambda: value(scrape(port), RELOADS) > value(loaded, RELOADS),
        timeout=15,
        what="a reload after the change",
    )
    assert _due(gateway) == "20261220"


@pytest.mark.parametrize("engine", ["sqlite"])
def test_reference_max_age_from_server_params_and_after_sighup(make_gateway, demo_url, capsys):
    """``reference_max_age='0'`` in ``<server-params>``: no cache, a change is used at once.
    The file changed to 3600 and a SIGHUP: the cache is on, with that bound."""
    gateway = _start(make_gateway, customise=_server_params(reference_max_age="0"))
    port = gateway.admin_port
    samples = scrape(port)
    assert value(samples, "koha_gateway_reference_cache_enabled") == 0
    assert value(samples, "koha_gateway_reference_max_age_seconds") == 0
    assert _due(gateway) == "20261213"
    _admin(demo_url, "set-rule", "issuelength", "21", "--itemtype", "BK")
    capsys.readouterr()
    assert _due(gateway) == "20261220"  # read per request
    assert value(scrape(port), CHECKS) == 0

    text = gateway.sipconfig.read_text()
    gateway.sipconfig.write_text(text.replace('reference_max_age="0"', 'reference_max_age="3600"'))
    gateway.signal(signal.SIGHUP)
    gateway.wait_for_log("reference data: checked for changes at most every 3600 s")
    gateway.wait_for_log("reloaded")
    samples = scrape(port)
    assert value(samples, "koha_gateway_reference_cache_enabled") == 1
    assert value(samples, "koha_gateway_reference_max_age_seconds") == 3600
    assert _due(gateway) == "20261220"
    _admin(demo_url, "set-rule", "issuelength", "28", "--itemtype", "BK")
    capsys.readouterr()
    assert _due(gateway) == "20261220"  # now from memory
    assert value(scrape(port), CHECKS) >= 1


@pytest.mark.parametrize("engine", ["sqlite"])
def test_the_command_line_wins_over_server_params(make_gateway, capsys):
    gateway = _start(
        make_gateway,
        "--reference-max-age",
        "120",
        customise=_server_params(reference_max_age="0"),
    )
    samples = scrape(gateway.admin_port)
    assert value(samples, "koha_gateway_reference_cache_enabled") == 1
    assert value(samples, "koha_gateway_reference_max_age_seconds") == 120
