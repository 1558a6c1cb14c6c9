"""Koha's SIP configuration tables (Koha bug 37893), created on top of a test database.

The ``kohastructure.sql`` in ``../shared/koha`` predates bug 37893, so tests add the tables
themselves. :data:`MARIADB_DDL` is the DDL as Koha's schema defines it (column types, NULLs,
defaults, unique keys and foreign keys of ``Koha/Schema/Result/Sip*.pm``, generated from
``kohastructure.sql``); :data:`PORTABLE_DDL` is the same for SQLite and PostgreSQL (the engine's
``{pk}`` token for the auto-increment keys, SMALLINT for tinyint, a CHECK for the terminator
enum, no foreign key to ``cash_registers``, which the demo schema does not have).

Koha's current ``sip_accounts`` has no ``login_password`` column (the database update that copies
SIPconfig.xml still writes one); pass ``login_password=True`` to add it.
"""

from __future__ import annotations

from typing import Any

from koha_gateway.db.sipconfig_tables import PRIMARY_KEYS, SIP_TABLES

__all__ = ["MARIADB_DDL", "PORTABLE_DDL", "create_sip_tables", "drop_sip_tables", "insert"]

_MARIADB_OPTIONS = "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci"


def _child(table: str, pk: str, columns: str) -> str:
    return f"""CREATE TABLE `{table}` (
  `{pk}` int(11) NOT NULL AUTO_INCREMENT,
  `sip_account_id` int(11) NOT NULL COMMENT 'Foreign key to sip_accounts.sip_account_id',
  {columns},
  PRIMARY KEY (`{pk}`),
  UNIQUE KEY `sip_account` (`{pk}`,`sip_account_id`),
  KEY `sip_account_id` (`sip_account_id`),
  CONSTRAINT `{table}_ibfk_1` FOREIGN KEY (`sip_account_id`)
    REFERENCES `sip_accounts` (`sip_account_id`) ON DELETE CASCADE ON UPDATE CASCADE
) {_MARIADB_OPTIONS}"""


_ACCOUNT_COLUMNS = (
    # (name, MariaDB type, portable type); all NULL unless said otherwise
    ("ae_field_template", "varchar(255) DEFAULT NULL", "VARCHAR(255)"),
    ("allow_additional_materials_checkout", "tinyint(1) DEFAULT NULL", "SMALLINT"),
    ("allow_empty_passwords", "tinyint(1) DEFAULT NULL", "SMALLINT"),
    ("allow_fields", "varchar(255) DEFAULT NULL", "VARCHAR(255)"),
    ("av_field_template", "varchar(255) DEFAULT NULL", "VARCHAR(255)"),
    ("blocked_item_types", "varchar(255) DEFAULT NULL", "VARCHAR(255)"),
    ("checked_in_ok", "tinyint(1) DEFAULT NULL", "SMALLINT"),
    ("convert_nonprinting_characters", "varchar(10) DEFAULT NULL", "VARCHAR(10)"),
    ("cr_item_field", "varchar(255) DEFAULT NULL", "VARCHAR(255)"),
    ("ct_always_send", "tinyint(1) DEFAULT NULL", "SMALLINT"),
    ("cv_send_00_on_success", "tinyint(1) DEFAULT NULL", "SMALLINT"),
    ("cv_triggers_alert", "tinyint(1) DEFAULT NULL", "SMALLINT"),
    ("da_field_template", "varchar(255) DEFAULT NULL", "VARCHAR(255)"),
    ("delimiter", "varchar(10) DEFAULT '|'", "VARCHAR(10) DEFAULT '|'"),
    ("disallow_overpayment", "tinyint(1) DEFAULT NULL", "SMALLINT"),
    ("encoding", "varchar(10) DEFAULT NULL", "VARCHAR(10)"),
    ("error_detect", "tinyint(1) DEFAULT NULL", "SMALLINT"),
    ("format_due_date", "tinyint(1) DEFAULT NULL", "SMALLINT"),
    ("hide_fields", "varchar(255) DEFAULT NULL", "VARCHAR(255)"),
    ("holds_block_checkin", "tinyint(1) DEFAULT NULL", "SMALLINT"),
    ("holds_get_captured", "tinyint(1) DEFAULT NULL", "SMALLINT"),
    ("inhouse_item_types", "varchar(255) DEFAULT NULL", "VARCHAR(255)"),
    ("inhouse_patron_categories", "varchar(255) DEFAULT NULL", "VARCHAR(255)"),
    ("login_id", "varchar(255) NOT NULL COMMENT 'Staff userid for SIP2 authentication'",
     "VARCHAR(255) NOT NULL"),
    ("lost_block_checkout", "tinyint(1) DEFAULT NULL", "SMALLINT"),
    ("lost_block_checkout_value", "tinyint(1) DEFAULT NULL", "SMALLINT"),
    ("lost_status_for_missing", "tinyint(1) DEFAULT NULL", "SMALLINT"),
    ("overdues_block_checkout", "tinyint(1) DEFAULT NULL", "SMALLINT"),
    ("payment_type_writeoff", "varchar(10) DEFAULT NULL", "VARCHAR(10)"),
    ("prevcheckout_block_checkout", "tinyint(1) DEFAULT NULL", "SMALLINT"),
    ("register_id", "int(11) DEFAULT NULL", "INTEGER"),
    ("seen_on_item_information", "varchar(255) DEFAULT NULL", "VARCHAR(255)"),
    ("send_patron_home_library_in_af", "tinyint(1) DEFAULT NULL", "SMALLINT"),
    ("show_checkin_message", "tinyint(1) DEFAULT NULL", "SMALLINT"),
    ("show_outstanding_amount", "tinyint(1) DEFAULT NULL", "SMALLINT"),
    ("terminator", "enum('CR','CRLF') NOT NULL DEFAULT 'CRLF'",
     "VARCHAR(4) NOT NULL DEFAULT 'CRLF' CHECK (terminator IN ('CR', 'CRLF'))"),
)  # fmt: skip


