"""SIPconfig.xml: every section, attribute, default, warning and error (with its line)."""

from __future__ import annotations

import dataclasses
import os
import shutil

import pytest
from config_helpers import DEFAULT_INSTITUTIONS, FIXTURES, REPO, build_sip_xml, line_of

from koha_gateway.config import (
    AccountConfig,
    ConfigError,
    PolicyConfig,
    ServiceConfig,
    SIPConfig,
    load_sip_config,
    parse_listen_address,
    perl_bool,
    to_bool,
)

# --------------------------------------------------------------------------------------------
# The shipped demo and the kitchen sink
# --------------------------------------------------------------------------------------------


def test_shipped_demo_config_loads():
    config = load_sip_config(REPO / "conf" / "SIPconfig.xml")
    assert config.warnings == ()
    raw, telnet, tls = config.services
    assert (raw.address.host, raw.address.port, raw.address.family) == ("127.0.0.1", 6001, "IPv4")
    assert raw.address.spec == "127.0.0.1:6001/tcp/IPv4"
    assert (raw.transport, raw.timeout, raw.client_timeout) == ("RAW", 60, "600")
    assert (telnet.address.port, telnet.transport, telnet.timeout) == (8023, "telnet", 60)
    assert telnet.client_timeout is None
    assert (config.login_timeout(raw), config.idle_timeout(raw)) == (60, 600)
    assert (config.login_timeout(telnet), config.idle_timeout(telnet)) == (60, 60)
    assert not raw.tls and not telnet.tls
    assert tls.tls and (tls.address.port, tls.transport, tls.tls_min_version) == (
        6443,
        "RAW",
        "1.2",
    )
    assert tls.tls_certificate == str(REPO / "var" / "tls" / "server.pem")

    assert set(config.accounts) == {"joe", "kilsc", "nocirc"}
    joe = config.accounts["joe"]
    assert (joe.password, joe.institution, joe.terminator) == ("joes", "WEL", "CRLF")
    assert (config.accounts["kilsc"].password, config.accounts["kilsc"].institution) == (
        "kilsc1",
        "KIL",
    )
    assert (config.accounts["nocirc"].password, config.accounts["nocirc"].institution) == (
        "nocirc1",
        "WEL",
    )

    wel, kil = config.institutions["WEL"], config.institutions["KIL"]
    assert wel.implementation == kil.implementation == "ILS"
    assert wel.policy == PolicyConfig(
        checkin=True,
        checkout=True,
        renewal=True,
        status_update=True,
        offline=False,
        timeout=100,
        retries=5,
    )
    assert kil.policy == dataclasses.replace(wel.policy, renewal=False)
    assert config.server_params.ignored == {"min_servers": "1", "min_spare_servers": "0"}


@pytest.fixture
def kitchen_sink(tmp_path, certificate_pair) -> SIPConfig:
    path = tmp_path / "SIPconfig.xml"
    shutil.copy(FIXTURES / "kitchen-sink.xml", path)
    shutil.copytree(certificate_pair[0].parent, tmp_path / "tls")
    return load_sip_config(path)


def test_kitchen_sink_loads_without_errors_or_warnings(kitchen_sink):
    assert kitchen_sink.warnings == ()
    assert list(kitchen_sink.accounts) == [
        "staff",
        "koha",
        "koha2",
        "lpl-sc",
        "lpl-sc-beacock",
        "term1",
    ]
    assert set(kitchen_sink.institutions) == {"MAIN", "CPL", "kohalibrary", "kohalibrary2", "LPL"}
    assert kitchen_sink.timeout == 45
    assert kitchen_sink.error_detect is True
    assert kitchen_sink.delimiter == "|"


def test_kitchen_sink_account_every_attribute(kitchen_sink):
    text = (FIXTURES / "kitchen-sink.xml").read_text()
    account = kitchen_sink.accounts["lpl-sc-beacock"]
    expected = AccountConfig(
        id="lpl-sc-beacock",
        institution="LPL",
        password="xyzzy",
        delimiter="|",
        error_detect=True,
        encoding="utf8",
        terminator="CRLF",
        checked_in_ok=True,
        cv_triggers_alert=True,
        cv_send_00_on_success=True,
        ct_always_send=True,
        holds_block_checkin=True,
        holds_get_captured=False,
        send_patron_home_library_in_af=True,
        patron_branchcode_in_ao=True,
        patron_restriction_blocks_inet=False,
        allow_empty_passwords=True,
        ae_field_template="[% patron.surname %], [% patron.firstname %]",
        da_field_template="[% patron.firstname %] [% patron.surname %] ([% patron.cardnumber %])",
        av_field_template=(
            "[% accountline.description %] [% accountline.amountoutstanding | format('%.2f') %]"
        ),
        hide_fields=frozenset({"BD", "BE", "BF"}),
        allow_fields=frozenset({"AO", "AA", "AE", "BL", "CQ"}),
        register_id=3,
        payment_type_writeoff="06",
        disallow_overpayment=True,
        lost_status_for_missing=4,
        lost_block_checkout=2,
        lost_block_checkout_value=2,
        overdues_block_checkout=True,
        prevcheckout_block_checkout=True,
        allow_additional_materials_checkout=True,
        blocked_item_types=frozenset({"VM", "MU"}),
        inhouse_item_types=frozenset({"REF", "MAP"}),
        inhouse_patron_categories=frozenset({"ST", "PT"}),
        format_due_date=True,
        cr_item_field="shelving_location",
        seen_on_item_information="mark_found",
        show_checkin_message=True,
        show_outstanding_amount=True,
        convert_nonprinting_characters=" -- ",
        screen_msg_regex=(
            ("Greetings from Koha. ", "Welcome to your library! "),
            (r"Invalid patron barcode\.", "Please see a librarian."),
        ),
        patron_attributes=(("XY", "CODE"), ("XZ", "CODE2")),
        custom_patron_fields=(("DE", "[% patron.dateexpiry %]"),),
        item_fields=(("ZY", "permanent_location"),),
        custom_item_fields=(("IN", "[% item.itemnumber %]"),),
        sort_bin_mappings=("CPL:itype:eq:BK:1", "CPL:location:eq:OFFICE:2"),
        syspref_overrides={"AllFinesNeedOverride": "0", "noissuescharge": "10"},
        client_certificate="kiosk-01.lpl.example.org",
        # libxml2 gives the line where a multi-line start tag ends.
        line=line_of(text, 'client_certificate="kiosk-01'),
    )
    assert account == expected
    # Every field of the dataclass was exercised with a non-default value except these.
    defaults = AccountConfig(id="x", institution="y")
    same_as_default = {
        f.name
        for f in dataclasses.fields(AccountConfig)
        if getattr(account, f.name) == getattr(defaults, f.name)
    }
    # origin names a database row; an account from the file has none.
    assert same_as_default == {"delimiter", "terminator", "origin"}


