"""``koha-gateway-admin ldap-test``: the Koha manual's ``ldapsearch`` check, with the gateway's
own ``<ldapserver>`` settings.

For each configured host, in order: the name resolves (DNS), a TCP connection opens, TLS
(``ldaps://`` or ``<start_tls>``) verifies the server's certificate as the gateway would, the
configured bind (anonymous or ``<user>``) succeeds, and, with a user id, the configured search
finds exactly one entry. Then it shows the entry's attributes (passwords hidden), what the
``<mapping>`` would write into ``borrowers`` (category, branch, flags, ...) and, with a password,
asks :class:`~koha_gateway.auth.ldap.LdapDirectory` (the code a SIP login runs) whether it would
accept it.

Every step is BLOCKING (sockets and ldap3 ``SYNC``): this runs in the admin command, never in the
gateway's reactor.
"""

from __future__ import annotations

import socket
import ssl
import time
from dataclasses import dataclass, field

from ldap3 import ANONYMOUS, BASE, NONE, SIMPLE, SUBTREE, SYNC, Connection, Server, Tls
from ldap3.core.exceptions import LDAPException
from ldap3.utils.conv import escape_filter_chars

from koha_gateway.auth.ldap import LdapDirectory, LdapOutcome
from koha_gateway.config.ldap import LdapConfig, LdapHost
from koha_gateway.ils.ldap_sync import CIRCULATE

__all__ = ["Check", "CheckReport", "mapped_borrower", "run_check"]

#: Attributes whose values are never shown.
SECRET_ATTRIBUTES = frozenset(
    {"userpassword", "unicodepwd", "sambantpassword", "sambalmpassword", "authpassword"}
)
_MAX_ENTRIES = 16


@dataclass
class Check:
    """One step: ``ok`` true, false (a failure) or None (a warning)."""

    step: str
    ok: bool | None
    text: str


@dataclass
class HostReport:
    url: str
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok is not False for c in self.checks)


@dataclass
class CheckReport:
    hosts: list[HostReport] = field(default_factory=list)
    dn: str | None = None
    attributes: dict[str, list[str]] = field(default_factory=dict)
    borrower: list[tuple[str, str, str]] = field(default_factory=list)
    password: Check | None = None

    @property
    def ok(self) -> bool:
        answered = [h for h in self.hosts if h.ok]
        if len(answered) != len(self.hosts):
            return False
        return self.password is None or self.password.ok is True


def _tls(config: LdapConfig) -> Tls:
    names = [config.tls_name] if config.tls_name else None
    return Tls(
        validate=ssl.CERT_REQUIRED if config.verify else ssl.CERT_NONE,
        ca_certs_file=config.ca_file,
        version=ssl.PROTOCOL_TLS_CLIENT,
        valid_names=names,
    )


def _ldap_error(conn: Connection) -> str:
    result = conn.result or {}
    code = result.get("result")
    text = result.get("description") or "error"
    message = (result.get("message") or "").strip()
    return f"{text} ({code})" + (f": {message}" if message else "")


