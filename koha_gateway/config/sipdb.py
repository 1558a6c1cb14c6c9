"""SIP configuration from Koha's database (Koha bug 37893, "Move SIPconfig.xml to database").

Recent Koha edits what SIPconfig.xml used to hold in the staff interface and keeps it in
``sip_*`` tables; a database update (``bug_37893.pl``) copies the institutions and accounts of the
instance's SIPconfig.xml into them. This module turns those rows into the same frozen
:class:`~koha_gateway.config.sipconfig.SIPConfig` the file gives, through the same
:class:`~koha_gateway.config.sipconfig.ConfigBuilder`, so every value is read and checked exactly
as it would be in the file. Errors and warnings name the table and row instead of ``file:line``::

    sip_accounts id=3 (login kiosk1): login 'kiosk1': institution 'XYZ' is not defined ...

Which source wins (Koha ``C4/SIP/Sip/Configuration.pm`` ``get_configuration``)
------------------------------------------------------------------------------
Koha still parses SIPconfig.xml when it is given one, then replaces a section by the database's
when that table has rows: ``accounts`` when ``sip_accounts`` has a row, ``institutions`` when
``sip_institutions`` has one, the global ``syspref_overrides`` when
``sip_system_preference_overrides`` has one. The file stays optional (``XMLin($file) if
$file``). The gateway does the same, and applies the same rule to two more sections Koha's
staff interface edits: ``listeners`` (``sip_listeners``) and ``server-params``
(``sip_server_params``, ignoring Koha's bookkeeping key ``config_timestamp``). The database
update fills neither of those, so an upgraded Koha keeps its listeners in the file, as Koha's
own server does. Top-level ``timeout``, ``delimiter`` and ``error-detect`` and the TLS attributes
of a ``<service>`` exist only in the file.

The mapping (Koha ``Koha/SIP2/*.pm`` ``get_for_config``, ``Koha/Schema/Result/Sip*.pm``)
----------------------------------------------------------------------------------------
``sip_institutions`` (one ``<institution>`` per row)
    ``name`` -> ``id``; ``implementation`` (default ``ILS``) -> ``implementation``;
    ``checkin``, ``checkout`` (default 1), ``renewal`` (default 0) -> ``<policy>`` flags as
    ``"true"``/``"false"``; ``offline`` and ``status_update`` likewise, left out when NULL;
    ``retries`` (default 5) and ``timeout`` (default 100) -> ``<policy>`` numbers. ``parms`` is
    not stored (unused, as in Koha).
``sip_accounts`` (one ``<login>`` per row)
    NULL columns are left out (Koha deletes undef keys, so the file's defaults apply); every
    other column is an attribute of the same name with its value as text: ``login_id`` -> ``id``,
    ``login_password`` -> ``password`` (the column is in the update that copies the file but was
    later dropped from Koha's schema: used when present), ``error_detect`` true ->
    ``error-detect="enabled"``, ``sip_institution_id`` -> ``institution`` (the name of that
    ``sip_institutions`` row). ``delimiter`` defaults to ``|``, ``terminator`` is ``CR`` or
    ``CRLF``, ``lost_block_checkout``, ``lost_block_checkout_value`` and
    ``lost_status_for_missing`` are numbers, the other tinyints are flags (Perl truth, as in the
    file). A column this gateway does not know is reported once and ignored.
``sip_account_*`` (the child elements of a ``<login>``, by ``sip_account_id``, in id order)
    ``custom_item_fields`` (``field``, ``template``) -> ``<custom_item_field>``;
    ``custom_patron_fields`` (``field``, ``template``) -> ``<custom_patron_field>``;
    ``item_fields`` (``field``, ``code``) -> ``<item_field>``; ``patron_attributes``
    (``field``, ``code``) -> ``<patron_attribute>``; ``screen_msg_regexs`` (``find``,
    ``replace``) -> ``<screen_msg_regex>``; ``sort_bin_mappings`` (``mapping``) ->
    ``<sort_bin_mapping>``; ``system_preference_overrides`` (``variable``, ``value``) -> the
    account's ``<syspref_overrides>``.
``sip_listeners`` (one ``<service>`` per row)
    ``port``, ``transport``, ``protocol``, ``timeout``, ``client_timeout`` (left out when NULL).
``sip_server_params`` (``key``, ``value``)
    one ``<server-params>`` option per row.
``sip_system_preference_overrides`` (``variable``, ``value``)
    the global ``<syspref_overrides>``, in id order (a repeated variable: the last one wins).

The DDL of these tables is not in the ``kohastructure.sql`` the test fixtures carry (it predates
them); :mod:`tests.support.koha_sip_tables` recreates it from Koha's schema classes.
"""

