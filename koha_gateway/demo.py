"""The demo data set: two libraries, staff accounts, four patrons and twelve items.

It is what ``koha-gateway-admin load-demo`` and ``make run`` put into a fresh database, and
what the test suite runs against. It mirrors the walk-through of the Koha manual's SIP2 chapter
(the ``joe`` / ``joes`` account with cardnumber ``y76t5r43``) and gives one patron and one item
in each state a self-check machine has to handle:

======================  ==================================================================
``23529000000001``      Ada Lovelace, good standing (two loans, one 10 days overdue, one hold
                        waiting for her)
``23529000000002``      Grace Hopper, owes 12.00 (three fines), one loan of a KIL item, one
                        title-level hold
``23529000000003``      Alan Turing, card expired 30 days ago
``23529000000004``      Edsger Dijkstra, restricted (a MANUAL restriction)
``39999000000001-05``   available at WEL
``39999000000006``      on loan to Ada, due in 14 days
``39999000000007``      on loan to Ada, 10 days overdue
``39999000000008``      waiting on the hold shelf at WEL for Ada
``39999000000009``      home library KIL, on loan to Grace
``39999000000010``      lost
``39999000000011``      reference, not for loan
``39999000000012``      available at WEL, with a title-level hold by Grace (pickup WEL)
======================  ==================================================================

The patrons' password is ``1234``. Staff accounts (also ``<login>`` entries of the demo
SIPconfig.xml): ``joe`` / ``joes`` (WEL) and ``kilsc`` / ``kilsc1`` (KIL) with the circulate
permission, ``nocirc`` / ``nocirc1`` (WEL) without it.

Dates are relative to the ``now`` given to :func:`load`, so due dates and expiry stay
meaningful whenever the data is loaded.

The rows are what Koha itself would hold (and valid under Koha's foreign keys): every title has
its ``biblioitems`` row and ``datecreated``, every item its ``biblioitemnumber`` and
``dateaccessioned``, every charge its ``account_offsets`` row; the default circulation rules
have NULL (any) library, category and item type. On a Koha database (MariaDB) the same data goes
into Koha's own tables; ``categories.noissuescharge`` is only written where it exists (Koha
24.05 and later).
"""

from __future__ import annotations

import functools
from datetime import datetime, timedelta

from koha_gateway.auth.passwords import hash_password
from koha_gateway.db import koha
from koha_gateway.db.schema import CIRCULATE, RESTRICTION_TYPES
from koha_gateway.ils.rules import set_rule
from koha_gateway.ils.sysprefs import set_syspref

__all__ = [
    "BARCODES",
    "DEMO_PASSWORD",
    "PATRONS",
    "STAFF",
    "add_title",
    "add_title_with_item",
    "conflicts",
    "is_loaded",
    "load",
]

DEMO_PASSWORD = "1234"

BRANCHES = (
    (
        "WEL",
        "Wellington Central",
        "65 Victoria Street",
        "Wellington",
        "6011",
        "central@library.example.org",
        "04 801 4040",
    ),
    (
        "KIL",
        "Kilbirnie",
        "101 Kilbirnie Crescent",
        "Wellington",
        "6022",
        "kilbirnie@library.example.org",
        "04 387 1480",
    ),
)

# categorycode, description, enrolment period (months), noissuescharge, category_type
CATEGORIES = (
    ("PT", "Patron", 24, 5.00, "A"),
    ("S", "Staff", 24, 5.00, "S"),
)

# itemtype, description, notforloan, rentalcharge, sip_media_type (001 = book), sip_magnetic
ITEMTYPES = (
    ("BK", "Book", 0, 0.00, "001", 0),
    ("REF", "Reference", 1, 0.00, "001", 0),
)

#: The demo library's preferences where they differ from Koha's defaults (on the gateway's own
#: schema the migration already sets them; a fresh Koha database has Koha's defaults).
DEMO_SYSPREFS = {"dateformat": "iso", "finesMode": "production"}

# Default circulation rules (NULL: every library, category and item type).
RULES = (
    ("issuelength", "14"),
    ("renewalsallowed", "2"),
    ("renewalperiod", "14"),
    ("maxissueqty", "10"),
    ("fine", "0.25"),
    ("chargeperiod", "1"),
    ("reservesallowed", "50"),
)

