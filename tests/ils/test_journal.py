"""ils/journal.py in one process on both engines: when a request is a resend, and the race."""

from __future__ import annotations

import time
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
    """kgw_request_journal is the gateway's table on a Koha database: created there by the
    gateway steps of migrations 5 and 7; the journal's SQL runs on Koha's tables."""
    from koha_gateway.acs.context import RequestContext
    from koha_gateway.db import schema
    from koha_gateway.db.engine import Database
    from koha_gateway.sip2.codec import Response
    from tests.support.mariadb import KOHA_TEMPLATE, server_or_skip

    server = server_or_skip()
    url = server.create_database(template=KOHA_TEMPLATE)
    db = Database.from_url(url)
    try:
        migrations = [m for m in schema.MIGRATIONS if m.version in (5, 7)]

        def create(txn):
            for migration in migrations:
                for step in migration.gateway:
                    if callable(step):
                        step(txn, "2026-03-10")
                    else:
                        txn.execute(txn.engine.ddl(step))

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


def test_each_request_of_a_terminal_has_its_row_and_only_a_copy_races(db):
    """Rows are keyed by the request's digest: another request of the terminal writes a row
    of its own; a copy of the request that wrote the row since it was read is a race (run
    again, this one is then the resend)."""
    row = {"state": "s", "response": "{}", "created": "2026-03-10 14:30:00"}
    db.run_blocking(journal.record, "joe", "10.0.0.1", None, key="a", **row)
    db.run_blocking(journal.record, "joe", "10.0.0.1", None, key="b", **row)
    rows = db.run_blocking(
        lambda txn: txn.query("SELECT serial, digest FROM kgw_request_journal ORDER BY digest")
    )
    assert [(int(r["serial"]), r["digest"]) for r in rows] == [(1, "a"), (1, "b")]
    with pytest.raises(journal.JournalRace):
        db.run_blocking(journal.record, "joe", "10.0.0.1", None, key="b", **row)
    db.run_blocking(journal.record, "joe", "10.0.0.1", 1, key="b", **row)
    with pytest.raises(journal.JournalRace):
        db.run_blocking(journal.record, "joe", "10.0.0.1", 1, key="b", **row)


PAYMENT = f"37{STAMP}0100NZDBV1.00|AOWEL|AA23529000000002|BKkiosk-a|"


def _payments(db) -> int:
    return db.run_blocking(
        lambda txn: txn.scalar(
            "SELECT COUNT(*) AS n FROM accountlines WHERE credit_type_code = 'PAYMENT'"
        )
    )


def _loans(db, barcode: str) -> list:
    return db.run_blocking(
        lambda txn: txn.query(
            "SELECT i.renewals_count FROM issues i JOIN items it ON it.itemnumber = i.itemnumber "
            "WHERE it.barcode = ?",
            (barcode,),
        )
    )


def test_a_resend_after_another_kiosk_of_the_terminal_is_answered_from_the_journal(db, ctx):
    """Kiosks A and B share one SIP account behind one address: one terminal. A's checkout
    is applied (its answer lost), B checks out another item, A resends: A's answer, one loan
    (not a renewal)."""
    from tests.support import statements

    db.run_blocking(statements.add_kiosk, 1, NOW.date())  # a patron and item of kiosk B's
    apply = Counting()
    patron, item = statements.kiosk_patron(1), statements.kiosk_item(1)
    other = f"11YN{STAMP}{BLANK}AOWEL|AA{patron}|AB{item}|AC|"
    first = send(db, ctx, CHECKOUT, apply, peer="10.0.0.1")
    assert first.startswith('{"code": "12", "fixed": ["1"'), first
    answer = send(db, ctx, other, apply, peer="10.0.0.1")
    assert answer.startswith('{"code": "12", "fixed": ["1"'), answer
    later = NOW + timedelta(seconds=30)
    assert send(db, ctx, CHECKOUT, apply, peer="10.0.0.1", now=later) == first
    assert apply.applied == 2
    assert [int(r["renewals_count"]) for r in _loans(db, AVAILABLE)] == [0]


def test_a_resent_payment_after_another_kiosk_s_request_is_paid_once(db, ctx):
    apply = Counting()
    before = _payments(db)
    paid = send(db, ctx, PAYMENT, apply, peer="10.0.0.1")
    assert paid.startswith('{"code": "38", "fixed": ["Y"'), paid
    assert send(db, ctx, CHECKOUT, apply, peer="10.0.0.1").startswith('{"code": "12"')
    assert send(db, ctx, PAYMENT, apply, peer="10.0.0.1", now=NOW + timedelta(seconds=5)) == paid
    assert apply.applied == 2 and _payments(db) == before + 1


