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
    response = apply(txn, ctx, msg)
    _write(
        txn,
        account,
        peer,
        None if previous is None else int(previous["serial"]),
        key=key,
        state=fingerprint(txn, ctx, msg),
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


def fingerprint(txn, ctx, msg) -> str:
    """A digest of the circulation state of the item (AB) and patron (AA) ``msg`` touches.

    Four statements at most: the item with its loan and its title's holds (one join), the
    patron's number, the patron with the sums of their account, their restrictions, loans and
    holds (one ``UNION ALL``)."""
    state: list[Any] = []
    barcode = msg.get("AB")
    if barcode:
        input_filter = ctx.sysprefs.get("itemBarcodeInputFilter") if ctx.sysprefs else None
        code = ils_items.barcodedecode(barcode, input_filter)
        state.append(_item_state(txn, code) if code and "\x00" not in code else None)
    patron_id = msg.get("AA")
    if patron_id:
        number = ils_patrons.patron_number(txn, patron_id)
        state.append(_patron_state(txn, number) if number is not None else None)
    return hashlib.sha256(json.dumps(state, default=str).encode()).hexdigest()


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


_PATRON_ROW = (
    "SELECT "
    + ", ".join(f"b.{column.strip()}" for column in _PATRON_COLUMNS.split(","))
    + ", a.n, a.last, a.owed FROM (SELECT COUNT(*) AS n, MAX(accountlines_id) AS last, "
    "SUM(amountoutstanding) AS owed FROM accountlines WHERE borrowernumber = ?) a "
    "LEFT JOIN borrowers b ON b.borrowernumber = ?"
)
_PATRON_KEYS = tuple(column.strip() for column in _PATRON_COLUMNS.split(","))
# One list of the holds (R), loans (I) and restrictions (D), columns of one type each (the
# first branch names the numeric columns: PostgreSQL types a column by its first branches).
_PATRON_LISTS = (
    "SELECT 'R' AS kind, reserve_id AS id, itemnumber AS num, priority AS cnt, suspend AS flg, "
    "found AS txt, NULL AS dt FROM reserves WHERE borrowernumber = ? "
    "UNION ALL SELECT 'I', issue_id, itemnumber, renewals_count, NULL, NULL, date_due "
    "FROM issues WHERE borrowernumber = ? "
    "UNION ALL SELECT 'D', borrower_debarment_id, NULL, NULL, NULL, type, expiration "
    "FROM borrower_debarments WHERE borrowernumber = ? ORDER BY 1, 2"
)


def _patron_state(txn, borrowernumber: int) -> list:
    """The patron's row, restrictions, loans, holds and account (count, last line, balance)."""
    row = txn.one(_PATRON_ROW, (borrowernumber, borrowernumber))
    lists = txn.query(_PATRON_LISTS, (borrowernumber,) * 3)
    patron = None if row["borrowernumber"] is None else _values(row, _PATRON_KEYS)
    return [
        patron,
        [_values(r, ("id", "txt", "dt")) for r in lists if r["kind"] == "D"],
        [_values(r, ("id", "num", "dt", "cnt")) for r in lists if r["kind"] == "I"],
        [_values(r, ("id", "num", "cnt", "txt", "flg")) for r in lists if r["kind"] == "R"],
        _values(row, ("n", "last", "owed")),
    ]


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
