"""koha-conf.xml ``<ldapserver>`` parsing (koha-sip-and-ldap §6.1, §6.2)."""

from __future__ import annotations

import pytest
from lxml import etree

from koha_gateway.config.errors import ConfigError
from koha_gateway.config.ldap import LdapHost, parse_host, parse_ldap

MAPPING = """
      <mapping>
        <userid is="uid"></userid>
        <surname is="sn"></surname>
        <city is="l">Athens, OH</city>
        <categorycode is="employeeType">PT</categorycode>
        <DEPT is="departmentNumber"></DEPT>
      </mapping>"""


def conf(inner: str, *, use: str = "1", mapping: str = MAPPING) -> str:
    return f"""<yazgfs>
  <config>
    <useldapserver>{use}</useldapserver>
    <ldapserver id="ldapserver">
{inner}
{mapping}
    </ldapserver>
  </config>
</yazgfs>"""


BASIC = """      <hostname>ldap.example.org</hostname>
      <base>dc=example,dc=org</base>"""


def parse(text: str, path: str = "/etc/koha/koha-conf.xml", use_ldap: bool = True):
    return parse_ldap(etree.fromstring(text.encode()), path, use_ldap)


def test_koha_defaults():
    config = parse(conf(BASIC))
    assert config.hosts == ("ldap.example.org",)
    assert config.servers == (LdapHost(False, "ldap.example.org", 389),)
    assert config.base == "dc=example,dc=org"
    assert config.user is None and config.password is None
    # Koha's current defaults (§6.2).
    assert config.anonymous_bind is True
    assert config.auth_by_bind is False
    assert config.replicate is True
    assert config.update is True
    assert config.update_password is True
    assert config.welcome is False
    # The gateway's own elements.
    assert config.start_tls is False
    assert config.verify is True
    assert config.ca_file is None
    assert config.connect_timeout == 5.0
    assert config.response_timeout == 10.0
    assert config.pool_size == 4
    assert config.cache_minutes == 5.0
    assert config.grant_circulate is False
    assert config.ldap_id == "ldapserver"


def test_mapping_columns_attributes_and_defaults():
    config = parse(conf(BASIC))
    assert config.mapping == {
        "userid": ("uid", None),
        "surname": ("sn", None),
        "city": ("l", "Athens, OH"),
        "categorycode": ("employeeType", "PT"),
        "DEPT": ("departmentNumber", None),
    }
    assert config.userid_attribute == "uid"


def test_every_element(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    inner = """
      <hostname>ldaps://dc1.example.org, ldap://dc2.example.org:3389 ,ldap3.example.org:10389
      </hostname>
      <base>ou=people,dc=example,dc=org</base>
      <user>cn=reader,dc=example,dc=org</user>
      <pass>s3cret</pass>
      <anonymous_bind>0</anonymous_bind>
      <auth_by_bind>1</auth_by_bind>
      <principal_name>%s@example.org</principal_name>
      <replicate>0</replicate>
      <update>0</update>
      <update_password>0</update_password>
      <welcome>1</welcome>
      <categorycode_mapping default="PT">
        <categorycode value="staff">S</categorycode>
        <categorycode value="student">ST</categorycode>
      </categorycode_mapping>
      <start_tls>1</start_tls>
      <ca_file>ca.pem</ca_file>
      <verify>1</verify>
      <tls_name>ldap.example.org</tls_name>
      <connect_timeout>2.5</connect_timeout>
      <response_timeout>7</response_timeout>
      <pool_size>8</pool_size>
      <cache_minutes>0</cache_minutes>
      <grant_circulate>1</grant_circulate>"""
    config = parse(conf(inner), path=str(tmp_path / "koha-conf.xml"))
    assert config.servers == (
        LdapHost(True, "dc1.example.org", 636),
        LdapHost(False, "dc2.example.org", 3389),
        LdapHost(False, "ldap3.example.org", 10389),
    )
    assert config.user == "cn=reader,dc=example,dc=org"
    assert config.password == "s3cret"
    assert (config.anonymous_bind, config.auth_by_bind) == (False, True)
    assert config.principal_name == "%s@example.org"
    assert (config.replicate, config.update, config.update_password) == (False, False, False)
    assert config.welcome is True
    assert config.categorycode_mapping == {"staff": "S", "student": "ST"}
    assert config.categorycode_default == "PT"
    assert config.start_tls is True
    assert config.ca_file == str(ca)  # relative to koha-conf.xml
    assert config.tls_name == "ldap.example.org"
    assert (config.connect_timeout, config.response_timeout) == (2.5, 7.0)
    assert config.pool_size == 8
    assert config.cache_minutes == 0
    assert config.grant_circulate is True


def test_password_is_masked_in_repr():
    config = parse(conf(BASIC + "<user>cn=r</user><pass>hunter2-secret</pass>"))
    assert "hunter2-secret" not in repr(config)
    assert "hunter2-secret" not in str(config)
    assert "'***'" in repr(config)


def test_single_categorycode_is_accepted():
    """Koha's parser turns a single <categorycode> into a hash, not a list (§6.1)."""
    inner = (
        BASIC
        + """
      <categorycode_mapping><categorycode value="staff">S</categorycode></categorycode_mapping>"""
    )
    config = parse(conf(inner))
    assert config.categorycode_mapping == {"staff": "S"}
    assert config.categorycode_default is None


def test_ignored_when_useldapserver_is_off():
    assert parse(conf(BASIC), use_ldap=False) is None
    assert parse("<yazgfs><config></config></yazgfs>", use_ldap=False) is None


@pytest.mark.parametrize(
    ("text", "message", "line"),
    [
        (
            "<yazgfs><config>\n<useldapserver>1</useldapserver></config></yazgfs>",
            "no <ldapserver>",
            1,
        ),
        (conf("<base>dc=x</base>"), 'No ldapserver "hostname"', 4),
        (conf("<hostname>h</hostname>"), 'No ldapserver "base"', 4),
        (conf(BASIC, mapping="<mapping><sn is='sn'/></mapping>"), "needs <userid", 7),
        (conf(BASIC, mapping=""), "has no <mapping>", 4),
        (conf(BASIC + "\n<replicate>maybe</replicate>"), "<replicate> must be 0 or 1", 7),
        (conf(BASIC + "\n<hostnme>x</hostnme>"), "unknown element <hostnme>", 7),
        (conf(BASIC + "\n<base>dc=y</base>"), "<base> given twice", 7),
        (conf("<hostname>http://x</hostname><base>b</base>"), "unsupported scheme", 5),
        (conf("<hostname>ldap://x:99999</hostname><base>b</base>"), "bad port", 5),
        (conf("<hostname>ldap://u:p@x</hostname><base>b</base>"), "credentials", 5),
        (conf("<hostname>a,,b</hostname><base>b</base>"), "empty host", 5),
        (conf(BASIC + "\n<connect_timeout>soon</connect_timeout>"), "must be a number", 7),
        (conf(BASIC + "\n<response_timeout>0</response_timeout>"), "at least 0.1", 7),
        (conf(BASIC + "\n<pool_size>1.5</pool_size>"), "whole number", 7),
        (conf(BASIC + "\n<principal_name>%d@x</principal_name>"), "one %s", 7),
        (conf(BASIC + "\n<ca_file>/nonexistent/ca.pem</ca_file>"), "not a readable file", 7),
        (
            conf(BASIC, mapping='<mapping><userid is="uid"/><x-y is="a"/></mapping>'),
            "bad mapping column",
            7,
        ),
        (
            conf(BASIC, mapping='<mapping><userid is="u id"/></mapping>'),
            "not an LDAP attribute",
            7,
        ),
        (
            conf(
                BASIC + "<categorycode_mapping><categorycode>S</categorycode>"
                "</categorycode_mapping>"
            ),
            "needs both parts",
            6,
        ),
    ],
)
def test_errors_name_file_and_line(text, message, line):
    with pytest.raises(ConfigError) as caught:
        parse(text, path="koha-conf.xml")
    assert message in caught.value.message
    assert caught.value.path == "koha-conf.xml"
    assert caught.value.line == line
    assert str(caught.value).startswith(f"koha-conf.xml:{line}: ")


def test_error_messages_never_show_the_password():
    text = conf(BASIC + "<user>cn=r</user><pass>hunter2-secret</pass><update>perhaps</update>")
    with pytest.raises(ConfigError) as caught:
        parse(text)
    assert "hunter2-secret" not in str(caught.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("host", LdapHost(False, "host", 389)),
        ("host:1389", LdapHost(False, "host", 1389)),
        ("ldap://host", LdapHost(False, "host", 389)),
        ("ldap://host:1389/", LdapHost(False, "host", 1389)),
        ("LDAPS://Host", LdapHost(True, "host", 636)),
        ("ldaps://[::1]:6360", LdapHost(True, "::1", 6360)),
    ],
)
def test_parse_host(text, expected):
    assert parse_host(text) == expected
    assert parse_host(expected.url) == expected


