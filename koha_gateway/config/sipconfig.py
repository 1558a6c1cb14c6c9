"""Koha's SIPconfig.xml: listeners, accounts, institutions, server parameters.

Reads the same file Koha's Perl SIP server reads (``C4/SIP/Sip/Configuration.pm``) and turns
it into frozen dataclasses, one per section. Names follow Koha's attribute names so that a
systems librarian can move an existing ``/etc/koha/sites/<instance>/SIPconfig.xml`` over
unchanged.

Where Koha's behaviour is a known bug, this reader fixes it and says so in the docstring of the
field concerned (``renewal="false"`` is false; a single ``<sort_bin_mapping>`` is a list of
one; comma lists are trimmed). Everything Koha accepts but does not use is accepted and kept.

Every problem that must stop start-up raises :class:`~koha_gateway.config.errors.ConfigError`
naming the file and line. Findings that are only suspicious are collected in
:attr:`SIPConfig.warnings` in the same ``path:line: message`` format.
"""

from __future__ import annotations

import codecs
import ipaddress
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from typing import Any

from lxml import etree

from koha_gateway.config import reference
from koha_gateway.config.errors import (
    ACS_NAMESPACE,
    ConfigError,
    local_name,
    located,
    read_xml,
)
from koha_gateway.sip2.output import perl_pattern

__all__ = [
    "DEFAULT_LOGIN_TIMEOUT",
    "AccountConfig",
    "InstitutionConfig",
    "ListenAddress",
    "PolicyConfig",
    "SIPConfig",
    "ServerParams",
    "ServiceConfig",
    "ConfigBuilder",
    "RowRef",
    "Sections",
    "load_sip_config",
    "parse_listen_address",
    "perl_bool",
    "to_bool",
]

#: Login-phase timeout when neither the service nor the file sets one (Koha's ``get_timeout``).
DEFAULT_LOGIN_TIMEOUT = 30

DEFAULT_MAX_LINE_LENGTH = 8192
MIN_MAX_LINE_LENGTH = 256
MAX_MAX_LINE_LENGTH = 1024 * 1024

_DIGITS = re.compile(r"[0-9]+")
_INTEGER = re.compile(r"[+-]?[0-9]+")
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
_HOSTNAME = re.compile(
    r"(?=.{1,253}\.?$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_FIELD_ID = re.compile(r"[A-Za-z0-9]{2}")
_WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})
_PERL_FALSE_LOOKALIKES = frozenset({"false", "no", "n", "off", "f", "disabled", "none"})


# --------------------------------------------------------------------------------------------
# Value helpers (shared with the ACS through the package namespace)
# --------------------------------------------------------------------------------------------


def perl_bool(value: str | None) -> bool:
    """Perl truthiness of an attribute value: missing, ``""`` and ``"0"`` are false.

    This is how Koha reads every boolean ``<login>`` attribute of SIPconfig.xml.
    Note that ``"false"`` and ``"no"`` are *true* under this rule.
    """
    return value is not None and value != "" and value != "0"


def to_bool(value: str | None) -> bool:
    """Koha's ``to_bool`` for ``<policy>`` flags (Koha ``C4/SIP`` institution policy).

    ``true``, ``y`` or ``yes`` in any case, or a non-zero integer, is true; everything else
    (including a missing attribute) is false.
    """
    if value is None:
        return False
    text = value.strip()
    if text.lower() in ("true", "y", "yes"):
        return True
    return bool(_INTEGER.fullmatch(text)) and int(text) != 0


def _is_plain_bool(value: str) -> bool:
    text = value.strip()
    return text.lower() in ("true", "y", "yes", "false", "n", "no", "") or bool(
        _INTEGER.fullmatch(text)
    )


# --------------------------------------------------------------------------------------------
# Dataclasses
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ListenAddress:
    """One listening address in Net::Server's port syntax (Koha ``C4/SIP/SIPServer.pm``).

    ``spec`` is the attribute as written (``[host:]port[/tcp][/IPv4|/IPv6]``). ``host`` is
    ``""`` for all interfaces (no host, or ``*``); IPv6 literals are given without brackets.
    ``family`` is the ``/IPv4`` or ``/IPv6`` suffix, ``None`` when absent.
    """

    host: str
    port: int
    family: str | None
    spec: str

    @property
    def is_wildcard(self) -> bool:
        """True when the address listens on every interface (``""``, ``0.0.0.0``, ``::``)."""
        return self.host in _WILDCARD_HOSTS

    def conflicts_with(self, other: ListenAddress) -> bool:
        """True when both addresses cannot be bound at the same time (same port, and the same
        host or either one listening on all interfaces)."""
        if self.port != other.port:
            return False
        if self.is_wildcard or other.is_wildcard:
            return True
        return self.host.lower() == other.host.lower()

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else (self.host or "*")
        return f"{host}:{self.port}"


@dataclass(frozen=True)
class ServiceConfig:
    """A ``<listeners>/<service>`` element (Koha ``C4/SIP/SIPServer.pm``).

    - ``transport``: ``"RAW"`` (SIP2 over TCP) or ``"telnet"`` (prompted login, §3.3).
    - ``protocol``: informational (``SIP/2.00``), as in Koha.
    - ``timeout``: seconds allowed for the login phase; ``None`` or ``0`` falls back (see
      :meth:`SIPConfig.login_timeout`).
    - ``client_timeout``: the raw attribute; use :meth:`SIPConfig.idle_timeout` to read it.
    - ``max_line_length``: longest accepted request line in bytes (our attribute).
    - ``tls_*``: our TLS attributes. Paths are absolute (relative ones were resolved against
      the directory of SIPconfig.xml). ``tls_min_version`` is ``"1.2"`` or ``"1.3"``.
    - ``proxy_protocol``: ``None``, ``"v1"`` or ``"v2"`` (HAProxy PROXY header expected).
    - ``line``: line of the element in SIPconfig.xml; ``origin``: the ``sip_listeners`` row
      it came from instead (``None`` for the file).
    """

    address: ListenAddress
    transport: str = "RAW"
    protocol: str = "SIP/2.00"
    timeout: int | None = None
    client_timeout: str | None = None
    max_line_length: int = DEFAULT_MAX_LINE_LENGTH
    tls_certificate: str | None = None
    tls_private_key: str | None = None
    tls_chain: str | None = None
    tls_client_ca: str | None = None
    tls_min_version: str = "1.2"
    tls_ciphers: str | None = None
    proxy_protocol: str | None = None
    line: int = 0
    origin: str | None = None

    @property
    def tls(self) -> bool:
        """True when this listener speaks TLS (a certificate is configured)."""
        return self.tls_certificate is not None


