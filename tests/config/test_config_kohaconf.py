"""koha-conf.xml: the database connection for Pg and sqlite, refusals, password masking."""

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


@pytest.mark.parametrize("scheme", ["mysql", "MySQL", "mariadb"])
def test_mysql_is_refused(write_file, scheme):
    text = koha_conf(
        f"<db_scheme>{scheme}</db_scheme>\n<database>koha</database>\n<pass>{PASSWORD}</pass>"
    )
    path = write_file(text, "koha-conf.xml")
    with pytest.raises(ConfigError) as caught:
        load_koha_conf(path)
    assert str(caught.value) == (
        f"{path}:{line_of(text, '<db_scheme>')}: MariaDB/MySQL is not supported; use Pg or sqlite"
    )


def test_missing_db_scheme_means_mysql_and_is_refused(write_file):
    text = koha_conf("<database>koha</database>")
    path = write_file(text, "koha-conf.xml")
    with pytest.raises(ConfigError) as caught:
        load_koha_conf(path)
    assert caught.value.line == line_of(text, "<config>\n")
    assert "MariaDB/MySQL is not supported" in caught.value.message


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