def test_kitchen_sink_other_accounts(kitchen_sink):
    staff = kitchen_sink.accounts["staff"]
    assert (staff.encoding, staff.checked_in_ok, staff.payment_type_writeoff) == (
        "ascii",
        True,
        "06",
    )
    assert staff.disallow_overpayment is True
    assert kitchen_sink.accounts["koha2"].terminator == "CR"
    assert kitchen_sink.accounts["lpl-sc"].allow_fields == frozenset({"AO", "AA", "AE"})
    # A single <sort_bin_mapping> is a tuple of one (Koha's XML::Simple would not make a list).
    assert kitchen_sink.accounts["term1"].sort_bin_mappings == ("CPL:itype:eq:DVD:3",)


def test_kitchen_sink_defaults_of_a_plain_account(kitchen_sink):
    koha = kitchen_sink.accounts["koha"]
    assert koha == AccountConfig(
        id="koha",
        institution="kohalibrary",
        password="koha",
        error_detect=True,
        encoding="utf8",
        line=koha.line,
    )
    assert koha.holds_get_captured is True
    assert koha.patron_restriction_blocks_inet is True
    assert koha.lost_block_checkout_value == 1
    assert koha.cr_item_field == "collection_code"
    assert koha.allow_fields is None
    assert koha.hide_fields == frozenset()
    assert koha.ae_field_template is None
    assert koha.terminator == "CRLF"


def test_kitchen_sink_services(kitchen_sink):
    telnet, raw, six, tls = kitchen_sink.services
    assert tls.tls and tls.address.host == "" and tls.address.port == 6443
    assert (
        tls.tls_client_ca
        == tls.tls_certificate
        == os.path.join(os.path.dirname(kitchen_sink.path), "tls", "sip.pem")
    )
    assert telnet.address.host == "" and telnet.address.port == 8023
    assert telnet.transport == "telnet"
    assert raw.address.host == "127.0.0.1" and raw.address.family is None
    assert raw.protocol == "SIP/2.00"
    assert six.address.host == "::1" and six.address.family == "IPv6"
    assert six.transport == "RAW"  # written as "raw"
    assert six.max_line_length == 4096
    assert six.proxy_protocol == "v2"
    assert kitchen_sink.login_timeout(six) == 45  # top-level timeout attribute
    assert kitchen_sink.idle_timeout(six) is None  # client_timeout="0"
    assert kitchen_sink.idle_timeout(raw) == 600


def test_kitchen_sink_server_params(kitchen_sink):
    params = kitchen_sink.server_params
    assert params.custom_tcp_keepalive is True
    assert params.custom_tcp_keepalive_time == 60
    assert params.custom_tcp_keepalive_intvl == 10
    assert params.workers == 2
    assert params.ignored == {
        "min_servers": "1",
        "min_spare_servers": "0",
        "max_servers": "25",
        "max_requests": "50",
        "user": "koha",
        "group": "koha",
        "pid_file": "/var/run/sipserver.pid",
        "log_file": "Sys::Syslog",
        "syslog_ident": "koha_sip",
        "syslog_facility": "local6",
        "setsid": "1",
        "ipv": "4",
    }


def test_kitchen_sink_institutions_and_global_overrides(kitchen_sink):
    main = kitchen_sink.institutions["MAIN"]
    assert main.policy == PolicyConfig(
        checkin=True, checkout=True, renewal=False, timeout=25, retries=5
    )
    koha = kitchen_sink.institutions["kohalibrary"].policy
    assert (koha.checkin, koha.checkout, koha.renewal, koha.status_update, koha.offline) == (
        True,
        True,
        True,
        True,
        False,
    )
    assert (koha.timeout, koha.retries) == (100, 999)
    assert kitchen_sink.institutions["LPL"].parms == ""
    assert kitchen_sink.syspref_overrides == {
        "AllFinesNeedOverride": "1",
        "SIP2AddOpacMessagesToScreenMessage": "1",
    }


