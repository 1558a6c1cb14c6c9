"""A late return suspends the patron, end to end: a librarian sets a ``finedays`` rule with
koha-gateway-admin, a kiosk returns a late book over a real socket, and the gateway leaves the
``SUSPENSION`` restriction Koha's ``AddReturn`` would; the next 63 shows the patron blocked.

The gateway starts at the suite's pinned instant (``tests.gateway.NOW``); Ada's book 07 is ten
days late in the demo data.
"""

from __future__ import annotations

from koha_gateway.admin import main as admin
from tests.gateway import sip_date

BLANK = " " * 18
ADA = "23529000000001"
LATE = "39999000000007"


def _admin(url, *argv):
    assert admin(["--database", url, *argv]) == 0


def test_late_checkin_suspends_and_the_next_63_shows_it(demo_url, make_gateway, capsys):
    _admin(demo_url, "set-rule", "finedays", "1")
    capsys.readouterr()
    gateway = make_gateway()
    with gateway.logged_in() as sc:
        before = sc.request(f"63000{sip_date()}          AOWEL|AA{ADA}|")
        back = sc.request(f"09N{sip_date()}{BLANK}APWEL|AOWEL|AB{LATE}|AC|")
        after = sc.request(f"63000{sip_date()}          AOWEL|AA{ADA}|")
    assert before[2:16] == " " * 14 and "|PIY|" in before
    assert back.startswith("101YNN"), back  # the 10 Koha sends: no suspension text
    assert after[2:6] == "YYYY"  # charge, renewal, recall and hold privileges denied
    assert "|PIN|" in after
    (restriction,) = gateway.query(
        "SELECT d.type, d.expiration, d.comment, d.created, d.updated FROM borrower_debarments d "
        "JOIN borrowers b ON b.borrowernumber = d.borrowernumber WHERE b.cardnumber = ?",
        (ADA,),
    )
    # Returned on 29 November, ten days late, finedays 1: suspended for ten days.
    assert (restriction["type"], str(restriction["expiration"])[:10]) == (
        "SUSPENSION",
        "2026-12-09",
    )
    assert restriction["comment"] is None and restriction["updated"] is None
    assert str(restriction["created"])[:19] == "2026-11-29 12:00:00"
    (flags,) = gateway.query(
        "SELECT debarred, debarredcomment FROM borrowers WHERE cardnumber = ?", (ADA,)
    )
    assert (str(flags["debarred"])[:10], flags["debarredcomment"]) == ("2026-12-09", None)
    gateway.wait_for_log("suspended until 2026-12-09")
