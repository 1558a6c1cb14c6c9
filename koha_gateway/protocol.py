"""The Twisted adapter between a socket and the sans-I/O SIP2 session (3M SIP2 2.00, section
"Communications"; Koha's transports in koha-sip-and-ldap.md section 3).

Bytes go into :class:`koha_gateway.sip2.session.Session`; its events come back in order:

* ``Reply`` is written as it is (96, 96AZFEF6, a 97 resend, telnet prompts);
* ``Close`` ends the connection with its reason in the log;
* ``Credentials`` (telnet) and a ``Request`` for 93 go to the authenticator;
* any other ``Request`` runs in one database transaction through the ACS.

Requests of one connection are answered strictly in order, one at a time; a kiosk that sends
faster than it is answered is paused (back-pressure), never dropped. Nothing here blocks the
reactor: database, bcrypt and LDAP work run in thread pools and come back as Deferreds.
"""

from __future__ import annotations

import time
from collections import deque

from twisted.internet import defer
from twisted.internet.protocol import Protocol, ServerFactory
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure

from koha_gateway import logs, metrics
from koha_gateway.acs.fallback import failure_response
from koha_gateway.auth.authenticator import SlowPath
from koha_gateway.db.engine import DatabaseError
from koha_gateway.sip2.codec import Response
from koha_gateway.sip2.session import Close, Credentials, Reply, Request, Session

log = Logger(namespace="koha_gateway.protocol")
#: INPUT MSG / OUTPUT MSG lines: to the SIP log only (logs.message_log).
message_log = logs.message_log("koha_gateway.protocol")

# Requests whose AD (patron password) is checked: in the message's transaction when the
# credentials are remembered (auth.authenticator.PatronCheck), else before it.
PATRON_PASSWORD = frozenset({"11", "15", "23", "25", "29", "35", "37", "63", "65"})
_PAUSE_AT = 32