def test_config_objects_are_frozen(kitchen_sink):
    with pytest.raises(dataclasses.FrozenInstanceError):
        kitchen_sink.accounts["koha"].institution = "MAIN"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        kitchen_sink.services[0].timeout = 1  # type: ignore[misc]


def test_passwords_stay_out_of_repr(kitchen_sink):
    shown = repr(kitchen_sink)
    assert "xyzzy" not in shown
    assert "password='***'" in repr(kitchen_sink.accounts["staff"])
    assert "password=None" in repr(AccountConfig(id="a", institution="b"))
    assert "terminator='CR'" in repr(kitchen_sink.accounts["koha2"])


# --------------------------------------------------------------------------------------------
# Namespace handling
# --------------------------------------------------------------------------------------------


def test_without_namespace(sip_file):
    path, _ = sip_file(namespace=False)
    config = load_sip_config(path)
    assert list(config.accounts) == ["term1"]
    assert config.warnings == ()


def test_foreign_namespace_elements_are_ignored_with_a_warning(sip_file):
    path, text = sip_file(top='<x:extra xmlns:x="urn:example:other" />')
    config = load_sip_config(path)
    assert config.warnings == (
        f"{path}:{line_of(text, '<x:extra')}: element <extra> in namespace "
        "'urn:example:other' ignored",
    )


def test_root_element_must_be_acsconfig(write_file):
    path = write_file("<?xml version='1.0'?>\n<yazgfs/>\n")
    with pytest.raises(ConfigError) as caught:
        load_sip_config(path)
    assert str(caught.value) == f"{path}:2: the root element must be <acsconfig>, not <yazgfs>"


# --------------------------------------------------------------------------------------------
# Accounts: errors
# --------------------------------------------------------------------------------------------


def test_login_defined_twice_names_both_lines(sip_file):
    logins = (
        '<login id="joe" password="a" institution="CPL" />\n'
        '<login id="kiosk" password="b" institution="CPL" />\n'
        '<login id="joe" password="c" institution="CPL" />'
    )
    path, text = sip_file(logins=logins)
    with pytest.raises(ConfigError) as caught:
        load_sip_config(path)
    first = line_of(text, '<login id="joe"')
    second = line_of(text, '<login id="joe"', 2)
    assert caught.value.line == second
    assert str(caught.value) == (
        f"{path}:{second}: login id 'joe' is defined twice (lines {first} and {second}); "
        "each SIP login id must be unique"
    )


def test_login_with_undefined_institution(sip_file):
    path, text = sip_file(logins='<login id="joe" password="a" institution="NOPE" />')
    with pytest.raises(ConfigError) as caught:
        load_sip_config(path)
    assert str(caught.value) == (
        f"{path}:{line_of(text, '<login')}: login 'joe': institution 'NOPE' is not defined "
        "in <institutions>"
    )


@pytest.mark.parametrize(
    ("login", "message"),
    [
        ('<login password="a" institution="CPL" />', "<login> has no id"),
        ('<login id="  " institution="CPL" />', "<login> has no id"),
        ('<login id="joe" password="a" />', "login 'joe' has no institution"),
    ],
)
def test_login_missing_id_or_institution(sip_file, login, message):
    path, text = sip_file(logins=login)
    with pytest.raises(ConfigError) as caught:
        load_sip_config(path)
    assert str(caught.value) == f"{path}:{line_of(text, '<login')}: {message}"


@pytest.mark.parametrize(
    ("attribute", "message"),
    [
        ('encoding="klingon"', "encoding='klingon' is not a known character encoding"),
        ('register_id="main"', "register_id='main' is not an integer"),
        (
            'lost_block_checkout="-1"',
            "lost_block_checkout='-1' is out of range: must be at least 0",
        ),
        ('lost_status_for_missing="x"', "lost_status_for_missing='x' is not an integer"),
        ('cr_item_field="ccode; DROP TABLE items"', "is not an item field name"),
        ('seen_on_item_information="yes"', "use mark_found or keep_lost"),
    ],
)
def test_bad_login_attribute_values(sip_file, attribute, message):
    path, text = sip_file(logins=f'<login id="joe" institution="CPL" {attribute} />')
    with pytest.raises(ConfigError) as caught:
        load_sip_config(path)
    assert caught.value.line == line_of(text, "<login")
    assert message in caught.value.message


@pytest.mark.parametrize(
    ("child", "message"),
    [
        ('<screen_msg_regex find="(" replace="x" />', "is not a valid regex"),
        ('<screen_msg_regex replace="x" />', "<screen_msg_regex> has no find"),
        ('<patron_attribute field="XYZ" code="C" />', "must be a two-character SIP field id"),
        ('<patron_attribute field="XY" />', "<patron_attribute> has no code"),
        ('<custom_patron_field field="XY" />', "<custom_patron_field> has no template"),
        ('<item_field field="ZY" code="a b" />', "is not an item column name"),
        ('<custom_item_field code="x" template="t" />', "must be a two-character SIP field id"),
        ("<sort_bin_mapping />", "<sort_bin_mapping> has no mapping"),
    ],
)
def test_bad_login_children(sip_file, child, message):
    path, text = sip_file(logins=f'<login id="joe" institution="CPL">\n{child}\n</login>')
    with pytest.raises(ConfigError) as caught:
        load_sip_config(path)
    assert caught.value.line == line_of(text, child)
    assert message in caught.value.message