def _sip_accounts_ddl(*, cash_registers: bool) -> str:
    keys = [
        "PRIMARY KEY (`sip_account_id`)",
        "UNIQUE KEY `account_login_id` (`login_id`)",
        "KEY `sip_accounts_ibfk_1` (`sip_institution_id`)",
        "KEY `sip_accounts_ibfk_2` (`register_id`)",
        "CONSTRAINT `sip_accounts_ibfk_1` FOREIGN KEY (`sip_institution_id`) REFERENCES "
        "`sip_institutions` (`sip_institution_id`) ON DELETE CASCADE ON UPDATE CASCADE",
    ]
    if cash_registers:
        keys.append(
            "CONSTRAINT `sip_accounts_ibfk_2` FOREIGN KEY (`register_id`) REFERENCES "
            "`cash_registers` (`id`) ON DELETE SET NULL ON UPDATE CASCADE"
        )
    lines = [
        "`sip_account_id` int(11) NOT NULL AUTO_INCREMENT",
        "`sip_institution_id` int(11) NOT NULL "
        "COMMENT 'Foreign key to sip_institutions.sip_institution_id'",
        *(f"`{name}` {mariadb}" for name, mariadb, _ in _ACCOUNT_COLUMNS),
        *keys,
    ]
    body = ",\n  ".join(lines)
    return f"CREATE TABLE `sip_accounts` (\n  {body}\n) {_MARIADB_OPTIONS}"


