"""SIP configuration from Koha's sip_* tables (Koha bug 37893): the mapping and its messages.

Rows are given as the database returns them (dicts); the tests of reading them from real
databases are in ``tests/db/test_sipconfig_tables.py``.
"""

from __future__ import annotations

import dataclasses

import pytest
from config_helpers import line_of

from koha_gateway.config import ConfigError, load_sip_config
from koha_gateway.config.sipdb import DATABASE_SOURCE, build_config, database_sections
from koha_gateway.db.sipconfig_tables import SIP_TABLES, SipTables


def tables(**rows) -> SipTables:
    """Every SIP table present; those not given are empty."""
    return SipTables(rows={table: list(rows.get(table, [])) for table in SIP_TABLES})


def institution(id=1, name="CPL", **columns):
    # Koha's column defaults (Koha/Schema/Result/SipInstitution.pm)
    row = {
        "sip_institution_id": id,
        "name": name,
        "implementation": "ILS",
        "checkin": 1,
        "checkout": 1,
        "offline": None,
        "renewal": 0,
        "retries": 5,
        "status_update": None,
        "timeout": 100,
    }
    row.update(columns)
    return row


ACCOUNT_COLUMNS = [
    "ae_field_template",
    "allow_additional_materials_checkout",
    "allow_empty_passwords",
    "allow_fields",
    "av_field_template",
    "blocked_item_types",
    "checked_in_ok",
    "convert_nonprinting_characters",
    "cr_item_field",
    "ct_always_send",
    "cv_send_00_on_success",
    "cv_triggers_alert",
    "da_field_template",
    "disallow_overpayment",
    "encoding",
    "error_detect",
    "format_due_date",
    "hide_fields",
    "holds_block_checkin",
    "holds_get_captured",
    "inhouse_item_types",
    "inhouse_patron_categories",
    "lost_block_checkout",
    "lost_block_checkout_value",
    "lost_status_for_missing",
    "overdues_block_checkout",
    "payment_type_writeoff",
    "prevcheckout_block_checkout",
    "register_id",
    "seen_on_item_information",
    "send_patron_home_library_in_af",
    "show_checkin_message",
    "show_outstanding_amount",
]


def account(id=3, login="kiosk1", institution_id=1, **columns):
    """A sip_accounts row as Koha stores a new account: every option NULL."""
    row = {"sip_account_id": id, "sip_institution_id": institution_id, "login_id": login}
    row.update(dict.fromkeys(ACCOUNT_COLUMNS))
    row.update(delimiter="|", terminator="CRLF")
    row.update(columns)
    return row


def listener(id=1, port="127.0.0.1:6001/tcp", **columns):
    row = {
        "sip_listener_id": id,
        "client_timeout": None,
        "port": port,
        "protocol": "SIP/2.00",
        "timeout": 60,
        "transport": "RAW",
    }
    row.update(columns)
    return row


def without_location(item):
    return dataclasses.replace(item, line=0, origin=None)


# -- the same dataclasses as the file -----------------------------------------------------------


KITCHEN_LOGIN = (
    '<login id="kiosk1" institution="CPL" hide_fields="BD,BE" allow_fields="" '
    'holds_get_captured="0" lost_block_checkout="2" lost_block_checkout_value="3" '
    'terminator="CR" error-detect="enabled" cr_item_field="shelving_location" '
    'seen_on_item_information="mark_found" blocked_item_types="VM|MU" '
    'inhouse_item_types="REF,MAP" register_id="4" show_outstanding_amount="1" '
    'ae_field_template="[% patron.firstname %]">\n'
    '  <screen_msg_regex find="Greetings from Koha." replace="Welcome!"/>\n'
    '  <patron_attribute field="XY" code="CODE"/>\n'
    '  <custom_patron_field field="DE" template="[% patron.dateexpiry %]"/>\n'
    '  <item_field field="ZY" code="permanent_location"/>\n'
    '  <custom_item_field field="IN" template="[% item.itemnumber %]"/>\n'
    '  <sort_bin_mapping mapping="CPL:itype:eq:BK:1"/>\n'
    '  <sort_bin_mapping mapping="CPL:location:eq:OFFICE:2"/>\n'
    "  <syspref_overrides><noissuescharge>10</noissuescharge></syspref_overrides>\n"
    "</login>"
)


