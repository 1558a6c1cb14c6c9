"""The request journal: a resent request is answered once, a new one is always applied.

A self-check that timed out waiting for an answer sends the same request again, often on a new
connection. If the first copy was applied (the answer was lost, or arrived late), applying the
copy would make a second loan or a second payment. A request therefore counts as a **resend**
only when all of these hold:

* it is byte for byte the request the same **terminal** (SIP account and peer address) last
  sent among the requests that change the database (with error detection on, the bytes include
  the AY sequence number and the AZ checksum);
* it arrives within the **retry window** of the institution's policy (``timeout`` seconds times
  ``retries``; a zero or missing value counts as Koha's default, 100 and 5);
* nothing has changed the item or the patron it touches since: the journal keeps, with the
  answer, a fingerprint of their circulation state (the item's status, loan and holds; the
  patron's restrictions, loans, holds and account), and a candidate resend is compared against
  the state of now. A change made by anyone (another terminal, Koha's staff interface) makes it
  a new request.

Anything else is applied as a new request. The journal keeps one row per terminal in
``kgw_request_journal`` (so it works across connections, ``--workers`` processes and restarts);
the row is written in the transaction that applied the request. It is read without a lock and
written at the end, so that the terminal's row stays locked only from that write to the commit:
kiosks that share a terminal (one SIP account behind one address, a common set-up) apply their
requests side by side instead of queueing behind each other's whole transactions. Each write
checks the row's ``serial`` that it read; a row written meanwhile (the UPDATE waits for the
writer's commit, then sees the new row: PostgreSQL's READ COMMITTED, InnoDB's locking read) is
read again: written by another request of the terminal, it is replaced, as it would have been
had that request come first; written by a copy of this request (the resend raced the first
copy), this transaction fails with :class:`JournalRace` and the caller runs it again, when it
finds the winner's answer. Two first rows of a terminal collide on the unique key: the same
race. The outcome is the one of running the terminal's requests one after the other.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from typing import Any

from koha_gateway.db.engine import IntegrityError
from koha_gateway.ils import items as ils_items
from koha_gateway.ils import patrons as ils_patrons
from koha_gateway.sip2.codec import Response

#: Requests that change the database; only these are journalled.
MUTATING = frozenset({"11", "09", "29", "65", "15", "37", "01", "25", "19"})

#: Koha's defaults for an institution's policy (25.11 migration): timeout 100, retries 5.
DEFAULT_TIMEOUT = 100
DEFAULT_RETRIES = 5

_ITEM_COLUMNS = (
    "itemnumber, biblionumber, holdingbranch, notforloan, itemlost, withdrawn, damaged, "
    "onloan, location, issues, renewals"
)
_PATRON_COLUMNS = "borrowernumber, categorycode, dateexpiry, debarred, gonenoaddress, lost"


class JournalRace(Exception):
    """Another transaction wrote this terminal's journal row first: run the request again."""


def retry_window(policy) -> timedelta:
    """How long a terminal may resend a request: the policy's timeout (s) times its retries."""
    timeout = getattr(policy, "timeout", 0) or DEFAULT_TIMEOUT
    retries = getattr(policy, "retries", 0) or DEFAULT_RETRIES
    return timedelta(seconds=timeout * retries)


