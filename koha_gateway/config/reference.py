"""Every SIPconfig.xml attribute and koha-conf.xml element the gateway reads, as data.

The readers use these tables: an attribute that is not listed here is "unknown" to
:mod:`koha_gateway.config.sipconfig` (a warning), an ``<ldapserver>`` element that is not listed is
refused by :mod:`koha_gateway.config.ldap`, and :mod:`koha_gateway.config.kohaconf` reads only
listed elements. Defaults are taken from the configuration dataclasses themselves where a setting
has a field there. ``make docs`` writes the configuration reference of the documentation from
them (:func:`main` ``--write docs/configuration.md``; ``make docs-check`` fails when the page is
out of date, and so does a test), so the page cannot drift from the code.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["KOHA_CONF", "LDAPSERVER", "SIPCONFIG", "Setting", "markdown", "names"]


@dataclass(frozen=True)
class Setting:
    """One attribute or element.

    ``koha``: ``"yes"`` (Koha reads it and so does the gateway), ``"ignored"`` (Koha reads it,
    the gateway accepts it and does not use it) or ``"no"`` (the gateway's own). ``field`` names
    the dataclass field whose default is shown; ``default`` overrides that text.
    """

    name: str
    koha: str
    meaning: str
    field: str | None = None
    default: str | None = None


def S(name, koha, meaning, field=None, default=None):  # noqa: N802 - a table row constructor
    return Setting(name, koha, meaning, field, default)


#: SIPconfig.xml, per element: ``(title, dataclass path or None, settings)``.
SIPCONFIG: dict[str, tuple[str, str | None, tuple[Setting, ...]]] = {
    "acsconfig": (
        "`<acsconfig>` (the root element)",
        "koha_gateway.config.sipconfig:SIPConfig",
        (
            S(
                "timeout",
                "yes",
                "login and idle timeout in seconds when a `<service>` sets none (also as a "
                "child element)",
                default="30",
            ),
            S(
                "delimiter",
                "yes",
                "field delimiter of every message (also as a child element)",
                default="`|`",
            ),
        ),
    ),
    "error-detect": (
        "`<error-detect>`",
        None,
        (
            S(
                "enabled",
                "ignored",
                "accepted; error detection (AY/AZ) is decided per message, as in Koha",
                default="off",
            ),
        ),
    ),
    "server-params": (
        "`<server-params>`",
        "koha_gateway.config.sipconfig:ServerParams",
        (
            S(
                "custom_tcp_keepalive",
                "yes",
                "TCP keepalive on every connection (Koha bug 37087)",
                "custom_tcp_keepalive",
            ),
            S(
                "custom_tcp_keepalive_time",
                "yes",
                "seconds before the first keepalive probe (kernel default when unset)",
                "custom_tcp_keepalive_time",
            ),
            S(
                "custom_tcp_keepalive_intvl",
                "yes",
                "seconds between keepalive probes",
                "custom_tcp_keepalive_intvl",
            ),
            S(
                "workers",
                "no",
                "processes sharing the listeners (as `--workers`)",
                default="1",
            ),
            S(
                "reference_max_age",
                "no",
                "seconds reference data and system preferences are used before the database is "
                "checked for changes; 0: reference data read per request (as "
                "`--reference-max-age`, which wins when given; a reload applies a change)",
                default="10",
            ),
        ),
    ),
    "service": (
        "`<listeners>/<service>`",
        "koha_gateway.config.sipconfig:ServiceConfig",
        (
            S(
                "port",
                "yes",
                "`[host:]port[/tcp][/IPv4|/IPv6]`, Net::Server syntax",
                default="required",
            ),
            S("transport", "yes", "`RAW` or `telnet`", "transport"),
            S("protocol", "ignored", "informational", "protocol"),
            S(
                "timeout",
                "yes",
                "seconds to log in",
                default="the top-level timeout, else 30",
            ),
            S(
                "client_timeout",
                "yes",
                "seconds a logged-in connection may stay idle; 0: never closed",
                default="`timeout`",
            ),
            S("max_line_length", "no", "longest request accepted, in bytes", "max_line_length"),
            S("tls_certificate", "no", "PEM certificate: TLS listener", "tls_certificate"),
            S("tls_private_key", "no", "PEM private key of the certificate", "tls_private_key"),
            S("tls_chain", "no", "PEM intermediate certificates sent with it", "tls_chain"),
            S(
                "tls_client_ca",
                "no",
                "PEM CAs; kiosks must then present a certificate signed by one",
                "tls_client_ca",
            ),
            S("tls_min_version", "no", "`1.2` or `1.3`", "tls_min_version"),
            S("tls_ciphers", "no", "OpenSSL cipher string", "tls_ciphers", "OpenSSL's"),
            S("proxy_protocol", "no", "`v1` or `v2` behind HAProxy `send-proxy`", "proxy_protocol"),
        ),
    ),
    "institution": (
        "`<institutions>/<institution>`",
        "koha_gateway.config.sipconfig:InstitutionConfig",
        (
            S("id", "yes", "the institution, a Koha branchcode", default="required"),
            S(
                "implementation",
                "ignored",
                "a Perl module in Koha; the built-in ILS here",
                "implementation",
            ),
            S("parms", "ignored", "unused, as in Koha", "parms"),
        ),
    ),
    "policy": (
        "`<institution>/<policy>`",
        "koha_gateway.config.sipconfig:PolicyConfig",
        (
            S("checkin", "yes", "98 checkin ok flag", "checkin"),
            S("checkout", "yes", "98 checkout ok flag", "checkout"),
            S(
                "renewal",
                "yes",
                "98 renewal policy flag, and whether 29/65 renew (`false` is false here)",
                "renewal",
            ),
            S("status_update", "yes", "98 status update ok flag", "status_update"),
            S("offline", "yes", "98 offline ok flag", "offline"),
            S("timeout", "yes", "98 timeout period (0..999)", "timeout"),
            S("retries", "yes", "98 retries allowed (0..999)", "retries"),
        ),
    ),
    "login": (
        "`<accounts>/<login>`",
        "koha_gateway.config.sipconfig:AccountConfig",
        (
            S("id", "yes", "the SIP login (93 CN); a Koha userid too", default="required"),
            S("institution", "yes", "an `<institution>` id", default="required"),
            S("password", "yes", "when set, 93 CO must match it too", "password"),
            S("delimiter", "ignored", "per-account delimiter (Koha ignores it too)", "delimiter"),
            S("error-detect", "ignored", "accepted, not used", "error_detect"),
            S("encoding", "yes", "character encoding of the answers", "encoding", "UTF-8"),
            S("terminator", "yes", "`CR` or `CRLF` after each answer", "terminator"),
            S("checked_in_ok", "yes", "a checkin of an item not on loan is ok", "checked_in_ok"),
            S(
                "cv_triggers_alert",
                "yes",
                "the 10 alert flag only when a CV is sent",
                "cv_triggers_alert",
            ),
            S(
                "cv_send_00_on_success",
                "yes",
                "send CV00 when no alert applies",
                "cv_send_00_on_success",
            ),
            S("ct_always_send", "yes", "always send CT in 10", "ct_always_send"),
            S(
                "holds_block_checkin",
                "yes",
                "refuse a checkin that fills a hold",
                "holds_block_checkin",
            ),
            S(
                "holds_get_captured",
                "yes",
                "a checkin captures the hold it fills",
                "holds_get_captured",
            ),
            S(
                "send_patron_home_library_in_af",
                "yes",
                "a second AF with the patron's home library",
                "send_patron_home_library_in_af",
            ),
            S(
                "patron_branchcode_in_ao",
                "yes",
                "64 AO is the patron's home library",
                "patron_branchcode_in_ao",
            ),
            S(
                "patron_restriction_blocks_inet",
                "yes",
                "a restriction alone makes PI N",
                "patron_restriction_blocks_inet",
            ),
            S(
                "allow_empty_passwords",
                "yes",
                "an empty AD in 63 gives CQ Y",
                "allow_empty_passwords",
            ),
            S("ae_field_template", "yes", "template of AE (patron name)", "ae_field_template"),
            S("da_field_template", "yes", "template of DA (hold patron)", "da_field_template"),
            S("av_field_template", "yes", "template of AV (fine items)", "av_field_template"),
            S("hide_fields", "yes", "comma list of field ids never sent", "hide_fields"),
            S("allow_fields", "yes", "comma list: only these field ids are sent", "allow_fields"),
            S("register_id", "yes", "cash register of 37 payments", "register_id"),
            S(
                "payment_type_writeoff",
                "yes",
                "37 payment type that writes off instead of paying",
                "payment_type_writeoff",
            ),
            S(
                "disallow_overpayment",
                "yes",
                "refuse a 37 above the balance",
                "disallow_overpayment",
            ),
            S(
                "lost_status_for_missing",
                "yes",
                "itemlost value reported as 13 missing",
                "lost_status_for_missing",
            ),
            S(
                "lost_block_checkout",
                "yes",
                "lost loans that set too many items lost (0: off)",
                "lost_block_checkout",
            ),
            S(
                "lost_block_checkout_value",
                "yes",
                "lowest itemlost value counted",
                "lost_block_checkout_value",
            ),
            S(
                "overdues_block_checkout",
                "yes",
                "overdues set too many items overdue",
                "overdues_block_checkout",
            ),
            S(
                "prevcheckout_block_checkout",
                "yes",
                "refuse a checkout Koha would confirm as previously borrowed",
                "prevcheckout_block_checkout",
            ),
            S(
                "allow_additional_materials_checkout",
                "yes",
                "allow items with additional materials",
                "allow_additional_materials_checkout",
            ),
            S(
                "blocked_item_types",
                "yes",
                "`|` list of item types refused at checkout",
                "blocked_item_types",
            ),
            S(
                "inhouse_item_types",
                "yes",
                "comma list: desensitize N",
                "inhouse_item_types",
            ),
            S(
                "inhouse_patron_categories",
                "yes",
                "comma list: desensitize N",
                "inhouse_patron_categories",
            ),
            S("format_due_date", "yes", "AH in the dateformat preference", "format_due_date"),
            S("cr_item_field", "yes", "item field sent in CR", "cr_item_field"),
            S(
                "seen_on_item_information",
                "yes",
                "`mark_found` or `keep_lost`: 17 marks the item seen",
                "seen_on_item_information",
            ),
            S(
                "show_checkin_message",
                "yes",
                "AF with where the item was checked in",
                "show_checkin_message",
            ),
            S(
                "show_outstanding_amount",
                "yes",
                "AF with the amount owed",
                "show_outstanding_amount",
            ),
            S(
                "convert_nonprinting_characters",
                "yes",
                "replacement of non-printing characters in answers",
                "convert_nonprinting_characters",
            ),
            S(
                "client_certificate",
                "no",
                "TLS client certificate name this account must log in with",
                "client_certificate",
            ),
        ),
    ),
    "screen_msg_regex": (
        "`<login>/<screen_msg_regex>` (repeatable)",
        None,
        (
            S("find", "yes", "Perl regular expression applied to every AF", default="required"),
            S("replace", "yes", "its replacement", default="empty"),
        ),
    ),
    "patron_attribute": (
        "`<login>/<patron_attribute>` (repeatable)",
        None,
        (
            S("field", "yes", "field id sent in 24 and 64", default="required"),
            S("code", "yes", "extended patron attribute type", default="required"),
        ),
    ),
    "custom_patron_field": (
        "`<login>/<custom_patron_field>` (repeatable)",
        None,
        (
            S("field", "yes", "field id sent in 24 and 64", default="required"),
            S("template", "yes", "template with `patron`", default="required"),
        ),
    ),
    "item_field": (
        "`<login>/<item_field>` (repeatable)",
        None,
        (
            S("field", "yes", "field id sent in 10, 12 and 18", default="required"),
            S("code", "yes", "items column", default="required"),
        ),
    ),
    "custom_item_field": (
        "`<login>/<custom_item_field>` (repeatable)",
        None,
        (
            S("field", "yes", "field id sent in 10, 12 and 18", default="required"),
            S("template", "yes", "template with `item`", default="required"),
        ),
    ),
    "sort_bin_mapping": (
        "`<login>/<sort_bin_mapping>` (repeatable)",
        None,
        (
            S(
                "mapping",
                "yes",
                "`branch:field:op:value:bin`, replaces SIP2SortBinMapping",
                default="required",
            ),
        ),
    ),
}

#: koha-conf.xml, elements of ``<config>``.
KOHA_CONF: tuple[Setting, ...] = (
    S(
        "db_scheme",
        "yes",
        "`mysql` (or empty: MariaDB/MySQL, Koha's database), `Pg`, or `sqlite` (not Koha's)",
        default="`mysql`",
    ),
    S(
        "database",
        "yes",
        "database name; for SQLite the file (relative to koha-conf.xml)",
        default="required",
    ),
    S(
        "hostname",
        "yes",
        "database host; `localhost` means the Unix socket for MariaDB, a directory a socket "
        "directory for PostgreSQL",
        "hostname",
    ),
    S("port", "yes", "database port", "port", "the driver's (3306, 5432)"),
    S("user", "yes", "database user", "user", "none"),
    S("pass", "yes", "database password", "password", "none"),
    S("tls", "yes", "`yes`: TLS to MariaDB/MySQL", "tls"),
    S("ca", "yes", "CA file for `<tls>`", "ca", "none"),
    S("cert", "yes", "client certificate for `<tls>`", "cert", "none"),
    S("key", "yes", "client key for `<tls>`", "key", "none"),
    S(
        "timezone",
        "yes",
        "session time zone (MariaDB/MySQL); else `TZ`, else the server's",
        "timezone",
        "`TZ`, else the server's",
    ),
    S("useldapserver", "yes", "`1`: check passwords in LDAP first", "use_ldap"),
    S("ldapserver", "yes", "the LDAP settings (below)", default="none"),
    S(
        "log4perl_conf",
        "yes",
        "Koha's log4perl.conf; its `log4perl.logger.sip` level (else `log4perl.rootLogger`'s) "
        "is the SIP log level when `--log-level` is not given: `DEBUG` logs every message "
        "(see [Operations](operations.md#logs))",
        "log4perl_conf",
    ),
    S(
        "admin_port",
        "no",
        "port of the HTTP admin listener (`/metrics`, `/health`, `/ready`)",
        "admin_port",
    ),
)

#: koha-conf.xml, elements of ``<ldapserver>``.
LDAPSERVER: tuple[Setting, ...] = (
    S("hostname", "yes", "comma list of hosts or `ldap://`/`ldaps://` URIs", default="required"),
    S("base", "yes", "search base (subtree)", default="required"),
    S("user", "yes", "DN used to search", "user"),
    S("pass", "yes", "its password", "password"),
    S("anonymous_bind", "yes", "search anonymously", "anonymous_bind"),
    S("auth_by_bind", "yes", "authenticate by binding as the user", "auth_by_bind"),
    S("principal_name", "yes", "printf format of the bind name", "principal_name"),
    S("replicate", "yes", "create an unknown patron after a successful bind", "replicate"),
    S("update", "yes", "copy the mapped fields at each bind", "update"),
    S("update_password", "yes", "keep a bcrypt hash of the LDAP password", "update_password"),
    S("welcome", "ignored", "Koha's welcome notice; no notices here", "welcome"),
    S("mapping", "yes", '`<column is="attribute">default</column>`', default="required"),
    S("categorycode_mapping", "yes", "LDAP value to patron category", default="none"),
    S("start_tls", "no", "StartTLS on `ldap://` hosts", "start_tls"),
    S("ca_file", "no", "PEM CAs for the server certificate", "ca_file", "the system CAs"),
    S("verify", "no", "verify the server certificate and name", "verify"),
    S("tls_name", "no", "name expected in the certificate", "tls_name", "the host"),
    S("connect_timeout", "no", "seconds to connect to one host", "connect_timeout"),
    S("response_timeout", "no", "seconds to wait for one answer", "response_timeout"),
    S("pool_size", "no", "threads running LDAP operations", "pool_size"),
    S("cache_minutes", "no", "minutes a successful bind is remembered", "cache_minutes"),
    S("grant_circulate", "no", "replicated patrons may circulate", "grant_circulate"),
)


def names(section: str) -> frozenset[str]:
    """The names a reader accepts in ``section``: a SIPCONFIG key, ``koha-conf`` or
    ``ldapserver``."""
    if section == "koha-conf":
        return frozenset(s.name for s in KOHA_CONF)
    if section == "ldapserver":
        return frozenset(s.name for s in LDAPSERVER)
    return frozenset(s.name for s in SIPCONFIG[section][2])


# --- the documentation page ---------------------------------------------------------------------


def _dataclass(path: str | None):
    if path is None:
        return None
    module_name, _, name = path.partition(":")
    module = __import__(module_name, fromlist=[name])
    return getattr(module, name)


def _default_text(cls, setting: Setting) -> str:
    if setting.default is not None:
        return setting.default
    if cls is None or setting.field is None:
        return ""
    for f in dataclasses.fields(cls):
        if f.name == setting.field:
            if f.default is not dataclasses.MISSING:
                value = f.default
            elif f.default_factory is not dataclasses.MISSING:
                value = f.default_factory()
            else:
                return "required"
            break
    else:
        raise ValueError(f"{cls.__name__} has no field {setting.field!r} ({setting.name})")
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, frozenset | tuple | dict) and not value:
        return "empty"
    if value == "|":
        return "`|`"
    return f"`{value}`" if isinstance(value, str) else str(value)


_KOHA = {"yes": "yes", "ignored": "yes (accepted, not used)", "no": "no (koha-gateway)"}


def _table(cls, settings: tuple[Setting, ...]) -> list[str]:
    lines = ["| name | default | in Koha | meaning |", "|---|---|---|---|"]
    for s in settings:
        default = _default_text(cls, s)
        lines.append(f"| `{s.name}` | {default} | {_KOHA[s.koha]} | {s.meaning} |")
    return lines


def markdown() -> str:
    """The configuration reference page (docs/configuration.md)."""
    from koha_gateway.config.kohaconf import KohaConf
    from koha_gateway.config.ldap import LdapConfig
    from koha_gateway.config.sipconfig import NET_SERVER_OPTIONS

    out = [
        "<!-- Generated from koha_gateway/config/reference.py by `make docs`; do not edit. -->",
        "",
        "# Configuration reference",
        "",
        "Every attribute of Koha's `SIPconfig.xml` and every element of `koha-conf.xml` that "
        "koha-gateway reads, with its default and whether Koha's own SIP server has it. The "
        "page is generated from the tables the configuration readers use "
        "(`koha_gateway/config/reference.py`), so it lists exactly what the code accepts.",
        "",
        "Boolean `<login>` attributes follow Perl's truth rule as Koha does: missing, empty "
        "and `0` are false, anything else is true. `<policy>` flags take `true`, `y`, `yes` or "
        "a non-zero number. An attribute the gateway does not know is reported as a warning "
        "with its file and line; an error stops start-up with its file and line.",
        "",
        "## SIPconfig.xml",
        "",
    ]
    for title, path, settings in SIPCONFIG.values():
        out += [f"### {title}", ""]
        out += _table(_dataclass(path), settings)
        out.append("")
    out += [
        "Other `<server-params>` options are Net::Server's: accepted, logged as not used "
        "(this server is one process with an event loop): "
        + ", ".join(f"`{n}`" for n in sorted(NET_SERVER_OPTIONS))
        + ".",
        "",
        "`<syspref_overrides>` (at the top level and inside a `<login>`) holds one element per "
        "Koha system preference, named after it, with the value as text; an account's "
        "override wins over the global one, which wins over the database.",
        "",
        "## koha-conf.xml",
        "",
        "### `<config>`",
        "",
    ]
    out += _table(KohaConf, KOHA_CONF)
    out += ["", "### `<config>/<ldapserver>`", ""]
    out += _table(LdapConfig, LDAPSERVER)
    out += [
        "",
        "See [LDAP](ldap.md) for `<mapping>` and `<categorycode_mapping>`, and "
        "[Running against a Koha instance](koha.md) for the database elements.",
        "",
    ]
    return "\n".join(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Write or check docs/configuration.md.")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--write", metavar="PATH")
    group.add_argument("--check", metavar="PATH")
    args = parser.parse_args(argv)
    text = markdown()
    if args.write:
        Path(args.write).write_text(text, encoding="utf-8")
        return 0
    path = Path(args.check)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        print(
            f"{path} is out of date with koha_gateway/config/reference.py: run 'make docs'",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
