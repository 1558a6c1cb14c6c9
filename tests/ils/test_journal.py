"""ils/journal.py in one process on both engines: when a request is a resend, and the race."""

from __future__ import annotations

from datetime import timedelta

import pytest

from koha_gateway.acs.dispatch import ACS
from koha_gateway.config.sipconfig import PolicyConfig
from koha_gateway.ils import journal
from koha_gateway.sip2.codec import parse
from tests.ils.conftest import NOW

BLANK = " " * 18
ADA = "23529000000001"
AVAILABLE = "39999000000001"
STAMP = NOW.strftime("%Y%m%d    %H%M%S")
CHECKOUT = f"11YN{STAMP}{BLANK}AOWEL|AA{ADA}|AB{AVAILABLE}|AC|"


class Counting:
    """The ACS, counting how often a request is really applied."""

    def __init__(self):
        self.acs = ACS()
        self.applied = 0

    def __call__(self, txn, ctx, msg):
        self.applied += 1
        return self.acs.handle(txn, ctx, msg)


def send(db, ctx, raw: str, apply, account: str = "joe", **kw):
    msg = parse(raw)
    response = db.run_blocking(journal.handle, ctx(account, **kw), msg, raw.encode(), apply)
    return journal.store(response)


def test_retry_window_is_timeout_times_retries_with_koha_defaults_for_zero():
    assert journal.retry_window(PolicyConfig(timeout=10, retries=3)) == timedelta(seconds=30)
    assert journal.retry_window(PolicyConfig()) == timedelta(seconds=500)


def test_a_resend_is_answered_from_the_journal(db, ctx):
    apply = Counting()
    first = send(db, ctx, CHECKOUT, apply, peer="10.0.0.1")
    again = send(db, ctx, CHECKOUT, apply, peer="10.0.0.1", now=NOW + timedelta(seconds=20))
    assert again == first and apply.applied == 1


def test_outside_the_window_or_from_another_terminal_it_is_new(db, ctx):
    apply = Counting()
    send(db, ctx, CHECKOUT, apply, peer="10.0.0.1")
    send(db, ctx, CHECKOUT, apply, peer="10.0.0.2")  # another kiosk, same account
    assert apply.applied == 2
    send(db, ctx, CHECKOUT, apply, peer="10.0.0.1", now=NOW + timedelta(seconds=501))
    assert apply.applied == 3
    send(db, ctx, CHECKOUT, apply, "kilsc", peer="10.0.0.2")  # another account
    assert apply.applied == 4


def test_a_change_of_the_item_or_patron_makes_it_new(db, ctx):
    apply = Counting()
    send(db, ctx, CHECKOUT, apply, peer="10.0.0.1")
    db.run_blocking(
        lambda txn: txn.execute(
            "UPDATE borrowers SET gonenoaddress = 1 WHERE cardnumber = ?", (ADA,)
        )
    )
    send(db, ctx, CHECKOUT, apply, peer="10.0.0.1")
    assert apply.applied == 2
    db.run_blocking(
        lambda txn: txn.execute("UPDATE items SET damaged = 1 WHERE barcode = ?", (AVAILABLE,))
    )
    send(db, ctx, CHECKOUT, apply, peer="10.0.0.1")
    assert apply.applied == 3


def test_read_only_requests_are_neither_journalled_nor_in_between(db, ctx):
    apply = Counting()
    send(db, ctx, CHECKOUT, apply, peer="10.0.0.1")
    send(db, ctx, f"63000{STAMP}          AOWEL|AA{ADA}|", apply, peer="10.0.0.1")
    send(db, ctx, CHECKOUT, apply, peer="10.0.0.1")
    assert apply.applied == 2  # the 63, and the checkout once
    rows = db.run_blocking(lambda txn: txn.query("SELECT serial FROM kgw_request_journal"))
    assert [int(r["serial"]) for r in rows] == [1]