@dataclass(frozen=True)
class PolicyConfig:
    """An institution's ``<policy>``, reported in 3M SIP2 2.00 ACS Status (98).

    All flags use :func:`to_bool`, including ``renewal``: Koha's Perl-truthiness quirk that
    makes ``renewal="false"`` true is fixed here. ``timeout`` and ``retries`` are 0..999
    (missing or invalid: 0). As in Koha, the flags only drive the 98 response.
    """

    checkin: bool = False
    checkout: bool = False
    renewal: bool = False
    status_update: bool = False
    offline: bool = False
    timeout: int = 0
    retries: int = 0


@dataclass(frozen=True)
class InstitutionConfig:
    """An ``<institutions>/<institution>`` element (Koha ``etc/SIPconfig.xml``).

    ``id`` should be a Koha branchcode; ``implementation`` is kept as written (``ILS``);
    ``parms`` is unused, as in Koha.
    """

    id: str
    implementation: str = "ILS"
    parms: str = ""
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    line: int = 0
    origin: str | None = None


@dataclass(frozen=True)
class AccountConfig:
    """An ``<accounts>/<login>`` element (Koha ``etc/SIPconfig.xml`` accounts).

    Attribute names are Koha's (``error-detect`` becomes ``error_detect``). Boolean options
    follow Perl truthiness (only ``"0"`` and ``""`` are false) and default to false, except
    ``holds_get_captured`` and ``patron_restriction_blocks_inet`` (true unless set false).
    Template options are ``None`` when absent: the caller applies Koha's default template.

    Deliberate differences from Koha: comma lists are trimmed around each entry; a single
    ``<sort_bin_mapping>`` is a tuple of one; ``terminator`` accepts ``cr``/``crlf`` in any
    case. ``delimiter`` and ``error_detect`` are kept but, as in Koha, not used per account.

    ``client_certificate`` (our attribute) binds the account to a kiosk's TLS client
    certificate: the name (DNS subjectAltName or common name) that certificate must carry
    when the account logs in over a TLS listener that asks for client certificates.
    """

    id: str
    institution: str
    password: str | None = None
    delimiter: str = "|"
    error_detect: bool = False
    encoding: str | None = None
    terminator: str = "CRLF"
    checked_in_ok: bool = False
    cv_triggers_alert: bool = False
    cv_send_00_on_success: bool = False
    ct_always_send: bool = False
    holds_block_checkin: bool = False
    holds_get_captured: bool = True
    send_patron_home_library_in_af: bool = False
    patron_branchcode_in_ao: bool = False
    patron_restriction_blocks_inet: bool = True
    allow_empty_passwords: bool = False
    ae_field_template: str | None = None
    da_field_template: str | None = None
    av_field_template: str | None = None
    hide_fields: frozenset[str] = frozenset()
    allow_fields: frozenset[str] | None = None
    register_id: int | None = None
    payment_type_writeoff: str | None = None
    disallow_overpayment: bool = False
    lost_status_for_missing: int | None = None
    lost_block_checkout: int = 0
    lost_block_checkout_value: int = 1
    overdues_block_checkout: bool = False
    prevcheckout_block_checkout: bool = False
    allow_additional_materials_checkout: bool = False
    blocked_item_types: frozenset[str] = frozenset()
    inhouse_item_types: frozenset[str] = frozenset()
    inhouse_patron_categories: frozenset[str] = frozenset()
    format_due_date: bool = False
    cr_item_field: str = "collection_code"
    seen_on_item_information: str | None = None
    show_checkin_message: bool = False
    show_outstanding_amount: bool = False
    convert_nonprinting_characters: str | None = None
    screen_msg_regex: tuple[tuple[str, str], ...] = ()
    patron_attributes: tuple[tuple[str, str], ...] = ()
    custom_patron_fields: tuple[tuple[str, str], ...] = ()
    item_fields: tuple[tuple[str, str], ...] = ()
    custom_item_fields: tuple[tuple[str, str], ...] = ()
    sort_bin_mappings: tuple[str, ...] = ()
    syspref_overrides: dict[str, str] = field(default_factory=dict)
    client_certificate: str | None = None
    line: int = 0
    origin: str | None = None

    def __repr__(self) -> str:
        # Every field, with the password masked (reprs end up in logs and tracebacks).
        parts = []
        for item in fields(self):
            value = getattr(self, item.name)
            if item.name == "password" and value is not None:
                parts.append("password='***'")
            else:
                parts.append(f"{item.name}={value!r}")
        return f"AccountConfig({', '.join(parts)})"


@dataclass(frozen=True)
class ServerParams:
    """``<server-params>`` (Koha ``C4/SIP/SIPServer.pm``, Net::Server::PreFork options).

    Koha's TCP keepalive options (Bug 37087) are read: ``custom_tcp_keepalive`` (Perl truth),
    ``custom_tcp_keepalive_time`` / ``custom_tcp_keepalive_intvl`` (positive seconds; 0 or
    invalid: ``None``, i.e. the kernel default). ``workers`` and ``reference_max_age``
    (seconds, as ``--reference-max-age``; the command line wins when given) are our own
    options. The Net::Server process options (``min_servers``, ``user``, ``pid_file``, ...) have
    no meaning for an event-driven server; they are kept in ``ignored`` so the service can log
    them.
    """

    custom_tcp_keepalive: bool = False
    custom_tcp_keepalive_time: int | None = None
    custom_tcp_keepalive_intvl: int | None = None
    ignored: dict[str, str] = field(default_factory=dict)
    workers: int | None = None
    reference_max_age: float | None = None


@dataclass(frozen=True)
class SIPConfig:
    """The whole SIPconfig.xml (Koha ``C4/SIP/Sip/Configuration.pm``).

    ``accounts`` is keyed by login id, ``institutions`` by institution id.
    ``syspref_overrides`` are the global ones (account overrides win over them). ``timeout``
    is the legacy top-level timeout, ``delimiter`` the top-level field delimiter (the only one
    Koha uses), ``error_detect`` the parsed but unused ``<error-detect>``.
    """

    path: str
    services: tuple[ServiceConfig, ...] = ()
    accounts: dict[str, AccountConfig] = field(default_factory=dict)
    institutions: dict[str, InstitutionConfig] = field(default_factory=dict)
    server_params: ServerParams = field(default_factory=ServerParams)
    syspref_overrides: dict[str, str] = field(default_factory=dict)
    timeout: int | None = None
    delimiter: str = "|"
    error_detect: bool = False
    warnings: tuple[str, ...] = ()
    from_database: frozenset[str] = frozenset()

    def where(self, item: ServiceConfig | InstitutionConfig | AccountConfig) -> str:
        """``path:line`` of an entry of the file, or the table row it came from."""
        if item.origin:
            return item.origin
        return f"{self.path}:{item.line}" if item.line else self.path

    def login_timeout(self, service: ServiceConfig) -> int:
        """Seconds allowed for the login phase (Koha ``SIPServer.pm`` ``get_timeout`` with
        ``transport``): the service ``timeout``, else the top-level ``timeout``, else 30.
        Zero is not a valid value and falls through."""
        for value in (service.timeout, self.timeout):
            if value:
                return value
        return DEFAULT_LOGIN_TIMEOUT

    def idle_timeout(self, service: ServiceConfig) -> int | None:
        """Idle timeout of an authenticated connection (Koha ``SIPServer.pm``
        ``get_timeout`` with ``client``); ``None`` means no idle timeout.

        ``client_timeout`` made only of digits and not zero is the timeout; ``0``, any
        all-zero string, an empty value or anything that is not digits means no timeout.
        Without the attribute the login timeout applies.
        """
        raw = service.client_timeout
        if raw is None:
            return self.login_timeout(service)
        if _DIGITS.fullmatch(raw) and int(raw) > 0:
            return int(raw)
        return None


