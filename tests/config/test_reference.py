"""The configuration reference: the readers use its tables, and docs/configuration.md is
generated from them (koha_gateway/config/reference.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from koha_gateway.config import ConfigError, load_sip_config, reference
from koha_gateway.config.sipconfig import _LOGIN_ATTRIBUTES

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "configuration.md"


def test_the_page_is_up_to_date():
    assert PAGE.read_text(encoding="utf-8") == reference.markdown(), (
        "docs/configuration.md is out of date: run `make docs`"
    )


def test_check_mode(tmp_path, capsys):
    stale = tmp_path / "configuration.md"
    stale.write_text("old\n")
    assert reference.main(["--check", str(stale)]) == 1
    assert "is out of date" in capsys.readouterr().err
    assert reference.main(["--write", str(stale)]) == 0
    assert reference.main(["--check", str(stale)]) == 0


def test_login_table_is_the_readers():
    assert reference.names("login") == frozenset(_LOGIN_ATTRIBUTES)


def test_every_setting_has_a_known_koha_column_and_default():
    markdown = reference.markdown()
    for _title, _path, settings in reference.SIPCONFIG.values():
        for setting in settings:
            assert setting.koha in ("yes", "no", "ignored")
            assert f"| `{setting.name}` | " in markdown
    for setting in (*reference.KOHA_CONF, *reference.LDAPSERVER):
        assert setting.koha in ("yes", "no", "ignored")


def _sipconfig(tmp_path, service_attrs: str = "", login_attrs: str = "") -> Path:
    path = tmp_path / "SIPconfig.xml"
    path.write_text(
        f"""<acsconfig xmlns="http://openncip.org/acs-config/1.0/">
  <listeners><service port="127.0.0.1:6001/tcp" transport="RAW" {service_attrs}/></listeners>
  <accounts><login id="joe" institution="WEL" {login_attrs}/></accounts>
  <institutions><institution id="WEL" implementation="ILS">
    <policy checkin="true" checkout="true" renewal="true" status_update="true" offline="false"
            timeout="100" retries="5"/></institution></institutions>
</acsconfig>
"""
    )
    return path


@pytest.mark.parametrize("section", ["service", "login"])
def test_listed_attributes_are_accepted_and_others_warned(tmp_path, section):
    listed = sorted(reference.names(section) - {"port", "id", "institution"})
    # every listed attribute is known to the reader: no "unknown attribute" warning (an empty
    # value the reader refuses shows that it read the attribute too)
    for name in listed:
        try:
            config = load_sip_config(_sipconfig(tmp_path, **{f"{section}_attrs": f'{name}=""'}))
        except ConfigError as exc:
            assert "unknown" not in str(exc), exc
            continue
        assert not [w for w in config.warnings if "unknown" in w and name in w], name
    config = load_sip_config(_sipconfig(tmp_path, **{f"{section}_attrs": 'no_such_thing="1"'}))
    assert any("unknown" in w and "no_such_thing" in w for w in config.warnings)
