"""``koha-gateway-admin``: prepare and look after the gateway's ILS database.

::

    koha-gateway-admin [--database URL | --koha-conf PATH] COMMAND [options]

Commands:

``init``
    create the schema, or upgrade an older one in place; prints ``from -> to``. On a Koha
    database (MariaDB/MySQL) only the gateway's own ``kgw_`` tables are created: Koha's tables
    are Koha's.
``load-demo``
    load the demo data set (creates the schema first when needed); does nothing, with a
    message, when any of it is already there. On a Koha database only into an empty one (no
    patrons): it is meant for tests and trials, never for a library's live data.
``add-branch CODE NAME [--address] [--city] [--zipcode] [--phone] [--email]``,
``add-category CODE DESCRIPTION``, ``add-itemtype CODE DESCRIPTION``
    libraries, patron categories and item types.
``add-patron --cardnumber --userid --surname --firstname --branch --category --password
--expiry YYYY-MM-DD [--circulate] [--superlibrarian] [contact and personal details]``
    a patron or staff user; ``--circulate`` grants the permission a SIP account needs. Without
    ``--password`` the password is asked for (or read from standard input). The details are
    Koha's ``borrowers`` columns: ``--address --address2 --city --state --zipcode --country``
    (SIP2 BD), ``--phone`` (BF), ``--mobile``, ``--email`` (BE), ``--dateofbirth YYYY-MM-DD``
    (PB), ``--sex F|M|O|N``, ``--title``, ``--opacnote`` (a screen message).
``set-password USERID_OR_CARDNUMBER [--password P]``
    a new password (asked for when not given), stored as a bcrypt hash.
``add-item --barcode --title --branch --itemtype [--biblionumber N] [--callnumber] [--author]
[--location] [--ccode] [--price] [--replacementprice] [--materials] [--notforloan N]
[--damaged] [--holdingbranch]``
    an item of a new title, or another copy of title ``--biblionumber``.
``set-currency CODE [--symbol S] [--isocode ISO]``, ``show-currency``
    the active currency (SIP2 BH): added or changed, and made the only active one, as Koha's
    currency administration does.
``set-syspref NAME VALUE``, ``set-rule NAME VALUE [--branch] [--category] [--itemtype]``
    Koha system preferences and circulation rules. A running gateway reads the preferences
    when it starts, every minute and on reload (SIGHUP); rules are read with each request.
``show-patron USERID_OR_CARDNUMBER``
    the patron's record, the details that are set, and standing (never the password hash).
``add-holiday --branch CODE --date YYYY-MM-DD [--title T] [--repeat yearly|weekly] [--weekday N]
[--exception]``
    a day the library is closed, in Koha's calendar: that date only, every year on that day
    (``--repeat yearly``), or every week on weekday N, 0 = Sunday ... 6 = Saturday (``--repeat
    weekly``, the date's weekday when ``--weekday`` is not given); ``--exception`` opens the
    date although a repeatable closing closes it. Due dates and fines use it from the next
    request on.
``show-holidays CODE``
    the library's closed days and exceptions.
``ldap-test --koha-conf PATH [--user ID [--password [P]]]``
    check koha-conf.xml's ``<ldapserver>`` as the gateway uses it: each host's DNS, TCP, TLS and
    bind, the search for the user, the entry and what the mapping would write into
    ``borrowers``, and with a password whether LDAP accepts it (``--password`` alone asks for
    it). Needs no database; exit status 1 when a check fails.

The database is ``--database URL`` (``sqlite:///abs/path.sqlite`` or ``postgresql://...``), or
the one a Koha ``koha-conf.xml`` names (``--koha-conf``), or ``$KOHA_GATEWAY_DATABASE``. Every
error is one line on standard error and exit status 1; passwords are never printed.
"""

from __future__ import annotations

import argparse
import getpass
import os
import re
import sys
from collections.abc import Sequence
from datetime import date, datetime

from koha_gateway import clock, demo
from koha_gateway.auth.passwords import hash_password
from koha_gateway.db import koha, schema
from koha_gateway.db.url import InvalidDatabaseURL
from koha_gateway.ils import calendar as ils_calendar
from koha_gateway.ils import patrons as ils_patrons
from koha_gateway.ils import rules as ils_rules
from koha_gateway.ils import sysprefs as ils_sysprefs
from koha_gateway.ils.context import CircContext

__all__ = ["AdminError", "main"]

PROG = "koha-gateway-admin"
ENV_DATABASE = "KOHA_GATEWAY_DATABASE"
_NEEDS_PASSWORD = frozenset({"add-patron", "set-password"})
_CODE = re.compile(r"^[A-Za-z0-9_-]{1,10}$")


