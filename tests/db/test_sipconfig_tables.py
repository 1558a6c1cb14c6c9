"""Reading Koha's SIP configuration tables (Koha bug 37893) from real databases, every engine."""

from __future__ import annotations

import pytest

from koha_gateway.config.sipdb import build_config
from koha_gateway.db.engine import Database, IntegrityError
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


def test_on_kohas_own_schema_register_id_refers_to_a_cash_register(koha_database):
    """MariaDB loaded with Koha's schema: Koha's DDL with its foreign keys on top of it, and the
    rows read back as Koha's staff interface stores them."""
    db = Database.from_url(koha_database)
    try:
        db.run_blocking(create_sip_tables)

        def fill(txn):
            txn.execute("INSERT INTO branches (branchcode, branchname) VALUES (?, ?)", ("CPL", "C"))
            till = txn.insert(
                "INSERT INTO cash_registers (name, description, branch) VALUES (?, ?, ?)",
                ("Kiosk till", "", "CPL"),
                pk="id",
            )
            inst = insert(txn, "sip_institutions", name="CPL")
            kiosk = insert(
                txn, "sip_accounts", sip_institution_id=inst, login_id="kiosk1", register_id=till
            )
            regex = {"sip_account_id": kiosk, "find": "a", "replace": "b"}
            insert(txn, "sip_account_screen_msg_regexs", **regex)
            insert(txn, "sip_server_params", key="custom_tcp_keepalive", value="1")
            listener = {"port": "6001/tcp", "protocol": "SIP/2.00", "transport": "RAW"}
            insert(txn, "sip_listeners", timeout=60, **listener)
            return inst, till

        inst, till = db.run_blocking(fill)
        config = build_config(None, db.run_blocking(read_tables, readonly=True))
        assert config.accounts["kiosk1"].register_id == till
        assert config.accounts["kiosk1"].screen_msg_regex == (("a", "b"),)
        assert config.server_params.custom_tcp_keepalive is True
        # Koha's constraint is there: no account for a till that does not exist
        with pytest.raises(IntegrityError):
            db.run_blocking(
                insert,
                "sip_accounts",
                sip_institution_id=inst,
                login_id="kiosk2",
                register_id=till + 99,
            )
    finally:
        db.close()
