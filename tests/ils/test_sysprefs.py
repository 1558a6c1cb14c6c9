"""System preferences: table, overrides, Koha truthiness, date formats (section 9)."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from koha_gateway.db.schema import DEFAULT_SYSPREFS
from koha_gateway.ils.sysprefs import Sysprefs, format_date, load, set_syspref


def test_load_returns_the_defaults_of_the_migration(db):
    values = db.run_blocking(load)
    if db.engine.name == "mysql":
        # A Koha database: Koha's own preferences, with the demo library's settings.
        assert (values["dateformat"], values["finesMode"]) == ("iso", "production")
        assert values["Version"] == "23.0600007"
        return
    for name, value in DEFAULT_SYSPREFS.items():
        assert values[name] == value


def test_set_syspref_updates_and_inserts(db):
    db.run_blocking(set_syspref, "noissuescharge", "7.5")
    db.run_blocking(set_syspref, "NewPreference", "x")
    values = db.run_blocking(load)
    assert values["noissuescharge"] == "7.5"
    assert values["NewPreference"] == "x"


def test_set_syspref_is_case_insensitive_on_existing_names(db):
    db.run_blocking(set_syspref, "NOISSUESCHARGE", "9")
    values = db.run_blocking(load)
    assert values["noissuescharge"] == "9"
    assert "NOISSUESCHARGE" not in values


def test_get_is_case_insensitive_and_defaults():
    prefs = Sysprefs({"OverduesBlockCirc": "block"})
    assert prefs.get("overduesblockcirc") == "block"
    assert prefs.get("Missing") is None
    assert prefs.get("Missing", "x") == "x"
    assert "OVERDUESBLOCKCIRC" in prefs


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", True), ("yes", True), ("false", True), ("0", False), ("", False), (None, False)],
)
def test_flag_uses_perl_truthiness(value, expected):
    assert Sysprefs({"X": value}).flag("X") is expected


def test_flag_of_undefined_preference_is_false():
    assert Sysprefs({}).flag("Nothing") is False


@pytest.mark.parametrize(
    ("value", "expected"), [("5", 5.0), (" 2.50 ", 2.5), ("", 9.0), ("abc", 9.0), (None, 9.0)]
)
def test_number(value, expected):
    assert Sysprefs({"N": value}).number("N", 9.0) == expected


def test_overrides_apply_in_order_account_wins():
    base = Sysprefs({"AllFinesNeedOverride": "1", "noissuescharge": "5"})
    merged = base.with_overrides(
        {"allfinesneedoverride": "0", "UseLocationAsAQInSIP": "1"},
        {"AllFinesNeedOverride": "1"},
        None,
    )
    assert merged.get("AllFinesNeedOverride") == "1"
    assert merged.get("UseLocationAsAQInSIP") == "1"
    assert merged.get("noissuescharge") == "5"
    assert base.get("UseLocationAsAQInSIP") is None  # the original is unchanged
    assert len([n for n in merged.names() if n.lower() == "allfinesneedoverride"]) == 1


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ("iso", "2026-03-31"),
        ("us", "03/31/2026"),
        ("metric", "31/03/2026"),
        ("dmydot", "31.03.2026"),
        ("unknown", "2026-03-31"),
    ],
)
def test_format_date(fmt, expected):
    assert format_date("2026-03-31 23:59:00", fmt) == expected
    assert format_date(date(2026, 3, 31), fmt) == expected
    assert format_date(datetime(2026, 3, 31, 10, 0), fmt) == expected
    assert Sysprefs({"dateformat": fmt}).format_date("2026-03-31") == expected


def test_format_date_empty():
    assert format_date(None) == ""
    assert format_date("") == ""