class AdminError(Exception):
    """A problem to report on one line, with exit status 1."""


# -- helpers ---------------------------------------------------------------------------------


def _now() -> datetime:
    return clock.default().now()


def _code(value: str, what: str) -> str:
    if not _CODE.match(value):
        raise AdminError(f"{what} {value!r} must be 1 to 10 letters, digits, '-' or '_'")
    return value


def _date(value: str, what: str) -> str:
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise AdminError(f"{what} {value!r} is not a date (YYYY-MM-DD)") from None


def _birth_date(value: str | None, today: date) -> str | None:
    if value is None:
        return None
    birth = _date(value, "--dateofbirth")
    if birth > today.isoformat():
        raise AdminError(f"--dateofbirth {value!r} is in the future")
    return birth


#: ``borrowers.sex`` as Koha's patron form stores it: female, male, other; N for an
#: organisation. Koha's "none specified" is no value at all (leave ``--sex`` out).
SEX_VALUES = ("F", "M", "O", "N")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _sex(value: str | None) -> str | None:
    if value is None:
        return None
    code = value.strip().upper()
    if code not in SEX_VALUES:
        raise AdminError(f"--sex {value!r} must be one of {', '.join(SEX_VALUES)}")
    return code


def _email(value: str | None, what: str = "--email") -> str | None:
    if value is None:
        return None
    address = value.strip()
    if not _EMAIL.match(address):
        raise AdminError(f"{what} {value!r} is not an email address")
    return address


def _text(value: str | None) -> str | None:
    """An optional free-text option: stripped, and ``None`` when empty."""
    if value is None:
        return None
    return value.strip() or None


def _amount(value: float | None, what: str) -> float | None:
    if value is None:
        return None
    if value < 0:
        raise AdminError(f"{what} must not be negative")
    return round(value, 2)


def _require_schema(txn) -> None:
    version = schema.current_version(txn)
    if version == 0:
        raise AdminError(f"the database has no schema yet: run '{PROG} init' first")
    if version < schema.LATEST:
        raise AdminError(
            f"the database schema is version {version}, this program needs {schema.LATEST}: "
            f"run '{PROG} init' to upgrade it"
        )
    if version > schema.LATEST:
        raise AdminError(
            f"the database schema is version {version}, newer than this program "
            f"({schema.LATEST}): upgrade koha-gateway"
        )


def _exists(txn, table: str, column: str, value) -> bool:
    return txn.one(f"SELECT 1 AS x FROM {table} WHERE {column} = ?", (value,)) is not None


def _read_password(args, prompt_twice: bool = True) -> str:
    """``--password``, else a prompt on the terminal, else one line of standard input.

    Read before the transaction starts, so that no database lock is held while waiting.
    """
    if args.password is not None:
        password = args.password
    elif sys.stdin is not None and sys.stdin.isatty():
        password = getpass.getpass("New password: ")
        if prompt_twice and getpass.getpass("Repeat the password: ") != password:
            raise AdminError("the passwords do not match")
    else:
        line = sys.stdin.readline() if sys.stdin is not None else ""
        password = line.rstrip("\r\n")
    if not password:
        raise AdminError("the password must not be empty")
    return password


def _database_url(args) -> str:
    if args.database:
        return args.database
    if args.koha_conf:
        from koha_gateway.config.errors import ConfigError
        from koha_gateway.config.kohaconf import load_koha_conf

        try:
            return load_koha_conf(args.koha_conf).database_url
        except ConfigError as exc:
            raise AdminError(str(exc)) from None
        except OSError as exc:
            raise AdminError(f"{args.koha_conf}: {exc.strerror or exc}") from None
    url = os.environ.get(ENV_DATABASE)
    if url:
        return url
    raise AdminError(
        f"no database: give --database URL or --koha-conf PATH (or set {ENV_DATABASE})"
    )


# -- commands --------------------------------------------------------------------------------


def cmd_init(txn, args, out) -> None:
    before, after = schema.migrate(txn)
    if koha.is_koha_database(txn):
        version = koha.KohaSchema(koha.koha_version(txn)).version_text or "unknown"
        print(
            f"Koha database (Koha version {version}): only the gateway's kgw_ tables are "
            "created or upgraded",
            file=out,
        )
    if before == after:
        print(f"schema is up to date (version {after})", file=out)
    else:
        print(f"schema upgraded: version {before} -> {after}", file=out)