# --------------------------------------------------------------------------------------------
# Listen address syntax
# --------------------------------------------------------------------------------------------


def parse_listen_address(spec: str) -> ListenAddress:
    """Parse Net::Server's ``[host:]port[/tcp][/IPv4|/IPv6]`` (Koha ``SIPServer.pm``).

    Accepts ``8023/tcp``, ``127.0.0.1:6001/tcp``, ``*:6001/tcp``, ``127.0.0.1:6001/tcp/IPv4``,
    ``[::1]:6001/tcp``, ``localhost:6001``. Raises ``ValueError`` with a message for the
    caller to place (``bad port`` for a port outside 1..65535, UDP and other protocols
    refused).
    """
    text = spec.strip()
    if not text:
        raise ValueError("missing port")
    hostport, *suffixes = text.split("/")
    proto: str | None = None
    family: str | None = None
    family_seen = False
    for suffix in suffixes:
        lowered = suffix.lower()
        if lowered == "tcp":
            if proto is not None:
                raise ValueError(f"protocol given twice in {spec!r}")
            proto = "tcp"
        elif lowered == "udp":
            raise ValueError(f"/udp is not supported in {spec!r}: SIP2 runs over TCP")
        elif lowered in ("ipv4", "4", "ipv6", "6", "ipv*", "*"):
            if family_seen:
                raise ValueError(f"IP family given twice in {spec!r}")
            family_seen = True
            if lowered in ("ipv4", "4"):
                family = "IPv4"
            elif lowered in ("ipv6", "6"):
                family = "IPv6"
        elif lowered in ("ssl", "ssleay", "unix", "unixdgram"):
            raise ValueError(
                f"/{suffix} is not supported in {spec!r}; "
                "TCP only (for TLS set tls_certificate and tls_private_key on the service)"
            )
        else:
            raise ValueError(f"unknown protocol or family {suffix!r} in {spec!r}")

    if hostport.startswith("["):
        match = re.fullmatch(r"\[([^\]]*)\](?::(.*))?", hostport)
        if match is None or match.group(2) is None:
            raise ValueError(f"bad port in {spec!r}: expected [address]:port")
        host, port_text = match.group(1), match.group(2)
        try:
            host = str(ipaddress.IPv6Address(host))
        except ValueError:
            raise ValueError(f"bad IPv6 address {host!r} in {spec!r}") from None
    elif ":" in hostport:
        host, port_text = hostport.rsplit(":", 1)
    else:
        host, port_text = "", hostport

    if not _DIGITS.fullmatch(port_text) or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"bad port {port_text!r} in {spec!r}: must be 1..65535")
    port = int(port_text)

    if host == "*":
        host = ""
    elif host:
        try:
            parsed = ipaddress.ip_address(host)
        except ValueError:
            if not _HOSTNAME.fullmatch(host):
                raise ValueError(f"bad host {host!r} in {spec!r}") from None
        else:
            host = str(parsed)
            if parsed.version == 4 and family == "IPv6":
                raise ValueError(f"{host} is an IPv4 address but {spec!r} asks for IPv6")
            if parsed.version == 6 and family == "IPv4":
                raise ValueError(f"{host} is an IPv6 address but {spec!r} asks for IPv4")
    return ListenAddress(host=host, port=port, family=family, spec=spec)


# --------------------------------------------------------------------------------------------
# Where a value comes from: an XML element or a database row
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RowRef:
    """A row of one of Koha's ``sip_*`` tables, the database's counterpart of ``file:line``.

    ``str(RowRef("sip_accounts", 3, "login kiosk1"))`` is ``sip_accounts id=3 (login kiosk1)``.
    """

    table: str
    id: Any
    label: str = ""

    def __str__(self) -> str:
        text = f"{self.table} id={self.id}"
        return f"{text} ({self.label})" if self.label else text


#: Where a setting was read: an element of SIPconfig.xml, a database row, or nowhere in
#: particular (``None``: the whole document or database).
Where = etree._Element | RowRef | None


@dataclass
class Sections:
    """The sections of a configuration, each built and checked on its own, before the checks
    that span sections (:meth:`ConfigBuilder.assemble`). Every entry keeps where it came from.
    """

    root: Where = None
    services: list[tuple[ServiceConfig, Where]] = field(default_factory=list)
    institutions: dict[str, tuple[InstitutionConfig, Where]] = field(default_factory=dict)
    accounts: list[tuple[AccountConfig, Where]] = field(default_factory=list)
    server_params: ServerParams = field(default_factory=ServerParams)
    syspref_overrides: dict[str, str] = field(default_factory=dict)
    timeout: int | None = None
    delimiter: str = "|"
    error_detect: bool = False
    from_database: frozenset[str] = frozenset()


# --------------------------------------------------------------------------------------------
# The validating builder (shared by SIPconfig.xml and Koha's sip_* tables)
# --------------------------------------------------------------------------------------------


