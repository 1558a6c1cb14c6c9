"""Koha's calendar end to end: a librarian closes a day with koha-gateway-admin, a kiosk checks
out over a real socket, and the 12 answer's due date (AH) skips the closed day; an hourly loan
is due hours later.

The gateway starts at the suite's pinned instant (``tests.gateway.NOW``, Sunday 29 November
2026, 12:00 UTC); the demo's book loans are 14 days (due Sunday 13 December, 23:59).
"""

from __future__ import annotations

from koha_gateway.admin import main as admin
from tests.gateway import sip_date

BLANK = " " * 18
ADA = "23529000000001"


def _admin(url, *argv):
    assert admin(["--database", url, *argv]) == 0


def _checkout(gateway, barcode):
    with gateway.logged_in() as sc:
        answer = sc.request(f"11YN{sip_date()}{BLANK}AOWEL|AA{ADA}|AB{barcode}|AC|")
    assert answer.startswith("121"), answer
    (loan,) = gateway.query(
        "SELECT i.date_due, it.onloan FROM issues i JOIN items it "
        "ON it.itemnumber = i.itemnumber WHERE it.barcode = ?",
        (barcode,),
    )
    return answer, str(loan["date_due"])[:19], str(loan["onloan"])[:10]


def test_checkout_due_date_skips_the_closed_day(demo_url, make_gateway, capsys):
    _admin(demo_url, "add-holiday", "--branch", "WEL", "--date", "2026-12-13")
    capsys.readouterr()
    gateway = make_gateway()
    answer, due, onloan = _checkout(gateway, "39999000000001")
    assert "|AH20261214    235900|" in answer
    assert (due, onloan) == ("2026-12-14 23:59:00", "2026-12-14")


def test_hourly_loan_is_due_hours_later(demo_url, make_gateway, capsys):
    _admin(demo_url, "set-rule", "lengthunit", "hours", "--itemtype", "BK")
    _admin(demo_url, "set-rule", "issuelength", "4", "--itemtype", "BK")
    capsys.readouterr()
    gateway = make_gateway()
    answer, due, onloan = _checkout(gateway, "39999000000001")
    assert "|AH20261129    160000|" in answer
    assert (due, onloan) == ("2026-11-29 16:00:00", "2026-11-29")
