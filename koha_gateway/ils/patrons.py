"""Patrons: lookup, blocks and privileges, the SIP2 patron status, counts, lists and fines.

Koha's ``C4::SIP::ILS::Patron`` over the Koha-shaped schema (koha-sip-and-ldap.md section 5.1):

* lookup by cardnumber **or** userid (``Koha::Patrons->find_by_identifier``);
* restrictions (``borrower_debarments`` rows and ``borrowers.debarred``), expiry, fines against
  the ``noissuescharge`` limit, lost card / gone-no-address flags;
* the 14-character patron status of 24 and 64 and the screen message parts;
* the counts and item lists of 64 (waiting holds, overdues, loans, fine lines, unavailable
  holds);
* the SIP restriction that 01 Block Patron stores and 25 Patron Enable lifts.

Money is read as stored (``amountoutstanding`` is positive for debts, negative for unapplied
credits) and rounded to cents.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from koha_gateway.db import koha
from koha_gateway.ils import db_text, perl_true, reference, round_money
from koha_gateway.ils.sysprefs import format_date

__all__ = [
    "DEFAULT_FEE_LIMIT",
    "SIP_RESTRICTION",
    "PatronState",
    "add_sip_restriction",
    "active_debarments",
    "current_loans",
    "fee_limit",
    "find_patron",
    "fine_lines",
    "is_overdue",
    "lift_sip_restrictions",
    "outstanding",
    "overdue_loans",
    "patron_attributes",
    "patron_holds",
    "patron_number",
    "patron_state",
    "update_lastseen",
    "unavailable_holds",
    "update_debarment_flags",
    "waiting_holds",
]

DEFAULT_FEE_LIMIT = 5.0
#: The restriction type 01 Block Patron stores (Koha's ``restriction_types.code``).
SIP_RESTRICTION = "MANUAL"
FOREVER = "9999-12-31"

_CATEGORY_COLUMNS = (
    "description AS category_description, enrolmentperiod AS category_enrolmentperiod, "
    "category_type"
)


def find_patron(txn, identifier: str | None, *, lock: bool = False) -> dict | None:
    """The ``borrowers`` row of the patron whose cardnumber or userid is ``identifier``.

    Koha's ``find_by_identifier``: the cardnumber is tried first, then the userid. Koha runs on
    MySQL, whose default collation compares case-insensitively, so when no exact match exists a
    case-insensitive match is accepted if it is unique. The row is completed with the patron
    category's columns (``category_description``, ``category_noissuescharge``,
    ``category_type``, ``category_enrolmentperiod``). ``lock=True`` locks the borrower row for
    the rest of the transaction (``SELECT ... FOR UPDATE`` on PostgreSQL).

    Leading and trailing whitespace is ignored; an empty identifier finds nobody.
    """
    if identifier is None:
        return None
    ident = identifier.strip()
    if not ident or "\x00" in ident:
        return None
    row = _borrower(txn, ident, "*", txn.for_update if lock else "")
    if row is None:
        return None
    # categories.noissuescharge exists from Koha 24.05 on: read only where start-up found it.
    snapshot = reference.cached(txn)
    if snapshot is not None:
        category = snapshot.category(row["categorycode"])
    else:
        charge = "noissuescharge" if koha.schema_of(txn).has_category_noissuescharge else "NULL"
        category = txn.one(
            f"SELECT {_CATEGORY_COLUMNS}, {charge} AS category_noissuescharge "
            "FROM categories WHERE categorycode = ?",
            (row["categorycode"],),
        )
    patron = dict(row)
    patron.update(
        category
        or {
            "category_description": None,
            "category_enrolmentperiod": None,
            "category_noissuescharge": None,
            "category_type": None,
        }
    )
    return patron


def _borrower(txn, ident: str, columns: str, suffix: str) -> dict | None:
    """``columns`` of the borrower ``ident`` names (:func:`find_patron`'s rules)."""
    for column in ("cardnumber", "userid"):
        row = txn.one(f"SELECT {columns} FROM borrowers WHERE {column} = ?{suffix}", (ident,))
        if row is not None:
            return row
    # Only identifiers with letters can differ by case (most cardnumbers are digits only).
    if ident.lower() != ident.upper():
        for column in ("cardnumber", "userid"):
            rows = txn.query(
                f"SELECT borrowernumber FROM borrowers WHERE UPPER({column}) = UPPER(?)", (ident,)
            )
            if len(rows) == 1:
                if columns == "borrowernumber" and not suffix:
                    return rows[0]
                return txn.one(
                    f"SELECT {columns} FROM borrowers WHERE borrowernumber = ?{suffix}",
                    (rows[0]["borrowernumber"],),
                )
    return None


def patron_number(txn, identifier: str | None) -> int | None:
    """The ``borrowernumber`` of the patron :func:`find_patron` finds for ``identifier``
    (without reading the rest of the row or the category)."""
    if identifier is None:
        return None
    ident = identifier.strip()
    if not ident or "\x00" in ident:
        return None
    row = _borrower(txn, ident, "borrowernumber", "")
    return None if row is None else int(row["borrowernumber"])


def patron_by_number(txn, borrowernumber: int) -> dict | None:
    """The patron with this ``borrowernumber`` (same shape as :func:`find_patron`)."""
    row = txn.one(
        "SELECT cardnumber, userid FROM borrowers WHERE borrowernumber = ?", (borrowernumber,)
    )
    if row is None:
        return None
    return find_patron(txn, row["cardnumber"] or row["userid"])


# --- money -------------------------------------------------------------------------------


def outstanding(txn, borrowernumber: int) -> float:
    """The patron's balance: outstanding debits minus unapplied credits (Koha's ``balance``)."""
    total = txn.scalar(
        "SELECT SUM(amountoutstanding) FROM accountlines WHERE borrowernumber = ?",
        (borrowernumber,),
    )
    return round_money(total or 0)


def fine_lines(txn, borrowernumber: int) -> list[dict]:
    """The patron's debit lines that still have something outstanding, oldest first.

    These are the "fine items" of 64 (count and AV list).
    """
    return txn.query(
        "SELECT accountlines_id, itemnumber, date, amount, amountoutstanding, description, "
        "debit_type_code FROM accountlines WHERE borrowernumber = ? AND amountoutstanding > 0 "
        "ORDER BY date, accountlines_id",
        (borrowernumber,),
    )


def fee_limit(patron: dict, sysprefs) -> float | None:
    """The fine limit that blocks circulation, or ``None`` when there is none.

    The patron category's ``noissuescharge`` when it is set and positive, else the
    ``noissuescharge`` system preference when positive (Koha's ``is_patron_inside_charge_limits``).
    """
    category_limit = patron.get("category_noissuescharge")
    if category_limit is not None and float(category_limit) > 0:
        return round_money(category_limit)
    limit = sysprefs.number("noissuescharge", 0.0) if sysprefs is not None else 0.0
    return round_money(limit) if limit > 0 else None


# --- restrictions -----------------------------------------------------------------------


def active_debarments(txn, borrowernumber: int, today: str) -> list[dict]:
    """The patron's restrictions in force on ``today`` (no expiration, or expiring later)."""
    return txn.query(
        "SELECT borrower_debarment_id, expiration, type, comment, created FROM borrower_debarments "
        "WHERE borrowernumber = ? AND (expiration IS NULL OR expiration > ?) "
        "ORDER BY borrower_debarment_id",
        (borrowernumber, today),
    )


def update_debarment_flags(txn, borrowernumber: int, today: str) -> None:
    """Recompute ``borrowers.debarred`` / ``debarredcomment`` from ``borrower_debarments``.

    As Koha's ``UpdateBorrowerDebarmentFlags``, over the restrictions in force on ``today``
    (no expiration, or a later one): the latest expiration, or 9999-12-31 when one has none,
    and their comments, one per line; both NULL when none is in force
    (:func:`koha_gateway.ils.suspensions.debarment_flags`).
    """
    from koha_gateway.ils.suspensions import debarment_flags

    rows = txn.query(
        "SELECT expiration, comment FROM borrower_debarments WHERE borrowernumber = ? "
        "ORDER BY borrower_debarment_id",
        (borrowernumber,),
    )
    until, comments = debarment_flags(rows, today)
    txn.execute_later(
        "UPDATE borrowers SET debarred = ?, debarredcomment = ? WHERE borrowernumber = ?",
        (until, comments, borrowernumber),
    )


def add_sip_restriction(txn, ctx, borrowernumber: int, comment: str | None) -> int:
    """Store the restriction of a SIP2 Block Patron (01) as a librarian's block would be
    stored (Koha's ``AddDebarment``): type ``MANUAL`` (one of Koha's own restriction types),
    no expiration, the blocked-card message (AL) as comment, ``manager_id`` the staff patron
    of the session; then ``borrowers.debarred`` / ``debarredcomment`` are recomputed.
    Returns the new ``borrower_debarment_id``."""
    text = (db_text(comment) or "").strip() or "Blocked by self-check"
    new_id = txn.insert(
        "INSERT INTO borrower_debarments (borrowernumber, expiration, type, comment, "
        "manager_id, created, updated) VALUES (?, NULL, ?, ?, ?, ?, ?)",
        (borrowernumber, SIP_RESTRICTION, text, ctx.staff_borrowernumber, ctx.now_sql, None),
        pk="borrower_debarment_id",
    )
    update_debarment_flags(txn, borrowernumber, ctx.today)
    return new_id


def lift_sip_restrictions(txn, ctx, borrowernumber: int) -> int:
    """Remove the restrictions 01 stored through this SIP login: ``MANUAL``, no expiration,
    made by the session's staff patron. Other restrictions (a librarian's, a suspension)
    stay. Returns how many were removed. This is what SIP2 Patron Enable (25) does here."""
    if ctx.staff_borrowernumber is None:
        where = "manager_id IS NULL"
        params: tuple = (borrowernumber, SIP_RESTRICTION)
    else:
        where = "manager_id = ?"
        params = (borrowernumber, SIP_RESTRICTION, ctx.staff_borrowernumber)
    condition = f"borrowernumber = ? AND type = ? AND expiration IS NULL AND {where}"
    count = txn.scalar(f"SELECT COUNT(*) FROM borrower_debarments WHERE {condition}", params)
    if count:
        txn.execute_later(f"DELETE FROM borrower_debarments WHERE {condition}", params)
        update_debarment_flags(txn, borrowernumber, ctx.today)
    return int(count or 0)


# --- loans and holds --------------------------------------------------------------------


_LOAN_KEYS = (
    "issue_id",
    "itemnumber",
    "date_due",
    "issuedate",
    "branchcode",
    "renewals_count",
    "unseen_renewals",
    "onsite_checkout",
    "barcode",
    "biblionumber",
    "itype",
    "itemlost",
    "homebranch",
    "holdingbranch",
    "title",
    "author",
)
_LOANS = (
    "SELECT i.issue_id, i.itemnumber, i.date_due, i.issuedate, i.branchcode, "
    "i.renewals_count, i.unseen_renewals, i.onsite_checkout, it.barcode, it.biblionumber, "
    "it.itype, it.itemlost, it.homebranch, it.holdingbranch, b.title, b.author "
    "FROM issues i JOIN items it ON it.itemnumber = i.itemnumber "
    "JOIN biblio b ON b.biblionumber = it.biblionumber WHERE i.borrowernumber = ?"
)


def current_loans(txn, borrowernumber: int) -> list[dict]:
    """The patron's checkouts, oldest first: the ``issues`` row plus ``barcode``, ``title``,
    ``author``, ``biblionumber``, ``itype``, ``itemlost`` and ``homebranch`` of the item."""
    return txn.query(f"{_LOANS} ORDER BY i.issuedate, i.issue_id", (borrowernumber,))


def overdue_loans(txn, borrowernumber: int, now_sql: str) -> list[dict]:
    """The patron's checkouts whose due date is before ``now_sql`` (``YYYY-MM-DD HH:MM:SS``)."""
    return [loan for loan in current_loans(txn, borrowernumber) if is_overdue(loan, now_sql)]


def is_overdue(loan: dict, now_sql: str) -> bool:
    """Whether a loan (an ``issues`` row) is past its due date at ``now_sql``."""
    due = str(loan["date_due"])
    if len(due) == 10:
        due += " 23:59:00"
    return due < now_sql


_HOLD_COLUMNS = (
    "r.reserve_id, r.biblionumber, r.itemnumber, r.branchcode, r.reservedate, r.priority, "
    "r.found, r.waitingdate, r.expirationdate, r.item_level_hold, r.suspend, b.title, "
    "it.barcode AS item_barcode"
)


def waiting_holds(txn, borrowernumber: int) -> list[dict]:
    """The patron's holds waiting on the hold shelf (``found = 'W'``), with the item barcode."""
    rows = txn.query(
        f"SELECT {_HOLD_COLUMNS} FROM reserves r JOIN biblio b ON b.biblionumber = r.biblionumber "
        "LEFT JOIN items it ON it.itemnumber = r.itemnumber "
        "WHERE r.borrowernumber = ? AND r.found = 'W' ORDER BY r.waitingdate, r.reserve_id",
        (borrowernumber,),
    )
    for row in rows:
        row["barcode"] = row["item_barcode"]
    return rows


def unavailable_holds(txn, borrowernumber: int) -> list[dict]:
    """The patron's holds that are not waiting yet (pending, in transit, in processing).

    ``barcode`` is the held item's barcode, or for a title-level hold the barcode of the
    title's first item (as Koha's SIP server reports it).
    """
    rows = txn.query(
        f"SELECT {_HOLD_COLUMNS} FROM reserves r JOIN biblio b ON b.biblionumber = r.biblionumber "
        "LEFT JOIN items it ON it.itemnumber = r.itemnumber "
        "WHERE r.borrowernumber = ? AND (r.found IS NULL OR r.found <> 'W') "
        "ORDER BY r.reservedate, r.reserve_id",
        (borrowernumber,),
    )
    for row in rows:
        barcode = row["item_barcode"]
        if barcode is None:
            barcode = txn.scalar(
                "SELECT barcode FROM items WHERE biblionumber = ? AND barcode IS NOT NULL "
                "ORDER BY itemnumber LIMIT 1",
                (row["biblionumber"],),
            )
        row["barcode"] = barcode
    return rows


def patron_holds(txn, borrowernumber: int) -> tuple[list[dict], list[dict]]:
    """``(waiting_holds(...), unavailable_holds(...))`` in one statement: the same rows in the
    same order (the engine's order of NULL dates included)."""
    rows = txn.query(
        f"SELECT {_HOLD_COLUMNS}, (SELECT t.barcode FROM items t "
        "WHERE t.biblionumber = r.biblionumber AND t.barcode IS NOT NULL "
        "ORDER BY t.itemnumber LIMIT 1) AS title_barcode "
        "FROM reserves r JOIN biblio b ON b.biblionumber = r.biblionumber "
        "LEFT JOIN items it ON it.itemnumber = r.itemnumber WHERE r.borrowernumber = ?",
        (borrowernumber,),
    )
    nulls_last = txn.engine.name == "postgresql"

    def by(column):
        def key(row):
            value = row[column]
            return (
                (value is None) == nulls_last,
                "" if value is None else str(value),
                row["reserve_id"],
            )

        return key

    waiting = sorted((row for row in rows if row["found"] == "W"), key=by("waitingdate"))
    unavailable = sorted((row for row in rows if row["found"] != "W"), key=by("reservedate"))
    for row in waiting:
        row["barcode"] = row["item_barcode"]
    for row in unavailable:
        barcode = row["item_barcode"]
        row["barcode"] = row["title_barcode"] if barcode is None else barcode
    for row in rows:
        del row["title_barcode"]
    return waiting, unavailable


def patron_attributes(txn, borrowernumber: int, code: str) -> list[str]:
    """The values of the patron's extended attribute ``code``, in stored order."""
    rows = txn.query(
        "SELECT attribute FROM borrower_attributes WHERE borrowernumber = ? AND code = ? "
        "ORDER BY id",
        (borrowernumber, code),
    )
    return [row["attribute"] for row in rows if row["attribute"] is not None]


def update_lastseen(txn, ctx, patron: dict, activity: str) -> bool:
    """``borrowers.lastseen`` = now, as Koha records patron activity. Returns whether it wrote.

    Koha 23.11 and later (TrackLastPatronActivityTriggers, a comma list of ``connection``,
    ``check_out``, ``check_in``, ``renewal``, ``hold``, ``login``...): once a day per patron,
    for the listed activities (``Koha::Patron->update_lastseen``). Koha 23.05 and earlier
    (TrackLastPatronActivity, used when the newer preference does not exist): every SIP
    patron information request (``track_login``) and the first checkout of the day
    (``track_login_daily``). ``activity`` ``patron_status`` is a 23 Patron Status request.
    """
    today = ctx.today
    seen = str(patron.get("lastseen") or "")[:10]
    triggers = ctx.pref("TrackLastPatronActivityTriggers")
    if triggers is not None:
        names = {part.strip().lower() for part in triggers.replace("|", ",").split(",")}
        # 23 Patron Status counts as a connection from Koha 24.11 (bug 38284) only.
        trigger = "connection" if activity == "patron_status" else activity
        if trigger not in names or seen == today:
            return False
    elif ctx.flag("TrackLastPatronActivity"):
        if activity == "check_out":
            if seen == today:
                return False
        elif activity != "connection":
            return False
    else:
        return False
    txn.execute_later(
        "UPDATE borrowers SET lastseen = ? WHERE borrowernumber = ?",
        (ctx.now_sql, patron["borrowernumber"]),
    )
    patron["lastseen"] = ctx.now_sql
    return True


# --- the patron's standing --------------------------------------------------------------


@dataclass(frozen=True)
class PatronState:
    """Everything SIP2 says about a patron's standing at one instant (section 5.1).

    The ``*_ok`` privileges are True when the privilege is granted; ``status_string`` is the
    14-character patron status of 24 and 64, where ``Y`` means "denied / condition true".
    """

    debarred: bool
    debarred_comment: str
    expired: bool
    expires_soon: bool
    dateexpiry: str | None
    fines: float
    fee_limit: float
    fine_blocked: bool
    overdue_count: int
    overdues_block: bool
    card_lost: bool
    gone_no_address: bool
    too_many_overdue: bool
    too_many_lost: bool
    charge_ok: bool
    renew_ok: bool
    recall_ok: bool
    hold_ok: bool
    inet_ok: bool
    status_string: str
    screen_message: str
    messages: tuple[str, ...] = field(default=())
    #: The patron's loans as :func:`current_loans` gives them, read with the rest (``None``
    #: when the state was built without them).
    loans: tuple[dict, ...] | None = field(default=None, compare=False, repr=False)


def patron_state(txn, patron: dict, ctx: Any) -> PatronState:
    """Judge ``patron`` (a :func:`find_patron` row) at ``ctx.now`` with the account options of
    ``ctx`` (a :class:`~koha_gateway.ils.context.CircContext`).

    3M SIP2 2.00 patron status (fixed field of 24 and 64) with Koha's rules:

    * charge = not restricted, not expired, not fine-blocked, and not blocked by overdues when
      OverduesBlockCirc is not ``noblock``;
    * renew = hold = recall = not restricted, not expired, not fine-blocked;
    * a lost card or "gone, no address" turns every privilege (and internet access) off;
    * internet access (64 PI) = not restricted (unless the account sets
      ``patron_restriction_blocks_inet="0"``), not expired, not fine-blocked.
    """
    sysprefs = ctx.sysprefs
    account = ctx.options
    today = ctx.today  # formatted once per context
    now_sql = ctx.now_sql
    number = patron["borrowernumber"]

    # The balance, the restrictions in force and the loans (current_loans), in one statement:
    # one row per restriction and loan (at least one row, the balance's).
    standing = txn.query(
        "SELECT s.balance, d.borrower_debarment_id, d.expiration, d.type, d.comment, d.created, "
        "l.* FROM (SELECT SUM(amountoutstanding) AS balance FROM accountlines "
        "WHERE borrowernumber = ?) s LEFT JOIN borrower_debarments d ON d.borrowernumber = ? "
        f"AND (d.expiration IS NULL OR d.expiration > ?) LEFT JOIN ({_LOANS}) l ON 1 = 1 "
        "ORDER BY d.borrower_debarment_id, l.issuedate, l.issue_id",
        (number, number, today, number),
    )
    debarments: list = []
    loans: list[dict] = []
    seen_debarments: set = set()
    seen_loans: set = set()
    for row in standing:
        debarment_id, issue_id = row["borrower_debarment_id"], row["issue_id"]
        if debarment_id is not None and debarment_id not in seen_debarments:
            seen_debarments.add(debarment_id)
            debarments.append(row)
        if issue_id is not None and issue_id not in seen_loans:
            seen_loans.add(issue_id)
            loans.append({key: row[key] for key in _LOAN_KEYS})
    flag_until = str(patron.get("debarred") or "")[:10]
    debarred = bool(debarments) or bool(
        flag_until and (flag_until.startswith("9999") or flag_until > today)
    )
    if debarments:
        comments = [row["comment"] for row in debarments if row["comment"]]
    else:
        comments = [patron["debarredcomment"]] if patron.get("debarredcomment") else []
    debarred_comment = " -- ".join(
        " ".join(str(text).split()) for text in comments if str(text).strip()
    )

    dateexpiry = str(patron["dateexpiry"])[:10] if patron.get("dateexpiry") else None
    expired = bool(dateexpiry) and not dateexpiry.startswith("9999") and dateexpiry < today
    expires_soon = False
    notify_days = int(sysprefs.number("NotifyBorrowerDeparture", 0)) if sysprefs else 0
    if dateexpiry and not expired and notify_days > 0 and not dateexpiry.startswith("9999"):
        warn_from = date.fromisoformat(dateexpiry) - timedelta(days=notify_days)
        expires_soon = warn_from.isoformat() < today

    fines = round_money(standing[0]["balance"] or 0)  # outstanding(), read above
    limit = fee_limit(patron, sysprefs)
    fine_blocked = limit is not None and fines > limit

    overdue_count = sum(1 for loan in loans if is_overdue(loan, now_sql))
    overdues_setting = (sysprefs.get("OverduesBlockCirc") or "noblock") if sysprefs else "noblock"
    overdues_block = overdue_count > 0 and overdues_setting != "noblock"

    card_lost = perl_true(patron.get("lost"))
    gone_no_address = perl_true(patron.get("gonenoaddress"))
    no_issues = card_lost or gone_no_address

    basic_ok = not (debarred or expired or fine_blocked or no_issues)
    charge_ok = basic_ok and not overdues_block
    renew_ok = hold_ok = recall_ok = basic_ok

    restriction_counts = account.patron_restriction_blocks_inet
    inet_ok = not ((debarred and restriction_counts) or expired or fine_blocked or no_issues)

    too_many_overdue = account.overdues_block_checkout and overdues_block
    too_many_lost = _too_many_lost(account, loans)

    status = [" "] * 14
    status[0] = " " if charge_ok else "Y"
    status[1] = " " if renew_ok else "Y"
    status[2] = " " if recall_ok else "Y"
    status[3] = " " if hold_ok else "Y"
    status[4] = "Y" if no_issues else " "
    status[6] = "Y" if too_many_overdue else " "
    status[9] = "Y" if too_many_lost else " "
    status[10] = "Y" if fine_blocked else " "
    status[11] = "Y" if fine_blocked else " "

    dateformat = (sysprefs.get("dateformat") if sysprefs else None) or "iso"
    messages: list[str] = []
    if expired:
        messages.append(f"Your account has expired as of {format_date(dateexpiry, dateformat)}")
    elif expires_soon:
        messages.append(f"Your card will expire on {format_date(dateexpiry, dateformat)}")
    if fine_blocked:
        messages.append("Patron blocked by fines")
    if debarred and debarred_comment:
        messages.append(debarred_comment)
    if overdue_count:
        messages.append("Patron has overdues")
    if gone_no_address:
        messages.append("Borrower has no valid address.")
    if card_lost:
        messages.append("Borrower's card reported lost.")
    screen = ("Greetings from Koha. " + (patron.get("opacnote") or "")).rstrip()
    for text in messages:
        screen += " -- " + text

    return PatronState(
        debarred=debarred,
        debarred_comment=debarred_comment,
        expired=expired,
        expires_soon=expires_soon,
        dateexpiry=dateexpiry,
        fines=fines,
        fee_limit=limit if limit is not None else DEFAULT_FEE_LIMIT,
        fine_blocked=fine_blocked,
        overdue_count=overdue_count,
        overdues_block=overdues_block,
        card_lost=no_issues,
        gone_no_address=gone_no_address,
        too_many_overdue=too_many_overdue,
        too_many_lost=too_many_lost,
        charge_ok=charge_ok,
        renew_ok=renew_ok,
        recall_ok=recall_ok,
        hold_ok=hold_ok,
        inet_ok=inet_ok,
        status_string="".join(status),
        screen_message=screen,
        messages=tuple(messages),
        loans=tuple(loans),
    )


def _too_many_lost(account: Any, loans: list[dict]) -> bool:
    """Position 9 of the patron status: ``lost_block_checkout`` / ``lost_block_checkout_value``."""
    threshold = account.lost_block_checkout
    if threshold <= 0:
        return False
    minimum = account.lost_block_checkout_value
    lost = sum(1 for loan in loans if int(loan.get("itemlost") or 0) >= minimum)
    return lost >= threshold
