"""Database URLs (koha_gateway.db.url): parsing, refusals, redaction, Koha's koha-conf parts."""

from __future__ import annotations

import os

import pytest

from koha_gateway.db import Database
from koha_gateway.db.url import InvalidDatabaseURL, build_url, parse_url


def test_sqlite_absolute_path_three_and_four_slashes():
    assert parse_url("sqlite:///var/lib/kgw/ils.sqlite").database == "/var/lib/kgw/ils.sqlite"
    assert parse_url("sqlite:////var/lib/kgw/ils.sqlite").database == "/var/lib/kgw/ils.sqlite"
    assert parse_url("SQLITE:///a%20b/c.sqlite").database == "/a b/c.sqlite"


def test_sqlite_relative_path_resolved_against_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert parse_url("sqlite:var/demo.sqlite").database == os.path.join(
        str(tmp_path), "var", "demo.sqlite"
    )


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///:memory:",
        "sqlite://",
        "sqlite:///",
        "sqlite::memory:",
        "sqlite:///file:x?mode=memory",
        "sqlite://remotehost/x.sqlite",
        "sqlite:///tmp/dir/",
    ],
)
def test_sqlite_urls_that_cannot_be_pooled_are_refused(url):
    with pytest.raises(InvalidDatabaseURL):
        parse_url(url)


def test_sqlite_options():
    url = parse_url("sqlite:///x.sqlite?busy_timeout=2500&synchronous=FULL")
    assert url.option("busy_timeout") == "2500"
    assert url.option("synchronous") == "full"
    with pytest.raises(InvalidDatabaseURL):
        parse_url("sqlite:///x.sqlite?journal_mode=delete")
    with pytest.raises(InvalidDatabaseURL):
        parse_url("sqlite:///x.sqlite?synchronous=off")


def test_postgresql_url_parts_are_percent_decoded():
    url = parse_url("postgresql://koha%40lib:p%40ss%3Aw%2Fo%25rd@db.example.org:6543/koha_sip")
    assert url.engine == "postgresql"
    assert url.user == "koha@lib"
    assert url.password == "p@ss:w/o%rd"
    assert url.host == "db.example.org"
    assert url.port == 6543
    assert url.database == "koha_sip"
    assert parse_url("postgres://u@h/d").engine == "postgresql"


def test_postgresql_options_pass_through_and_are_checked():
    url = parse_url(
        "postgresql://u:p@h/d?sslmode=verify-full&sslrootcert=/etc/ssl/ca.pem&lock_timeout=500"
    )
    assert url.option("sslmode") == "verify-full"
    assert url.option("sslrootcert") == "/etc/ssl/ca.pem"
    assert url.option("lock_timeout") == "500"
    with pytest.raises(InvalidDatabaseURL, match="sslmdoe"):
        parse_url("postgresql://u:p@h/d?sslmdoe=require")
    with pytest.raises(InvalidDatabaseURL):
        parse_url("postgresql://u:p@h/d?password=x")


def test_postgresql_ipv6_and_socket_hosts():
    url = parse_url("postgresql://u@[::1]:5433/d")
    assert (url.host, url.port) == ("::1", 5433)
    url = parse_url("postgresql:///koha?host=/var/run/postgresql")
    assert url.host == "/var/run/postgresql" and url.port is None
    assert parse_url(url.render()) == url


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u:p@h:99999/d",
        "postgresql://u:p@h:abc/d",
        "postgresql://u:p@h/",
        "postgresql:u@h/d",
        "mysql://u:p@h/",
        "mysql:u@h/d",
        "mysql://u:p@h:0/d",
        "mysql://u:p@h/d?sslmode=require",
        "mysql://u:p@h/d?connect_timeout=soon",
        "mysql://u:p@h/d?unix_socket=relative.sock",
        "oracle://u:p@h/d",
        "no-scheme",
        "",
    ],
)
def test_bad_urls_are_refused(url):
    with pytest.raises(InvalidDatabaseURL):
        parse_url(url)


def test_password_never_in_repr_str_or_errors():
    secret = "s3cr3t-Pa55"
    text = f"postgresql://koha:{secret}@db:5432/koha"
    url = parse_url(text)
    assert secret not in repr(url)
    assert secret not in str(url)
    assert secret not in url.redacted()
    assert url.redacted() == "postgresql://koha:***@db:5432/koha"
    assert secret in url.render()
    db = Database.from_url(text)
    try:
        assert secret not in repr(db)
        assert secret not in str(db)
    finally:
        db.close()
    with pytest.raises(InvalidDatabaseURL) as info:
        parse_url(f"postgresql://koha:{secret}@db:port/koha")
    assert secret not in str(info.value)