class ConfigBuilder:
    """Builds and checks every section from plain ``name -> text`` attributes.

    The XML reader (:meth:`read`) and the database loader (:mod:`koha_gateway.config.sipdb`)
    both feed it, so a value means the same and is checked the same whichever source gives it.
    Errors and warnings name the element's file and line, or the table and row
    (:class:`RowRef`).
    """

    def __init__(self, path: str):
        self.path = path
        self.base_dir = os.path.dirname(os.path.abspath(path))
        self.warnings: list[str] = []

    # -- reporting -----------------------------------------------------------------------

    def locate(self, where: Where) -> tuple[str, int | None]:
        if isinstance(where, RowRef):
            return str(where), None
        if where is None:
            return self.path, None
        return self.path, where.sourceline

    def error(self, where: Where, message: str) -> ConfigError:
        path, line = self.locate(where)
        return ConfigError(message, path, line)

    def warn(self, where: Where, message: str) -> None:
        path, line = self.locate(where)
        self.warnings.append(located(path, line, message))

    @staticmethod
    def line_of(where: Where) -> int:
        if isinstance(where, RowRef) or where is None:
            return 0
        return where.sourceline or 0

    @staticmethod
    def origin_of(where: Where) -> str | None:
        return str(where) if isinstance(where, RowRef) else None

    def describe(self, where: Where) -> str:
        if isinstance(where, RowRef):
            return str(where)
        path, line = self.locate(where)
        return f"{path}:{line}" if line else path

    # -- XML helpers ---------------------------------------------------------------------

    def children(self, element: etree._Element) -> Iterator[tuple[str, etree._Element]]:
        """Child elements in Koha's namespace (or none) with their local names."""
        for child in element:
            name = local_name(child)
            if name is None:
                continue
            namespace = etree.QName(child).namespace
            if namespace not in (None, ACS_NAMESPACE):
                self.warn(child, f"element <{name}> in namespace {namespace!r} ignored")
                continue
            yield name, child

    def attributes(self, element: etree._Element, known: frozenset[str]) -> dict[str, str]:
        """Attributes of ``element``, warning about unknown ones (which are dropped)."""
        tag = local_name(element)
        result: dict[str, str] = {}
        for key, value in element.attrib.items():
            if key in known:
                result[key] = value
            else:
                self.warn(element, f"unknown <{tag}> attribute {key!r} ignored")
        return result

    def element_value(self, element: etree._Element) -> str:
        """Value of a ``<x value="..."/>`` or ``<x>...</x>`` element (XML::Simple folding)."""
        value = element.get("value")
        if value is not None:
            return value
        return (element.text or "").strip()

    # -- value checks --------------------------------------------------------------------

    def int_value(
        self,
        where: Where,
        name: str,
        value: str,
        *,
        minimum: int | None = None,
        maximum: int | None = None,
    ) -> int:
        text = value.strip()
        if not _INTEGER.fullmatch(text):
            raise self.error(where, f"{name}={value!r} is not an integer")
        number = int(text)
        if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
            if maximum is None:
                bounds = f"must be at least {minimum}"
            elif minimum is None:
                bounds = f"must be at most {maximum}"
            else:
                bounds = f"must be {minimum}..{maximum}"
            raise self.error(where, f"{name}={value!r} is out of range: {bounds}")
        return number

    def seconds_value(self, where: Where, name: str, value: str) -> float:
        """A number of seconds, 0 or more (``2``, ``0.5``)."""
        text = value.strip()
        if not _DECIMAL.fullmatch(text):
            raise self.error(where, f"{name}={value!r} is not a number of seconds")
        number = float(text)
        if number < 0:
            raise self.error(where, f"{name}={value!r} is out of range: must be at least 0")
        return number

    def perl_flag(self, where: Where, name: str, value: str) -> bool:
        if value.strip().lower() in _PERL_FALSE_LOOKALIKES:
            self.warn(
                where,
                f'{name}="{value}" is TRUE: account options follow Koha\'s Perl truthiness '
                '(only "0" and "" are false); write "0" to turn it off',
            )
        return perl_bool(value)

    def policy_flag(self, where: Where, name: str, value: str | None) -> bool:
        if value is not None and not _is_plain_bool(value):
            self.warn(where, f'{name}="{value}" is not a boolean; treated as false')
        return to_bool(value)

    def resolve_path(self, value: str) -> str:
        expanded = os.path.expanduser(value.strip())
        return os.path.normpath(os.path.join(self.base_dir, expanded))

    # -- document ------------------------------------------------------------------------

    def read(self, root: etree._Element) -> SIPConfig:
        """The whole SIPconfig.xml document, checked."""
        return self.assemble(self.sections(root))

    def sections(self, root: etree._Element, skip: frozenset[str] = frozenset()) -> Sections:
        """Every section of the document except those named in ``skip`` (``listeners``,
        ``accounts``, ``institutions``, ``server-params``, ``syspref_overrides``): those come
        from elsewhere and are neither built nor checked here."""
        name = local_name(root)
        if name != "acsconfig":
            raise self.error(root, f"the root element must be <acsconfig>, not <{name}>")

        top = self.attributes(root, reference.names("acsconfig"))
        timeout_el: etree._Element = root
        timeout_raw = top.get("timeout")
        delimiter_el: etree._Element = root
        delimiter_raw = top.get("delimiter")

        result = Sections(root=root)
        logins: list[etree._Element] = []
        for name, child in self.children(root):
            if name == "listeners":
                if "listeners" not in skip:
                    result.services.extend(self.listeners(child))
            elif name == "accounts":
                if "accounts" in skip:
                    continue
                for sub_name, sub in self.children(child):
                    if sub_name == "login":
                        logins.append(sub)
                    else:
                        self.warn(sub, f"unexpected <{sub_name}> in <accounts> ignored")
            elif name == "institutions":
                if "institutions" not in skip:
                    self.institutions(child, result.institutions)
            elif name == "server-params":
                if "server-params" not in skip:
                    result.server_params = self.server_params(child, result.server_params)
            elif name == "syspref_overrides":
                if "syspref_overrides" not in skip:
                    result.syspref_overrides.update(self.syspref_overrides(child))
            elif name == "syspref-overrides":
                self.warn(
                    child,
                    "<syspref-overrides> is the old spelling and is ignored (as in Koha); "
                    "rename it to <syspref_overrides>",
                )
            elif name == "error-detect":
                raw = self.attributes(child, reference.names("error-detect")).get("enabled")
                result.error_detect = self.error_detect(child, raw)
            elif name == "timeout":
                timeout_el, timeout_raw = child, self.element_value(child)
            elif name == "delimiter":
                delimiter_el, delimiter_raw = child, self.element_value(child)
            else:
                self.warn(child, f"unknown element <{name}> ignored")

        if timeout_raw is not None and timeout_raw.strip() != "":
            result.timeout = self.int_value(timeout_el, "timeout", timeout_raw, minimum=0)

        if delimiter_raw is not None:
            if len(delimiter_raw) != 1 or delimiter_raw in "\r\n":
                raise self.error(
                    delimiter_el,
                    f"delimiter={delimiter_raw!r} must be a single character other than CR or LF",
                )
            result.delimiter = delimiter_raw

        for login in logins:
            result.accounts.append((self.account(login, result.delimiter), login))
        return result

    def assemble(self, sections: Sections, path: str | None = None) -> SIPConfig:
        """The checks that span sections, then the frozen :class:`SIPConfig`."""
        root = sections.root
        services = [service for service, _ in sections.services]
        if not services:
            if "listeners" in sections.from_database or root is None:
                raise self.error(
                    root, "no listener in sip_listeners or <listeners>: nothing to listen on"
                )
            raise self.error(root, "no <service> in <listeners>: nothing to listen on")
        self.check_conflicts(sections.services)

        institutions = {key: inst for key, (inst, _) in sections.institutions.items()}
        accounts: dict[str, AccountConfig] = {}
        wheres: dict[str, Where] = {}
        lowered: dict[str, str] = {}
        for account, where in sections.accounts:
            previous = wheres.get(account.id)
            if previous is not None:
                if isinstance(previous, RowRef) or isinstance(where, RowRef):
                    twice = (
                        f"is defined twice ({self.describe(previous)} and {self.describe(where)})"
                    )
                else:
                    twice = (
                        f"is defined twice (lines {self.line_of(previous)} and "
                        f"{self.line_of(where)})"
                    )
                raise self.error(
                    where,
                    f"login id {account.id!r} {twice}; each SIP login id must be unique",
                )
            if account.institution not in institutions:
                place = (
                    "sip_institutions"
                    if "institutions" in sections.from_database
                    else "<institutions>"
                )
                raise self.error(
                    where,
                    f"login {account.id!r}: institution {account.institution!r} is not "
                    f"defined in {place}",
                )
            other = lowered.get(account.id.lower())
            if other is not None:
                self.warn(
                    where,
                    f"login ids {other!r} and {account.id!r} differ only in case; Koha "
                    "userids usually do not",
                )
            accounts[account.id] = account
            wheres[account.id] = where
            lowered[account.id.lower()] = account.id
        if not accounts:
            if "accounts" in sections.from_database:
                self.warn(root, "no row in sip_accounts: nobody can log in")
            else:
                self.warn(root, "no <login> in <accounts>: nobody can log in")
        if not any(service.tls_client_ca for service in services):
            for account_id, account in accounts.items():
                if account.client_certificate:
                    self.warn(
                        wheres[account_id],
                        f"login {account.id!r} requires the client certificate "
                        f"{account.client_certificate!r}, but no <service> asks for client "
                        "certificates (tls_client_ca): this account cannot log in",
                    )

        return SIPConfig(
            path=path or self.path,
            services=tuple(services),
            accounts=accounts,
            institutions=institutions,
            server_params=sections.server_params,
            syspref_overrides=dict(sections.syspref_overrides),
            timeout=sections.timeout,
            delimiter=sections.delimiter,
            error_detect=sections.error_detect,
            warnings=tuple(self.warnings),
            from_database=sections.from_database,
        )

    def error_detect(self, element: etree._Element, raw: str | None) -> bool:
        if raw is None:
            return False
        text = raw.strip().lower()
        if text in ("enabled", "on"):
            return True
        if text in ("disabled", "off"):
            return False
        if not _is_plain_bool(text):
            self.warn(element, f'error-detect enabled="{raw}" is not a boolean; treated as false')
        return to_bool(text)

    # -- listeners -----------------------------------------------------------------------

    SERVICE_ATTRIBUTES = reference.names("service")

    def listeners(self, element: etree._Element) -> list[tuple[ServiceConfig, Where]]:
        services = []
        for name, child in self.children(element):
            if name == "service":
                attrs = self.attributes(child, self.SERVICE_ATTRIBUTES)
                services.append((self.service(child, attrs), child))
            else:
                self.warn(child, f"unexpected <{name}> in <listeners> ignored")
        return services

    def service(self, where: Where, attrs: dict[str, str]) -> ServiceConfig:
        """One ``<service>`` (Koha ``SIPServer.pm`` listeners) or ``sip_listeners`` row."""
        spec = attrs.get("port")
        if spec is None:
            raise self.error(where, "<service> has no port attribute")
        try:
            address = parse_listen_address(spec)
        except ValueError as exc:
            raise self.error(where, str(exc)) from None

        transport_raw = attrs.get("transport", "")
        transport = {"raw": "RAW", "telnet": "telnet"}.get(transport_raw.strip().lower())
        if transport is None:
            raise self.error(
                where,
                f"unknown transport {transport_raw!r} on {spec!r}: use RAW or telnet",
            )

        timeout = None
        raw_timeout = attrs.get("timeout")
        if raw_timeout is not None and raw_timeout.strip() != "":
            timeout = self.int_value(where, "timeout", raw_timeout, minimum=0)

        client_timeout = attrs.get("client_timeout")
        if (
            client_timeout is not None
            and client_timeout.strip()
            and not _DIGITS.fullmatch(client_timeout)
        ):
            self.warn(
                where,
                f'client_timeout="{client_timeout}" is not a number of seconds: as in '
                "Koha, this means no idle timeout",
            )

        max_line = DEFAULT_MAX_LINE_LENGTH
        if "max_line_length" in attrs:
            max_line = self.int_value(
                where,
                "max_line_length",
                attrs["max_line_length"],
                minimum=MIN_MAX_LINE_LENGTH,
                maximum=MAX_MAX_LINE_LENGTH,
            )

        tls_paths: dict[str, str | None] = {}
        for key in ("tls_certificate", "tls_private_key", "tls_chain", "tls_client_ca"):
            value = attrs.get(key)
            if value is None or not value.strip():
                tls_paths[key] = None
                continue
            resolved = self.resolve_path(value)
            if not os.path.isfile(resolved):
                raise self.error(where, f"{key}: file not found: {resolved}")
            tls_paths[key] = resolved
        if tls_paths["tls_certificate"] and not tls_paths["tls_private_key"]:
            raise self.error(where, "tls_certificate is set but tls_private_key is not")
        if tls_paths["tls_private_key"] and not tls_paths["tls_certificate"]:
            raise self.error(where, "tls_private_key is set but tls_certificate is not")
        tls_on = tls_paths["tls_certificate"] is not None
        for key in ("tls_chain", "tls_client_ca", "tls_min_version", "tls_ciphers"):
            if not tls_on and attrs.get(key, "").strip():
                raise self.error(where, f"{key} needs tls_certificate and tls_private_key")

        min_version = attrs.get("tls_min_version", "").strip() or "1.2"
        if min_version not in ("1.2", "1.3"):
            raise self.error(
                where, f"tls_min_version={min_version!r} is not supported: use 1.2 or 1.3"
            )
        ciphers = attrs.get("tls_ciphers", "").strip() or None

        proxy_raw = attrs.get("proxy_protocol", "").strip().lower()
        if proxy_raw in ("", "none", "off", "no"):
            proxy = None
        elif proxy_raw in ("v1", "v2"):
            proxy = proxy_raw
        else:
            raise self.error(
                where,
                f"proxy_protocol={attrs['proxy_protocol']!r} is not supported: use v1 or v2",
            )

        return ServiceConfig(
            address=address,
            transport=transport,
            protocol=attrs.get("protocol", "SIP/2.00"),
            timeout=timeout,
            client_timeout=client_timeout,
            max_line_length=max_line,
            tls_certificate=tls_paths["tls_certificate"],
            tls_private_key=tls_paths["tls_private_key"],
            tls_chain=tls_paths["tls_chain"],
            tls_client_ca=tls_paths["tls_client_ca"],
            tls_min_version=min_version,
            tls_ciphers=ciphers,
            proxy_protocol=proxy,
            line=self.line_of(where),
            origin=self.origin_of(where),
        )

    def check_conflicts(self, services: list[tuple[ServiceConfig, Where]]) -> None:
        for index, (service, where) in enumerate(services):
            for earlier, earlier_where in services[:index]:
                if service.address.conflicts_with(earlier.address):
                    if isinstance(earlier_where, RowRef) or isinstance(where, RowRef):
                        first = self.describe(earlier_where)
                    else:
                        first = f"line {earlier.line}"
                    raise self.error(
                        where,
                        f"two services on the same address: {service.address.spec!r} "
                        f"conflicts with {earlier.address.spec!r} ({first}); "
                        "each service needs its own port",
                    )

    # -- institutions --------------------------------------------------------------------

    POLICY_FLAGS = ("checkin", "checkout", "renewal", "status_update", "offline")

    def institutions(
        self, element: etree._Element, institutions: dict[str, tuple[InstitutionConfig, Where]]
    ) -> None:
        for name, child in self.children(element):
            if name != "institution":
                self.warn(child, f"unexpected <{name}> in <institutions> ignored")
                continue
            attrs = self.attributes(child, reference.names("institution"))
            policy_where: Where = None
            policy_attrs: dict[str, str] | None = None
            inst_id = attrs.get("id", "").strip()
            for sub_name, sub in self.children(child):
                if sub_name != "policy":
                    self.warn(sub, f"unexpected <{sub_name}> in <institution> ignored")
                    continue
                if policy_attrs is not None:
                    raise self.error(
                        sub,
                        f"institution {inst_id!r} has a second <policy> (first on line "
                        f"{self.line_of(policy_where)})",
                    )
                policy_where = sub
                policy_attrs = self.attributes(sub, reference.names("policy"))
            self.add_institution(
                institutions, child, self.institution(child, attrs, policy_where, policy_attrs)
            )

    def add_institution(
        self,
        institutions: dict[str, tuple[InstitutionConfig, Where]],
        where: Where,
        institution: InstitutionConfig,
    ) -> None:
        previous = institutions.get(institution.id)
        if previous is not None:
            if isinstance(where, RowRef) or isinstance(previous[1], RowRef):
                both = f"{self.describe(previous[1])} and {self.describe(where)}"
            else:
                both = f"lines {previous[0].line} and {institution.line}"
            raise self.error(where, f"institution id {institution.id!r} is defined twice ({both})")
        institutions[institution.id] = (institution, where)

    def institution(
        self,
        where: Where,
        attrs: dict[str, str],
        policy_where: Where,
        policy_attrs: dict[str, str] | None,
    ) -> InstitutionConfig:
        """One ``<institution>`` with its ``<policy>`` (Koha ``etc/SIPconfig.xml``)."""
        inst_id = attrs.get("id", "").strip()
        if not inst_id:
            raise self.error(where, "<institution> has no id")
        implementation = attrs.get("implementation", "").strip() or "ILS"
        if implementation != "ILS":
            self.warn(
                where,
                f"institution {inst_id!r}: implementation {implementation!r} is a Perl module "
                "name; this server always uses its built-in ILS",
            )
        policy = PolicyConfig()
        if policy_attrs is not None:
            policy = self.policy(policy_where, policy_attrs)
        return InstitutionConfig(
            id=inst_id,
            implementation=implementation,
            parms=attrs.get("parms", ""),
            policy=policy,
            line=self.line_of(where),
            origin=self.origin_of(where),
        )

    def policy(self, where: Where, attrs: dict[str, str]) -> PolicyConfig:
        """A ``<policy>`` (for 3M SIP2 2.00 ACS Status (98)); all flags through :func:`to_bool`."""
        flags = {name: self.policy_flag(where, name, attrs.get(name)) for name in self.POLICY_FLAGS}
        numbers = {}
        for name in ("timeout", "retries"):
            raw = attrs.get(name)
            value = 0
            if raw is not None:
                text = raw.strip()
                if _DIGITS.fullmatch(text) and int(text) <= 999:
                    value = int(text)
                else:
                    self.warn(
                        where,
                        f'policy {name}="{raw}" is not a number 0..999; 0 is reported',
                    )
            numbers[name] = value
        return PolicyConfig(**flags, **numbers)

    # -- server params -------------------------------------------------------------------

    _NET_SERVER_OPTIONS = NET_SERVER_OPTIONS = frozenset(
        {
            "min_servers",
            "min_spare_servers",
            "max_spare_servers",
            "max_servers",
            "max_requests",
            "spare_servers",
            "user",
            "group",
            "pid_file",
            "log_file",
            "log_level",
            "syslog_ident",
            "syslog_facility",
            "syslog_logsock",
            "syslog_logopt",
            "setsid",
            "ipv",
            "background",
            "chroot",
            "chdir",
            "host",
            "port",
            "proto",
            "listen",
            "serialize",
            "lock_file",
            "check_for_dead",
            "check_for_waiting",
            "check_for_spawn",
            "min_child_ttl",
            "reverse_lookups",
            "allow",
            "deny",
            "cidr_allow",
            "cidr_deny",
            "no_close_by_child",
            "leave_children_open_on_hup",
            "no_client_stdout",
            "child_communication",
            "commandline",
            "conf_file",
            "timeout",
            "config_timestamp",
        }
    )

    def server_params(self, element: etree._Element, current: ServerParams) -> ServerParams:
        """``<server-params>`` (Koha ``SIPServer.pm``): attributes, or ``<name value=""/>``
        children as XML::Simple folds them."""
        values: list[tuple[str, str, Where]] = [
            (key, value, element) for key, value in element.attrib.items()
        ]
        for name, child in self.children(element):
            values.append((name, self.element_value(child), element))
        return self.build_server_params(values, current)

    def build_server_params(
        self, values: list[tuple[str, str, Where]], current: ServerParams
    ) -> ServerParams:
        """Server parameters from ``(key, value, where)`` triples, over ``current``."""
        keepalive = current.custom_tcp_keepalive
        keepalive_time = current.custom_tcp_keepalive_time
        keepalive_intvl = current.custom_tcp_keepalive_intvl
        workers = current.workers
        reference_max_age = current.reference_max_age
        ignored = dict(current.ignored)
        for key, value, where in values:
            if key == "custom_tcp_keepalive":
                keepalive = perl_bool(value)
            elif key in ("custom_tcp_keepalive_time", "custom_tcp_keepalive_intvl"):
                text = value.strip()
                seconds: int | None = None
                if _DIGITS.fullmatch(text):
                    seconds = int(text) or None
                elif text:
                    self.warn(
                        where,
                        f'{key}="{value}" is not a positive number of seconds; the kernel '
                        "default is used",
                    )
                if key == "custom_tcp_keepalive_time":
                    keepalive_time = seconds
                else:
                    keepalive_intvl = seconds
            elif key == "workers":
                workers = self.int_value(where, "workers", value, minimum=1, maximum=1024)
            elif key == "reference_max_age":
                reference_max_age = self.seconds_value(where, key, value)
            else:
                if key not in self._NET_SERVER_OPTIONS:
                    self.warn(where, f"unknown server-params option {key!r} ignored")
                ignored[key] = value
        return ServerParams(
            custom_tcp_keepalive=keepalive,
            custom_tcp_keepalive_time=keepalive_time,
            custom_tcp_keepalive_intvl=keepalive_intvl,
            ignored=ignored,
            workers=workers,
            reference_max_age=reference_max_age,
        )

    # -- syspref overrides ---------------------------------------------------------------

    def syspref_overrides(self, element: etree._Element) -> dict[str, str]:
        """``<syspref_overrides><PrefName>value</PrefName>...`` (global or per account)."""
        return self.build_overrides(
            [(name, (child.text or "").strip(), child) for name, child in self.children(element)]
        )

    def build_overrides(self, items: list[tuple[str, str, Where]]) -> dict[str, str]:
        """Overrides from ``(preference, value, where)`` in order; a repeat wins, with a warning."""
        overrides: dict[str, str] = {}
        for name, value, where in items:
            if name in overrides:
                self.warn(where, f"syspref override {name!r} given twice; the last one wins")
            overrides[name] = value
        return overrides

    # -- accounts ------------------------------------------------------------------------

    def account(self, element: etree._Element, delimiter: str) -> AccountConfig:
        """One ``<login>`` with its child elements (Koha ``etc/SIPconfig.xml``)."""
        attrs = self.attributes(element, frozenset(_LOGIN_ATTRIBUTES))
        children: list[tuple[str, Where, Any]] = []
        for name, child in self.children(element):
            if name in (
                "screen_msg_regex",
                "patron_attribute",
                "item_field",
                "custom_patron_field",
                "custom_item_field",
                "sort_bin_mapping",
            ):
                payload: Any = self.attributes(child, reference.names(name))
            elif name == "syspref_overrides":
                payload = self.syspref_overrides(child)
            else:
                self.warn(child, f"unknown element <{name}> in <login> ignored")
                continue
            children.append((name, child, payload))
        return self.build_account(element, attrs, children, delimiter)

    def build_account(
        self,
        where: Where,
        attrs: dict[str, str],
        children: list[tuple[str, Where, Any]],
        delimiter: str,
    ) -> AccountConfig:
        """An account from its attributes (Koha's names) and its child settings.

        ``children`` are ``(kind, where, payload)``: kinds ``screen_msg_regex``,
        ``patron_attribute``, ``custom_patron_field``, ``item_field``, ``custom_item_field``,
        ``sort_bin_mapping`` with their attributes as payload, and ``syspref_overrides`` with
        a ready ``{preference: value}``.
        """
        login_id = attrs.get("id", "").strip()
        if not login_id:
            raise self.error(where, "<login> has no id")
        institution = attrs.get("institution", "").strip()
        if not institution:
            raise self.error(where, f"login {login_id!r} has no institution")

        kwargs: dict[str, Any] = {"id": login_id, "institution": institution}
        for name, value in attrs.items():
            if name in ("id", "institution"):
                continue
            python_name, convert = _LOGIN_ATTRIBUTES[name]
            kwargs[python_name] = convert(self, where, name, value)

        account_delimiter = kwargs.get("delimiter", "|")
        if account_delimiter != delimiter:
            self.warn(
                where,
                f"login {login_id!r}: the per-account delimiter {account_delimiter!r} is "
                f"ignored (as in Koha); the top-level delimiter {delimiter!r} is used",
            )

        lists: dict[str, list[Any]] = {
            "screen_msg_regex": [],
            "patron_attributes": [],
            "custom_patron_fields": [],
            "item_fields": [],
            "custom_item_fields": [],
            "sort_bin_mappings": [],
        }
        overrides: dict[str, str] = {}
        for name, child, payload in children:
            if name == "screen_msg_regex":
                lists["screen_msg_regex"].append(self.screen_msg_regex(child, payload))
            elif name == "patron_attribute":
                lists["patron_attributes"].append(self.field_pair(child, name, payload, "code"))
            elif name == "custom_patron_field":
                lists["custom_patron_fields"].append(
                    self.field_pair(child, name, payload, "template")
                )
            elif name == "item_field":
                pair = self.field_pair(child, name, payload, "code")
                if not _IDENTIFIER.fullmatch(pair[1]):
                    raise self.error(
                        child, f"item_field code={pair[1]!r} is not an item column name"
                    )
                lists["item_fields"].append(pair)
            elif name == "custom_item_field":
                lists["custom_item_fields"].append(
                    self.field_pair(child, name, payload, "template")
                )
            elif name == "sort_bin_mapping":
                mapping = payload.get("mapping", "")
                if not mapping.strip():
                    raise self.error(child, "<sort_bin_mapping> has no mapping")
                lists["sort_bin_mappings"].append(mapping.strip())
            elif name == "syspref_overrides":
                overrides.update(payload)
            else:  # pragma: no cover - callers pass only the kinds above
                raise ValueError(f"unknown account setting {name!r}")
        for key, items in lists.items():
            kwargs[key] = tuple(items)
        kwargs["syspref_overrides"] = overrides
        kwargs["line"] = self.line_of(where)
        kwargs["origin"] = self.origin_of(where)
        return AccountConfig(**kwargs)

    def screen_msg_regex(self, where: Where, attrs: dict[str, str]) -> tuple[str, str]:
        find = attrs.get("find")
        if not find:
            raise self.error(where, "<screen_msg_regex> has no find")
        try:
            re.compile(perl_pattern(find))
        except re.error as exc:
            raise self.error(
                where, f"screen_msg_regex find={find!r} is not a valid regex: {exc}"
            ) from None
        return find, attrs.get("replace", "")

    def field_pair(
        self, where: Where, tag: str, attrs: dict[str, str], second: str
    ) -> tuple[str, str]:
        fid = attrs.get("field", "").strip()
        if not _FIELD_ID.fullmatch(fid):
            raise self.error(where, f"<{tag}> field={fid!r} must be a two-character SIP field id")
        value = attrs.get(second, "")
        if second == "code":
            value = value.strip()
        if not value.strip():
            raise self.error(where, f"<{tag}> has no {second}")
        return fid, value


