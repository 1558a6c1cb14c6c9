"""Pure, sans-I/O implementation of the 3M SIP2 2.00 wire protocol.

* :mod:`~koha_gateway.sip2.spec` -- declarative tables of fields and messages;
* :mod:`~koha_gateway.sip2.checksum` -- the AZ checksum ("Error detection");
* :mod:`~koha_gateway.sip2.codec` -- :class:`Message`, :func:`parse`, :class:`Response`;
* :mod:`~koha_gateway.sip2.framing` -- CR / CRLF / LF line framing;
* :mod:`~koha_gateway.sip2.output` -- per-account :class:`OutputPolicy`;
* :mod:`~koha_gateway.sip2.templates` -- safe Koha-compatible templates for AE / DA / AV;
* :mod:`~koha_gateway.sip2.session` -- the per-connection state machine.

Nothing in this package imports Twisted, a database or sockets, or reads the clock.
"""

from koha_gateway.sip2.checksum import checksum, verify
from koha_gateway.sip2.codec import Message, ParseError, Response, parse
from koha_gateway.sip2.output import DEFAULT_POLICY, OutputPolicy
from koha_gateway.sip2.session import Close, Credentials, Reply, Request, Session

__all__ = [
    "DEFAULT_POLICY",
    "Close",
    "Credentials",
    "Message",
    "OutputPolicy",
    "ParseError",
    "Reply",
    "Request",
    "Response",
    "Session",
    "checksum",
    "parse",
    "verify",
]
