"""The small, typed context every ILS transaction runs in (Koha's user environment).

Koha's circulation code reads the "userenv" (the library and the staff account of the session),
the clock, the system preferences and a few SIP account options. The ILS takes exactly that, as
one frozen :class:`CircContext`, instead of the ACS's request object: the ILS does not know
about SIP messages, sessions or configuration files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

from koha_gateway.ils import account_option, perl_true, sql_date, sql_datetime

__all__ = ["AccountOptions", "CircContext", "staff_borrowernumber"]


def _set_option(value: Any, separator: str) -> frozenset[str]:
    if not value:
        return frozenset()
    if isinstance(value, str):
        return frozenset(part.strip() for part in value.split(separator) if part.strip())
    return frozenset(str(part).strip() for part in value if str(part).strip())


def _int_option(value: Any, default: int) -> int:
    if value is None or value is False or str(value).strip() == "":
        return default
    if value is True:
        return 1
    try:
        return int(str(value).strip())
    except ValueError:
        return default


@dataclass(frozen=True)
class AccountOptions:
    """The ``<login>`` options of SIPconfig.xml that change what the ILS decides or writes,
    read with Koha's truthiness (names are Koha's attribute names)."""

    blocked_item_types: frozenset[str] = frozenset()
    show_outstanding_amount: bool = False
    prevcheckout_block_checkout: bool = False
    allow_additional_materials_checkout: bool = False
    holds_block_checkin: bool = False
    holds_get_captured: bool = True
    checked_in_ok: bool = False
    show_checkin_message: bool = False
    sort_bin_mappings: tuple[str, ...] = ()
    disallow_overpayment: bool = False
    payment_type_writeoff: str | None = None
    register_id: int | None = None
    patron_restriction_blocks_inet: bool = True
    overdues_block_checkout: bool = False
    lost_block_checkout: int = 0
    lost_block_checkout_value: int = 1
    lost_status_for_missing: str | None = None

    @classmethod
    def from_account(cls, account: Any) -> AccountOptions:
        """The options of a ``config.sipconfig.AccountConfig`` (or a plain mapping)."""
        if account is None:
            return cls()
        bins = account_option(account, "sort_bin_mappings", ()) or ()
        if isinstance(bins, str):
            bins = (bins,)
        register = account_option(account, "register_id", None)
        missing = account_option(account, "lost_status_for_missing", None)
        blocks_inet = account_option(account, "patron_restriction_blocks_inet", None)
        if not isinstance(blocks_inet, bool):
            # Koha: any value but "0" (and no value at all) lets a restriction block PI.
            blocks_inet = blocks_inet is None or str(blocks_inet).strip() != "0"
        writeoff = account_option(account, "payment_type_writeoff", None)
        return cls(
            blocked_item_types=_set_option(account_option(account, "blocked_item_types"), "|"),
            show_outstanding_amount=perl_true(account_option(account, "show_outstanding_amount")),
            prevcheckout_block_checkout=perl_true(
                account_option(account, "prevcheckout_block_checkout")
            ),
            allow_additional_materials_checkout=perl_true(
                account_option(account, "allow_additional_materials_checkout")
            ),
            holds_block_checkin=perl_true(account_option(account, "holds_block_checkin")),
            holds_get_captured=perl_true(account_option(account, "holds_get_captured", True)),
            checked_in_ok=perl_true(account_option(account, "checked_in_ok")),
            show_checkin_message=perl_true(account_option(account, "show_checkin_message")),
            sort_bin_mappings=tuple(str(rule) for rule in bins),
            disallow_overpayment=perl_true(account_option(account, "disallow_overpayment")),
            payment_type_writeoff=None if writeoff in (None, "") else str(writeoff),
            register_id=None if register in (None, "") else int(register),
            patron_restriction_blocks_inet=blocks_inet,
            overdues_block_checkout=perl_true(account_option(account, "overdues_block_checkout")),
            lost_status_for_missing=(None if missing in (None, "") else str(missing).strip()),
            lost_block_checkout=_int_option(account_option(account, "lost_block_checkout"), 0),
            lost_block_checkout_value=_int_option(
                account_option(account, "lost_block_checkout_value"), 1
            )
            or 1,
        )


@dataclass(frozen=True)
class CircContext:
    """Where, when and as whom an ILS transaction runs.

    ``branch`` is Koha's userenv branch (the SIP account's institution); ``now`` the instant
    of the request as a naive local datetime (the clock is never read in the ILS);
    ``sysprefs`` an :class:`~koha_gateway.ils.sysprefs.Sysprefs` with every override applied;
    ``staff_borrowernumber`` the borrowernumber of the staff patron the SIP account logs in
    as (Koha's userenv number: ``action_logs.user``, ``manager_id``), ``None`` when it has
    none; ``options`` the account's options; ``interface`` Koha's ``C4::Context->interface``.
    """

    branch: str
    now: datetime
    sysprefs: Any
    staff_borrowernumber: int | None = None
    options: AccountOptions = field(default_factory=AccountOptions)
    interface: str = "sip"

    def __post_init__(self) -> None:
        if self.now.tzinfo is not None or self.now.microsecond:
            object.__setattr__(self, "now", self.now.replace(tzinfo=None, microsecond=0))

    # Computed once per context (cached_property writes the instance's __dict__, which a
    # frozen dataclass allows): a checkout or checkin reads them a dozen times.
    @cached_property
    def now_sql(self) -> str:
        """``YYYY-MM-DD HH:MM:SS``, as datetimes are stored."""
        return sql_datetime(self.now)

    @cached_property
    def today(self) -> str:
        """``YYYY-MM-DD``."""
        return sql_date(self.now)

    def pref(self, name: str, default: str | None = None) -> str | None:
        """A system preference (``default`` when it is not set at all)."""
        if self.sysprefs is None:
            return default
        return self.sysprefs.get(name, default)

    def flag(self, name: str, default: bool = False) -> bool:
        """A yes/no system preference, Koha's truthiness; ``default`` when it is not set."""
        if self.sysprefs is None or name not in self.sysprefs:
            return default
        return perl_true(self.sysprefs.get(name))

    def replace(self, **changes: Any) -> CircContext:
        """A copy with some attributes changed (e.g. the checkin library)."""
        from dataclasses import replace

        return replace(self, **changes)


def staff_borrowernumber(txn, userid: str | None, *, fresh: bool = False) -> int | None:
    """The borrowernumber of the staff patron ``userid`` (the SIP login), or ``None``.

    In the gateway it is remembered by the reference cache until its next check
    (:mod:`koha_gateway.ils.reference`); ``fresh=True`` always reads it (99's reach of the
    database, the start-up checks)."""
    if not userid:
        return None
    if not fresh:
        from koha_gateway.ils import reference

        cache = reference.cache_of(txn)
        if cache is not None:
            return cache.staff_borrowernumber(txn, userid)
    value = txn.scalar("SELECT borrowernumber FROM borrowers WHERE userid = ?", (userid,))
    return None if value is None else int(value)