def test_perl_named_groups_in_screen_msg_regex_load(sip_file):
    child = r'<screen_msg_regex find="(?&lt;w&gt;\w+)\z" replace="[$+{w}]" />'
    path, _ = sip_file(logins=f'<login id="joe" institution="CPL">\n{child}\n</login>')
    account = load_sip_config(path).accounts["joe"]
    assert account.screen_msg_regex == ((r"(?<w>\w+)\z", "[$+{w}]"),)


# --------------------------------------------------------------------------------------------
# Accounts: values, defaults, warnings
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", True), ("yes", True), ("0", False), ("", False), ("00", True), (" ", True)],
)
def test_login_booleans_follow_perl_truthiness(sip_file, value, expected):
    path, _ = sip_file(
        logins=f'<login id="joe" institution="CPL" checked_in_ok="{value}" '
        f'holds_get_captured="{value}" />'
    )
    account = load_sip_config(path).accounts["joe"]
    assert account.checked_in_ok is expected
    assert account.holds_get_captured is expected


def test_false_looking_boolean_is_true_and_warned(sip_file):
    path, text = sip_file(logins='<login id="joe" institution="CPL" checked_in_ok="false" />')
    config = load_sip_config(path)
    assert config.accounts["joe"].checked_in_ok is True
    (warning,) = config.warnings
    assert warning.startswith(f'{path}:{line_of(text, "<login")}: checked_in_ok="false" is TRUE')


def test_client_certificate_without_a_client_certificate_listener_is_warned(sip_file):
    path, text = sip_file(
        logins='<login id="joe" institution="CPL" client_certificate="kiosk-01" />'
    )
    config = load_sip_config(path)
    assert config.accounts["joe"].client_certificate == "kiosk-01"
    assert config.warnings == (
        f"{path}:{line_of(text, '<login')}: login 'joe' requires the client certificate "
        "'kiosk-01', but no <service> asks for client certificates (tls_client_ca): this "
        "account cannot log in",
    )


def test_unknown_attributes_and_children_are_warnings(sip_file):
    path, text = sip_file(
        logins='<login id="joe" institution="CPL" location_code="X" password="pw123">\n'
        "<favourite_colour />\n</login>"
    )
    config = load_sip_config(path)
    assert config.warnings == (
        f"{path}:{line_of(text, '<login')}: unknown <login> attribute 'location_code' ignored",
        f"{path}:{line_of(text, '<favourite')}: unknown element <favourite_colour> in <login> "
        "ignored",
    )
    assert all("pw123" not in warning for warning in config.warnings)


@pytest.mark.parametrize(
    ("value", "expected", "warned"),
    [
        ("CR", "CR", False),
        ("CRLF", "CRLF", False),
        ("cr", "CR", False),
        ("", "CRLF", False),
        ("LF", "CRLF", True),
    ],
)
def test_terminator(sip_file, value, expected, warned):
    path, _ = sip_file(logins=f'<login id="joe" institution="CPL" terminator="{value}" />')
    config = load_sip_config(path)
    assert config.accounts["joe"].terminator == expected
    assert bool(config.warnings) is warned


def test_comma_and_pipe_lists(sip_file):
    path, _ = sip_file(
        logins='<login id="joe" institution="CPL" hide_fields="AE, BD,,BF " '
        'blocked_item_types="VM| MU|" inhouse_item_types="" allow_fields="" />'
    )
    account = load_sip_config(path).accounts["joe"]
    assert account.hide_fields == frozenset({"AE", "BD", "BF"})
    assert account.blocked_item_types == frozenset({"VM", "MU"})
    assert account.inhouse_item_types == frozenset()
    assert account.allow_fields is None


def test_odd_field_ids_in_hide_fields_are_warned(sip_file):
    path, _ = sip_file(logins='<login id="joe" institution="CPL" hide_fields="AE,ABC" />')
    config = load_sip_config(path)
    assert config.accounts["joe"].hide_fields == frozenset({"AE", "ABC"})
    assert "'ABC' are not two-character field ids" in config.warnings[0]


def test_empty_values_mean_unset(sip_file):
    path, _ = sip_file(
        logins='<login id="joe" institution="CPL" register_id="" encoding="" '
        'ae_field_template="" convert_nonprinting_characters="" cr_item_field="" '
        'lost_block_checkout_value="" seen_on_item_information="" />'
    )
    account = load_sip_config(path).accounts["joe"]
    assert account.register_id is None
    assert account.encoding is None
    assert account.ae_field_template is None
    assert account.convert_nonprinting_characters is None
    assert account.cr_item_field == "collection_code"
    assert account.lost_block_checkout_value == 1
    assert account.seen_on_item_information is None


def test_password_is_kept_exactly(sip_file):
    path, _ = sip_file(logins='<login id="joe" institution="CPL" password=" p w " />')
    assert load_sip_config(path).accounts["joe"].password == " p w "


def test_per_account_delimiter_is_ignored_with_a_warning(sip_file):
    path, _ = sip_file(logins='<login id="joe" institution="CPL" delimiter="^" />')
    config = load_sip_config(path)
    assert config.accounts["joe"].delimiter == "^"
    assert config.delimiter == "|"
    assert "per-account delimiter '^' is ignored" in config.warnings[0]