# userid, password, cardnumber, firstname, surname, branch, flags
STAFF = (
    ("joe", "joes", "y76t5r43", "Joe", "Bloggs", "WEL", CIRCULATE),
    ("kilsc", "kilsc1", "23529000009001", "Kilbirnie", "Self-check", "KIL", CIRCULATE),
    ("nocirc", "nocirc1", "23529000009002", "No", "Circulation", "WEL", 0),
)

# cardnumber, userid, firstname, surname, dateofbirth, address, zipcode, email, phone
PATRONS = (
    (
        "23529000000001",
        "ada",
        "Ada",
        "Lovelace",
        "1815-12-10",
        "12 St James's Square",
        "6011",
        "ada.lovelace@example.org",
        "04 555 0101",
    ),
    (
        "23529000000002",
        "grace",
        "Grace",
        "Hopper",
        "1906-12-09",
        "34 Cobol Close",
        "6011",
        "grace.hopper@example.org",
        "04 555 0102",
    ),
    (
        "23529000000003",
        "alan",
        "Alan",
        "Turing",
        "1912-06-23",
        "2 Bletchley Road",
        "6021",
        "alan.turing@example.org",
        "04 555 0103",
    ),
    (
        "23529000000004",
        "edsger",
        "Edsger",
        "Dijkstra",
        "1930-05-11",
        "5 Shortest Path",
        "6021",
        "edsger.dijkstra@example.org",
        "04 555 0104",
    ),
)

# barcode suffix, title, author, call number, item type, home library
ITEMS = (
    (
        "01",
        "Structure and Interpretation of Computer Programs",
        "Abelson, Harold",
        "005.13 ABE",
        "BK",
        "WEL",
    ),
    (
        "02",
        "The Art of Computer Programming. Volume 1, Fundamental Algorithms",
        "Knuth, Donald E.",
        "005.1 KNU",
        "BK",
        "WEL",
    ),
    ("03", "The Mythical Man-Month", "Brooks, Frederick P.", "005.1 BRO", "BK", "WEL"),
    (
        "04",
        "Gödel, Escher, Bach: An Eternal Golden Braid",
        "Hofstadter, Douglas R.",
        "510.1 HOF",
        "BK",
        "WEL",
    ),
    ("05", "The C Programming Language", "Kernighan, Brian W.", "005.133 KER", "BK", "WEL"),
    ("06", "A Discipline of Programming", "Dijkstra, Edsger W.", "005.1 DIJ", "BK", "WEL"),
    ("07", "Hackers: Heroes of the Computer Revolution", "Levy, Steven", "004.09 LEV", "BK", "WEL"),
    ("08", "The Soul of a New Machine", "Kidder, Tracy", "621.39 KID", "BK", "WEL"),
    (
        "09",
        "Code: The Hidden Language of Computer Hardware and Software",
        "Petzold, Charles",
        "004 PET",
        "BK",
        "KIL",
    ),
    ("10", "Alan Turing: The Enigma", "Hodges, Andrew", "510.92 HOD", "BK", "WEL"),
    ("11", "A Dictionary of Computer Science", "Butterfield, Andrew", "R 004.03 DIC", "REF", "WEL"),
    ("12", "Dune", "Herbert, Frank", "FIC HER", "BK", "WEL"),
)

BARCODES = tuple("399990000000" + suffix for suffix, *_ in ITEMS)

# Grace's debts: days ago, debit type, status, amount, description (12.00 in all).
GRACE_FINES = (
    (45, "OVERDUE", None, 2.50, "Overdue fine: The Mythical Man-Month"),
    (30, "LOST", None, 8.00, "Lost item replaced: Cryptonomicon"),
    (10, "NEW_CARD", None, 1.50, "Replacement library card"),
)

RESTRICTION_COMMENT = "Restricted: please see the staff at the circulation desk"


@functools.lru_cache(maxsize=8)
def _hash(password: str) -> str:
    return hash_password(password)