def kitchen_rows():
    return tables(
        sip_institutions=[institution(renewal=1)],
        sip_accounts=[
            account(
                hide_fields="BD,BE",
                allow_fields="",
                holds_get_captured=0,
                lost_block_checkout=2,
                lost_block_checkout_value=3,
                terminator="CR",
                error_detect=1,
                cr_item_field="shelving_location",
                seen_on_item_information="mark_found",
                blocked_item_types="VM|MU",
                inhouse_item_types="REF,MAP",
                register_id=4,
                show_outstanding_amount=1,
                ae_field_template="[% patron.firstname %]",
            )
        ],
        sip_account_screen_msg_regexs=[
            {
                "sip_account_screen_msg_regex_id": 1,
                "sip_account_id": 3,
                "find": "Greetings from Koha.",
                "replace": "Welcome!",
            }
        ],
        sip_account_patron_attributes=[
            {
                "sip_account_patron_attribute_id": 1,
                "sip_account_id": 3,
                "field": "XY",
                "code": "CODE",
            }
        ],
        sip_account_custom_patron_fields=[
            {
                "sip_account_custom_patron_field_id": 1,
                "sip_account_id": 3,
                "field": "DE",
                "template": "[% patron.dateexpiry %]",
            }
        ],
        sip_account_item_fields=[
            {
                "sip_account_item_field_id": 1,
                "sip_account_id": 3,
                "field": "ZY",
                "code": "permanent_location",
            }
        ],
        sip_account_custom_item_fields=[
            {
                "sip_account_custom_item_field_id": 1,
                "sip_account_id": 3,
                "field": "IN",
                "template": "[% item.itemnumber %]",
            }
        ],
        sip_account_sort_bin_mappings=[
            {
                "sip_account_sort_bin_mapping_id": 1,
                "sip_account_id": 3,
                "mapping": "CPL:itype:eq:BK:1",
            },
            {
                "sip_account_sort_bin_mapping_id": 2,
                "sip_account_id": 3,
                "mapping": "CPL:location:eq:OFFICE:2",
            },
        ],
        sip_account_system_preference_overrides=[
            {
                "sip_account_system_preference_override_id": 1,
                "sip_account_id": 3,
                "variable": "noissuescharge",
                "value": "10",
            }
        ],
    )


def test_an_account_from_its_rows_is_the_same_account_as_in_the_file(sip_file):
    path, _ = sip_file(logins=KITCHEN_LOGIN)
    from_file = load_sip_config(path).accounts["kiosk1"]
    config = build_config(path, kitchen_rows())
    from_rows = config.accounts["kiosk1"]
    assert without_location(from_rows) == without_location(from_file)
    assert from_rows.origin == "sip_accounts id=3 (login kiosk1)"
    assert config.where(from_rows) == "sip_accounts id=3 (login kiosk1)"
    # the values really came through (not defaults on both sides)
    assert from_rows.hide_fields == frozenset({"BD", "BE"})
    assert from_rows.holds_get_captured is False and from_rows.error_detect is True
    assert from_rows.sort_bin_mappings == ("CPL:itype:eq:BK:1", "CPL:location:eq:OFFICE:2")
    assert from_rows.syspref_overrides == {"noissuescharge": "10"}
    assert from_rows.terminator == "CR" and from_rows.register_id == 4


def test_a_new_account_with_every_option_null_takes_the_files_defaults(sip_file):
    path, _ = sip_file(logins='<login id="kiosk1" institution="CPL"/>')
    from_file = load_sip_config(path).accounts["kiosk1"]
    config = build_config(path, tables(sip_institutions=[institution()], sip_accounts=[account()]))
    assert without_location(config.accounts["kiosk1"]) == without_location(from_file)
    assert config.accounts["kiosk1"].holds_get_captured is True


def test_institution_rows_with_kohas_defaults_map_to_the_policy_koha_reports():
    config = build_config(
        None,
        tables(
            sip_institutions=[
                institution(),
                institution(2, "KIL", checkin=0, renewal=1, offline=1, status_update=0, retries=3),
            ],
            sip_listeners=[listener()],
        ),
    )
    cpl, kil = config.institutions["CPL"], config.institutions["KIL"]
    assert (cpl.policy.checkin, cpl.policy.checkout, cpl.policy.renewal) == (True, True, False)
    assert (cpl.policy.offline, cpl.policy.status_update) == (False, False)
    assert (cpl.policy.timeout, cpl.policy.retries) == (100, 5)
    assert (kil.policy.checkin, kil.policy.renewal, kil.policy.offline) == (False, True, True)
    assert kil.policy.retries == 3 and kil.implementation == "ILS"
    assert kil.origin == "sip_institutions id=2 (institution KIL)"


