"""Patron messages: 23 Patron Status, 63 Patron Information, 01 Block Patron, 25 Patron Enable,
35 End Patron Session (3M SIP2 2.00; Koha's behaviour in koha-sip-and-ldap.md 4.3, 4.4,
4.13-4.15 and 5.1).

The patron password (AD) was checked before the transaction started; its outcome is
``ctx.password_ok`` (``None`` when the request had no AD).
"""

from __future__ import annotations

from typing import Any

from koha_gateway.acs import fields
from koha_gateway.ils import account_option, perl_true
from koha_gateway.ils import patrons as ils_patrons
from koha_gateway.sip2.codec import Message, Response, count, money, sip_bool, timestamp

__all__ = ["PatronHandlers", "summary_range"]

INVALID_CARD = "Invalid cardnumber"
INVALID_PASSWORD = "Invalid password"

# 64 summary positions and the list field each one asks for.
_SUMMARY_FIELDS = ("AS", "AT", "AU", "AV", "BU", "CD")


def summary_range(items: list, start: str | None, end: str | None) -> list:
    """The BP..BQ slice of a 64 item list: a 1-based inclusive range.

    Missing or unreadable BP starts at the first item, missing BQ ends at the last; an end past
    the list is clamped, a start past it gives nothing.
    """
    first = _positive(start) or 1
    last = _positive(end) or len(items)
    last = min(last, len(items))
    if first > last:
        return []
    return items[first - 1 : last]


def _positive(value: str | None) -> int | None:
    text = (value or "").strip()
    if not (text.isascii() and text.isdigit()):
        return None
    number = int(text)
    return number if number > 0 else None


def _patron_id(msg: Message) -> str:
    return msg.get("AA") or ""


def _wrong_password_given(msg: Message, ctx: Any) -> bool:
    """A non-empty AD was sent and did not match (Koha appends " -- Invalid password")."""
    return bool(msg.get("AD")) and ctx.password_ok is False


def _screen_message(ctx: Any, state: ils_patrons.PatronState, msg: Message) -> str:
    text = state.screen_message
    if _wrong_password_given(msg, ctx):
        text += " -- " + INVALID_PASSWORD
    return text


