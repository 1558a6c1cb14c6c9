"""The ILS schema: a subset of Koha's own tables, versioned, upgraded in place.

Table and column names, NULL-ability, defaults and foreign keys follow Koha's own schema
(``kohastructure.sql``), so that one ILS code path serves the gateway's own SQLite or PostgreSQL
database and a live Koha database (MariaDB/MySQL) alike. Only the tables and columns the SIP2
gateway uses are kept; :mod:`koha_gateway.db.koha` lists them and checks them at start-up.
What Koha lacks and the gateway needs (its schema version, the stored SIP item properties, the
request journal) lives in tables whose names start with ``kgw_``.

DDL is written once for every engine with tokens that :meth:`koha_gateway.db.engine.Engine.ddl`
expands: ``{pk}`` (auto-increment integer primary key), ``{money}``, ``{date}``, ``{datetime}``,
``{text}``, ``{bool}``. Dates are ISO strings (``YYYY-MM-DD``, ``YYYY-MM-DD HH:MM:SS``) in the
server's local time, as Koha stores them. Key columns of ``kgw_`` tables are ``VARCHAR(n)``,
never ``{text}``: MariaDB cannot index a ``TEXT`` column without a prefix length.

Each migration has two lists of steps (a step is a DDL string, or a function called with the
transaction and today's date):

``gateway``
    the gateway's own ``kgw_`` tables; always run, first.
``koha``
    Koha's tables (create, alter, data fixes); run only when the gateway owns the database
    (SQLite, PostgreSQL), never on a Koha database (:func:`koha_gateway.db.koha.is_koha_database`):
    there Koha's own installer and updates own every Koha table.

``kgw_schema_version`` holds one row per migration applied (before version 3 the table was
called ``schema_version``; version 3 renames it). Never edit a released migration: add a new one.
On MariaDB every DDL statement commits implicitly, so a migration that fails half-way there is
not rolled back; on SQLite and PostgreSQL the whole upgrade is one transaction.

Koha's conventions worth knowing:

* ``circulation_rules``: NULL ``branchcode``/``categorycode``/``itemtype`` means "any"
  (:mod:`koha_gateway.ils.rules`); ``rule_value`` is never NULL (``''`` is "unlimited").
  NULLs are distinct in a UNIQUE key, so a unique index on ``COALESCE(column, '*')`` keeps one
  default rule per name on SQLite and PostgreSQL.
* ``borrowers.flags`` is Koha's permission bit field, NULL for most patrons (no permission):
  bit 0 (1) superlibrarian, bit 1 (2) circulate.
* every ``items`` row belongs to a ``biblioitems`` row (``items.biblioitemnumber``), every
  ``biblio`` has a ``datecreated``; ``borrower_debarments.type`` is a ``restriction_types``
  code, ``accountlines`` debit and credit types are ``account_debit_types`` /
  ``account_credit_types`` codes.
* ``statistics`` has no key column.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

SUPERLIBRARIAN = 1
CIRCULATE = 2

Step = str | Callable[..., None]


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    koha: tuple[Step, ...] = ()
    gateway: tuple[Step, ...] = ()


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


def _v1_sysprefs(txn, today: str) -> None:
    txn.executemany(
        "INSERT INTO systempreferences (variable, value) VALUES (?, ?)",
        sorted(DEFAULT_SYSPREFS.items()),
    )


# The gateway's first request journal: a resent request (same account, same sequence and same
# bytes within a short window) is answered from here, never applied twice. Not a Koha table, but
# only ever created in the gateway's own database (version 5 replaces it by
# kgw_request_journal).
_V2_JOURNAL = """CREATE TABLE sip_request_journal (
        id {pk},
        account {text} NOT NULL,
        digest {text} NOT NULL,
        response {text} NOT NULL,
        created {datetime} NOT NULL,
        UNIQUE (account, digest)
    )"""

# 19 Item Status Update stores the item properties (CH) sent by the SC (moved to
# kgw_item_properties by version 3).
_V2_KOHA = ("ALTER TABLE items ADD COLUMN sip_item_properties {text}",)


# -- version 3: Koha's conventions -----------------------------------------------------------

#: Koha's restriction types (installer/data/mysql/en/mandatory/patron_restrictions.yml).
RESTRICTION_TYPES = (
    ("MANUAL", "Manual", 1, 1),
    ("OVERDUES", "Overdues", 1, 0),
    ("SUSPENSION", "Suspension", 1, 0),
    ("DISCHARGE", "Discharge", 1, 0),
)

#: Koha's mandatory debit types (installer/data/mysql/mandatory/account_debit_types.sql):
#: code, description, can_be_invoiced, can_be_sold, is_system.
ACCOUNT_DEBIT_TYPES = (
    ("ACCOUNT", "Account creation fee", 0, 0, 1),
    ("ACCOUNT_RENEW", "Account renewal fee", 0, 0, 1),
    ("LOST", "Lost item", 1, 0, 1),
    ("MANUAL", "Manual fee", 1, 0, 0),
    ("NEW_CARD", "New card fee", 1, 0, 1),
    ("OVERDUE", "Overdue fine", 0, 0, 1),
    ("PROCESSING", "Lost item processing fee", 0, 0, 1),
    ("PAYOUT", "Payment from library to patron", 0, 0, 1),
    ("RENT", "Rental fee", 0, 0, 1),
    ("RENT_DAILY", "Daily rental fee", 0, 0, 1),
    ("RENT_RENEW", "Renewal of rental item", 0, 0, 1),
    ("RENT_DAILY_RENEW", "Renewal of daily rental item", 0, 0, 1),
    ("RESERVE", "Hold fee", 0, 0, 1),
    ("RESERVE_EXPIRED", "Hold waiting too long", 0, 0, 1),
    ("VOID", "Credit has been voided", 0, 0, 1),
    ("ARTICLE_REQUEST", "Article request fee", 0, 0, 1),
)

#: Koha's mandatory credit types (account_credit_types.sql): code, description,
#: can_be_added_manually, is_system.
ACCOUNT_CREDIT_TYPES = (
    ("OVERPAYMENT", "Overpayment refund", 0, 1),
    ("PAYMENT", "Payment", 0, 1),
    ("WRITEOFF", "Writeoff", 0, 1),
    ("FORGIVEN", "Forgiven", 1, 1),
    ("CREDIT", "Credit", 1, 1),
    ("DISCOUNT", "A discount applied to a patrons fine", 0, 1),
    ("REFUND", "Refund", 0, 1),
    ("LOST_FOUND", "Lost item fee refund", 0, 1),
    ("PURCHASE", "Purchase", 0, 1),
    ("CANCELLATION", "Cancellation", 0, 1),
)

#: Preferences that version 3's tables make meaningful, with Koha's defaults (sysprefs.sql).
V3_SYSPREFS: dict[str, str] = {
    "IssueLog": "1",
    "ReturnLog": "1",
    "RenewalLog": "0",
    "FinesLog": "1",
    "HoldsLog": "0",
    "SearchEngine": "Zebra",
    "UpdateTotalIssuesOnCirc": "0",
}

_V3_NEW_TABLES = (
    """CREATE TABLE restriction_types (
        code VARCHAR(50) PRIMARY KEY,
        display_text {text} NOT NULL,
        is_system INTEGER NOT NULL DEFAULT 0,
        is_default INTEGER NOT NULL DEFAULT 0
    )""",
    """CREATE TABLE account_debit_types (
        code VARCHAR(80) PRIMARY KEY,
        description VARCHAR(200),
        can_be_invoiced INTEGER NOT NULL DEFAULT 1,
        can_be_sold INTEGER NOT NULL DEFAULT 0,
        default_amount {money},
        is_system INTEGER NOT NULL DEFAULT 0,
        archived INTEGER NOT NULL DEFAULT 0,
        restricts_checkouts INTEGER NOT NULL DEFAULT 1
    )""",
    """CREATE TABLE account_credit_types (
        code VARCHAR(80) PRIMARY KEY,
        description VARCHAR(200),
        can_be_added_manually INTEGER NOT NULL DEFAULT 1,
        credit_number_enabled INTEGER NOT NULL DEFAULT 0,
        is_system INTEGER NOT NULL DEFAULT 0,
        archived INTEGER NOT NULL DEFAULT 0
    )""",
    """CREATE TABLE biblioitems (
        biblioitemnumber {pk},
        biblionumber INTEGER NOT NULL DEFAULT 0
            REFERENCES biblio (biblionumber) ON DELETE CASCADE ON UPDATE CASCADE,
        itemtype {text},
        isbn {text},
        issn {text},
        publicationyear {text},
        publishercode {text},
        totalissues INTEGER
    )""",
    "CREATE INDEX biblioitems_biblionumber ON biblioitems (biblionumber)",
    # Koha's column "user" is a reserved word in PostgreSQL: always write it quoted.
    """CREATE TABLE action_logs (
        action_id {pk},
        timestamp {datetime} NOT NULL,
        "user" INTEGER NOT NULL DEFAULT 0,
        module {text},
        action {text},
        object INTEGER,
        info {text},
        interface {text},
        script {text},
        trace {text}
    )""",
    "CREATE INDEX action_logs_timestamp ON action_logs (timestamp)",
    "CREATE INDEX action_logs_object ON action_logs (object)",
    """CREATE TABLE zebraqueue (
        id {pk},
        biblio_auth_number INTEGER NOT NULL DEFAULT 0,
        operation {text} NOT NULL DEFAULT '',
        server {text} NOT NULL DEFAULT '',
        done INTEGER NOT NULL DEFAULT 0,
        time {datetime} NOT NULL
    )""",
    "CREATE INDEX zebraqueue_lookup ON zebraqueue (server, biblio_auth_number, operation, done)",
    # Koha's task queue: an Elasticsearch index update is queued here when SearchEngine says so.
    """CREATE TABLE background_jobs (
        id {pk},
        status {text},
        progress INTEGER,
        size INTEGER,
        borrowernumber INTEGER,
        type {text},
        queue {text} NOT NULL DEFAULT 'default',
        data {text},
        context {text},
        enqueued_on {datetime},
        started_on {datetime},
        ended_on {datetime}
    )""",
)

# Columns of Koha that version 3 adds: ALTER TABLE ... ADD COLUMN on both engines.
_V3_ADD_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "branches": (("pickup_location", "INTEGER NOT NULL DEFAULT 1"),),
    "borrowers": (("autorenew_checkouts", "INTEGER NOT NULL DEFAULT 1"),),
    "biblio": (("frameworkcode", "{text} NOT NULL DEFAULT ''"), ("datecreated", "{date}")),
    "items": (
        ("biblioitemnumber", "INTEGER"),
        ("dateaccessioned", "{date}"),
        ("datelastborrowed", "{date}"),
        ("damaged_on", "{datetime}"),
        ("withdrawn_on", "{datetime}"),
        ("itemnotes", "{text}"),
        ("itemnotes_nonpublic", "{text}"),
        ("enumchron", "{text}"),
        ("copynumber", "{text}"),
    ),
    "issues": (
        ("issuer_id", "INTEGER REFERENCES borrowers (borrowernumber) ON DELETE SET NULL"),
        ("returndate", "{datetime}"),
        ("auto_renew", "INTEGER DEFAULT 0"),
        ("auto_renew_error", "{text}"),
        ("notedate", "{datetime}"),
        ("noteseen", "INTEGER"),
    ),
    "old_issues": (
        ("issuer_id", "INTEGER"),
        ("unseen_renewals", "INTEGER NOT NULL DEFAULT 0"),
        ("auto_renew", "INTEGER DEFAULT 0"),
        ("auto_renew_error", "{text}"),
        ("note", "{text}"),
        ("notedate", "{datetime}"),
        ("noteseen", "INTEGER"),
    ),
    "reserves": (
        ("notificationdate", "{date}"),
        ("reminderdate", "{date}"),
        ("cancellationdate", "{date}"),
        ("cancellation_reason", "{text}"),
        ("patron_expiration_date", "{date}"),
        ("lowestPriority", "INTEGER NOT NULL DEFAULT 0"),
        ("suspend_until", "{datetime}"),
        ("itemtype", "{text}"),
        ("non_priority", "INTEGER NOT NULL DEFAULT 0"),
    ),
    "old_reserves": (
        ("notificationdate", "{date}"),
        ("reminderdate", "{date}"),
        ("reservenotes", "{text}"),
        ("patron_expiration_date", "{date}"),
        ("lowestPriority", "INTEGER NOT NULL DEFAULT 0"),
        ("suspend", "INTEGER NOT NULL DEFAULT 0"),
        ("suspend_until", "{datetime}"),
        ("itemtype", "{text}"),
        ("non_priority", "INTEGER NOT NULL DEFAULT 0"),
    ),
    "accountlines": (("credit_number", "{text}"),),
    "branchtransfers": (
        ("daterequested", "{datetime}"),
        ("comments", "{text}"),
        ("cancellation_reason", "{text}"),
    ),
    "systempreferences": (("options", "{text}"), ("type", "{text}")),
}

# Columns that moved to kgw_ tables.
_V3_DROP_COLUMNS: dict[str, tuple[str, ...]] = {
    "itemtypes": ("sip_magnetic",),
    "items": ("sip_item_properties",),
}

# The version 3 definition of every table whose constraints change (NULL-ability, defaults,
# foreign keys), columns in their physical order (version 1 columns, then those added above).
# SQLite gets this text in place of the old one (see _sqlite_replace_definitions); PostgreSQL
# gets the equivalent ALTER TABLE statements of _V3_POSTGRESQL.
_V3_DEFINITIONS: dict[str, str] = {
    "itemtypes": """CREATE TABLE itemtypes (
        itemtype {text} PRIMARY KEY,
        description {text},
        notforloan INTEGER,
        rentalcharge {money},
        sip_media_type {text}
    )""",
    "borrowers": """CREATE TABLE borrowers (
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
        gonenoaddress INTEGER,
        lost INTEGER,
        debarred {date},
        debarredcomment {text},
        flags INTEGER,
        opacnote {text},
        borrowernotes {text},
        login_attempts INTEGER NOT NULL DEFAULT 0,
        lastseen {datetime},
        updated_on {datetime},
        autorenew_checkouts INTEGER NOT NULL DEFAULT 1
    )""",
    "borrower_debarments": """CREATE TABLE borrower_debarments (
        borrower_debarment_id {pk},
        borrowernumber INTEGER NOT NULL REFERENCES borrowers (borrowernumber) ON DELETE CASCADE,
        expiration {date},
        type {text} NOT NULL REFERENCES restriction_types (code) ON UPDATE CASCADE,
        comment {text},
        manager_id INTEGER,
        created {datetime},
        updated {datetime}
    )""",
    "biblio": """CREATE TABLE biblio (
        biblionumber {pk},
        title {text},
        author {text},
        frameworkcode {text} NOT NULL DEFAULT '',
        datecreated {date} NOT NULL
    )""",
    "items": """CREATE TABLE items (
        itemnumber {pk},
        biblionumber INTEGER NOT NULL REFERENCES biblio (biblionumber),
        barcode {text} UNIQUE,
        homebranch {text} REFERENCES branches (branchcode),
        holdingbranch {text} REFERENCES branches (branchcode),
        itype {text} REFERENCES itemtypes (itemtype),
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
        issues INTEGER DEFAULT 0,
        renewals INTEGER,
        biblioitemnumber INTEGER NOT NULL DEFAULT 0
            REFERENCES biblioitems (biblioitemnumber) ON DELETE CASCADE ON UPDATE CASCADE,
        dateaccessioned {date},
        datelastborrowed {date},
        damaged_on {datetime},
        withdrawn_on {datetime},
        itemnotes {text},
        itemnotes_nonpublic {text},
        enumchron {text},
        copynumber {text}
    )""",
    "issues": """CREATE TABLE issues (
        issue_id {pk},
        borrowernumber INTEGER NOT NULL REFERENCES borrowers (borrowernumber),
        itemnumber INTEGER NOT NULL UNIQUE REFERENCES items (itemnumber),
        date_due {datetime},
        branchcode {text},
        issuedate {datetime},
        lastreneweddate {datetime},
        renewals_count INTEGER NOT NULL DEFAULT 0,
        unseen_renewals INTEGER NOT NULL DEFAULT 0,
        onsite_checkout INTEGER NOT NULL DEFAULT 0,
        note {text},
        issuer_id INTEGER REFERENCES borrowers (borrowernumber) ON DELETE SET NULL,
        returndate {datetime},
        auto_renew INTEGER DEFAULT 0,
        auto_renew_error {text},
        notedate {datetime},
        noteseen INTEGER
    )""",
    "accountlines": """CREATE TABLE accountlines (
        accountlines_id {pk},
        borrowernumber INTEGER REFERENCES borrowers (borrowernumber) ON DELETE SET NULL,
        itemnumber INTEGER REFERENCES items (itemnumber) ON DELETE SET NULL,
        issue_id INTEGER,
        date {datetime},
        amount {money},
        amountoutstanding {money},
        description {text},
        debit_type_code {text} REFERENCES account_debit_types (code) ON UPDATE CASCADE,
        credit_type_code {text} REFERENCES account_credit_types (code) ON UPDATE CASCADE,
        status {text},
        payment_type {text},
        interface {text} NOT NULL,
        branchcode {text} REFERENCES branches (branchcode) ON DELETE SET NULL,
        register_id INTEGER,
        manager_id INTEGER,
        note {text},
        credit_number {text}
    )""",
    "circulation_rules": """CREATE TABLE circulation_rules (
        id {pk},
        branchcode {text} REFERENCES branches (branchcode) ON DELETE CASCADE,
        categorycode {text} REFERENCES categories (categorycode) ON DELETE CASCADE,
        itemtype {text} REFERENCES itemtypes (itemtype) ON DELETE CASCADE,
        rule_name {text} NOT NULL,
        rule_value {text} NOT NULL,
        UNIQUE (branchcode, categorycode, itemtype, rule_name)
    )""",
}

# statistics loses its key column: a new table on both engines (nothing refers to it).
_V3_STATISTICS = """CREATE TABLE statistics (
        datetime {datetime},
        branch {text},
        value {money},
        type {text},
        other {text},
        itemnumber INTEGER,
        itemtype {text},
        location {text},
        borrowernumber INTEGER,
        ccode {text},
        categorycode {text},
        interface {text}
    )"""
_V3_STATISTICS_COPIED = (
    "datetime",
    "branch",
    "value",
    "type",
    "itemnumber",
    "itemtype",
    "borrowernumber",
    "interface",
)

_V3_INDEXES = (
    "CREATE INDEX items_biblioitemnumber ON items (biblioitemnumber)",
    # One rule per name and combination, NULL ("any") included: Koha's UNIQUE key does not
    # see two NULLs as equal.
    "CREATE UNIQUE INDEX circulation_rules_any ON circulation_rules "
    "(COALESCE(branchcode, '*'), COALESCE(categorycode, '*'), COALESCE(itemtype, '*'), rule_name)",
    "CREATE INDEX statistics_datetime ON statistics (datetime)",
    "CREATE INDEX statistics_itemnumber ON statistics (itemnumber)",
    "CREATE INDEX statistics_borrowernumber ON statistics (borrowernumber)",
)

# PostgreSQL: the constraint changes of _V3_DEFINITIONS, before the data is fixed ...
_V3_POSTGRESQL_RELAX = (
    "ALTER TABLE itemtypes ALTER COLUMN notforloan DROP NOT NULL, "
    "ALTER COLUMN notforloan DROP DEFAULT, ALTER COLUMN rentalcharge DROP NOT NULL, "
    "ALTER COLUMN rentalcharge DROP DEFAULT",
    "ALTER TABLE borrowers ALTER COLUMN gonenoaddress DROP NOT NULL, "
    "ALTER COLUMN gonenoaddress DROP DEFAULT, ALTER COLUMN lost DROP NOT NULL, "
    "ALTER COLUMN lost DROP DEFAULT, ALTER COLUMN flags DROP NOT NULL, "
    "ALTER COLUMN flags DROP DEFAULT",
    "ALTER TABLE borrower_debarments ALTER COLUMN type DROP DEFAULT",
    "ALTER TABLE items ALTER COLUMN homebranch DROP NOT NULL, "
    "ALTER COLUMN holdingbranch DROP NOT NULL, ALTER COLUMN itype DROP NOT NULL, "
    "ALTER COLUMN issues DROP NOT NULL, ALTER COLUMN renewals DROP NOT NULL, "
    "ALTER COLUMN renewals DROP DEFAULT",
    "ALTER TABLE issues ALTER COLUMN date_due DROP NOT NULL, ALTER COLUMN issuedate DROP NOT NULL",
    "ALTER TABLE accountlines ALTER COLUMN borrowernumber DROP NOT NULL, "
    "ALTER COLUMN date DROP NOT NULL, ALTER COLUMN amount DROP NOT NULL, "
    "ALTER COLUMN amountoutstanding DROP NOT NULL",
    "ALTER TABLE circulation_rules ALTER COLUMN branchcode DROP NOT NULL, "
    "ALTER COLUMN branchcode DROP DEFAULT, ALTER COLUMN categorycode DROP NOT NULL, "
    "ALTER COLUMN categorycode DROP DEFAULT, ALTER COLUMN itemtype DROP NOT NULL, "
    "ALTER COLUMN itemtype DROP DEFAULT",
)
# ... and those that need the fixed data.
_V3_POSTGRESQL_TIGHTEN = (
    "ALTER TABLE biblio ALTER COLUMN datecreated SET NOT NULL",
    "ALTER TABLE items ALTER COLUMN biblioitemnumber SET DEFAULT 0, "
    "ALTER COLUMN biblioitemnumber SET NOT NULL, "
    "ADD CONSTRAINT items_ibfk_1 FOREIGN KEY (biblioitemnumber) "
    "REFERENCES biblioitems (biblioitemnumber) ON DELETE CASCADE ON UPDATE CASCADE",
    "ALTER TABLE borrower_debarments ADD CONSTRAINT borrower_debarments_ibfk_2 "
    "FOREIGN KEY (type) REFERENCES restriction_types (code) ON UPDATE CASCADE",
    "ALTER TABLE accountlines ALTER COLUMN interface SET NOT NULL, "
    "ADD CONSTRAINT accountlines_ibfk_debit_type FOREIGN KEY (debit_type_code) "
    "REFERENCES account_debit_types (code) ON UPDATE CASCADE, "
    "ADD CONSTRAINT accountlines_ibfk_credit_type FOREIGN KEY (credit_type_code) "
    "REFERENCES account_credit_types (code) ON UPDATE CASCADE, "
    "ADD CONSTRAINT accountlines_ibfk_branches FOREIGN KEY (branchcode) "
    "REFERENCES branches (branchcode) ON DELETE SET NULL",
    "ALTER TABLE circulation_rules ALTER COLUMN rule_value SET NOT NULL, "
    "ADD CONSTRAINT circ_rules_ibfk_1 FOREIGN KEY (branchcode) "
    "REFERENCES branches (branchcode) ON DELETE CASCADE, "
    "ADD CONSTRAINT circ_rules_ibfk_2 FOREIGN KEY (categorycode) "
    "REFERENCES categories (categorycode) ON DELETE CASCADE, "
    "ADD CONSTRAINT circ_rules_ibfk_3 FOREIGN KEY (itemtype) "
    "REFERENCES itemtypes (itemtype) ON DELETE CASCADE",
)


def _v3_gateway(txn, today: str) -> None:
    """kgw_ tables: the schema version (renamed), SIP properties of item types and items."""
    ddl = txn.engine.ddl
    if not _has_table(txn, "kgw_schema_version"):
        txn.execute(ddl(_KGW_SCHEMA_VERSION))
    if _has_table(txn, "schema_version"):
        txn.execute(
            "INSERT INTO kgw_schema_version (version, description, applied) "
            "SELECT version, description, applied FROM schema_version"
        )
        txn.execute("DROP TABLE schema_version")
    # IF NOT EXISTS: on MariaDB every DDL statement commits at once, so a run that failed
    # half-way is completed by the next one.
    txn.execute(
        "CREATE TABLE IF NOT EXISTS kgw_itemtype_properties (itemtype VARCHAR(10) PRIMARY KEY, "
        "sip_magnetic INTEGER NOT NULL DEFAULT 0)"
    )
    txn.execute(
        ddl(
            "CREATE TABLE IF NOT EXISTS kgw_item_properties (itemnumber INTEGER PRIMARY KEY, "
            "sip_item_properties {text})"
        )
    )


def _v3_koha(txn, today: str) -> None:
    """Koha's tables in Koha's shape, their data carried over (see the module docstring)."""
    engine = txn.engine.name
    ddl = txn.engine.ddl
    for statement in _V3_NEW_TABLES:
        txn.execute(ddl(statement))
    txn.executemany(
        "INSERT INTO restriction_types (code, display_text, is_system, is_default) "
        "VALUES (?, ?, ?, ?)",
        RESTRICTION_TYPES,
    )
    txn.executemany(
        "INSERT INTO account_debit_types (code, description, can_be_invoiced, can_be_sold, "
        "is_system) VALUES (?, ?, ?, ?, ?)",
        ACCOUNT_DEBIT_TYPES,
    )
    txn.executemany(
        "INSERT INTO account_credit_types (code, description, can_be_added_manually, "
        "is_system) VALUES (?, ?, ?, ?)",
        ACCOUNT_CREDIT_TYPES,
    )
    # Codes already used by account lines become types of their own, as Koha's own update
    # to account_debit_types did.
    txn.execute(
        "INSERT INTO account_debit_types (code, description, is_system) "
        "SELECT DISTINCT debit_type_code, debit_type_code, 0 FROM accountlines "
        "WHERE debit_type_code IS NOT NULL "
        "AND debit_type_code NOT IN (SELECT code FROM account_debit_types)"
    )
    txn.execute(
        "INSERT INTO account_credit_types (code, description, is_system) "
        "SELECT DISTINCT credit_type_code, credit_type_code, 0 FROM accountlines "
        "WHERE credit_type_code IS NOT NULL "
        "AND credit_type_code NOT IN (SELECT code FROM account_credit_types)"
    )
    # SIP properties move to the gateway's tables.
    txn.execute(
        "INSERT INTO kgw_itemtype_properties (itemtype, sip_magnetic) "
        "SELECT itemtype, sip_magnetic FROM itemtypes WHERE sip_magnetic <> 0"
    )
    txn.execute(
        "INSERT INTO kgw_item_properties (itemnumber, sip_item_properties) "
        "SELECT itemnumber, sip_item_properties FROM items WHERE sip_item_properties IS NOT NULL"
    )
    for table, columns in _V3_ADD_COLUMNS.items():
        for name, kind in columns:
            txn.execute(ddl(f"ALTER TABLE {table} ADD COLUMN {name} {kind}"))
    for table, names in _V3_DROP_COLUMNS.items():
        for name in names:
            txn.execute(f"ALTER TABLE {table} DROP COLUMN {name}")
    # The data, in Koha's conventions: first what the new constraints need (SQLite reads a
    # NOT NULL column's IS NULL as false once its definition says so) ...
    txn.execute("UPDATE biblio SET datecreated = ? WHERE datecreated IS NULL", (today,))
    txn.execute(
        "INSERT INTO biblioitems (biblioitemnumber, biblionumber, itemtype) "
        "SELECT b.biblionumber, b.biblionumber, "
        "(SELECT MIN(i.itype) FROM items i WHERE i.biblionumber = b.biblionumber) FROM biblio b"
    )
    if engine == "postgresql":
        # Explicit keys do not move a sequence on PostgreSQL.
        txn.execute(
            "SELECT setval(pg_get_serial_sequence('biblioitems', 'biblioitemnumber'), "
            "COALESCE((SELECT MAX(biblioitemnumber) FROM biblioitems), 0) + 1, false)"
        )
    txn.execute("UPDATE items SET biblioitemnumber = biblionumber")
    txn.execute(
        "UPDATE borrower_debarments SET type = 'MANUAL' "
        "WHERE type NOT IN (SELECT code FROM restriction_types)"
    )
    txn.execute("UPDATE accountlines SET interface = 'intranet' WHERE interface IS NULL")
    txn.execute(
        "UPDATE accountlines SET branchcode = NULL WHERE branchcode IS NOT NULL "
        "AND branchcode NOT IN (SELECT branchcode FROM branches)"
    )
    txn.execute("UPDATE circulation_rules SET rule_value = '' WHERE rule_value IS NULL")
    if engine == "sqlite":
        _sqlite_replace_definitions(txn, {t: ddl(s) for t, s in _V3_DEFINITIONS.items()})
    else:
        for statement in _V3_POSTGRESQL_RELAX:
            txn.execute(statement)

    # ... then what needs them relaxed.
    for column in ("branchcode", "categorycode", "itemtype"):
        txn.execute(f"UPDATE circulation_rules SET {column} = NULL WHERE {column} = '*'")
    # Rules of libraries, categories or item types that no longer exist could never apply;
    # Koha's foreign keys would have removed them.
    for column, parent, key in (
        ("branchcode", "branches", "branchcode"),
        ("categorycode", "categories", "categorycode"),
        ("itemtype", "itemtypes", "itemtype"),
    ):
        txn.execute(
            f"DELETE FROM circulation_rules WHERE {column} IS NOT NULL "
            f"AND {column} NOT IN (SELECT {key} FROM {parent})"
        )
    if engine != "sqlite":
        for statement in _V3_POSTGRESQL_TIGHTEN:
            txn.execute(statement)

    # statistics without its key column.
    txn.execute("ALTER TABLE statistics RENAME TO kgw_old_statistics")
    txn.execute(ddl(_V3_STATISTICS))
    copied = ", ".join(_V3_STATISTICS_COPIED)
    txn.execute(
        f"INSERT INTO statistics ({copied}) SELECT {copied} FROM kgw_old_statistics ORDER BY id"
    )
    txn.execute("DROP TABLE kgw_old_statistics")

    for statement in _V3_INDEXES:
        txn.execute(ddl(statement))
    present = {
        row["variable"].lower() for row in txn.query("SELECT variable FROM systempreferences")
    }
    txn.executemany(
        "INSERT INTO systempreferences (variable, value) VALUES (?, ?)",
        sorted((k, v) for k, v in V3_SYSPREFS.items() if k.lower() not in present),
    )
    if engine == "sqlite":
        _sqlite_verify(txn, list(_V3_DEFINITIONS))


def _sqlite_replace_definitions(txn, definitions: dict[str, str]) -> None:
    """Give SQLite tables new definitions that only change constraints and defaults.

    SQLite's ALTER TABLE cannot change NULL-ability, defaults or foreign keys, and its usual
    answer (copy into a new table, drop the old one) cannot be used on a table that other
    tables refer to while foreign keys are enforced: dropping it would run their ON DELETE
    actions (a patron's attributes would be deleted with the old ``borrowers``). This is the
    other procedure of SQLite's documentation ("ALTER TABLE", section "Making Other Kinds Of
    Table Schema Changes") for changes that leave the stored rows as they are: the table's
    ``CREATE TABLE`` text is replaced in ``sqlite_schema`` and the schema version bumped, in
    the migration's transaction. Every new definition keeps the physical column order;
    :func:`_sqlite_verify` checks the rows against it before the transaction commits.
    """
    for table, sql in definitions.items():
        old = txn.one("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,))
        if old is None:
            raise RuntimeError(f"table {table} is missing")
        have = [r["name"] for r in txn.query(f"SELECT name FROM pragma_table_info('{table}')")]
        want = _sqlite_columns(sql)
        if have != want:
            raise RuntimeError(
                f"table {table}: columns {have} do not match the new definition {want}"
            )
    version = int(txn.scalar("PRAGMA schema_version"))
    txn.execute("PRAGMA writable_schema = ON")
    try:
        for table, sql in definitions.items():
            txn.execute(
                "UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = ?", (sql, table)
            )
        txn.execute(f"PRAGMA schema_version = {version + 1}")
    finally:
        txn.execute("PRAGMA writable_schema = OFF")


def _sqlite_columns(sql: str) -> list[str]:
    """Column names of a CREATE TABLE text written as this module writes them."""
    body = sql[sql.index("(") + 1 : sql.rindex(")")]
    names = []
    depth = 0
    start = 0
    parts = []
    for i, ch in enumerate(body):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(body[start:i])
            start = i + 1
    parts.append(body[start:])
    for part in parts:
        word = part.split()[0].strip('"')
        if word.upper() not in ("UNIQUE", "PRIMARY", "FOREIGN", "CHECK", "CONSTRAINT"):
            names.append(word)
    return names


def _sqlite_verify(txn, tables: list[str]) -> None:
    for table in tables:
        problems = [r for r in txn.query(f"PRAGMA integrity_check('{table}')")]
        messages = [next(iter(r.values())) for r in problems]
        if messages != ["ok"]:
            raise RuntimeError(f"table {table} after the upgrade: {'; '.join(messages[:5])}")
    broken = txn.query("PRAGMA foreign_key_check")
    if broken:
        first = broken[0]
        raise RuntimeError(
            f"{len(broken)} rows break a foreign key after the upgrade, e.g. {first['table']} "
            f"row {first['rowid']} -> {first['parent']}"
        )


_KGW_SCHEMA_VERSION = (
    "CREATE TABLE kgw_schema_version (version INTEGER PRIMARY KEY, "
    "description VARCHAR(200), applied {datetime})"
)


# v4: Koha's calendar. Both tables are Koha's own (kohastructure.sql: columns, types and
# defaults as Koha has them): on a real Koha database they already exist and are never created
# or changed by the gateway; only SQLite and PostgreSQL databases get them here.
_V4_KOHA_TABLES = (
    # weekday 0 (Sunday) .. 6 closes that day every week; weekday NULL with day and month
    # closes that date every year.
    """CREATE TABLE repeatable_holidays (
        id {pk},
        branchcode {text} NOT NULL REFERENCES branches (branchcode) ON DELETE CASCADE,
        weekday SMALLINT,
        day SMALLINT,
        month SMALLINT,
        title {text} NOT NULL DEFAULT '',
        description {text} NOT NULL
    )""",
    "CREATE INDEX repeatable_holidays_ibfk_1 ON repeatable_holidays (branchcode)",
    # One date: isexception 0 closes it, 1 opens it against a repeatable closing.
    """CREATE TABLE special_holidays (
        id {pk},
        branchcode {text} NOT NULL REFERENCES branches (branchcode) ON DELETE CASCADE,
        day SMALLINT NOT NULL DEFAULT 0,
        month SMALLINT NOT NULL DEFAULT 0,
        year SMALLINT NOT NULL DEFAULT 0,
        isexception SMALLINT NOT NULL DEFAULT 1,
        title {text} NOT NULL DEFAULT '',
        description {text} NOT NULL
    )""",
    "CREATE INDEX special_holidays_ibfk_1 ON special_holidays (branchcode)",
)
#: v4 creates no kgw_ table.
_V4_KGW_TABLES: tuple[str, ...] = ()

#: Preferences v4 adds (with Koha's defaults) where the database does not have them yet.
CALENDAR_SYSPREFS: dict[str, str] = {
    "useDaysMode": "Calendar",
    "finesCalendar": "noFinesWhenClosed",
    "FinesIncludeGracePeriod": "1",
    "ReturnBeforeExpiry": "0",
}
DEFAULT_SYSPREFS.update(CALENDAR_SYSPREFS)

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

# Version 6 (numbers 4 and 5 are taken by other changes): Koha's ``borrowers.sex``
# (varchar(1): F, M, O or N), set by ``koha-gateway-admin add-patron --sex``. Only a Koha
# table changes (skipped on a Koha database, which has the column).
_V6_KOHA_TABLES = ("ALTER TABLE borrowers ADD COLUMN sex {text}",)


# Version 7: the request journal keeps a row per request of each terminal (account, peer and
# the request's digest), so that a resend is recognised even when another kiosk of the same
# terminal wrote in between (koha_gateway/ils/journal.py); expired rows of a terminal are
# deleted with its next write, hence the (account, peer, created) index. The table is built
# under another name, filled from the old one, which is then dropped, and renamed: portable
# to the three engines, and the names of the indexes never clash (on SQLite and PostgreSQL an
# index name belongs to the whole schema).
_V7_JOURNAL = "kgw_request_journal"
_V7_BUILT = "kgw_request_journal_new"
_V7_UNIQUE = "kgw_request_journal_request"
_V7_COLUMNS = "account, peer, digest, serial, fingerprint, response, created"
_V7_INDEXES = (
    ("kgw_request_journal_terminal", "account, peer, created"),
    ("kgw_request_journal_created", "created"),
)


def _v7_journal_table(name: str) -> str:
    return f"""CREATE TABLE {name} (
        id {{pk}},
        account VARCHAR(80) NOT NULL,
        peer VARCHAR(255) NOT NULL,
        digest VARCHAR(64) NOT NULL,
        serial INTEGER NOT NULL,
        fingerprint VARCHAR(64) NOT NULL,
        response {{text}} NOT NULL,
        created {{datetime}} NOT NULL,
        CONSTRAINT {_V7_UNIQUE} UNIQUE (account, peer, digest)
    )"""


def _v7_gateway(txn, today: str) -> None:
    """kgw_request_journal keyed by (account, peer, digest), its rows kept.

    On MariaDB every DDL statement commits at once: each step looks at what a run that failed
    half-way left (the new table built or filled, the old one dropped, the table renamed, an
    index made) and goes on from there (the table renamed already has the named unique
    constraint's index; SQLite names that index itself, but there the upgrade is one
    transaction, as on PostgreSQL)."""
    ddl = txn.engine.ddl
    old_exists = _has_table(txn, _V7_JOURNAL)
    if old_exists and _V7_UNIQUE in _index_names(txn, _V7_JOURNAL):
        old_exists = False  # renamed already: only indexes may be missing
    elif old_exists:
        if _has_table(txn, _V7_BUILT):
            txn.execute(f"DELETE FROM {_V7_BUILT}")  # a copy made before a failed DROP
        else:
            txn.execute(ddl(_v7_journal_table(_V7_BUILT)))
        txn.execute(
            f"INSERT INTO {_V7_BUILT} ({_V7_COLUMNS}) SELECT {_V7_COLUMNS} FROM {_V7_JOURNAL} "
            "ORDER BY id"
        )
        txn.execute(f"DROP TABLE {_V7_JOURNAL}")
    if _has_table(txn, _V7_BUILT):
        txn.execute(f"ALTER TABLE {_V7_BUILT} RENAME TO {_V7_JOURNAL}")
        if txn.engine.name == "postgresql":
            # The names a table created as kgw_request_journal has (the old table's went
            # with it).
            txn.execute(f"ALTER SEQUENCE {_V7_BUILT}_id_seq RENAME TO {_V7_JOURNAL}_id_seq")
            txn.execute(f"ALTER INDEX {_V7_BUILT}_pkey RENAME TO {_V7_JOURNAL}_pkey")
    present = _index_names(txn, _V7_JOURNAL)
    for name, columns in _V7_INDEXES:
        if name not in present:
            txn.execute(f"CREATE INDEX {name} ON {_V7_JOURNAL} ({columns})")


def _index_names(txn, table: str) -> set[str]:
    """Lower-case names of the indexes of ``table`` (unique constraints included)."""
    from koha_gateway.db import koha

    engine = txn.engine.name
    if engine == "sqlite":
        sql = "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?"
    elif engine == "postgresql":
        sql = (
            "SELECT indexname AS name FROM pg_indexes "
            "WHERE schemaname = current_schema() AND tablename = ?"
        )
    else:
        sql = (
            "SELECT DISTINCT index_name AS name FROM information_schema.statistics "
            f"WHERE table_schema = {koha._schema_expression(engine)} AND table_name = ?"
        )
    return {str(row["name"]).lower() for row in txn.query(sql, (table,))}


def _v4_sysprefs(txn, today: str) -> None:
    _add_missing_sysprefs(txn, CALENDAR_SYSPREFS)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "Koha-shaped circulation tables and system preferences",
        koha=(*_V1, _v1_sysprefs),
    ),
    Migration(
        2,
        "request journal and SIP item properties",
        koha=(_V2_JOURNAL, *_V2_KOHA),
    ),
    Migration(
        3,
        "Koha's conventions: NULL for any in circulation rules, biblioitems, restriction, "
        "debit and credit types, action_logs, zebraqueue; kgw_ tables for the gateway's own data",
        koha=(_v3_koha,),
        gateway=(_v3_gateway,),
    ),
    Migration(
        4,
        "Koha's calendar: repeatable and special holidays",
        koha=(*_V4_KOHA_TABLES, _v4_sysprefs),
        gateway=_V4_KGW_TABLES,
    ),
    Migration(
        5,
        "kgw_request_journal: one row per terminal, replaces sip_request_journal",
        koha=_V5_KOHA,
        gateway=_V5_GATEWAY,
    ),
    Migration(6, "borrowers.sex", koha=_V6_KOHA_TABLES),
    Migration(
        7,
        "kgw_request_journal: one row per request of a terminal (account, peer, digest)",
        gateway=(_v7_gateway,),
    ),
)

LATEST = MIGRATIONS[-1].version


def current_version(txn) -> int:
    """The schema version of the database behind ``txn``; 0 when the gateway has none there."""
    for table in ("kgw_schema_version", "schema_version"):
        if _has_table(txn, table):
            return int(txn.scalar(f"SELECT MAX(version) AS v FROM {table}") or 0)
    return 0


def migrate(txn, target: int = LATEST, *, today: str | None = None) -> tuple[int, int]:
    """Bring the schema up to ``target`` in place; returns ``(from_version, to_version)``.

    On a Koha database only the ``gateway`` steps run. ``today`` (``YYYY-MM-DD``, default the
    local date) is the ``datecreated`` given to existing titles by version 3.
    """
    from koha_gateway.db import koha

    start = current_version(txn)
    if start > LATEST:
        raise RuntimeError(
            f"database schema version {start} is newer than this koha-gateway ({LATEST})"
        )
    koha_database = koha.is_koha_database(txn)
    # Version numbers were assigned ahead of time and merged out of order on development
    # databases: every migration not yet recorded is applied, also one below the newest.
    applied = _applied_versions(txn)
    if start == 0 and not _has_table(txn, "kgw_schema_version"):
        if koha_database or target >= 3:
            txn.execute(txn.engine.ddl(_KGW_SCHEMA_VERSION))
        elif not _has_table(txn, "schema_version"):
            # The layout of versions 1 and 2, so that an upgrade from them can be tested.
            txn.execute(
                txn.engine.ddl(
                    "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, "
                    "description {text}, applied {datetime})"
                )
            )
    now = datetime.now()
    today = today or now.strftime("%Y-%m-%d")
    for migration in MIGRATIONS:
        if migration.version in applied or migration.version > target:
            continue
        steps = migration.gateway + (() if koha_database else migration.koha)
        for step in steps:
            if callable(step):
                step(txn, today)
            else:
                txn.execute(txn.engine.ddl(step))
        table = "kgw_schema_version" if _has_table(txn, "kgw_schema_version") else "schema_version"
        txn.execute(
            f"INSERT INTO {table} (version, description, applied) VALUES (?, ?, ?)",
            (migration.version, migration.description, now.strftime("%Y-%m-%d %H:%M:%S")),
        )
    return start, max(start, min(target, LATEST))


def _applied_versions(txn) -> set[int]:
    for table in ("kgw_schema_version", "schema_version"):
        if _has_table(txn, table):
            return {int(row["version"]) for row in txn.query(f"SELECT version FROM {table}")}
    return set()


def _has_table(txn, name: str) -> bool:
    from koha_gateway.db import koha

    return koha.has_table(txn, name)


def _add_missing_sysprefs(txn, prefs: dict[str, str]) -> None:
    """Insert the preferences of ``prefs`` that the database does not have (any case)."""
    known = {
        str(row["variable"]).lower()
        for row in txn.query("SELECT variable FROM systempreferences", ())
    }
    missing = [(name, value) for name, value in sorted(prefs.items()) if name.lower() not in known]
    if missing:
        txn.executemany("INSERT INTO systempreferences (variable, value) VALUES (?, ?)", missing)
