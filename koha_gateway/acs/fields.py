"""Response pieces shared by the SIP2 handlers.

* the templated names and lines: AE (``ae_field_template``), DA (``da_field_template``), AV
  (``av_field_template``), with Koha's defaults when the account sets none;
* the configurable extra fields of an account: ``<patron_attribute>``,
  ``<custom_patron_field>`` (24, 64), ``<item_field>``, ``<custom_item_field>`` (10, 12, 18);
* the item fields Koha derives from account options and preferences: AQ (permanent location),
  CR (``cr_item_field``), AH due dates (``format_due_date``);
* the patron status of an unknown patron, the language echo, currency (BH), AO choices.

koha-sip-and-ldap.md sections 1.5, 1.6, 4.3, 4.4, 4.7 and 5.
"""

from __future__ import annotations

import functools
from typing import Any

from koha_gateway.ils import account_option, perl_true
from koha_gateway.ils.accounts import active_currency
from koha_gateway.ils.items import item_attribute
from koha_gateway.ils.patrons import patron_attributes
from koha_gateway.ils.sysprefs import format_date
from koha_gateway.sip2.codec import Response
from koha_gateway.sip2.codec import timestamp as sip_timestamp
from koha_gateway.sip2.templates import AE_DEFAULT, AV_DEFAULT, DA_DEFAULT, Template, TemplateError

__all__ = [
    "INVALID_PATRON_STATUS",
    "add_item_fields",
    "add_patron_fields",
    "av_line",
    "cr_value",
    "currency_code",
    "currency_isocode",
    "due_date",
    "hold_patron_name",
    "language",
    "now_timestamp",
    "patron_address",
    "patron_name",
    "permanent_location",
    "render",
    "sip_datetime",
    "template_patron",
]

#: 3M SIP2 2.00 patron status of an unknown patron (Koha: every privilege denied).
INVALID_PATRON_STATUS = "YYYY" + " " * 10


@functools.lru_cache(maxsize=256)
def _compiled(source: str) -> Template | None:
    try:
        return Template(source)
    except TemplateError:
        return None


def render(source: str | None, **context: Any) -> str | None:
    """Render a SIPconfig template; ``None`` when ``source`` is empty or not a valid template
    (Koha drops a custom field whose template does not compile)."""
    if not source:
        return None
    template = _compiled(source)
    if template is None:
        return None
    return template.render(**context)


#: Columns never offered to SIPconfig templates (a template is configuration, not a way to
#: read password hashes off the wire).
_HIDDEN_PATRON_COLUMNS = frozenset({"password", "login_attempts"})


def template_patron(patron: dict) -> dict:
    """The patron as templates see it: the row without its password hash."""
    return {key: value for key, value in patron.items() if key not in _HIDDEN_PATRON_COLUMNS}


def patron_name(ctx: Any, patron: dict | None) -> str:
    """AE personal name: the account's ``ae_field_template`` or Koha's ``firstname surname``.

    Used by 24, 64 and 26 alike (Koha sends an empty AE in 26 without a template; not here).
    """
    if patron is None:
        return ""
    source = account_option(ctx.account, "ae_field_template") or AE_DEFAULT
    visible = template_patron(patron)
    text = render(source, patron=visible)
    if text is None:
        text = render(AE_DEFAULT, patron=visible) or ""
    return text.strip()


def hold_patron_name(ctx: Any, patron: dict | None) -> str:
    """DA hold patron name of 10: ``da_field_template`` or ``firstname surname (email, phone)``."""
    if patron is None:
        return ""
    source = account_option(ctx.account, "da_field_template") or DA_DEFAULT
    visible = template_patron(patron)
    text = render(source, patron=visible)
    if text is None:
        text = render(DA_DEFAULT, patron=visible) or ""
    return text.strip()


def av_line(ctx: Any, line: dict) -> str:
    """One AV fine item of 64: ``av_field_template`` or ``description amount``."""
    source = account_option(ctx.account, "av_field_template") or AV_DEFAULT
    text = render(source, accountline=line)
    if text is None:
        text = render(AV_DEFAULT, accountline=line) or ""
    return text.strip()


def language(value: str | None) -> str:
    """The 3-character language of a request, echoed; ``000`` (unknown) when it is not 3
    characters."""
    if value is not None and len(value) == 3:
        return value
    return "000"


def currency_code(txn) -> str | None:
    """BH of 24 and 64: the first three characters of the active currency's code."""
    row = active_currency(txn)
    return row["currency"][:3] if row and row["currency"] else None


