"""Per-connection SIP2 state machine (sans-I/O).

A :class:`Session` is fed the bytes read from one connection and answers with events; the
protocol adapter performs the I/O, runs the ACS for :class:`Request` events, authenticates
:class:`Credentials` and 93 logins, and reports back with :meth:`Session.login_ok`,
:meth:`Session.login_failed` and :meth:`Session.respond`. All state is per connection.

Rules (3M SIP2 2.00 "Error detection", "Request ACS Resend"; Koha ``SIPServer.pm`` /
``Sip/MsgType.pm``; our decisions marked *):

* Error detection per message: a message ending ``AY<n>AZ<xxxx>`` is verified over the bytes as
  received; a bad checksum is answered ``96AZFEF6`` + CR and not processed. ``97AZFEF5`` is a
  resend request with error detection.
* 97: before any response ``96``; otherwise the last response again, rewritten with the 97's
  sequence number and a new checksum when it carried one.
* Unknown or unparseable messages, and version-2 messages while the session is at version 1,
  are answered ``96``.
* \\* Empty lines are ignored (Koha closes the connection). A line longer than ``max_line``
  closes it.
* RAW transport: before login only 93 is accepted; anything else closes the connection.
* Telnet transport: ``login:`` / ``password:`` prompts, three attempts.
* \\* Both transports run at protocol version 2.00 after login (Koha leaves telnet at 1.00).
  A 99 carrying ``1.xx`` switches the session to version 1, ``2.xx`` back to 2.

While a login (93 or telnet credentials) is being checked, further lines are processed as
SIP messages right away: the adapter answers requests strictly in order, so it handles them
after the login result, and refuses them (closing the connection) if the login failed. Call
:meth:`Session.login_ok` before writing a 941, so that the 941 already uses the account's
output policy, as in Koha.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from koha_gateway.sip2.checksum import checksum, verify
from koha_gateway.sip2.codec import Message, ParseError, Response, parse
from koha_gateway.sip2.framing import LineFramer, LineTooLong
from koha_gateway.sip2.output import DEFAULT_POLICY, OutputPolicy
from koha_gateway.sip2.spec import REQUESTS, lookup

__all__ = [
    "Close",
    "Credentials",
    "Event",
    "Reply",
    "Request",
    "Session",
    "mask_text",
    "MASKED_FIELDS",
    "BAD_CHECKSUM",
    "RESEND",
]

#: Field ids whose values never reach a log: terminal, patron and login passwords.
MASKED_FIELDS = frozenset({"AC", "AD", "CO"})
#: Answer to a message whose checksum is wrong (3M SIP2 2.00 "Request SC Resend" with AZ).
BAD_CHECKSUM = b"96AZFEF6\r"
#: Answer to an unknown or unparseable message (3M SIP2 2.00 "Request SC Resend").
RESEND = b"96\r"

_TELNET_PROMPT = b"login: "
_TELNET_PASSWORD = b"password: "
_TELNET_INVALID = b"Invalid login\r\n"
_TELNET_OK = b"Login OK.  Initiating SIP\r\n"
_TELNET_ATTEMPTS = 3
_TELNET_TRIM = " " + "".join(map(chr, range(32))) + "\x7f"  # spaces and control characters
_HEX = frozenset(b"0123456789abcdefABCDEF")
_DIGITS = frozenset(b"0123456789")

# Telnet protocol bytes (RFC 854/855).
_IAC, _SB, _SE = 0xFF, 0xFA, 0xF0
_WILL_DONT = frozenset({0xFB, 0xFC, 0xFD, 0xFE})


@dataclass(frozen=True, slots=True)
class Request:
    """A parsed request for the ACS. ``seq`` is the AY sequence digit, ``None`` without error
    detection (the response then has no AY/AZ). ``raw`` is the line as received."""

    message: Message
    seq: str | None
    raw: bytes


@dataclass(frozen=True, slots=True)
class Reply:
    """Bytes the adapter writes as they are (96, 97 resends, telnet prompts)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Credentials:
    """Telnet user id and password to authenticate; answer with ``login_ok``/``login_failed``."""

    userid: str
    password: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Close:
    """The connection must be closed (after writing any earlier replies)."""

    reason: str