def add_title(
    txn, *, title: str, author: str | None, itemtype: str | None, created: str
) -> tuple[int, int]:
    """A title as Koha's ``AddBiblio`` writes it: the ``biblio`` row with its ``datecreated``
    (``created``, ``YYYY-MM-DD``) and its ``biblioitems`` row. Returns ``(biblionumber,
    biblioitemnumber)``."""
    biblionumber = txn.insert(
        "INSERT INTO biblio (title, author, frameworkcode, datecreated) VALUES (?, ?, '', ?)",
        (title, author, created),
        pk="biblionumber",
    )
    biblioitemnumber = txn.insert(
        "INSERT INTO biblioitems (biblionumber, itemtype) VALUES (?, ?)",
        (biblionumber, itemtype),
        pk="biblioitemnumber",
    )
    return biblionumber, biblioitemnumber


def add_title_with_item(
    txn,
    *,
    title: str,
    barcode: str,
    branch: str,
    itemtype: str,
    accessioned: str,
    author: str | None = None,
    callnumber: str | None = None,
    location: str | None = None,
    notforloan: int = 0,
    price: float | None = None,
    seen: str | None = None,
) -> tuple[int, int]:
    """A title with one item, as Koha's ``AddBiblio`` and ``Koha::Item->store`` write them:
    the ``biblio`` (with ``datecreated``), its ``biblioitems`` row, and the item with its
    ``biblioitemnumber``, accession date (``accessioned``, ``YYYY-MM-DD``), ``issues`` 0 and
    ``permanent_location`` equal to ``location``. Returns ``(itemnumber, biblionumber)``."""
    biblionumber, biblioitemnumber = add_title(
        txn, title=title, author=author, itemtype=itemtype, created=accessioned
    )
    itemnumber = txn.insert(
        "INSERT INTO items (biblionumber, biblioitemnumber, barcode, dateaccessioned, "
        "homebranch, holdingbranch, itype, itemcallnumber, location, permanent_location, "
        "notforloan, price, replacementprice, issues, datelastseen) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?)",
        (
            biblionumber,
            biblioitemnumber,
            barcode,
            accessioned,
            branch,
            branch,
            itemtype,
            callnumber,
            location,
            location,
            notforloan,
            price,
            price,
            seen,
        ),
        pk="itemnumber",
    )
    return itemnumber, biblionumber


def conflicts(txn) -> list[str]:
    """What of the demo data set already exists in the database (empty list: none)."""
    found: list[str] = []
    for code, *_ in BRANCHES:
        if txn.one("SELECT 1 FROM branches WHERE branchcode = ?", (code,)):
            found.append(f"branch {code}")
    for userid, _pw, cardnumber, *_ in STAFF:
        if txn.one(
            "SELECT 1 FROM borrowers WHERE userid = ? OR cardnumber = ?", (userid, cardnumber)
        ):
            found.append(f"staff patron {userid}")
    for cardnumber, userid, *_ in PATRONS:
        if txn.one(
            "SELECT 1 FROM borrowers WHERE userid = ? OR cardnumber = ?", (userid, cardnumber)
        ):
            found.append(f"patron {cardnumber}")
    for barcode in BARCODES:
        if txn.one("SELECT 1 FROM items WHERE barcode = ?", (barcode,)):
            found.append(f"item {barcode}")
    return found


def is_loaded(txn) -> bool:
    """Whether any part of the demo data set is in the database."""
    return bool(conflicts(txn))


