"""koha-conf.xml: the database connection (mysql as Koha reads it, Pg, sqlite), refusals,
password masking, and --database overriding the file's database."""

from __future__ import annotations

import os

import pytest
from config_helpers import FIXTURES, line_of

from koha_gateway.config import ConfigError, KohaConf, load_koha_conf

PASSWORD = "p@ss:w/rd%41 é"


def koha_conf(config_children: str, *, root: str = "yazgfs") -> str:
    inner = f"<config>\n{config_children}\n</config>"
    if root == "config":
        return f'<?xml version="1.0"?>\n{inner}\n'
    return (
        '<?xml version="1.0"?>\n'
        f"<{root}>\n"
        '<listen id="biblioserver">unix:/var/run/koha/x/bibliosocket</listen>\n'
        # Debian's file has <config> elements inside <server> before the real <config>.
        '<server id="biblioserver" listenref="biblioserver">'
        "<config>/etc/koha/sites/x/koha-DEBIAN-biblios.cfg</config></server>\n"
        f"{inner}\n"
        f"</{root}>\n"
    )


def test_postgresql_fixture(tmp_path):
    conf = load_koha_conf(FIXTURES / "koha-conf-pg.xml")
    assert conf.db_scheme == "postgresql"
    assert conf.database == "koha_library"
    assert conf.hostname == "db.library.example.org"
    assert conf.port == 5432
    assert conf.user == "koha_library"
    assert conf.password == "s3cret&<pw>"
    assert conf.use_ldap is False
    assert conf.ldap is None
    assert conf.database_url == (
        "postgresql://koha_library:s3cret%26%3Cpw%3E@db.library.example.org:5432/koha_library"
    )
    assert conf.display_url == (
        "postgresql://koha_library:***@db.library.example.org:5432/koha_library"
    )


def test_sqlite_fixture_relative_path_resolves_against_the_file():
    conf = load_koha_conf(FIXTURES / "koha-conf-sqlite.xml")
    expected = os.path.normpath(str(FIXTURES / "var" / "ils.sqlite"))
    assert conf.db_scheme == "sqlite"
    assert conf.database == expected
    assert conf.database_url == "sqlite://" + expected
    assert conf.database_url.startswith("sqlite:///")


def test_sqlite_absolute_path_and_quoting(write_file, tmp_path):
    db = tmp_path / "my data" / "ils#1.sqlite"
    path = write_file(
        koha_conf(f"<db_scheme>sqlite</db_scheme>\n<database>{db}</database>"), "koha-conf.xml"
    )
    conf = load_koha_conf(path)
    assert conf.database == str(db)
    assert conf.database_url == "sqlite://" + str(db).replace(" ", "%20").replace("#", "%23")


@pytest.mark.parametrize("scheme", ["Pg", "pg", "postgresql", "postgres", "PostgreSQL"])
def test_postgresql_spellings(write_file, scheme):
    path = write_file(
        koha_conf(f"<db_scheme>{scheme}</db_scheme>\n<database>koha</database>"), "koha-conf.xml"
    )
    conf = load_koha_conf(path)
    assert conf.db_scheme == "postgresql"
    assert conf.hostname == "localhost"
    assert conf.port is None
    assert conf.database_url == "postgresql://localhost/koha"


def test_password_and_user_are_percent_encoded(write_file):
    path = write_file(
        koha_conf(
            "<db_scheme>Pg</db_scheme><database>koha db</database><hostname>::1</hostname>"
            f"<port>5433</port><user>ko ha@x</user><pass>{PASSWORD}</pass>"
        ),
        "koha-conf.xml",
    )
    conf = load_koha_conf(path)
    assert conf.password == PASSWORD
    assert conf.database_url == (
        "postgresql://ko%20ha%40x:p%40ss%3Aw%2Frd%2541%20%C3%A9@[::1]:5433/koha%20db"
    )


