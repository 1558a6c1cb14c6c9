"""What a SIP2 request handler knows besides the message itself."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from koha_gateway.ils import sql_datetime


@dataclass
class RequestContext:
    """The context of one SIP2 request, built by the protocol adapter for every message.

    ``account`` and ``institution`` are the ``config.sipconfig`` dataclasses of the logged-in
    SIP account; ``sysprefs`` is an ``ils.sysprefs.Sysprefs`` with the database values and the
    global and per-account ``<syspref_overrides>`` applied (account wins). ``now`` is an aware
    datetime in the server's local time zone: handlers never read the clock themselves.

    ``password_ok`` is the outcome of checking the patron password (AD) against the patron's
    identifier (AA) through the shared authenticator (local hash or LDAP), in the request's
    transaction before the handler runs or before the transaction started: ``None`` when the
    message carried no AD, else True/False.

    ``log`` collects one line per thing the request did or noticed (a loan made, a fee paid, a
    restriction set); the adapter writes them to the SIP log at INFO once the transaction has
    committed. They carry identifiers, never passwords.
    """

    account: Any
    institution: Any
    sysprefs: Any
    now: datetime
    protocol_version: int = 2
    password_ok: bool | None = None
    staff_userid: str | None = None
    peer: str = ""
    print_width: int | None = None
    log: list[str] = field(default_factory=list)
    #: The account's ``ils.context.AccountOptions`` when the caller built them already
    #: (the gateway does, once per account); else :meth:`circ` reads them from ``account``.
    options: Any = field(default=None, repr=False, compare=False)
    #: Patrons this request found by their exact cardnumber and locked, by identifier
    #: (``ils.journal.note_locked_patron``): the journal's fingerprint then need not look
    #: their number up again.
    locked_patrons: dict = field(default_factory=dict, repr=False, compare=False)
    _circ: Any = field(default=None, repr=False, compare=False)
    _now_text: Any = field(default=None, repr=False, compare=False)

    def circ(self, txn, branch: str | None = None):
        """The ILS context of this request (:class:`koha_gateway.ils.context.CircContext`):
        the session's library (or ``branch``), the request's instant, the preferences, the
        staff patron of the SIP login and the account's options."""
        from koha_gateway.ils.context import AccountOptions, CircContext, staff_borrowernumber

        if self._circ is None:
            self._circ = CircContext(
                branch=self.branch,
                now=self.now,
                sysprefs=self.sysprefs,
                staff_borrowernumber=staff_borrowernumber(txn, self.staff_userid),
                options=(
                    self.options
                    if self.options is not None
                    else AccountOptions.from_account(self.account)
                ),
            )
        if branch is not None and branch != self._circ.branch:
            return self._circ.replace(branch=branch)
        return self._circ

    @property
    def branch(self) -> str:
        """The library of the session: the account's institution (Koha's userenv branch)."""
        return self.institution.id

    @property
    def today(self) -> str:
        return self._formatted_now()[0]

    @property
    def now_sql(self) -> str:
        return self._formatted_now()[1]

    def _formatted_now(self) -> tuple[str, str]:
        """(``YYYY-MM-DD``, ``YYYY-MM-DD HH:MM:SS``) of ``now``, formatted once."""
        now = self.now
        cached = self._now_text
        if cached is None or cached[0] is not now:
            text = sql_datetime(now)
            cached = self._now_text = (now, (text[:10], text))
        return cached[1]
