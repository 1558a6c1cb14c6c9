"""The request journal: a resent request is answered once, a new one is always applied.

A self-check that timed out waiting for an answer sends the same request again, often on a new
connection. If the first copy was applied (the answer was lost, or arrived late), applying the
copy would make a second loan or a second payment. A request therefore counts as a **resend**
only when all of these hold:

* it is byte for byte a request the same **terminal** (SIP account and peer address) sent
  among the requests that change the database (with error detection on, the bytes include
  the AY sequence number and the AZ checksum);
* it arrives within the **retry window** of the institution's policy (``timeout`` seconds times
  ``retries``; a zero or missing value counts as Koha's default, 100 and 5) after it;
* nothing has changed the item or the patron it touches since: the journal keeps, with the
  answer, a fingerprint of their circulation state (the item's status, loan and holds; the
  patron's restrictions, loans, holds and account), and a candidate resend is compared against
  the state of now. A change made by anyone (another terminal, another kiosk of the same
  terminal, Koha's staff interface) makes it a new request.

Anything else is applied as a new request. The journal keeps one row per request of a
terminal in ``kgw_request_journal``, keyed by (account, peer, digest of the bytes), so that it
works across connections, ``--workers`` processes and restarts, and so that a resend is
recognised even when other requests of the terminal came in between: the kiosks of a branch
that share one SIP account behind one address (a common set-up) are one terminal, and kiosk
A's resend after kiosk B's request is still A's request. The row is written in the
transaction that applied the request.

Concurrency. The row is read without a lock and written at the end, so it stays locked only
from that write to the commit, and kiosks of one terminal, whose requests have rows of their
own, do not queue behind each other. A new request inserts its row (``INSERT ... ON CONFLICT
DO NOTHING``, ``INSERT IGNORE`` on MariaDB); one whose row exists (same bytes, but the item or
patron changed since) updates it where its ``serial`` is still the one read. A write that
finds the row written since it was read (the insert waits for the writer's commit and then
inserts nothing; the update re-reads the committed row and matches nothing: PostgreSQL's READ
COMMITTED, InnoDB's locking read) has met a copy of this very request, since only a copy has
the same key (or, for an update, a row another kiosk deleted as expired, below): this
transaction then fails with :class:`JournalRace` and the caller runs it again, when it finds
the winner's answer. Requests of other kiosks have other keys and never make a race. The
outcome is the one of running the terminal's requests one after the other.

Expiry. With each write, the terminal's rows older than the retry window are deleted
(``DELETE ... WHERE account = ? AND peer = ? AND created < ?``, the (account, peer, created)
index), so that the table stays as small as the requests of one window; the hourly
:func:`purge` forgets the rows of terminals that stopped writing. A row of the request's own
digest that is out of the window counts as no row: the DELETE removes it and the request
inserts its row anew. The DELETE is a deferred write (``txn.execute_later``): it travels in
the round trip of the journal write itself, just before it, and costs no round trip. Two
kiosks of a terminal writing at once may both delete the same expired rows; they neither
deadlock nor wait for long:

* the DELETE of a transaction is its last statement but one (the journal write follows in the
  same round trip, then the ``COMMIT``): while it waits for a row that another transaction
  deleted (PostgreSQL and InnoDB lock the rows a DELETE removes; at READ COMMITTED a row
  deleted by a transaction that then commits is skipped, InnoDB takes no gap locks), that other
  transaction is itself in its last statements, and never waits for locks of this DELETE:
  both walk the terminal's expired rows in the order of the (account, peer, created) index,
  so the first to lock the oldest row goes through, and the other waits only until it
  commits, one round trip later;
* a transaction's journal write (the insert of a new key, the update of a row that is within
  its window) never touches a row another transaction's DELETE wants, but for a row at the
  edge of the window that another kiosk, whose clock reads a second later, finds expired:
  that DELETE waits for the write's commit and then skips the row, which is no longer
  expired; the write came after its own DELETE, so it waits for nobody. A row updated or
  deleted meanwhile makes the update match nothing: :class:`JournalRace`, and the request is
  run again.

Should the two DELETEs walk the rows in different orders anyway (two different plans), the
deadlock is reported on the journal write's round trip, before the ``COMMIT``, as a
:class:`~koha_gateway.db.engine.SerializationFailure`: nothing was written, and the request
is run again (``Gateway.apply``), never answered with an unknown outcome.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from operator import itemgetter
from typing import Any

from koha_gateway.ils import items as ils_items
from koha_gateway.ils import patrons as ils_patrons
from koha_gateway.ils import sql_datetime
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
    """Another transaction (a copy of the request) wrote its journal row first: run the
    request again."""


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

    The terminal's row of these bytes is read without a lock, and written (locked) only at the
    end, with the deletion of the terminal's expired rows; a copy of this request that wrote
    the row meanwhile makes this one a :class:`JournalRace` (run again, it is then answered
    from the journal)."""
    if msg.code not in MUTATING:
        return apply(txn, ctx, msg)
    account, peer = ctx.account.id, ctx.peer or "-"
    key = digest(raw)
    window = retry_window(ctx.institution.policy)
    expired_before = sql_datetime(ctx.now - window)
    previous = txn.one(
        "SELECT serial, fingerprint, response, created FROM kgw_request_journal "
        "WHERE account = ? AND peer = ? AND digest = ?",
        (account, peer, key),
    )
    if previous is not None and _sql_time(previous["created"]) < expired_before:
        previous = None  # deleted with the terminal's other expired rows, written anew
    if (
        previous is not None
        and _within(previous["created"], ctx, window)
        and previous["fingerprint"] == fingerprint(txn, ctx, msg)
    ):
        ctx.log.append(f"resent {msg.code} answered from the request journal")
        return restore(previous["response"])
    locked = getattr(ctx, "locked_patrons", None)
    if locked:
        locked.clear()  # a transaction run again starts afresh
    response = apply(txn, ctx, msg)
    record(
        txn,
        account,
        peer,
        None if previous is None else int(previous["serial"]),
        key=key,
        state=fingerprint(txn, ctx, msg, locked=getattr(ctx, "locked_patrons", None)),
        response=store(response),
        created=ctx.now_sql,
        expired_before=expired_before,
    )
    return response


