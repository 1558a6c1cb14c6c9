"""Schema version 7 (kgw_request_journal keyed by account, peer and digest) on SQLite,
PostgreSQL and MariaDB with Koha's schema: the rows of version 6 are kept, the upgraded table
works as the journal, and an upgrade that stopped half-way (MariaDB commits every DDL
statement at once) is completed by the next ``init``."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from koha_gateway.acs.context import RequestContext
from koha_gateway.config.sipconfig import load_sip_config
from koha_gateway.db import koha, schema
from koha_gateway.db.engine import Database, IntegrityError
from koha_gateway.ils import journal
from koha_gateway.sip2.codec import Response, parse
from tests.ils.conftest import SIPCONFIG

NOW = datetime(2026, 3, 10, 14, 30, 0, tzinfo=timezone(timedelta(hours=13)))
STAMP = NOW.strftime("%Y%m%d    %H%M%S")
#: Payments of a patron the database does not have: the ACS is not needed to journal them.
PAY = f"37{STAMP}0100NZDBV1.00|AOWEL|AA999999999|BKfirst|"
OTHER = f"37{STAMP}0100NZDBV2.00|AOWEL|AA999999999|BKsecond|"
V6_ROWS = [
    ("joe", "10.0.0.1", 3, journal.digest(PAY.encode()), "2026-03-10 14:29:30"),
    ("joe", "10.0.0.2", 1, "d" * 64, "2026-03-10 14:00:00"),
    ("kilsc", "10.0.0.1", 9, "e" * 64, "2026-03-09 10:00:00"),
]


@pytest.fixture
def v6(engine_name, tmp_path):
    """A database at schema version 6 with journal rows of three terminals (SQLite and
    PostgreSQL: the gateway's own database; MariaDB: Koha's schema)."""
    dropped = None
    if engine_name == "sqlite":
        url = f"sqlite://{tmp_path / 'v6.sqlite'}"
    elif engine_name == "postgresql":
        from tests.support.postgres import cluster_or_skip

        server = cluster_or_skip()
        url = server.create_database()
        dropped = server
    else:
        from tests.support.mariadb import KOHA_TEMPLATE, server_or_skip

        server = server_or_skip()
        url = server.create_database(template=KOHA_TEMPLATE)
        dropped = server
    db = Database.from_url(url)
    assert db.run_blocking(schema.migrate, 6)[1] == 6
    db.run_blocking(_fill_v6)
    yield db
    db.close()
    if dropped is not None:
        dropped.drop_database(url.rsplit("/", 1)[1].split("?")[0])


def _fill_v6(txn) -> None:
    state = journal.fingerprint(txn, _context(), parse(PAY))
    for account, peer, serial, digest, created in V6_ROWS:
        txn.execute(
            "INSERT INTO kgw_request_journal (account, peer, serial, digest, fingerprint, "
            "response, created) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (account, peer, serial, digest, state, _answer(digest), created),
        )


def _answer(digest: str) -> str:
    return journal.store(Response("38").fixed("Y", STAMP).add("AF", digest[:8]))


def _context(peer: str = "10.0.0.1") -> RequestContext:
    config = load_sip_config(SIPCONFIG)
    account = config.accounts["joe"]
    return RequestContext(
        account=account,
        institution=config.institutions[account.institution],
        sysprefs=None,
        now=NOW,
        peer=peer,
    )


def _rows(txn) -> list[tuple]:
    return [
        (r["account"], r["peer"], int(r["serial"]), r["digest"], str(r["created"]))
        for r in txn.query(
            "SELECT account, peer, serial, digest, created FROM kgw_request_journal "
            "ORDER BY account, peer, digest"
        )
    ]


def test_version_7_keeps_the_rows_and_the_upgraded_journal_works(v6):
    assert v6.run_blocking(schema.migrate) == (6, schema.LATEST)
    assert v6.run_blocking(_rows) == sorted(V6_ROWS)
    names = v6.run_blocking(schema._index_names, "kgw_request_journal")
    assert {"kgw_request_journal_terminal", "kgw_request_journal_created"} <= names
    if v6.engine.name != "sqlite":  # SQLite names a UNIQUE constraint's index itself
        assert "kgw_request_journal_request" in names
    with pytest.raises(IntegrityError):
        v6.run_blocking(_fill_v6)  # (account, peer, digest) is unique
    assert not v6.run_blocking(koha.has_table, "kgw_request_journal_new")
    if v6.engine.name == "postgresql":
        assert "kgw_request_journal_pkey" in names
        assert v6.run_blocking(
            lambda txn: txn.scalar("SELECT to_regclass('kgw_request_journal_id_seq') AS s")
        )

    applied: list[str] = []

    def apply(txn, ctx, msg):
        applied.append(msg.get("BK"))
        return Response("38").fixed("Y", STAMP)

    def request(raw: str, **kw):
        ctx = _context(**kw)
        return journal.store(v6.run_blocking(journal.handle, ctx, parse(raw), raw.encode(), apply))

    # The row written before the upgrade answers its resend; another request of the
    # terminal gets a row of its own, and the first one's resend is still answered.
    assert request(PAY) == _answer(journal.digest(PAY.encode()))
    assert request(OTHER).startswith('{"code": "38"')
    assert request(PAY) == _answer(journal.digest(PAY.encode()))
    assert applied == ["second"]
    assert request(PAY, peer="10.0.0.3").startswith('{"code": "38"')  # another terminal
    assert applied == ["second", "first"]
    # A terminal's write deletes its expired rows (older than 500 s), not another's.
    assert request(OTHER, peer="10.0.0.2").startswith('{"code": "38"')
    rows = v6.run_blocking(_rows)
    assert ("joe", "10.0.0.2", 1, "d" * 64, "2026-03-10 14:00:00") not in rows
    assert ("kilsc", "10.0.0.1", 9, "e" * 64, "2026-03-09 10:00:00") in rows
    assert len(rows) == 5
    assert v6.run_blocking(schema.migrate) == (schema.LATEST, schema.LATEST)


def test_an_upgrade_stopped_half_way_is_completed(v6):
    """What a MariaDB upgrade leaves when it stops between two DDL statements (each commits
    there): the next migrate goes on from it, rows neither lost nor doubled."""
    ddl = v6.engine.ddl

    def copied_not_dropped(txn):
        txn.execute(ddl(schema._v7_journal_table("kgw_request_journal_new")))
        txn.execute(
            "INSERT INTO kgw_request_journal_new (account, peer, digest, serial, fingerprint, "
            "response, created) SELECT account, peer, digest, serial, fingerprint, response, "
            "created FROM kgw_request_journal"
        )

    v6.run_blocking(copied_not_dropped)
    assert v6.run_blocking(schema.migrate) == (6, schema.LATEST)
    assert v6.run_blocking(_rows) == sorted(V6_ROWS)

    # Renamed, but the indexes not made yet; then the version row not written.
    def renamed_without_indexes(txn):
        for name in ("kgw_request_journal_terminal", "kgw_request_journal_created"):
            if txn.engine.name == "mysql":
                txn.execute(f"DROP INDEX {name} ON kgw_request_journal")
            else:
                txn.execute(f"DROP INDEX {name}")
        txn.execute("DELETE FROM kgw_schema_version WHERE version = 7")

    v6.run_blocking(renamed_without_indexes)
    assert v6.run_blocking(schema.migrate) == (6, schema.LATEST)
    assert v6.run_blocking(_rows) == sorted(V6_ROWS)
    assert {"kgw_request_journal_terminal", "kgw_request_journal_created"} <= v6.run_blocking(
        schema._index_names, "kgw_request_journal"
    )