# --------------------------------------------------------------------------------------------
# <login> attribute table: Koha name -> (Python name, converter)
# --------------------------------------------------------------------------------------------

_Converter = Callable[[ConfigBuilder, Where, str, str], Any]


def _raw(reader: ConfigBuilder, element: Where, name: str, value: str) -> str:
    return value


def _optional_text(reader: ConfigBuilder, element: Where, name: str, value: str) -> str | None:
    # Perl: an empty string is false, so it means "not set".
    return value if value.strip() else None


def _stripped_text(reader: ConfigBuilder, element: Where, name: str, value: str) -> str | None:
    return value.strip() or None


def _flag(reader: ConfigBuilder, element: Where, name: str, value: str) -> bool:
    return reader.perl_flag(element, name, value)


def _non_negative(reader: ConfigBuilder, element: Where, name: str, value: str) -> int:
    if not value.strip():
        return 0
    return reader.int_value(element, name, value, minimum=0)


def _optional_int(reader: ConfigBuilder, element: Where, name: str, value: str) -> int | None:
    if not value.strip():
        return None
    return reader.int_value(element, name, value, minimum=0)


def _lost_value(reader: ConfigBuilder, element: Where, name: str, value: str) -> int:
    if not value.strip():
        return 1
    return reader.int_value(element, name, value, minimum=0)


