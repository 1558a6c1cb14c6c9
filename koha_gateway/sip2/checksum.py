"""3M SIP2 2.00 "Error detection": the AZ checksum.

The checksum is computed over the message bytes as transmitted (after character encoding),
from the first byte of the command code up to and including the letters ``AZ``: the byte
values are summed, the sum is negated in 16-bit two's complement and printed as four
upper-case hexadecimal digits. A receiver verifies a message by adding the checksum value to
the byte sum of everything before it: the result is 0 modulo 65536.
"""

from __future__ import annotations

__all__ = ["checksum", "verify"]

_HEX = frozenset(b"0123456789abcdefABCDEF")


def checksum(data: bytes) -> str:
    """The four upper-case hex digits of the SIP2 checksum of ``data``.

    ``data`` must already end with ``AZ`` when the result is meant for an AZ field.
    """
    return "%04X" % (-sum(data) & 0xFFFF)


def verify(data: bytes) -> bool:
    """True when ``data`` ends with ``AZ`` plus a checksum that matches the bytes before it.

    Lower-case hex digits are accepted. A message without a final ``AZxxxx`` is invalid.
    """
    if len(data) < 6 or data[-6:-4] != b"AZ":
        return False
    digits = data[-4:]
    if not all(b in _HEX for b in digits):
        return False
    return (sum(data[:-4]) + int(digits, 16)) & 0xFFFF == 0
