"""Item messages: 17 Item Information and 19 Item Status Update (3M SIP2 2.00; Koha's
behaviour in koha-sip-and-ldap.md 4.7, 4.8, 5.2 and 5.3)."""

from __future__ import annotations

from koha_gateway.acs import fields
from koha_gateway.ils import account_option
from koha_gateway.ils import items as ils_items
from koha_gateway.sip2.codec import Message, Response, timestamp

__all__ = ["ItemHandlers"]

SECURITY_MARKER_OTHER = "01"
SECURITY_MARKER_TATTLE_TAPE = "02"
FEE_TYPE_OTHER = "01"
INVALID_ITEM = "Invalid Item"


def _find(txn, ctx, barcode: str | None, *, lock: bool = False) -> dict | None:
    input_filter = ctx.sysprefs.get("itemBarcodeInputFilter") if ctx.sysprefs else None
    return ils_items.find_item(txn, barcode, lock=lock, input_filter=input_filter)


class ItemHandlers:
    """17 and 19."""

    def handle_ItemInformation(self, txn, ctx, msg: Message) -> Response:
        """3M SIP2 2.00, Item Information (17) -> Item Information Response (18).

        Fixed part: circulation status (Koha's codes, first match wins: 10 in transit, 13
        missing, 12 lost, 04 charged, 08 on the hold shelf, 09 shelving cart, 01 damaged,
        02 on order, 03 available), security marker 02, fee type 01, date. Fields in Koha's
        order: AF "Item is damaged" (status 01), AB, AJ, CK, AQ, CH, CR, BG home library, CF
        hold queue length (when > 0), AH due date (on loan), CM hold pickup date (waiting hold),
        then the account's item fields. An unknown barcode gives ``010101`` with AB echoed and
        an empty AJ.

        With ``seen_on_item_information`` the item's ``datelastseen`` is updated; ``mark_found``
        also clears its lost status.
        """
        barcode = msg.get("AB") or ""
        seen = (account_option(ctx.account, "seen_on_item_information") or "").strip()
        item = _find(txn, ctx, barcode, lock=seen in ("mark_found", "keep_lost"))
        response = Response("18")
        if item is None:
            response.fixed(SECURITY_MARKER_OTHER, SECURITY_MARKER_OTHER, FEE_TYPE_OTHER)
            response.fixed(timestamp(ctx.now))
            response.add("AB", barcode)
            response.add("AJ", "")
            return response

        if seen in ("mark_found", "keep_lost"):
            ils_items.mark_seen(txn, ctx.circ(txn), item, clear_lost=seen == "mark_found")

        facts = ils_items.item_circulation(txn, item, ctx.today)
        status = ils_items.circulation_status(txn, item, ctx.circ(txn).options, facts)
        response.fixed(status, SECURITY_MARKER_TATTLE_TAPE, FEE_TYPE_OTHER, timestamp(ctx.now))
        if status == ils_items.CIRC_OTHER:
            response.maybe("AF", "Item is damaged")
        response.add("AB", item["barcode"])
        response.add("AJ", item.get("title") or "")
        response.maybe("CK", item.get("sip_media_type"))
        response.maybe("AQ", fields.permanent_location(ctx, item))
        response.maybe("CH", item.get("sip_item_properties"))
        response.maybe("CR", fields.cr_value(ctx, item))
        response.maybe("BG", item.get("homebranch"))
        if facts["queue"] > 0:
            response.add("CF", str(facts["queue"]))
        if facts["issue_id"] is not None:
            response.maybe("AH", fields.due_date(ctx, facts["date_due"]))
        if facts["hold_found"] == "W" and facts["hold_expirationdate"]:
            response.maybe("CM", fields.sip_datetime(str(facts["hold_expirationdate"])[:10]))
        response.maybe("CS", item.get("itemcallnumber"))
        fields.add_item_fields(ctx, response, item)
        return response

    def handle_ItemStatusUpdate(self, txn, ctx, msg: Message) -> Response:
        """3M SIP2 2.00, Item Status Update (19) -> Item Status Update Response (20).

        Stores the item properties (CH) in ``kgw_item_properties``, where 17 reads them
        back. ``1`` when stored; ``0`` with AF for an unknown item (Koha crashes there) or when
        the institution's policy has ``status_update`` off (advertised as N in 98 BX).
        """
        barcode = msg.get("AB") or ""
        item = _find(txn, ctx, barcode, lock=True)
        policy = ctx.institution.policy
        response = Response("20")
        if item is None:
            response.fixed("0", timestamp(ctx.now))
            response.add("AB", barcode)
            response.maybe("AF", INVALID_ITEM)
            return response
        if not getattr(policy, "status_update", False):
            response.fixed("0", timestamp(ctx.now))
            response.add("AB", item["barcode"])
            response.maybe("AJ", item.get("title"))
            response.maybe("CH", item.get("sip_item_properties"))
            response.maybe("AF", "Item status update is not allowed")
            return response
        properties = msg.get("CH")
        ils_items.set_item_properties(txn, item["itemnumber"], properties or None)
        ctx.log.append(f"item {item['barcode']} properties updated")
        response.fixed("1", timestamp(ctx.now))
        response.add("AB", item["barcode"])
        response.maybe("AJ", item.get("title"))
        response.maybe("CH", properties)
        return response
