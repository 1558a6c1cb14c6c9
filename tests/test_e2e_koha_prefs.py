"""StoreLastBorrower and RealTimeHoldsQueue through a running gateway, on every engine.

The preferences are set in the database before the gateway starts (as a library sets them in
Koha's staff interface); a checkout and a return over a real socket then leave Koha's rows: one
``update_holds_queue_for_biblios`` job each (AddIssue, AddReturn) and, where the database has
Koha's ``items_last_borrower`` (every Koha database: MariaDB here), the returning patron.
"""

from __future__ import annotations

import json

from tests.gateway import NOW, sip_date

ADA = "23529000000001"
BLANK = " " * 18
ITEM = "39999000000001"


def _set_prefs(url: str, prefs: dict[str, str]) -> None:
    from koha_gateway.db.engine import Database
    from koha_gateway.ils.sysprefs import set_syspref

    db = Database.from_url(url)
    try:

        def work(txn):
            for name, value in prefs.items():
                set_syspref(txn, name, value)

        db.run_blocking(work)
    finally:
        db.close()


def test_checkout_and_return_write_the_holds_queue_jobs_and_the_last_borrower(
    make_gateway, demo_url
):
    _set_prefs(demo_url, {"StoreLastBorrower": "1", "RealTimeHoldsQueue": "1"})
    gateway = make_gateway()
    stamp = sip_date()
    with gateway.logged_in() as client:
        assert client.request(f"11YN{stamp}{BLANK}AOWEL|AA{ADA}|AB{ITEM}|AC|").startswith("121")
        assert client.request(f"09N{stamp}{BLANK}APWEL|AOWEL|AB{ITEM}|AC|").startswith("101")
    item = gateway.query("SELECT itemnumber, biblionumber FROM items WHERE barcode = ?", (ITEM,))[0]
    ada = gateway.query("SELECT borrowernumber FROM borrowers WHERE cardnumber = ?", (ADA,))[0]
    staff = gateway.query("SELECT borrowernumber FROM borrowers WHERE userid = 'joe'")[0]
    jobs = gateway.query(
        "SELECT status, size, borrowernumber, type, queue, data, context, enqueued_on "
        "FROM background_jobs ORDER BY id"
    )
    now_sql = NOW.strftime("%Y-%m-%d %H:%M:%S")
    assert [
        (j["status"], j["size"], j["borrowernumber"], j["type"], j["queue"], json.loads(j["data"]))
        for j in jobs
    ] == [
        (
            "new",
            1,
            staff["borrowernumber"],
            "update_holds_queue_for_biblios",
            "default",
            {"biblio_ids": [item["biblionumber"]]},
        )
    ] * 2
    assert {json.loads(j["context"])["interface"] for j in jobs} == {"sip"}
    assert {str(j["enqueued_on"])[:19] for j in jobs} == {now_sql}
    if gateway.database_url.startswith("mysql"):
        rows = gateway.query(
            "SELECT itemnumber, borrowernumber, created_on FROM items_last_borrower"
        )
        assert [
            (r["itemnumber"], r["borrowernumber"], str(r["created_on"])[:19]) for r in rows
        ] == [(item["itemnumber"], ada["borrowernumber"], now_sql)]
