"""Koha's calendar end to end: a librarian closes days with koha-gateway-admin, a kiosk checks
out over a real socket, and the 12 answer's due date (AH) skips the closed days.

The gateway reads its own clock. The closed days are chosen around the test's clock (a span
wide enough for a checkout on the day before or after, whatever the time zones and however
close to midnight), and the expected due date is derived from the loan's own ``issuedate``,
so the test holds on any date.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from koha_gateway.admin import main as admin
from koha_gateway.ils.calendar import Calendar

BLANK = " " * 18
ADA = "23529000000001"
ITEM = "39999000000001"


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y%m%d    %H%M%S")


def test_checkout_due_date_skips_the_closed_days(demo_url, make_gateway, capsys):
    today = date.today()
    closed = [today + timedelta(days=n) for n in range(13, 17)]
    for day in closed:
        argv = ["--database", demo_url, "add-holiday", "--branch", "WEL", "--date", str(day)]
        assert admin(argv) == 0
    capsys.readouterr()
    gateway = make_gateway()
    sc = gateway.logged_in()
    try:
        answer = sc.request(f"11YN{_stamp(datetime.now())}{BLANK}AOWEL|AA{ADA}|AB{ITEM}|AC|")
    finally:
        sc.close()
    assert answer.startswith("121"), answer

    (loan,) = gateway.query(
        "SELECT i.issuedate, i.date_due, it.onloan FROM issues i JOIN items it "
        "ON it.itemnumber = i.itemnumber WHERE it.barcode = ?",
        (ITEM,),
    )
    issued = datetime.fromisoformat(str(loan["issuedate"])[:19])
    calendar = Calendar.from_rows(
        "WEL",
        [
            {"kind": "S", "day": d.day, "month": d.month, "year": d.year, "isexception": 0}
            for d in closed
        ],
    )
    # 14 open days (useDaysMode Calendar, Koha's default): at least one closed day skipped.
    due_day = calendar.add_days(issued, 14, "Calendar").date()
    assert due_day > issued.date() + timedelta(days=14)
    assert str(loan["date_due"])[:19] == f"{due_day.isoformat()} 23:59:00"
    assert str(loan["onloan"])[:10] == due_day.isoformat()
    assert f"|AH{due_day.strftime('%Y%m%d')}    235900|" in answer
