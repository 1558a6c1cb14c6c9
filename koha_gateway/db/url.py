"""Database URLs: ``sqlite:///abs/path``, ``postgresql://user:pass@host:port/db?opts`` and
``mysql://user:pass@host:port/db?opts``.

``parse_url`` turns a URL into a :class:`DatabaseURL`; ``build_url`` does the reverse for
callers that hold the parts separately (Koha's ``koha-conf.xml``: ``<db_scheme>``,
``<hostname>``, ``<port>``, ``<database>``, ``<user>``, ``<pass>``). The password is kept out of
``repr()`` and out of :meth:`DatabaseURL.redacted`, which is what logs may show.

SQLite
    ``sqlite:///var/lib/koha-gateway/ils.sqlite`` (three slashes, then the absolute path; four
    slashes are accepted too), or ``sqlite:relative/path.sqlite`` (no slashes after the colon,
    resolved against the current directory when parsed). In-memory databases are refused: every
    pooled connection would see a different, empty database. Query options: ``busy_timeout``
    (milliseconds a writer waits for the write lock, default 10000), ``synchronous``
    (``normal``, the default, or ``full``) and ``inline_reads`` (``on``, the default, or
    ``off``: SIP messages that only read run on the reactor thread, see
    :class:`koha_gateway.db.engine.Database`; ``off`` sends them to the database threads).

PostgreSQL
    ``postgresql://`` or ``postgres://``. User, password and database are percent-decoded (a
    password containing ``@``, ``:``, ``/`` or ``%`` must be percent-encoded). An empty host uses
    libpq's default (the Unix socket); ``?host=/var/run/postgresql`` selects a socket directory.
    Query options are libpq connection keywords passed through unchanged (``sslmode``,
    ``sslrootcert``, ``connect_timeout``, ``application_name``, ...); unknown keywords are refused
    here rather than at the first connection. One option is the gateway's own: ``lock_timeout``
    (milliseconds a statement waits for a row lock, default 10000; 0 waits forever).

MariaDB / MySQL
    ``mysql://`` or ``mariadb://`` (Koha's own database: ``mysql://koha_lib1:pass@localhost/koha_lib1``).
    User, password and database are percent-decoded. As with libmysqlclient (and Koha's
    DBD::mysql), the host ``localhost`` or no host at all means the server's Unix socket at its
    compiled-in default path; ``?unix_socket=/run/mysqld/mysqld.sock`` names another socket. The
    port defaults to 3306. Query options: ``unix_socket``; ``connect_timeout``,
    ``read_timeout``, ``write_timeout`` (seconds; defaults 5, 30, 30: a dead server is noticed
    within these); ``lock_timeout`` (milliseconds a statement waits for a row lock, rounded up to
    whole seconds, default 10000); ``time_zone`` (the session time zone, as Koha's
    ``<timezone>``; by default the server's); ``ssl_ca``, ``ssl_cert``, ``ssl_key`` (TLS to the
    server, as Koha's ``<tls>yes</tls>`` with ``<ca>``, ``<cert>``, ``<key>``) and ``ssl=1``
    (TLS with the library's defaults).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote, unquote

__all__ = ["DatabaseURL", "InvalidDatabaseURL", "build_url", "parse_url"]


class InvalidDatabaseURL(ValueError):
    """The database URL cannot be used; the message never contains the password."""


# libpq connection keywords (PostgreSQL 15/16 "Parameter Key Words"), minus the ones the URL
# itself carries (user, password, dbname, port; host may also come from the query).
_LIBPQ_KEYWORDS = frozenset(
    [
        "host",
        "hostaddr",
        "passfile",
        "channel_binding",
        "connect_timeout",
        "client_encoding",
        "options",
        "application_name",
        "fallback_application_name",
        "keepalives",
        "keepalives_idle",
        "keepalives_interval",
        "keepalives_count",
        "tcp_user_timeout",
        "replication",
        "gssencmode",
        "sslmode",
        "requiressl",
        "sslcompression",
        "sslcert",
        "sslkey",
        "sslpassword",
        "sslrootcert",
        "sslcrl",
        "sslcrldir",
        "sslsni",
        "requirepeer",
        "ssl_min_protocol_version",
        "ssl_max_protocol_version",
        "krbsrvname",
        "gsslib",
        "service",
        "target_session_attrs",
        "load_balance_hosts",
        "require_auth",
    ]
)

_SQLITE_OPTIONS = frozenset({"busy_timeout", "synchronous", "inline_reads"})
_MYSQL_OPTIONS = frozenset(
    {
        "unix_socket",
        "connect_timeout",
        "read_timeout",
        "write_timeout",
        "lock_timeout",
        "time_zone",
        "ssl",
        "ssl_ca",
        "ssl_cert",
        "ssl_key",
    }
)
_MYSQL_NUMERIC_OPTIONS = frozenset(
    {"connect_timeout", "read_timeout", "write_timeout", "lock_timeout"}
)
_GATEWAY_PG_OPTIONS = frozenset({"lock_timeout"})


@dataclass(frozen=True)
class DatabaseURL:
    """A parsed database URL. ``engine`` is ``"sqlite"``, ``"postgresql"`` or ``"mysql"``."""

    engine: str
    database: str
    host: str | None = None
    port: int | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    options: tuple[tuple[str, str], ...] = ()

    def option(self, name: str, default: str | None = None) -> str | None:
        for key, value in self.options:
            if key == name:
                return value
        return default

    def redacted(self) -> str:
        """The URL with the password replaced by ``***``: safe for logs and error messages."""
        return self._render(mask=True)

    def render(self) -> str:
        """The full URL, password included (for handing to a child process, never for logs)."""
        return self._render(mask=False)

    def _render(self, *, mask: bool) -> str:
        options = list(self.options)
        host = self.host or ""
        if host.startswith("/") and self.engine == "postgresql":
            # A socket directory cannot sit in the netloc: it goes in the query.
            options.insert(0, ("host", host))
            host = ""
        query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in options)
        query = f"?{query}" if query else ""
        if self.engine == "sqlite":
            return f"sqlite://{quote(self.database, safe='/')}{query}"
        auth = ""
        if self.user is not None:
            auth = quote(self.user, safe="")
        if self.password is not None:
            auth += ":" + ("***" if mask else quote(self.password, safe=""))
        if auth:
            auth += "@"
        if ":" in host:
            host = f"[{host}]"
        else:
            host = quote(host, safe="")
        port = f":{self.port}" if self.port is not None else ""
        scheme = "mysql" if self.engine == "mysql" else "postgresql"
        return f"{scheme}://{auth}{host}{port}/{quote(self.database, safe='')}{query}"

    def __str__(self) -> str:
        return self.redacted()


def parse_url(url: str) -> DatabaseURL:
    """Parse a database URL (see the module docstring); raises :class:`InvalidDatabaseURL`."""
    if not isinstance(url, str) or not url.strip():
        raise InvalidDatabaseURL("empty database URL")
    url = url.strip()
    scheme, sep, rest = url.partition(":")
    scheme = scheme.lower()
    if not sep:
        raise InvalidDatabaseURL(
            "a database URL starts with sqlite:///, postgresql:// or mysql:// (got no scheme)"
        )
    if scheme == "sqlite":
        return _parse_sqlite(rest)
    if scheme in ("postgresql", "postgres"):
        return _parse_postgresql(rest)
    if scheme in ("mysql", "mariadb"):
        return _parse_mysql(rest)
    raise InvalidDatabaseURL(
        f"unsupported database scheme {scheme!r} (sqlite, postgresql or mysql)"
    )


def _split_query(rest: str) -> tuple[str, list[tuple[str, str]]]:
    if "#" in rest:
        rest = rest.split("#", 1)[0]
    path, _, query = rest.partition("?")
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError as exc:
        raise InvalidDatabaseURL(f"malformed query string in database URL: {exc}") from None
    return path, pairs


def _parse_sqlite(rest: str) -> DatabaseURL:
    path, pairs = _split_query(rest)
    if path.startswith("//"):
        netloc_and_path = path[2:]
        netloc, slash, tail = netloc_and_path.partition("/")
        if netloc not in ("", "localhost"):
            raise InvalidDatabaseURL("sqlite URLs name a local file: sqlite:///abs/path")
        path = "/" + tail.lstrip("/") if slash else ""
    path = unquote(path)
    if not path or path in (":memory:", "/:memory:") or "mode=memory" in path:
        raise InvalidDatabaseURL(
            "in-memory SQLite cannot be pooled (each connection would see another database); "
            "give a file: sqlite:///abs/path.sqlite"
        )
    if path.endswith("/"):
        raise InvalidDatabaseURL(f"sqlite path {path!r} names a directory, not a file")
    path = os.path.abspath(path)
    options = []
    for key, value in pairs:
        if key not in _SQLITE_OPTIONS:
            raise InvalidDatabaseURL(
                f"unknown sqlite option {key!r} (known: {', '.join(sorted(_SQLITE_OPTIONS))})"
            )
        if key == "busy_timeout" and not value.isdigit():
            raise InvalidDatabaseURL("sqlite busy_timeout is a number of milliseconds")
        if key == "synchronous" and value.lower() not in ("normal", "full"):
            raise InvalidDatabaseURL("sqlite synchronous is 'normal' or 'full'")
        if key == "inline_reads" and value.lower() not in ("on", "off"):
            raise InvalidDatabaseURL("sqlite inline_reads is 'on' or 'off'")
        options.append((key, value.lower() if key in ("synchronous", "inline_reads") else value))
    return DatabaseURL(engine="sqlite", database=path, options=tuple(options))


def _split_server_url(rest: str):
    """``//user:pass@host:port/db?k=v`` -> ``(user, password, host, port, database, pairs)``;
    ``database`` is ``None`` when the path names no single database."""
    body, pairs = _split_query(rest[2:])
    netloc, _, path = body.partition("/")
    userinfo, at, hostport = netloc.rpartition("@")
    if not at:
        userinfo, hostport = "", netloc
    user = password = None
    if userinfo:
        raw_user, colon, raw_password = userinfo.partition(":")
        user = unquote(raw_user) or None
        password = unquote(raw_password) if colon else None
    host, port = _split_hostport(hostport)
    database = unquote(path)
    if not database or "/" in path:
        database = None
    return user, password, host, port, database, pairs


def _parse_postgresql(rest: str) -> DatabaseURL:
    if not rest.startswith("//"):
        raise InvalidDatabaseURL("a PostgreSQL URL looks like postgresql://user:pass@host:port/db")
    user, password, host, port, database, pairs = _split_server_url(rest)
    if database is None:
        raise InvalidDatabaseURL("a PostgreSQL URL names the database: postgresql://.../dbname")
    options = []
    for key, value in pairs:
        if key in ("user", "password", "dbname", "port"):
            raise InvalidDatabaseURL(f"give {key!r} in the URL itself, not as ?{key}=")
        if key not in _LIBPQ_KEYWORDS and key not in _GATEWAY_PG_OPTIONS:
            raise InvalidDatabaseURL(f"unknown PostgreSQL connection option {key!r}")
        if key == "host":
            if host:
                raise InvalidDatabaseURL("the host is given twice (in the URL and as ?host=)")
            host = value
            continue
        if key == "lock_timeout" and not value.isdigit():
            raise InvalidDatabaseURL("lock_timeout is a number of milliseconds")
        options.append((key, value))
    return DatabaseURL(
        engine="postgresql",
        database=database,
        host=host or None,
        port=port,
        user=user,
        password=password,
        options=tuple(options),
    )


def _parse_mysql(rest: str) -> DatabaseURL:
    if not rest.startswith("//"):
        raise InvalidDatabaseURL("a MariaDB/MySQL URL looks like mysql://user:pass@host:port/db")
    user, password, host, port, database, pairs = _split_server_url(rest)
    if database is None:
        raise InvalidDatabaseURL("a MariaDB/MySQL URL names the database: mysql://.../dbname")
    options = []
    for key, value in pairs:
        if key not in _MYSQL_OPTIONS:
            raise InvalidDatabaseURL(
                f"unknown MariaDB/MySQL option {key!r} (known: {', '.join(sorted(_MYSQL_OPTIONS))})"
            )
        if key in _MYSQL_NUMERIC_OPTIONS and not value.isdigit():
            raise InvalidDatabaseURL(f"{key} is a whole number")
        if key == "unix_socket" and not value.startswith("/"):
            raise InvalidDatabaseURL("unix_socket is an absolute path")
        options.append((key, value))
    return DatabaseURL(
        engine="mysql",
        database=database,
        host=host or None,
        port=port,
        user=user,
        password=password,
        options=tuple(options),
    )


def _split_hostport(hostport: str) -> tuple[str | None, int | None]:
    if not hostport:
        return None, None
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise InvalidDatabaseURL("unterminated [IPv6] host in database URL")
        host, rest = hostport[1:end], hostport[end + 1 :]
        if rest and not rest.startswith(":"):
            raise InvalidDatabaseURL("malformed host:port in database URL")
        port_text = rest[1:] if rest else ""
    else:
        host, _, port_text = hostport.partition(":")
    host = unquote(host)
    if not port_text:
        return host or None, None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise InvalidDatabaseURL(f"bad port {port_text!r} in database URL")
    return host or None, int(port_text)


def build_url(
    scheme: str,
    database: str,
    *,
    host: str | None = None,
    port: int | str | None = None,
    user: str | None = None,
    password: str | None = None,
) -> str:
    """Build a URL from separate parts, quoting them; ``scheme`` may be Koha's ``Pg``/``mysql``.

    ``scheme``: ``sqlite`` (``database`` is a file path), ``postgresql`` / ``postgres`` / ``Pg``
    (Koha's ``<db_scheme>`` spelling) or ``mysql`` / ``mariadb``. For MySQL a ``host`` that is
    an absolute path is the server's Unix socket.
    """
    key = (scheme or "").strip().lower()
    if key == "sqlite":
        if not database:
            raise InvalidDatabaseURL("sqlite needs a database file path")
        return "sqlite://" + quote(os.path.abspath(database), safe="/")
    if key in ("pg", "postgres", "postgresql", "mysql", "mariadb"):
        engine = "mysql" if key in ("mysql", "mariadb") else "postgresql"
        options: tuple[tuple[str, str], ...] = ()
        if engine == "mysql" and host and host.startswith("/"):
            options, host = (("unix_socket", host),), None
        port_text = str(port).strip() if port is not None else ""
        if port_text and (not port_text.isdigit() or not 0 < int(port_text) < 65536):
            raise InvalidDatabaseURL(f"bad port {port_text!r}")
        parsed = DatabaseURL(
            engine=engine,
            database=database,
            host=host or None,
            port=int(port_text) if port_text else None,
            user=user or None,
            password=password if password not in (None, "") else None,
            options=options,
        )
        if not database:
            raise InvalidDatabaseURL("the database name is missing")
        return parsed.render()
    raise InvalidDatabaseURL(f"unsupported db_scheme {scheme!r} (mysql, Pg or sqlite)")
