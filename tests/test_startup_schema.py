"""Start-up on a database whose schema is missing or older than the code: the gateway refuses
to start and names the command that prepares or upgrades the database (what an upgrade from
release 0.1, schema version 2, meets before ``koha-gateway-admin init`` has run)."""

from __future__ import annotations

from pathlib import Path

import pytest

from koha_gateway.db import Database, schema
from koha_gateway.tap import Options, makeService

SIPCONFIG = Path(__file__).resolve().parents[1] / "debian" / "templates" / "SIPconfig.xml"


def _start(url: str) -> str:
    options = Options()
    options.parseOptions(["--sip-config", str(SIPCONFIG), "--database", url])
    with pytest.raises(SystemExit) as exc:
        makeService(options)
    return str(exc.value)


def _database(path: Path, version: int) -> str:
    url = f"sqlite:///{path}"
    db = Database.from_url(url)
    try:
        if version:
            assert db.run_blocking(schema.migrate, version) == (0, version)
        else:
            db.run_blocking(lambda txn: txn.execute("CREATE TABLE unrelated (x INTEGER)"))
    finally:
        db.close()
    return url


def test_no_schema_names_init(tmp_path):
    message = _start(_database(tmp_path / "empty.sqlite", 0))
    assert message == (
        "koha-gateway: the database has no koha-gateway tables yet, this gateway needs schema "
        f"version {schema.LATEST}: run 'koha-gateway-admin init' with the same --koha-conf or "
        "--database"
    )


def test_release_0_1_schema_names_init(tmp_path):
    message = _start(_database(tmp_path / "v2.sqlite", 2))
    assert message == (
        "koha-gateway: the database schema is at version 2, this gateway needs schema version "
        f"{schema.LATEST}: run 'koha-gateway-admin init' with the same --koha-conf or --database"
    )