def test_a_row_written_since_it_was_read_is_a_race(db):
    def write(txn, serial):
        journal.record(
            txn,
            "joe",
            "10.0.0.1",
            serial,
            key="k",
            state="s",
            response="{}",
            created="2026-03-10 14:30:00",
        )

    db.run_blocking(write, None)
    with pytest.raises(journal.JournalRace):
        db.run_blocking(write, None)  # a second first row
    db.run_blocking(write, 1)
    with pytest.raises(journal.JournalRace):
        db.run_blocking(write, 1)  # serial 1 was replaced meanwhile


def test_purge_forgets_old_rows(db, ctx):
    send(db, ctx, CHECKOUT, Counting(), peer="10.0.0.1")
    later = (NOW + timedelta(days=2)).strftime("%Y-%m-%d %H:%M:%S")
    assert db.run_blocking(journal.purge, later) == 1


def test_the_journal_on_koha_s_own_schema_in_mariadb(sipconfig):
    """kgw_request_journal is the gateway's table on a Koha database: created there by
    migration 5's gateway statements; the journal's SQL runs on Koha's tables."""
    from koha_gateway.acs.context import RequestContext
    from koha_gateway.db import schema
    from koha_gateway.db.engine import Database
    from koha_gateway.sip2.codec import Response
    from tests.support.mariadb import KOHA_TEMPLATE, server_or_skip

    server = server_or_skip()
    url = server.create_database(template=KOHA_TEMPLATE)
    db = Database.from_url(url)
    try:
        (migration,) = [m for m in schema.MIGRATIONS if m.version == 5]

        def create(txn):
            for statement in migration.gateway:
                txn.execute(txn.engine.ddl(statement))

        db.run_blocking(create)
        account = sipconfig.accounts["joe"]
        ctx = RequestContext(
            account=account,
            institution=sipconfig.institutions[account.institution],
            sysprefs=None,
            now=NOW,
            peer="10.0.0.1",
        )
        applied = []

        def apply(txn, ctx, msg):
            applied.append(msg.code)
            return Response("38").fixed("Y", STAMP)

        raw = f"37{STAMP}0100NZDBV1.00|AOWEL|AA{ADA}|BKtxn|"
        for _ in range(2):
            db.run_blocking(journal.handle, ctx, parse(raw), raw.encode(), apply)
        assert applied == ["37"]
        state = db.run_blocking(journal._patron_state, 1)
        assert state[0] is None and state[1:4] == [[], [], []]
        with pytest.raises(journal.JournalRace):
            db.run_blocking(
                journal.record, "joe", "10.0.0.1", 7, key="k", state="s", response="{}", created="x"
            )
        later = (NOW + timedelta(days=2)).strftime("%Y-%m-%d %H:%M:%S")
        assert db.run_blocking(journal.purge, later) == 1
    finally:
        db.close()
        server.drop_database(url.rsplit("/", 1)[1])


class _Blocking:
    """The real database, its transactions run at once (Gateway.apply wants Deferreds)."""

    def __init__(self, db):
        self.db = db

    def run(self, fn, *args, inline=False, **kw):
        from twisted.internet import defer

        return defer.maybeDeferred(self.db.run_blocking, fn, *args, **kw)


@pytest.mark.parametrize(
    ("error", "attempts"),
    [("integrity", 1), ("serialization", 2), ("race", 2)],
)
def test_gateway_apply_runs_again_only_a_lost_race(db, ctx, sipconfig, error, attempts):
    from koha_gateway.db.engine import IntegrityError, SerializationFailure
    from koha_gateway.service import Gateway

    exceptions = {
        "integrity": IntegrityError("a constraint of the request itself"),
        "serialization": SerializationFailure("deadlock"),
        "race": journal.JournalRace("journal row written concurrently"),
    }
    calls = []

    class Failing:
        def handle(self, txn, ctx, msg):
            calls.append(msg.code)
            if len(calls) == 1:
                raise exceptions[error]
            return ACS().handle(txn, ctx, msg)

    gateway = Gateway(sipconfig, _Blocking(db), None, {})
    gateway.acs = Failing()
    outcome = []
    gateway.apply(ctx(peer="10.0.0.1"), parse(CHECKOUT), CHECKOUT.encode()).addBoth(outcome.append)
    assert len(calls) == attempts
    if attempts == 1:
        assert outcome[0].check(IntegrityError) and not outcome[0].check(SerializationFailure)
    else:
        assert outcome[0].code == "12" and outcome[0].fixed_values[0] == "1"