MARIADB_DDL: tuple[str, ...] = (
    f"""CREATE TABLE `sip_institutions` (
  `sip_institution_id` int(11) NOT NULL AUTO_INCREMENT,
  `name` varchar(80) NOT NULL COMMENT 'Unique varchar identifier. Previously "id" in SIPconfig.xml',
  `implementation` varchar(80) NOT NULL DEFAULT 'ILS',
  `checkin` tinyint(1) NOT NULL DEFAULT 1,
  `checkout` tinyint(1) NOT NULL DEFAULT 1,
  `offline` tinyint(1) DEFAULT NULL,
  `renewal` tinyint(1) NOT NULL DEFAULT 0,
  `retries` int(11) NOT NULL DEFAULT 5,
  `status_update` tinyint(1) DEFAULT NULL,
  `timeout` int(11) NOT NULL DEFAULT 100,
  PRIMARY KEY (`sip_institution_id`),
  UNIQUE KEY `institution_name` (`name`)
) {_MARIADB_OPTIONS}""",
    _sip_accounts_ddl(cash_registers=True),
    _child(
        "sip_account_custom_item_fields",
        "sip_account_custom_item_field_id",
        "`field` varchar(80) NOT NULL COMMENT 'SIP field name e.g. XY',\n"
        "  `template` varchar(255) NOT NULL COMMENT 'Template toolkit template'",
    ),
    _child(
        "sip_account_custom_patron_fields",
        "sip_account_custom_patron_field_id",
        "`field` varchar(80) NOT NULL COMMENT 'SIP field name e.g. XY',\n"
        "  `template` varchar(80) NOT NULL COMMENT 'Template toolkit template'",
    ),
    _child(
        "sip_account_item_fields",
        "sip_account_item_field_id",
        "`field` varchar(80) NOT NULL COMMENT 'SIP field name e.g. XY',\n"
        "  `code` varchar(80) NOT NULL COMMENT 'Item field e.g. \"permanent_location\"'",
    ),
    _child(
        "sip_account_patron_attributes",
        "sip_account_patron_attribute_id",
        "`field` varchar(80) NOT NULL COMMENT 'SIP field name e.g. XY',\n"
        "  `code` varchar(80) NOT NULL COMMENT 'Patron attribute code'",
    ),
    _child(
        "sip_account_screen_msg_regexs",
        "sip_account_screen_msg_regex_id",
        "`find` varchar(255) NOT NULL COMMENT 'Regex find',\n"
        "  `replace` varchar(255) NOT NULL COMMENT 'Regex replace'",
    ),
    _child(
        "sip_account_sort_bin_mappings",
        "sip_account_sort_bin_mapping_id",
        "`mapping` varchar(255) NOT NULL COMMENT 'The mapping definition'",
    ),
    _child(
        "sip_account_system_preference_overrides",
        "sip_account_system_preference_override_id",
        "`variable` varchar(80) NOT NULL COMMENT 'System preference name',\n"
        "  `value` varchar(80) NOT NULL COMMENT 'System preference value'",
    ),
    f"""CREATE TABLE `sip_listeners` (
  `sip_listener_id` int(11) NOT NULL AUTO_INCREMENT,
  `client_timeout` int(11) DEFAULT NULL,
  `port` varchar(80) NOT NULL,
  `protocol` varchar(80) NOT NULL,
  `timeout` int(11) NOT NULL,
  `transport` varchar(80) NOT NULL,
  PRIMARY KEY (`sip_listener_id`),
  UNIQUE KEY `listener_port` (`port`)
) {_MARIADB_OPTIONS}""",
    f"""CREATE TABLE `sip_server_params` (
  `sip_server_param_id` int(11) NOT NULL AUTO_INCREMENT,
  `key` varchar(80) DEFAULT NULL,
  `value` varchar(255) NOT NULL,
  PRIMARY KEY (`sip_server_param_id`),
  UNIQUE KEY `server_param_key` (`key`)
) {_MARIADB_OPTIONS}""",
    f"""CREATE TABLE `sip_system_preference_overrides` (
  `sip_system_preference_override_id` int(11) NOT NULL AUTO_INCREMENT,
  `variable` varchar(80) NOT NULL COMMENT 'System preference name',
  `value` varchar(80) NOT NULL COMMENT 'System preference value',
  PRIMARY KEY (`sip_system_preference_override_id`)
) {_MARIADB_OPTIONS}""",
)


def _portable_child(table: str, pk: str, columns: str) -> str:
    return f"""CREATE TABLE {table} (
        {pk} {{pk}},
        sip_account_id INTEGER NOT NULL
            REFERENCES sip_accounts (sip_account_id) ON DELETE CASCADE ON UPDATE CASCADE,
        {columns},
        UNIQUE ({pk}, sip_account_id)
    )"""