Event = Request | Reply | Credentials | Close

# Phases of a connection.
_NEED_LOGIN = "need-login"  # RAW: waiting for a 93 (also after a failed re-login)
_TELNET_USER = "telnet-user"
_TELNET_PASS = "telnet-password"
_PENDING = "pending"  # a 93 or telnet credentials are being checked; lines go on as SIP
_READY = "ready"
_CLOSED = "closed"


def _has_suffix(line: bytes) -> bool:
    """True when ``line`` ends with an error-detection suffix ``AY?AZ????``."""
    n = len(line)
    return n >= 11 and line[n - 9 : n - 7] == b"AY" and line[n - 6 : n - 4] == b"AZ"


class _TelnetFilter:
    """Removes telnet commands (IAC sequences, sub-negotiations) and the NUL of CR NUL."""

    __slots__ = ("_state", "_after_cr")

    def __init__(self) -> None:
        self._state = 0  # 0 data, 1 after IAC, 2 option byte, 3 in SB, 4 IAC inside SB
        self._after_cr = False

    def feed(self, data: bytes) -> bytes:
        if self._state == 0 and _IAC not in data and 0 not in data:
            if data:
                self._after_cr = data[-1] == 0x0D
            return data
        out = bytearray()
        state = self._state
        after_cr = self._after_cr
        for byte in data:
            if state == 0:
                if byte == _IAC:
                    state = 1
                elif byte == 0 and after_cr:
                    after_cr = False
                else:
                    out.append(byte)
                    after_cr = byte == 0x0D
            elif state == 1:
                if byte == _IAC:
                    out.append(byte)
                    state = 0
                elif byte in _WILL_DONT:
                    state = 2
                elif byte == _SB:
                    state = 3
                else:
                    state = 0
            elif state == 2:
                state = 0
            elif state == 3:
                if byte == _IAC:
                    state = 4
            else:  # state 4
                state = 0 if byte == _SE else 3
        self._state = state
        self._after_cr = after_cr
        return bytes(out)