def test_listeners_server_params_and_global_overrides_from_rows(sip_file):
    config = build_config(
        None,
        tables(
            sip_institutions=[institution()],
            sip_accounts=[account()],
            sip_listeners=[
                listener(),
                listener(2, "127.0.0.1:8023/tcp", transport="telnet", client_timeout=600),
            ],
            sip_server_params=[
                {"sip_server_param_id": 1, "key": "config_timestamp", "value": "1733300000"},
                {"sip_server_param_id": 2, "key": "custom_tcp_keepalive", "value": "1"},
                {"sip_server_param_id": 3, "key": "min_servers", "value": "1"},
                {"sip_server_param_id": 4, "key": "reference_max_age", "value": "30"},
            ],
            sip_system_preference_overrides=[
                {
                    "sip_system_preference_override_id": 1,
                    "variable": "noissuescharge",
                    "value": "5",
                },
                {
                    "sip_system_preference_override_id": 2,
                    "variable": "noissuescharge",
                    "value": "7",
                },
            ],
        ),
    )
    assert config.path == DATABASE_SOURCE
    assert [(s.address.port, s.transport, s.timeout) for s in config.services] == [
        (6001, "RAW", 60),
        (8023, "telnet", 60),
    ]
    assert config.idle_timeout(config.services[1]) == 600
    assert config.services[1].origin == "sip_listeners id=2 (port 127.0.0.1:8023/tcp)"
    assert config.server_params.custom_tcp_keepalive is True
    assert config.server_params.ignored == {"min_servers": "1"}
    assert config.server_params.reference_max_age == 30.0
    assert config.syspref_overrides == {"noissuescharge": "7"}
    assert (
        "sip_system_preference_overrides id=2 (noissuescharge): syspref override "
        "'noissuescharge' given twice; the last one wins" in config.warnings
    )
    assert config.from_database == frozenset(
        {"accounts", "institutions", "listeners", "server-params", "syspref_overrides"}
    )


# -- which source wins -----------------------------------------------------------------------


def test_a_section_comes_from_its_table_when_the_table_has_rows_else_from_the_file(sip_file):
    # The file's login names an institution the database does not have: it is not read at all,
    # since sip_accounts has rows (Koha replaces the whole section).
    path, _ = sip_file(logins='<login id="old" institution="GONE"/>')
    config = build_config(path, tables(sip_institutions=[institution()], sip_accounts=[account()]))
    assert set(config.accounts) == {"kiosk1"}
    assert [s.address.port for s in config.services] == [6001]  # the file's listeners
    assert config.services[0].origin is None and config.path == str(path)
    assert config.from_database == frozenset({"accounts", "institutions"})


def test_empty_tables_leave_the_file_in_force(sip_file):
    path, _ = sip_file()
    assert database_sections(tables()) == frozenset()
    config = build_config(path, tables())
    assert config == load_sip_config(path)
    assert database_sections(SipTables(rows={"sip_listeners": [listener()]})) == frozenset()


def test_institutions_from_the_database_and_accounts_from_the_file(sip_file):
    path, text = sip_file()
    config = build_config(path, tables(sip_institutions=[institution()]))
    assert config.accounts["term1"].line == line_of(text, "<login")
    assert config.institutions["CPL"].origin == "sip_institutions id=1 (institution CPL)"

    with pytest.raises(ConfigError) as err:
        build_config(path, tables(sip_institutions=[institution(name="WEL")]))
    assert str(err.value) == (
        f"{path}:{line_of(text, '<login')}: login 'term1': institution 'CPL' is not defined "
        "in sip_institutions"
    )


def test_without_a_file_the_database_must_name_the_listeners():
    with pytest.raises(ConfigError) as err:
        build_config(None, tables(sip_institutions=[institution()], sip_accounts=[account()]))
    assert str(err.value) == (
        f"{DATABASE_SOURCE}: no listener in sip_listeners or <listeners>: nothing to listen on"
    )


# -- messages name the table and the row ----------------------------------------------------------


def broken(**rows) -> str:
    base = {
        "sip_institutions": [institution()],
        "sip_accounts": [account()],
        "sip_listeners": [listener()],
    }
    base.update(rows)
    with pytest.raises(ConfigError) as err:
        build_config(None, tables(**base))
    return str(err.value)


