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
the row is written in the transaction that applied the request. Two copies of one request that
race each other (the resend arrives while the first is still running) both try to write the
terminal's row: the unique key, or the row's changed ``serial``, makes the loser fail with
:class:`JournalRace`, and the caller runs the loser again, which then finds the winner's
answer. Each write checks the row's ``serial`` that it read, so a row written meanwhile by a
committed transaction also counts as a race (PostgreSQL's READ COMMITTED would otherwise let
the loser overwrite it).
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
    else by ``apply(txn, ctx, msg)``, journalling the answer."""
    if msg.code not in MUTATING:
        return apply(txn, ctx, msg)
    account, peer = ctx.account.id, ctx.peer or "-"
    key = digest(raw)
    # Locked: the requests of one terminal (kiosks sharing an account behind one address
    # included) queue here instead of racing.
    previous = txn.one(
        "SELECT serial, digest, fingerprint, response, created FROM kgw_request_journal "
        f"WHERE account = ? AND peer = ?{txn.for_update}",
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
    record(
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


def record(txn, account: str, peer: str, serial: int | None, **row) -> None:
    """Make this the terminal's last request, replacing the row read with ``serial`` (None:
    there was none); JournalRace when another transaction wrote the terminal's row since."""
    values = (row["key"], row["state"], row["response"], row["created"])
    if serial is None:
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
    """A digest of the circulation state of the item (AB) and patron (AA) ``msg`` touches."""
    state: list[Any] = []
    barcode = msg.get("AB")
    if barcode:
        input_filter = ctx.sysprefs.get("itemBarcodeInputFilter") if ctx.sysprefs else None
        item = ils_items.find_item(txn, barcode, input_filter=input_filter)
        state.append(_item_state(txn, item["itemnumber"]) if item else None)
    patron_id = msg.get("AA")
    if patron_id:
        patron = ils_patrons.find_patron(txn, patron_id)
        state.append(_patron_state(txn, patron["borrowernumber"]) if patron else None)
    return hashlib.sha256(json.dumps(state, default=str).encode()).hexdigest()


def _item_state(txn, itemnumber: int) -> list:
    item = txn.one(f"SELECT {_ITEM_COLUMNS} FROM items WHERE itemnumber = ?", (itemnumber,))
    loan = txn.one(
        "SELECT issue_id, borrowernumber, date_due, renewals_count FROM issues "
        "WHERE itemnumber = ?",
        (itemnumber,),
    )
    holds = txn.query(
        "SELECT reserve_id, borrowernumber, itemnumber, priority, found, suspend FROM reserves "
        "WHERE biblionumber = ? ORDER BY reserve_id",
        (item["biblionumber"],),
    )
    return [_values(item), _values(loan), [_values(h) for h in holds]]


def _patron_state(txn, borrowernumber: int) -> list:
    patron = txn.one(
        f"SELECT {_PATRON_COLUMNS} FROM borrowers WHERE borrowernumber = ?", (borrowernumber,)
    )
    restrictions = txn.query(
        "SELECT borrower_debarment_id, type, expiration FROM borrower_debarments "
        "WHERE borrowernumber = ? ORDER BY borrower_debarment_id",
        (borrowernumber,),
    )
    loans = txn.query(
        "SELECT issue_id, itemnumber, date_due, renewals_count FROM issues "
        "WHERE borrowernumber = ? ORDER BY issue_id",
        (borrowernumber,),
    )
    holds = txn.query(
        "SELECT reserve_id, itemnumber, priority, found, suspend FROM reserves "
        "WHERE borrowernumber = ? ORDER BY reserve_id",
        (borrowernumber,),
    )
    account = txn.one(
        "SELECT COUNT(*) AS n, MAX(accountlines_id) AS last, SUM(amountoutstanding) AS owed "
        "FROM accountlines WHERE borrowernumber = ?",
        (borrowernumber,),
    )
    return [
        _values(patron),
        [_values(r) for r in restrictions],
        [_values(r) for r in loans],
        [_values(r) for r in holds],
        _values(account),
    ]


def _values(row) -> list | None:
    return None if row is None else [str(v) if v is not None else None for v in row.values()]


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
