"""After a scripted kiosk session the database is as Koha's own SIP server leaves it.

One session of SIP2 requests through the ACS, on every engine the fixtures offer: two
checkouts, a renewal, the late return of an overdue loan (a fine), the payment of that fine, a
hold placed on an item on loan, captured when the item comes back and filled when the holder
checks it out. Then, table by table (koha-circulation-writes.md sections 2-7 and 10):

* every open loan is in ``issues`` and only there; returned loans are in ``old_issues`` with
  their ``issue_id``; ``items.onloan`` is the loan's due date, or NULL;
* ``statistics``, ``accountlines``, ``account_offsets``, ``action_logs`` and ``zebraqueue`` hold
  exactly the rows Koha writes with its default preferences (IssueLog and ReturnLog and FinesLog
  on, RenewalLog and HoldsLog off, SearchEngine Zebra);
* the hold is in ``old_reserves`` with its ``reserve_id``;
* every other table -- and every row of the changed tables that the session did not concern --
  is exactly as before.
"""

from __future__ import annotations

import pytest

from tests.ils.conftest import ADA, BARCODE, TS, call

#: The patron who places the hold (a demo staff member without circulation permission).
HOLDER = "23529000009002"

BLANK = " " * 18
NOW_SQL = "2026-03-10 14:30:00"
TODAY = "2026-03-10"

#: The tables Koha's circulation writes to in this session.
WRITTEN = {
    "issues",
    "old_issues",
    "items",
    "statistics",
    "accountlines",
    "account_offsets",
    "action_logs",
    "zebraqueue",
    "reserves",
    "old_reserves",
}


