"""LDAP authentication and patron replication, as Koha's ``C4/Auth_with_ldap.pm`` does it.

:class:`LdapDirectory` implements ``checkpw_ldap`` (koha-sip-and-ldap §6.3) with ldap3 and returns
one of three outcomes, with Koha's meaning:

``OK``
    the directory accepted the password (Koha's ``1``).
``REJECTED``
    a definite rejection: the user was found but the password is wrong, or the directory
    answered the search with an error. There is no fallback to the local hash (Koha's ``-1``).
``NOT_HANDLED``
    LDAP does not decide: the user is not in the directory, the search account could not bind,
    a direct bind (``auth_by_bind`` without an anonymous search) failed (Koha bug 12831), or no
    host answered. The caller falls back to the local password hash (Koha's ``0``). Koha
    returns ``0`` when it cannot connect, so an unreachable directory falls back as well; the
    hash that ``update_password`` keeps is what lets users log in while LDAP is down.

:meth:`LdapDirectory.authenticate` blocks: it opens one connection per call (ldap3 ``SYNC``
strategy, never shared between threads), so it must run in a thread pool, never on the reactor.
Every connection has the configured connect and response timeouts. Hosts are tried in the order
of ``<hostname>``; the host that answered last is tried first on the next call.

The second half of ``checkpw_ldap`` (§6.3 steps 4-6, replicate and update of the borrower) is
:func:`koha_gateway.ils.ldap_sync.sync_patron`.
"""

from __future__ import annotations

import enum
import math
import ssl
import threading
from dataclasses import dataclass, field

from ldap3 import ANONYMOUS, NONE, SIMPLE, SUBTREE, SYNC, Connection, Server, Tls
from ldap3.core.exceptions import (
    LDAPCertificateError,
    LDAPCommunicationError,
    LDAPException,
    LDAPStartTLSError,
)
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import escape_rdn
from twisted.logger import Logger

from koha_gateway.config.ldap import LdapConfig, LdapHost

__all__ = ["LdapDirectory", "LdapOutcome", "LdapResult"]

log = Logger(namespace="koha_gateway.auth.ldap")

# LDAP result codes (RFC 4511 §4.1.9) that mean "this server cannot answer now": try the next
# host instead of deciding. busy, unavailable, unwillingToPerform, timeLimitExceeded,
# adminLimitExceeded, other.
_UNAVAILABLE_CODES = frozenset({51, 52, 53, 3, 11, 80})
_INVALID_CREDENTIALS = 49
_SEARCH_SIZE_LIMIT = 16


class LdapOutcome(enum.Enum):
    """Koha's ``checkpw_ldap`` return values: 1, -1 and 0."""

    OK = "ok"
    REJECTED = "rejected"
    NOT_HANDLED = "not handled"


@dataclass(frozen=True)
class LdapResult:
    """The answer of :meth:`LdapDirectory.authenticate`.

    ``attributes`` holds the user's entry (lower-case attribute name -> list of values) when the
    outcome is OK and the entry was read; ``reason`` is a short text for the log (never a
    password); ``unavailable`` is true when no host answered.
    """

    outcome: LdapOutcome
    userid: str
    attributes: dict[str, list[str]] = field(default_factory=dict)
    reason: str = ""
    dn: str | None = None
    host: str | None = None
    unavailable: bool = False


class _Unavailable(Exception):
    """The current host did not answer (connection, TLS or timeout): try the next one."""