def test_login_ids_differing_in_case_are_warned(sip_file):
    path, _ = sip_file(
        logins='<login id="joe" institution="CPL" />\n<login id="Joe" institution="CPL" />'
    )
    config = load_sip_config(path)
    assert set(config.accounts) == {"joe", "Joe"}
    assert "differ only in case" in config.warnings[0]


def test_account_syspref_overrides(sip_file):
    path, _ = sip_file(
        logins='<login id="joe" institution="CPL">\n<syspref_overrides>\n'
        "<AllFinesNeedOverride> 0 </AllFinesNeedOverride>\n<Empty/>\n"
        "</syspref_overrides>\n</login>"
    )
    assert load_sip_config(path).accounts["joe"].syspref_overrides == {
        "AllFinesNeedOverride": "0",
        "Empty": "",
    }


def test_no_accounts_is_a_warning(sip_file):
    path, _ = sip_file(logins="")
    config = load_sip_config(path)
    assert config.accounts == {}
    assert "nobody can log in" in config.warnings[0]


# --------------------------------------------------------------------------------------------
# Listeners
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("services", "conflict"),
    [
        (
            '<service port="127.0.0.1:6001/tcp" transport="RAW" />\n'
            '<service port="127.0.0.1:6001/tcp/IPv4" transport="telnet" />',
            True,
        ),
        (
            '<service port="*:6001/tcp" transport="RAW" />\n'
            '<service port="127.0.0.1:6001/tcp" transport="telnet" />',
            True,
        ),
        (
            '<service port="10.0.0.1:6001/tcp" transport="RAW" />\n'
            '<service port="6001/tcp" transport="telnet" />',
            True,
        ),
        (
            '<service port="[::1]:6001/tcp" transport="RAW" />\n'
            '<service port="0.0.0.0:6001" transport="telnet" />',
            True,
        ),
        (
            '<service port="LocalHost:6001" transport="RAW" />\n'
            '<service port="localhost:6001/tcp" transport="telnet" />',
            True,
        ),
        (
            '<service port="127.0.0.1:6001/tcp" transport="RAW" />\n'
            '<service port="127.0.0.2:6001/tcp" transport="telnet" />',
            False,
        ),
        (
            '<service port="6001/tcp" transport="RAW" />\n'
            '<service port="8023/tcp" transport="telnet" />',
            False,
        ),
    ],
)
def test_two_services_on_one_address(sip_file, services, conflict):
    path, text = sip_file(services=services)
    if not conflict:
        assert len(load_sip_config(path).services) == 2
        return
    with pytest.raises(ConfigError) as caught:
        load_sip_config(path)
    first = line_of(text, "<service")
    second = line_of(text, "<service", 2)
    assert caught.value.line == second
    assert f"(line {first})" in caught.value.message
    assert caught.value.message.startswith("two services on the same address")


@pytest.mark.parametrize(
    ("port", "message"),
    [
        ("0", "bad port '0'"),
        ("65536/tcp", "bad port '65536'"),
        ("127.0.0.1:http/tcp", "bad port 'http'"),
        ("127.0.0.1:/tcp", "bad port ''"),
        ("", "missing port"),
        ("6001/udp", "/udp is not supported"),
    ],
)
def test_bad_port(sip_file, port, message):
    path, text = sip_file(services=f'<service port="{port}" transport="RAW" />')
    with pytest.raises(ConfigError) as caught:
        load_sip_config(path)
    assert caught.value.line == line_of(text, "<service")
    assert message in caught.value.message


def test_service_without_port(sip_file):
    path, text = sip_file(services='<service transport="RAW" />')
    with pytest.raises(ConfigError) as caught:
        load_sip_config(path)
    assert (
        str(caught.value) == f"{path}:{line_of(text, '<service')}: <service> has no port attribute"
    )


@pytest.mark.parametrize("transport", ["http", "SIP2", ""])
def test_unknown_transport(sip_file, transport):
    path, text = sip_file(services=f'<service port="6001/tcp" transport="{transport}" />')
    with pytest.raises(ConfigError) as caught:
        load_sip_config(path)
    assert caught.value.line == line_of(text, "<service")
    assert caught.value.message.startswith(f"unknown transport {transport!r}")


def test_missing_transport_is_unknown(sip_file):
    path, _ = sip_file(services='<service port="6001/tcp" />')
    with pytest.raises(ConfigError, match="unknown transport"):
        load_sip_config(path)


@pytest.mark.parametrize(("transport", "expected"), [("raw", "RAW"), ("TELNET", "telnet")])
def test_transport_case_insensitive(sip_file, transport, expected):
    path, _ = sip_file(services=f'<service port="6001/tcp" transport="{transport}" />')
    assert load_sip_config(path).services[0].transport == expected


def test_no_services_is_an_error(sip_file):
    path, text = sip_file(services="")
    with pytest.raises(ConfigError) as caught:
        load_sip_config(path)
    assert caught.value.line == line_of(text, "<acsconfig")
    assert "nothing to listen on" in caught.value.message


