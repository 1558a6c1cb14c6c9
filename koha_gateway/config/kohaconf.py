"""Koha's koha-conf.xml: the database connection and the LDAP switch.

Koha's layout is a ``<yazgfs>`` root with a ``<config>`` child holding ``db_scheme``,
``database``, ``hostname``, ``port``, ``user``, ``pass``, ``useldapserver`` and the
``<ldapserver>`` section (read by :mod:`koha_gateway.config.ldap`). A document whose root is
``<config>`` itself is accepted too.

Koha runs on MariaDB/MySQL; this server runs on PostgreSQL (``Pg``) or SQLite, so ``mysql``
is refused with a clear message. The database password never appears in an error message or
a ``repr``.
"""

from __future__ import annotations

import importlib
import ipaddress
import os
import re
from dataclasses import dataclass
from urllib.parse import quote

from lxml import etree

from koha_gateway.config import reference
from koha_gateway.config.errors import ConfigError, local_name, read_xml

__all__ = ["KohaConf", "load_koha_conf"]

_SCHEMES = {
    "pg": "postgresql",
    "postgres": "postgresql",
    "postgresql": "postgresql",
    "sqlite": "sqlite",
    "sqlite3": "sqlite",
}
_MYSQL = frozenset({"mysql", "mariadb"})
_MYSQL_MESSAGE = "MariaDB/MySQL is not supported; use Pg or sqlite"
_DIGITS = re.compile(r"[0-9]+")


@dataclass(frozen=True)
class KohaConf:
    """The parts of koha-conf.xml this server uses.

    ``db_scheme`` is ``"postgresql"`` or ``"sqlite"`` (Koha's ``Pg`` is normalised).
    ``database`` is the database name, or for SQLite the absolute path of the database file
    (relative paths were resolved against the directory of koha-conf.xml). ``port`` is
    ``None`` when not set. ``use_ldap`` is ``<useldapserver>`` (Perl truthiness, as Koha);
    ``ldap`` is what :func:`koha_gateway.config.ldap.parse_ldap` returned, or ``None``.
    """

    path: str
    db_scheme: str
    database: str
    hostname: str = "localhost"
    port: int | None = None
    user: str = ""
    password: str = ""
    use_ldap: bool = False
    ldap: object | None = None
    admin_port: int | None = None

    def __repr__(self) -> str:
        return (
            f"KohaConf(path={self.path!r}, db_scheme={self.db_scheme!r}, "
            f"database={self.database!r}, hostname={self.hostname!r}, port={self.port!r}, "
            f"user={self.user!r}, password={'***' if self.password else ''!r}, "
            f"use_ldap={self.use_ldap!r}, ldap={self.ldap!r})"
        )

    @property
    def database_url(self) -> str:
        """Connection URL for :meth:`koha_gateway.db.engine.Database.from_url`.

        ``sqlite://`` followed by the absolute, percent-encoded path (``sqlite:///var/lib/x.db``),
        or ``postgresql://user:password@host:port/database`` with user, password and
        database percent-encoded. A ``hostname`` that is a directory (a Unix socket
        directory such as ``/var/run/postgresql``) goes into the ``host`` query parameter,
        as libpq expects. Contains the password: log :attr:`display_url` instead.
        """
        return self._url(mask=False)

    @property
    def display_url(self) -> str:
        """:attr:`database_url` with the password replaced by ``***`` (safe to log)."""
        return self._url(mask=True)

    def _url(self, *, mask: bool) -> str:
        if self.db_scheme == "sqlite":
            return "sqlite://" + quote(self.database, safe="/")
        userinfo = ""
        if self.user:
            userinfo = quote(self.user, safe="")
            if self.password:
                userinfo += ":" + ("***" if mask else quote(self.password, safe=""))
            userinfo += "@"
        host = self.hostname
        query = ""
        if host.startswith("/"):
            query = "?host=" + quote(host, safe="")
            host = ""
        elif ":" in host:
            host = f"[{host}]"
        # With a socket directory the netloc keeps only the port (libpq: "user@:5433/db").
        port = f":{self.port}" if self.port is not None else ""
        database = quote(self.database, safe="")
        return f"postgresql://{userinfo}{host}{port}/{database}{query}"


def _find_config(root: etree._Element, path: str) -> etree._Element:
    if local_name(root) == "config":
        return root
    for child in root:
        if local_name(child) == "config":
            return child
    raise ConfigError(
        f"no <config> section (root element is <{local_name(root)}>)", path, root.sourceline
    )