def test_socket_directory_goes_into_the_query(write_file):
    path = write_file(
        koha_conf(
            "<db_scheme>Pg</db_scheme><database>koha</database>"
            "<hostname>/var/run/postgresql</hostname><port>5433</port><user>koha</user>"
        ),
        "koha-conf.xml",
    )
    conf = load_koha_conf(path)
    assert conf.database_url == "postgresql://koha@:5433/koha?host=%2Fvar%2Frun%2Fpostgresql"


def test_url_is_understood_by_the_database_layer():
    url_module = pytest.importorskip("koha_gateway.db.url")
    for fixture in ("koha-conf-pg.xml", "koha-conf-sqlite.xml"):
        conf = load_koha_conf(FIXTURES / fixture)
        parsed = url_module.parse_url(conf.database_url)
        assert parsed.engine == conf.db_scheme
        assert parsed.database == conf.database
        if conf.db_scheme == "postgresql":
            assert (parsed.host, parsed.port, parsed.user, parsed.password) == (
                conf.hostname,
                conf.port,
                conf.user,
                conf.password,
            )


def test_config_as_root(write_file):
    path = write_file(
        koha_conf("<db_scheme>sqlite</db_scheme><database>ils.db</database>", root="config"),
        "koha-conf.xml",
    )
    assert load_koha_conf(path).database == str(path.parent / "ils.db")


def test_mysql_fixture_as_koha_create_writes_it(monkeypatch):
    monkeypatch.delenv("TZ", raising=False)
    conf = load_koha_conf(FIXTURES / "koha-conf-mysql.xml")
    assert conf.db_scheme == "mysql"
    assert (conf.database, conf.hostname, conf.port, conf.user) == (
        "koha_lib1",
        "localhost",
        3306,
        "koha_lib1",
    )
    assert conf.password == "Wq8&zK:p@ss/%"
    assert conf.timezone is None and conf.tls is False
    assert conf.database_url == "mysql://koha_lib1:Wq8%26zK%3Ap%40ss%2F%25@localhost:3306/koha_lib1"
    assert conf.display_url == "mysql://koha_lib1:***@localhost:3306/koha_lib1"
    from koha_gateway.db.url import parse_url

    parsed = parse_url(conf.database_url)
    assert (parsed.engine, parsed.host, parsed.port, parsed.password) == (
        "mysql",
        "localhost",
        3306,
        conf.password,
    )


@pytest.mark.parametrize("scheme", ["mysql", "MySQL", "mariadb", "", "  "])
def test_mysql_or_empty_scheme_means_mariadb(write_file, scheme):
    text = koha_conf(
        f"<db_scheme>{scheme}</db_scheme>\n<database>koha</database>\n<user>k</user>"
        f"<pass>{PASSWORD}</pass>"
    )
    conf = load_koha_conf(write_file(text, "koha-conf.xml"), environ={})
    assert conf.password == PASSWORD
    assert conf.db_scheme == "mysql"
    assert conf.hostname == "localhost" and conf.port is None
    assert conf.database_url.startswith("mysql://") and conf.database_url.endswith(
        "@localhost/koha"
    )


def test_missing_db_scheme_means_mysql_as_in_koha(write_file):
    # Koha::Database::db_scheme2dbi: anything but Pg is mysql; no hostname means localhost.
    path = write_file(koha_conf("<database>koha_lib1</database><user>k</user>"), "koha-conf.xml")
    conf = load_koha_conf(path, environ={})
    assert conf.db_scheme == "mysql"
    assert conf.database_url == "mysql://k@localhost/koha_lib1"