PORTABLE_DDL: tuple[str, ...] = (
    """CREATE TABLE sip_institutions (
        sip_institution_id {pk},
        name VARCHAR(80) NOT NULL UNIQUE,
        implementation VARCHAR(80) NOT NULL DEFAULT 'ILS',
        checkin SMALLINT NOT NULL DEFAULT 1,
        checkout SMALLINT NOT NULL DEFAULT 1,
        offline SMALLINT,
        renewal SMALLINT NOT NULL DEFAULT 0,
        retries INTEGER NOT NULL DEFAULT 5,
        status_update SMALLINT,
        timeout INTEGER NOT NULL DEFAULT 100
    )""",
    "CREATE TABLE sip_accounts (\n"
    "    sip_account_id {pk},\n"
    "    sip_institution_id INTEGER NOT NULL REFERENCES sip_institutions (sip_institution_id)"
    " ON DELETE CASCADE ON UPDATE CASCADE,\n"
    + "".join(f"    {name} {portable},\n" for name, _, portable in _ACCOUNT_COLUMNS)
    + "    UNIQUE (login_id)\n)",
    _portable_child(
        "sip_account_custom_item_fields",
        "sip_account_custom_item_field_id",
        "field VARCHAR(80) NOT NULL, template VARCHAR(255) NOT NULL",
    ),
    _portable_child(
        "sip_account_custom_patron_fields",
        "sip_account_custom_patron_field_id",
        "field VARCHAR(80) NOT NULL, template VARCHAR(80) NOT NULL",
    ),
    _portable_child(
        "sip_account_item_fields",
        "sip_account_item_field_id",
        "field VARCHAR(80) NOT NULL, code VARCHAR(80) NOT NULL",
    ),
    _portable_child(
        "sip_account_patron_attributes",
        "sip_account_patron_attribute_id",
        "field VARCHAR(80) NOT NULL, code VARCHAR(80) NOT NULL",
    ),
    _portable_child(
        "sip_account_screen_msg_regexs",
        "sip_account_screen_msg_regex_id",
        "find VARCHAR(255) NOT NULL, replace VARCHAR(255) NOT NULL",
    ),
    _portable_child(
        "sip_account_sort_bin_mappings",
        "sip_account_sort_bin_mapping_id",
        "mapping VARCHAR(255) NOT NULL",
    ),
    _portable_child(
        "sip_account_system_preference_overrides",
        "sip_account_system_preference_override_id",
        "variable VARCHAR(80) NOT NULL, value VARCHAR(80) NOT NULL",
    ),
    """CREATE TABLE sip_listeners (
        sip_listener_id {pk},
        client_timeout INTEGER,
        port VARCHAR(80) NOT NULL UNIQUE,
        protocol VARCHAR(80) NOT NULL,
        timeout INTEGER NOT NULL,
        transport VARCHAR(80) NOT NULL
    )""",
    """CREATE TABLE sip_server_params (
        sip_server_param_id {pk},
        key VARCHAR(80) UNIQUE,
        value VARCHAR(255) NOT NULL
    )""",
    """CREATE TABLE sip_system_preference_overrides (
        sip_system_preference_override_id {pk},
        variable VARCHAR(80) NOT NULL,
        value VARCHAR(80) NOT NULL
    )""",
)


def create_sip_tables(txn, *, login_password: bool = False) -> None:
    """Create Koha's twelve SIP tables in the database behind ``txn``."""
    if txn.engine.name == "mysql":
        registers = txn.one(
            "SELECT 1 AS x FROM information_schema.tables "
            "WHERE table_schema = DATABASE() AND table_name = 'cash_registers'"
        )
        for statement in MARIADB_DDL:
            if statement.startswith("CREATE TABLE `sip_accounts`") and registers is None:
                # not a Koha database: no cash_registers to refer to
                statement = _sip_accounts_ddl(cash_registers=False)
            txn.execute(statement)
        if login_password:
            txn.execute(
                "ALTER TABLE sip_accounts ADD COLUMN login_password varchar(255) DEFAULT NULL"
            )
        return
    for statement in PORTABLE_DDL:
        txn.execute(txn.engine.ddl(statement))
    if login_password:
        txn.execute("ALTER TABLE sip_accounts ADD COLUMN login_password VARCHAR(255)")


def drop_sip_tables(txn) -> None:
    for table in reversed(SIP_TABLES):
        txn.execute(f"DROP TABLE IF EXISTS {table}")


def _quote(txn, column: str) -> str:
    # ``key`` and ``replace`` are reserved words on MariaDB.
    return f"`{column}`" if txn.engine.name == "mysql" else f'"{column}"'


def insert(txn, table: str, **values: Any) -> int:
    """Insert one row as Koha's staff interface would; returns its primary key."""
    columns = ", ".join(_quote(txn, c) for c in values)
    marks = ", ".join("?" for _ in values)
    return txn.insert(
        f"INSERT INTO {table} ({columns}) VALUES ({marks})",
        tuple(values.values()),
        pk=PRIMARY_KEYS[table],
    )
