"""Koha's SIP configuration tables (Koha bug 37893, "Move SIPconfig.xml to database").

Recent Koha keeps what SIPconfig.xml used to hold in twelve tables edited in the staff interface
(Administration > SIP2): ``sip_institutions``, ``sip_accounts`` and its ``sip_account_*``
children, ``sip_listeners``, ``sip_server_params`` and ``sip_system_preference_overrides``. This
module only reads them: :func:`read_tables` takes every row of the tables that exist in one
read-only transaction, so a configuration is never assembled from two moments of an edit. The
gateway never writes to them.

The mapping of the rows to the configuration lives in :mod:`koha_gateway.config.sipdb`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ACCOUNT_CHILD_TABLES",
    "PRIMARY_KEYS",
    "SIP_TABLES",
    "SipTables",
    "read_tables",
]

#: Every table of Koha bug 37893 with its primary key (Koha's ``Koha/Schema/Result/Sip*.pm``).
PRIMARY_KEYS: dict[str, str] = {
    "sip_institutions": "sip_institution_id",
    "sip_accounts": "sip_account_id",
    "sip_account_custom_item_fields": "sip_account_custom_item_field_id",
    "sip_account_custom_patron_fields": "sip_account_custom_patron_field_id",
    "sip_account_item_fields": "sip_account_item_field_id",
    "sip_account_patron_attributes": "sip_account_patron_attribute_id",
    "sip_account_screen_msg_regexs": "sip_account_screen_msg_regex_id",
    "sip_account_sort_bin_mappings": "sip_account_sort_bin_mapping_id",
    "sip_account_system_preference_overrides": "sip_account_system_preference_override_id",
    "sip_listeners": "sip_listener_id",
    "sip_server_params": "sip_server_param_id",
    "sip_system_preference_overrides": "sip_system_preference_override_id",
}

SIP_TABLES: tuple[str, ...] = tuple(PRIMARY_KEYS)

#: The children of ``sip_accounts`` (each row has a ``sip_account_id``).
ACCOUNT_CHILD_TABLES: tuple[str, ...] = tuple(t for t in SIP_TABLES if t.startswith("sip_account_"))


@dataclass(frozen=True)
class SipTables:
    """The rows of Koha's SIP tables as read in one transaction.

    ``rows`` maps each table that exists to its rows (dicts, ordered by primary key); a table
    that does not exist is absent. :attr:`present` says whether the database has Koha's SIP
    tables at all (``sip_accounts`` and ``sip_institutions`` exist).
    """

    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    engine: str = ""
    digest: str = ""

    @property
    def present(self) -> bool:
        return "sip_accounts" in self.rows and "sip_institutions" in self.rows

    def get(self, table: str) -> list[dict[str, Any]]:
        return self.rows.get(table, [])

    def fingerprint(self) -> str:
        """A digest of every row: equal digests mean an unchanged configuration.

        Koha's tables carry no modification timestamp (``config_timestamp`` in
        ``sip_server_params`` is not maintained by Koha yet), so the rows themselves are
        compared. :func:`read_tables` computes it in the database thread (``digest``).
        """
        if self.digest:
            return self.digest
        hasher = hashlib.sha256()
        for table in sorted(self.rows):
            hasher.update(f"\0{table}\0".encode())
            for row in self.rows[table]:
                hasher.update(repr(sorted(row.items())).encode("utf-8", "backslashreplace"))
                hasher.update(b"\n")
        return hasher.hexdigest()


def existing_tables(txn) -> set[str]:
    """Which of Koha's SIP tables exist in the database behind ``txn``."""
    engine = txn.engine.name
    if engine == "sqlite":
        sql = "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'sip%'"
    elif engine == "postgresql":
        sql = (
            "SELECT table_name AS name FROM information_schema.tables "
            "WHERE table_schema = current_schema() AND table_name LIKE 'sip%'"
        )
    else:  # MariaDB / MySQL
        sql = (
            "SELECT table_name AS name FROM information_schema.tables "
            "WHERE table_schema = DATABASE() AND table_name LIKE 'sip%'"
        )
    names = {str(row["name"]).lower() for row in txn.query(sql)}
    return {table for table in SIP_TABLES if table in names}


def read_tables(txn) -> SipTables:
    """Every row of every SIP table that exists, in the caller's (read-only) transaction."""
    rows: dict[str, list[dict[str, Any]]] = {}
    for table in sorted(existing_tables(txn)):
        # SELECT *: Koha's column names include words reserved on MariaDB (key, replace), and
        # a newer Koha may add columns; the mapping decides what it uses.
        rows[table] = txn.query(f"SELECT * FROM {table} ORDER BY {PRIMARY_KEYS[table]}")
    tables = SipTables(rows=rows, engine=txn.engine.name)
    return SipTables(rows=rows, engine=txn.engine.name, digest=tables.fingerprint())
