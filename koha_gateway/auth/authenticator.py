"""One authenticator for SIP accounts (93 Login, telnet) and patron passwords (AD -> CQ).

Koha's rules (koha-sip-and-ldap.md sections 3.2, 5.1 and 6.3):

* a SIP account logs in when its id is a ``<login>`` in SIPconfig.xml, the user exists in
  ``borrowers`` with that password, and has the ``circulate`` permission (or is superlibrarian);
* with LDAP configured, LDAP is asked first: a success wins (and may replicate or update the
  borrower row), a definite rejection fails, "not handled" falls back to the local hash;
* a failed check increments ``borrowers.login_attempts``; with the ``FailedLoginAttempts``
  system preference set, an account at that count is locked.

Beyond Koha, for thousands of kiosks logging in at once after a restart:

* bcrypt runs in its own thread pool, never on the reactor and never on a database connection;
* a verified password is remembered as a MAC (keyed BLAKE2b) under a per-process random key,
  bound to the stored hash, so the next check of the same credentials costs a microsecond and a
  changed password invalidates it; plain passwords are never kept;
* concurrent checks of the same credentials share one bcrypt computation (single flight);
* the borrower rows that concurrent checks need are read in batches: while one batch is being
  read, new requests gather in the next, which then goes to the database as one transaction
  with one query per distinct account (:class:`_BorrowerLookups`). Every request is answered
  from a query that started after it arrived, so a password changed in Koha is always seen;
* repeated failures per account and per peer address are slowed down exponentially;
* a patron password whose credentials are remembered is checked inside the transaction of the
  message that carries it (:meth:`Authenticator.patron_check`, :class:`PatronCheck`): one
  transaction and one thread hop per message instead of two. Whatever needs bcrypt, LDAP or
  a failure counted gives up there and takes the path above (:class:`SlowPath`).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections import OrderedDict
from dataclasses import dataclass

from twisted.internet import defer, task
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from koha_gateway import clock as clock_mod
from koha_gateway.auth.passwords import hash_password, verify_password
from koha_gateway.db.schema import CIRCULATE, SUPERLIBRARIAN

log = Logger(namespace="koha_gateway.auth")

_CACHE_SIZE = 50_000
_FAILURE_WINDOW = 900.0  # seconds after which failures are forgotten
_FREE_FAILURES = 3  # failures allowed before answers slow down
_MAX_DELAY = 30.0


@dataclass(frozen=True)
class LoginResult:
    ok: bool
    reason: str
    borrowernumber: int | None = None


class _Throttle:
    """Failed-login counters per key (account or peer) with exponential slow-down."""

    def __init__(self, clock):
        self._clock = clock
        self._failures: dict[str, tuple[int, float]] = {}

    def delay(self, *keys: str) -> float:
        now = self._clock.seconds()
        worst = 0
        for key in keys:
            count, last = self._failures.get(key, (0, 0.0))
            if now - last > _FAILURE_WINDOW:
                self._failures.pop(key, None)
                continue
            worst = max(worst, count)
        if worst < _FREE_FAILURES:
            return 0.0
        return min(_MAX_DELAY, 0.5 * 2 ** (worst - _FREE_FAILURES))

    def failed(self, *keys: str) -> None:
        now = self._clock.seconds()
        for key in keys:
            count, last = self._failures.get(key, (0, 0.0))
            if now - last > _FAILURE_WINDOW:
                count = 0
            self._failures[key] = (count + 1, now)
        if len(self._failures) > _CACHE_SIZE:
            cutoff = now - _FAILURE_WINDOW
            for key in [k for k, (_, last) in self._failures.items() if last < cutoff]:
                del self._failures[key]

    def succeeded(self, *keys: str) -> None:
        for key in keys:
            self._failures.pop(key, None)


class Authenticator:
    """Checks SIP account and patron passwords; every method returns a Deferred."""

    def __init__(
        self, db, *, reactor=None, clock=None, ldap=None, ldap_config=None, bcrypt_threads=2
    ):
        """``reactor`` (IReactorTime) times everything: the throttle, the login cache and the
        delays; ``clock`` (:class:`koha_gateway.clock.WallClock`) dates what is written."""
        if reactor is None:
            from twisted.internet import reactor
        self._reactor = reactor
        self._clock = clock if clock is not None else clock_mod.default()
        self.db = db
        self.ldap = ldap
        self.ldap_config = ldap_config
        self._key = os.urandom(32)
        self._verified: OrderedDict[tuple, float] = OrderedDict()
        self._lookups = _BorrowerLookups(db)
        self._inflight: dict[tuple, defer.Deferred] = {}
        self._throttle = _Throttle(reactor)
        self._bcrypt_pool = ThreadPool(1, bcrypt_threads, name="koha-gateway-bcrypt")
        self._ldap_pool = (
            ThreadPool(1, getattr(ldap_config, "pool_size", None) or 8, name="koha-gateway-ldap")
            if ldap
            else None
        )
        self._ldap_cache_seconds = 60.0 * getattr(ldap_config, "cache_minutes", 0) or 0.0

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self._bcrypt_pool.start()
        if self._ldap_pool:
            self._ldap_pool.start()

    def stop(self) -> None:
        self._bcrypt_pool.stop()
        if self._ldap_pool:
            self._ldap_pool.stop()

    # -- SIP accounts -----------------------------------------------------------------------

    @defer.inlineCallbacks
    def login_staff(
        self,
        userid: str,
        password: str,
        peer: str = "",
        *,
        known: bool = True,
        config_password: str | None = None,
    ):
        """Koha's ``api_auth`` for a SIP login: password and the circulate permission.

        ``known`` says whether ``userid`` is a ``<login>`` of SIPconfig.xml; ``config_password``
        is that login's ``password`` attribute, which must match too when present. Every
        failure, whatever its cause, counts for the account and the peer address.
        """
        keys = (f"account:{userid}", f"peer:{peer}")
        wait = self._throttle.delay(*keys)
        if wait:
            log.info(
                "slowing down login for {userid!r} by {wait:.1f}s after failures",
                userid=userid,
                wait=wait,
                peer=peer,
            )
            yield task.deferLater(self._reactor, wait, lambda: None)
        if not known:
            self._throttle.failed(*keys)
            return LoginResult(False, f"SIP access not authorized for user {userid!r}")
        if config_password is not None and not hmac.compare_digest(
            config_password.encode("utf-8"), password.encode("utf-8")
        ):
            self._throttle.failed(*keys)
            return LoginResult(False, "password does not match the SIPconfig.xml account")
        ok, borrower = yield self._check(userid, password, by_userid=True)
        if not ok:
            self._throttle.failed(*keys)
            return LoginResult(False, "invalid user id or password")
        # borrowers.flags is NULL for most of Koha's patrons: no permission at all.
        if not int(borrower["flags"] or 0) & (CIRCULATE | SUPERLIBRARIAN):
            self._throttle.failed(*keys)
            return LoginResult(
                False, "user lacks the circulate permission", borrower["borrowernumber"]
            )
        self._throttle.succeeded(*keys)
        return LoginResult(True, "ok", borrower["borrowernumber"])

    # -- patrons ------------------------------------------------------------------------------

    @defer.inlineCallbacks
    def check_patron(self, identifier: str, password: str, peer: str = ""):
        """The patron password check behind CQ (cardnumber or userid, as Koha)."""
        # Patron PINs count per patron only: a kiosk (or every kiosk behind one load balancer)
        # must not slow down for the next patron after someone mistypes theirs.
        keys = (f"patron:{identifier}",)
        wait = self._throttle.delay(*keys)
        if wait:
            yield task.deferLater(self._reactor, wait, lambda: None)
        ok, _ = yield self._check(identifier, password, by_userid=False)
        if ok:
            self._throttle.succeeded(*keys)
        else:
            self._throttle.failed(*keys)
        return ok

    def patron_check(self, identifier: str, password: str) -> PatronCheck | None:
        """A :class:`PatronCheck` to decide inside the message's transaction, or None when
        only :meth:`check_patron` can decide: LDAP configured, no identifier or password, or
        the patron slowed down by the throttle (then :meth:`check_patron` waits as always).
        On the reactor thread, before the transaction is submitted."""
        if self.ldap is not None or not identifier or not password:
            return None
        if self._throttle.delay(f"patron:{identifier}"):
            return None
        return PatronCheck(self, identifier, password, self._reactor.seconds())

    def patron_checked(self, check: PatronCheck) -> None:
        """After the transaction of ``check`` (on the reactor thread): what
        :meth:`check_patron` does once it has its answer, the throttle's bookkeeping and the
        warning for a locked account. Nothing when the transaction gave up or failed before
        deciding."""
        ok = check.ok
        if ok is None:
            return
        identifier = check.identifier
        if check.locked:
            log.warn("account {identifier!r} is locked after failed logins", identifier=identifier)
        if ok:
            self._throttle.succeeded(f"patron:{identifier}")
        else:
            self._throttle.failed(f"patron:{identifier}")

    # -- the check itself ---------------------------------------------------------------------

    @defer.inlineCallbacks
    def _check(self, identifier: str, password: str, *, by_userid: bool):
        """(ok, borrower row or None); LDAP first when configured, then the local hash."""
        if not identifier or password is None or password == "":
            return False, None
        borrower = yield self._lookups.find(identifier, by_userid)
        if self.ldap is not None:
            outcome = yield self._ldap_check(borrower, identifier, password)
            if outcome is not None:
                ok, borrower = outcome
                return ok, borrower
        if borrower is None:
            return False, None
        if _locked(borrower):
            log.warn("account {identifier!r} is locked after failed logins", identifier=identifier)
            return False, borrower
        ok = yield self._verify_local(borrower["password"], password)
        if ok and borrower["login_attempts"]:
            yield self.db.run(_reset_attempts, borrower["borrowernumber"])
        elif not ok:
            yield self.db.run(_count_failure, borrower["borrowernumber"])
        return ok, borrower

    def _mac(self, *parts: str) -> bytes:
        # Keyed BLAKE2b is a MAC in its own right, and cheaper than HMAC-SHA256 through OpenSSL.
        data = "\0".join(parts).encode("utf-8")
        return hashlib.blake2b(data, key=self._key, digest_size=32).digest()

    def _remember(self, key: tuple, ttl: float | None) -> None:
        self._verified[key] = (self._reactor.seconds() + ttl) if ttl else float("inf")
        self._verified.move_to_end(key)
        while len(self._verified) > _CACHE_SIZE:
            self._verified.popitem(last=False)

    def _known_at(self, key: tuple, now: float) -> bool:
        """Whether ``key`` is remembered and not expired at ``now`` (a reactor time taken by
        the caller), from any thread: one dictionary lookup, which the interpreter lock makes
        atomic (the key is a tuple of str and bytes: no Python code runs in the lookup). Only
        the reactor thread writes ``_verified`` (:meth:`_remember`, :meth:`_known`)."""
        expiry = self._verified.get(key)
        return expiry is not None and expiry >= now

    def _known(self, key: tuple) -> bool:
        expiry = self._verified.get(key)
        if expiry is None:
            return False
        if expiry < self._reactor.seconds():
            del self._verified[key]
            return False
        return True

    def _verify_local(self, stored: str | None, password: str):
        """bcrypt (or legacy MD5) in the bcrypt pool, remembered, single flight."""
        if not stored:
            return defer.succeed(False)
        key = ("local", stored, self._mac(stored, password))
        if self._known(key):
            return defer.succeed(True)
        waiters = self._inflight.get(key)
        if waiters is not None:
            waiter = defer.Deferred()
            waiters.append(waiter)
            return waiter
        waiters = self._inflight[key] = []
        log.debug("password hash check started in the bcrypt pool")
        check = deferToThreadPool(
            self._reactor, self._bcrypt_pool, verify_password, password, stored
        )

        def done(result):
            del self._inflight[key]
            if result is True:
                self._remember(key, None)
            for waiter in waiters:
                if isinstance(result, Failure):
                    waiter.errback(result)
                else:
                    waiter.callback(result)
            return result

        return check.addBoth(done)

    @defer.inlineCallbacks
    def _ldap_check(self, borrower, identifier: str, password: str):
        """LDAP's verdict as (ok, borrower), or None when LDAP does not handle this user."""
        from koha_gateway.auth.ldap import LdapOutcome

        userid = borrower["userid"] if borrower and borrower.get("userid") else identifier
        key = ("ldap", userid, self._mac(userid, password))
        if self._ldap_cache_seconds and self._known(key) and borrower is not None:
            return True, borrower
        result = yield deferToThreadPool(
            self._reactor, self._ldap_pool, self.ldap.authenticate, userid, password
        )
        if result.outcome is LdapOutcome.OK:
            from koha_gateway.ils.ldap_sync import sync_patron

            password_hash = None
            if getattr(self.ldap_config, "update_password", False):
                # Hashed before the transaction: bcrypt must not hold the database.
                password_hash = yield deferToThreadPool(
                    self._reactor, self._bcrypt_pool, hash_password, password
                )
            number = yield self.db.run(
                sync_patron,
                result,
                self.ldap_config,
                password_hash=password_hash,
                now=self._clock.now(),
            )
            if number is not None:
                borrower = yield self.db.run(_find_borrower_by_number, number)
            if borrower is None:
                log.warn(
                    "LDAP accepted {userid!r} but there is no borrower for it "
                    "(replicate is off, or the replicated row could not be created)",
                    userid=userid,
                )
                return False, None
            if self._ldap_cache_seconds:
                self._remember(key, self._ldap_cache_seconds)
            return True, borrower
        if result.outcome is LdapOutcome.REJECTED:
            log.info("LDAP rejected {userid!r}: {reason}", userid=userid, reason=result.reason)
            if borrower is not None:
                yield self.db.run(_count_failure, borrower["borrowernumber"])
            return False, borrower
        log.debug(
            "LDAP did not handle {userid!r} ({reason}); checking the local password",
            userid=userid,
            reason=result.reason,
        )
        return None