def _tables(txn) -> list[str]:
    name = txn.engine.name
    if name == "sqlite":
        sql = (
            "SELECT name AS t FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    elif name == "postgresql":
        sql = (
            "SELECT table_name AS t FROM information_schema.tables "
            "WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
        )
    else:
        sql = (
            "SELECT table_name AS t FROM information_schema.tables "
            "WHERE table_schema = DATABASE() AND table_type = 'BASE TABLE'"
        )
    return sorted(str(row["t"]) for row in txn.query(sql))


def _snapshot(db) -> dict[str, list[tuple]]:
    """Every row of every table, as sorted tuples of strings."""

    def work(txn):
        content = {}
        for table in _tables(txn):
            rows = txn.query(f"SELECT * FROM {table}")
            content[table] = sorted(
                tuple(sorted((key, repr(value)) for key, value in row.items())) for row in rows
            )
        return content

    return db.run_blocking(work)


def _query(db, sql, params=()):
    return db.run_blocking(lambda txn: [dict(row) for row in txn.query(sql, params)])


def _scalar(db, sql, params=()):
    return db.run_blocking(lambda txn: txn.scalar(sql, params))


def _item(db, barcode):
    return _query(db, "SELECT * FROM items WHERE barcode = ?", (barcode,))[0]


def _patron(db, card):
    return _query(
        db, "SELECT borrowernumber, categorycode FROM borrowers WHERE cardnumber = ?", (card,)
    )[0]


def _session(db, context) -> dict:
    """The kiosk session; returns what the assertions need to know from before it."""
    before = {
        "loan07": _query(
            db,
            "SELECT i.* FROM issues i JOIN items it ON it.itemnumber = i.itemnumber "
            "WHERE it.barcode = ?",
            (BARCODE[7],),
        )[0],
    }
    steps = [
        # Ada borrows two books and renews one of them.
        (f"11YN{TS}{BLANK}AOWEL|AA{ADA}|AB{BARCODE[1]}|AC|", "121"),
        (f"11YN{TS}{BLANK}AOWEL|AA{ADA}|AB{BARCODE[2]}|AC|", "121"),
        (f"29NN{TS}{BLANK}AOWEL|AA{ADA}|AB{BARCODE[1]}|", "301"),
        # She returns the book that was due ten days ago: a fine of 10 x 0.25.
        (f"09N{TS}{TS}APWEL|AOWEL|AB{BARCODE[7]}|AC|", "101"),
        # And pays it at the kiosk.
        (f"37{TS}0100NZDBV2.50|AOWEL|AA{ADA}|", "38Y"),
        # The holder asks for the other book she has; she brings it back; he takes it home.
        (f"15+{TS}AOWEL|AA{HOLDER}|AB{BARCODE[2]}|BSWEL|", "161"),
        (f"09N{TS}{TS}APWEL|AOWEL|AB{BARCODE[2]}|AC|", "101"),
        (f"11YN{TS}{BLANK}AOWEL|AA{HOLDER}|AB{BARCODE[2]}|AC|", "121"),
    ]
    for raw, expected in steps:
        answer = call(db, context, raw)
        assert answer.startswith(expected), (raw, answer)
    return before


@pytest.fixture
def session(db, ctx):
    # Koha's own default is finesMode "off" (a Koha database has it): fines need "production".
    context = ctx(sysprefs={"finesMode": "production"})
    first = _snapshot(db)
    before = _session(db, context)
    return first, before, _snapshot(db)


def test_no_other_table_is_touched(db, session):
    first, _, last = session
    assert sorted(first) == sorted(last)
    touched = {table for table in first if first[table] != last[table]}
    assert touched <= WRITTEN, touched - WRITTEN
    for table in first:
        if table not in WRITTEN:
            assert len(first[table]) == len(last[table]), table


def test_loans_are_in_issues_or_old_issues(db, session):
    _, before, _ = session
    open_loans = _query(db, "SELECT issue_id, itemnumber, date_due FROM issues")
    closed = _query(db, "SELECT issue_id FROM old_issues")
    assert not {row["issue_id"] for row in open_loans} & {row["issue_id"] for row in closed}
    # Every item's onloan is its loan's due date, or NULL.
    due = {row["itemnumber"]: str(row["date_due"])[:10] for row in open_loans}
    for item in _query(db, "SELECT itemnumber, onloan FROM items"):
        expected = due.get(item["itemnumber"])
        assert (None if item["onloan"] is None else str(item["onloan"])[:10]) == expected
    # The overdue loan went to old_issues with its issue_id and every column.
    loan07 = before["loan07"]
    old = _query(db, "SELECT * FROM old_issues WHERE issue_id = ?", (loan07["issue_id"],))
    assert len(old) == 1
    for column in ("borrowernumber", "itemnumber", "date_due", "branchcode", "issuedate"):
        assert old[0][column] == loan07[column], column
    assert str(old[0]["returndate"])[:19] == NOW_SQL
    # Ada's loan of item 02 (returned) and The holder's new loan of it.
    item02 = _item(db, BARCODE[2])
    returned = _query(
        db,
        "SELECT * FROM old_issues WHERE itemnumber = ? ORDER BY issue_id",
        (item02["itemnumber"],),
    )
    current = _query(db, "SELECT * FROM issues WHERE itemnumber = ?", (item02["itemnumber"],))
    assert [row["borrowernumber"] for row in returned] == [_patron(db, ADA)["borrowernumber"]]
    assert [row["borrowernumber"] for row in current] == [_patron(db, HOLDER)["borrowernumber"]]
    assert returned[0]["issue_id"] < current[0]["issue_id"]


def test_items_as_koha_leaves_them(db, session):
    item01, item02, item07 = (_item(db, BARCODE[n]) for n in (1, 2, 7))
    loan01 = _query(db, "SELECT * FROM issues WHERE itemnumber = ?", (item01["itemnumber"],))[0]
    assert loan01["renewals_count"] == 1 and str(loan01["lastreneweddate"])[:19] == NOW_SQL
    assert int(loan01["auto_renew"] or 0) == 0
    assert item01["renewals"] == 1 and item01["issues"] == 1
    assert str(item01["datelastborrowed"])[:10] == TODAY
    assert str(item01["onloan"])[:10] == str(loan01["date_due"])[:10]
    assert item02["issues"] == 2 and not item02["renewals"]
    assert item07["onloan"] is None and item07["holdingbranch"] == "WEL"
    assert str(item07["datelastseen"])[:19] == NOW_SQL


def test_statistics_are_koha_s(db, session):
    ada, holder = _patron(db, ADA), _patron(db, HOLDER)
    numbers = {n: _item(db, BARCODE[n])["itemnumber"] for n in (1, 2, 7)}
    rows = _query(
        db,
        "SELECT datetime, branch, value, type, other, itemnumber, itemtype, location, "
        "borrowernumber, ccode, categorycode, interface FROM statistics",
    )

    def circ(kind, n, patron):
        return {
            "datetime": NOW_SQL,
            "branch": "WEL",
            "value": 0.0,
            "type": kind,
            "other": "",
            "itemnumber": numbers[n],
            "itemtype": "BK",
            "location": "GEN",
            "borrowernumber": patron["borrowernumber"],
            "ccode": None,
            "categorycode": patron["categorycode"],
            "interface": "sip",
        }

    payment = {
        "datetime": NOW_SQL,
        "branch": None,
        "value": -2.5,
        "type": "payment",
        "other": "",
        "itemnumber": None,
        "itemtype": "",
        "location": None,
        "borrowernumber": ada["borrowernumber"],
        "ccode": "",
        "categorycode": None,
        "interface": "sip",
    }
    expected = [
        circ("issue", 1, ada),
        circ("issue", 2, ada),
        circ("renew", 1, ada),
        circ("return", 7, ada),
        payment,
        circ("return", 2, ada),
        circ("issue", 2, holder),
    ]

    def key(row):
        return tuple(sorted((k, repr(v)) for k, v in row.items()))

    for row in rows:
        row["datetime"] = str(row["datetime"])[:19]
        row["value"] = None if row["value"] is None else float(row["value"])
    assert sorted(rows, key=key) == sorted(expected, key=key)


def test_accountlines_and_offsets_are_koha_s(db, session):
    _, before, _ = session
    ada = _patron(db, ADA)["borrowernumber"]
    staff = _scalar(db, "SELECT borrowernumber FROM borrowers WHERE userid = 'joe'")
    item07 = _item(db, BARCODE[7])["itemnumber"]
    lines = _query(
        db,
        "SELECT accountlines_id, borrowernumber, itemnumber, issue_id, amount, "
        "amountoutstanding, debit_type_code, credit_type_code, status, payment_type, "
        "interface, branchcode, manager_id, note FROM accountlines WHERE borrowernumber = ? "
        "ORDER BY accountlines_id",
        (ada,),
    )
    assert len(lines) == 2
    fine, payment = lines
    fine_id, payment_id = fine.pop("accountlines_id"), payment.pop("accountlines_id")
    assert fine == {
        "borrowernumber": ada,
        "itemnumber": item07,
        "issue_id": before["loan07"]["issue_id"],
        "amount": 2.5,
        "amountoutstanding": 0.0,
        "debit_type_code": "OVERDUE",
        "credit_type_code": None,
        "status": "RETURNED",
        "payment_type": None,
        "interface": "sip",
        "branchcode": None,
        "manager_id": None,
        "note": "",
    }
    assert payment == {
        "borrowernumber": ada,
        "itemnumber": None,
        "issue_id": None,
        "amount": -2.5,
        "amountoutstanding": 0.0,
        "debit_type_code": None,
        "credit_type_code": "PAYMENT",
        "status": None,
        "payment_type": "SIP00",
        "interface": "sip",
        "branchcode": None,
        "manager_id": staff,
        "note": "",
    }
    offsets = _query(
        db,
        "SELECT credit_id, debit_id, type, amount FROM account_offsets "
        "WHERE credit_id IN (?, ?) OR debit_id IN (?, ?)",
        (fine_id, payment_id, fine_id, payment_id),
    )
    for row in offsets:
        row["amount"] = float(row["amount"])
    assert sorted(offsets, key=repr) == sorted(
        [
            {"credit_id": None, "debit_id": fine_id, "type": "CREATE", "amount": 2.5},
            {"credit_id": payment_id, "debit_id": None, "type": "CREATE", "amount": 2.5},
            {"credit_id": payment_id, "debit_id": fine_id, "type": "APPLY", "amount": -2.5},
        ],
        key=repr,
    )


def test_action_logs_are_koha_s(db, session):
    ada, holder = (_patron(db, card)["borrowernumber"] for card in (ADA, HOLDER))
    staff = _scalar(db, "SELECT borrowernumber FROM borrowers WHERE userid = 'joe'")
    numbers = {n: str(_item(db, BARCODE[n])["itemnumber"]) for n in (1, 2, 7)}
    rows = _query(db, "SELECT * FROM action_logs ORDER BY action_id")
    assert {row["user"] for row in rows} == {staff}
    assert {row["interface"] for row in rows} == {"sip"}
    assert {str(row["timestamp"])[:19] for row in rows} == {NOW_SQL}
    circulation = [
        (row["action"], row["object"], row["info"])
        for row in rows
        if row["module"] == "CIRCULATION"
    ]
    # IssueLog and ReturnLog are on by default, RenewalLog and HoldsLog off.
    assert circulation == [
        ("ISSUE", ada, numbers[1]),
        ("ISSUE", ada, numbers[2]),
        ("RETURN", ada, numbers[7]),
        ("RETURN", ada, numbers[2]),
        ("ISSUE", holder, numbers[2]),
    ]
    fines = [row for row in rows if row["module"] == "FINES"]
    assert [(row["action"], row["object"]) for row in fines] == [("CREATE", ada), ("CREATE", ada)]
    assert "'action' => 'create_OVERDUE'" in fines[0]["info"]
    assert "'action' => 'create_PAYMENT'" in fines[1]["info"]
    assert not [row for row in rows if row["module"] not in ("CIRCULATION", "FINES")]


def test_one_index_request_per_record(db, session):
    biblios = sorted(_item(db, BARCODE[n])["biblionumber"] for n in (1, 2, 7))
    rows = _query(
        db, "SELECT biblio_auth_number, operation, server, done FROM zebraqueue ORDER BY id"
    )
    assert sorted(row["biblio_auth_number"] for row in rows) == biblios
    assert {(row["operation"], row["server"], row["done"]) for row in rows} == {
        ("specialUpdate", "biblioserver", 0)
    }


def test_the_hold_was_filled(db, session):
    holder = _patron(db, HOLDER)["borrowernumber"]
    item02 = _item(db, BARCODE[2])
    assert not _query(db, "SELECT * FROM reserves WHERE borrowernumber = ?", (holder,))
    old = _query(
        db,
        "SELECT borrowernumber, biblionumber, itemnumber, branchcode, priority, found, "
        "reservedate, cancellationdate FROM old_reserves",
    )
    assert old == [
        {
            "borrowernumber": holder,
            "biblionumber": item02["biblionumber"],
            "itemnumber": item02["itemnumber"],
            "branchcode": "WEL",
            "priority": 0,
            "found": "F",
            "reservedate": TODAY,
            "cancellationdate": None,
        }
    ]