def test_mysql_socket_path_tls_and_timezone(write_file):
    path = write_file(
        koha_conf(
            "<db_scheme>mysql</db_scheme><database>koha</database><user>k</user>"
            "<hostname>/run/mysqld/mysqld.sock</hostname>"
            "<tls>yes</tls><ca>/etc/mysql/ca.pem</ca><cert>/etc/mysql/c.pem</cert>"
            "<key>/etc/mysql/k.pem</key><timezone>Pacific/Auckland</timezone>"
        ),
        "koha-conf.xml",
    )
    conf = load_koha_conf(path, environ={"TZ": "Europe/Paris"})
    assert conf.tls and conf.timezone == "Pacific/Auckland"
    from koha_gateway.db.url import parse_url

    url = parse_url(conf.database_url)
    assert url.host == "localhost"
    assert dict(url.options) == {
        "unix_socket": "/run/mysqld/mysqld.sock",
        "ssl_ca": "/etc/mysql/ca.pem",
        "ssl_cert": "/etc/mysql/c.pem",
        "ssl_key": "/etc/mysql/k.pem",
        "time_zone": "Pacific/Auckland",
    }


@pytest.mark.parametrize(
    ("configured", "env", "expected"),
    [
        ("", {"TZ": "Europe/Paris"}, "Europe/Paris"),  # Koha falls back to $ENV{TZ}
        ("", {}, None),  # local: the server's zone is left alone
        ("local", {"TZ": "Europe/Paris"}, None),
        ("Not/AZone", {}, None),  # Koha warns and uses local
        ("Antarctica/South_Pole", {"TZ": "Europe/Paris"}, "Antarctica/South_Pole"),
    ],
)
def test_timezone_as_koha_config(write_file, configured, env, expected):
    path = write_file(
        koha_conf(f"<database>koha</database><timezone>{configured}</timezone>"), "koha-conf.xml"
    )
    assert load_koha_conf(path, environ=env).timezone == expected


def test_tls_only_when_exactly_yes(write_file):
    path = write_file(
        koha_conf("<database>koha</database><tls>no</tls><ca>/etc/ca.pem</ca>"), "koha-conf.xml"
    )
    conf = load_koha_conf(path, environ={})
    assert conf.tls is False and "ssl" not in conf.database_url


def test_database_part_not_judged_when_the_database_comes_from_elsewhere(write_file):
    text = koha_conf("<db_scheme>oracle</db_scheme>\n<useldapserver>0</useldapserver>")
    path = write_file(text, "koha-conf.xml")
    with pytest.raises(ConfigError, match="unknown db_scheme"):
        load_koha_conf(path)
    conf = load_koha_conf(path, require_database=False)
    assert conf.database == "" and conf.use_ldap is False


@pytest.mark.parametrize(
    ("children", "needle", "message"),
    [
        ("<db_scheme>oracle</db_scheme><database>k</database>", "<db_scheme>", "unknown db_scheme"),
        ("<db_scheme>Pg</db_scheme>\n<database> </database>", "<database>", "<database> is"),
        ("<db_scheme>Pg</db_scheme>", "<config>\n", "<database> is missing"),
        ("<db_scheme>Pg</db_scheme><database>k</database>\n<port>0</port>", "<port>", "bad port"),
        ("<db_scheme>Pg</db_scheme><database>k</database>\n<port>x</port>", "<port>", "bad port"),
        (
            "<db_scheme>Pg</db_scheme><database>k</database>\n<hostname>a:b:zz</hostname>",
            "<hostname>",
            "is not a host name",
        ),
    ],
)
def test_errors_name_the_line_and_never_the_password(write_file, children, needle, message):
    text = koha_conf(f"{children}\n<pass>{PASSWORD}</pass>")
    path = write_file(text, "koha-conf.xml")
    with pytest.raises(ConfigError) as caught:
        load_koha_conf(path)
    assert caught.value.line == line_of(text, needle)
    assert message in caught.value.message
    assert PASSWORD not in str(caught.value)
    assert PASSWORD not in repr(caught.value)


def test_no_config_section(write_file):
    path = write_file("<yazgfs>\n<server/>\n</yazgfs>\n", "koha-conf.xml")
    with pytest.raises(ConfigError) as caught:
        load_koha_conf(path)
    assert str(caught.value) == f"{path}:1: no <config> section (root element is <yazgfs>)"


def test_repr_masks_the_password():
    conf = load_koha_conf(FIXTURES / "koha-conf-pg.xml")
    shown = repr(conf)
    assert "s3cret" not in shown
    assert "password='***'" in shown
    assert "password=''" in repr(KohaConf(path="x", db_scheme="sqlite", database="/x.db"))


