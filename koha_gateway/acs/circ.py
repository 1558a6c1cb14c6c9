"""Circulation messages: 11 Checkout, 09 Checkin, 29 Renew, 65 Renew All, 15 Hold, 37 Fee Paid.

3M SIP2 2.00 request/response pairs with Koha's answers (koha-sip-and-ldap.md sections 4.5,
4.6, 4.9-4.12, 10.13-10.14): Koha's field order and screen messages, AO and AA chosen as Koha
chooses them (12, 30 and 16 send the institution; 10 and 38 echo the request's AO; 12 echoes
the request's patron identifier, the others send the cardnumber).

The rules themselves live in :mod:`koha_gateway.ils.checkout`, :mod:`~koha_gateway.ils.checkin`,
:mod:`~koha_gateway.ils.holds` and :mod:`~koha_gateway.ils.accounts`; this module looks the
patron and item up (locking the rows it will change), calls them and formats the response.
An unknown patron or item always gets a well-formed negative answer.

Where a request carries a non-empty patron password (AD) that does not match, the transaction
is refused with "Invalid patron password" (Koha does not check AD in these messages).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from koha_gateway.acs import fields
from koha_gateway.ils import account_option, journal
from koha_gateway.ils import accounts as ils_accounts
from koha_gateway.ils import checkin as ils_checkin
from koha_gateway.ils import checkout as ils_checkout
from koha_gateway.ils import holds as ils_holds
from koha_gateway.ils import items as ils_items
from koha_gateway.ils import patrons as ils_patrons
from koha_gateway.ils.circulation import branch_exists
from koha_gateway.ils.sysprefs import format_date
from koha_gateway.sip2.codec import Message, Response, count, money, parse_timestamp, sip_bool

__all__ = ["CirculationHandlers"]

INVALID_PATRON = "Invalid Patron"
INVALID_ITEM = "Invalid Item"
INVALID_PATRON_BARCODE = "Invalid patron barcode."
INVALID_PASSWORD = "Invalid patron password"
NO_SUCH_ITEM = "No such item."
RENEWALS_NOT_ALLOWED = "Renewals not allowed."


def _now(ctx) -> str:
    return fields.now_timestamp(ctx)


def _v2(ctx) -> bool:
    return (getattr(ctx, "protocol_version", 2) or 2) >= 2


def _item(txn, ctx, barcode: str | None, *, lock: bool = False) -> dict | None:
    input_filter = ctx.sysprefs.get("itemBarcodeInputFilter") if ctx.sysprefs else None
    return ils_items.find_item(txn, barcode, lock=lock, input_filter=input_filter)


def _wrong_password(ctx, msg: Message) -> bool:
    return bool(msg.get("AD")) and ctx.password_ok is False


def _local(ctx, value: datetime | None) -> datetime | None:
    """A datetime read from a request, in the server's local time (naive)."""
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(ctx.now.tzinfo) if ctx.now.tzinfo else value
        value = value.replace(tzinfo=None)
    return value


def _option_set(account: Any, name: str) -> set[str]:
    value = account_option(account, name, None)
    if not value:
        return set()
    if isinstance(value, str):
        return {part.strip() for part in value.split(",") if part.strip()}
    return {str(part).strip() for part in value if str(part).strip()}


def _magnetic(item: dict | None) -> bool:
    return bool(item and int(item.get("sip_magnetic") or 0))


def _desensitize(ctx, item: dict, patron: dict) -> bool:
    """Desensitize flag of 12: Y unless the item is magnetic media, N for the account's
    ``inhouse_item_types`` and ``inhouse_patron_categories`` (in-house use only)."""
    if _magnetic(item):
        return False
    if item.get("itype") in _option_set(ctx.account, "inhouse_item_types"):
        return False
    return patron.get("categorycode") not in _option_set(ctx.account, "inhouse_patron_categories")


