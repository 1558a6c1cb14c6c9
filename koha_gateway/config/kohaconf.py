"""Koha's koha-conf.xml: the database connection and the LDAP switch.

Koha's layout is a ``<yazgfs>`` root with a ``<config>`` child holding ``db_scheme``,
``database``, ``hostname``, ``port``, ``user``, ``pass``, ``useldapserver`` and the
``<ldapserver>`` section (read by :mod:`koha_gateway.config.ldap`). A document whose root is
``<config>`` itself is accepted too.

The database is chosen as Koha's ``Koha::Database`` chooses it: ``<db_scheme>`` ``mysql``, or
missing or empty, means MariaDB/MySQL (Koha's own database) at ``<hostname>`` (``localhost``,
or no hostname, means the server's Unix socket, as for libmysqlclient) and ``<port>`` (default
3306), with ``<tls>yes</tls>`` and ``<ca>``, ``<cert>``, ``<key>`` for TLS, and the session time
zone from ``<timezone>`` or else the ``TZ`` environment variable (``local`` or neither: the
server's). ``Pg`` means PostgreSQL; ``sqlite`` (not Koha's) an embedded SQLite file. Koha
takes any other value for mysql; this server refuses it as a likely typo. The database
password never appears in an error message or a ``repr``.

``<log4perl_conf>`` names Koha's log4perl.conf, whose ``sip`` level sets the gateway's SIP log
level when ``--log-level`` is not given (:mod:`koha_gateway.config.log4perl`); only the path is
kept here (relative to the directory of koha-conf.xml), the file is read when the service is
made, and again on a reload.

``load_koha_conf(path, require_database=False)`` (``--database`` given) reads the file for the
rest (LDAP) and does not judge its database part.
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

__all__ = ["KohaConf", "koha_timezone", "load_koha_conf"]

_SCHEMES = {
    "": "mysql",
    "mysql": "mysql",
    "mariadb": "mysql",
    "pg": "postgresql",
    "postgres": "postgresql",
    "postgresql": "postgresql",
    "sqlite": "sqlite",
    "sqlite3": "sqlite",
}
_DIGITS = re.compile(r"[0-9]+")


def koha_timezone(configured: str | None, environ=None) -> str | None:
    """The session time zone as Koha's ``Koha::Config->timezone``: ``<timezone>``, else the
    ``TZ`` environment variable; ``None`` (the server's own) for ``local``, nothing, or a name
    that is not a time zone (Koha warns and uses ``local``)."""
    env = os.environ if environ is None else environ
    name = (configured or "").strip() or (env.get("TZ") or "").strip()
    if not name or name == "local":
        return None
    from zoneinfo import ZoneInfo

    try:
        ZoneInfo(name)
    except (ValueError, OSError, LookupError):
        return None
    return name


@dataclass(frozen=True)
class KohaConf:
    """The parts of koha-conf.xml this server uses.

    ``db_scheme`` is ``"mysql"``, ``"postgresql"`` or ``"sqlite"`` (Koha's ``Pg`` and empty
    scheme are normalised). ``database`` is the database name, or for SQLite the absolute path
    of the database file (relative paths were resolved against the directory of
    koha-conf.xml); empty when the file was read with ``require_database=False`` and has none.
    ``port`` is ``None`` when not set. ``tls`` is ``<tls>yes</tls>`` with ``ca``, ``cert``,
    ``key``; ``timezone`` the session time zone (:func:`koha_timezone`, ``None`` = the
    server's). ``use_ldap`` is ``<useldapserver>`` (Perl truthiness, as Koha); ``ldap`` is what
    :func:`koha_gateway.config.ldap.parse_ldap` returned, or ``None``. ``log4perl_conf`` is the
    absolute path of ``<log4perl_conf>``, or ``None`` when it is missing or empty.
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
    tls: bool = False
    ca: str = ""
    cert: str = ""
    key: str = ""
    timezone: str | None = None
    admin_port: int | None = None
    log4perl_conf: str | None = None

    def __repr__(self) -> str:
        return (
            f"KohaConf(path={self.path!r}, db_scheme={self.db_scheme!r}, "
            f"database={self.database!r}, hostname={self.hostname!r}, port={self.port!r}, "
            f"user={self.user!r}, password={'***' if self.password else ''!r}, "
            f"tls={self.tls!r}, timezone={self.timezone!r}, "
            f"use_ldap={self.use_ldap!r}, ldap={self.ldap!r})"
        )

    @property
    def database_url(self) -> str:
        """Connection URL for :meth:`koha_gateway.db.engine.Database.from_url`.

        ``sqlite://`` followed by the absolute, percent-encoded path (``sqlite:///var/lib/x.db``),
        ``postgresql://user:password@host:port/database`` or
        ``mysql://user:password@host:port/database`` with user, password and database
        percent-encoded. A PostgreSQL ``hostname`` that is a directory (a Unix socket
        directory such as ``/var/run/postgresql``) goes into the ``host`` query parameter,
        as libpq expects; a MySQL one that is a path is the socket (``?unix_socket=``). For
        MySQL, ``<tls>yes</tls>`` adds ``ssl_ca``/``ssl_cert``/``ssl_key`` (``ssl=1`` without
        them) and the time zone ``time_zone``. Contains the password: log :attr:`display_url`
        instead.
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
        else:
            host = quote(host, safe="")
        # With a socket directory the netloc keeps only the port (libpq: "user@:5433/db").
        port = f":{self.port}" if self.port is not None else ""
        database = quote(self.database, safe="")
        if self.db_scheme == "mysql":
            options = []
            if query:
                options.append(("unix_socket", self.hostname))
                host = "localhost"
            if self.tls:
                tls = [
                    (f"ssl_{k}", v)
                    for k, v in (("ca", self.ca), ("cert", self.cert), ("key", self.key))
                    if v
                ]
                options += tls or [("ssl", "1")]
            if self.timezone:
                options.append(("time_zone", self.timezone))
            query = "&".join(f"{k}={quote(v, safe='')}" for k, v in options)
            query = f"?{query}" if query else ""
            return f"mysql://{userinfo}{host}{port}/{database}{query}"
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


def load_koha_conf(
    path: str | os.PathLike[str], *, require_database: bool = True, environ=None
) -> KohaConf:
    """Read koha-conf.xml at ``path`` (Koha's ``Koha/Config.pm`` layout and
    ``Koha::Database``'s reading of the database part; the LDAP switch as ``C4/Auth.pm``
    reads it).

    Raises :class:`ConfigError` (``path:line: message``) for an unknown ``db_scheme``, a
    missing ``database``, a bad ``port`` or a malformed document; with
    ``require_database=False`` (the database comes from elsewhere) the database part is not
    checked. ``environ`` (default ``os.environ``) supplies ``TZ``. The ``<config>`` element is
    handed to ``koha_gateway.config.ldap.parse_ldap(config, path, use_ldap)`` for
    ``<ldapserver>``.
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

    # Koha's log4perl.conf (Koha::Logger): its sip level is the default --log-level.
    log4perl_conf = (text("log4perl_conf") or "").strip() or None
    if log4perl_conf is not None:
        base = os.path.dirname(os.path.abspath(spath))
        log4perl_conf = os.path.normpath(os.path.join(base, os.path.expanduser(log4perl_conf)))

    use_ldap_raw = (text("useldapserver") or "").strip()
    use_ldap = use_ldap_raw not in ("", "0")
    # parse_ldap gets the <config> element itself: Debian's koha-conf.xml has other <config>
    # elements (inside <server>) before it, so the document root would be ambiguous.
    ldap = _load_ldap(config, spath, use_ldap, elements.get("useldapserver"))

    try:
        database_part = _database_part(spath, config, elements, text, environ)
    except ConfigError:
        if require_database:
            raise
        database_part = {"db_scheme": "", "database": ""}
    return KohaConf(
        path=spath,
        use_ldap=use_ldap,
        ldap=ldap,
        admin_port=admin_port,
        log4perl_conf=log4perl_conf,
        **database_part,
    )


def _database_part(spath, config, elements, text, environ) -> dict:
    scheme_element = elements.get("db_scheme")
    scheme_raw = (text("db_scheme") or "").strip()
    scheme = _SCHEMES.get(scheme_raw.lower())
    if scheme is None:
        raise ConfigError(
            f"unknown db_scheme {scheme_raw!r}; use mysql, Pg or sqlite",
            spath,
            scheme_element.sourceline,
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

    # Koha::Database: TLS only when <tls> is exactly "yes"; the time zone as Koha::Config.
    tls = (text("tls") or "").strip() == "yes"
    return {
        "db_scheme": scheme,
        "database": database,
        "hostname": hostname,
        "port": port,
        "user": user,
        "password": password,
        "tls": tls,
        "ca": (text("ca") or "").strip() if tls else "",
        "cert": (text("cert") or "").strip() if tls else "",
        "key": (text("key") or "").strip() if tls else "",
        "timezone": koha_timezone(text("timezone"), environ) if scheme == "mysql" else None,
    }


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