def test_shipped_example_conf_parses():
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "conf" / "koha-conf.xml"
    root = etree.parse(str(path)).getroot()
    # The example ships with LDAP off and the section commented out.
    assert parse_ldap(root, str(path), False) is None


def test_shipped_example_ldapserver_block_parses_when_uncommented(tmp_path):
    """The commented <ldapserver> block of conf/koha-conf.xml is a working configuration."""
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "conf" / "koha-conf.xml"
    root = etree.parse(str(path)).getroot()
    block = next(c.text for c in root.iter(etree.Comment) if "<ldapserver id=" in c.text)
    ca = tmp_path / "ldap-ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    block = block.replace("/etc/koha-gateway/ldap-ca.pem", str(ca))
    text = f"<yazgfs><config><useldapserver>1</useldapserver>{block}</config></yazgfs>"
    config = parse(text, path=str(tmp_path / "koha-conf.xml"))
    assert config.hosts == ("ldaps://ldap1.example.org", "ldaps://ldap2.example.org")
    assert config.anonymous_bind is False
    assert config.user == "cn=koha-reader,dc=example,dc=org"
    assert config.mapping["userid"] == ("uid", None)
    assert config.mapping["DEPARTMENT"] == ("ou", None)
    assert config.categorycode_mapping == {"staff": "S", "student": "ST"}


def test_koha_conf_loader_hands_the_section_over(tmp_path):
    from koha_gateway.config.kohaconf import load_koha_conf

    path = tmp_path / "koha-conf.xml"
    path.write_text(
        conf(BASIC).replace(
            "<config>", "<config><db_scheme>sqlite</db_scheme><database>x.sqlite</database>"
        )
    )
    loaded = load_koha_conf(str(path))
    assert loaded.use_ldap is True
    assert loaded.ldap.hosts == ("ldap.example.org",)
    assert loaded.ldap.path == str(path)


def test_config_is_hashable_and_comparable():
    first, second = parse(conf(BASIC)), parse(conf(BASIC))
    assert first == second and hash(first) == hash(second)
    assert first != parse(conf(BASIC + "<update>0</update>"))


def test_missing_slapd_fails_under_ci_and_skips_elsewhere(monkeypatch):
    """The fixture's contract: with CI=true a slapd that cannot start FAILS the tests."""
    from tests.ldap import conftest, slapd

    monkeypatch.setattr(slapd, "SLAPD", "/nonexistent/slapd")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception):
        conftest.start_slapd()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        conftest.start_slapd()