def currency_isocode(txn) -> str:
    """BH of 12 and 30: the active currency's ISO code, ``USD`` when none is set (as Koha)."""
    row = active_currency(txn)
    if row is None:
        return "USD"
    return (row["isocode"] or row["currency"] or "USD")[:3]


def patron_address(patron: dict) -> str:
    """BD home address: the address lines, city, state, postcode and country, space separated."""
    parts = (
        patron.get(name) for name in ("address", "address2", "city", "state", "zipcode", "country")
    )
    return " ".join(str(part).strip() for part in parts if part and str(part).strip())


def sip_datetime(value: str | None) -> str:
    """A database date or date-time (ISO text) as a SIP2 timestamp ``YYYYMMDD    HHMMSS``.

    A date alone gives ``235900`` (Koha's rule for due dates). Empty gives ``""``.
    """
    if not value:
        return ""
    text = str(value)
    day = text[:10].replace("-", "")
    if len(text) >= 16:
        clock = text[11:13] + text[14:16] + (text[17:19] if len(text) >= 19 else "00")
    else:
        clock = "235900"
    return f"{day}    {clock}"


def due_date(ctx: Any, value: str | None) -> str:
    """AH due date of 12 and 18.

    Koha truncates the due date to the minute. With the account's ``format_due_date`` it is
    written in the ``dateformat`` preference followed by ``HH:MM`` (``2024-03-31 23:59``),
    else as a SIP2 timestamp.
    """
    if not value:
        return ""
    text = str(value)
    minute = text[11:16] if len(text) >= 16 else "23:59"
    if perl_true(account_option(ctx.account, "format_due_date")):
        dateformat = ctx.sysprefs.get("dateformat", "iso") if ctx.sysprefs else "iso"
        return f"{format_date(text[:10], dateformat or 'iso')} {minute}"
    return f"{text[:10].replace('-', '')}    {minute.replace(':', '')}00"


def now_timestamp(ctx: Any) -> str:
    """The transaction date of a response: the request's instant as a SIP2 timestamp."""
    return sip_timestamp(ctx.now)


def permanent_location(ctx: Any, item: dict) -> str:
    """AQ permanent location: the home library, or ``items.permanent_location`` when the
    UseLocationAsAQInSIP preference is on."""
    if ctx.sysprefs is not None and ctx.sysprefs.flag("UseLocationAsAQInSIP"):
        return item.get("permanent_location") or ""
    return item.get("homebranch") or ""


def cr_value(ctx: Any, item: dict) -> str | None:
    """CR collection code: the column named by ``cr_item_field`` (default ``collection_code``,
    i.e. ``ccode``; ``shelving_location`` is ``location``; any items column may be named)."""
    name = account_option(ctx.account, "cr_item_field") or "collection_code"
    value = item_attribute(item, name)
    return None if value is None else str(value)


def _pairs(entries: Any) -> list[tuple[str, str]]:
    """``(field, code_or_template)`` pairs from the account's child-element collections."""
    out: list[tuple[str, str]] = []
    for entry in entries or ():
        if isinstance(entry, dict):
            fid = entry.get("field")
            value = entry.get("code", entry.get("template"))
        elif isinstance(entry, tuple | list):
            fid, value = entry[0], entry[1]
        else:
            fid = getattr(entry, "field", None)
            value = getattr(entry, "code", getattr(entry, "template", None))
        if fid and value:
            out.append((str(fid), str(value)))
    return out


def add_patron_fields(txn, ctx: Any, response: Response, patron: dict) -> Response:
    """Append the account's ``<custom_patron_field>`` then ``<patron_attribute>`` fields.

    A custom field is sent when its template gives a non-empty text; each value of an extended
    patron attribute is sent as one field (several for a repeatable attribute).
    """
    account = ctx.account
    visible = template_patron(patron)
    for fid, source in _pairs(account_option(account, "custom_patron_fields", ())):
        response.maybe(fid, render(source, patron=visible))
    for fid, code in _pairs(account_option(account, "patron_attributes", ())):
        for value in patron_attributes(txn, patron["borrowernumber"], code):
            response.maybe(fid, value)
    return response


def add_item_fields(ctx: Any, response: Response, item: dict) -> Response:
    """Append the account's ``<item_field>`` then ``<custom_item_field>`` fields (10, 12, 18)."""
    account = ctx.account
    for fid, code in _pairs(account_option(account, "item_fields", ())):
        value = item_attribute(item, code)
        response.maybe(fid, None if value is None else str(value))
    for fid, source in _pairs(account_option(account, "custom_item_fields", ())):
        response.maybe(fid, render(source, item=item))
    return response
