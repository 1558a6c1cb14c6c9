"""Reference data end to end: a running gateway keeps the rules and the currency in memory; a
change written by another process (koha-gateway-admin, as Koha's staff interface would) is
used at once after SIGHUP, and without it within ``--reference-max-age`` seconds.

The gateway starts at the suite's pinned instant (``tests.gateway.NOW``, Sunday 29 November
2026); the demo's book loans are 14 days, its currency NZD.
"""

from __future__ import annotations

import signal

from koha_gateway.admin import main as admin
from tests.gateway import sip_date, wait_for

BLANK = " " * 18
ADA = "23529000000001"
BOOK = "39999000000001"


def _admin(url, *argv):
    assert admin(["--database", url, *argv]) == 0


def _currency(gateway) -> str:
    with gateway.logged_in() as sc:
        answer = sc.request(f"63000{sip_date()}          AOWEL|AA{ADA}|")
    assert answer.startswith("64"), answer
    return answer.split("|BH", 1)[1].split("|", 1)[0]


def _due(gateway) -> str:
    """Check the book out to Ada and back in; the 12 answer's due date."""
    with gateway.logged_in() as sc:
        out = sc.request(f"11YN{sip_date()}{BLANK}AOWEL|AA{ADA}|AB{BOOK}|AC|")
        back = sc.request(f"09N{sip_date()}{sip_date()}AOWEL|AB{BOOK}|AC|")
    assert out.startswith("121") and back.startswith("101"), (out, back)
    return out.split("|AH", 1)[1][:8]


def test_a_change_is_used_after_sighup(make_gateway, demo_url, capsys):
    gateway = make_gateway(extra_args=("--reference-max-age", "3600"))
    assert (_currency(gateway), _due(gateway)) == ("NZD", "20261213")
    _admin(demo_url, "set-currency", "GBP", "--symbol", "£")
    _admin(demo_url, "set-rule", "issuelength", "21", "--itemtype", "BK")
    capsys.readouterr()
    # Within the hour the gateway works from memory.
    assert (_currency(gateway), _due(gateway)) == ("NZD", "20261213")
    gateway.signal(signal.SIGHUP)
    gateway.wait_for_log("reloaded")
    assert (_currency(gateway), _due(gateway)) == ("GBP", "20261220")


def test_a_change_is_seen_within_the_bound(make_gateway, demo_url, capsys):
    gateway = make_gateway(extra_args=("--reference-max-age", "1"))
    assert _currency(gateway) == "NZD"
    _admin(demo_url, "set-currency", "GBP", "--symbol", "£")
    capsys.readouterr()
    wait_for(lambda: _currency(gateway) == "GBP", timeout=10, what="the new currency in BH")


def test_no_cache_reads_per_request(make_gateway, demo_url, capsys):
    gateway = make_gateway(extra_args=("--reference-max-age", "0"))
    assert _due(gateway) == "20261213"
    _admin(demo_url, "set-rule", "issuelength", "21", "--itemtype", "BK")
    capsys.readouterr()
    assert _due(gateway) == "20261220"
