"""Well-formed negative answers when a request cannot be served.

When the database is unreachable (or a handler fails), a kiosk still gets the response message
that belongs to its request (3M SIP2 2.00 message pairs), with ``ok`` = 0 / N and a screen
message, never a non-SIP line and never a dropped connection. 98 reports the ACS as off-line.
"""

from __future__ import annotations

from koha_gateway.sip2.codec import Response, timestamp

UNAVAILABLE = "System unavailable, please see staff"
FAILED = "Request failed, please see staff"

_NO_PATRON = "YYYY" + " " * 10  # every privilege denied (patron status, 14 characters)
_NO_PATRON_FIELDS = ("AO", "AA", "AE", "BL")

# request code -> (response code, fixed values before the timestamp, after it, fields)
_LAYOUTS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "23": ("24", (_NO_PATRON, "{language}"), (), _NO_PATRON_FIELDS),
    "01": ("24", (_NO_PATRON, "{language}"), (), _NO_PATRON_FIELDS),
    "63": ("64", (_NO_PATRON, "{language}"), ("0000",) * 6, _NO_PATRON_FIELDS),
    "25": ("26", (_NO_PATRON, "000"), (), _NO_PATRON_FIELDS),
    "11": ("12", ("0", "N", "U", "N"), (), ("AO", "AA", "AB", "AJ", "AH")),
    "09": ("10", ("0", "N", "U", "Y"), (), ("AO", "AB", "AQ")),
    "29": ("30", ("0", "N", "U", "N"), (), ("AO", "AA", "AB", "AJ", "AH")),
    "65": ("66", ("0", "0000", "0000"), (), ("AO",)),
    "15": ("16", ("0", "N"), (), ("AO", "AA")),
    "37": ("38", ("N",), (), ("AO", "AA", "BK")),
    "35": ("36", ("N",), (), ("AO", "AA")),
    "17": ("18", ("01", "00", "01"), (), ("AB", "AJ")),
    "19": ("20", ("0",), (), ("AB",)),
}


def failure_response(ctx, msg, *, unavailable: bool) -> Response:
    """The negative response to ``msg`` (any request code the ACS serves)."""
    text = UNAVAILABLE if unavailable else FAILED
    when = timestamp(ctx.now)
    if msg.code == "99":
        version = "2.00" if ctx.protocol_version == 2 else "1.00"
        return (
            Response("98")
            .fixed("N", "N", "N", "N", "N", "N", "000", "000", when, version)
            .add("AO", ctx.branch)
            .add("BX", "NNNNYYYNNNNNNNNN")
            .add("AF", text)
        )
    try:
        code, before, after, fids = _LAYOUTS[msg.code]
    except KeyError:
        raise ValueError(f"no fallback response for message {msg.code}") from None
    language = (msg.fixed.get("language") or "000").ljust(3, "0")[:3]
    response = Response(code).fixed(*(v.format(language=language) for v in before), when, *after)
    for fid in fids:
        if fid == "AO":
            response.add("AO", msg.get("AO") or ctx.branch)
        elif fid == "BL":
            response.add("BL", "N")
        elif fid == "BK":
            response.maybe("BK", msg.get("BK"))
        elif fid in ("AA", "AB"):
            response.add(fid, msg.get(fid))
        else:
            response.add(fid, "")
    return response.add("AF", text)