def test_the_same_bytes_after_another_kiosk_changed_the_item_are_new(db, ctx):
    """A checks the item out, B checks it in, A's identical checkout is a new loan: the
    item's state is not the one journalled with A's request."""
    apply = Counting()
    checkin = f"09N{STAMP}{STAMP}AOWEL|AB{AVAILABLE}|AC|"
    send(db, ctx, CHECKOUT, apply, peer="10.0.0.1")
    assert send(db, ctx, checkin, apply, peer="10.0.0.1").startswith('{"code": "10", "fixed": ["1"')
    again = send(db, ctx, CHECKOUT, apply, peer="10.0.0.1", now=NOW + timedelta(seconds=10))
    assert again.startswith('{"code": "12", "fixed": ["1"'), again
    assert apply.applied == 3
    assert [int(r["renewals_count"]) for r in _loans(db, AVAILABLE)] == [0]
    rows = db.run_blocking(
        lambda txn: txn.query(
            "SELECT serial FROM kgw_request_journal WHERE digest = ?",
            (journal.digest(CHECKOUT.encode()),),
        )
    )
    assert [int(r["serial"]) for r in rows] == [2]  # the same row, written again


def _journal(db, peer: str) -> list[tuple[str, str]]:
    return [
        (r["digest"], str(r["created"]))
        for r in db.run_blocking(
            lambda txn: txn.query(
                "SELECT digest, created FROM kgw_request_journal WHERE peer = ? "
                "ORDER BY created, digest",
                (peer,),
            )
        )
    ]


def test_the_terminal_s_expired_rows_are_deleted_with_its_next_write(db, ctx):
    """Rows older than the retry window (500 s here) go with the terminal's next write; the
    rows of other terminals and those within the window stay; an expired row of the
    request's own bytes is written anew."""
    apply = Counting()
    pay = PAYMENT.encode()
    send(db, ctx, PAYMENT, apply, peer="10.0.0.1")
    send(db, ctx, CHECKOUT, apply, peer="10.0.0.2")
    send(db, ctx, CHECKOUT, apply, peer="10.0.0.1", now=NOW + timedelta(seconds=100))
    later = NOW + timedelta(seconds=501)
    read = f"63000{STAMP}          AOWEL|AA{ADA}|"
    send(db, ctx, read, apply, peer="10.0.0.1", now=later)  # reads write nothing
    assert len(_journal(db, "10.0.0.1")) == 2
    checkin = f"09N{STAMP}{STAMP}AOWEL|AB{AVAILABLE}|AC|"
    send(db, ctx, checkin, apply, peer="10.0.0.1", now=later)
    assert _journal(db, "10.0.0.1") == [
        (journal.digest(CHECKOUT.encode()), "2026-03-10 14:31:40"),
        (journal.digest(checkin.encode()), "2026-03-10 14:38:21"),
    ]
    assert len(_journal(db, "10.0.0.2")) == 1  # another terminal's: the hourly purge's
    # The checkout's own row expired: deleted, and written anew by the same bytes.
    much_later = NOW + timedelta(seconds=700)
    send(db, ctx, CHECKOUT, apply, peer="10.0.0.1", now=much_later)
    rows = db.run_blocking(
        lambda txn: txn.query(
            "SELECT digest, serial, created FROM kgw_request_journal WHERE peer = '10.0.0.1' "
            "ORDER BY created"
        )
    )
    assert [(r["digest"], int(r["serial"]), str(r["created"])) for r in rows] == [
        (journal.digest(checkin.encode()), 1, "2026-03-10 14:38:21"),
        (journal.digest(CHECKOUT.encode()), 1, "2026-03-10 14:41:40"),
    ]
    assert journal.digest(pay) not in [d for d, _ in _journal(db, "10.0.0.1")]


@pytest.mark.parametrize("engine", ["postgresql", "mysql"])
def test_the_terminal_s_rows_are_not_locked_while_a_request_is_applied(db, ctx, engine):
    """Two kiosks sharing a terminal (one account, one address): the second one's payment
    commits while the first one's checkout is still being applied; then the checkout commits
    too, and each request has its row."""
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
    assert sorted((int(r["serial"]), r["digest"]) for r in rows) == sorted(
        (1, journal.digest(raw.encode()))
        for raw in (CHECKOUT, other, f"37{STAMP}0100NZDBV2.00|AOWEL|AA23529000000002|BKtxn|")
    )


def _expired_rows(txn, peer: str, n: int) -> None:
    """``n`` rows of the terminal (joe at ``peer``) from ten minutes before NOW."""
    for i in range(n):
        journal.record(
            txn,
            "joe",
            peer,
            None,
            key=f"old-{i}",
            state="s",
            response="{}",
            created=f"2026-03-10 14:20:{i:02d}",
        )


