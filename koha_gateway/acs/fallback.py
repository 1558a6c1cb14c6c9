"""Well-formed negative answers when a request cannot be served.

When the database is unreachable (or a handler fails), a kiosk still gets the response message
that belongs to its request (3M SIP2 2.00 pairs), with ``ok`` = 0 / N and a screen message, never
a non-SIP line and never a dropped connection. 98 reports the ACS as off-line.
"""

from __future__ import annotations

from koha_gateway.sip2.codec import Response, timestamp

UNAVAILABLE = "System unavailable, please see staff"
FAILED = "Request failed, please see staff"
_NO_PATRON = "YYYY" + " " * 10


def failure_response(ctx, msg, *, unavailable: bool) -> Response:
    """The negative response to ``msg`` (any request code the ACS serves)."""
    text = UNAVAILABLE if unavailable else FAILED
    when = timestamp(ctx.now)
    code = msg.code
    institution = msg.get("AO") or ctx.branch
    if code in ("23", "01"):
        language = msg.fixed.get("language") or "000"
        return (
            Response("24")
            .fixed(_NO_PATRON, language.ljust(3, "0")[:3], when)
            .add("AO", institution)
            .add("AA", msg.get("AA"))
            .add("AE", "")
            .add("BL", "N")
            .add("AF", text)
        )
    if code == "63":
        language = msg.fixed.get("language") or "000"
        return (
            Response("64")
            .fixed(_NO_PATRON, language.ljust(3, "0")[:3], when, *(["0000"] * 6))
            .add("AO", institution)
            .add("AA", msg.get("AA"))
            .add("AE", "")
            .add("BL", "N")
            .add("AF", text)
        )
    if code == "25":
        return (
            Response("26")
            .fixed(_NO_PATRON, "000", when)
            .add("AO", institution)
            .add("AA", msg.get("AA"))
            .add("AE", "")
            .add("BL", "N")
            .add("AF", text)
        )
    if code == "11":
        return (
            Response("12")
            .fixed("0", "N", "U", "N", when)
            .add("AO", institution)
            .add("AA", msg.get("AA"))
            .add("AB", msg.get("AB"))
            .add("AJ", "")
            .add("AH", "")
            .add("AF", text)
        )
    if code == "09":
        return (
            Response("10")
            .fixed("0", "N", "U", "Y", when)
            .add("AO", institution)
            .add("AB", msg.get("AB"))
            .add("AQ", "")
            .add("AF", text)
        )
    if code == "29":
        return (
            Response("30")
            .fixed("0", "N", "U", "N", when)
            .add("AO", institution)
            .add("AA", msg.get("AA"))
            .add("AB", msg.get("AB"))
            .add("AJ", "")
            .add("AH", "")
            .add("AF", text)
        )
    if code == "65":
        return (
            Response("66").fixed("0", "0000", "0000", when).add("AO", institution).add("AF", text)
        )
    if code == "15":
        return (
            Response("16")
            .fixed("0", "N", when)
            .add("AO", institution)
            .add("AA", msg.get("AA"))
            .add("AF", text)
        )
    if code == "37":
        return (
            Response("38")
            .fixed("N", when)
            .add("AO", institution)
            .add("AA", msg.get("AA"))
            .maybe("BK", msg.get("BK"))
            .add("AF", text)
        )
    if code == "35":
        return (
            Response("36")
            .fixed("N", when)
            .add("AO", institution)
            .add("AA", msg.get("AA"))
            .add("AF", text)
        )
    if code == "17":
        return (
            Response("18")
            .fixed("01", "00", "01", when)
            .add("AB", msg.get("AB"))
            .add("AJ", "")
            .add("AF", text)
        )
    if code == "19":
        return Response("20").fixed("0", when).add("AB", msg.get("AB")).add("AF", text)
    if code == "99":
        version = "2.00" if ctx.protocol_version == 2 else "1.00"
        return (
            Response("98")
            .fixed("N", "N", "N", "N", "N", "N", "000", "000", when, version)
            .add("AO", ctx.branch)
            .add("BX", "NNNNYYYNNNNNNNNN")
            .add("AF", text)
        )
    raise ValueError(f"no fallback response for message {code}")