def test_a_row_replaced_by_another_request_of_the_terminal_is_replaced_again(db):
    """The row is read unlocked and written at the end: one written meanwhile by another
    request of the terminal is replaced (that request came first); one written meanwhile by a
    copy of this request is a race (run again, this one is then the resend)."""
    row = {"state": "s", "response": "{}", "created": "2026-03-10 14:30:00"}
    db.run_blocking(journal.record, "joe", "10.0.0.1", None, key="a", **row)
    db.run_blocking(journal._write, "joe", "10.0.0.1", 0, key="b", **row)  # read before "a"
    rows = db.run_blocking(lambda txn: txn.query("SELECT serial, digest FROM kgw_request_journal"))
    assert [(int(r["serial"]), r["digest"]) for r in rows] == [(2, "b")]
    with pytest.raises(journal.JournalRace):
        db.run_blocking(journal._write, "joe", "10.0.0.1", 1, key="b", **row)


@pytest.mark.parametrize("engine", ["postgresql", "mysql"])
def test_the_terminal_s_row_is_not_locked_while_a_request_is_applied(db, ctx, engine):
    """Two kiosks sharing a terminal (one account, one address): the second one's payment
    commits while the first one's checkout is still being applied; then the checkout commits
    too and its answer is the terminal's last one."""
    import threading

    other = f"37{STAMP}0100NZDBV1.00|AOWEL|AA23529000000002|BKtxn|"
    inside, release = threading.Event(), threading.Event()
    outcome = []

    def slow(txn, context, msg):
        response = ACS().handle(txn, context, msg)
        inside.set()
        assert release.wait(30)
        return response

    def first():
        try:
            outcome.append(send(db, ctx, CHECKOUT, slow, peer="10.0.0.9"))
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            outcome.append(exc)

    send(
        db,
        ctx,
        f"37{STAMP}0100NZDBV2.00|AOWEL|AA23529000000002|BKtxn|",
        Counting(),
        peer="10.0.0.9",
    )
    thread = threading.Thread(target=first)
    thread.start()
    try:
        assert inside.wait(30)
        second = send(db, ctx, other, ACS().handle, peer="10.0.0.9")
        assert second.startswith('{"code": "38", "fixed": ["Y"'), second
    finally:
        release.set()
        thread.join(30)
    assert isinstance(outcome[0], str), outcome
    assert outcome[0].startswith('{"code": "12", "fixed": ["1"'), outcome
    rows = db.run_blocking(
        lambda txn: txn.query(
            "SELECT serial, digest FROM kgw_request_journal WHERE peer = '10.0.0.9'"
        )
    )
    assert [(int(r["serial"]), r["digest"]) for r in rows] == [
        (3, journal.digest(CHECKOUT.encode()))
    ]


def test_the_one_statement_fingerprint_reads_what_the_two_read(db):
    """The item's and the patron's state read together (11, 29) are the state read apart: the
    digests written before the two were merged still match."""

    def add_restriction(txn):
        txn.execute(
            "INSERT INTO borrower_debarments (borrowernumber, type, comment, created) "
            "SELECT borrowernumber, 'MANUAL', 'test', '2026-03-01 10:00:00' FROM borrowers "
            "WHERE cardnumber = ?",
            (ADA,),
        )

    db.run_blocking(add_restriction)

    def compare(txn):
        barcodes = [r["barcode"] for r in txn.query("SELECT barcode FROM items ORDER BY 1")]
        numbers = [r["borrowernumber"] for r in txn.query("SELECT borrowernumber FROM borrowers")]
        compared = 0
        for barcode in [*barcodes, "no such item"]:
            for number in [*numbers, 999999]:
                apart = [journal._item_state(txn, barcode), journal._patron_state(txn, number)]
                assert journal._item_and_patron_state(txn, barcode, number) == apart
                compared += 1
        return compared

    assert db.run_blocking(compare) > 10