from __future__ import annotations

import decimal
import os
from collections import defaultdict
from typing import Any

from koha_gateway.config.errors import read_xml
from koha_gateway.config.sipconfig import (
    _LOGIN_ATTRIBUTES,
    ConfigBuilder,
    RowRef,
    Sections,
    ServerParams,
    SIPConfig,
    perl_bool,
)
from koha_gateway.db.sipconfig_tables import PRIMARY_KEYS, SipTables

__all__ = ["DATABASE_SOURCE", "build_config", "database_sections"]

#: What stands for the file in messages when there is no SIPconfig.xml at all.
DATABASE_SOURCE = "Koha's sip_* tables"

#: Sections of the configuration and the table that replaces each when it has rows.
_SECTION_TABLES = {
    "accounts": "sip_accounts",
    "institutions": "sip_institutions",
    "syspref_overrides": "sip_system_preference_overrides",
    "listeners": "sip_listeners",
    "server-params": "sip_server_params",
}

#: Koha's own bookkeeping row in sip_server_params, not a server option.
_TIMESTAMP_KEY = "config_timestamp"

_ACCOUNT_BOOKKEEPING = frozenset({"sip_account_id", "sip_institution_id", "login_id"})

_CHILDREN = (
    # table, kind (the <login> child element), its columns (named as the attributes)
    ("sip_account_custom_item_fields", "custom_item_field", ("field", "template")),
    ("sip_account_custom_patron_fields", "custom_patron_field", ("field", "template")),
    ("sip_account_item_fields", "item_field", ("field", "code")),
    ("sip_account_patron_attributes", "patron_attribute", ("field", "code")),
    ("sip_account_screen_msg_regexs", "screen_msg_regex", ("find", "replace")),
    ("sip_account_sort_bin_mappings", "sort_bin_mapping", ("mapping",)),
)


