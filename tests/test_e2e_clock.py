"""The gateway's wall clock end to end: ``KOHA_GATEWAY_CLOCK`` starts a real twistd as if it were
another date, so that the suite's checks do not depend on the day it runs.

The same check runs with the data, the gateway and the requests all at two different instants:
what a kiosk sees must be the same. (A suite whose data followed the real date while its
requests were fixed failed this on every day but one.)
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import load_demo_database
from tests.gateway import sip_date

BLANK = " " * 18
ADA = "23529000000001"
OVERDUE_TO_ADA = "39999000000007"  # a demo loan 10 days overdue, 0.25 a day
AVAILABLE = "39999000000001"


def overdue_fine(gateway) -> float:
    rows = gateway.query(
        "SELECT a.amount FROM accountlines a JOIN items it ON it.itemnumber = a.itemnumber "
        "WHERE it.barcode = ? AND a.debit_type_code = 'OVERDUE'",
        (OVERDUE_TO_ADA,),
    )
    assert len(rows) == 1, rows
    return float(rows[0]["amount"])


@pytest.fixture
def database_at(request, engine, tmp_path):
    """Factory: a fresh demo database on the engine under test, loaded as of ``instant``."""
    made = []

    def make(instant: datetime) -> str:
        if engine == "sqlite":
            return load_demo_database(f"sqlite:///{tmp_path / f'at{len(made)}.sqlite'}", instant)
        cluster = request.getfixturevalue("pg_demo_template")
        url = cluster.create_database()
        made.append((cluster, url))
        return load_demo_database(url, instant)

    yield make
    for cluster, url in made:
        cluster.drop_database(url.rsplit("/", 1)[1])


@pytest.mark.parametrize(
    "instant",
    [
        datetime(2026, 11, 29, 12, 0, tzinfo=UTC),
        datetime(2031, 3, 1, 9, 30, tzinfo=UTC),  # another year, just after a February
    ],
    ids=["2026-11-29", "2031-03-01"],
)
def test_the_same_answers_at_any_date(make_gateway, database_at, instant):
    gateway = make_gateway(database_url=database_at(instant), clock=instant)
    with gateway.logged_in() as kiosk:
        # The answer's own date is the gateway's clock, started at the pinned instant.
        status = kiosk.request("9900302.00")
        answer_date = datetime.strptime(status[14:22], "%Y%m%d").date()
        assert answer_date == instant.date(), status

        out = kiosk.request(f"11YN{sip_date(instant)}{BLANK}AOWEL|AA{ADA}|AB{AVAILABLE}|AC|")
        assert out.startswith("121"), out

        back = kiosk.request(
            f"09N{sip_date(instant)}{sip_date(instant)}AOWEL|APWEL|AB{OVERDUE_TO_ADA}|AC|"
        )
        assert back.startswith("101"), back
    assert overdue_fine(gateway) == pytest.approx(2.50)
    due = gateway.query(
        "SELECT i.date_due, i.issuedate FROM issues i "
        "JOIN items it ON it.itemnumber = i.itemnumber WHERE it.barcode = ?",
        (AVAILABLE,),
    )[0]
    issued = datetime.fromisoformat(str(due["issuedate"])[:19])
    assert abs(issued - instant.replace(tzinfo=None)) < timedelta(minutes=5), due
    assert str(due["date_due"])[:10] > instant.date().isoformat(), due


def test_a_gateway_pinned_later_than_its_data_sees_the_time_passed(make_gateway, database_at):
    data = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    later = data + timedelta(days=2)
    gateway = make_gateway(database_url=database_at(data), clock=later)
    with gateway.logged_in() as kiosk:
        back = kiosk.request(
            f"09N{sip_date(later)}{sip_date(later)}AOWEL|APWEL|AB{OVERDUE_TO_ADA}|AC|"
        )
        assert back.startswith("101"), back
    # Seven days overdue instead of five.
    assert overdue_fine(gateway) == pytest.approx(3.00)
