"""The patron password decided inside the message's transaction (``PatronCheck``), on the demo
database of every engine: its answers, its writes, when it gives up, and what is done after."""

from __future__ import annotations

import pytest
from twisted.internet import task
from twisted.logger import globalLogPublisher

from koha_gateway.auth.authenticator import Authenticator, PatronCheck, SlowPath
from koha_gateway.db.engine import Database
from tests.support.statements import recording

ADA = "23529000000001"
PIN = "1234"


@pytest.fixture
def db(demo_url):
    database = Database.from_url(demo_url, max_connections=1)
    yield database
    database.close()


@pytest.fixture
def clock():
    return task.Clock()


@pytest.fixture
def auth(db, clock):
    return Authenticator(db, reactor=clock)


def remember(auth, db, identifier: str, password: str, column: str = "cardnumber") -> None:
    """What a bcrypt check that succeeded leaves behind: the credentials remembered."""
    stored = db.run_blocking(
        lambda txn: txn.scalar(f"SELECT password FROM borrowers WHERE {column} = ?", (identifier,))
    )
    auth._remember(("local", stored, auth._mac(stored, password)), None)


def attempts(db, cardnumber: str = ADA) -> int:
    return db.run_blocking(
        lambda txn: txn.scalar(
            "SELECT login_attempts FROM borrowers WHERE cardnumber = ?", (cardnumber,)
        )
    )


def set_attempts(db, value: int, limit: str | None = None) -> None:
    def change(txn):
        txn.execute("UPDATE borrowers SET login_attempts = ? WHERE cardnumber = ?", (value, ADA))
        if limit is not None:
            txn.execute(
                "UPDATE systempreferences SET value = ? WHERE variable = 'FailedLoginAttempts'",
                (limit,),
            )

    db.run_blocking(change)


def decide(db, check: PatronCheck, *, readonly: bool = False):
    """The answer of ``check`` in a transaction of its own, or the SlowPath class."""
    try:
        return db.run_blocking(check.decide, readonly=readonly)
    except SlowPath:
        return SlowPath


def test_remembered_credentials_are_accepted_with_one_statement(auth, db):
    remember(auth, db, ADA, PIN)
    check = auth.patron_check(ADA, PIN)
    with recording() as statements:
        assert decide(db, check) is True
    # The borrower row by cardnumber; no FailedLoginAttempts read without failed attempts.
    assert len(statements) == 1
    assert check.ok is True and not check.locked


def test_a_userid_is_found_after_the_cardnumber_as_koha_does(auth, db):
    remember(auth, db, "joe", "joes", column="userid")
    assert decide(db, auth.patron_check("joe", "joes")) is True


def test_credentials_not_remembered_need_bcrypt_and_write_nothing(auth, db):
    set_attempts(db, 2)
    check = auth.patron_check(ADA, PIN)
    assert decide(db, check) is SlowPath
    assert check.ok is None
    assert attempts(db) == 2


def test_a_wrong_password_gives_up_so_that_the_failure_is_counted(auth, db):
    remember(auth, db, ADA, PIN)
    assert decide(db, auth.patron_check(ADA, "4321")) is SlowPath


def test_an_unknown_patron_is_refused(auth, db, clock):
    check = auth.patron_check("no-such-card", PIN)
    assert decide(db, check) is False
    auth.patron_checked(check)
    assert auth._throttle._failures["patron:no-such-card"][0] == 1


def test_a_patron_without_a_local_password_gives_up(auth, db):
    db.run_blocking(
        lambda txn: txn.execute("UPDATE borrowers SET password = NULL WHERE cardnumber = ?", (ADA,))
    )
    assert decide(db, auth.patron_check(ADA, PIN)) is SlowPath


def test_failed_attempts_are_reset_in_the_same_transaction(auth, db):
    remember(auth, db, ADA, PIN)
    set_attempts(db, 2)  # FailedLoginAttempts is empty in the demo data: no lock
    with recording() as statements:
        assert decide(db, auth.patron_check(ADA, PIN)) is True
    assert attempts(db) == 0
    assert len(statements) == 3  # the row, FailedLoginAttempts, the reset


def test_a_reset_in_a_read_only_transaction_gives_up(auth, db):
    remember(auth, db, ADA, PIN)
    set_attempts(db, 2)
    assert decide(db, auth.patron_check(ADA, PIN), readonly=True) is SlowPath
    assert attempts(db) == 2


def test_a_locked_account_is_refused_and_logged_afterwards(auth, db):
    remember(auth, db, ADA, PIN)
    set_attempts(db, 3, limit="3")
    check = auth.patron_check(ADA, PIN)
    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        assert decide(db, check) is False
        assert check.locked
        assert not any("locked" in str(e.get("log_format")) for e in events)
        auth.patron_checked(check)
    finally:
        globalLogPublisher.removeObserver(events.append)
    warned = [e for e in events if "is locked after failed logins" in str(e.get("log_format"))]
    assert len(warned) == 1 and warned[0]["identifier"] == ADA
    assert PIN not in repr(warned[0])
    assert attempts(db) == 3
    assert auth._throttle._failures[f"patron:{ADA}"][0] == 1


def test_a_success_clears_the_throttle(auth, db):
    remember(auth, db, ADA, PIN)
    auth._throttle.failed(f"patron:{ADA}")
    check = auth.patron_check(ADA, PIN)
    assert decide(db, check) is True
    auth.patron_checked(check)
    assert f"patron:{ADA}" not in auth._throttle._failures


def test_nothing_is_done_after_a_transaction_that_did_not_decide(auth, db):
    check = auth.patron_check(ADA, PIN)
    assert decide(db, check) is SlowPath
    auth.patron_checked(check)
    assert auth._throttle._failures == {}


def test_only_checks_that_can_be_decided_without_bcrypt_or_ldap_get_a_patron_check(db, clock):
    auth = Authenticator(db, reactor=clock)
    assert auth.patron_check(ADA, "") is None
    assert auth.patron_check("", PIN) is None
    for _ in range(3):
        auth._throttle.failed(f"patron:{ADA}")
    # Slowed down: check_patron waits as before, then checks.
    assert auth.patron_check(ADA, PIN) is None
    assert auth.patron_check("23529000000002", PIN) is not None
    with_ldap = Authenticator(db, reactor=clock, ldap=object())
    assert with_ldap.patron_check(ADA, PIN) is None


def test_the_cache_is_read_at_the_time_the_reactor_gave(auth, clock):
    key = ("local", "stored", b"mac")
    auth._remember(key, 60)
    clock.advance(30)
    check_time = clock.seconds()
    clock.advance(40)  # expired now, but not when the check was asked for
    assert auth._known_at(key, check_time)
    assert not auth._known_at(key, clock.seconds())
    assert key in auth._verified  # a read from a database thread never deletes
