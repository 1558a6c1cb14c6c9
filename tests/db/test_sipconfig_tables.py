"""Reading Koha's SIP configuration tables (Koha bug 37893) from real databases, every engine."""

from __future__ import annotations

from koha_gateway.config.sipdb import build_config
from koha_gateway.db.sipconfig_tables import SIP_TABLES, read_tables
from tests.support.koha_sip_tables import create_sip_tables, insert


def _configure(txn):
    inst = insert(txn, "sip_institutions", name="CPL", renewal=1)
    kiosk = insert(
        txn,
        "sip_accounts",
        sip_institution_id=inst,
        login_id="kiosk1",
        hide_fields="BD",
        holds_get_captured=0,
    )
    insert(txn, "sip_account_screen_msg_regexs", sip_account_id=kiosk, find="Koha", replace="Us")
    insert(txn, "sip_account_sort_bin_mappings", sip_account_id=kiosk, mapping="CPL:itype:eq:BK:1")
    insert(
        txn,
        "sip_account_system_preference_overrides",
        sip_account_id=kiosk,
        variable="noissuescharge",
        value="10",
    )
    insert(
        txn,
        "sip_listeners",
        port="127.0.0.1:6001/tcp",
        protocol="SIP/2.00",
        timeout=60,
        transport="RAW",
    )
    insert(txn, "sip_server_params", key="custom_tcp_keepalive", value="1")
    insert(
        txn, "sip_system_preference_overrides", variable="AllowItemsOnHoldCheckoutSIP", value="1"
    )
    return kiosk


def test_no_tables_no_database_configuration(db):
    tables = db.run_blocking(read_tables, readonly=True)
    assert not tables.present and tables.rows == {}


def test_rows_read_in_one_transaction_build_the_configuration(db):
    db.run_blocking(create_sip_tables)
    empty = db.run_blocking(read_tables, readonly=True)
    assert empty.present and set(empty.rows) == set(SIP_TABLES)
    assert all(rows == [] for rows in empty.rows.values())

    kiosk = db.run_blocking(_configure)
    tables = db.run_blocking(read_tables, readonly=True)
    config = build_config(None, tables)
    account = config.accounts["kiosk1"]
    assert account.origin == f"sip_accounts id={kiosk} (login kiosk1)"
    assert account.hide_fields == frozenset({"BD"}) and account.holds_get_captured is False
    assert account.screen_msg_regex == (("Koha", "Us"),)
    assert account.sort_bin_mappings == ("CPL:itype:eq:BK:1",)
    assert account.syspref_overrides == {"noissuescharge": "10"}
    assert account.terminator == "CRLF" and account.delimiter == "|"  # Koha's column defaults
    policy = config.institutions["CPL"].policy
    assert (policy.checkin, policy.renewal, policy.retries, policy.timeout) == (True, True, 5, 100)
    assert [s.address.port for s in config.services] == [6001]
    assert config.server_params.custom_tcp_keepalive is True
    assert config.syspref_overrides == {"AllowItemsOnHoldCheckoutSIP": "1"}

    # An edit in the staff interface changes the fingerprint; reading again does not.
    assert db.run_blocking(read_tables, readonly=True).fingerprint() == tables.fingerprint()
    db.run_blocking(
        lambda txn: txn.execute(
            "UPDATE sip_accounts SET hide_fields = ? WHERE sip_account_id = ?", ("BD,BE", kiosk)
        )
    )
    edited = db.run_blocking(read_tables, readonly=True)
    assert edited.fingerprint() != tables.fingerprint()
    assert build_config(None, edited).accounts["kiosk1"].hide_fields == frozenset({"BD", "BE"})