@pytest.mark.parametrize(
    ("attribute", "message"),
    [
        ('timeout="sixty"', "timeout='sixty' is not an integer"),
        ('timeout="-1"', "out of range"),
        ('max_line_length="100"', "max_line_length='100' is out of range: must be 256..1048576"),
        ('max_line_length="2000000"', "out of range"),
        ('proxy_protocol="v3"', "proxy_protocol='v3' is not supported: use v1 or v2"),
    ],
)
def test_bad_service_values(sip_file, attribute, message):
    path, text = sip_file(services=f'<service port="6001/tcp" transport="RAW" {attribute} />')
    with pytest.raises(ConfigError) as caught:
        load_sip_config(path)
    assert caught.value.line == line_of(text, "<service")
    assert message in caught.value.message


@pytest.mark.parametrize(("value", "expected"), [("V1", "v1"), ("v2", "v2"), ("", None)])
def test_proxy_protocol(sip_file, value, expected):
    path, _ = sip_file(
        services=f'<service port="6001/tcp" transport="RAW" proxy_protocol="{value}" />'
    )
    assert load_sip_config(path).services[0].proxy_protocol == expected


def test_unknown_service_attribute_is_a_warning(sip_file):
    path, text = sip_file(services='<service port="6001/tcp" transport="RAW" colour="red" />')
    config = load_sip_config(path)
    assert config.warnings == (
        f"{path}:{line_of(text, '<service')}: unknown <service> attribute 'colour' ignored",
    )


# --------------------------------------------------------------------------------------------
# TLS attributes
# --------------------------------------------------------------------------------------------


def test_tls_relative_paths_resolve_against_the_config_directory(certificate_pair, write_file):
    cert, key = certificate_pair
    services = (
        '<service port="127.0.0.1:6443/tcp" transport="RAW" tls_certificate="tls/sip.pem" '
        'tls_private_key="tls/sip.key" tls_chain="tls/sip.pem" tls_client_ca="tls/sip.pem" '
        'tls_min_version="1.3" tls_ciphers="ECDHE+AESGCM" />'
    )
    # SIPconfig.xml next to the tls/ directory of the certificate fixture.
    path = cert.parent.parent / "SIPconfig.xml"
    path.write_text(build_sip_xml(services=services))
    (service,) = load_sip_config(path).services
    assert service.tls is True
    assert service.tls_certificate == str(cert)
    assert service.tls_private_key == str(key)
    assert service.tls_chain == str(cert)
    assert service.tls_client_ca == str(cert)
    assert service.tls_min_version == "1.3"
    assert service.tls_ciphers == "ECDHE+AESGCM"


def test_tls_absolute_paths_and_defaults(certificate_pair, sip_file):
    cert, key = certificate_pair
    path, _ = sip_file(
        services=f'<service port="6443/tcp" transport="RAW" tls_certificate="{cert}" '
        f'tls_private_key="{key}" />'
    )
    (service,) = load_sip_config(path).services
    assert service.tls and service.tls_certificate == str(cert)
    assert (service.tls_min_version, service.tls_ciphers, service.tls_chain) == ("1.2", None, None)


@pytest.mark.parametrize(
    ("attributes", "message"),
    [
        ('tls_certificate="{cert}"', "tls_certificate is set but tls_private_key is not"),
        ('tls_private_key="{key}"', "tls_private_key is set but tls_certificate is not"),
        ('tls_client_ca="{cert}"', "tls_client_ca needs tls_certificate and tls_private_key"),
        ('tls_min_version="1.3"', "tls_min_version needs tls_certificate"),
        (
            'tls_certificate="{cert}" tls_private_key="{key}" tls_min_version="1.1"',
            "tls_min_version='1.1' is not supported: use 1.2 or 1.3",
        ),
        (
            'tls_certificate="{cert}" tls_private_key="missing.key"',
            "tls_private_key: file not found: ",
        ),
    ],
)
def test_tls_errors(certificate_pair, sip_file, attributes, message):
    cert, key = certificate_pair
    attrs = attributes.format(cert=cert, key=key)
    path, text = sip_file(services=f'<service port="6443/tcp" transport="RAW" {attrs} />')
    with pytest.raises(ConfigError) as caught:
        load_sip_config(path)
    assert caught.value.line == line_of(text, "<service")
    assert message in caught.value.message


# --------------------------------------------------------------------------------------------
# Timeouts (koha-sip-and-ldap §3.4, SIPServer.t get_timeout)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("service_timeout", "global_timeout", "client_timeout", "login", "idle"),
    [
        (None, None, None, 30, 30),  # nothing configured: the fallback
        ("60", None, None, 60, 60),  # no client_timeout: idle = login timeout
        (None, "45", None, 45, 45),  # top-level timeout
        ("0", "45", None, 45, 45),  # zero falls through
        ("", "45", None, 45, 45),  # empty falls through
        ("0", "0", None, 30, 30),
        ("60", "45", "600", 60, 600),
        (None, None, "600", 30, 600),
        ("60", None, "0", 60, None),  # 0: no idle timeout
        ("60", None, "000", 60, None),  # all zeros: no idle timeout
        ("60", None, "", 60, None),  # empty: no idle timeout
        ("60", None, "10m", 60, None),  # not digits: no idle timeout (and a warning)
        ("60", None, "007", 60, 7),
    ],
)
def test_timeouts_table(sip_file, service_timeout, global_timeout, client_timeout, login, idle):
    attrs = ""
    if service_timeout is not None:
        attrs += f' timeout="{service_timeout}"'
    if client_timeout is not None:
        attrs += f' client_timeout="{client_timeout}"'
    root_attrs = f' timeout="{global_timeout}"' if global_timeout is not None else ""
    path, _ = sip_file(
        services=f'<service port="6001/tcp" transport="RAW"{attrs} />', root_attrs=root_attrs
    )
    config = load_sip_config(path)
    (service,) = config.services
    assert config.login_timeout(service) == login
    assert config.idle_timeout(service) == idle
    assert bool(config.warnings) is (client_timeout == "10m")