def _add_fee_fields(txn, ctx, response: Response, amount, fee_type, fee_id) -> None:
    """BV, BH (active currency ISO code), BT, BK of 12 and 30 when a fee exists (v2)."""
    if not amount or not _v2(ctx):
        return
    response.add("BV", money(amount))
    response.maybe("BH", fields.currency_isocode(txn))
    response.maybe("BT", fee_type)
    response.maybe("BK", None if fee_id is None else str(fee_id))


def _patron_refusal(ctx, state) -> str:
    if state.debarred:
        return "Patron debarred"
    if state.expired:
        dateformat = (ctx.sysprefs.get("dateformat") if ctx.sysprefs else None) or "iso"
        return f"Patron expired on {format_date(state.dateexpiry, dateformat)}"
    if state.fine_blocked:
        return "Excessive fees blocking placement of hold."
    return "Patron blocked"


def _resolve_title(txn, ctx, text: str | None) -> tuple[dict | None, dict | None]:
    """What a 15's AJ names: an item barcode (as Koha reads it), a biblionumber, or an exact
    title that only one record has. Returns ``(item or None, biblio row or None)``."""
    if not text or not text.strip():
        return None, None
    item = _item(txn, ctx, text)
    if item is not None:
        return item, {"biblionumber": item["biblionumber"], "title": item.get("title")}
    return None, ils_items.find_biblio(txn, text)


