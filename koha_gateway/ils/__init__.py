"""Koha's library rules over the Koha-shaped schema.

Every function in this package takes one open transaction (``txn``, see
:mod:`koha_gateway.db.engine`), and where it decides or writes circulation, a frozen
:class:`~koha_gateway.ils.context.CircContext` (library, instant, preferences, staff patron,
account options), then plain values. Nothing here imports Twisted, reads the clock or knows the
ACS's request objects: the caller fixes ``now`` when the request arrives, so a whole request is
judged at one instant and tests are repeatable.

The helpers below read ``<login>`` options of SIPconfig.xml the way Koha does (Perl
truthiness), whatever shape the configuration layer gives them (``str``, ``bool``, ``int`` or
``None``), and round money to cents as Koha shows it.
"""

from __future__ import annotations

from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

__all__ = ["account_option", "db_text", "perl_true", "round_money", "sql_date", "sql_datetime"]


def sql_datetime(value: datetime) -> str:
    """``value.strftime("%Y-%m-%d %H:%M:%S")``, the way datetimes are stored.

    ``isoformat`` gives the same text for a datetime of year 1000 or later, for a fraction of
    ``strftime``'s cost (which imports ``time`` and builds a ``struct_time`` per call); anything
    else still goes through ``strftime``."""
    if type(value) is datetime and value.year >= 1000:
        return value.isoformat(" ")[:19]
    return value.strftime("%Y-%m-%d %H:%M:%S")


def sql_date(value: datetime) -> str:
    """``value.strftime("%Y-%m-%d")`` of a datetime, as :func:`sql_datetime`."""
    if type(value) is datetime and value.year >= 1000:
        return value.date().isoformat()
    return value.strftime("%Y-%m-%d")


def perl_true(value: Any) -> bool:
    """Perl's notion of truth, as Koha applies it to SIPconfig attributes and sysprefs.

    ``None``, ``""``, ``"0"``, ``0`` and ``False`` are false; every other value is true
    (including the string ``"false"``: Koha reads ``renewal="false"`` as true).
    """
    if value is None or value is False:
        return False
    if isinstance(value, int | float):
        return value != 0
    text = str(value)
    return text not in ("", "0")


def account_option(account: Any, name: str, default: Any = None) -> Any:
    """The value of the ``<login>`` attribute ``name`` (Koha's spelling) of ``account``.

    Works with the ``AccountConfig`` dataclass and with a plain mapping; a missing attribute
    gives ``default``.
    """
    if account is None:
        return default
    if isinstance(account, dict):
        value = account.get(name, default)
    else:
        value = getattr(account, name, default)
    return default if value is None else value


def round_money(amount: float | int | str | None) -> float:
    """An amount rounded half-up to cents, as Koha shows money (%.2f)."""
    if amount is None or amount == "":
        return 0.0
    return float(Decimal(str(amount)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def db_text(value: str | None) -> str | None:
    """Text from a request made safe to store or compare on every engine.

    PostgreSQL text cannot hold NUL characters (a kiosk may still send one); they are removed.
    """
    if value is None or "\x00" not in value:
        return value
    return value.replace("\x00", "")
