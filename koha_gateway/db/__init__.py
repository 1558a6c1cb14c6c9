"""The database layer: engines (SQLite, PostgreSQL, MariaDB/MySQL) and the versioned schema.

``Database.from_url(url)`` gives a pool; ``db.run(fn, ...)`` runs ``fn(txn, ...)`` in one
transaction. See :mod:`koha_gateway.db.engine` for the contract and
:mod:`koha_gateway.db.schema` for the tables.
"""

from koha_gateway.db.engine import (
    Database,
    DatabaseError,
    Engine,
    IntegrityError,
    SerializationFailure,
    Txn,
    Unavailable,
)
from koha_gateway.db.url import DatabaseURL, InvalidDatabaseURL, build_url, parse_url

__all__ = [
    "Database",
    "DatabaseError",
    "DatabaseURL",
    "Engine",
    "IntegrityError",
    "InvalidDatabaseURL",
    "SerializationFailure",
    "Txn",
    "Unavailable",
    "build_url",
    "parse_url",
]
