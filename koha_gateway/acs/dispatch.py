"""Dispatch of parsed SIP2 requests to ``handle_<MessageName>`` methods (ldaptor style).

Each group of messages lives in its own mixin (``status``, ``patron``, ``item``, ``circ``); the
:class:`ACS` class joins them. A handler runs inside one database transaction::

    def handle_Checkout(self, txn, ctx: RequestContext, msg: Message) -> Response

Login (93) and Request Resend (97) never reach the ACS: the session core and the authenticator
answer them.
"""

from __future__ import annotations

from koha_gateway.acs.circ import CirculationHandlers
from koha_gateway.acs.item import ItemHandlers
from koha_gateway.acs.patron import PatronHandlers
from koha_gateway.acs.status import StatusHandlers
from koha_gateway.sip2.codec import Message, Response


class UnsupportedMessage(Exception):
    """A request the ACS has no handler for; the adapter answers it with 96."""


class ACS(StatusHandlers, PatronHandlers, ItemHandlers, CirculationHandlers):
    """The automated circulation system: Koha's behaviour for every SIP2 request."""

    def handle(self, txn, ctx, msg: Message) -> Response:
        handler = getattr(self, "handle_" + msg.name, None)
        if handler is None:
            raise UnsupportedMessage(msg.code)
        return handler(txn, ctx, msg)