class SIPProtocol(Protocol, TimeoutMixin):
    """One kiosk connection on a RAW or telnet ``<service>``, plain or inside TLS."""

    def __init__(self, gateway, service):
        self.gateway = gateway
        self.service = service
        self.session: Session | None = None
        self.account = None
        self.peer = "-"
        self.print_width: int | None = None
        self._queue: deque = deque()
        self._busy = False
        self._draining = False
        self._paused = False
        self._closing = False

    # -- connection lifecycle --------------------------------------------------------------

    def connectionMade(self):
        peer = self.transport.getPeer()
        self.peer = getattr(peer, "host", None) or str(peer)
        config = self.gateway.config
        self.session = Session(
            transport=self.service.transport,
            max_line=self.service.max_line_length,
            delimiter=config.delimiter,
        )
        self.gateway.connections.add(self)
        if logs.messages_logged():
            # At info a connection costs one line: its login (or the reason it failed).
            self._log(
                "debug",
                "connection on {service} ({transport})",
                service=self.service.address.spec,
                transport=self.service.transport,
            )
        if self.service.transport == "telnet":
            self.transport.write(self.session.greeting())
        self.setTimeout(config.login_timeout(self.service))

    def connectionLost(self, reason=None):
        self.setTimeout(None)
        self.gateway.connections.discard(self)
        self._closing = True
        self._queue.clear()
        self._log("info", "connection closed")

    def timeoutConnection(self):
        phase = "idle" if self.account is not None else "login"
        self._close(f"{phase} timeout")

    def _close(self, reason: str):
        if self._closing:
            return
        self._closing = True
        self._log(
            "warn" if "timeout" not in reason else "info",
            "closing connection: {reason}",
            reason=reason,
        )
        self.transport.loseConnection()

    # -- input -------------------------------------------------------------------------------

    def dataReceived(self, data: bytes):
        if self._closing:
            return
        if self.account is not None:
            self.resetTimeout()
        try:
            events = self.session.receive_data(data)
        except Exception:
            self._log_failure("the SIP2 session failed on input")
            self._close("internal error while reading input")
            return
        self._queue.extend(events)
        self._drain()
        if len(self._queue) > _PAUSE_AT and not self._paused:
            self._paused = True
            self.transport.pauseProducing()

    def _drain(self):
        if self._draining:
            return
        self._draining = True
        try:
            while self._queue and not self._busy and not self._closing:
                event = self._queue.popleft()
                if type(event) is Request:
                    if logs.messages_logged():
                        self._log_message("INPUT MSG: '{text}'", self.session.mask(event.raw))
                    if event.message.code == "93":
                        self._start(self._login(event))
                    else:
                        self._start(self._request(event))
                elif isinstance(event, Reply):
                    self.transport.write(event.data)
                elif isinstance(event, Close):
                    self._close(event.reason)
                elif isinstance(event, Credentials):
                    self._start(self._telnet_login(event))
            if self._paused and len(self._queue) <= _PAUSE_AT // 2 and not self._closing:
                self._paused = False
                self.transport.resumeProducing()
        finally:
            self._draining = False

    def _start(self, deferred: defer.Deferred | None):
        if deferred is None:  # answered (or refused) at once
            return
        self._busy = True
        deferred.addBoth(self._finished)

    def _finished(self, result):
        if isinstance(result, Failure):
            self._unexpected(result)
        self._busy = False
        self._drain()

    def _unexpected(self, failure: Failure):
        self._log_failure("request failed", failure)
        self._close("internal error")

    # -- output ------------------------------------------------------------------------------

    def _send(self, response: Response, seq: str | None):
        if self._closing:
            return
        data = self.session.respond(response, seq)
        if logs.messages_logged():
            self._log_message("OUTPUT MSG: '{text}'", self.session.mask(data))
        self.transport.write(data)

    # -- login -------------------------------------------------------------------------------

    @defer.inlineCallbacks
    def _login(self, event: Request):
        """93 Login -> 94 (3M SIP2 2.00 "Login"; Koha's login_core)."""
        msg = event.message
        userid = msg.get("CN") or ""
        password = msg.get("CO") or ""
        if msg.fixed.get("uid_algorithm", "0") != "0" or msg.fixed.get("pwd_algorithm", "0") != "0":
            reason = "unsupported non-zero encryption method(s)"
            ok = False
        else:
            ok, reason = yield self._authenticate(userid, password, telnet=False)
        m = metrics.current
        if m is not None:
            m.login(ok)
        if ok:
            self._send(Response("94").fixed("1"), event.seq)
        else:
            self._log("warn", "login failed for {userid!r}: {reason}", userid=userid, reason=reason)
            self._send(Response("94").fixed("0"), event.seq)
            self._write_events(self.session.login_failed())

    @defer.inlineCallbacks
    def _telnet_login(self, event: Credentials):
        """Koha's telnet transport: ``login:`` / ``password:`` prompts, three attempts."""
        ok, reason = yield self._authenticate(event.userid, event.password, telnet=True)
        m = metrics.current
        if m is not None:
            m.login(ok)
        if not ok:
            self._log(
                "warn",
                "telnet login failed for {userid!r}: {reason}",
                userid=event.userid,
                reason=reason,
            )
            self._write_events(self.session.login_failed())

    @defer.inlineCallbacks
    def _authenticate(self, userid: str, password: str, *, telnet: bool):
        """(ok, reason): the account exists in SIPconfig.xml and Koha lets the user circulate."""
        account = self.gateway.config.accounts.get(userid)
        identity = None
        if self.service.tls:
            from koha_gateway.tls import identity_matches, peer_identity

            identity = peer_identity(self.transport)
            if (
                account is not None
                and account.client_certificate
                and (identity is None or not identity_matches(identity, account.client_certificate))
            ):
                return False, (
                    f"account requires the client certificate {account.client_certificate!r}"
                )
        elif account is not None and account.client_certificate:
            return (
                False,
                f"account requires TLS with the client certificate {account.client_certificate!r}",
            )
        result = yield self.gateway.auth.login_staff(
            userid,
            password,
            self.peer,
            known=account is not None,
            config_password=account.password if account is not None else None,
        )
        if not result.ok:
            return False, result.reason
        self.account = account
        self._write_events(self.session.login_ok(self.gateway.output_policy(account)))
        self.setTimeout(self.gateway.config.idle_timeout(self.service))
        self._log(
            "info",
            "Successful login/auth for {userid!r} of {institution!r} on {service}{certificate}",
            userid=userid,
            service=self.service.address.spec,
            institution=account.institution,
            certificate=f" with client certificate {identity}" if identity else "",
        )
        return True, "ok"

    def _write_events(self, events):
        for event in events:
            if isinstance(event, Reply):
                self.transport.write(event.data)
            elif isinstance(event, Close):
                self._close(event.reason)

    # -- requests ----------------------------------------------------------------------------

    # A request is a chain of callbacks, not an inlineCallbacks generator: one Deferred
    # from the database and its callbacks per request, nothing else.

    def _request(self, event: Request) -> defer.Deferred | None:
        try:
            return self._begin(event)
        except Exception:
            return defer.fail()  # closes the connection (_finished), as any unexpected error

    def _begin(self, event: Request) -> defer.Deferred | None:
        msg = event.message
        if self.account is None:
            self._close(f"message {msg.code} before a successful login")
            return None
        started = time.perf_counter()
        ctx = self.gateway.context(self.account, self.session, self.peer)
        ctx.print_width = self.print_width
        if msg.code in PATRON_PASSWORD and msg.get("AD") is not None:
            patron, password = msg.get("AA"), msg.get("AD")
            if not patron or not password:
                ctx.password_ok = False
                return self._apply(ctx, event, started)
            # Fast path: decided in the message's own transaction when no bcrypt and no LDAP
            # is needed (auth.authenticator.PatronCheck); else checked first, then applied.
            check = self.gateway.auth.patron_check(patron, password)
            if check is not None:
                return self._apply(ctx, event, started, check)
            return self._check_then_apply(ctx, event, started)
        return self._apply(ctx, event, started)

    def _check_then_apply(self, ctx, event: Request, started: float):
        try:
            checked = self._check_patron_password(event.message)
        except Exception:
            return self._failed(Failure(), ctx, event, started, None)
        return checked.addCallbacks(
            self._password_checked,
            self._failed,
            callbackArgs=(ctx, event, started),
            errbackArgs=(ctx, event, started, None),
        )

    def _password_checked(self, ok, ctx, event: Request, started: float):
        ctx.password_ok = ok
        return self._apply(ctx, event, started)

    def _apply(self, ctx, event: Request, started: float, check=None):
        db_started = time.perf_counter()
        try:
            applied = self.gateway.apply(ctx, event.message, event.raw, check)
        except Exception:
            return self._failed(Failure(), ctx, event, started, db_started)
        if check is not None:
            return applied.addCallbacks(
                self._checked_and_answered,
                self._checked_and_failed,
                callbackArgs=(ctx, event, started, db_started, check),
                errbackArgs=(ctx, event, started, db_started, check),
            )
        return applied.addCallbacks(
            self._answered,
            self._failed,
            callbackArgs=(ctx, event, started, db_started),
            errbackArgs=(ctx, event, started, db_started),
        )

    def _checked_and_answered(self, response, ctx, event, started, db_started, check):
        self.gateway.auth.patron_checked(check)
        return self._answered(response, ctx, event, started, db_started)

    def _checked_and_failed(self, failure: Failure, ctx, event, started, db_started, check):
        if failure.check(SlowPath) is not None:
            # Rolled back before the message was handled: the password check needs bcrypt,
            # LDAP or a failure counted. The slow path: check, then apply.
            ctx.password_ok = None
            return self._check_then_apply(ctx, event, started)
        self.gateway.auth.patron_checked(check)
        return self._failed(failure, ctx, event, started, db_started)

    def _answered(self, response: Response, ctx, event: Request, started, db_started):
        db_seconds = time.perf_counter() - db_started
        self.print_width = ctx.print_width  # a 99 sets the SC's print width
        for line in ctx.log:  # what the committed transaction did (no passwords in them)
            self._log("info", "{audit}", audit=line)
        self._respond(response, event, started, "ok", db_seconds, "ok")

    def _failed(self, failure: Failure, ctx, event: Request, started, db_started):
        msg = event.message
        gateway = self.gateway
        db_seconds = None
        db_outcome = "ok"
        unavailable = gateway.is_unavailable(failure)
        outcome = "unavailable" if unavailable else "error"
        if db_started is not None:
            db_seconds = time.perf_counter() - db_started
            if unavailable:
                db_outcome = "unavailable"
            elif failure.check(DatabaseError):
                db_outcome = "error"
        if unavailable:
            self._log(
                "warn",
                "database unavailable for {code}: {error}",
                code=msg.code,
                error=failure.getErrorMessage(),
            )
        else:
            self._log_failure(f"handling message {msg.code} failed", failure)
        response = failure_response(ctx, msg, unavailable=unavailable)
        self._respond(response, event, started, outcome, db_seconds, db_outcome)

    def _respond(self, response, event: Request, started, outcome, db_seconds, db_outcome):
        self._send(response, event.seq)
        m = metrics.current
        if m is not None:
            m.message(event.message.code, outcome, time.perf_counter() - started)
            m.database(db_seconds, db_outcome)

    def _check_patron_password(self, msg):
        password = msg.get("AD")
        patron = msg.get("AA")
        if not password or not patron:
            return defer.succeed(False)
        return self.gateway.auth.check_patron(patron, password, self.peer)

    # -- logging -----------------------------------------------------------------------------

    def _log(self, level: str, fmt: str, **kw):
        account = self.account.id if self.account is not None else None
        getattr(log, level)(fmt, account=account, peer=self.peer, **kw)

    def _log_message(self, fmt: str, text: str):
        account = self.account.id if self.account is not None else None
        message_log.debug(fmt, account=account, peer=self.peer, text=text)

    def _log_failure(self, text: str, failure: Failure | None = None):
        account = self.account.id if self.account is not None else None
        log.failure(text, failure=failure, account=account, peer=self.peer)


class SIPFactory(ServerFactory):
    """Builds :class:`SIPProtocol` for one ``<service>``; the service may be swapped on reload."""

    protocol = SIPProtocol

    def __init__(self, gateway, service, reactor=None):
        self.gateway = gateway
        self.service = service
        self.reactor = reactor  # IReactorTime for the login and idle timeouts

    def buildProtocol(self, addr):
        protocol = self.protocol(self.gateway, self.service)
        protocol.factory = self
        if self.reactor is not None:
            protocol.callLater = self.reactor.callLater  # TimeoutMixin's timer
        return protocol