def cmd_load_demo(txn, args, out) -> None:
    if koha.is_koha_database(txn) and koha.has_table(txn, "borrowers"):
        patrons = int(txn.scalar("SELECT COUNT(*) AS n FROM borrowers") or 0)
        if patrons:
            raise AdminError(
                f"this Koha database already has {patrons} patrons: load-demo only fills an "
                "empty Koha database (for tests and trials), never a library's own"
            )
    before, after = schema.migrate(txn)
    if before != after:
        print(f"schema upgraded: version {before} -> {after}", file=out)
    present = demo.conflicts(txn)
    if present:
        shown = ", ".join(present[:3]) + (
            f" and {len(present) - 3} more" if len(present) > 3 else ""
        )
        print(f"demo data already present ({shown}); nothing loaded", file=out)
        return
    counts = demo.load(txn, _now())
    print(
        "demo data loaded: {branches} branches, {staff} staff users, {patrons} patrons, "
        "{items} items, {loans} loans, {holds} holds, {fines} fines".format(**counts),
        file=out,
    )


def cmd_add_branch(txn, args, out) -> None:
    _require_schema(txn)
    code = _code(args.code, "branch code")
    if _exists(txn, "branches", "branchcode", code):
        raise AdminError(f"branch {code} already exists")
    txn.execute(
        "INSERT INTO branches (branchcode, branchname, branchaddress1, branchcity, branchzip, "
        "branchphone, branchemail) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            code,
            args.name,
            _text(args.address),
            _text(args.city),
            _text(args.zipcode),
            _text(args.phone),
            _email(args.email),
        ),
    )
    print(f"branch {code} added: {args.name}", file=out)


def cmd_add_category(txn, args, out) -> None:
    _require_schema(txn)
    code = _code(args.code, "category code")
    if _exists(txn, "categories", "categorycode", code):
        raise AdminError(f"patron category {code} already exists")
    if args.noissuescharge is not None and args.noissuescharge < 0:
        raise AdminError("--noissuescharge must not be negative")
    values = {
        "categorycode": code,
        "description": args.description,
        "enrolmentperiod": args.enrolmentperiod,
        "category_type": "S" if args.staff else "A",
    }
    if args.noissuescharge is not None:
        if "noissuescharge" not in koha.columns(txn, "categories"):
            raise AdminError(
                "--noissuescharge needs categories.noissuescharge (Koha 24.05 and later); "
                "this database has the noissuescharge system preference only"
            )
        values["noissuescharge"] = round(args.noissuescharge, 2)
    txn.execute(
        f"INSERT INTO categories ({', '.join(values)}) VALUES ({', '.join('?' * len(values))})",
        tuple(values.values()),
    )
    print(f"patron category {code} added: {args.description}", file=out)


def cmd_add_itemtype(txn, args, out) -> None:
    _require_schema(txn)
    code = _code(args.code, "item type")
    if _exists(txn, "itemtypes", "itemtype", code):
        raise AdminError(f"item type {code} already exists")
    if not re.fullmatch(r"\d{3}", args.media_type):
        raise AdminError(f"--media-type {args.media_type!r} must be a 3-digit SIP2 media type")
    txn.execute(
        "INSERT INTO itemtypes (itemtype, description, notforloan, rentalcharge, sip_media_type) "
        "VALUES (?, ?, ?, 0, ?)",
        (code, args.description, 1 if args.notforloan else 0, args.media_type),
    )
    if args.magnetic:
        txn.execute(
            "INSERT INTO kgw_itemtype_properties (itemtype, sip_magnetic) VALUES (?, 1)", (code,)
        )
    print(f"item type {code} added: {args.description}", file=out)


def cmd_add_patron(txn, args, out) -> None:
    _require_schema(txn)
    if not _exists(txn, "branches", "branchcode", args.branch):
        raise AdminError(f"unknown branch {args.branch} (add it with '{PROG} add-branch')")
    if not _exists(txn, "categories", "categorycode", args.category):
        raise AdminError(
            f"unknown patron category {args.category} (add it with '{PROG} add-category')"
        )
    expiry = _date(args.expiry, "--expiry")
    if not args.cardnumber.strip() or not args.userid.strip():
        raise AdminError("--cardnumber and --userid must not be empty")
    if ils_patrons.find_patron(txn, args.cardnumber) is not None or _exists(
        txn, "borrowers", "userid", args.cardnumber
    ):
        raise AdminError(f"a patron with cardnumber or userid {args.cardnumber} already exists")
    if ils_patrons.find_patron(txn, args.userid) is not None:
        raise AdminError(f"a patron with cardnumber or userid {args.userid} already exists")
    password = args.password
    flags = (schema.CIRCULATE if args.circulate else 0) | (
        schema.SUPERLIBRARIAN if args.superlibrarian else 0
    )
    now = _now()
    details = {
        "title": _text(args.title),
        "email": _email(args.email),
        "phone": _text(args.phone),
        "mobile": _text(args.mobile),
        "address": _text(args.address),
        "address2": _text(args.address2),
        "city": _text(args.city),
        "state": _text(args.state),
        "zipcode": _text(args.zipcode),
        "country": _text(args.country),
        "dateofbirth": _birth_date(args.dateofbirth, now.date()),
        "sex": _sex(args.sex),
        "opacnote": _text(args.opacnote),
    }
    columns = (
        "cardnumber, userid, password, surname, firstname, branchcode, categorycode, "
        "dateenrolled, dateexpiry, flags, updated_on, " + ", ".join(details)
    )
    values = (
        args.cardnumber.strip(),
        args.userid.strip(),
        hash_password(password),
        args.surname,
        args.firstname,
        args.branch,
        args.category,
        now.date().isoformat(),
        expiry,
        flags,
        now.strftime("%Y-%m-%d %H:%M:%S"),
        *details.values(),
    )
    number = txn.insert(
        f"INSERT INTO borrowers ({columns}) VALUES ({', '.join('?' * len(values))})",
        values,
        pk="borrowernumber",
    )
    rights = _permissions(flags)
    print(
        f"patron {args.cardnumber} ({args.userid}) added as borrowernumber {number}"
        + (f" with {rights}" if rights != "none" else ""),
        file=out,
    )