def _lock_waits(db, engine: str) -> int:
    """Transactions waiting for a lock on the journal (another connection's view)."""
    if engine == "postgresql":
        sql = (
            "SELECT COUNT(*) AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND query LIKE '%DELETE FROM kgw_request_journal%'"
        )
    else:
        # innodb_trx needs the PROCESS privilege; the test's own sessions are listed here.
        sql = (
            "SELECT COUNT(*) AS n FROM information_schema.processlist "
            "WHERE command = 'Query' AND info LIKE 'DELETE FROM kgw_request_journal%'"
        )
    return int(db.run_blocking(lambda txn: txn.scalar(sql)))


@pytest.mark.parametrize("engine", ["postgresql", "mysql"])
def test_two_kiosks_deleting_the_same_expired_rows_wait_once_and_both_commit(db, ctx, engine):
    """Kiosk A has deleted the terminal's expired rows and written its row, not yet
    committed; kiosk B's write, deleting the same rows, waits for A's commit (no deadlock,
    no error), then skips the rows A deleted and writes its own."""
    import threading

    from koha_gateway.db.engine import Database

    db.run_blocking(_expired_rows, "10.0.0.9", 5)
    watcher = Database.from_url(db.url, max_connections=1)
    inside, release = threading.Event(), threading.Event()
    outcome: dict[str, object] = {}

    def kiosk_a():
        def hold(txn):
            response = journal.handle(
                txn, ctx(peer="10.0.0.9"), parse(CHECKOUT), CHECKOUT.encode(), ACS().handle
            )
            inside.set()
            assert release.wait(30)
            return response

        try:
            outcome["a"] = journal.store(db.run_blocking(hold))
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            outcome["a"] = exc

    def kiosk_b():
        try:
            outcome["b"] = send(db, ctx, PAYMENT, ACS().handle, peer="10.0.0.9")
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            outcome["b"] = exc

    a, b = threading.Thread(target=kiosk_a), threading.Thread(target=kiosk_b)
    a.start()
    try:
        assert inside.wait(30)
        b.start()
        deadline = time.monotonic() + 20
        while _lock_waits(watcher, engine) == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _lock_waits(watcher, engine) == 1, "kiosk B did not wait for kiosk A's rows"
        assert "b" not in outcome
    finally:
        release.set()
        a.join(30)
        b.join(30)
        watcher.close()
    assert str(outcome["a"]).startswith('{"code": "12", "fixed": ["1"'), outcome
    assert str(outcome["b"]).startswith('{"code": "38", "fixed": ["Y"'), outcome
    assert sorted(d for d, _ in _journal(db, "10.0.0.9")) == sorted(
        journal.digest(raw.encode()) for raw in (CHECKOUT, PAYMENT)
    )


@pytest.mark.parametrize("engine", ["postgresql", "mysql"])
def test_kiosks_of_one_terminal_writing_at_once_over_expired_rows_all_commit(db, ctx, engine):
    """Four kiosks of one terminal write at the same moment, ten times, each time over fresh
    expired rows of the terminal that all of them delete: no deadlock, no lost write. The
    requests write nothing but the journal (payments of different patrons can deadlock on
    ``accountlines`` in InnoDB's small test tables, which is the ACS's concern, not the
    journal's, and is run again by Gateway.apply)."""
    import threading

    from koha_gateway.db.engine import Database
    from koha_gateway.sip2.codec import Response

    def answer(txn, context, msg):
        return Response("38").fixed("Y", STAMP)

    kiosks, rounds = 4, 10
    errors: list[BaseException] = []
    pool = Database.from_url(db.url, max_connections=kiosks)
    for n in range(rounds):
        db.run_blocking(_expired_rows, "10.0.0.7", 6)
        go = threading.Barrier(kiosks)
        answers: list[str] = []

        def pay(k, n=n, go=go, answers=answers):
            raw = f"37{STAMP}0100NZDBV0.10|AOWEL|AA2352900000000{k + 1}|BKround-{n}-{k}|"
            try:
                go.wait(10)
                answers.append(send(pool, ctx, raw, answer, peer="10.0.0.7"))
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=pay, args=(k,)) for k in range(kiosks)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        if n == rounds - 1:
            pool.close()
        assert not errors, errors
        assert len(answers) == kiosks and all(a.startswith('{"code": "38"') for a in answers)
        digests = [d for d, _ in _journal(db, "10.0.0.7")]
        assert len(digests) == kiosks * (n + 1) and not any(d.startswith("old-") for d in digests)


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
