"""The ``<ldapserver>`` section of Koha's koha-conf.xml (``C4/Auth_with_ldap.pm``).

Koha reads ``<useldapserver>1</useldapserver>`` and ``<ldapserver id="ldapserver">`` from the
``<config>`` element of koha-conf.xml. Every element Koha knows is read here with Koha's
defaults; the gateway adds optional elements for TLS, timeouts and pooling (see docs/ldap.md):

===================== ========= ==========================================================
element               default   meaning
===================== ========= ==========================================================
hostname              required  comma-separated hosts or ``ldap://`` / ``ldaps://`` URIs
base                  required  search base (subtree)
user, pass            none      service DN and password used for searching
anonymous_bind        1         search anonymously (Koha's current default)
auth_by_bind          0         authenticate by binding as the user
principal_name        none      printf format for the bind name (``%s@example.org``)
replicate             1         create an unknown patron after a successful bind
update                1         sync mapped fields into the patron at each bind
update_password       1         store a bcrypt hash of the LDAP password locally
welcome               0         read for compatibility; the gateway sends no notices
mapping               required  ``<column is="ldapattr">default</column>``, userid needed
categorycode_mapping  none      ``<categorycode value="ldapvalue">CAT</categorycode>``
start_tls             0         StartTLS on ``ldap://`` hosts
ca_file               none      PEM CA bundle for ldaps/StartTLS (system CAs otherwise)
verify                1         verify the server certificate and its name
tls_name              none      name expected in the server certificate (default: host)
connect_timeout       5         seconds to open a connection to one host
response_timeout      10        seconds to wait for one LDAP answer
pool_size             4         threads running LDAP operations
cache_minutes         5         minutes a successful bind is remembered (0: never)
grant_circulate       0         give replicated patrons the circulate permission
===================== ========= ==========================================================
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from lxml import etree

from koha_gateway.config import reference
from koha_gateway.config.errors import ConfigError

__all__ = ["LdapConfig", "LdapHost", "parse_host", "parse_ldap"]

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ATTRIBUTE = re.compile(r"^(?:[A-Za-z][A-Za-z0-9-]*|[0-9]+(?:\.[0-9]+)*)(?:;[A-Za-z0-9-]+)*$")
_TRUE = {"1", "yes", "true", "on"}
_FALSE = {"0", "no", "false", "off", ""}

# Elements understood inside <ldapserver> (koha_gateway/config/reference.py); anything else is
# reported as a likely typo.
_KNOWN = reference.names("ldapserver")


@dataclass(frozen=True)
class LdapHost:
    """One entry of ``hostname``: scheme, host and port (389 for ldap, 636 for ldaps)."""

    use_ssl: bool
    host: str
    port: int

    @property
    def url(self) -> str:
        scheme = "ldaps" if self.use_ssl else "ldap"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"


def parse_host(text: str) -> LdapHost:
    """Parse one ``hostname`` entry: ``host``, ``host:port``, ``ldap://h[:p]``, ``ldaps://h[:p]``.

    Raises ValueError with a readable message for anything else.
    """
    text = text.strip()
    if not text:
        raise ValueError("empty host name")
    if "://" not in text:
        text = "ldap://" + text
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in ("ldap", "ldaps"):
        raise ValueError(f"unsupported scheme {parts.scheme!r} (use ldap:// or ldaps://)")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"unexpected path or query in {text!r}")
    if parts.username or parts.password:
        raise ValueError("credentials do not belong in hostname (use <user> and <pass>)")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"bad port in {text!r}") from exc
    if not parts.hostname:
        raise ValueError(f"no host in {text!r}")
    use_ssl = scheme == "ldaps"
    return LdapHost(use_ssl, parts.hostname, port or (636 if use_ssl else 389))


@dataclass(frozen=True)
class LdapConfig:
    """Settings of ``<ldapserver>`` (koha-sip-and-ldap §6.2 plus the gateway's own elements).

    ``mapping`` maps a borrowers column or an extended patron attribute code to
    ``(ldap attribute or None, default or None)``. ``categorycode_mapping`` maps an LDAP value
    to a Koha category; ``categorycode_default`` is the ``default`` attribute of
    ``<categorycode_mapping>``. ``password`` (Koha's ``<pass>``) never appears in ``repr``.
    """

    hosts: tuple[str, ...]
    base: str
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    anonymous_bind: bool = True
    auth_by_bind: bool = False
    principal_name: str | None = None
    replicate: bool = True
    update: bool = True
    update_password: bool = True
    welcome: bool = False
    mapping: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    categorycode_mapping: dict[str, str] = field(default_factory=dict)
    categorycode_default: str | None = None
    start_tls: bool = False
    ca_file: str | None = None
    verify: bool = True
    tls_name: str | None = None
    connect_timeout: float = 5.0
    response_timeout: float = 10.0
    pool_size: int = 4
    cache_minutes: float = 5.0
    grant_circulate: bool = False
    ldap_id: str | None = None
    path: str | None = field(default=None, compare=False)
    line: int | None = field(default=None, compare=False)

    def __repr__(self) -> str:
        shown = "None" if self.password is None else "'***'"
        return (
            f"LdapConfig(hosts={self.hosts!r}, base={self.base!r}, user={self.user!r}, "
            f"password={shown}, anonymous_bind={self.anonymous_bind}, "
            f"auth_by_bind={self.auth_by_bind}, principal_name={self.principal_name!r}, "
            f"replicate={self.replicate}, update={self.update}, "
            f"update_password={self.update_password}, mapping={self.mapping!r}, "
            f"categorycode_mapping={self.categorycode_mapping!r}, "
            f"categorycode_default={self.categorycode_default!r}, start_tls={self.start_tls}, "
            f"ca_file={self.ca_file!r}, verify={self.verify}, "
            f"connect_timeout={self.connect_timeout}, "
            f"response_timeout={self.response_timeout}, pool_size={self.pool_size}, "
            f"cache_minutes={self.cache_minutes}, grant_circulate={self.grant_circulate})"
        )

    __str__ = __repr__

    def __hash__(self) -> int:
        # The mappings are dicts; hash their items so that a KohaConf holding this stays hashable.
        return hash(
            (
                self.hosts,
                self.base,
                self.user,
                self.auth_by_bind,
                tuple(self.mapping.items()),
                tuple(self.categorycode_mapping.items()),
            )
        )

    @property
    def servers(self) -> tuple[LdapHost, ...]:
        """``hosts`` parsed into scheme, host and port (validated when the file was read)."""
        return tuple(parse_host(h) for h in self.hosts)

    @property
    def userid_attribute(self) -> str:
        """The LDAP attribute holding the login name (``<userid is="...">``)."""
        attribute = self.mapping["userid"][0]
        assert attribute is not None  # checked by parse_ldap
        return attribute


def _text(element: etree._Element) -> str:
    return (element.text or "").strip()


def _children(element: etree._Element) -> list[etree._Element]:
    return [c for c in element if isinstance(c.tag, str)]


def _name(element: etree._Element) -> str:
    return etree.QName(element).localname


def parse_ldap(root: etree._Element, path: str, use_ldap: bool) -> LdapConfig | None:
    """Read ``<ldapserver>`` below ``<config>`` of koha-conf.xml (koha-sip-and-ldap §6.1, §6.2).

    Returns None when ``use_ldap`` is false (Koha ignores the section then). With
    ``use_ldap`` true a missing section, a missing ``hostname``/``base``/``userid`` mapping
    or a malformed value raises :class:`ConfigError` naming the file and line.
    """
    if not use_ldap:
        return None
    config = root if _name(root) == "config" else None
    if config is None:
        found = [e for e in root.iter() if isinstance(e.tag, str) and _name(e) == "config"]
        config = found[0] if found else root
    sections = [e for e in config.iter() if isinstance(e.tag, str) and _name(e) == "ldapserver"]
    if not sections:
        raise ConfigError(
            "useldapserver is 1 but there is no <ldapserver> in <config>",
            path,
            getattr(config, "sourceline", None),
        )
    if len(sections) > 1:
        raise ConfigError(
            "more than one <ldapserver> element; Koha uses a single one",
            path,
            sections[1].sourceline,
        )
    return _parse_section(sections[0], path)


def _parse_section(section: etree._Element, path: str) -> LdapConfig:
    elements: dict[str, etree._Element] = {}
    for child in _children(section):
        name = _name(child)
        if name not in _KNOWN:
            raise ConfigError(f"unknown element <{name}> in <ldapserver>", path, child.sourceline)
        if name in elements:
            raise ConfigError(f"<{name}> given twice in <ldapserver>", path, child.sourceline)
        elements[name] = child

    def text(name: str) -> str | None:
        element = elements.get(name)
        return None if element is None else _text(element)

    def line(name: str) -> int | None:
        element = elements.get(name)
        return section.sourceline if element is None else element.sourceline

    def flag(name: str, default: bool) -> bool:
        value = text(name)
        if value is None:
            return default
        lowered = value.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ConfigError(f"<{name}> must be 0 or 1, not {value!r}", path, line(name))

    def number(name: str, default: float, *, minimum: float, integer: bool = False) -> float:
        value = text(name)
        if value is None or value == "":
            return default
        try:
            parsed = int(value) if integer else float(value)
        except ValueError:
            kind = "a whole number" if integer else "a number"
            raise ConfigError(f"<{name}> must be {kind}, not {value!r}", path, line(name)) from None
        if parsed != parsed or parsed < minimum or parsed == float("inf"):
            raise ConfigError(f"<{name}> must be at least {minimum}", path, line(name))
        return parsed

    def optional(name: str) -> str | None:
        value = text(name)
        return value or None

    hostname = text("hostname")
    if not hostname:
        raise ConfigError('No ldapserver "hostname" defined', path, line("hostname"))
    hosts: list[str] = []
    for entry in hostname.split(","):
        try:
            parse_host(entry)
        except ValueError as exc:
            raise ConfigError(f"<hostname>: {exc}", path, line("hostname")) from None
        hosts.append(entry.strip())

    base = text("base")
    if not base:
        raise ConfigError('No ldapserver "base" defined', path, line("base"))

    principal_name = optional("principal_name")
    if principal_name and "%" in principal_name:
        try:
            principal_name % "user"
        except (TypeError, ValueError):
            raise ConfigError(
                "<principal_name> must contain one %s (for example %s@example.org)",
                path,
                line("principal_name"),
            ) from None

    mapping = _parse_mapping(elements.get("mapping"), path, section.sourceline)
    categories, category_default = _parse_categories(elements.get("categorycode_mapping"), path)

    ca_file = optional("ca_file")
    if ca_file is not None:
        ca_path = (
            ca_file if os.path.isabs(ca_file) else os.path.join(os.path.dirname(path), ca_file)
        )
        if not os.path.isfile(ca_path):
            raise ConfigError(
                f"<ca_file> {ca_file!r} is not a readable file", path, line("ca_file")
            )
        ca_file = os.path.abspath(ca_path)

    user = optional("user")
    password = text("pass")
    start_tls = flag("start_tls", False)

    return LdapConfig(
        hosts=tuple(hosts),
        base=base,
        user=user,
        password=password if password else None,
        anonymous_bind=flag("anonymous_bind", True),
        auth_by_bind=flag("auth_by_bind", False),
        principal_name=principal_name,
        replicate=flag("replicate", True),
        update=flag("update", True),
        update_password=flag("update_password", True),
        welcome=flag("welcome", False),
        mapping=mapping,
        categorycode_mapping=categories,
        categorycode_default=category_default,
        start_tls=start_tls,
        ca_file=ca_file,
        verify=flag("verify", True),
        tls_name=optional("tls_name"),
        connect_timeout=number("connect_timeout", 5.0, minimum=0.1),
        response_timeout=number("response_timeout", 10.0, minimum=0.1),
        pool_size=int(number("pool_size", 4, minimum=1, integer=True)),
        cache_minutes=number("cache_minutes", 5.0, minimum=0),
        grant_circulate=flag("grant_circulate", False),
        ldap_id=section.get("id"),
        path=path,
        line=section.sourceline,
    )


def _parse_mapping(
    element: etree._Element | None, path: str, section_line: int | None
) -> dict[str, tuple[str | None, str | None]]:
    if element is None:
        raise ConfigError(
            "<ldapserver> has no <mapping> (at least <userid is=...> is needed)",
            path,
            section_line,
        )
    mapping: dict[str, tuple[str | None, str | None]] = {}
    for child in _children(element):
        column = _name(child)
        if not _IDENTIFIER.match(column):
            raise ConfigError(f"bad mapping column name {column!r}", path, child.sourceline)
        if column in mapping:
            raise ConfigError(f"<{column}> mapped twice", path, child.sourceline)
        attribute = (child.get("is") or "").strip() or None
        if attribute is not None and not _ATTRIBUTE.match(attribute):
            raise ConfigError(
                f"<{column} is={attribute!r}>: not an LDAP attribute name", path, child.sourceline
            )
        default = _text(child)
        mapping[column] = (attribute, default if default else None)
    if "userid" not in mapping or mapping["userid"][0] is None:
        raise ConfigError(
            '<mapping> needs <userid is="ldapattribute"> (the login name attribute, e.g. uid)',
            path,
            element.sourceline,
        )
    return mapping


def _parse_categories(
    element: etree._Element | None, path: str
) -> tuple[dict[str, str], str | None]:
    if element is None:
        return {}, None
    default = (element.get("default") or "").strip() or None
    categories: dict[str, str] = {}
    for child in _children(element):
        if _name(child) != "categorycode":
            raise ConfigError(
                f"<categorycode_mapping> may only hold <categorycode>, not <{_name(child)}>",
                path,
                child.sourceline,
            )
        value = child.get("value")
        category = _text(child)
        if value is None or not category:
            raise ConfigError(
                '<categorycode value="ldapvalue">CATEGORY</categorycode> needs both parts',
                path,
                child.sourceline,
            )
        categories[value] = category
    return categories, default
