#!/usr/bin/env python3
"""SQL statements per SIP2 message type, on SQLite, PostgreSQL and MariaDB (Koha's schema).

Each engine gets a fresh database with the schema, the demo data set and one kiosk patron and
item (``tests/support/statements.py``); the kiosk session of ``bench/sip_mix.py`` (99, 63, 23,
17, 11, 17 on loan, 29, 09, 35) is run in this process as the gateway runs it (the request
journal around the ACS, one transaction per message) and every statement is counted. The
second session is reported (the first one creates the terminal's first journal rows), with
timestamps a second later, so that its requests have bytes of their own, as a kiosk's next
session has (the same bytes within the retry window would read the item's and patron's state
first, to tell a resend: ``tests/ils/test_statement_counts.py``). A 63 for Ada
(demo patron with loans, an overdue and a waiting hold) and one for Grace (fines, a title-level
hold) follow. On PostgreSQL and MariaDB the round trips to the server are counted too: the
statement that opens the transaction carries its ``BEGIN``, writes queued with
``txn.execute_later`` ride with the next statement or the ``COMMIT``, a message that only
reads sends no ``BEGIN``/``COMMIT`` (``docs/architecture.md``, "The database threads").

The counts are without the reference cache (as ``tests/ils/test_statement_counts.py`` pins
them, and as ``--reference-max-age 0`` runs); ``--cache`` installs the reference cache as the
gateway runs by default (checked in advance, so that no check falls in a counted message).

    python bench/statements.py [--engines sqlite,postgresql,mysql] [--sql] [--cache]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from koha_gateway.config.sipconfig import load_sip_config  # noqa: E402
from koha_gateway.db import Database  # noqa: E402
from koha_gateway.ils import reference  # noqa: E402
from tests.conftest import load_demo_database  # noqa: E402
from tests.gateway import NOW  # noqa: E402
from tests.support import statements as counting  # noqa: E402

ADA, GRACE = "23529000000001", "23529000000002"


def measure(url: str, show_sql: bool, cache: bool = False) -> dict[str, tuple[int, int]]:
    load_demo_database(url, NOW)
    db = Database.from_url(url, max_connections=1)
    if cache:
        # An hour's bound: the check and the first reads happen before the counting.
        reference.install(db.engine, reference.ReferenceCache(3600))
        db.run_blocking(lambda txn: reference.cached(txn))
    try:
        db.run_blocking(counting.add_kiosk, 0, NOW.date())
        make_context = counting.context(db, load_sip_config(ROOT / "conf" / "SIPconfig.xml"), NOW)
        patron, item = counting.kiosk_patron(0), counting.kiosk_item(0)
        counting.count_session(db, make_context, patron, item, NOW)
        rows = counting.count_session(db, make_context, patron, item, NOW + timedelta(seconds=1))
        ts = NOW.strftime("%Y%m%d    %H%M%S")
        for kind, who in (("63 Ada", ADA), ("63 Grace", GRACE)):
            raw = f"63001{ts}          AOWEL|AA{who}|"
            answer, sql = counting.run_request(db, make_context, raw)
            rows.append((kind, sql, answer, "64"))
    finally:
        db.close()
    counts = {}
    for kind, sql, answer, expect in rows:
        if not answer.startswith(expect):
            raise SystemExit(f"{kind}: unexpected answer {answer[:60]!r}")
        counts[kind] = (len(sql), sql.round_trips)
        if show_sql:
            print(f"\n-- {kind}: {len(sql)} statements, {sql.round_trips} round trips")
            for text in sql:
                print("   ", " ".join(text.split())[:200])
    return counts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engines", default="sqlite,postgresql,mysql")
    parser.add_argument("--sql", action="store_true", help="list every statement")
    parser.add_argument(
        "--cache", action="store_true", help="with the reference cache, as the gateway runs"
    )
    args = parser.parse_args(argv)
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    results: dict[str, dict[str, tuple[int, int]]] = {}
    cluster = mariadb = None
    with tempfile.TemporaryDirectory(prefix="kgw-statements-") as tmp:
        try:
            for name in engines:
                if name == "sqlite":
                    url = f"sqlite:///{Path(tmp) / 'count.sqlite'}"
                elif name == "postgresql":
                    from tests.support.postgres import PostgresCluster

                    cluster = PostgresCluster()
                    cluster.start()
                    url = cluster.create_database("count")
                elif name == "mysql":
                    from tests.support.mariadb import KOHA_TEMPLATE, MariaDBServer

                    mariadb = MariaDBServer()
                    mariadb.start()
                    url = mariadb.create_database("count", template=KOHA_TEMPLATE)
                else:
                    parser.error(f"unknown engine {name!r}")
                if args.sql:
                    print(f"\n==== {name}")
                results[name] = measure(url, args.sql, args.cache)
        finally:
            if cluster is not None:
                cluster.destroy()
            if mariadb is not None:
                mariadb.destroy()
    kinds = list(next(iter(results.values())))
    cached = "reference cache" if args.cache else "no reference cache"
    print(
        "\nSQL statements / round trips per message (second kiosk session; 63 Ada / Grace: "
        f"demo patrons; {cached}; SQLite has no server: its round trips are the statements "
        "sent)\n"
    )
    print(f"{'message':<10}" + "".join(f"{name:>14}" for name in results))
    for kind in kinds:
        cells = "".join(
            f"{f'{results[name][kind][0]} / {results[name][kind][1]}':>14}" for name in results
        )
        print(f"{kind:<10}" + cells)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