def load(txn, now: datetime) -> dict[str, int]:
    """Insert the demo data set (the database must not hold any of it; see :func:`conflicts`).

    ``now`` is the instant the data is relative to. Returns how many rows of each kind were
    added.
    """
    today = now.date()
    now_sql = now.strftime("%Y-%m-%d %H:%M:%S")

    def day(offset: int) -> str:
        return (today + timedelta(days=offset)).isoformat()

    def at(offset: int, clock: str = "10:00:00") -> str:
        return f"{day(offset)} {clock}"

    for code, name, address, city, zipcode, email, phone in BRANCHES:
        txn.execute(
            "INSERT INTO branches (branchcode, branchname, branchaddress1, branchcity, "
            "branchzip, branchemail, branchphone) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (code, name, address, city, zipcode, email, phone),
        )
    with_charge = "noissuescharge" in koha.columns(txn, "categories")
    for code, description, months, charge, kind in CATEGORIES:
        if not txn.one("SELECT 1 FROM categories WHERE categorycode = ?", (code,)):
            if with_charge:
                txn.execute(
                    "INSERT INTO categories (categorycode, description, enrolmentperiod, "
                    "noissuescharge, category_type) VALUES (?, ?, ?, ?, ?)",
                    (code, description, months, charge, kind),
                )
            else:
                txn.execute(
                    "INSERT INTO categories (categorycode, description, enrolmentperiod, "
                    "category_type) VALUES (?, ?, ?, ?)",
                    (code, description, months, kind),
                )
    for code, description, notforloan, rental, media, magnetic in ITEMTYPES:
        if not txn.one("SELECT 1 FROM itemtypes WHERE itemtype = ?", (code,)):
            txn.execute(
                "INSERT INTO itemtypes (itemtype, description, notforloan, rentalcharge, "
                "sip_media_type) VALUES (?, ?, ?, ?, ?)",
                (code, description, notforloan, rental, media),
            )
            if magnetic:
                txn.execute(
                    "INSERT INTO kgw_itemtype_properties (itemtype, sip_magnetic) VALUES (?, 1)",
                    (code,),
                )
    for name, value in DEMO_SYSPREFS.items():
        set_syspref(txn, name, value)
    for name, value in RULES:
        if not txn.one(
            "SELECT 1 FROM circulation_rules WHERE branchcode IS NULL AND categorycode IS NULL "
            "AND itemtype IS NULL AND rule_name = ?",
            (name,),
        ):
            set_rule(txn, name, value)
    # Koha's installer adds its restriction types (patron_restrictions.yml); a database
    # loaded from kohastructure.sql alone lacks them.
    for code, text, is_system, is_default in RESTRICTION_TYPES:
        if not txn.one("SELECT 1 FROM restriction_types WHERE code = ?", (code,)):
            txn.execute(
                "INSERT INTO restriction_types (code, display_text, is_system, is_default) "
                "VALUES (?, ?, ?, ?)",
                (code, text, is_system, is_default),
            )
    if not txn.one("SELECT 1 FROM currency WHERE currency = 'NZD'"):
        txn.execute("UPDATE currency SET active = 0")
        txn.execute(
            "INSERT INTO currency (currency, symbol, isocode, active) VALUES ('NZD', '$', 'NZD', 1)"
        )

    borrowers: dict[str, int] = {}
    for userid, password, cardnumber, firstname, surname, branch, flags in STAFF:
        borrowers[userid] = txn.insert(
            "INSERT INTO borrowers (cardnumber, userid, password, firstname, surname, "
            "branchcode, categorycode, dateenrolled, dateexpiry, flags, updated_on) "
            "VALUES (?, ?, ?, ?, ?, ?, 'S', ?, ?, ?, ?)",
            (
                cardnumber,
                userid,
                _hash(password),
                firstname,
                surname,
                branch,
                day(-365),
                "2099-12-31",
                flags,
                now_sql,
            ),
            pk="borrowernumber",
        )
    patron_hash = _hash(DEMO_PASSWORD)
    expiry = {
        "23529000000003": day(-30),
    }
    for cardnumber, userid, firstname, surname, born, address, zipcode, email, phone in PATRONS:
        borrowers[cardnumber] = txn.insert(
            "INSERT INTO borrowers (cardnumber, userid, password, firstname, surname, "
            "dateofbirth, address, city, zipcode, country, email, phone, branchcode, "
            "categorycode, dateenrolled, dateexpiry, updated_on) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, 'Wellington', ?, 'New Zealand', ?, ?, 'WEL', 'PT', "
            "?, ?, ?)",
            (
                cardnumber,
                userid,
                patron_hash,
                firstname,
                surname,
                born,
                address,
                zipcode,
                email,
                phone,
                day(-400),
                expiry.get(cardnumber, day(730)),
                now_sql,
            ),
            pk="borrowernumber",
        )
    ada, grace = borrowers["23529000000001"], borrowers["23529000000002"]
    edsger = borrowers["23529000000004"]

    txn.insert(
        "INSERT INTO borrower_debarments (borrowernumber, expiration, type, comment, created, "
        "updated) VALUES (?, NULL, 'MANUAL', ?, ?, ?)",
        (edsger, RESTRICTION_COMMENT, at(-20), at(-20)),
        pk="borrower_debarment_id",
    )
    txn.execute(
        "UPDATE borrowers SET debarred = '9999-12-31', debarredcomment = ? "
        "WHERE borrowernumber = ?",
        (RESTRICTION_COMMENT, edsger),
    )

    items: dict[str, tuple[int, int]] = {}
    for suffix, title, author, callnumber, itype, home in ITEMS:
        items[suffix] = add_title_with_item(
            txn,
            title=title,
            author=author,
            barcode="399990000000" + suffix,
            branch=home,
            itemtype=itype,
            callnumber=callnumber,
            location="GEN",
            notforloan=1 if itype == "REF" else 0,
            price=45.00,
            accessioned=day(-60),
            seen=at(-60),
        )

    def lend(suffix: str, borrowernumber: int, branch: str, issued: int, due: int) -> None:
        itemnumber, _ = items[suffix]
        txn.insert(
            "INSERT INTO issues (borrowernumber, itemnumber, date_due, branchcode, issuedate) "
            "VALUES (?, ?, ?, ?, ?)",
            (borrowernumber, itemnumber, at(due, "23:59:00"), branch, at(issued)),
            pk="issue_id",
        )
        txn.execute(
            "UPDATE items SET onloan = ?, holdingbranch = ?, issues = COALESCE(issues, 0) + 1, "
            "datelastborrowed = ?, datelastseen = ? WHERE itemnumber = ?",
            (day(due), branch, day(issued), at(issued), itemnumber),
        )

    lend("06", ada, "WEL", 0, 14)
    lend("07", ada, "WEL", -24, -10)
    lend("09", grace, "KIL", -4, 10)

    waiting_item, waiting_biblio = items["08"]
    txn.insert(
        "INSERT INTO reserves (borrowernumber, reservedate, biblionumber, itemnumber, "
        "item_level_hold, branchcode, priority, found, waitingdate, expirationdate, timestamp) "
        "VALUES (?, ?, ?, ?, 0, 'WEL', 0, 'W', ?, ?, ?)",
        (ada, day(-5), waiting_biblio, waiting_item, day(-1), day(6), at(-1)),
        pk="reserve_id",
    )
    _, held_biblio = items["12"]
    txn.insert(
        "INSERT INTO reserves (borrowernumber, reservedate, biblionumber, itemnumber, "
        "item_level_hold, branchcode, priority, found, timestamp) "
        "VALUES (?, ?, ?, NULL, 0, 'WEL', 1, NULL, ?)",
        (grace, day(-3), held_biblio, at(-3)),
        pk="reserve_id",
    )

    lost_item, _ = items["10"]
    txn.execute(
        "UPDATE items SET itemlost = 1, itemlost_on = ? WHERE itemnumber = ?",
        (at(-30), lost_item),
    )

    for days_ago, debit_type, status, amount, description in GRACE_FINES:
        debit = txn.insert(
            "INSERT INTO accountlines (borrowernumber, date, amount, amountoutstanding, "
            "description, debit_type_code, status, interface, branchcode) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, 'intranet', 'WEL')",
            (grace, at(-days_ago), amount, amount, description, debit_type, status),
            pk="accountlines_id",
        )
        # Koha::Account->add_debit records the creation of every debit.
        txn.insert(
            "INSERT INTO account_offsets (debit_id, type, amount, created_on) "
            "VALUES (?, 'CREATE', ?, ?)",
            (debit, amount, at(-days_ago)),
            pk="id",
        )

    return {
        "branches": len(BRANCHES),
        "patrons": len(PATRONS),
        "staff": len(STAFF),
        "items": len(ITEMS),
        "loans": 3,
        "holds": 2,
        "fines": len(GRACE_FINES),
    }