def digest(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def handle(txn, ctx, msg, raw: bytes, apply) -> Response:
    """Answer ``msg`` (received as ``raw``) in ``txn``: from the journal when it is a resend,
    else by ``apply(txn, ctx, msg)``, journalling the answer.

    The terminal's row is read without a lock, and written (locked) only at the end, so that
    the lock is held from that write to the commit, not for the whole request: the writes of
    kiosks that share a terminal (one SIP account behind one address) then overlap instead of
    queueing. The outcome is the one of running the terminal's requests one after the other:
    a row written meanwhile by a copy of this request makes this one a :class:`JournalRace`
    (run again, it is then answered from the journal); a row written meanwhile by another
    request of the terminal is simply replaced, as it would have been had that request come
    first (see :func:`_write`)."""
    if msg.code not in MUTATING:
        return apply(txn, ctx, msg)
    account, peer = ctx.account.id, ctx.peer or "-"
    key = digest(raw)
    previous = txn.one(
        "SELECT serial, digest, fingerprint, response, created FROM kgw_request_journal "
        "WHERE account = ? AND peer = ?",
        (account, peer),
    )
    if (
        previous is not None
        and previous["digest"] == key
        and _within(previous["created"], ctx, retry_window(ctx.institution.policy))
        and previous["fingerprint"] == fingerprint(txn, ctx, msg)
    ):
        ctx.log.append(f"resent {msg.code} answered from the request journal")
        return restore(previous["response"])
    locked = getattr(ctx, "locked_patrons", None)
    if locked:
        locked.clear()  # a transaction run again starts afresh
    response = apply(txn, ctx, msg)
    _write(
        txn,
        account,
        peer,
        None if previous is None else int(previous["serial"]),
        key=key,
        state=fingerprint(txn, ctx, msg, locked=getattr(ctx, "locked_patrons", None)),
        response=store(response),
        created=ctx.now_sql,
    )
    return response


def _write(txn, account: str, peer: str, serial: int | None, **row) -> None:
    """:func:`record` this request over the row read with ``serial``. When another transaction
    replaced that row meanwhile (committed, since the UPDATE waits for the row lock and then
    sees the latest row), the row is read again, locked: written by a copy of this request
    (the same digest), this transaction lost the race; written by another request of the
    terminal, this request comes after it and replaces it."""
    try:
        record(txn, account, peer, serial, **row)
    except JournalRace:
        if serial is None:
            raise  # two first rows: the loser's transaction is spoilt (PostgreSQL) anyway
        current = txn.one(
            "SELECT serial, digest FROM kgw_request_journal "
            f"WHERE account = ? AND peer = ?{txn.for_update}",
            (account, peer),
        )
        if current is None or current["digest"] == row["key"]:
            raise
        record(txn, account, peer, int(current["serial"]), **row)


def record(txn, account: str, peer: str, serial: int | None, **row) -> None:
    """Make this the terminal's last request, replacing the row read with ``serial`` (None:
    there was none); JournalRace when another transaction wrote the terminal's row since."""
    values = (row["key"], row["state"], row["response"], row["created"])
    if serial is None:
        txn.flush()  # the IntegrityError caught below must be the insert's own
        try:
            txn.execute(
                "INSERT INTO kgw_request_journal (account, peer, serial, digest, fingerprint, "
                "response, created) VALUES (?, ?, 1, ?, ?, ?, ?)",
                (account, peer, *values),
            )
        except IntegrityError as exc:
            raise JournalRace(f"journal of {account!r} at {peer} written concurrently") from exc
        return
    # The serial check is re-evaluated on the latest committed row (PostgreSQL's READ
    # COMMITTED, InnoDB's locking read): a row written since the SELECT matches nothing.
    changed = txn.execute(
        "UPDATE kgw_request_journal SET serial = ?, digest = ?, fingerprint = ?, response = ?, "
        "created = ? WHERE account = ? AND peer = ? AND serial = ?",
        (serial + 1, *values, account, peer, serial),
    )
    if changed != 1:
        raise JournalRace(f"journal of {account!r} at {peer} written concurrently")


def purge(txn, before: str) -> int:
    """Forget journal rows created before ``before`` (``YYYY-MM-DD HH:MM:SS``)."""
    return txn.execute("DELETE FROM kgw_request_journal WHERE created < ?", (before,))


def fingerprint(txn, ctx, msg, locked: dict | None = None) -> str:
    """A digest of the circulation state of the item (AB) and patron (AA) ``msg`` touches.

    Two statements at most: the patron's number, then the item with its loan and its title's
    holds with the patron, the sums of their account, their restrictions, loans and holds (one
    statement; one each when the message names only one of them). ``locked``
    (:func:`note_locked_patron`) gives the patron's number when the request found and locked
    the patron by that very cardnumber: the lookup would find the same row, so it is not read
    again."""
    state: list[Any] = []
    barcode, patron_id = msg.get("AB"), msg.get("AA")
    code = number = None
    if barcode:
        input_filter = ctx.sysprefs.get("itemBarcodeInputFilter") if ctx.sysprefs else None
        code = ils_items.barcodedecode(barcode, input_filter)
        if not code or "\x00" in code:
            code = None
    if patron_id:
        number = locked.get(patron_id) if locked else None
        if number is None:
            number = ils_patrons.patron_number(txn, patron_id)
    if code is not None and number is not None:
        state.extend(_item_and_patron_state(txn, code, number))
    else:
        if barcode:
            state.append(_item_state(txn, code) if code is not None else None)
        if patron_id:
            state.append(_patron_state(txn, number) if number is not None else None)
    return hashlib.sha256(json.dumps(state, default=str).encode()).hexdigest()


def note_locked_patron(ctx, identifier: str | None, patron: dict | None) -> None:
    """Remember, for the fingerprint written after the request, that ``identifier`` found
    ``patron`` (locked ``FOR UPDATE`` for the rest of the transaction) by its cardnumber.

    Only an exact match of the cardnumber is remembered: cardnumbers are unique and the locked
    row keeps its cardnumber, so :func:`~koha_gateway.ils.patrons.patron_number` would find
    this patron again at the end of the transaction. A patron found by userid or by a
    case-insensitive match is looked up again (another row could match first by then)."""
    locked = getattr(ctx, "locked_patrons", None)
    if locked is None or patron is None or identifier is None:
        return
    if patron.get("cardnumber") is not None and patron["cardnumber"] == identifier.strip():
        locked[identifier] = int(patron["borrowernumber"])


_ITEM_STATE = (
    "SELECT "
    + ", ".join(f"it.{column.strip()}" for column in _ITEM_COLUMNS.split(","))
    + ", i.issue_id, i.borrowernumber AS loan_borrowernumber, i.date_due, i.renewals_count, "
    "r.reserve_id, r.borrowernumber AS hold_borrowernumber, r.itemnumber AS hold_itemnumber, "
    "r.priority, r.found, r.suspend "
    "FROM items it LEFT JOIN issues i ON i.itemnumber = it.itemnumber "
    "LEFT JOIN reserves r ON r.biblionumber = it.biblionumber "
    "WHERE it.barcode = ? ORDER BY r.reserve_id"
)
_ITEM_KEYS = tuple(column.strip() for column in _ITEM_COLUMNS.split(","))
_LOAN_KEYS = ("issue_id", "loan_borrowernumber", "date_due", "renewals_count")
_HOLD_KEYS = (
    "reserve_id",
    "hold_borrowernumber",
    "hold_itemnumber",
    "priority",
    "found",
    "suspend",
)


def _item_state(txn, barcode: str) -> list | None:
    """The item's row, its loan and the holds of its title (``None``: no such item)."""
    rows = txn.query(_ITEM_STATE, (barcode,))
    if not rows:
        return None
    first = rows[0]
    loan = None if first["issue_id"] is None else _values(first, _LOAN_KEYS)
    holds = [_values(row, _HOLD_KEYS) for row in rows if row["reserve_id"] is not None]
    return [_values(first, _ITEM_KEYS), loan, holds]


_PATRON_KEYS = tuple(column.strip() for column in _PATRON_COLUMNS.split(","))
# One statement: the patron's row with the sums of their account (always one row), joined
# with one list of the holds (R), loans (I) and restrictions (D), columns of one type each
# (the first branch names the numeric columns: PostgreSQL types a column by its first
# branches). Every row repeats the patron's columns; no list row gives one row of NULLs.
_PATRON_STATE = (
    "SELECT "
    + ", ".join(f"b.{column.strip()}" for column in _PATRON_COLUMNS.split(","))
    + ", a.n, a.last, a.owed, l.kind, l.id, l.num, l.cnt, l.flg, l.txt, l.dt "
    "FROM (SELECT COUNT(*) AS n, MAX(accountlines_id) AS last, "
    "SUM(amountoutstanding) AS owed FROM accountlines WHERE borrowernumber = ?) a "
    "LEFT JOIN borrowers b ON b.borrowernumber = ? "
    "LEFT JOIN (SELECT 'R' AS kind, reserve_id AS id, itemnumber AS num, priority AS cnt, "
    "suspend AS flg, found AS txt, NULL AS dt FROM reserves WHERE borrowernumber = ? "
    "UNION ALL SELECT 'I', issue_id, itemnumber, renewals_count, NULL, NULL, date_due "
    "FROM issues WHERE borrowernumber = ? "
    "UNION ALL SELECT 'D', borrower_debarment_id, NULL, NULL, NULL, type, expiration "
    "FROM borrower_debarments WHERE borrowernumber = ?) l ON 1 = 1 ORDER BY l.kind, l.id"
)


def _patron_state(txn, borrowernumber: int) -> list:
    """The patron's row, restrictions, loans, holds and account (count, last line, balance)."""
    rows = txn.query(_PATRON_STATE, (borrowernumber,) * 5)
    row = rows[0]
    lists = [r for r in rows if r["kind"] is not None]
    patron = None if row["borrowernumber"] is None else _values(row, _PATRON_KEYS)
    return [
        patron,
        [_values(r, ("id", "txt", "dt")) for r in lists if r["kind"] == "D"],
        [_values(r, ("id", "num", "dt", "cnt")) for r in lists if r["kind"] == "I"],
        [_values(r, ("id", "num", "cnt", "txt", "flg")) for r in lists if r["kind"] == "R"],
        _values(row, ("n", "last", "owed")),
    ]


# The item's and the patron's state in one statement (what _item_state and _patron_state
# read): the patron's row with the sums of their account, the item with its loan, joined with
# one list of the title's holds (H), the patron's holds (R), loans (I) and restrictions (D).
# The loans' branch comes first: PostgreSQL types the columns of a chain of UNIONs pair by
# pair, and NULL with NULL would make ``dt`` text.
_BOTH_STATE = (
    "SELECT "
    + ", ".join(f"it.{column.strip()}" for column in _ITEM_COLUMNS.split(","))
    + ", i.issue_id, i.borrowernumber AS loan_borrowernumber, i.date_due, i.renewals_count, "
    + ", ".join(f"b.{column.strip()}" for column in _PATRON_COLUMNS.split(","))
    + ", a.n, a.last, a.owed, l.kind, l.id, l.num, l.cnt, l.flg, l.txt, l.dt, l.bn "
    "FROM (SELECT COUNT(*) AS n, MAX(accountlines_id) AS last, "
    "SUM(amountoutstanding) AS owed FROM accountlines WHERE borrowernumber = ?) a "
    "LEFT JOIN borrowers b ON b.borrowernumber = ? "
    "LEFT JOIN items it ON it.barcode = ? "
    "LEFT JOIN issues i ON i.itemnumber = it.itemnumber "
    "LEFT JOIN (SELECT 'I' AS kind, issue_id AS id, itemnumber AS num, renewals_count AS cnt, "
    "NULL AS flg, NULL AS txt, date_due AS dt, NULL AS bn FROM issues WHERE borrowernumber = ? "
    "UNION ALL SELECT 'H', reserve_id, itemnumber, priority, suspend, found, NULL, borrowernumber "
    "FROM reserves WHERE biblionumber = (SELECT biblionumber FROM items WHERE barcode = ?) "
    "UNION ALL SELECT 'R', reserve_id, itemnumber, priority, suspend, found, NULL, NULL "
    "FROM reserves WHERE borrowernumber = ? "
    "UNION ALL SELECT 'D', borrower_debarment_id, NULL, NULL, NULL, type, expiration, NULL "
    "FROM borrower_debarments WHERE borrowernumber = ?) l ON 1 = 1 ORDER BY l.kind, l.id"
)


def _item_and_patron_state(txn, barcode: str, borrowernumber: int) -> list:
    """``[_item_state(barcode), _patron_state(borrowernumber)]`` in one statement."""
    number = borrowernumber
    rows = txn.query(_BOTH_STATE, (number, number, barcode, number, barcode, number, number))
    first = rows[0]
    item = None
    if first["itemnumber"] is not None:
        loan = None if first["issue_id"] is None else _values(first, _LOAN_KEYS)
        holds = [
            [_text(r["id"]), _text(r["bn"]), _text(r["num"]), _text(r["cnt"])]
            + [_text(r["txt"]), _text(r["flg"])]
            for r in rows
            if r["kind"] == "H"
        ]
        item = [_values(first, _ITEM_KEYS), loan, holds]
    patron = None if first["borrowernumber"] is None else _values(first, _PATRON_KEYS)
    lists = [r for r in rows if r["kind"] in ("R", "I", "D")]
    return [
        item,
        [
            patron,
            [_values(r, ("id", "txt", "dt")) for r in lists if r["kind"] == "D"],
            [_values(r, ("id", "num", "dt", "cnt")) for r in lists if r["kind"] == "I"],
            [_values(r, ("id", "num", "cnt", "txt", "flg")) for r in lists if r["kind"] == "R"],
            _values(first, ("n", "last", "owed")),
        ],
    ]


def _text(value) -> str | None:
    return None if value is None else str(value)


def _values(row, keys: tuple[str, ...] | None = None) -> list | None:
    if row is None:
        return None
    values = row.values() if keys is None else (row[key] for key in keys)
    return [str(v) if v is not None else None for v in values]


def _within(created, ctx, window: timedelta) -> bool:
    then = created if isinstance(created, datetime) else datetime.fromisoformat(str(created))
    now = ctx.now.replace(tzinfo=None)
    # Rows are dated to the second, and --workers processes may differ by a moment.
    return timedelta(seconds=-2) <= now - then.replace(tzinfo=None) <= window


def store(response: Response) -> str:
    return json.dumps(
        {
            "code": response.code,
            "fixed": list(response.fixed_values),
            "fields": [list(f) for f in response.fields],
        }
    )


def restore(text: str) -> Response:
    data = json.loads(text)
    response = Response(data["code"]).fixed(*data["fixed"])
    for fid, value in data["fields"]:
        response.add(fid, value)
    return response
