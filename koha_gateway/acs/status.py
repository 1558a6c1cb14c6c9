"""3M SIP2 2.00, SC Status (99) -> ACS Status (98)."""

from __future__ import annotations

from typing import Any

from koha_gateway.ils.context import staff_borrowernumber
from koha_gateway.sip2.codec import Message, Response, sip_bool, timestamp

__all__ = ["StatusHandlers", "supported_messages"]

# 3M SIP2 2.00 "supported messages" (BX) positions, in the order of the specification.
_BX_ORDER = (
    "patron status",
    "checkout",
    "checkin",
    "block patron",
    "acs status",
    "request resend",
    "login",
    "patron information",
    "end patron session",
    "fee paid",
    "item information",
    "item status update",
    "patron enable",
    "hold",
    "renew",
    "renew all",
)


def supported_messages(policy: Any) -> str:
    """BX: every message is supported except item status update (19) when the institution's
    ``status_update`` policy is false (Koha always sends N there; 19 works here)."""
    flags = []
    for name in _BX_ORDER:
        if name == "item status update":
            flags.append(sip_bool(getattr(policy, "status_update", False)))
        else:
            flags.append("Y")
    return "".join(flags)


def _three_digits(value: Any) -> str:
    """Policy timeout / retries as ``NNN``; missing or out of range gives ``000`` (Koha)."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        return "000"
    if number < 0 or number > 999:
        return "000"
    return f"{number:03d}"


def requested_version(text: str | None) -> int:
    """The protocol version asked for in 99: ``1.xx`` -> 1, ``2.xx`` -> 2, anything else 1
    (Koha's rule)."""
    value = (text or "").strip()
    if value.startswith("2"):
        return 2
    return 1


class StatusHandlers:
    """The SC Status message."""

    def handle_SCStatus(self, txn, ctx, msg: Message) -> Response:
        """3M SIP2 2.00, SC Status (99) -> ACS Status (98).

        Fixed part from the institution's ``<policy>``: online Y, checkin, checkout, renewal
        (``renewal="false"`` gives N here, unlike Koha), status update, offline, timeout and
        retries (3 digits), date, protocol version. AO is the account's institution; BX (v2)
        lists the supported messages. The SC's status code (0 ok, 1 out of paper, 2 shutting
        down) is recorded in ``ctx.log``; its maximum print width is kept in
        ``ctx.print_width`` (it limits AG, which 98 does not send).

        The handler reads the SIP account's patron record, so that a database outage is
        noticed by the kiosk's periodic 99 (the adapter then answers with on-line status N).
        """
        policy = ctx.institution.policy
        # Reach the database: a 99 is the kiosk's health check, and the adapter answers an
        # off-line 98 when this transaction fails. Koha dies when the SIP user has no
        # borrowers row; here the request is answered and the problem logged.
        userid = ctx.staff_userid or getattr(ctx.account, "id", None)
        if staff_borrowernumber(txn, userid, fresh=True) is None:
            ctx.log.append(f"SIP account {userid!r} has no patron record with that userid")
        version = requested_version(msg.fixed.get("protocol_version"))
        ctx.protocol_version = version
        width = (msg.fixed.get("max_print_width") or "").strip()
        if width.isascii() and width.isdigit():
            ctx.print_width = int(width)
        status = (msg.fixed.get("status_code") or "0").strip() or "0"
        if status in ("1", "2"):
            meaning = "out of paper" if status == "1" else "shutting down"
            ctx.log.append(f"SC status {status} ({meaning})")
        response = Response("98").fixed(
            "Y",
            sip_bool(policy.checkin),
            sip_bool(policy.checkout),
            sip_bool(policy.renewal),
            sip_bool(policy.status_update),
            sip_bool(policy.offline),
            _three_digits(policy.timeout),
            _three_digits(policy.retries),
            timestamp(ctx.now),
            "2.00" if version >= 2 else "1.00",
        )
        response.add("AO", ctx.institution.id)
        if version >= 2:
            response.add("BX", supported_messages(policy))
        return response