class Session:
    """The SIP2 state machine of one connection (``transport`` ``"RAW"`` or ``"telnet"``)."""

    def __init__(self, transport: str = "RAW", max_line: int = 8192, delimiter: str = "|") -> None:
        kind = transport.strip().lower()
        if kind not in ("raw", "telnet"):
            raise ValueError(f"unknown transport {transport!r}")
        self.transport = "telnet" if kind == "telnet" else "RAW"
        self.delimiter = delimiter or "|"
        self._trailing = b" " + self.delimiter.encode("latin-1", "replace")
        self.max_line = max_line
        self._framer = LineFramer(max_line)
        self._telnet = _TelnetFilter() if self.transport == "telnet" else None
        self._phase = _TELNET_USER if self.transport == "telnet" else _NEED_LOGIN
        self._policy = DEFAULT_POLICY
        self._logged_in = False
        self._version = 2
        self._last: bytes | None = None
        self._telnet_user = ""
        self._telnet_secret: bytes | None = None
        self._telnet_failures = 0

    # --- public state -------------------------------------------------------------------

    @property
    def logged_in(self) -> bool:
        """True once a login succeeded (and until a failed re-login)."""
        return self._logged_in

    @property
    def protocol_version(self) -> int:
        """1 or 2; selects whether version-2-only messages are accepted."""
        return self._version

    @property
    def policy(self) -> OutputPolicy:
        """The output policy: the account's after login, :data:`DEFAULT_POLICY` before."""
        return self._policy

    @property
    def closed(self) -> bool:
        """True after a :class:`Close` event was produced."""
        return self._phase == _CLOSED

    @property
    def last_response(self) -> bytes | None:
        """The last bytes sent through :meth:`respond` or a 96, kept for 97."""
        return self._last

    # --- input --------------------------------------------------------------------------

    def greeting(self) -> bytes:
        """What to send when the connection opens: the telnet ``login:`` prompt, else nothing."""
        return _TELNET_PROMPT if self.transport == "telnet" else b""

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed bytes read from the connection; return the resulting events in order."""
        if self._phase == _CLOSED or not data:
            return []
        if self._telnet is not None:
            data = self._telnet.feed(data)
            if not data:
                return []
        try:
            lines = self._framer.feed(data)
            too_long = None
        except LineTooLong as exc:
            lines = exc.lines
            too_long = exc
        events: list[Event] = []
        for line in lines:
            self._line(line, events)
            if self._phase == _CLOSED:
                return events
        if too_long is not None:
            self._close(events, str(too_long))
        return events

    def _line(self, line: bytes, events: list[Event]) -> None:
        if self._phase in (_TELNET_USER, _TELNET_PASS):
            self._telnet_line(line, events)
            return
        line = line.lstrip(b" \t\x00")
        if not line.strip():
            return  # our decision: keep-alive empty lines are ignored
        self._message(line, events)

    def _telnet_line(self, line: bytes, events: list[Event]) -> None:
        text = self._decode(line).strip(_TELNET_TRIM)
        if self._phase == _TELNET_USER:
            if not text:
                events.append(Reply(_TELNET_PROMPT))
                return
            self._telnet_user = text
            self._phase = _TELNET_PASS
            events.append(Reply(_TELNET_PASSWORD))
            return
        self._telnet_secret = line
        self._phase = _PENDING
        events.append(Credentials(self._telnet_user, text))

    def _decode(self, data: bytes) -> str:
        try:
            return data.decode(self._policy.encoding)
        except (UnicodeDecodeError, LookupError):
            return data.decode("latin-1")

    def _message(self, line: bytes, events: list[Event]) -> None:
        seq: str | None = None
        body = line
        checked = line
        if not _has_suffix(checked) and line[-1:] in self._trailing:
            # Koha strips trailing junk before looking for AY/AZ: a stray delimiter or space
            # after the checksum does not turn error detection off.
            stripped = line.rstrip(self._trailing)
            if _has_suffix(stripped):
                checked = stripped
        n = len(checked)
        if _has_suffix(checked):
            if not verify(checked) or checked[n - 7] not in _DIGITS:
                self._send96(events, BAD_CHECKSUM)
                return
            seq = chr(checked[n - 7])
            body = checked[: n - 9]
        elif checked[:4] == b"97AZ" and n == 8:
            if not verify(checked):
                self._send96(events, BAD_CHECKSUM)
                return
            body = b"97"
        code = body[:2].decode("latin-1")
        if self._phase == _NEED_LOGIN and code != "93":
            self._close(events, "first message was not a Login (93)")
            return
        if code == "97":
            self._resend(seq, events)
            return
        text = self._decode(body)
        try:
            message = parse(text, self.delimiter)
        except ParseError:
            self._send96(events, RESEND)
            return
        spec = REQUESTS[message.code]
        if message.code == "93":
            self._version = 2  # Koha: a Login selects protocol version 2.00
            self._phase = _PENDING
        elif spec.v2_only and self._version < 2:
            self._send96(events, RESEND)
            return
        elif message.code == "99":
            version = message.fixed.get("protocol_version", "")
            if version.startswith("1"):
                self._version = 1
            elif version.startswith("2"):
                self._version = 2
        events.append(Request(message, seq, line))

    def _send96(self, events: list[Event], data: bytes) -> None:
        self._last = data
        events.append(Reply(data))

    def _resend(self, seq: str | None, events: list[Event]) -> None:
        last = self._last
        if last is None:
            self._send96(events, RESEND)
            return
        text = last.rstrip(b"\r\n")
        terminator = last[len(text) :]
        n = len(text)
        if _has_suffix(text):
            digit = seq.encode("ascii") if seq is not None else text[n - 7 : n - 6]
            data = text[: n - 9] + b"AY" + digit + b"AZ"
            last = data + checksum(data).encode("ascii") + terminator
            self._last = last
        events.append(Reply(last))

    def _close(self, events: list[Event], reason: str) -> None:
        self._phase = _CLOSED
        self._telnet_secret = None
        events.append(Close(reason))

    # --- results from the adapter --------------------------------------------------------

    def login_ok(self, policy: OutputPolicy) -> list[Event]:
        """The pending login succeeded: use ``policy`` for output, switch to version 2.00.

        Returns the telnet ``Login OK`` line for a telnet login, else nothing. The session's
        delimiter (Koha: the top-level one) is used for output too, whatever ``policy`` says,
        so requests and responses always agree.
        """
        if self._phase == _CLOSED:
            return []
        events: list[Event] = []
        telnet_login = self.transport == "telnet" and self._telnet_secret is not None
        if policy.delimiter != self.delimiter:
            policy = dataclasses.replace(policy, delimiter=self.delimiter)
        self._policy = policy
        self._logged_in = True
        self._version = 2
        self._telnet_secret = None
        self._telnet_failures = 0
        self._phase = _READY
        if telnet_login:
            events.append(Reply(_TELNET_OK))
        return events

    def login_failed(self) -> list[Event]:
        """The pending login failed.

        Telnet credentials: ``Invalid login`` and a new prompt, or :class:`Close` after the third
        failure. A 93: the session is logged out (the 940 is built by the adapter); only
        another 93 is accepted next, anything else closes the connection.
        """
        if self._phase == _CLOSED:
            return []
        events: list[Event] = []
        if self.transport == "telnet" and self._telnet_secret is not None:
            self._telnet_secret = None
            self._telnet_failures += 1
            events.append(Reply(_TELNET_INVALID))
            if self._telnet_failures >= _TELNET_ATTEMPTS:
                self._close(events, f"{_TELNET_ATTEMPTS} failed telnet logins")
                return events
            self._phase = _TELNET_USER
            events.append(Reply(_TELNET_PROMPT))
        else:
            self._logged_in = False
            self._policy = DEFAULT_POLICY
            self._phase = _NEED_LOGIN
        return events

    # --- output ---------------------------------------------------------------------------

    def respond(self, response: Response, seq: str | int | None = None) -> bytes:
        """Encode ``response`` with the session's policy (AY/AZ when ``seq`` is given) and keep
        it for a later 97."""
        data = response.encode(self._policy, seq)
        self._last = data
        return data

    # --- logging --------------------------------------------------------------------------

    def mask(self, raw: bytes | str) -> str:
        """``raw`` as text for a log: values of AC, AD and CO (and a telnet password) become
        ``****``; control characters are escaped so a line cannot forge log entries."""
        if isinstance(raw, bytes | bytearray):
            raw = bytes(raw)
            if self._telnet_secret is not None and raw.rstrip(b"\r\n") == self._telnet_secret:
                return "****"
            text = self._decode(raw)
        else:
            text = raw
        return _escape(mask_text(text, self.delimiter))


def mask_text(text: str, delimiter: str = "|") -> str:
    """The SIP2 message ``text`` with the values of AC, AD and CO replaced by ``****``."""
    if not any(fid in text for fid in MASKED_FIELDS):
        return text
    spec = lookup(text[:2])
    start = 2 + spec.fixed_length if spec is not None else 0
    head, tail = text[:start], text[start:]
    pieces = tail.split(delimiter)
    for i, piece in enumerate(pieces):
        if piece[:2] in MASKED_FIELDS:
            suffix = ""
            # an error-detection suffix glued to the last value stays readable
            if i == len(pieces) - 1 and piece[-9:-7] == "AY" and piece[-6:-4] == "AZ":
                suffix = piece[-9:]
            pieces[i] = piece[:2] + "****" + suffix
    return head + delimiter.join(pieces)


_ESCAPES = {i: f"\\x{i:02x}" for i in range(32)}
_ESCAPES.update({0x0D: "\\r", 0x0A: "\\n", 0x09: "\\t", 0x7F: "\\x7f"})


def _escape(text: str) -> str:
    return text.translate(_ESCAPES) if not text.isprintable() else text