def test_top_level_timeout_as_an_element(sip_file):
    path, _ = sip_file(top="<timeout>20</timeout>")
    config = load_sip_config(path)
    assert config.timeout == 20
    assert config.login_timeout(dataclasses.replace(config.services[0], timeout=None)) == 20


def test_timeout_methods_on_constructed_config():
    service = ServiceConfig(address=parse_listen_address("6001/tcp"))
    config = SIPConfig(path="x.xml", services=(service,), timeout=12)
    assert config.login_timeout(service) == 12
    assert config.idle_timeout(service) == 12
    assert config.idle_timeout(dataclasses.replace(service, client_timeout="0")) is None


# --------------------------------------------------------------------------------------------
# Institutions and policies
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        ("y", True),
        ("Yes", True),
        ("1", True),
        ("42", True),
        ("-1", True),
        ("false", False),
        ("no", False),
        ("n", False),
        ("0", False),
        ("", False),
        (None, False),
        ("maybe", False),
    ],
)
def test_to_bool(value, expected):
    assert to_bool(value) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, False), ("", False), ("0", False), ("1", True), ("false", True), ("0.0", True)],
)
def test_perl_bool(value, expected):
    assert perl_bool(value) is expected


def test_policy_renewal_false_is_false(sip_file):
    # Koha reports renewal="false" as Y (Perl truthiness); this server fixes that.
    path, _ = sip_file(
        institutions='<institution id="CPL"><policy renewal="false" checkin="true" /></institution>'
    )
    policy = load_sip_config(path).institutions["CPL"].policy
    assert policy.renewal is False
    assert policy.checkin is True


@pytest.mark.parametrize(
    ("attrs", "timeout", "retries", "warnings"),
    [
        ('timeout="100" retries="5"', 100, 5, 0),
        ("", 0, 0, 0),
        ('timeout="1000" retries="5"', 0, 5, 1),
        ('timeout="abc" retries="-1"', 0, 0, 2),
        ('timeout="999" retries="0"', 999, 0, 0),
    ],
)
def test_policy_timeout_and_retries(sip_file, attrs, timeout, retries, warnings):
    path, text = sip_file(
        institutions=f'<institution id="CPL">\n<policy checkin="true" {attrs} />\n</institution>'
    )
    config = load_sip_config(path)
    policy = config.institutions["CPL"].policy
    assert (policy.timeout, policy.retries) == (timeout, retries)
    assert len(config.warnings) == warnings
    for warning in config.warnings:
        assert warning.startswith(f"{path}:{line_of(text, '<policy')}: policy ")


def test_policy_non_boolean_flag_is_warned(sip_file):
    path, _ = sip_file(
        institutions='<institution id="CPL"><policy checkout="sometimes" /></institution>'
    )
    config = load_sip_config(path)
    assert config.institutions["CPL"].policy.checkout is False
    assert 'checkout="sometimes" is not a boolean' in config.warnings[0]


def test_institution_without_policy_has_default_policy(sip_file):
    path, _ = sip_file(institutions='<institution id="CPL" />')
    institution = load_sip_config(path).institutions["CPL"]
    assert institution.policy == PolicyConfig()
    assert institution.implementation == "ILS"


def test_institution_errors(sip_file):
    path, text = sip_file(
        institutions=DEFAULT_INSTITUTIONS + '\n<institution id="CPL" implementation="ILS" />'
    )
    with pytest.raises(ConfigError) as caught:
        load_sip_config(path)
    first = line_of(text, '<institution id="CPL"')
    second = line_of(text, '<institution id="CPL" implementation="ILS" />')
    assert str(caught.value) == (
        f"{path}:{second}: institution id 'CPL' is defined twice (lines {first} and {second})"
    )

    path, text = sip_file(institutions='<institution implementation="ILS" />')
    with pytest.raises(ConfigError) as caught:
        load_sip_config(path)
    assert (
        str(caught.value) == f"{path}:{line_of(text, '<institution impl')}: <institution> has no id"
    )

    path, text = sip_file(
        institutions='<institution id="CPL">\n<policy checkin="1" />\n<policy checkin="0" />\n'
        "</institution>"
    )
    with pytest.raises(ConfigError) as caught:
        load_sip_config(path)
    assert caught.value.line == line_of(text, "<policy", 2)
    assert "second <policy>" in caught.value.message


def test_other_implementation_is_warned(sip_file):
    path, _ = sip_file(institutions='<institution id="CPL" implementation="My::ILS" />')
    config = load_sip_config(path)
    assert config.institutions["CPL"].implementation == "My::ILS"
    assert "built-in ILS" in config.warnings[0]


# --------------------------------------------------------------------------------------------
# Top level: server-params, syspref overrides, delimiter, error-detect, unknown elements
# --------------------------------------------------------------------------------------------


