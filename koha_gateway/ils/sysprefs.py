"""Koha system preferences as SIP reads them (koha-sip-and-ldap.md section 9).

The values live in the ``systempreferences`` table (seeded with Koha's defaults by the schema
migration). SIPconfig.xml may override any of them, globally (``<syspref_overrides>``) and per
account (``<login><syspref_overrides>``); the account wins, as in Koha's SIP server, which applies
the global overrides first and the account's second before every message.

Koha looks preference names up case-insensitively (``C4::Context->preference`` lower-cases the
name), so this class does the same. Truthiness is Perl's: ``""`` and ``"0"`` are false.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime

from koha_gateway.ils import perl_true

__all__ = ["Sysprefs", "format_date", "load"]


def load(txn) -> dict[str, str]:
    """Every row of ``systempreferences`` as ``{variable: value}`` (NULL values become ``""``)."""
    rows = txn.query("SELECT variable, value FROM systempreferences ORDER BY variable", ())
    return {row["variable"]: "" if row["value"] is None else str(row["value"]) for row in rows}


def set_syspref(txn, name: str, value: str) -> None:
    """Create or change one preference (portable upsert: update, then insert when absent)."""
    existing = txn.one(
        "SELECT variable FROM systempreferences WHERE LOWER(variable) = LOWER(?)", (name,)
    )
    if existing is None:
        txn.execute(
            "INSERT INTO systempreferences (variable, value) VALUES (?, ?)", (name, str(value))
        )
    else:
        txn.execute(
            "UPDATE systempreferences SET value = ? WHERE variable = ?",
            (str(value), existing["variable"]),
        )


class Sysprefs:
    """An immutable view of system preferences with Koha's lookup rules."""

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, object] | None = None):
        folded: dict[str, tuple[str, str]] = {}
        for name, value in (values or {}).items():
            folded[name.lower()] = (name, "" if value is None else str(value))
        self._values = folded

    def get(self, name: str, default: str | None = None) -> str | None:
        """The preference's value as a string, or ``default`` when it is not defined at all."""
        entry = self._values.get(name.lower())
        return default if entry is None else entry[1]

    def flag(self, name: str) -> bool:
        """Koha truthiness of the preference: undefined, ``""`` and ``"0"`` are false."""
        return perl_true(self.get(name))

    def number(self, name: str, default: float = 0.0) -> float:
        """The preference as a number; ``default`` when undefined, empty or not a number."""
        value = self.get(name)
        if value is None or value.strip() == "":
            return default
        try:
            return float(value.strip())
        except ValueError:
            return default

    def with_overrides(self, *overrides: Mapping[str, object] | None) -> Sysprefs:
        """A copy with each mapping applied in turn (pass global first, then account)."""
        merged = {original: value for original, value in self._values.values()}
        lower_to_name = {key: original for key, (original, _) in self._values.items()}
        for mapping in overrides:
            for name, value in (mapping or {}).items():
                previous = lower_to_name.get(name.lower())
                if previous is not None:
                    del merged[previous]
                merged[name] = value
                lower_to_name[name.lower()] = name
        return Sysprefs(merged)

    def names(self) -> Iterable[str]:
        return [original for original, _ in self._values.values()]

    def as_dict(self) -> dict[str, str]:
        return {original: value for original, value in self._values.values()}

    def format_date(self, value: str | date | datetime | None) -> str:
        """``value`` shown in the ``dateformat`` preference (Koha's output_pref, date only)."""
        return format_date(value, self.get("dateformat", "iso") or "iso")

    def __contains__(self, name: str) -> bool:
        return name.lower() in self._values

    def __repr__(self) -> str:
        return f"Sysprefs({len(self._values)} preferences)"


def format_date(value: str | date | datetime | None, dateformat: str = "iso") -> str:
    """A date in Koha's ``dateformat`` preference: ``iso`` (2024-03-31), ``us`` (03/31/2024),
    ``metric`` (31/03/2024), ``dmydot`` (31.03.2024). Unknown formats fall back to ISO.

    Accepts a ``date``/``datetime`` or an ISO string as stored in the database.
    """
    if value is None or value == "":
        return ""
    if isinstance(value, datetime):
        day = value.date()
    elif isinstance(value, date):
        day = value
    else:
        day = date.fromisoformat(str(value)[:10])
    if dateformat == "us":
        return day.strftime("%m/%d/%Y")
    if dateformat == "metric":
        return day.strftime("%d/%m/%Y")
    if dateformat == "dmydot":
        return day.strftime("%d.%m.%Y")
    return day.isoformat()