def _text(value: Any) -> str:
    """A column value as the attribute text Koha's ``get_for_config`` gives (integers as
    strings, booleans as 1/0)."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, decimal.Decimal) and value == value.to_integral_value():
        return str(int(value))
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def _truth(value: Any) -> bool:
    return value is not None and perl_bool(_text(value))


def _server_param_rows(tables: SipTables) -> list[dict[str, Any]]:
    return [row for row in tables.get("sip_server_params") if row.get("key") != _TIMESTAMP_KEY]


def database_sections(tables: SipTables) -> frozenset[str]:
    """The sections the database supplies: those whose table exists and has rows."""
    if not tables.present:
        return frozenset()
    sections = set()
    for section, table in _SECTION_TABLES.items():
        rows = _server_param_rows(tables) if table == "sip_server_params" else tables.get(table)
        if rows:
            sections.add(section)
    return frozenset(sections)


def build_config(path: str | os.PathLike[str] | None, tables: SipTables) -> SIPConfig:
    """The configuration from SIPconfig.xml at ``path`` (or none) and Koha's SIP tables.

    Each section comes from its table when the table has rows, else from the file (see the
    module docstring). Raises :class:`ConfigError` naming the file and line, or the table and
    row, of the first problem.
    """
    spath = os.fspath(path) if path is not None else None
    builder = ConfigBuilder(spath or DATABASE_SOURCE)
    from_db = database_sections(tables)
    if spath is not None:
        sections = builder.sections(read_xml(spath), skip=from_db)
    else:
        sections = Sections()
    sections.from_database = from_db

    if "institutions" in from_db:
        sections.institutions = {}
        for row in tables.get("sip_institutions"):
            _institution(builder, sections, row)
    if "accounts" in from_db:
        sections.accounts = _accounts(builder, tables, sections.delimiter)
    if "listeners" in from_db:
        sections.services = [_listener(builder, row) for row in tables.get("sip_listeners")]
    if "server-params" in from_db:
        sections.server_params = builder.build_server_params(
            [
                (
                    _text(row.get("key") or ""),
                    _text(row.get("value") or ""),
                    RowRef("sip_server_params", row["sip_server_param_id"], _text(row.get("key"))),
                )
                for row in _server_param_rows(tables)
            ],
            ServerParams(),
        )
    if "syspref_overrides" in from_db:
        sections.syspref_overrides = builder.build_overrides(
            [
                (
                    _text(row["variable"]),
                    _text(row["value"]),
                    RowRef(
                        "sip_system_preference_overrides",
                        row["sip_system_preference_override_id"],
                        _text(row["variable"]),
                    ),
                )
                for row in tables.get("sip_system_preference_overrides")
            ]
        )
    return builder.assemble(sections, path=spath or DATABASE_SOURCE)


def _institution(builder: ConfigBuilder, sections: Sections, row: dict[str, Any]) -> None:
    name = _text(row.get("name") or "")
    where = RowRef("sip_institutions", row["sip_institution_id"], f"institution {name}")
    attrs = {"id": name, "implementation": _text(row.get("implementation") or "")}
    policy: dict[str, str] = {}
    for flag in ("checkin", "checkout", "renewal", "offline", "status_update"):
        value = row.get(flag)
        if value is not None:
            policy[flag] = "true" if _truth(value) else "false"
    for number in ("retries", "timeout"):
        if row.get(number) is not None:
            policy[number] = _text(row[number])
    builder.add_institution(
        sections.institutions, where, builder.institution(where, attrs, where, policy)
    )


def _accounts(builder: ConfigBuilder, tables: SipTables, delimiter: str) -> list:
    institution_names = {
        row["sip_institution_id"]: _text(row.get("name") or "")
        for row in tables.get("sip_institutions")
    }
    children: dict[Any, list[tuple[str, RowRef, Any]]] = defaultdict(list)
    for table, kind, columns in _CHILDREN:
        pk = PRIMARY_KEYS[table]
        for row in tables.get(table):
            payload = {c: _text(row[c]) for c in columns if row.get(c) is not None}
            children[row["sip_account_id"]].append((kind, RowRef(table, row.get(pk)), payload))
    overrides: dict[Any, list[tuple[str, str, RowRef]]] = defaultdict(list)
    for row in tables.get("sip_account_system_preference_overrides"):
        where = RowRef(
            "sip_account_system_preference_overrides",
            row["sip_account_system_preference_override_id"],
            _text(row["variable"]),
        )
        item = (_text(row["variable"]), _text(row["value"]), where)
        overrides[row["sip_account_id"]].append(item)

    unknown: set[str] = set()
    result = []
    for row in tables.get("sip_accounts"):
        login = _text(row.get("login_id") or "")
        where = RowRef("sip_accounts", row["sip_account_id"], f"login {login}")
        institution = institution_names.get(row.get("sip_institution_id"))
        if institution is None:
            raise builder.error(
                where,
                f"sip_institution_id={row.get('sip_institution_id')!r} is not a row of "
                "sip_institutions",
            )
        attrs = {"id": login, "institution": institution}
        for column, value in row.items():
            if column in _ACCOUNT_BOOKKEEPING or value is None:
                continue
            if column == "login_password":
                attrs["password"] = _text(value)
            elif column == "error_detect":
                if _truth(value):
                    attrs["error-detect"] = "enabled"
            elif column in _LOGIN_ATTRIBUTES:
                attrs[column] = _text(value)
            else:
                unknown.add(column)
        account_id = row["sip_account_id"]
        settings = list(children.get(account_id, ()))
        if overrides.get(account_id):
            items = overrides[account_id]
            settings.append(("syspref_overrides", items[0][2], builder.build_overrides(items)))
        result.append((builder.build_account(where, attrs, settings, delimiter), where))
    for column in sorted(unknown):
        builder.warn(
            RowRef("sip_accounts", "*"),
            f"column {column!r} is not used by this gateway; ignored",
        )
    return result


def _listener(builder: ConfigBuilder, row: dict[str, Any]):
    port = _text(row.get("port") or "")
    where = RowRef("sip_listeners", row["sip_listener_id"], f"port {port}")
    attrs = {
        column: _text(value)
        for column, value in row.items()
        if column in builder.SERVICE_ATTRIBUTES and value is not None
    }
    return builder.service(where, attrs), where