def test_build_url_from_koha_conf_parts():
    url = build_url("Pg", "koha_lib", host="db", port="5432", user="koha", password="a@b:c")
    parsed = parse_url(url)
    assert (parsed.host, parsed.port, parsed.user, parsed.password, parsed.database) == (
        "db",
        5432,
        "koha",
        "a@b:c",
        "koha_lib",
    )
    socket_url = build_url("Pg", "koha_lib", host="/var/run/postgresql", user="koha")
    assert parse_url(socket_url).host == "/var/run/postgresql"
    assert parse_url(build_url("sqlite", "/srv/ils.sqlite")).database == "/srv/ils.sqlite"
    mysql = parse_url(build_url("mysql", "koha_lib1", host="localhost", user="k", password="p@"))
    assert (mysql.engine, mysql.host, mysql.port, mysql.password) == (
        "mysql",
        "localhost",
        None,
        "p@",
    )
    socket = parse_url(build_url("mysql", "koha", host="/run/mysqld/mysqld.sock"))
    assert socket.host is None and socket.option("unix_socket") == "/run/mysqld/mysqld.sock"
    with pytest.raises(InvalidDatabaseURL, match="mysql"):
        build_url("oracle", "koha", host="db")
    with pytest.raises(InvalidDatabaseURL):
        build_url("Pg", "")
    with pytest.raises(InvalidDatabaseURL):
        build_url("mysql", "")


@pytest.mark.parametrize("scheme", ["mysql", "mariadb", "MySQL"])
def test_mysql_url_parts_and_options(scheme):
    url = parse_url(
        f"{scheme}://koha_lib1:p%40ss%3Aw%2Fo%25rd@db.example.org:3307/koha_lib1"
        "?connect_timeout=3&read_timeout=20&lock_timeout=2500&time_zone=Europe%2FParis"
        "&ssl_ca=%2Fetc%2Fca.pem"
    )
    assert url.engine == "mysql"
    assert (url.user, url.password, url.host, url.port, url.database) == (
        "koha_lib1",
        "p@ss:w/o%rd",
        "db.example.org",
        3307,
        "koha_lib1",
    )
    assert url.option("time_zone") == "Europe/Paris"
    assert url.option("ssl_ca") == "/etc/ca.pem"
    assert url.redacted().startswith("mysql://koha_lib1:***@db.example.org:3307/koha_lib1?")
    assert parse_url(url.render()) == url


def test_mysql_localhost_and_socket_as_libmysql():
    # No host, or localhost: libmysqlclient's default socket (as Koha's DBD::mysql does).
    assert parse_url("mysql://koha@localhost/koha").host == "localhost"
    assert parse_url("mysql:///koha").host is None
    url = parse_url("mysql://koha:pw@localhost/koha?unix_socket=/run/mysqld/mysqld.sock")
    assert url.option("unix_socket") == "/run/mysqld/mysqld.sock"
    assert parse_url(url.render()) == url
    db = Database.from_url(url)
    try:
        assert db.engine.name == "mysql"
        args, kwargs = db.engine.connect_args()
        assert kwargs["unix_socket"] == "/run/mysqld/mysqld.sock"
        assert kwargs["host"] == "localhost" and kwargs["db"] == "koha"
        assert kwargs["charset"] == "utf8mb4" and kwargs["autocommit"] is True
        assert (kwargs["connect_timeout"], kwargs["read_timeout"]) == (5, 30)
        assert "ssl" not in kwargs
        assert "pw" not in repr(db)
    finally:
        db.close()


def test_mysql_tls_options_reach_the_driver():
    url = "mysql://k:p@db/koha?ssl_ca=/etc/ca.pem&ssl_cert=/etc/c.pem&ssl_key=/etc/k.pem"
    db = Database.from_url(url)
    try:
        _, kwargs = db.engine.connect_args()
        assert kwargs["ssl"] == {"ca": "/etc/ca.pem", "cert": "/etc/c.pem", "key": "/etc/k.pem"}
    finally:
        db.close()


def test_build_url_refuses_a_bad_port():
    with pytest.raises(InvalidDatabaseURL, match="port"):
        build_url("Pg", "koha", host="db", port="54x2")