def cmd_set_password(txn, args, out) -> None:
    _require_schema(txn)
    patron = ils_patrons.find_patron(txn, args.patron, lock=True)
    if patron is None:
        raise AdminError(f"no patron with cardnumber or userid {args.patron}")
    password = args.password
    txn.execute(
        "UPDATE borrowers SET password = ?, login_attempts = 0, updated_on = ? "
        "WHERE borrowernumber = ?",
        (hash_password(password), _now().strftime("%Y-%m-%d %H:%M:%S"), patron["borrowernumber"]),
    )
    print(f"password of {patron['userid'] or patron['cardnumber']} changed", file=out)


def cmd_add_item(txn, args, out) -> None:
    _require_schema(txn)
    barcode = args.barcode.strip()
    if not barcode:
        raise AdminError("--barcode must not be empty")
    if _exists(txn, "items", "barcode", barcode):
        raise AdminError(f"an item with barcode {barcode} already exists")
    holdingbranch = args.holdingbranch or args.branch
    for branch in {args.branch, holdingbranch}:
        if not _exists(txn, "branches", "branchcode", branch):
            raise AdminError(f"unknown branch {branch} (add it with '{PROG} add-branch')")
    if not _exists(txn, "itemtypes", "itemtype", args.itemtype):
        raise AdminError(f"unknown item type {args.itemtype} (add it with '{PROG} add-itemtype')")
    price = _amount(args.price, "--price")
    replacementprice = _amount(args.replacementprice, "--replacementprice")
    now = _now()
    today = now.date().isoformat()
    if args.biblionumber is not None:
        if args.title is not None or args.author is not None:
            raise AdminError(
                "--biblionumber adds a copy of that title: leave out --title and --author"
            )
        biblio = txn.one(
            "SELECT biblionumber, title FROM biblio WHERE biblionumber = ?", (args.biblionumber,)
        )
        if biblio is None:
            raise AdminError(f"no title with biblionumber {args.biblionumber}")
        biblionumber, title = biblio["biblionumber"], biblio["title"]
        biblioitemnumber = txn.scalar(
            "SELECT MIN(biblioitemnumber) AS n FROM biblioitems WHERE biblionumber = ?",
            (biblionumber,),
        )
        if biblioitemnumber is None:  # a title without its biblioitems row (not Koha's)
            biblioitemnumber = txn.insert(
                "INSERT INTO biblioitems (biblionumber, itemtype) VALUES (?, ?)",
                (biblionumber, args.itemtype),
                pk="biblioitemnumber",
            )
    else:
        if not args.title or not args.title.strip():
            raise AdminError("give --title for a new title, or --biblionumber for another copy")
        title = args.title
        biblionumber, biblioitemnumber = demo.add_title(
            txn, title=title, author=args.author, itemtype=args.itemtype, created=today
        )
    location = _text(args.location)
    # What Koha::Item->store writes for a new item: its biblioitemnumber, the accession date,
    # the permanent location equal to the location, no loans yet.
    itemnumber = txn.insert(
        "INSERT INTO items (biblionumber, biblioitemnumber, barcode, dateaccessioned, "
        "homebranch, holdingbranch, itype, itemcallnumber, location, permanent_location, ccode, "
        "materials, price, replacementprice, notforloan, damaged, issues, datelastseen) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?)",
        (
            biblionumber,
            biblioitemnumber,
            barcode,
            today,
            args.branch,
            holdingbranch,
            args.itemtype,
            _text(args.callnumber),
            location,
            location,
            _text(args.ccode),
            _text(args.materials),
            price,
            replacementprice,
            args.notforloan,
            1 if args.damaged else 0,
            now.strftime("%Y-%m-%d %H:%M:%S"),
        ),
        pk="itemnumber",
    )
    print(
        f"item {barcode} added as itemnumber {itemnumber} of biblionumber {biblionumber}: "
        f"{title or ''}",
        file=out,
    )