def _exception_text(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.replace("\n", " ")


def _tls_advice(config: LdapConfig) -> str:
    if config.ca_file:
        return f"is the server's certificate signed by a CA in <ca_file> {config.ca_file}?"
    return "the system CAs do not know the server's CA: give it in <ca_file>"


def _check_host(config: LdapConfig, host: LdapHost, userid: str | None, report: CheckReport):
    out = HostReport(host.url)
    report.hosts.append(out)
    # DNS
    try:
        infos = socket.getaddrinfo(host.host, host.port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        out.checks.append(Check("DNS", False, f"cannot resolve {host.host!r}: {exc.strerror}"))
        return
    addresses = sorted({info[4][0] for info in infos})
    out.checks.append(Check("DNS", True, f"{host.host} is {', '.join(addresses)}"))
    # TCP
    started = time.monotonic()
    try:
        socket.create_connection((host.host, host.port), timeout=config.connect_timeout).close()
    except TimeoutError:
        out.checks.append(
            Check(
                "TCP",
                False,
                f"no answer from {host.host}:{host.port} within {config.connect_timeout:g}s "
                "(<connect_timeout>): a firewall, or the server is down",
            )
        )
        return
    except OSError as exc:
        out.checks.append(
            Check("TCP", False, f"cannot connect to {host.host}:{host.port}: {exc.strerror or exc}")
        )
        return
    elapsed = (time.monotonic() - started) * 1000
    out.checks.append(Check("TCP", True, f"connected to port {host.port} in {elapsed:.0f} ms"))
    # LDAP connection and TLS
    tls_wanted = host.use_ssl or config.start_tls
    server = Server(
        host.host,
        port=host.port,
        use_ssl=host.use_ssl,
        tls=_tls(config) if tls_wanted else None,
        connect_timeout=config.connect_timeout,
        get_info=NONE,
    )
    conn = Connection(
        server,
        client_strategy=SYNC,
        receive_timeout=max(1, int(config.response_timeout + 0.999)),
        raise_exceptions=False,
        read_only=True,
        auto_referrals=False,
        check_names=False,
    )
    try:
        try:
            conn.open(read_server_info=False)
        except LDAPException as exc:
            what = "TLS" if host.use_ssl else "LDAP"
            text = _exception_text(exc)
            if host.use_ssl:
                text += f" ({_tls_advice(config)})"
            out.checks.append(Check(what, False, text))
            return
        if host.use_ssl:
            out.checks.append(Check("TLS", True, _tls_text(config, "ldaps")))
        elif config.start_tls:
            try:
                started_tls = conn.start_tls(read_server_info=False)
            except LDAPException as exc:
                out.checks.append(
                    Check("TLS", False, f"StartTLS: {_exception_text(exc)} ({_tls_advice(config)})")
                )
                return
            if not started_tls:
                out.checks.append(
                    Check("TLS", False, f"StartTLS refused by the server: {_ldap_error(conn)}")
                )
                return
            out.checks.append(Check("TLS", True, _tls_text(config, "StartTLS")))
        # Bind as the gateway binds before searching.
        if config.auth_by_bind and not config.anonymous_bind:
            out.checks.append(
                Check(
                    "bind",
                    True,
                    "auth_by_bind without anonymous search: the user's own bind "
                    f"({config.principal_name or 'the user id'}) is the only bind",
                )
            )
            return
        anonymous = config.anonymous_bind or not config.user
        if anonymous:
            conn.authentication, conn.user, conn.password = ANONYMOUS, None, None
        else:
            conn.authentication, conn.user, conn.password = SIMPLE, config.user, config.password
        who = "anonymously" if anonymous else f"as <user> {config.user}"
        if not conn.bind(read_server_info=False):
            advice = "" if anonymous else " (check <user> and <pass>)"
            out.checks.append(
                Check("bind", False, f"bind {who} failed: {_ldap_error(conn)}{advice}")
            )
            return
        out.checks.append(Check("bind", True, f"bound {who}"))
        if userid is None:
            _check_base(conn, config, out)
        else:
            _check_user(conn, config, userid, out, report)
    except LDAPException as exc:
        out.checks.append(Check("LDAP", False, _exception_text(exc)))
    finally:
        try:
            conn.unbind()
        except Exception:  # noqa: BLE001 - closing a broken connection
            pass


def _tls_text(config: LdapConfig, how: str) -> str:
    if not config.verify:
        return f"{how}, certificate NOT verified (<verify>0</verify>)"
    source = f"<ca_file> {config.ca_file}" if config.ca_file else "the system CAs"
    return f"{how}, certificate verified with {source}"


def _check_base(conn: Connection, config: LdapConfig, out: HostReport) -> None:
    conn.search(config.base, "(objectClass=*)", search_scope=BASE, attributes=[])
    if conn.result.get("result") == 0:
        out.checks.append(Check("base", True, f"search base {config.base} exists"))
    else:
        out.checks.append(
            Check("base", False, f"search base {config.base}: {_ldap_error(conn)} (check <base>)")
        )


def _check_user(conn, config, userid, out: HostReport, report: CheckReport) -> None:
    flt = f"({config.userid_attribute}={escape_filter_chars(userid)})"
    conn.search(
        config.base,
        flt,
        search_scope=SUBTREE,
        attributes=["*"],
        size_limit=_MAX_ENTRIES,
        time_limit=max(1, int(config.response_timeout)),
    )
    code = conn.result.get("result")
    entries = [e for e in conn.response or () if e.get("type") == "searchResEntry"]
    if code not in (0, 4) and not entries:
        out.checks.append(
            Check("search", False, f"search {flt} under {config.base}: {_ldap_error(conn)}")
        )
        return
    if not entries:
        out.checks.append(
            Check(
                "search",
                False,
                f"no entry for {userid!r}: the search {flt} under {config.base} found nothing "
                "(the gateway then checks the local password)",
            )
        )
        return
    if len(entries) > 1:
        dns = "; ".join(e["dn"] for e in entries)
        out.checks.append(
            Check(
                "search",
                None,
                f"{len(entries)} entries match {flt}: {dns} (with auth_by_bind 0 the password "
                "is tried against each in turn; with auth_by_bind 1 only the first is used)",
            )
        )
    else:
        out.checks.append(Check("search", True, f"{flt} under {config.base}: {entries[0]['dn']}"))
    if report.dn is None:
        entry = entries[0]
        report.dn = entry["dn"]
        report.attributes = _decode(entry.get("raw_attributes") or {})
        report.borrower = mapped_borrower(report.attributes, config, userid)


def _decode(raw: dict) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, values in raw.items():
        texts = []
        for value in values:
            try:
                texts.append(value.decode("utf-8"))
            except (AttributeError, UnicodeDecodeError):
                texts.append(repr(value))
        out[name] = texts
    return out


def mapped_borrower(
    attributes: dict[str, list[str]], config: LdapConfig, userid: str
) -> list[tuple[str, str, str]]:
    """``[(column, value, where it comes from)]``: what ``replicate``/``update`` would write.

    The rules of Koha's ``ldap_entry_2_hash`` as :func:`koha_gateway.ils.ldap_sync.sync_patron`
    applies them: a multi-valued attribute is joined with spaces, an absent one gives the
    mapping's default; ``categorycode`` goes through ``<categorycode_mapping>``. Category and
    branch are checked against the database when the patron is written.
    """
    lowered = {k.lower(): v for k, v in attributes.items()}
    rows: list[tuple[str, str, str]] = []
    for column, (attribute, default) in config.mapping.items():
        if column == "password":
            continue
        found = [v.strip() for v in lowered.get((attribute or "").lower(), []) if v.strip()]
        if found:
            value, source = " ".join(found), f"from {attribute}"
        elif default is not None:
            value, source = default, f"default ({attribute} not in the entry)"
        else:
            value, source = "", f"empty ({attribute} not in the entry, no default)"
        if column == "categorycode" and (
            config.categorycode_mapping or config.categorycode_default
        ):
            if value in config.categorycode_mapping:
                mapped = config.categorycode_mapping[value]
                source += f", {value!r} -> {mapped} by <categorycode_mapping>"
                value = mapped
            elif config.categorycode_default:
                source += (
                    f", {value!r} not in <categorycode_mapping>: its default "
                    f"{config.categorycode_default}"
                )
                value = config.categorycode_default
        rows.append((column, value, source))
    if not any(column == "userid" and value for column, value, _ in rows):
        rows.append(("userid", userid, "the login name"))
    flags = 0
    for column, value, _source in rows:
        if column == "flags" and value.isdigit():
            flags = int(value)
    if config.grant_circulate:
        rows = [r for r in rows if r[0] != "flags"]
        rows.append(
            ("flags", str(flags | CIRCULATE), "circulate permission added (<grant_circulate>)")
        )
    elif not any(r[0] == "flags" for r in rows):
        rows.append(("flags", str(flags), "no permission: such a user cannot be a SIP account"))
    if config.update_password:
        rows.append(("password", "(a bcrypt hash of the LDAP password)", "<update_password>"))
    return rows


def run_check(config: LdapConfig, userid: str | None = None, password: str | None = None):
    """Every step for every host; with ``password``, the verdict of the gateway's own code."""
    report = CheckReport()
    for host in config.servers:
        _check_host(config, host, userid, report)
    if userid is not None and password is not None:
        result = LdapDirectory(config).authenticate(userid, password)
        if result.outcome is LdapOutcome.OK:
            report.password = Check(
                "password",
                True,
                f"LDAP accepts the password of {userid!r} (bind as {result.dn} on {result.host}): "
                "a SIP login or patron password (AD) would be accepted by LDAP",
            )
        elif result.outcome is LdapOutcome.REJECTED:
            report.password = Check(
                "password",
                False,
                f"LDAP refuses the password: {result.reason} (no fallback to the local password)",
            )
        else:
            report.password = Check(
                "password",
                False,
                f"LDAP does not decide: {result.reason} (the gateway would check the local "
                "password in borrowers instead)",
            )
    return report


def format_report(report: CheckReport) -> str:
    marks = {True: "ok  ", False: "FAIL", None: "WARN"}
    lines = []
    for host in report.hosts:
        lines.append(f"host {host.url}")
        for check in host.checks:
            lines.append(f"  {marks[check.ok]}  {check.step}: {check.text}")
    if report.dn is not None:
        lines.append(f"entry {report.dn}")
        for name in sorted(report.attributes, key=str.lower):
            for value in report.attributes[name]:
                shown = "(hidden)" if name.lower() in SECRET_ATTRIBUTES else value
                lines.append(f"  {name}: {shown}")
        lines.append("borrowers (what replicate and update would write)")
        for column, value, source in report.borrower:
            lines.append(f"  {column} = {value}    [{source}]")
    if report.password is not None:
        lines.append(f"{marks[report.password.ok]}  {report.password.text}")
    lines.append("result: " + ("all checks passed" if report.ok else "FAILED"))
    return "\n".join(lines)