def _split_list(
    reader: ConfigBuilder, element: Where, name: str, value: str, separator: str
) -> frozenset[str]:
    return frozenset(item.strip() for item in value.split(separator) if item.strip())


def _field_list(reader: ConfigBuilder, element: Where, name: str, value: str) -> frozenset[str]:
    fields = _split_list(reader, element, name, value, ",")
    odd = sorted(fid for fid in fields if not _FIELD_ID.fullmatch(fid))
    if odd:
        reader.warn(element, f"{name}: {', '.join(map(repr, odd))} are not two-character field ids")
    return fields


def _allow_fields(
    reader: ConfigBuilder, element: Where, name: str, value: str
) -> frozenset[str] | None:
    if not value.strip():
        # Perl: an empty attribute is false, so no allow-list applies.
        return None
    return _field_list(reader, element, name, value)


def _comma_set(reader: ConfigBuilder, element: Where, name: str, value: str) -> frozenset[str]:
    return _split_list(reader, element, name, value, ",")


def _pipe_set(reader: ConfigBuilder, element: Where, name: str, value: str) -> frozenset[str]:
    return _split_list(reader, element, name, value, "|")


def _encoding(reader: ConfigBuilder, element: Where, name: str, value: str) -> str | None:
    text = value.strip()
    if not text:
        return None
    try:
        codecs.lookup(text)
    except LookupError:
        raise reader.error(
            element, f"encoding={value!r} is not a known character encoding"
        ) from None
    return text