class _BorrowerLookups:
    """Borrower rows for the password checks, read in batches (see the module docstring).

    At most one batch is in the database at a time. A request arriving while none is joins a
    new batch that goes at once; one arriving while a batch runs joins the next, which goes
    when the running one is done. Requests for the same identifier in one batch share its
    query; each gets its own copy of the row. Everything here runs on the reactor thread.
    """

    def __init__(self, db):
        self.db = db
        self._running = False
        self._next: dict[tuple[str, bool], list[defer.Deferred]] = {}

    def find(self, identifier: str, by_userid: bool) -> defer.Deferred:
        waiter = defer.Deferred()
        self._next.setdefault((identifier, by_userid), []).append(waiter)
        if not self._running:
            self._send()
        return waiter

    def _send(self) -> None:
        batch, self._next = self._next, {}
        self._running = True
        keys = list(batch)
        log.debug(
            "reading {accounts} borrower rows for {checks} password checks",
            accounts=len(keys),
            checks=sum(len(waiters) for waiters in batch.values()),
        )
        done = self.db.run(_find_borrowers, keys, retry=True, readonly=True)

        def answer(result):
            # Still "running" while the waiters' callbacks run: what they ask for meanwhile
            # gathers in the next batch.
            for key, waiters in batch.items():
                for waiter in waiters:
                    if isinstance(result, Failure):
                        waiter.errback(result)
                    else:
                        row = result.get(key)
                        waiter.callback(dict(row) if row is not None else None)
            self._running = False
            if self._next:
                self._send()

        done.addBoth(answer)


