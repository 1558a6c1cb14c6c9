r"""koha-gateway-client: a SIP2 client for people and scripts.

Logs in as a SIP account, sends messages named on the command line and prints every field of each
answer on its own line with its name and meaning (or --json):

    koha-gateway-client --port 6001 --login joe --password joes \
        patron-info --patron 23529000000001 --patron-password 1234 --summary hold,overdue \
        checkout --patron 23529000000001 --item 39999000000001

Messages: sc-status, patron-status, patron-info, checkout, checkin, item-info, item-status-update,
renew, renew-all, hold, fee-paid, block-patron, patron-enable, end-session, raw. Each takes its own
options ('koha-gateway-client checkout --help'). Error detection (AY/AZ) is on unless
--no-error-detection; a wrong checksum in an answer is reported.

Exit status: 0 when every message was answered, 1 on a connection or protocol problem (refused,
closed, timeout, TLS, an answer that cannot be read, a wrong checksum, a 96), 2 on a usage error,
3 when the login is refused.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import socket
import ssl
import sys
from dataclasses import dataclass, field

from koha_gateway.client import SIPClient, SIPError
from koha_gateway.sip2.checksum import verify
from koha_gateway.sip2.codec import ParseError, Response, timestamp
from koha_gateway.sip2.describe import Described, describe, split_error_detection
from koha_gateway.sip2.session import mask_text
from koha_gateway.sip2.spec import FEE_TYPE, HOLD_MODE, PAYMENT_TYPE, SUMMARY_ITEMS

__all__ = ["MESSAGES", "main"]

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_LOGIN = 0, 1, 2, 3


class ClientError(Exception):
    """A problem that ends the session, with the message shown to the user."""

    def __init__(self, message: str, status: int = EXIT_ERROR):
        super().__init__(message)
        self.status = status


# --- building requests ------------------------------------------------------------------------


def _flag(value: bool) -> str:
    return "Y" if value else "N"


def _summary(text: str | None) -> str:
    if not text:
        return " " * 10
    wanted = {part.strip() for part in text.split(",") if part.strip()}
    names = [name for name, _ in SUMMARY_ITEMS]
    unknown = wanted - set(names)
    if unknown:
        raise ClientError(
            f"--summary: unknown {', '.join(sorted(unknown))} (one of {', '.join(names)})",
            EXIT_USAGE,
        )
    return "".join("Y" if name in wanted else " " for name in names).ljust(10)


def _code(table: dict[str, str], value: str, option: str) -> str:
    if value in table:
        return value
    for code, meaning in table.items():
        if meaning.lower() == value.lower():
            return code
    choices = ", ".join(f"{c} ({m})" for c, m in table.items())
    raise ClientError(f"{option}: {value!r} is none of {choices}", EXIT_USAGE)


def _common(r: Response, a, *fids: str) -> Response:
    values = {
        "AO": a.institution,
        "AA": a.patron,
        "AB": a.item,
        "AC": a.terminal_password,
        "AD": a.patron_password,
    }
    for fid in fids:
        if fid in ("AA", "AB", "AO", "AC"):
            r.add(fid, values[fid] or "")
        else:
            r.maybe(fid, values[fid])
    return r


def _sc_status(a, now):
    return Response("99").fixed(a.status_code, f"{a.print_width:03d}", "2.00")


def _patron_status(a, now):
    r = Response("23").fixed(a.language, now)
    return _common(r, a, "AO", "AA", "AC", "AD")


def _patron_info(a, now):
    r = Response("63").fixed(a.language, now, _summary(a.summary))
    _common(r, a, "AO", "AA", "AC", "AD")
    return r.maybe("BP", a.start_item).maybe("BQ", a.end_item)


def _checkout(a, now):
    r = Response("11").fixed(_flag(a.renewal_policy), _flag(a.no_block), now, " " * 18)
    _common(r, a, "AO", "AA", "AB", "AC")
    r.maybe("CH", a.item_properties).maybe("AD", a.patron_password)
    r.maybe("BO", "Y" if a.fee_acknowledged else None).maybe("BI", "Y" if a.cancel else None)
    return r


def _checkin(a, now):
    r = Response("09").fixed(_flag(a.no_block), now, a.return_date or now)
    r.add("AP", a.current_location if a.current_location is not None else a.institution)
    _common(r, a, "AO", "AB", "AC")
    return r.maybe("CH", a.item_properties).maybe("BI", "Y" if a.cancel else None)


def _item_info(a, now):
    return _common(Response("17").fixed(now), a, "AO", "AB", "AC")


def _item_status_update(a, now):
    r = _common(Response("19").fixed(now), a, "AO", "AB", "AC")
    return r.add("CH", a.item_properties or "")


def _renew(a, now):
    r = Response("29").fixed(_flag(a.third_party), _flag(a.no_block), now, " " * 18)
    _common(r, a, "AO", "AA", "AD")
    r.maybe("AB", a.item).maybe("AJ", a.title)
    _common(r, a, "AC")
    r.maybe("CH", a.item_properties).maybe("BO", "Y" if a.fee_acknowledged else None)
    return r


def _renew_all(a, now):
    r = _common(Response("65").fixed(now), a, "AO", "AA", "AD", "AC")
    return r.maybe("BO", "Y" if a.fee_acknowledged else None)


def _hold(a, now):
    mode = _code(HOLD_MODE, a.mode, "--mode")
    r = Response("15").fixed(mode, now)
    r.maybe("BW", a.expiry).maybe("BS", a.pickup_location).maybe("BY", a.hold_type)
    _common(r, a, "AO", "AA", "AD")
    r.maybe("AB", a.item).maybe("AJ", a.title)
    _common(r, a, "AC")
    return r.maybe("BO", "Y" if a.fee_acknowledged else None)


def _fee_paid(a, now):
    fee_type = _code(FEE_TYPE, a.fee_type, "--fee-type")
    payment_type = _code(PAYMENT_TYPE, a.payment_type, "--payment-type")
    r = Response("37").fixed(now, fee_type, payment_type, a.currency.ljust(3)[:3])
    r.add("BV", a.fee_amount)
    _common(r, a, "AO", "AA", "AC", "AD")
    return r.maybe("CG", a.fee_id).maybe("BK", a.transaction_id)


def _block_patron(a, now):
    r = Response("01").fixed(_flag(a.card_retained), now)
    r.add("AO", a.institution or "").add("AL", a.message or "")
    return _common(r, a, "AA", "AC")


def _patron_enable(a, now):
    return _common(Response("25").fixed(now), a, "AO", "AA", "AC", "AD")


def _end_session(a, now):
    return _common(Response("35").fixed(now), a, "AO", "AA", "AC", "AD")


@dataclass(frozen=True)
class MessageKind:
    name: str
    code: str | None
    build: object
    help: str
    options: tuple[str, ...] = ()
    required: tuple[str, ...] = ()
    extra: tuple[tuple[tuple[str, ...], dict], ...] = field(default=())


_PATRON = ("institution", "patron", "patron-password", "terminal-password")
_ITEM = ("institution", "item", "terminal-password")

#: Every message the client sends, by its command-line name.
MESSAGES: dict[str, MessageKind] = {
    m.name: m
    for m in (
        MessageKind(
            "sc-status",
            "99",
            _sc_status,
            "99 SC Status: is the ACS on-line, what does it allow",
            extra=(
                (("--status-code",), {"default": "0", "choices": ["0", "1", "2"]}),
                (("--print-width",), {"type": int, "default": 80}),
            ),
        ),
        MessageKind(
            "patron-status",
            "23",
            _patron_status,
            "23 Patron Status: the patron's flags, valid card and password",
            _PATRON + ("language",),
            ("patron",),
        ),
        MessageKind(
            "patron-info",
            "63",
            _patron_info,
            "63 Patron Information: counts, fines, and one list (--summary)",
            _PATRON + ("language",),
            ("patron",),
            (
                (
                    ("--summary",),
                    {"help": "list to ask for: hold, overdue, charged, fine, recall, unavailable"},
                ),
                (("--start-item",), {"help": "BP: first item of the list (1-based)"}),
                (("--end-item",), {"help": "BQ: last item of the list"}),
            ),
        ),
        MessageKind(
            "checkout",
            "11",
            _checkout,
            "11 Checkout",
            _PATRON + ("item", "item-properties", "no-block", "fee-acknowledged", "cancel"),
            ("patron", "item"),
            ((("--renewal-policy",), {"action": "store_true", "help": "SC renewal policy Y"}),),
        ),
        MessageKind(
            "checkin",
            "09",
            _checkin,
            "09 Checkin",
            _ITEM + ("item-properties", "no-block", "cancel"),
            ("item",),
            (
                (("--current-location",), {"help": "AP (default: the institution)"}),
                (("--return-date",), {"help": "YYYYMMDD    HHMMSS (default: now)"}),
            ),
        ),
        MessageKind("item-info", "17", _item_info, "17 Item Information", _ITEM, ("item",)),
        MessageKind(
            "item-status-update",
            "19",
            _item_status_update,
            "19 Item Status Update: store CH item properties",
            _ITEM + ("item-properties",),
            ("item",),
        ),
        MessageKind(
            "renew",
            "29",
            _renew,
            "29 Renew one item",
            _PATRON + ("item", "title", "item-properties", "no-block", "fee-acknowledged"),
            ("patron",),
            ((("--third-party",), {"action": "store_true", "help": "third party allowed Y"}),),
        ),
        MessageKind(
            "renew-all",
            "65",
            _renew_all,
            "65 Renew All of a patron's loans",
            _PATRON + ("fee-acknowledged",),
            ("patron",),
        ),
        MessageKind(
            "hold",
            "15",
            _hold,
            "15 Hold: place (+), cancel (-) or change (*)",
            _PATRON + ("item", "title", "fee-acknowledged"),
            ("patron",),
            (
                (("--mode",), {"default": "+", "help": "+ add (default), - delete, * change"}),
                (("--expiry",), {"help": "BW expiration date YYYYMMDD    HHMMSS"}),
                (("--pickup-location",), {"help": "BS pickup location (branch code)"}),
                (("--hold-type",), {"choices": ["1", "2", "3", "4"], "help": "BY hold type"}),
            ),
        ),
        MessageKind(
            "fee-paid",
            "37",
            _fee_paid,
            "37 Fee Paid",
            _PATRON,
            ("patron", "fee_amount"),
            (
                (("--fee-amount",), {"help": "BV amount paid, e.g. 2.50"}),
                (("--fee-type",), {"default": "01", "help": "01 other (default) ... 09"}),
                (("--payment-type",), {"default": "00", "help": "00 cash (default), 01, 02"}),
                (("--currency",), {"default": "USD", "help": "currency type (default USD)"}),
                (("--fee-id",), {"help": "CG fee identifier (Koha: accountlines_id)"}),
                (("--transaction-id",), {"help": "BK transaction id"}),
            ),
        ),
        MessageKind(
            "block-patron",
            "01",
            _block_patron,
            "01 Block Patron (Koha adds a restriction)",
            ("institution", "patron", "terminal-password"),
            ("patron",),
            (
                (("--message",), {"help": "AL blocked card message"}),
                (("--card-retained",), {"action": "store_true"}),
            ),
        ),
        MessageKind(
            "patron-enable",
            "25",
            _patron_enable,
            "25 Patron Enable",
            _PATRON,
            ("patron",),
        ),
        MessageKind(
            "end-session",
            "35",
            _end_session,
            "35 End Patron Session",
            _PATRON,
            ("patron",),
        ),
        MessageKind(
            "raw",
            None,
            None,
            "a message as it goes on the wire, e.g. '9900302.00' (no AY/AZ: the client adds them)",
        ),
    )
}

_OPTION_HELP = {
    "institution": ("AO institution id (default: --institution of the session)", {}),
    "patron": ("AA patron identifier (card number)", {}),
    "patron-password": ("AD patron password (PIN)", {}),
    "terminal-password": ("AC terminal password (default: empty)", {}),
    "item": ("AB item identifier (barcode)", {}),
    "title": ("AJ title identifier", {}),
    "item-properties": ("CH item properties", {}),
    "language": ("language code (default 000)", {"default": "000"}),
    "no-block": ("no block Y (an offline transaction)", {"action": "store_true"}),
    "fee-acknowledged": ("BO fee acknowledged Y", {"action": "store_true"}),
    "cancel": ("BI cancel Y", {"action": "store_true"}),
}
_DEFAULTS = {
    "institution": None,
    "patron": None,
    "patron_password": None,
    "terminal_password": "",
    "item": None,
    "title": None,
    "item_properties": None,
    "language": "000",
    "no_block": False,
    "fee_acknowledged": False,
    "cancel": False,
    "renewal_policy": False,
    "third_party": False,
}


def _message_parser(kind: MessageKind) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"koha-gateway-client ... {kind.name}", description=kind.help
    )
    if kind.name == "raw":
        parser.add_argument("text", help="the message, e.g. 9900302.00")
        return parser
    for option in kind.options:
        text, extra = _OPTION_HELP[option]
        kwargs = dict(extra)
        kwargs["help"] = text
        parser.add_argument(f"--{option}", **kwargs)
    for names, kwargs in kind.extra:
        parser.add_argument(*names, **kwargs)
    return parser


def _flags_of(kind: MessageKind) -> set[str]:
    out = {"-h", "--help"}
    for option in kind.options:
        if _OPTION_HELP[option][1].get("action") == "store_true":
            out.add(f"--{option}")
    for names, kwargs in kind.extra:
        if kwargs.get("action") == "store_true":
            out.update(names)
    return out


def split_messages(tokens: list[str]) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """Global options, then ``[(message name, its options)]``: a message starts at a token that
    is a message name and is not the value of the option before it."""
    head: list[str] = []
    messages: list[tuple[str, list[str]]] = []
    current = head
    kind: MessageKind | None = None
    expects_value = False
    raw_text_next = False
    for token in tokens:
        if raw_text_next and not token.startswith("-"):
            current.append(token)  # the text of a raw message, even if it reads like a name
            raw_text_next = False
            continue
        if not expects_value and token in MESSAGES:
            kind = MESSAGES[token]
            messages.append((token, []))
            current = messages[-1][1]
            raw_text_next = kind.name == "raw"
            continue
        current.append(token)
        if expects_value:
            expects_value = False
        elif token.startswith("--") and "=" not in token:
            flags = _flags_of(kind) if kind is not None else _GLOBAL_FLAGS
            expects_value = token not in flags
    return head, messages


# --- the session ------------------------------------------------------------------------------


_GLOBAL_FLAGS = {"--tls", "--telnet", "--json", "--no-error-detection", "-h", "--help"}


def _global_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="koha-gateway-client",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="koha-gateway-client [options] MESSAGE [message options] [MESSAGE ...]",
    )
    parser.add_argument("--host", default="127.0.0.1", help="server (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=6001, help="port (default 6001)")
    parser.add_argument("--tls", action="store_true", help="connect with TLS")
    parser.add_argument("--cafile", help="CA certificates to verify the server's (with --tls)")
    parser.add_argument("--cert", help="client certificate PEM (with --tls)")
    parser.add_argument("--key", help="client private key PEM (with --tls)")
    parser.add_argument("--telnet", action="store_true", help="the telnet transport's prompts")
    parser.add_argument("--login", help="SIP account (93 CN, or the telnet login:)")
    parser.add_argument("--password", default="", help="its password (93 CO)")
    parser.add_argument("--location", default="", help="93 CP location code")
    parser.add_argument(
        "--institution", help="AO of every message (default: --location, else empty)"
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds (default 10)")
    parser.add_argument(
        "--no-error-detection",
        action="store_true",
        help="send no AY/AZ (error detection is on by default)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.epilog = "messages: " + ", ".join(MESSAGES)
    return parser


@dataclass
class Exchange:
    request: str  # masked
    response: str | None = None
    described: Described | None = None
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        out = {"request": self.request, "response": self.response, "problems": self.problems}
        if self.described is not None:
            out.update(self.described.as_dict())
        return out


class Session:
    def __init__(self, args):
        self.args = args
        self.client: SIPClient | None = None
        self.exchanges: list[Exchange] = []

    def connect(self) -> None:
        a = self.args
        context = None
        if a.tls:
            context = ssl.create_default_context(cafile=a.cafile)
            if a.cert:
                context.load_cert_chain(a.cert, a.key)
        try:
            self.client = SIPClient(
                a.host,
                a.port,
                timeout=a.timeout,
                ssl_context=context,
                error_detection=not a.no_error_detection,
                terminator=b"\r\n" if a.telnet else b"\r",
            )
        except socket.gaierror as exc:
            raise ClientError(f"cannot resolve host {a.host!r}: {exc.strerror}") from None
        except ssl.SSLCertVerificationError as exc:
            raise ClientError(
                f"TLS: the server's certificate was not accepted: {exc.verify_message}"
                " (give the CA that signed it with --cafile)"
            ) from None
        except ssl.SSLError as exc:
            raise ClientError(
                f"TLS handshake with {a.host}:{a.port} failed: {exc}{_tls_hint(exc)}"
            ) from None
        except ConnectionRefusedError:
            raise ClientError(
                f"cannot connect to {a.host}:{a.port}: connection refused "
                "(is the gateway running, is this port a <service> of SIPconfig.xml?)"
            ) from None
        except TimeoutError:
            raise ClientError(
                f"cannot connect to {a.host}:{a.port}: no answer within {a.timeout}s"
            ) from None
        except OSError as exc:
            raise ClientError(
                f"cannot connect to {a.host}:{a.port}: {exc.strerror or exc}"
            ) from None

    def login(self) -> None:
        a = self.args
        if a.telnet:
            self._telnet_login()
        elif a.login is not None:
            text = Response("93").fixed("0", "0")
            text.add("CN", a.login).add("CO", a.password).add("CP", a.location)
            exchange = self.exchange(text.text())
            if exchange.response is not None and exchange.response.startswith("940"):
                raise ClientError(
                    f"login refused for SIP account {a.login!r}: check the account's <login> in "
                    "SIPconfig.xml, the user's password and its circulate permission "
                    "(the gateway's log says which)",
                    EXIT_LOGIN,
                )

    def _telnet_login(self) -> None:
        a = self.args
        if a.login is None:
            raise ClientError("--telnet needs --login and --password", EXIT_USAGE)
        client = self.client
        with self._errors():
            client.read_until(b"login: ")
            client.send_raw(a.login.encode() + b"\r\n")
            client.read_until(b"password: ")
            client.send_raw(a.password.encode() + b"\r\n")
            answer = client.read_line().decode(errors="replace").strip()
        if not answer.startswith("Login OK"):
            raise ClientError(
                f"telnet login refused for {a.login!r} ({answer!r}): check the account's <login> "
                "in SIPconfig.xml, the user's password and its circulate permission",
                EXIT_LOGIN,
            )
        self.exchanges.append(Exchange(f"telnet login {a.login}", answer))

    @contextlib.contextmanager
    def _errors(self):
        """Socket problems while talking, as messages for a person."""
        a = self.args
        try:
            yield
        except TimeoutError:
            raise ClientError(
                f"no answer from {a.host}:{a.port} within {a.timeout}s (--timeout)"
            ) from None
        except (SIPError, ConnectionError) as exc:
            raise ClientError(
                f"the gateway closed the connection ({exc}); its log says why "
                "(login timeout, bad message, shutdown)"
            ) from None
        except ssl.SSLError as exc:
            raise ClientError(f"TLS error: {exc}{_tls_hint(exc)}") from None
        except OSError as exc:
            raise ClientError(f"connection error: {exc}") from None

    def exchange(self, text: str) -> Exchange:
        client = self.client
        exchange = Exchange(mask_text(text))
        self.exchanges.append(exchange)
        data = client.frame(text)
        sent_seq = None
        if client.error_detection:
            sent_seq = data.rstrip(b"\r\n")[-7:-6].decode()
        with self._errors():
            client.send_raw(data)
            line = client.read_line()
        response = line.decode(client.encoding, errors="replace")
        exchange.response = response
        body, seq, check = split_error_detection(response)
        if check is not None and not verify(line):
            exchange.problems.append(f"checksum error in the answer (AZ{check} does not match)")
        elif client.error_detection and check is None and not response.startswith("96"):
            exchange.problems.append("the answer carries no AY/AZ although the request did")
        if seq is not None and sent_seq is not None and seq != sent_seq:
            exchange.problems.append(f"the answer's sequence number AY{seq} is not AY{sent_seq}")
        if body.startswith("96"):
            exchange.problems.append(
                "the gateway asked for a resend (96): it could not read the request "
                "or its checksum was wrong"
            )
            return exchange
        try:
            exchange.described = describe(response)
        except ParseError as exc:
            exchange.problems.append(f"unreadable answer: {exc}")
        return exchange

    def close(self) -> None:
        if self.client is not None:
            self.client.close()


def _tls_hint(exc: ssl.SSLError) -> str:
    text = str(exc).lower()
    if "certificate required" in text or "handshake failure" in text:
        return " (the listener asks for a client certificate: give it with --cert and --key)"
    if "unknown ca" in text or "bad certificate" in text:
        return " (the listener does not accept this client certificate)"
    return ""


def _request_text(kind: MessageKind, options, session_args, now: str) -> str:
    if kind.name == "raw":
        return options.text
    values = dict(_DEFAULTS)
    values.update({k: v for k, v in vars(options).items() if v is not None or k not in values})
    if values.get("institution") is None:
        values["institution"] = session_args.institution or session_args.location or ""
    for name in kind.required:
        if not values.get(name):
            flag = "--" + name.replace("_", "-")
            raise ClientError(f"{kind.name}: {flag} is required", EXIT_USAGE)
    return kind.build(argparse.Namespace(**values), now).text()


# --- output -----------------------------------------------------------------------------------


def _label(name: str) -> str:
    return name.replace("_", " ")


def format_exchange(exchange: Exchange) -> str:
    lines = [f"> {exchange.request}"]
    if exchange.response is None:
        return "\n".join(lines)
    lines.append(f"< {exchange.response}")
    d = exchange.described
    if d is not None:
        lines.append(f"  {d.code} {d.name}")
        for f in d.fixed:
            lines.append(_format_field(f, f"{_label(f.name)}"))
        for f in d.fields:
            lines.append(_format_field(f, f"{f.id} {_label(f.name)}"))
        if d.sequence is not None or d.checksum is not None:
            lines.append(f"    AY sequence number: {d.sequence}    AZ checksum: {d.checksum}")
    for problem in exchange.problems:
        lines.append(f"  ! {problem}")
    return "\n".join(lines)


def _format_field(f, label: str) -> str:
    text = f"    {label}: {f.value!r}" if f.value.strip() != f.value or not f.value else None
    if text is None:
        text = f"    {label}: {f.value}"
    if f.meaning is not None and f.meaning != f.value:
        text += f" ({f.meaning})"
    if f.flags is not None:
        for name, on in f.flags:
            text += f"\n      {'Y' if on else '-'} {name}"
    return text


# --- main -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None, *, now: dt.datetime | None = None) -> int:
    tokens = list(sys.argv[1:] if argv is None else argv)
    head, messages = split_messages(tokens)
    parser = _global_parser()
    args = parser.parse_args(head)
    if not messages and args.login is None:
        parser.error("name at least one message, or --login to test a login")
    clock = (lambda: now) if now is not None else dt.datetime.now
    try:
        requests = []
        for name, options in messages:
            kind = MESSAGES[name]
            parsed = _message_parser(kind).parse_args(options)
            # Built once now to report usage errors before connecting, again at sending time
            # so that each message carries the time it is sent.
            _request_text(kind, parsed, args, timestamp(clock()))
            requests.append((kind, parsed))
    except ClientError as exc:
        print(f"koha-gateway-client: {exc}", file=sys.stderr)
        return exc.status

    session = Session(args)
    status = EXIT_OK
    error = None
    printed = 0
    try:
        session.connect()
        session.login()
        for kind, parsed in requests:
            session.exchange(_request_text(kind, parsed, args, timestamp(clock())))
            if not args.json:
                for exchange in session.exchanges[printed:]:
                    print(format_exchange(exchange), flush=True)
                printed = len(session.exchanges)
    except ClientError as exc:
        error = str(exc)
        status = exc.status
    finally:
        session.close()
    if any(exchange.problems for exchange in session.exchanges) and status == EXIT_OK:
        status = EXIT_ERROR
    if args.json:
        document = {
            "host": args.host,
            "port": args.port,
            "exchanges": [exchange.as_dict() for exchange in session.exchanges],
            "error": error,
            "status": status,
        }
        print(json.dumps(document, indent=2))
    else:
        for exchange in session.exchanges[printed:]:
            print(format_exchange(exchange))
        if error:
            print(f"koha-gateway-client: {error}", file=sys.stderr)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