def _terminator(reader: ConfigBuilder, element: Where, name: str, value: str) -> str:
    text = value.strip().upper()
    if text in ("CR", "CRLF"):
        return text
    if text:
        reader.warn(element, f'terminator="{value}" is neither CR nor CRLF; CRLF is used')
    return "CRLF"


def _delimiter(reader: ConfigBuilder, element: Where, name: str, value: str) -> str:
    return value or "|"


def _cr_item_field(reader: ConfigBuilder, element: Where, name: str, value: str) -> str:
    text = value.strip()
    if not text:
        return "collection_code"
    if not _IDENTIFIER.fullmatch(text):
        raise reader.error(element, f"cr_item_field={value!r} is not an item field name")
    return text


def _seen_action(reader: ConfigBuilder, element: Where, name: str, value: str) -> str | None:
    text = value.strip()
    if not text:
        return None
    if text not in ("mark_found", "keep_lost"):
        raise reader.error(
            element, f"seen_on_item_information={value!r}: use mark_found or keep_lost"
        )
    return text


def _convert_nonprinting(
    reader: ConfigBuilder, element: Where, name: str, value: str
) -> str | None:
    # Perl truthiness decides whether the replacement applies: "" and "0" do not.
    return value if perl_bool(value) else None


_LOGIN_ATTRIBUTES: dict[str, tuple[str, _Converter]] = {
    "id": ("id", _raw),
    "institution": ("institution", _raw),
    "password": ("password", _raw),
    "delimiter": ("delimiter", _delimiter),
    "error-detect": ("error_detect", _flag),
    "encoding": ("encoding", _encoding),
    "terminator": ("terminator", _terminator),
    "checked_in_ok": ("checked_in_ok", _flag),
    "cv_triggers_alert": ("cv_triggers_alert", _flag),
    "cv_send_00_on_success": ("cv_send_00_on_success", _flag),
    "ct_always_send": ("ct_always_send", _flag),
    "holds_block_checkin": ("holds_block_checkin", _flag),
    "holds_get_captured": ("holds_get_captured", _flag),
    "send_patron_home_library_in_af": ("send_patron_home_library_in_af", _flag),
    "patron_branchcode_in_ao": ("patron_branchcode_in_ao", _flag),
    "patron_restriction_blocks_inet": ("patron_restriction_blocks_inet", _flag),
    "allow_empty_passwords": ("allow_empty_passwords", _flag),
    "ae_field_template": ("ae_field_template", _optional_text),
    "da_field_template": ("da_field_template", _optional_text),
    "av_field_template": ("av_field_template", _optional_text),
    "hide_fields": ("hide_fields", _field_list),
    "allow_fields": ("allow_fields", _allow_fields),
    "register_id": ("register_id", _optional_int),
    "payment_type_writeoff": ("payment_type_writeoff", _stripped_text),
    "disallow_overpayment": ("disallow_overpayment", _flag),
    "lost_status_for_missing": ("lost_status_for_missing", _optional_int),
    "lost_block_checkout": ("lost_block_checkout", _non_negative),
    "lost_block_checkout_value": ("lost_block_checkout_value", _lost_value),
    "overdues_block_checkout": ("overdues_block_checkout", _flag),
    "prevcheckout_block_checkout": ("prevcheckout_block_checkout", _flag),
    "allow_additional_materials_checkout": ("allow_additional_materials_checkout", _flag),
    "blocked_item_types": ("blocked_item_types", _pipe_set),
    "inhouse_item_types": ("inhouse_item_types", _comma_set),
    "inhouse_patron_categories": ("inhouse_patron_categories", _comma_set),
    "format_due_date": ("format_due_date", _flag),
    "cr_item_field": ("cr_item_field", _cr_item_field),
    "seen_on_item_information": ("seen_on_item_information", _seen_action),
    "show_checkin_message": ("show_checkin_message", _flag),
    "show_outstanding_amount": ("show_outstanding_amount", _flag),
    "convert_nonprinting_characters": ("convert_nonprinting_characters", _convert_nonprinting),
    "client_certificate": ("client_certificate", _stripped_text),
}


if frozenset(_LOGIN_ATTRIBUTES) != reference.names("login"):  # pragma: no cover - table error
    raise ImportError(
        "<login> attributes differ between the reader and koha_gateway/config/reference.py: "
        f"{sorted(frozenset(_LOGIN_ATTRIBUTES) ^ reference.names('login'))}"
    )

#: Net::Server options of ``<server-params>``: accepted and not used.
NET_SERVER_OPTIONS = ConfigBuilder.NET_SERVER_OPTIONS


def load_sip_config(path: str | os.PathLike[str]) -> SIPConfig:
    """Read Koha's SIPconfig.xml at ``path`` (Koha ``C4/SIP/Sip/Configuration.pm``).

    Raises :class:`ConfigError` (``path:line: message``) for anything that must stop
    start-up; suspicious but harmless findings are in the result's ``warnings``.
    """
    spath = os.fspath(path)
    root = read_xml(spath)
    return ConfigBuilder(spath).read(root)