class CirculationHandlers:
    """11, 09, 29, 65, 15 and 37."""

    # --- 11 -----------------------------------------------------------------------------------

    def handle_Checkout(self, txn, ctx, msg: Message) -> Response:
        """3M SIP2 2.00, Checkout (11) -> Checkout Response (12); Koha's
        ``C4::SIP::Sip::MsgType::handle_checkout`` and ``ILS::checkout``.

        ``121`` + renewal ok + magnetic media + desensitize + date, then AO (institution), AA
        (echoed), AB, AJ, AH (due date, ``format_due_date``), AF*, AG*, (v2) CK*, CH*; a failure
        is ``120NUN`` + date with AJ (title when the item is known), AH empty, AF and (v2) BL.
        Fee fields BV/BH/BT/BK follow when a rental charge exists, then the account's item
        fields. The decisions are :func:`koha_gateway.ils.checkout.checkout`.
        """
        patron_id = msg.get("AA")
        barcode = msg.get("AB")
        # Row locks: the item, then the patron (see koha_gateway.ils.checkout).
        item = _item(txn, ctx, barcode, lock=True)
        patron = ils_patrons.find_patron(txn, patron_id, lock=True)
        journal.note_locked_patron(ctx, patron_id, patron)
        if patron is None:
            return self._checkout_failed(txn, ctx, msg, None, item, INVALID_PATRON)
        if item is None:
            return self._checkout_failed(txn, ctx, msg, patron, None, INVALID_ITEM)
        if _wrong_password(ctx, msg):
            return self._checkout_failed(txn, ctx, msg, patron, item, INVALID_PASSWORD)
        circ = ctx.circ(txn)
        state = ils_patrons.patron_state(txn, patron, circ)
        no_block_due = None
        if (msg.fixed.get("no_block") or "").upper() == "Y":
            no_block_due = _local(ctx, parse_timestamp(msg.fixed.get("nb_due_date")))
        outcome = ils_checkout.checkout(
            txn,
            circ,
            patron=patron,
            state=state,
            item=item,
            fee_acknowledged=(msg.get("BO") or "").upper() == "Y",
            no_block_due=no_block_due,
        )
        if not outcome.ok:
            return self._checkout_failed(
                txn,
                ctx,
                msg,
                patron,
                item,
                outcome.message,
                fee=(outcome.fee_amount, outcome.fee_type, None),
            )
        ctx.log.append(
            f"checkout {item['barcode']} to {patron['cardnumber']} due {outcome.due}"
            + (" (renewal)" if outcome.renewal else "")
        )
        response = Response("12").fixed(
            "1",
            sip_bool(outcome.renewal),
            sip_bool(_magnetic(item)),
            sip_bool(_desensitize(ctx, item, patron)),
            _now(ctx),
        )
        response.add("AO", ctx.branch)
        response.add("AA", patron_id)
        response.add("AB", barcode)
        response.add("AJ", item.get("title") or "")
        response.add("AH", fields.due_date(ctx, outcome.due))
        response.maybe("AF", outcome.message)
        if _v2(ctx):
            response.maybe("CK", item.get("sip_media_type"))
            response.maybe("CH", item.get("sip_item_properties"))
        _add_fee_fields(txn, ctx, response, outcome.fee_amount, outcome.fee_type, outcome.fee_id)
        fields.add_item_fields(ctx, response, item)
        return response

    def _checkout_failed(
        self, txn, ctx, msg: Message, patron, item, message, *, fee=(None, None, None)
    ) -> Response:
        response = Response("12").fixed("0", "N", "U", "N", _now(ctx))
        response.add("AO", ctx.branch)
        response.add("AA", msg.get("AA"))
        response.add("AB", msg.get("AB"))
        response.add("AJ", (item.get("title") if item else None) or "")
        response.add("AH", "")
        response.maybe("AF", message)
        if _v2(ctx):
            response.add("BL", sip_bool(patron is not None))
            if patron is not None and msg.get("AD"):
                response.add("CQ", sip_bool(ctx.password_ok is True))
        _add_fee_fields(txn, ctx, response, *fee)
        if item is not None:
            fields.add_item_fields(ctx, response, item)
        return response

    # --- 09 -----------------------------------------------------------------------------------

    def handle_Checkin(self, txn, ctx, msg: Message) -> Response:
        """3M SIP2 2.00, Checkin (09) -> Checkin Response (10), with the 3M extension fields;
        Koha's ``handle_checkin`` and ``ILS::checkin``.

        ``10`` + ok + resensitize + magnetic media + alert + date, then AO (echoed), AB, AQ, AJ*,
        the account's item fields, (v2) CL* sort bin, AA* (the patron who had it), CK*, CH*, CS*
        call number, CY* hold patron, CT destination (also when ``ct_always_send``), DA* hold
        patron name, CR*, CV alert type, AF*, AG*. The return library is AP when it is a known
        library, else the institution.

        ``checked_in_ok`` turns "not checked out" into a success; the alert flag is Y for a CV
        (only then, with ``cv_triggers_alert``; else also for any failure) and for magnetic
        media; ``cv_send_00_on_success`` sends CV00 when there is no alert type. An unknown
        item: ok 0, alert Y, CV 99, AF "Invalid Item", AQ empty, magnetic U.
        """
        barcode = msg.get("AB")
        institution = msg.get("AO")
        if institution is None:
            institution = ctx.branch
        item = _item(txn, ctx, barcode, lock=True)
        if item is None:
            response = Response("10").fixed("0", "N", "U", "Y", _now(ctx))
            response.add("AO", institution)
            response.add("AB", barcode)
            response.add("AQ", "")
            if account_option(ctx.account, "ct_always_send"):
                response.add("CT", "")
            response.add("CV", "99")
            response.maybe("AF", INVALID_ITEM)
            return response

        branch = ctx.branch
        current = msg.get("AP")
        if current and current != branch:
            if branch_exists(txn, current):
                branch = current
            else:
                ctx.log.append(f"checkin AP {current!r} is not a library; using {branch}")
        return_date = _local(ctx, parse_timestamp(msg.fixed.get("return_date")))
        now_local = ctx.now.replace(tzinfo=None)
        if return_date is not None and return_date > now_local:
            return_date = None
        outcome = ils_checkin.checkin(
            txn, ctx.circ(txn), item=item, branch=branch, return_date=return_date
        )
        ctx.log.extend(outcome.warnings)
        checked_in_ok = bool(account_option(ctx.account, "checked_in_ok"))
        ok = outcome.ok or (outcome.not_issued and checked_in_ok)
        if account_option(ctx.account, "cv_triggers_alert"):
            alert = bool(outcome.alert_type)
        else:
            alert = (not ok) or bool(outcome.alert_type)
        magnetic = _magnetic(item)
        alert = alert or magnetic
        ctx.log.append(
            f"checkin {item['barcode']} at {branch}: ok={int(ok)}"
            + (f" CV{outcome.alert_type}" if outcome.alert_type else "")
            + (f" fine {outcome.fine:.2f}" if outcome.fine else "")
            + (f" suspended until {outcome.suspended_until}" if outcome.suspended_until else "")
        )
        response = Response("10").fixed(
            "1" if ok else "0",
            sip_bool(not magnetic),
            sip_bool(magnetic),
            sip_bool(alert),
            _now(ctx),
        )
        response.add("AO", institution)
        response.add("AB", barcode)
        response.add("AQ", fields.permanent_location(ctx, item))
        response.maybe("AJ", item.get("title"))
        fields.add_item_fields(ctx, response, item)
        if _v2(ctx):
            response.maybe("CL", outcome.sort_bin)
            if outcome.patron is not None:
                response.maybe("AA", outcome.patron.get("cardnumber"))
            response.maybe("CK", item.get("sip_media_type"))
            response.maybe("CH", item.get("sip_item_properties"))
        hold = outcome.hold
        response.maybe("CS", item.get("itemcallnumber"))
        response.maybe("CY", hold.get("cardnumber") if hold else None)
        if outcome.destination or account_option(ctx.account, "ct_always_send"):
            response.add("CT", outcome.destination or "")
        if hold:
            response.maybe("DA", fields.hold_patron_name(ctx, hold))
        response.maybe("CR", fields.cr_value(ctx, item))
        if alert and outcome.alert_type:
            response.add("CV", outcome.alert_type)
        elif account_option(ctx.account, "cv_send_00_on_success"):
            response.add("CV", "00")
        response.maybe("AF", outcome.message)
        return response

    # --- 29 / 65 ------------------------------------------------------------------------------

    def handle_Renew(self, txn, ctx, msg: Message) -> Response:
        """3M SIP2 2.00, Renew (29) -> Renew Response (30); Koha's ``handle_renew``.

        ``301Y`` + magnetic + desensitize N + date, AA cardnumber, AB, AJ, AH (SIP timestamp),
        CK, CH*, fee fields, AO institution, AF*. Failure: ``300NUN`` + date, AA, AB, AJ, AH
        empty, AO, AF. Refused when the institution's policy has ``renewal`` off, when the
        patron may not renew, when the item is not on loan to the patron, and for Koha's
        renewal errors (maximum renewals, holds, too soon).
        """
        item = _item(txn, ctx, msg.get("AB"), lock=True)
        patron = ils_patrons.find_patron(txn, msg.get("AA"), lock=True)
        journal.note_locked_patron(ctx, msg.get("AA"), patron)
        if patron is None:
            return self._renew_failed(ctx, msg, None, item, INVALID_PATRON_BARCODE)
        if _wrong_password(ctx, msg):
            return self._renew_failed(ctx, msg, patron, item, INVALID_PASSWORD)
        state = ils_patrons.patron_state(txn, patron, ctx.circ(txn))
        outcome = ils_checkout.renew(
            txn,
            ctx.circ(txn),
            patron=patron,
            state=state,
            item=item,
            fee_acknowledged=(msg.get("BO") or "").upper() == "Y",
            renewals_allowed_by_policy=bool(getattr(ctx.institution.policy, "renewal", False)),
        )
        if not outcome.ok:
            return self._renew_failed(
                ctx,
                msg,
                patron,
                item,
                outcome.message,
                txn=txn,
                fee=(outcome.fee_amount, outcome.fee_type, None),
            )
        ctx.log.append(f"renew {item['barcode']} for {patron['cardnumber']} due {outcome.due}")
        response = Response("30").fixed("1", "Y", sip_bool(_magnetic(item)), "N", _now(ctx))
        response.add("AA", patron.get("cardnumber"))
        response.add("AB", item["barcode"])
        response.add("AJ", item.get("title") or "")
        response.add("AH", fields.sip_datetime(outcome.due))
        response.add("CK", item.get("sip_media_type") or "")
        response.maybe("CH", item.get("sip_item_properties"))
        _add_fee_fields(txn, ctx, response, outcome.fee_amount, outcome.fee_type, outcome.fee_id)
        response.add("AO", ctx.branch)
        return response

    def _renew_failed(
        self, ctx, msg: Message, patron, item, message, *, txn=None, fee=(None, None, None)
    ) -> Response:
        response = Response("30").fixed("0", "N", "U", "N", _now(ctx))
        response.add("AA", (patron or {}).get("cardnumber") or msg.get("AA"))
        response.add("AB", (item or {}).get("barcode") or msg.get("AB"))
        response.add("AJ", (item or {}).get("title") or msg.get("AJ") or "")
        response.add("AH", "")
        if txn is not None:
            _add_fee_fields(txn, ctx, response, *fee)
        response.add("AO", ctx.branch)
        response.maybe("AF", message)
        return response

    def handle_RenewAll(self, txn, ctx, msg: Message) -> Response:
        """3M SIP2 2.00, Renew All (65) -> Renew All Response (66); Koha's
        ``handle_renew_all``.

        ``66`` + ok + renewed count + unrenewed count + date, AO institution, one BM per renewed
        barcode, one BN per barcode not renewed, AF*. An unknown patron, a patron who may not
        renew, or an institution whose policy has ``renewal`` off: ok 0 and counts 0000.
        """
        patron = ils_patrons.find_patron(txn, msg.get("AA"))
        if patron is not None:
            # Row locks: the items (in itemnumber order), then the patron.
            loans = ils_patrons.current_loans(txn, patron["borrowernumber"])
            for number in sorted(loan["itemnumber"] for loan in loans):
                ils_items.item_by_number(txn, number, lock=True)
            patron = ils_patrons.find_patron(txn, msg.get("AA"), lock=True)

        def refused(text: str) -> Response:
            response = Response("66").fixed("0", count(0), count(0), _now(ctx))
            response.add("AO", ctx.branch)
            response.maybe("AF", text)
            return response

        if patron is None:
            return refused(INVALID_PATRON_BARCODE)
        if _wrong_password(ctx, msg):
            return refused(INVALID_PASSWORD)
        state = ils_patrons.patron_state(txn, patron, ctx.circ(txn))
        if not getattr(ctx.institution.policy, "renewal", False) or not state.renew_ok:
            return refused(RENEWALS_NOT_ALLOWED)
        renewed: list[str] = []
        unrenewed: list[str] = []
        fee_acknowledged = (msg.get("BO") or "").upper() == "Y"
        for loan in ils_patrons.current_loans(txn, patron["borrowernumber"]):
            item = ils_items.item_by_number(txn, loan["itemnumber"], lock=True)
            if item is None:
                unrenewed.append(loan.get("barcode") or "")
                continue
            outcome = ils_checkout.renew(
                txn,
                ctx.circ(txn),
                patron=patron,
                state=state,
                item=item,
                fee_acknowledged=fee_acknowledged,
                check_patron=False,
            )
            (renewed if outcome.ok else unrenewed).append(item.get("barcode") or "")
        ctx.log.append(
            f"renew all for {patron['cardnumber']}: {len(renewed)} renewed, "
            f"{len(unrenewed)} not renewed"
        )
        response = Response("66").fixed("1", count(len(renewed)), count(len(unrenewed)), _now(ctx))
        response.add("AO", ctx.branch)
        for barcode in renewed:
            response.add("BM", barcode)
        for barcode in unrenewed:
            response.add("BN", barcode)
        return response

    # --- 15 -----------------------------------------------------------------------------------

    def handle_Hold(self, txn, ctx, msg: Message) -> Response:
        """3M SIP2 2.00, Hold (15) -> Hold Response (16); Koha's ``handle_hold``, with its
        quirks fixed (koha-sip-and-ldap.md 4.11, koha-circulation-writes.md 6).

        Mode ``+`` places a title-level hold on the record of AB (or of what AJ names: a
        barcode, a biblionumber or an exact title), as Koha does: the item only chooses the
        record, the expiry (BW) and hold type (BY) are not used, pickup is BS or the patron's
        home library. Mode ``-`` cancels the patron's hold on that item or on its title; mode
        ``*`` changes the pickup library (BS) and/or the expiry (BW) of that hold. Any other
        mode is refused.

        ``16`` + ok + available + date; on success AA cardnumber, BW (when the hold has an
        expiry; not after a cancel), BR queue position and BS pickup (not after a cancel),
        AB*, AJ*; on failure AA echoed; then AO institution, AF*. "Available" is Koha's
        ``ILS::Item::available`` of the item before the change
        (:func:`~koha_gateway.ils.holds.available_to_patron`), N when no item was found.
        """
        mode = msg.fixed.get("hold_mode") or ""
        if msg.get("AB"):
            # Row locks: the item, then the patron (see koha_gateway.ils.checkout).
            _item(txn, ctx, msg.get("AB"), lock=True)
        patron = ils_patrons.find_patron(txn, msg.get("AA"), lock=True)
        if patron is None:
            # Koha's alter_hold names the barcode; add_hold and cancel_hold do not.
            return self._hold_failed(
                ctx,
                msg,
                f"Invalid patron barcode: '{msg.get('AA') or ''}'."
                if mode == "*"
                else INVALID_PATRON_BARCODE,
            )
        if _wrong_password(ctx, msg):
            return self._hold_failed(ctx, msg, INVALID_PASSWORD)
        if mode not in ("+", "-", "*"):
            return self._hold_failed(ctx, msg, "Invalid hold mode.")
        barcode = msg.get("AB")
        if barcode:
            item = _item(txn, ctx, barcode, lock=True)
            biblio = (
                {"biblionumber": item["biblionumber"], "title": item.get("title")}
                if item is not None
                else None
            )
        else:
            item, biblio = _resolve_title(txn, ctx, msg.get("AJ"))
        if biblio is None:
            # Koha's alter_hold looks for the item among the patron's holds only.
            return self._hold_failed(
                ctx, msg, "No such outstanding hold." if mode == "*" else NO_SUCH_ITEM
            )
        # Koha builds the item, and with it the flag, before acting on the hold.
        available = ils_holds.available_to_patron(txn, item, patron, ctx.today)

        if mode == "+":
            state = ils_patrons.patron_state(txn, patron, ctx.circ(txn))
            if not state.hold_ok:
                return self._hold_failed(ctx, msg, _patron_refusal(ctx, state), available=available)
            maximum = ctx.sysprefs.get("maxoutstanding") if ctx.sysprefs else None
            if maximum not in (None, "") and state.fines > ctx.sysprefs.number("maxoutstanding"):
                return self._hold_failed(
                    ctx, msg, "Excessive fees blocking placement of hold.", available=available
                )
            control = (ctx.sysprefs.get("ReservesControlBranch") if ctx.sysprefs else None) or (
                "ItemHomeLibrary"
            )
            if control == "PatronLibrary" or item is None:
                rules_branch = patron["branchcode"]
            else:
                rules_branch = item["homebranch"]
            outcome = ils_holds.place_hold(
                txn,
                ctx.circ(txn),
                patron=patron,
                biblionumber=biblio["biblionumber"],
                item=item,
                item_level=False,
                pickup=msg.get("BS") or patron["branchcode"],
                expiration=None,
                rules_branch=rules_branch,
                itemtype=item.get("itype") if item else None,
            )
        elif mode == "-":
            outcome = ils_holds.cancel_hold(
                txn, ctx.circ(txn), patron=patron, item=item, biblionumber=biblio["biblionumber"]
            )
        else:
            expiration = None
            if msg.get("BW"):
                when = _local(ctx, parse_timestamp(msg.get("BW")))
                if when is None:
                    return self._hold_failed(
                        ctx, msg, "Invalid hold expiration date.", available=available
                    )
                expiration = when.strftime("%Y-%m-%d")
            outcome = ils_holds.alter_hold(
                txn,
                ctx.circ(txn),
                patron=patron,
                item=item,
                biblionumber=biblio["biblionumber"],
                pickup=msg.get("BS") or None,
                expiration=expiration,
            )
        if not outcome.ok:
            return self._hold_failed(ctx, msg, outcome.message, available=available)
        hold = outcome.hold or {}
        ctx.log.append(
            f"hold {mode} for {patron['cardnumber']} on biblio {biblio['biblionumber']}"
            f" (reserve {hold.get('reserve_id')})"
        )
        response = Response("16").fixed("1", sip_bool(available), _now(ctx))
        response.add("AA", patron.get("cardnumber"))
        if mode != "-":
            if hold.get("expirationdate"):
                response.add("BW", fields.sip_datetime(str(hold["expirationdate"])[:10]))
            if outcome.queue_position is not None:
                response.maybe("BR", str(outcome.queue_position))
            response.maybe("BS", hold.get("branchcode"))
        response.maybe("AB", item["barcode"] if item is not None else None)
        response.maybe("AJ", biblio.get("title"))
        response.add("AO", ctx.branch)
        response.maybe("AF", outcome.message)
        return response

    def _hold_failed(self, ctx, msg: Message, message, *, available: bool = False) -> Response:
        response = Response("16").fixed("0", sip_bool(available), _now(ctx))
        response.add("AA", msg.get("AA"))
        response.add("AO", ctx.branch)
        response.maybe("AF", message)
        return response

    # --- 37 -----------------------------------------------------------------------------------

    def handle_FeePaid(self, txn, ctx, msg: Message) -> Response:
        """3M SIP2 2.00, Fee Paid (37) -> Fee Paid Response (38); Koha's ``handle_fee_paid``.

        BV is the amount (a positive decimal number); the payment type fixed field selects
        WRITEOFF when it equals the account's ``payment_type_writeoff``, else PAYMENT, recorded
        with payment type ``SIP`` + the 2-character code. CG pays that accountline only. See
        :func:`koha_gateway.ils.accounts.pay`.

        ``38`` + Y/N + date, AO echoed, AA echoed, BK* (the transaction id, echoed), AF*.
        """
        institution = msg.get("AO")
        if institution is None:
            institution = ctx.branch

        def answer(accepted: bool, message: str | None) -> Response:
            response = Response("38").fixed(sip_bool(accepted), _now(ctx))
            response.add("AO", institution)
            response.add("AA", msg.get("AA"))
            response.maybe("BK", msg.get("BK"))
            response.maybe("AF", message)
            return response

        patron = ils_patrons.find_patron(txn, msg.get("AA"), lock=True)
        if patron is None:
            return answer(False, INVALID_PATRON_BARCODE)
        if _wrong_password(ctx, msg):
            return answer(False, INVALID_PASSWORD)
        amount = ils_accounts.parse_amount(msg.get("BV"))
        if amount is None:
            return answer(False, "Invalid fee amount.")
        payment_type = msg.fixed.get("payment_type") or "00"
        circ = ctx.circ(txn)
        writeoff_code = circ.options.payment_type_writeoff
        writeoff = bool(writeoff_code) and payment_type == writeoff_code
        outcome = ils_accounts.pay(
            txn,
            circ,
            borrowernumber=patron["borrowernumber"],
            amount=amount,
            sip_payment_type=payment_type,
            writeoff=writeoff,
            fee_id=msg.get("CG"),
            disallow_overpayment=circ.options.disallow_overpayment,
        )
        if outcome.ok:
            kind = "write-off" if writeoff else "payment"
            ctx.log.append(
                f"fee paid by {patron['cardnumber']}: {amount:.2f} ({kind} SIP{payment_type}, "
                f"credit {outcome.credit_id})"
            )
        return answer(outcome.ok, outcome.message)