#: Printed after set-syspref: the gateway keeps the preferences it read at start-up.
SYSPREF_RELOAD_HINT = (
    "a running gateway uses it within a minute, or at once after a reload (koha-sip --reload)"
)


def cmd_set_syspref(txn, args, out) -> None:
    _require_schema(txn)
    if args.name.lower() == "version":
        raise AdminError("Version is Koha's own database version; it is not set here")
    known = ils_sysprefs.load(txn)
    ils_sysprefs.set_syspref(txn, args.name, args.value)
    note = "" if any(n.lower() == args.name.lower() for n in known) else " (new preference)"
    print(f"{args.name} = {args.value!r}{note}", file=out)
    print(SYSPREF_RELOAD_HINT, file=out)


def cmd_set_rule(txn, args, out) -> None:
    _require_schema(txn)
    for table, column, value, what in (
        ("branches", "branchcode", args.branch, "branch"),
        ("categories", "categorycode", args.category, "patron category"),
        ("itemtypes", "itemtype", args.itemtype, "item type"),
    ):
        if value not in (None, ils_rules.ANY) and not _exists(txn, table, column, value):
            raise AdminError(f"unknown {what} {value}")
    ils_rules.set_rule(
        txn,
        args.name,
        args.value,
        branchcode=args.branch,
        categorycode=args.category,
        itemtype=args.itemtype,
    )
    print(
        f"rule {args.name} = {args.value!r} for branch {args.branch or 'any'}, category "
        f"{args.category or 'any'}, item type {args.itemtype or 'any'}",
        file=out,
    )


def cmd_set_currency(txn, args, out) -> None:
    """Koha's currency administration: the currency is added (or changed) and becomes the
    only active one (``UPDATE currency SET active = 0`` first)."""
    _require_schema(txn)
    code = args.code.strip()
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,10}", code):
        raise AdminError(f"currency {args.code!r} must be 1 to 10 letters, digits, '-' or '_'")
    isocode = (args.isocode or code).strip().upper()
    if not re.fullmatch(r"[A-Z]{3}", isocode):
        raise AdminError(
            f"the ISO code {isocode!r} must be 3 letters (give --isocode for currency {code})"
        )
    symbol = args.symbol
    if symbol is not None and not 1 <= len(symbol) <= 5:
        raise AdminError("--symbol must be 1 to 5 characters")
    existing = txn.one("SELECT currency, symbol FROM currency WHERE currency = ?", (code,))
    txn.execute("UPDATE currency SET active = 0")
    if existing is None:
        txn.execute(
            "INSERT INTO currency (currency, symbol, isocode, active) VALUES (?, ?, ?, 1)",
            (code, symbol, isocode),
        )
    else:
        symbol = symbol if symbol is not None else existing["symbol"]
        txn.execute(
            "UPDATE currency SET symbol = ?, isocode = ?, active = 1 WHERE currency = ?",
            (symbol, isocode, code),
        )
    shown = f" ({symbol})" if symbol else ""
    print(f"active currency: {code}{shown}; SIP2 BH {isocode}", file=out)


def cmd_show_currency(txn, args, out) -> None:
    _require_schema(txn)
    rows = txn.query("SELECT currency, symbol, isocode, active FROM currency ORDER BY currency")
    for row in rows:
        mark = "*" if int(row["active"] or 0) else " "
        print(
            f"{mark} {row['currency']:10} {row['isocode'] or '':5} {row['symbol'] or ''}",
            file=out,
        )
    active = [row for row in rows if int(row["active"] or 0)]
    if not active:
        print("no active currency: SIP2 BH is USD, as Koha sends it", file=out)


def _permissions(flags: int) -> str:
    names = []
    if flags & schema.SUPERLIBRARIAN:
        names.append("superlibrarian")
    if flags & schema.CIRCULATE:
        names.append("circulate")
    return ", ".join(names) or "none"


def _patron_details(patron: dict) -> list[tuple[str, str]]:
    """The contact and personal details that are set, as show-patron prints them."""
    address = ", ".join(
        str(patron[name]).strip()
        for name in ("address", "address2", "city", "state", "zipcode", "country")
        if patron.get(name) and str(patron[name]).strip()
    )
    rows = [
        ("title", patron.get("title")),
        ("address", address),
        ("phone", patron.get("phone")),
        ("mobile", patron.get("mobile")),
        ("email", patron.get("email")),
        ("date of birth", str(patron["dateofbirth"])[:10] if patron.get("dateofbirth") else None),
        ("sex", patron.get("sex")),
        ("OPAC note", patron.get("opacnote")),
    ]
    return [(label, value) for label, value in rows if value]