def test_server_params_child_elements_and_unknown_options(sip_file):
    path, text = sip_file(
        top="<server-params min_servers='1' frobnicate='yes' custom_tcp_keepalive='1' "
        "custom_tcp_keepalive_time='0' custom_tcp_keepalive_intvl='soon'>\n"
        '<max_servers value="3" />\n<user>koha</user>\n</server-params>'
    )
    config = load_sip_config(path)
    params = config.server_params
    assert params.custom_tcp_keepalive is True
    assert params.custom_tcp_keepalive_time is None  # 0 is ignored, as in Koha
    assert params.custom_tcp_keepalive_intvl is None
    assert params.workers is None
    assert params.ignored == {
        "min_servers": "1",
        "frobnicate": "yes",
        "max_servers": "3",
        "user": "koha",
    }
    line = line_of(text, "<server-params")
    assert config.warnings == (
        f"{path}:{line}: unknown server-params option 'frobnicate' ignored",
        f'{path}:{line}: custom_tcp_keepalive_intvl="soon" is not a positive number of '
        "seconds; the kernel default is used",
    )


def test_server_params_bad_workers(sip_file):
    path, text = sip_file(top="<server-params workers='0' />")
    with pytest.raises(ConfigError) as caught:
        load_sip_config(path)
    assert caught.value.line == line_of(text, "<server-params")
    assert "workers='0' is out of range" in caught.value.message


@pytest.mark.parametrize(
    ("written", "seconds"),
    [
        ("reference_max_age='0'", 0.0),
        ("reference_max_age=' 2.5 '", 2.5),
        ("reference_max_age='3600'", 3600.0),
        ("min_servers='1'>\n<reference_max_age value='.5' /></server-params", 0.5),
        ("", None),
    ],
)
def test_server_params_reference_max_age(sip_file, written, seconds):
    closing = "" if written.endswith("server-params") else " /"
    path, _text = sip_file(top=f"<server-params {written}{closing}>")
    config = load_sip_config(path)
    assert config.server_params.reference_max_age == seconds
    assert "reference_max_age" not in config.server_params.ignored
    assert config.warnings == ()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("soon", "reference_max_age='soon' is not a number of seconds"),
        ("", "reference_max_age='' is not a number of seconds"),
        ("1e3", "reference_max_age='1e3' is not a number of seconds"),
        ("nan", "reference_max_age='nan' is not a number of seconds"),
        ("-1", "reference_max_age='-1' is out of range: must be at least 0"),
    ],
)
def test_server_params_bad_reference_max_age(sip_file, value, message):
    path, text = sip_file(top=f"<server-params min_servers='1' reference_max_age='{value}' />")
    with pytest.raises(ConfigError) as caught:
        load_sip_config(path)
    assert caught.value.line == line_of(text, "<server-params")
    assert caught.value.message == message
    assert str(caught.value).startswith(f"{path}:{caught.value.line}: ")


def test_old_syspref_overrides_spelling_is_ignored_with_a_warning(sip_file):
    path, text = sip_file(
        top="<syspref-overrides><AllFinesNeedOverride>0</AllFinesNeedOverride></syspref-overrides>"
    )
    config = load_sip_config(path)
    assert config.syspref_overrides == {}
    assert config.warnings[0].startswith(f"{path}:{line_of(text, '<syspref-overrides')}: ")
    assert "old spelling" in config.warnings[0]


def test_duplicate_syspref_override_last_wins(sip_file):
    path, _ = sip_file(top="<syspref_overrides><A>1</A>\n<A>2</A></syspref_overrides>")
    config = load_sip_config(path)
    assert config.syspref_overrides == {"A": "2"}
    assert "given twice" in config.warnings[0]


@pytest.mark.parametrize(
    ("top", "root_attrs", "expected"),
    [
        ("", "", "|"),
        ("<delimiter>^</delimiter>", "", "^"),
        ("", ' delimiter="~"', "~"),
    ],
)
def test_top_level_delimiter(sip_file, top, root_attrs, expected):
    path, _ = sip_file(top=top, root_attrs=root_attrs)
    assert load_sip_config(path).delimiter == expected


@pytest.mark.parametrize("value", ["||", ""])
def test_bad_delimiter(sip_file, value):
    path, text = sip_file(top=f'<delimiter value="{value}" />')
    with pytest.raises(ConfigError) as caught:
        load_sip_config(path)
    assert caught.value.line == line_of(text, "<delimiter")


@pytest.mark.parametrize(
    ("value", "expected"),
    [("true", True), ("enabled", True), ("1", True), ("false", False), ("disabled", False)],
)
def test_error_detect(sip_file, value, expected):
    path, _ = sip_file(top=f'<error-detect enabled="{value}" />')
    config = load_sip_config(path)
    assert config.error_detect is expected
    assert config.warnings == ()


def test_bad_top_level_timeout(sip_file):
    path, text = sip_file(top="<timeout>soon</timeout>")
    with pytest.raises(ConfigError) as caught:
        load_sip_config(path)
    assert caught.value.line == line_of(text, "<timeout")


def test_unknown_top_level_element_is_a_warning(sip_file):
    path, text = sip_file(top="<colour>red</colour>")
    config = load_sip_config(path)
    assert config.warnings == (
        f"{path}:{line_of(text, '<colour')}: unknown element <colour> ignored",
    )


def test_path_is_kept_as_given(sip_file):
    path, _ = sip_file()
    assert load_sip_config(str(path)).path == str(path)
    assert load_sip_config(path).path == str(path)