class LdapDirectory:
    """One configured directory (koha-conf ``<ldapserver>``); safe to share between threads."""

    def __init__(self, config: LdapConfig):
        self.config = config
        self._servers: tuple[LdapHost, ...] = config.servers
        self._lock = threading.Lock()
        self._preferred = 0
        self._tls = self._make_tls(config)

    @staticmethod
    def _make_tls(config: LdapConfig) -> Tls:
        names = [config.tls_name] if config.tls_name else None
        return Tls(
            validate=ssl.CERT_REQUIRED if config.verify else ssl.CERT_NONE,
            ca_certs_file=config.ca_file,
            version=ssl.PROTOCOL_TLS_CLIENT,
            valid_names=names,
        )

    def host_order(self) -> list[LdapHost]:
        """The hosts in the order the next call tries them (last answering host first)."""
        with self._lock:
            first = self._preferred
        order = [first] + [i for i in range(len(self._servers)) if i != first]
        return [self._servers[i] for i in order]

    def _remember(self, host: LdapHost) -> None:
        with self._lock:
            self._preferred = self._servers.index(host)

    def authenticate(self, userid: str, password: str) -> LdapResult:
        """Check ``userid``/``password`` against the directory (Koha ``checkpw_ldap``, §6.3).

        BLOCKING: run it in a thread pool. Empty user ids and passwords are rejected without
        asking the server (a DN with an empty password is an unauthenticated bind that some
        servers accept, RFC 4513 §5.1.2).
        """
        if not userid:
            return LdapResult(LdapOutcome.REJECTED, userid, reason="empty user id")
        if not password:
            return LdapResult(LdapOutcome.REJECTED, userid, reason="empty password")
        failures = []
        for host in self.host_order():
            try:
                result = self._attempt(host, userid, password)
            except _Unavailable as exc:
                log.warn("LDAP connection failed: {host}: {error}", host=host.url, error=str(exc))
                failures.append(f"{host.url}: {exc}")
                continue
            self._remember(host)
            return result
        return LdapResult(
            LdapOutcome.NOT_HANDLED,
            userid,
            reason="LDAP connection failed: " + "; ".join(failures),
            unavailable=True,
        )

    # -- one host ---------------------------------------------------------------------------

    def _connection(self, host: LdapHost) -> Connection:
        cfg = self.config
        server = Server(
            host.host,
            port=host.port,
            use_ssl=host.use_ssl,
            tls=self._tls if (host.use_ssl or cfg.start_tls) else None,
            connect_timeout=cfg.connect_timeout,
            get_info=NONE,
        )
        return Connection(
            server,
            client_strategy=SYNC,
            # ldap3 packs this into SO_RCVTIMEO as whole seconds.
            receive_timeout=max(1, math.ceil(cfg.response_timeout)),
            raise_exceptions=False,
            read_only=True,
            auto_referrals=False,
            check_names=False,
        )

    def _attempt(self, host: LdapHost, userid: str, password: str) -> LdapResult:
        conn = self._connection(host)
        try:
            try:
                conn.open(read_server_info=False)
                tls_wanted = self.config.start_tls and not host.use_ssl
                if tls_wanted and not conn.start_tls(read_server_info=False):
                    raise _Unavailable(f"StartTLS refused: {_describe(conn)}")
                if self.config.auth_by_bind:
                    result = self._auth_by_bind(conn, userid, password)
                else:
                    result = self._search_then_bind(conn, userid, password)
            except (LDAPCommunicationError, LDAPStartTLSError, LDAPCertificateError) as exc:
                raise _Unavailable(_exception_text(exc)) from None
            except (LDAPException, OSError) as exc:
                # Anything else ldap3 raises leaves this host's answer unknown.
                raise _Unavailable(_exception_text(exc)) from None
        finally:
            _close(conn)
        return LdapResult(
            result.outcome,
            result.userid,
            result.attributes,
            result.reason,
            result.dn,
            host.url,
        )

    def _bind(self, conn: Connection, dn: str | None, password: str | None) -> bool:
        if dn:
            conn.authentication = SIMPLE
            conn.user = dn
            conn.password = password
        else:
            conn.authentication = ANONYMOUS
            conn.user = None
            conn.password = None
        ok = bool(conn.bind(read_server_info=False))
        if not ok and _code(conn) in _UNAVAILABLE_CODES:
            raise _Unavailable(f"bind: {_describe(conn)}")
        return ok

    def _attributes(self) -> list[str]:
        wanted = {self.config.userid_attribute}
        for column, (attribute, _default) in self.config.mapping.items():
            if attribute and column != "password":
                wanted.add(attribute)
        return sorted(wanted, key=str.lower)

    def _search(self, conn: Connection, userid: str) -> list[tuple[str, dict[str, list[str]]]]:
        cfg = self.config
        flt = f"({cfg.userid_attribute}={escape_filter_chars(userid)})"
        conn.search(
            cfg.base,
            flt,
            search_scope=SUBTREE,
            attributes=self._attributes(),
            size_limit=_SEARCH_SIZE_LIMIT,
            time_limit=max(1, int(cfg.response_timeout)),
        )
        code = _code(conn)
        entries = [
            (item["dn"], _decode(item.get("raw_attributes") or {}))
            for item in conn.response or ()
            if item.get("type") == "searchResEntry"
        ]
        if code in _UNAVAILABLE_CODES and not entries:
            raise _Unavailable(f"search: {_describe(conn)}")
        if code not in (0, 4, 32) and not entries:  # 4 sizeLimitExceeded, 32 noSuchObject
            raise _SearchFailed(f"search with filter {flt!r} failed: {_describe(conn)}")
        if code == 32:
            log.error(
                "LDAP search base {base!r} does not exist: {error}",
                base=cfg.base,
                error=_describe(conn),
            )
        return entries

    def _search_then_bind(self, conn: Connection, userid: str, password: str) -> LdapResult:
        """auth_by_bind = 0: bind anonymously or as ``<user>``, search, bind as each entry."""
        cfg = self.config
        anonymous = cfg.anonymous_bind or not cfg.user
        who = "[ANONYMOUS]" if anonymous else cfg.user
        if not self._bind(conn, None if anonymous else cfg.user, cfg.password):
            reason = f"LDAP bind failed as ldapuser {who}: {_describe(conn)}"
            log.error("{reason}", reason=reason)
            return LdapResult(LdapOutcome.NOT_HANDLED, userid, reason=reason)
        entries, refusal = self._lookup(conn, userid)
        if refusal is not None:
            return refusal
        for dn, attributes in entries:
            if self._bind(conn, dn, password):
                return LdapResult(LdapOutcome.OK, userid, attributes, "LDAP bind succeeded", dn)
        return LdapResult(
            LdapOutcome.REJECTED,
            userid,
            reason=f"LDAP Auth rejected: invalid password for user {userid!r}",
        )

    def _lookup(self, conn: Connection, userid: str):
        """``(entries, None)``, or ``(None, result)`` when the search fails or finds nobody."""
        try:
            entries = self._search(conn, userid)
        except _SearchFailed as exc:
            log.error("LDAP {reason}", reason=str(exc))
            return None, LdapResult(LdapOutcome.REJECTED, userid, reason=str(exc))
        if not entries:
            reason = f"LDAP Auth rejected: search for {userid!r} returns no hit"
            return None, LdapResult(LdapOutcome.NOT_HANDLED, userid, reason=reason)
        return entries, None

    def _principal(self, userid: str) -> str:
        fmt = self.config.principal_name
        if fmt and "%" in fmt:
            value = escape_rdn(userid) if "=" in fmt else userid
            return fmt % value
        return userid

    def _auth_by_bind(self, conn: Connection, userid: str, password: str) -> LdapResult:
        """auth_by_bind = 1: find the DN anonymously or build it from principal_name, bind."""
        cfg = self.config
        entry: tuple[str, dict[str, list[str]]] | None = None
        if cfg.anonymous_bind:
            if not self._bind(conn, None, None):
                reason = f"Anonymous LDAP bind failed: {_describe(conn)}"
                log.error("{reason}", reason=reason)
                return LdapResult(LdapOutcome.NOT_HANDLED, userid, reason=reason)
            entries, refusal = self._lookup(conn, userid)
            if refusal is not None:
                return refusal
            entry = entries[0]
            dn = entry[0]
        else:
            dn = self._principal(userid)
        if not self._bind(conn, dn, password):
            reason = f"LDAP bind failed as kohauser {userid}: {_describe(conn)}"
            if entry is not None:
                return LdapResult(LdapOutcome.REJECTED, userid, reason=reason)
            # Koha bug 12831: a failed direct bind falls back to the local password.
            return LdapResult(LdapOutcome.NOT_HANDLED, userid, reason=reason)
        if entry is None and (cfg.update or cfg.replicate):
            try:
                entries = self._search(conn, userid)
            except _SearchFailed as exc:
                log.error("LDAP {reason}", reason=str(exc))
                return LdapResult(LdapOutcome.REJECTED, userid, reason=str(exc))
            if not entries:
                return LdapResult(
                    LdapOutcome.NOT_HANDLED,
                    userid,
                    reason=f"LDAP bind as {userid!r} succeeded but its entry was not found",
                )
            entry = entries[0]
        attributes = entry[1] if entry else {}
        return LdapResult(
            LdapOutcome.OK, userid, attributes, "LDAP bind succeeded", entry[0] if entry else dn
        )


class _SearchFailed(Exception):
    """The server answered the search with an error (Koha dies: the login fails)."""


def _code(conn: Connection) -> int | None:
    result = conn.result or {}
    return result.get("result")


def _describe(conn: Connection) -> str:
    result = conn.result or {}
    code = result.get("result")
    if code is None:
        return conn.last_error or "no answer"
    text = f"LDAP error #{code}: {result.get('description', '')}"
    message = (result.get("message") or "").strip()
    return f"{text} ({message})" if message else text


def _exception_text(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if not text.startswith(type(exc).__name__) else text


def _close(conn: Connection) -> None:
    try:
        if not conn.closed:
            conn.unbind()
    except (LDAPException, OSError):
        pass


def _decode(raw: dict[str, list[bytes]]) -> dict[str, list[str]]:
    attributes: dict[str, list[str]] = {}
    for name, values in raw.items():
        if isinstance(values, (bytes, str)):
            values = [values]
        decoded = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in values]
        attributes.setdefault(name.lower(), []).extend(decoded)
    return attributes