_BORROWER_COLUMNS = "borrowernumber, cardnumber, userid, password, flags, login_attempts"


def _find_borrowers(txn, keys: list[tuple[str, bool]]) -> dict:
    """``{(identifier, by_userid): row or None}`` in one transaction: by cardnumber, then by
    userid (Koha's order for patrons; SIP accounts by userid only), with the
    ``FailedLoginAttempts`` preference read once, and only for a row with failed attempts (a
    row without cannot be locked: its ``max_attempts`` is 0)."""
    limit = None
    found = {}
    for identifier, by_userid in keys:
        row = None
        if not by_userid:
            row = txn.one(
                f"SELECT {_BORROWER_COLUMNS} FROM borrowers WHERE cardnumber = ?", (identifier,)
            )
        if row is None:
            row = txn.one(
                f"SELECT {_BORROWER_COLUMNS} FROM borrowers WHERE userid = ?", (identifier,)
            )
        if row is not None and not row["login_attempts"]:
            row["max_attempts"] = 0
        elif row is not None:
            if limit is None:
                value = txn.scalar(
                    "SELECT value FROM systempreferences WHERE variable = 'FailedLoginAttempts'"
                )
                limit = int(value) if value and str(value).isdigit() else 0
            row["max_attempts"] = limit
        found[identifier, by_userid] = row
    return found


