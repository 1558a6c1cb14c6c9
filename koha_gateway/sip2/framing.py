"""Stream framing of SIP2 messages.

3M SIP2 2.00 ends every message with a carriage return. Self-check machines in the field also
send CR LF or a bare LF, and TCP may split a message over several reads or deliver several
messages in one. :class:`LineFramer` turns a byte stream into lines, whatever the mix.
"""

from __future__ import annotations

import re

__all__ = ["LineFramer", "LineTooLong"]

_SPLIT = re.compile(rb"\r\n?|\n")


class LineTooLong(ValueError):
    """A line, or the unterminated rest of the buffer, exceeds the framer's limit.

    ``lines`` holds the complete lines found before the offending one in the same read, so
    that the caller can still process them before closing the connection.
    """

    def __init__(self, limit: int, lines: list[bytes] | None = None) -> None:
        super().__init__(f"line longer than {limit} bytes")
        self.limit = limit
        self.lines = lines or []


class LineFramer:
    """Split a byte stream into lines terminated by CR, CR LF or LF.

    ``feed(data)`` returns the complete lines (terminators removed) in order, possibly none.
    A LF that directly follows a CR, even in the next read, belongs to that CR and does not
    produce an empty line; other empty lines are returned as ``b""``. A line longer than
    ``max_line`` bytes (terminator excluded), complete or not, raises :class:`LineTooLong`;
    the framer then refuses further input.
    """

    __slots__ = ("max_line", "_buffer", "_after_cr", "_failed")

    def __init__(self, max_line: int = 8192) -> None:
        if max_line < 1:
            raise ValueError("max_line must be positive")
        self.max_line = max_line
        self._buffer = b""
        self._after_cr = False
        self._failed = False

    @property
    def buffered(self) -> int:
        """Number of bytes held for an unterminated line."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return the lines they complete."""
        if self._failed:
            raise LineTooLong(self.max_line)
        if not data:
            return []
        if self._after_cr and data[0] == 0x0A:
            data = data[1:]
            if not data:
                self._after_cr = False
                return []
        buffer = self._buffer + data if self._buffer else bytes(data)
        self._after_cr = buffer[-1] == 0x0D
        if 0x0D not in buffer and 0x0A not in buffer:
            lines: list[bytes] = []
            rest = buffer
        else:
            lines = _SPLIT.split(buffer)
            rest = lines.pop()
        limit = self.max_line
        for index, line in enumerate(lines):
            if len(line) > limit:
                self._fail()
                raise LineTooLong(limit, lines[:index])
        if len(rest) > limit:
            self._fail()
            raise LineTooLong(limit, lines)
        self._buffer = rest
        return lines

    def _fail(self) -> None:
        self._failed = True
        self._buffer = b""
