"""Which configuration the gateway starts with: SIPconfig.xml, Koha's sip_* tables, or both."""

from __future__ import annotations

import pytest

from koha_gateway.config import ConfigError, load_sip_config
from koha_gateway.configsource import ConfigSource, ConfigSourceError
from koha_gateway.db.engine import Database
from tests.support.koha_sip_tables import create_sip_tables, insert

SIPCONFIG = """<acsconfig xmlns="http://openncip.org/acs-config/1.0/">
  <listeners><service port="127.0.0.1:6001/tcp" transport="RAW"/></listeners>
  <accounts><login id="term1" institution="CPL"/></accounts>
  <institutions><institution id="CPL"/></institutions>
</acsconfig>
"""


@pytest.fixture
def db(tmp_path):
    database = Database.from_url(f"sqlite:///{tmp_path / 'koha.sqlite'}")
    yield database
    database.close()


def options(path=None, **extra):
    result = {"sip-config": str(path) if path else None, "sip_config": None}
    result["sip_config_error"] = None
    if path is not None:
        try:
            result["sip_config"] = load_sip_config(path)
        except ConfigError as exc:
            result["sip_config_error"] = exc
    result.update(extra)
    return result


def koha_rows(txn, *, listener=False, encoding=None):
    create_sip_tables(txn)
    inst = insert(txn, "sip_institutions", name="CPL")
    insert(txn, "sip_accounts", sip_institution_id=inst, login_id="kiosk1", encoding=encoding)
    if listener:
        insert(
            txn,
            "sip_listeners",
            port="127.0.0.1:7001/tcp",
            protocol="SIP/2.00",
            timeout=30,
            transport="RAW",
        )


def test_without_the_tables_the_file_alone(db, tmp_path):
    path = tmp_path / "SIPconfig.xml"
    path.write_text(SIPCONFIG)
    source = ConfigSource(db, options(path))
    config = source.initial()
    assert set(config.accounts) == {"term1"} and not config.from_database
    assert source.fingerprint is None


def test_without_the_tables_a_broken_file_or_no_file_stops_start_up(db, tmp_path):
    path = tmp_path / "SIPconfig.xml"
    path.write_text("<acsconfig><listeners>")
    with pytest.raises(ConfigSourceError) as err:
        ConfigSource(db, options(path)).initial()
    assert str(err.value).startswith(f"{path}:")
    with pytest.raises(ConfigSourceError) as err:
        ConfigSource(db, options()).initial()
    assert str(err.value) == (
        "--sip-config is required: the database has no SIP configuration tables "
        "(sip_accounts, sip_institutions)"
    )


def test_the_tables_complete_a_file_that_is_incomplete_on_its_own(db, tmp_path):
    path = tmp_path / "SIPconfig.xml"
    path.write_text('<acsconfig><error-detect enabled="true"/></acsconfig>')
    db.run_blocking(koha_rows, listener=True)
    source = ConfigSource(db, options(path))
    config = source.initial()
    assert set(config.accounts) == {"kiosk1"} and config.error_detect is True
    assert [s.address.port for s in config.services] == [7001]
    assert source.fingerprint is not None


def test_a_broken_row_stops_start_up_naming_it(db):
    db.run_blocking(koha_rows, listener=True, encoding="klingon")
    with pytest.raises(ConfigSourceError) as err:
        ConfigSource(db, options()).initial()
    assert str(err.value) == (
        "sip_accounts id=1 (login kiosk1): encoding='klingon' is not a known character encoding"
    )