def record(
    txn,
    account: str,
    peer: str,
    serial: int | None,
    *,
    key: str,
    state: str,
    response: str,
    created: str,
    expired_before: str | None = None,
) -> None:
    """Journal the request of digest ``key``: insert its row (``serial`` None: there was
    none), or update the row read with ``serial``; :class:`JournalRace` when another
    transaction (a copy of this request) wrote that row since. ``expired_before``: delete the
    terminal's rows created before it first (a deferred write, in the same round trip)."""
    if expired_before is not None:
        # No ``--`` comment at the end: deferred writes are sent as one batch.
        txn.execute_later(
            "DELETE FROM kgw_request_journal WHERE account = ? AND peer = ? AND created < ?",
            (account, peer, expired_before),
        )
    if serial is None:
        # A row that exists is no error (it would spoil the transaction on PostgreSQL), so
        # the deferred writes travel with the insert.
        written = txn.upsert(
            "kgw_request_journal",
            {"account": account, "peer": peer, "digest": key},
            {},
            inserted={"serial": 1, "fingerprint": state, "response": response, "created": created},
        )
    else:
        # The serial check is re-evaluated on the latest committed row (PostgreSQL's READ
        # COMMITTED, InnoDB's locking read): a row written since the SELECT matches nothing.
        written = txn.execute(
            "UPDATE kgw_request_journal SET serial = ?, fingerprint = ?, response = ?, "
            "created = ? WHERE account = ? AND peer = ? AND digest = ? AND serial = ?",
            (serial + 1, state, response, created, account, peer, key, serial),
        )
    if written != 1:
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
    return hashlib.sha256(_STATE_ENCODER.encode(state).encode()).hexdigest()


#: ``json.dumps(state, default=str)``, the fingerprint's text since the journal's first rows
#: (rows written by an earlier version must still match), with the encoder made once.
_STATE_ENCODER = json.JSONEncoder(default=str)


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
_ITEM_KEYS = itemgetter(*(column.strip() for column in _ITEM_COLUMNS.split(",")))
_LOAN_KEYS = itemgetter("issue_id", "loan_borrowernumber", "date_due", "renewals_count")
_HOLD_KEYS = itemgetter(
    "reserve_id",
    "hold_borrowernumber",
    "hold_itemnumber",
    "priority",
    "found",
    "suspend",
)
# The lists of a patron's state: restrictions (D), loans (I), holds (R); their account.
_RESTRICTION_KEYS = itemgetter("id", "txt", "dt")
_LOAN_LIST_KEYS = itemgetter("id", "num", "dt", "cnt")
_HOLD_LIST_KEYS = itemgetter("id", "num", "cnt", "txt", "flg")
_ACCOUNT_KEYS = itemgetter("n", "last", "owed")
_TITLE_HOLD_KEYS = itemgetter("id", "bn", "num", "cnt", "txt", "flg")


def _item_state(txn, barcode: str) -> list | None:
    """The item's row, its loan and the holds of its title (``None``: no such item)."""
    rows = txn.query(_ITEM_STATE, (barcode,))
    if not rows:
        return None
    first = rows[0]
    loan = None if first["issue_id"] is None else _values(first, _LOAN_KEYS)
    holds = [_values(row, _HOLD_KEYS) for row in rows if row["reserve_id"] is not None]
    return [_values(first, _ITEM_KEYS), loan, holds]


_PATRON_KEYS = itemgetter(*(column.strip() for column in _PATRON_COLUMNS.split(",")))
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
        [_values(r, _RESTRICTION_KEYS) for r in lists if r["kind"] == "D"],
        [_values(r, _LOAN_LIST_KEYS) for r in lists if r["kind"] == "I"],
        [_values(r, _HOLD_LIST_KEYS) for r in lists if r["kind"] == "R"],
        _values(row, _ACCOUNT_KEYS),
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
        holds = [_values(r, _TITLE_HOLD_KEYS) for r in rows if r["kind"] == "H"]
        item = [_values(first, _ITEM_KEYS), loan, holds]
    patron = None if first["borrowernumber"] is None else _values(first, _PATRON_KEYS)
    lists = [r for r in rows if r["kind"] in ("R", "I", "D")]
    return [
        item,
        [
            patron,
            [_values(r, _RESTRICTION_KEYS) for r in lists if r["kind"] == "D"],
            [_values(r, _LOAN_LIST_KEYS) for r in lists if r["kind"] == "I"],
            [_values(r, _HOLD_LIST_KEYS) for r in lists if r["kind"] == "R"],
            _values(first, _ACCOUNT_KEYS),
        ],
    ]


def _values(row, keys: itemgetter | None = None) -> list | None:
    """The values of ``row`` (those ``keys`` picks, several), as text (``None`` kept)."""
    if row is None:
        return None
    values = row.values() if keys is None else keys(row)
    return [None if v is None else str(v) for v in values]


def _sql_time(value) -> str:
    """A ``created`` value as ``YYYY-MM-DD HH:MM:SS`` text (MariaDB may give a datetime)."""
    if isinstance(value, datetime):
        return sql_datetime(value)
    return str(value)[:19]


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