def test_an_account_whose_institution_row_is_missing():
    assert broken(sip_accounts=[account(institution_id=9)]) == (
        "sip_accounts id=3 (login kiosk1): sip_institution_id=9 is not a row of sip_institutions"
    )


def test_bad_option_values_name_the_account_row():
    assert broken(sip_accounts=[account(encoding="klingon")]) == (
        "sip_accounts id=3 (login kiosk1): encoding='klingon' is not a known character encoding"
    )
    assert broken(sip_accounts=[account(seen_on_item_information="burn")]) == (
        "sip_accounts id=3 (login kiosk1): seen_on_item_information='burn': use mark_found or "
        "keep_lost"
    )


def test_bad_child_rows_name_their_own_table_and_row():
    message = broken(
        sip_account_screen_msg_regexs=[
            {
                "sip_account_screen_msg_regex_id": 7,
                "sip_account_id": 3,
                "find": "(unclosed",
                "replace": "",
            }
        ]
    )
    assert message.startswith(
        "sip_account_screen_msg_regexs id=7: screen_msg_regex find='(unclosed' is not a valid regex"
    )
    assert broken(
        sip_account_item_fields=[
            {"sip_account_item_field_id": 4, "sip_account_id": 3, "field": "ZY", "code": "x; drop"}
        ]
    ) == ("sip_account_item_fields id=4: item_field code='x; drop' is not an item column name")
    assert broken(
        sip_account_patron_attributes=[
            {"sip_account_patron_attribute_id": 5, "sip_account_id": 3, "field": "X", "code": "C"}
        ]
    ) == (
        "sip_account_patron_attributes id=5: <patron_attribute> field='X' must be a "
        "two-character SIP field id"
    )


def test_bad_listener_and_server_param_rows():
    assert broken(sip_listeners=[listener(2, transport="SSH")]) == (
        "sip_listeners id=2 (port 127.0.0.1:6001/tcp): unknown transport 'SSH' on "
        "'127.0.0.1:6001/tcp': use RAW or telnet"
    )
    assert broken(sip_listeners=[listener(1), listener(2, "6001/tcp")]) == (
        "sip_listeners id=2 (port 6001/tcp): two services on the same address: '6001/tcp' "
        "conflicts with '127.0.0.1:6001/tcp' (sip_listeners id=1 (port 127.0.0.1:6001/tcp)); "
        "each service needs its own port"
    )
    assert broken(
        sip_server_params=[{"sip_server_param_id": 2, "key": "workers", "value": "many"}]
    ) == ("sip_server_params id=2 (workers): workers='many' is not an integer")
    assert broken(
        sip_server_params=[{"sip_server_param_id": 5, "key": "reference_max_age", "value": "-2"}]
    ) == (
        "sip_server_params id=5 (reference_max_age): reference_max_age='-2' is out of range: "
        "must be at least 0"
    )


def test_login_password_column_and_unknown_columns():
    # Koha's database update wrote login_password; a later Koha dropped the column.
    config = build_config(
        None,
        tables(
            sip_institutions=[institution()],
            sip_accounts=[account(login_password="s3cret", koha_future_option=1)],
            sip_listeners=[listener()],
        ),
    )
    assert config.accounts["kiosk1"].password == "s3cret"
    assert "s3cret" not in repr(config.accounts["kiosk1"])
    assert (
        "sip_accounts id=*: column 'koha_future_option' is not used by this gateway; ignored"
        in config.warnings
    )


def test_fingerprint_follows_every_edit():
    rows = kitchen_rows()
    assert rows.fingerprint() == kitchen_rows().fingerprint()
    edited = kitchen_rows()
    edited.rows["sip_account_sort_bin_mappings"][1]["mapping"] = "CPL:location:eq:OFFICE:3"
    assert edited.fingerprint() != rows.fingerprint()
    assert tables().fingerprint() != rows.fingerprint()


def test_the_xml_message_format_is_unchanged(sip_file):
    path, text = sip_file(
        logins='<login id="joe" institution="CPL"/>\n<login id="joe" institution="CPL"/>'
    )
    with pytest.raises(ConfigError) as err:
        load_sip_config(path)
    first, second = line_of(text, "<login"), line_of(text, "<login", 2)
    assert str(err.value) == (
        f"{path}:{second}: login id 'joe' is defined twice (lines {first} and {second}); "
        "each SIP login id must be unique"
    )