class PatronHandlers:
    """23, 63, 01, 25 and 35."""

    # -- 23 / 24 -----------------------------------------------------------------------------

    def handle_PatronStatus(self, txn, ctx, msg: Message) -> Response:
        """3M SIP2 2.00, Patron Status Request (23) -> Patron Status Response (24).

        Language echoed, AO echoed from the request. CQ is Y only for a correct non-empty AD
        (``allow_empty_passwords`` does not apply to 23, as in Koha). ``lastseen`` is updated
        when TrackLastPatronActivityTriggers has ``connection``.
        """
        patron = ils_patrons.find_patron(txn, _patron_id(msg))
        if patron is not None:
            ils_patrons.update_lastseen(txn, ctx.circ(txn), patron, "patron_status")
        return self._patron_status(
            txn, ctx, msg, patron, fields.language(msg.fixed.get("language"))
        )

    def _patron_status(self, txn, ctx, msg: Message, patron: dict | None, lang: str) -> Response:
        """The 24 body shared by 23 and 01."""
        v2 = ctx.protocol_version >= 2
        response = Response("24")
        if patron is None:
            response.fixed(fields.INVALID_PATRON_STATUS, lang, timestamp(ctx.now))
            response.add("AE", "").add("AA", _patron_id(msg))
            if v2:
                response.add("BL", "N")
            response.maybe("AF", INVALID_CARD)
            response.add("AO", msg.get("AO") or "")
            return response

        state = ils_patrons.patron_state(txn, patron, ctx.circ(txn))
        response.fixed(state.status_string, lang, timestamp(ctx.now))
        response.add("AE", fields.patron_name(ctx, patron))
        response.add("AA", patron["cardnumber"] or patron["userid"] or "")
        if v2:
            response.add("BL", "Y")
            password_ok = bool(msg.get("AD")) and ctx.password_ok is True
            response.add("CQ", sip_bool(password_ok))
            response.maybe("BH", fields.currency_code(txn))
            response.maybe("BV", money(state.fines))
        response.maybe("AF", _screen_message(ctx, state, msg))
        if perl_true(account_option(ctx.account, "send_patron_home_library_in_af")):
            response.maybe("AF", patron["branchcode"])
        fields.add_patron_fields(txn, ctx, response, patron)
        response.add("AO", msg.get("AO") or "")
        return response

    # -- 63 / 64 -----------------------------------------------------------------------------

    def handle_PatronInformation(self, txn, ctx, msg: Message) -> Response:
        """3M SIP2 2.00, Patron Information (63) -> Patron Information Response (64).

        Six counts (waiting holds, overdue, charged, fine items, recall 0, unavailable holds);
        the list asked for by the first Y of the summary (AS waiting holds, AT overdue, AU
        charged, AV fine lines, BU recalls, CD unavailable holds) limited to BP..BQ; BD BE BF
        PB PC PI; CQ only when AD was sent (an empty AD with ``allow_empty_passwords`` is Y).
        AO is the institution, or the patron's home library with ``patron_branchcode_in_ao``.
        """
        lang = fields.language(msg.fixed.get("language"))
        patron = ils_patrons.find_patron(txn, _patron_id(msg))
        response = Response("64")
        if patron is None:
            response.fixed(
                fields.INVALID_PATRON_STATUS, lang, timestamp(ctx.now), *([count(0)] * 6)
            )
            response.add("AO", ctx.institution.id or "SIP2")
            response.add("AA", _patron_id(msg))
            response.add("AE", "")
            response.add("BL", "N")
            response.maybe("AF", INVALID_CARD)
            return response

        ils_patrons.update_lastseen(txn, ctx.circ(txn), patron, "connection")
        number = patron["borrowernumber"]
        state = ils_patrons.patron_state(txn, patron, ctx.circ(txn))
        loans = list(state.loans)  # read by patron_state in this transaction
        overdue = [loan for loan in loans if ils_patrons.is_overdue(loan, ctx.now_sql)]
        waiting, unavailable = ils_patrons.patron_holds(txn, number)
        fine_lines = ils_patrons.fine_lines(txn, number)

        response.fixed(
            state.status_string,
            lang,
            timestamp(ctx.now),
            count(len(waiting)),
            count(len(overdue)),
            count(len(loans)),
            count(len(fine_lines)),
            count(0),
            count(len(unavailable)),
        )
        if perl_true(account_option(ctx.account, "patron_branchcode_in_ao")):
            response.add("AO", patron["branchcode"])
        else:
            response.add("AO", ctx.institution.id or "SIP2")
        response.add("AA", patron["cardnumber"] or patron["userid"] or "")
        response.add("AE", fields.patron_name(ctx, patron))
        response.add("BL", "Y")
        if "AD" in msg:
            given = msg.get("AD") or ""
            if given == "" and perl_true(account_option(ctx.account, "allow_empty_passwords")):
                response.add("CQ", "Y")
            else:
                response.add("CQ", sip_bool(ctx.password_ok is True and given != ""))
        response.maybe("BH", fields.currency_code(txn))
        response.maybe("BV", money(state.fines))
        response.add("CC", money(state.fee_limit))

        summary = msg.fixed.get("summary") or ""
        wanted = summary.find("Y")
        start, end = msg.get("BP"), msg.get("BQ")
        if wanted == 0:
            for hold in summary_range(waiting, start, end):
                response.maybe("AS", hold["barcode"])
        elif wanted == 1:
            for loan in summary_range(overdue, start, end):
                response.maybe("AT", loan["barcode"])
        elif wanted == 2:
            for loan in summary_range(loans, start, end):
                response.maybe("AU", loan["barcode"])
        elif wanted == 3:
            for line in summary_range(fine_lines, start, end):
                response.maybe("AV", fields.av_line(ctx, line))
        elif wanted == 5:
            for hold in summary_range(unavailable, start, end):
                response.maybe("CD", hold["barcode"])
        # Position 4 (BU recall items) lists nothing: this ILS has no recalls.

        response.maybe("BD", fields.patron_address(patron))
        response.maybe("BE", patron.get("email"))
        response.maybe("BF", patron.get("phone"))
        birth = patron.get("dateofbirth")
        response.maybe("PB", str(birth)[:10].replace("-", "") if birth else None)
        response.maybe("PC", patron.get("categorycode"))
        response.maybe("PI", sip_bool(state.inet_ok))
        response.maybe("AF", _screen_message(ctx, state, msg))
        if perl_true(account_option(ctx.account, "send_patron_home_library_in_af")):
            response.maybe("AF", patron["branchcode"])
        fields.add_patron_fields(txn, ctx, response, patron)
        return response

    # -- 01 -> 24 ------------------------------------------------------------------------------

    def handle_BlockPatron(self, txn, ctx, msg: Message) -> Response:
        """3M SIP2 2.00, Block Patron (01) -> Patron Status Response (24).

        Stores a restriction (``borrower_debarments`` type ``MANUAL``, no expiry, comment = the
        AL blocked-card message, made by the SIP login's staff patron) and sets
        ``borrowers.debarred``; the 24 shows the patron as now restricted. An unknown patron
        gets a well-formed 24 with AF "Invalid cardnumber" (Koha crashes).
        Language ``000``; AO echoed.
        """
        patron = ils_patrons.find_patron(txn, _patron_id(msg), lock=True)
        if patron is not None:
            ils_patrons.add_sip_restriction(
                txn, ctx.circ(txn), patron["borrowernumber"], msg.get("AL")
            )
            ctx.log.append(f"patron {patron['cardnumber']} blocked by the self-check")
            patron = ils_patrons.find_patron(txn, patron["cardnumber"] or patron["userid"])
        return self._patron_status(txn, ctx, msg, patron, "000")

    # -- 25 -> 26 ------------------------------------------------------------------------------

    def handle_PatronEnable(self, txn, ctx, msg: Message) -> Response:
        """3M SIP2 2.00, Patron Enable (25) -> Patron Enable Response (26).

        When AD is absent or correct, lifts the restrictions that Block Patron (01) stored
        (other restrictions stay) and answers with the patron's real status afterwards. AE is
        the ``ae_field_template`` output or ``firstname surname`` (Koha sends it empty when no
        template is set). AO is the institution.
        """
        patron = ils_patrons.find_patron(txn, _patron_id(msg), lock=True)
        response = Response("26")
        if patron is None:
            response.fixed(fields.INVALID_PATRON_STATUS, "000", timestamp(ctx.now))
            response.add("AA", _patron_id(msg))
            response.add("AE", "")
            response.add("BL", "N")
            response.add("CQ", "N")
            response.maybe("AF", INVALID_CARD)
            response.add("AO", ctx.institution.id)
            return response

        has_password = "AD" in msg
        if not has_password or ctx.password_ok is True:
            lifted = ils_patrons.lift_sip_restrictions(txn, ctx.circ(txn), patron["borrowernumber"])
            if lifted:
                ctx.log.append(f"patron {patron['cardnumber']} enabled by the self-check")
                patron = ils_patrons.find_patron(txn, patron["cardnumber"] or patron["userid"])
        state = ils_patrons.patron_state(txn, patron, ctx.circ(txn))
        response.fixed(state.status_string, "000", timestamp(ctx.now))
        response.add("AA", patron["cardnumber"] or patron["userid"] or "")
        response.add("AE", fields.patron_name(ctx, patron))
        if has_password:
            response.add("CQ", sip_bool(ctx.password_ok is True))
        response.add("BL", "Y")
        response.maybe("AF", _screen_message(ctx, state, msg))
        response.add("AO", ctx.institution.id)
        return response

    # -- 35 -> 36 ------------------------------------------------------------------------------

    def handle_EndPatronSession(self, txn, ctx, msg: Message) -> Response:
        """3M SIP2 2.00, End Patron Session (35) -> End Session Response (36).

        Always ``Y``: no patron session state is kept. AO is the institution, AA echoed.
        """
        response = Response("36").fixed("Y", timestamp(ctx.now))
        response.add("AO", ctx.institution.id)
        response.add("AA", _patron_id(msg))
        response.add("AF", "Thank you!")
        return response