def cmd_show_patron(txn, args, out) -> None:
    _require_schema(txn)
    patron = ils_patrons.find_patron(txn, args.patron)
    if patron is None:
        raise AdminError(f"no patron with cardnumber or userid {args.patron}")
    prefs = ils_sysprefs.Sysprefs(ils_sysprefs.load(txn))
    ctx = CircContext(branch=patron["branchcode"], now=_now(), sysprefs=prefs)
    state = ils_patrons.patron_state(txn, patron, ctx)
    number = patron["borrowernumber"]
    loans = ils_patrons.current_loans(txn, number)
    standing = []
    if state.debarred:
        standing.append(
            "restricted" + (f" ({state.debarred_comment})" if state.debarred_comment else "")
        )
    if state.expired:
        standing.append(f"expired on {state.dateexpiry}")
    if state.fine_blocked:
        standing.append("blocked by fines")
    if state.card_lost:
        standing.append("card lost or no valid address")
    rows = [
        ("borrowernumber", number),
        ("cardnumber", patron["cardnumber"]),
        ("userid", patron["userid"]),
        ("name", " ".join(p for p in (patron["firstname"], patron["surname"]) if p)),
        ("branch", patron["branchcode"]),
        ("category", f"{patron['categorycode']} ({patron['category_description'] or ''})"),
        ("expiry", patron["dateexpiry"] or ""),
        *_patron_details(patron),
        ("permissions", _permissions(int(patron["flags"] or 0))),
        ("password", "set" if patron["password"] else "not set"),
        ("standing", "; ".join(standing) or "good"),
        ("SIP2 status", repr(state.status_string)),
        ("fines", f"{state.fines:.2f} (limit {state.fee_limit:.2f})"),
        ("loans", f"{len(loans)} ({state.overdue_count} overdue)"),
        ("holds waiting", len(ils_patrons.waiting_holds(txn, number))),
        ("holds pending", len(ils_patrons.unavailable_holds(txn, number))),
    ]
    for label, value in rows:
        print(f"{label + ':':16} {value}", file=out)
    for loan in loans:
        print(f"  {loan['barcode']}  due {loan['date_due']}  {loan['title'] or ''}", file=out)


_WEEKDAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")


def cmd_add_holiday(txn, args, out) -> None:
    _require_schema(txn)
    branch = args.branch
    if not _exists(txn, "branches", "branchcode", branch):
        raise AdminError(f"unknown branch {branch}")
    day = date.fromisoformat(_date(args.date, "date")) if args.date else None
    weekday = args.weekday
    if weekday is not None and args.repeat != "weekly":
        raise AdminError("--weekday goes with --repeat weekly")
    if args.repeat == "weekly":
        if args.exception:
            raise AdminError("an exception is one date: not with --repeat")
        if weekday is None:
            if day is None:
                raise AdminError("--repeat weekly needs --weekday N (0 = Sunday) or --date")
            weekday = day.isoweekday() % 7
        if not 0 <= weekday <= 6:
            raise AdminError(f"weekday {weekday} is not 0 (Sunday) to 6 (Saturday)")
        ils_calendar.add_holiday(txn, branch, weekday=weekday, title=args.title)
        print(f"{branch} closed every {_WEEKDAYS[weekday]}", file=out)
        return
    if day is None:
        raise AdminError("give the date: --date YYYY-MM-DD")
    if args.repeat == "yearly":
        if args.exception:
            raise AdminError("an exception is one date: not with --repeat")
        ils_calendar.add_holiday(txn, branch, on=day, yearly=True, title=args.title)
        print(f"{branch} closed every year on {day.strftime('%d %B')}", file=out)
        return
    ils_calendar.add_holiday(txn, branch, on=day, exception=args.exception, title=args.title)
    what = "open (an exception)" if args.exception else "closed"
    print(f"{branch} {what} on {day.isoformat()}", file=out)


def cmd_show_holidays(txn, args, out) -> None:
    _require_schema(txn)
    if not _exists(txn, "branches", "branchcode", args.branch):
        raise AdminError(f"unknown branch {args.branch}")
    rows = ils_calendar.holidays_of(txn, args.branch)
    if not rows:
        print(f"{args.branch}: no closed days", file=out)
    for row in rows:
        if row["kind"] == "weekly":
            when = f"every {_WEEKDAYS[row['weekday']]}"
        elif row["kind"] == "yearly":
            when = f"every year on {date(2000, row['month'], row['day']).strftime('%d %B')}"
        else:
            day = f"{row['year']:04d}-{row['month']:02d}-{row['day']:02d}"
            when = f"{day} ({'open' if row['kind'] == 'exception' else 'closed'})"
        title = f"  {row['title']}" if row["title"] else ""
        print(f"{args.branch}  {when}{title}", file=out)


