"""What a SIP2 request handler knows besides the message itself."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass
class RequestContext:
    """The context of one SIP2 request, built by the protocol adapter for every message.

    ``account`` and ``institution`` are the ``config.sipconfig`` dataclasses of the logged-in
    SIP account; ``sysprefs`` is an ``ils.sysprefs.Sysprefs`` with the database values and the
    global and per-account ``<syspref_overrides>`` applied (account wins). ``now`` is an aware
    datetime in the server's local time zone: handlers never read the clock themselves.

    ``password_ok`` is the outcome of checking the patron password (AD) against the patron's
    identifier (AA) before the transaction started, through the shared authenticator (local
    hash or LDAP): ``None`` when the message carried no AD, else True/False.

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

    @property
    def branch(self) -> str:
        """The library of the session: the account's institution (Koha's userenv branch)."""
        return self.institution.id

    @property
    def today(self) -> str:
        return self.now.strftime("%Y-%m-%d")

    @property
    def now_sql(self) -> str:
        return self.now.strftime("%Y-%m-%d %H:%M:%S")