class SlowPath(Exception):
    """A :class:`PatronCheck` that the message's transaction cannot decide: it is rolled back
    and the message takes the slow path, :meth:`Authenticator.check_patron` then the message."""


class PatronCheck:
    """One patron password check (AD) decided inside the message's own transaction.

    Built on the reactor thread by :meth:`Authenticator.patron_check`; :meth:`decide` runs in
    the database thread, in the transaction of the message, before the message is handled;
    :meth:`Authenticator.patron_checked` does the rest on the reactor once the transaction is
    over. The borrower row is read as the slow path reads it (:func:`_find_borrowers`), and
    the answers are the slow path's: no such borrower or a locked account is refused; a local
    hash whose credentials are remembered (verified by bcrypt before) is accepted, with
    ``login_attempts`` set back to 0 in the same transaction. Anything else raises
    :class:`SlowPath`: a remembered-credentials miss (bcrypt), a wrong or missing password (the
    failure must be counted, and bcrypt is needed to know it is wrong anyway).
    """

    __slots__ = ("identifier", "password", "ok", "locked", "_auth", "_now")

    def __init__(self, auth: Authenticator, identifier: str, password: str, now: float):
        self.identifier = identifier
        self.password = password
        self.ok: bool | None = None  # the answer, once decided
        self.locked = False
        self._auth = auth
        self._now = now  # the reactor's time when the check was asked for

    def decide(self, txn) -> bool:
        """The answer (CQ), or :class:`SlowPath`. Reads the verified-credentials cache, never
        writes it (this runs in a database thread)."""
        self.ok = None
        self.locked = False
        key = (self.identifier, False)
        borrower = _find_borrowers(txn, [key])[key]
        if borrower is None:
            self.ok = False
            return False
        if _locked(borrower):
            self.locked = True
            self.ok = False
            return False
        stored = borrower["password"]
        auth = self._auth
        if not stored or not auth._known_at(
            ("local", stored, auth._mac(stored, self.password)), self._now
        ):
            raise SlowPath()
        if borrower["login_attempts"]:
            if txn.readonly:
                raise SlowPath()
            _reset_attempts(txn, borrower["borrowernumber"])
        self.ok = True
        return True


def _find_borrower_by_number(txn, borrowernumber: int):
    row = txn.one(
        f"SELECT {_BORROWER_COLUMNS} FROM borrowers WHERE borrowernumber = ?", (borrowernumber,)
    )
    if row is not None:
        row["max_attempts"] = 0
    return row


def _locked(borrower) -> bool:
    limit = borrower.get("max_attempts") or 0
    return bool(limit) and borrower["login_attempts"] >= limit


def _count_failure(txn, borrowernumber: int) -> None:
    txn.execute(
        "UPDATE borrowers SET login_attempts = login_attempts + 1 WHERE borrowernumber = ?",
        (borrowernumber,),
    )


def _reset_attempts(txn, borrowernumber: int) -> None:
    txn.execute(
        "UPDATE borrowers SET login_attempts = 0 WHERE borrowernumber = ?", (borrowernumber,)
    )