def test_password_is_kept_exactly(write_file):
    path = write_file(
        koha_conf("<db_scheme>Pg</db_scheme><database>k</database><pass> two words </pass>"),
        "koha-conf.xml",
    )
    assert load_koha_conf(path).password == " two words "


@pytest.mark.parametrize(("value", "expected"), [("0", False), ("", False), ("1", True)])
def test_useldapserver_switch(write_file, value, expected):
    ldap = (
        "<ldapserver id='ldapserver'><hostname>ldap://127.0.0.1:3890</hostname>"
        "<base>ou=people,dc=example,dc=org</base>"
        "<mapping><userid is='uid'></userid></mapping></ldapserver>"
    )
    path = write_file(
        koha_conf(
            "<db_scheme>sqlite</db_scheme><database>ils.db</database>"
            f"<useldapserver>{value}</useldapserver>{ldap}"
        ),
        "koha-conf.xml",
    )
    conf = load_koha_conf(path)
    assert conf.use_ldap is expected
    if expected:
        # Parsed by koha_gateway.config.ldap (the LDAP section's own module).
        assert conf.ldap is not None
        assert type(conf.ldap).__name__ == "LdapConfig"
    else:
        assert conf.ldap is None


LDAP_SECTION = (
    "<useldapserver>1</useldapserver>"
    "<ldapserver id='ldapserver'><hostname>ldap://127.0.0.1:3890</hostname>"
    "<base>ou=people,dc=example,dc=org</base>"
    "<mapping><userid is='uid'></userid></mapping></ldapserver>"
)


@pytest.mark.parametrize(
    "database_part",
    [
        "<db_scheme>mysql</db_scheme><database>koha_lib1</database><user>koha_lib1</user>",
        "<database>koha_lib1</database>",  # no db_scheme: MySQL
        "<db_scheme>oracle</db_scheme>",  # not judged: --database replaces it
    ],
)
def test_database_option_overrides_koha_conf_which_still_supplies_ldap(write_file, database_part):
    from twisted.python import usage

    from koha_gateway.tap import Options

    ROOT = FIXTURES.parents[2]
    conf = write_file(koha_conf(database_part + LDAP_SECTION), "koha-conf.xml")
    url = f"sqlite:///{conf.parent / 'ils.sqlite'}"
    options = Options()
    options.parseOptions(
        ["--sip-config", str(ROOT / "conf" / "SIPconfig.xml"), "--koha-conf", str(conf)]
        + ["--database", url]
    )
    assert options["database"] == url
    assert options["koha_conf"].use_ldap is True
    assert options["koha_conf"].ldap is not None
    if "oracle" in database_part:
        with pytest.raises(usage.UsageError, match="unknown db_scheme"):
            Options().parseOptions(
                ["--sip-config", str(ROOT / "conf" / "SIPconfig.xml"), "--koha-conf", str(conf)]
            )
    else:
        without = Options()
        without.parseOptions(
            ["--sip-config", str(ROOT / "conf" / "SIPconfig.xml"), "--koha-conf", str(conf)]
        )
        from koha_gateway.db.url import parse_url

        parsed = parse_url(without["database"])
        assert (parsed.engine, parsed.host, parsed.database) == ("mysql", "localhost", "koha_lib1")


def test_admin_port(tmp_path):
    path = tmp_path / "koha-conf.xml"
    base = "<db_scheme>sqlite</db_scheme><database>x.sqlite</database>"
    path.write_text(koha_conf(base))
    assert load_koha_conf(path).admin_port is None
    path.write_text(koha_conf(base + "<admin_port>9180</admin_port>"))
    assert load_koha_conf(path).admin_port == 9180
    path.write_text(koha_conf(base + "\n<admin_port>http</admin_port>"))
    with pytest.raises(ConfigError, match=r"koha-conf.xml:\d+: bad admin_port 'http'"):
        load_koha_conf(path)