# -- command line ------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Prepare and look after the database of the koha-gateway SIP2 server: "
        "Koha's database (init creates only the gateway's kgw_ tables there) or a database of "
        "the gateway's own.",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--database",
        metavar="URL",
        help="mysql://..., postgresql://... or sqlite:///abs/path.sqlite",
    )
    source.add_argument(
        "--koha-conf", metavar="PATH", help="read the database from a Koha koha-conf.xml"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    sub.add_parser("init", help="create or upgrade the schema").set_defaults(run=cmd_init)
    sub.add_parser("load-demo", help="load the demo data set").set_defaults(run=cmd_load_demo)

    p = sub.add_parser("add-branch", help="add a library")
    p.add_argument("code")
    p.add_argument("name")
    p.add_argument("--address", help="first address line (branchaddress1)")
    p.add_argument("--city")
    p.add_argument("--zipcode", help="postal code (branchzip)")
    p.add_argument("--phone")
    p.add_argument("--email")
    p.set_defaults(run=cmd_add_branch)

    p = sub.add_parser("add-category", help="add a patron category")
    p.add_argument("code")
    p.add_argument("description")
    p.add_argument("--noissuescharge", type=float, help="fines that block circulation")
    p.add_argument("--enrolmentperiod", type=int, default=None, help="months")
    p.add_argument("--staff", action="store_true", help="a staff category (type S)")
    p.set_defaults(run=cmd_add_category)

    p = sub.add_parser("add-itemtype", help="add an item type")
    p.add_argument("code")
    p.add_argument("description")
    p.add_argument("--notforloan", action="store_true")
    p.add_argument("--media-type", default="001", help="SIP2 media type (001 = book)")
    p.add_argument("--magnetic", action="store_true", help="magnetic media")
    p.set_defaults(run=cmd_add_itemtype)

    p = sub.add_parser("add-patron", help="add a patron or staff user")
    p.add_argument("--cardnumber", required=True)
    p.add_argument("--userid", required=True)
    p.add_argument("--surname", required=True)
    p.add_argument("--firstname", default=None)
    p.add_argument("--email", default=None)
    p.add_argument("--branch", required=True)
    p.add_argument("--category", required=True)
    p.add_argument("--password", default=None, help="asked for when not given")
    p.add_argument("--expiry", required=True, metavar="YYYY-MM-DD")
    p.add_argument("--circulate", action="store_true", help="grant the circulate permission")
    p.add_argument("--superlibrarian", action="store_true")
    p.add_argument("--title", help="salutation (Mr, Ms, Dr, ...)")
    p.add_argument("--address", help="first address line")
    p.add_argument("--address2", help="second address line")
    p.add_argument("--city")
    p.add_argument("--state")
    p.add_argument("--zipcode", help="postal code")
    p.add_argument("--country")
    p.add_argument("--phone", help="primary phone")
    p.add_argument("--mobile", help="other phone")
    p.add_argument("--dateofbirth", metavar="YYYY-MM-DD", help="date of birth")
    p.add_argument(
        "--sex", help="F, M, O (other) or N (an organisation); leave out for none specified"
    )
    p.add_argument("--opacnote", help="a note shown to the patron (a SIP2 screen message)")
    p.set_defaults(run=cmd_add_patron)

    p = sub.add_parser("set-password", help="change a password")
    p.add_argument("patron", metavar="USERID_OR_CARDNUMBER")
    p.add_argument("--password", default=None, help="asked for when not given")
    p.set_defaults(run=cmd_set_password)

    p = sub.add_parser("add-item", help="add an item of a new title, or another copy")
    p.add_argument("--barcode", required=True)
    p.add_argument("--title", default=None, help="a new title (unless --biblionumber)")
    p.add_argument("--author", default=None)
    p.add_argument("--biblionumber", type=int, default=None, help="add a copy of this title")
    p.add_argument("--branch", required=True, help="home library")
    p.add_argument("--holdingbranch", default=None, help="where it is (default: --branch)")
    p.add_argument("--itemtype", required=True)
    p.add_argument("--callnumber", default=None)
    p.add_argument("--location", default=None, help="shelving location code")
    p.add_argument("--ccode", default=None, help="collection code")
    p.add_argument("--materials", default=None, help="additional materials (parts)")
    p.add_argument("--price", type=float, default=None)
    p.add_argument("--replacementprice", type=float, default=None)
    p.add_argument(
        "--notforloan", type=int, default=0, help="not-for-loan status (negative: on order)"
    )
    p.add_argument("--damaged", action="store_true")
    p.set_defaults(run=cmd_add_item)

    p = sub.add_parser("set-syspref", help="set a Koha system preference")
    p.add_argument("name")
    p.add_argument("value")
    p.set_defaults(run=cmd_set_syspref)

    p = sub.add_parser("set-rule", help="set a circulation rule")
    p.add_argument("name", help="issuelength, renewalsallowed, maxissueqty, fine, ...")
    p.add_argument("value")
    p.add_argument("--branch", default=None, help="a library (default: any)")
    p.add_argument("--category", default=None, help="a patron category (default: any)")
    p.add_argument("--itemtype", default=None, help="an item type (default: any)")
    p.set_defaults(run=cmd_set_rule)

    p = sub.add_parser("set-currency", help="set the active currency (SIP2 BH)")
    p.add_argument("code", help="Koha's currency code, e.g. NZD")
    p.add_argument("--symbol", default=None, help="e.g. '$'")
    p.add_argument("--isocode", default=None, help="ISO 4217 code sent in BH (default: CODE)")
    p.set_defaults(run=cmd_set_currency)

    p = sub.add_parser("show-currency", help="list the currencies, the active one marked *")
    p.set_defaults(run=cmd_show_currency)

    p = sub.add_parser("show-patron", help="show a patron's record and standing")
    p.add_argument("patron", metavar="USERID_OR_CARDNUMBER")
    p.set_defaults(run=cmd_show_patron)

    p = sub.add_parser("add-holiday", help="add a day the library is closed (Koha's calendar)")
    p.add_argument("--branch", required=True)
    p.add_argument("--date", metavar="YYYY-MM-DD", default=None)
    p.add_argument("--title", default="")
    p.add_argument("--repeat", choices=("yearly", "weekly"), default=None)
    p.add_argument("--weekday", type=int, default=None, help="0 = Sunday ... 6 = Saturday")
    p.add_argument("--exception", action="store_true", help="open on that date after all")
    p.set_defaults(run=cmd_add_holiday)

    p = sub.add_parser("show-holidays", help="show a library's closed days")
    p.add_argument("branch")
    p.set_defaults(run=cmd_show_holidays)

    p = sub.add_parser("ldap-test", help="check the LDAP settings of koha-conf.xml")
    p.add_argument(
        "--koha-conf", metavar="PATH", default=argparse.SUPPRESS, help="Koha's koha-conf.xml"
    )
    p.add_argument("--user", metavar="ID", help="a login name to look up")
    p.add_argument(
        "--password", nargs="?", const=_ASK, default=None, help="check this password too"
    )
    p.set_defaults(run=None)
    return parser


_ASK = object()


def cmd_ldap_test(args, out) -> int:
    """``ldap-test``: the koha-conf's <ldapserver>, host by host (koha_gateway.auth.ldap_check)."""
    from koha_gateway.auth.ldap_check import format_report, run_check
    from koha_gateway.config import ConfigError, load_koha_conf

    if not args.koha_conf:
        raise AdminError("ldap-test needs --koha-conf PATH")
    try:
        conf = load_koha_conf(args.koha_conf)
    except ConfigError as exc:
        raise AdminError(str(exc)) from None
    except OSError as exc:
        raise AdminError(f"{args.koha_conf}: {exc.strerror or exc}") from None
    if conf.ldap is None:
        raise AdminError(
            f"{args.koha_conf}: LDAP is not in use (<useldapserver> is not 1): nothing to test"
        )
    password = args.password
    if password is not None and args.user is None:
        raise AdminError("--password needs --user")
    if password is _ASK:
        if sys.stdin.isatty():
            password = getpass.getpass(f"LDAP password of {args.user}: ")
        else:
            password = sys.stdin.readline().rstrip("\r\n")
    report = run_check(conf.ldap, args.user, password)
    print(format_report(report), file=out)
    return 0 if report.ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status (0 ok, 1 error, 2 usage error)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    out = sys.stdout
    db = None
    try:
        if args.command == "ldap-test":
            return cmd_ldap_test(args, out)
        url = _database_url(args)
        if args.command in _NEEDS_PASSWORD:
            args.password = _read_password(args)
        from koha_gateway.db.engine import Database, DatabaseError

        try:
            db = Database.from_url(url, min_connections=0, max_connections=1)
            db.run_blocking(args.run, args, out)
        except DatabaseError as exc:
            raise AdminError(f"database error: {exc}") from None
    except AdminError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    except InvalidDatabaseURL as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 1
    finally:
        if db is not None:
            db.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