def load_koha_conf(path: str | os.PathLike[str]) -> KohaConf:
    """Read koha-conf.xml at ``path`` (Koha's ``Koha/Config.pm`` layout; the LDAP
    switch as ``C4/Auth.pm`` reads it).

    Raises :class:`ConfigError` (``path:line: message``) for an unsupported ``db_scheme``
    (MariaDB/MySQL, Koha's default when ``db_scheme`` is missing), a missing ``database``,
    a bad ``port`` or a malformed document. The ``<config>`` element is handed to
    ``koha_gateway.config.ldap.parse_ldap(config, path, use_ldap)`` for ``<ldapserver>``.
    """
    spath = os.fspath(path)
    root = read_xml(spath)
    config = _find_config(root, spath)

    elements: dict[str, etree._Element] = {}
    for child in config:
        name = local_name(child)
        if name is not None and name not in elements:
            elements[name] = child

    known = reference.names("koha-conf")

    def text(name: str) -> str | None:
        if name not in known:  # pragma: no cover - the table in reference.py lacks it
            raise KeyError(f"<{name}> is read but not in koha_gateway/config/reference.py")
        element = elements.get(name)
        if element is None:
            return None
        return element.text or ""

    scheme_element = elements.get("db_scheme")
    scheme_raw = (text("db_scheme") or "").strip()
    if not scheme_raw:
        raise ConfigError(
            f"<db_scheme> is missing (Koha then uses MySQL); {_MYSQL_MESSAGE}",
            spath,
            config.sourceline,
        )
    if scheme_raw.lower() in _MYSQL:
        raise ConfigError(_MYSQL_MESSAGE, spath, scheme_element.sourceline)
    scheme = _SCHEMES.get(scheme_raw.lower())
    if scheme is None:
        raise ConfigError(
            f"unknown db_scheme {scheme_raw!r}; use Pg or sqlite", spath, scheme_element.sourceline
        )

    database = (text("database") or "").strip()
    if not database:
        line = elements["database"].sourceline if "database" in elements else config.sourceline
        raise ConfigError("<database> is missing or empty", spath, line)
    if scheme == "sqlite":
        base = os.path.dirname(os.path.abspath(spath))
        database = os.path.normpath(os.path.join(base, os.path.expanduser(database)))

    hostname = (text("hostname") or "").strip() or "localhost"
    if not hostname.startswith("/") and ":" in hostname:
        try:
            hostname = str(ipaddress.IPv6Address(hostname.strip("[]")))
        except ValueError:
            raise ConfigError(
                f"hostname {hostname!r} is not a host name or address",
                spath,
                elements["hostname"].sourceline,
            ) from None

    port: int | None = None
    port_raw = (text("port") or "").strip()
    if port_raw:
        if not _DIGITS.fullmatch(port_raw) or not 1 <= int(port_raw) <= 65535:
            raise ConfigError(
                f"bad port {port_raw!r}: must be 1..65535", spath, elements["port"].sourceline
            )
        port = int(port_raw)

    user = (text("user") or "").strip()
    # The password is taken exactly as written (Koha does not trim it either).
    password = text("pass") or ""

    # The gateway's own element: the port of its HTTP admin listener (metrics, health).
    admin_port: int | None = None
    admin_port_raw = (text("admin_port") or "").strip()
    if admin_port_raw:
        if not _DIGITS.fullmatch(admin_port_raw) or not 1 <= int(admin_port_raw) <= 65535:
            raise ConfigError(
                f"bad admin_port {admin_port_raw!r}: must be 1..65535",
                spath,
                elements["admin_port"].sourceline,
            )
        admin_port = int(admin_port_raw)

    use_ldap_raw = (text("useldapserver") or "").strip()
    use_ldap = use_ldap_raw not in ("", "0")

    # parse_ldap gets the <config> element itself: Debian's koha-conf.xml has other <config>
    # elements (inside <server>) before it, so the document root would be ambiguous.
    ldap = _load_ldap(config, spath, use_ldap, elements.get("useldapserver"))

    return KohaConf(
        path=spath,
        db_scheme=scheme,
        database=database,
        hostname=hostname,
        port=port,
        user=user,
        password=password,
        use_ldap=use_ldap,
        ldap=ldap,
        admin_port=admin_port,
    )


def _load_ldap(
    config: etree._Element, path: str, use_ldap: bool, switch: etree._Element | None
) -> object | None:
    """Hand ``<config>`` to ``koha_gateway.config.ldap.parse_ldap`` (imported here, lazily)."""
    try:
        module = importlib.import_module("koha_gateway.config.ldap")
    except ModuleNotFoundError as exc:
        if exc.name != "koha_gateway.config.ldap":
            raise
        if use_ldap:
            raise ConfigError(
                "<useldapserver> is on but this installation has no LDAP support "
                "(koha_gateway.config.ldap is missing)",
                path,
                switch.sourceline if switch is not None else None,
            ) from None
        return None
    return module.parse_ldap(config, path, use_ldap)
