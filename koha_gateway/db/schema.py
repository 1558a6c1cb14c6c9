"""The ILS schema: Koha-shaped tables, versioned, upgraded in place.

Table and column names follow Koha's own schema (``kohastructure.sql``) so that a librarian who
knows Koha recognises them, and so that the circulation code reads like Koha's. Only the columns
the SIP2 gateway uses are kept.

DDL is written once for both engines with tokens that :meth:`koha_gateway.db.engine.Engine.ddl`
expands: ``{pk}`` (auto-increment integer primary key), ``{money}``, ``{date}``, ``{datetime}``,
``{text}``, ``{bool}``. Dates are ISO strings (``YYYY-MM-DD``, ``YYYY-MM-DD HH:MM:SS``) in the
server's local time, as Koha stores them.

Each migration is applied in its own step inside the caller's transaction; ``schema_version`` holds
the number of the last one applied. Never edit a released migration: add a new one.

``circulation_rules`` uses ``'*'`` (not NULL) for "any branch / category / item type", so that the
unique key works on both engines.

``borrowers.flags`` is Koha's permission bit field: bit 0 (1) superlibrarian, bit 1 (2) circulate.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

SUPERLIBRARIAN = 1
CIRCULATE = 2


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    #: Statements on Koha's own tables (and the gateway's pre-``kgw_`` tables): run only on the
    #: gateway's own database, never on a Koha database.
    statements: tuple[str, ...] = ()
    #: Statements on the gateway's ``kgw_`` tables: always run, first, also on a Koha database.
    gateway: tuple[str, ...] = ()


_V1 = (
    """CREATE TABLE branches (
        branchcode {text} PRIMARY KEY,
        branchname {text} NOT NULL,
        branchaddress1 {text},
        branchcity {text},
        branchzip {text},
        branchemail {text},
        branchphone {text}
    )""",
    """CREATE TABLE categories (
        categorycode {text} PRIMARY KEY,
        description {text},
        enrolmentperiod INTEGER,
        noissuescharge {money},
        category_type {text} NOT NULL DEFAULT 'A'
    )""",
    """CREATE TABLE itemtypes (
        itemtype {text} PRIMARY KEY,
        description {text},
        notforloan INTEGER NOT NULL DEFAULT 0,
        rentalcharge {money} NOT NULL DEFAULT 0,
        sip_media_type {text},
        sip_magnetic INTEGER NOT NULL DEFAULT 0
    )""",
    """CREATE TABLE borrowers (
        borrowernumber {pk},
        cardnumber {text} UNIQUE,
        userid {text} UNIQUE,
        password {text},
        surname {text},
        firstname {text},
        title {text},
        email {text},
        phone {text},
        mobile {text},
        address {text},
        address2 {text},
        city {text},
        state {text},
        zipcode {text},
        country {text},
        dateofbirth {date},
        branchcode {text} NOT NULL REFERENCES branches (branchcode),
        categorycode {text} NOT NULL REFERENCES categories (categorycode),
        dateenrolled {date},
        dateexpiry {date},
        gonenoaddress INTEGER NOT NULL DEFAULT 0,
        lost INTEGER NOT NULL DEFAULT 0,
        debarred {date},
        debarredcomment {text},
        flags INTEGER NOT NULL DEFAULT 0,
        opacnote {text},
        borrowernotes {text},
        login_attempts INTEGER NOT NULL DEFAULT 0,
        lastseen {datetime},
        updated_on {datetime}
    )""",
    """CREATE TABLE borrower_attribute_types (
        code {text} PRIMARY KEY,
        description {text},
        repeatable INTEGER NOT NULL DEFAULT 0
    )""",
    """CREATE TABLE borrower_attributes (
        id {pk},
        borrowernumber INTEGER NOT NULL REFERENCES borrowers (borrowernumber) ON DELETE CASCADE,
        code {text} NOT NULL REFERENCES borrower_attribute_types (code),
        attribute {text}
    )""",
    "CREATE INDEX borrower_attributes_borrowernumber ON borrower_attributes (borrowernumber)",
    """CREATE TABLE borrower_debarments (
        borrower_debarment_id {pk},
        borrowernumber INTEGER NOT NULL REFERENCES borrowers (borrowernumber) ON DELETE CASCADE,
        expiration {date},
        type {text} NOT NULL DEFAULT 'MANUAL',
        comment {text},
        manager_id INTEGER,
        created {datetime},
        updated {datetime}
    )""",
    "CREATE INDEX borrower_debarments_borrowernumber ON borrower_debarments (borrowernumber)",
    """CREATE TABLE biblio (
        biblionumber {pk},
        title {text},
        author {text}
    )""",
    """CREATE TABLE items (
        itemnumber {pk},
        biblionumber INTEGER NOT NULL REFERENCES biblio (biblionumber),
        barcode {text} UNIQUE,
        homebranch {text} NOT NULL REFERENCES branches (branchcode),
        holdingbranch {text} NOT NULL REFERENCES branches (branchcode),
        itype {text} NOT NULL REFERENCES itemtypes (itemtype),
        itemcallnumber {text},
        location {text},
        permanent_location {text},
        ccode {text},
        materials {text},
        notforloan INTEGER NOT NULL DEFAULT 0,
        itemlost INTEGER NOT NULL DEFAULT 0,
        itemlost_on {datetime},
        withdrawn INTEGER NOT NULL DEFAULT 0,
        damaged INTEGER NOT NULL DEFAULT 0,
        onloan {date},
        datelastseen {datetime},
        price {money},
        replacementprice {money},
        issues INTEGER NOT NULL DEFAULT 0,
        renewals INTEGER NOT NULL DEFAULT 0
    )""",
    "CREATE INDEX items_biblionumber ON items (biblionumber)",
    # One row per current loan. UNIQUE (itemnumber): an item is on loan at most once, enforced by
    # the database and not only by the circulation code.
    """CREATE TABLE issues (
        issue_id {pk},
        borrowernumber INTEGER NOT NULL REFERENCES borrowers (borrowernumber),
        itemnumber INTEGER NOT NULL UNIQUE REFERENCES items (itemnumber),
        date_due {datetime} NOT NULL,
        branchcode {text},
        issuedate {datetime} NOT NULL,
        lastreneweddate {datetime},
        renewals_count INTEGER NOT NULL DEFAULT 0,
        unseen_renewals INTEGER NOT NULL DEFAULT 0,
        onsite_checkout INTEGER NOT NULL DEFAULT 0,
        note {text}
    )""",
    "CREATE INDEX issues_borrowernumber ON issues (borrowernumber)",
    """CREATE TABLE old_issues (
        issue_id INTEGER PRIMARY KEY,
        borrowernumber INTEGER,
        itemnumber INTEGER,
        date_due {datetime},
        branchcode {text},
        issuedate {datetime},
        returndate {datetime},
        lastreneweddate {datetime},
        renewals_count INTEGER NOT NULL DEFAULT 0,
        onsite_checkout INTEGER NOT NULL DEFAULT 0
    )""",
    "CREATE INDEX old_issues_borrowernumber ON old_issues (borrowernumber, itemnumber)",
    # found: NULL (pending), 'W' (waiting on the hold shelf), 'T' (in transit), 'P' (processing).
    """CREATE TABLE reserves (
        reserve_id {pk},
        borrowernumber INTEGER NOT NULL REFERENCES borrowers (borrowernumber),
        reservedate {date} NOT NULL,
        biblionumber INTEGER NOT NULL REFERENCES biblio (biblionumber),
        itemnumber INTEGER REFERENCES items (itemnumber),
        item_level_hold INTEGER NOT NULL DEFAULT 0,
        branchcode {text} NOT NULL REFERENCES branches (branchcode),
        priority INTEGER NOT NULL DEFAULT 1,
        found {text},
        waitingdate {date},
        expirationdate {date},
        suspend INTEGER NOT NULL DEFAULT 0,
        reservenotes {text},
        timestamp {datetime}
    )""",
    "CREATE INDEX reserves_biblionumber ON reserves (biblionumber, priority)",
    "CREATE INDEX reserves_itemnumber ON reserves (itemnumber)",
    "CREATE INDEX reserves_borrowernumber ON reserves (borrowernumber)",
    """CREATE TABLE old_reserves (
        reserve_id INTEGER PRIMARY KEY,
        borrowernumber INTEGER,
        reservedate {date},
        biblionumber INTEGER,
        itemnumber INTEGER,
        item_level_hold INTEGER NOT NULL DEFAULT 0,
        branchcode {text},
        priority INTEGER,
        found {text},
        waitingdate {date},
        expirationdate {date},
        cancellationdate {date},
        cancellation_reason {text},
        timestamp {datetime}
    )""",
    # Debits have debit_type_code (OVERDUE, LOST, RENT, MANUAL, ...), credits have credit_type_code
    # (PAYMENT, WRITEOFF) and a negative amount, as in Koha.
    """CREATE TABLE accountlines (
        accountlines_id {pk},
        borrowernumber INTEGER NOT NULL REFERENCES borrowers (borrowernumber),
        itemnumber INTEGER REFERENCES items (itemnumber),
        issue_id INTEGER,
        date {datetime} NOT NULL,
        amount {money} NOT NULL,
        amountoutstanding {money} NOT NULL,
        description {text},
        debit_type_code {text},
        credit_type_code {text},
        status {text},
        payment_type {text},
        interface {text},
        branchcode {text},
        register_id INTEGER,
        manager_id INTEGER,
        note {text}
    )""",
    "CREATE INDEX accountlines_borrowernumber ON accountlines (borrowernumber)",
    """CREATE TABLE account_offsets (
        id {pk},
        credit_id INTEGER REFERENCES accountlines (accountlines_id),
        debit_id INTEGER REFERENCES accountlines (accountlines_id),
        type {text} NOT NULL,
        amount {money} NOT NULL,
        created_on {datetime}
    )""",
    """CREATE TABLE branchtransfers (
        branchtransfer_id {pk},
        itemnumber INTEGER NOT NULL REFERENCES items (itemnumber),
        frombranch {text} NOT NULL,
        tobranch {text} NOT NULL,
        datesent {datetime},
        datearrived {datetime},
        datecancelled {datetime},
        reason {text}
    )""",
    "CREATE INDEX branchtransfers_itemnumber ON branchtransfers (itemnumber)",
    # rule_name: issuelength, renewalsallowed, renewalperiod, maxissueqty, fine, chargeperiod,
    # overduefinescap, reservesallowed, norenewalbefore, unseen_renewals_allowed.
    """CREATE TABLE circulation_rules (
        id {pk},
        branchcode {text} NOT NULL DEFAULT '*',
        categorycode {text} NOT NULL DEFAULT '*',
        itemtype {text} NOT NULL DEFAULT '*',
        rule_name {text} NOT NULL,
        rule_value {text},
        UNIQUE (branchcode, categorycode, itemtype, rule_name)
    )""",
    """CREATE TABLE systempreferences (
        variable {text} PRIMARY KEY,
        value {text},
        explanation {text}
    )""",
    """CREATE TABLE currency (
        currency {text} PRIMARY KEY,
        symbol {text},
        isocode {text},
        active INTEGER NOT NULL DEFAULT 0
    )""",
    """CREATE TABLE statistics (
        id {pk},
        datetime {datetime} NOT NULL,
        branch {text},
        value {money},
        type {text},
        itemnumber INTEGER,
        itemtype {text},
        borrowernumber INTEGER,
        interface {text}
    )""",
)

# Koha's system preferences that change SIP behaviour (koha-sip-and-ldap.md section 9), with
# Koha's defaults. SIPconfig.xml may override them globally or per account.
DEFAULT_SYSPREFS: dict[str, str] = {
    "noissuescharge": "5",
    "maxoutstanding": "5",
    "AllFinesNeedOverride": "1",
    "AllowFineOverride": "0",
    "AllowItemsOnHoldCheckoutSIP": "0",
    "AllowItemsOnLoanCheckoutSIP": "0",
    "AllowReturnToBranch": "anywhere",
    "AutomaticItemReturn": "1",
    "BlockReturnOfLostItems": "0",
    "BlockReturnOfWithdrawnItems": "1",
    "CircConfirmItemParts": "0",
    "CheckPrevCheckout": "hardno",
    "ConfirmFutureHolds": "0",
    "FailedLoginAttempts": "",
    "HoldCancellationRequestSIP": "0",
    "ItemsDeniedRenewal": "",
    "NotifyBorrowerDeparture": "30",
    "OverduesBlockCirc": "noblock",
    "RecordLocalUseOnReturn": "0",
    "ReservesMaxPickUpDelay": "7",
    "SIP2AddOpacMessagesToScreenMessage": "1",
    "SIP2SortBinMapping": "",
    "TrackLastPatronActivityTriggers": "",
    "UseLocationAsAQInSIP": "0",
    "dateformat": "iso",
    "finesMode": "production",
    "itemBarcodeInputFilter": "",
}

_V2 = (
    # The gateway's own request journal: a resent request (same account, same sequence and
    # same bytes within a short window) is answered from here, never applied twice.
    """CREATE TABLE sip_request_journal (
        id {pk},
        account {text} NOT NULL,
        digest {text} NOT NULL,
        response {text} NOT NULL,
        created {datetime} NOT NULL,
        UNIQUE (account, digest)
    )""",
    # 19 Item Status Update stores the item properties (CH) sent by the SC.
    "ALTER TABLE items ADD COLUMN sip_item_properties {text}",
)

# Version 5: the request journal keeps the last state-changing request of each terminal (account
# and peer) with a fingerprint of what it touched (koha_gateway/ils/journal.py).
_V5_GATEWAY = (
    """CREATE TABLE kgw_request_journal (
        id {pk},
        account VARCHAR(80) NOT NULL,
        peer VARCHAR(255) NOT NULL,
        serial INTEGER NOT NULL,
        digest VARCHAR(64) NOT NULL,
        fingerprint VARCHAR(64) NOT NULL,
        response {text} NOT NULL,
        created {datetime} NOT NULL,
        UNIQUE (account, peer)
    )""",
    "CREATE INDEX kgw_request_journal_created ON kgw_request_journal (created)",
)
_V5_KOHA = ("DROP TABLE IF EXISTS sip_request_journal",)

# Version 6 (numbers 3 to 5 are taken by other changes): Koha's ``borrowers.sex``
# (varchar(1): F, M, O or N), set by ``koha-gateway-admin add-patron --sex``. The statements
# that change a Koha table (skipped on a Koha database, which has the column) are kept apart
# from those that create the gateway's own tables (none here).
_V6_KOHA_TABLES = ("ALTER TABLE borrowers ADD COLUMN sex {text}",)
_V6_GATEWAY_TABLES: tuple[str, ...] = ()

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "Koha-shaped circulation tables and system preferences", _V1),
    Migration(2, "request journal and SIP item properties", _V2),
    # Versions 3 and 4 are assigned to other changes of the schema.
    Migration(
        5,
        "kgw_request_journal: one row per terminal, replaces sip_request_journal",
        statements=_V5_KOHA,
        gateway=_V5_GATEWAY,
    ),
    Migration(6, "borrowers.sex", _V6_KOHA_TABLES + _V6_GATEWAY_TABLES),
)

LATEST = MIGRATIONS[-1].version


def current_version(txn) -> int:
    """The schema version of the database behind ``txn``; 0 for an empty database."""
    if not _has_table(txn, "schema_version"):
        return 0
    return int(txn.scalar("SELECT MAX(version) FROM schema_version") or 0)


def migrate(txn, target: int = LATEST) -> tuple[int, int]:
    """Bring the schema up to ``target`` in place; returns ``(from_version, to_version)``."""
    start = current_version(txn)
    if start == 0 and not _has_table(txn, "schema_version"):
        txn.execute(
            txn.engine.ddl(
                "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, "
                "description {text}, applied {datetime})"
            )
        )
    if start > LATEST:
        raise RuntimeError(
            f"database schema version {start} is newer than this koha-gateway ({LATEST})"
        )
    for migration in MIGRATIONS:
        if start < migration.version <= target:
            for statement in migration.gateway + migration.statements:
                txn.execute(txn.engine.ddl(statement))
            if migration.version == 1:
                txn.executemany(
                    "INSERT INTO systempreferences (variable, value) VALUES (?, ?)",
                    sorted(DEFAULT_SYSPREFS.items()),
                )
            txn.execute(
                "INSERT INTO schema_version (version, description, applied) VALUES (?, ?, ?)",
                (
                    migration.version,
                    migration.description,
                    datetime.now().strftime("%Y-%m-%d %H:%M:%S"),
                ),
            )
    return start, max(start, min(target, LATEST))


def _has_table(txn, name: str) -> bool:
    if txn.engine.name == "sqlite":
        sql = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
    else:
        sql = (
            "SELECT 1 FROM information_schema.tables "
            "WHERE table_schema = current_schema() AND table_name = ?"
        )
    return txn.one(sql, (name,)) is not None
