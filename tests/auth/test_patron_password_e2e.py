"""Patron passwords (AD -> CQ) through a running gateway, on every engine: the first check of a
password takes bcrypt, later checks of the same credentials are decided inside the message's own
transaction (no transaction of their own: the authenticator logs one line per borrower read,
"reading N borrower rows for M password checks", and one per bcrypt computation)."""

from __future__ import annotations

from koha_gateway.auth.passwords import hash_password
from tests.gateway import sip_date

NOW = sip_date()
ADA = "23529000000001"
PIN = "1234"


def patron_info(client, password: str, patron: str = ADA) -> str:
    return client.request(f"63000{NOW}          AOWEL|AA{patron}|AD{password}|")


def cq(answer: str) -> str:
    return answer.split("|CQ", 1)[1][0]


class Counts:
    """Borrower reads of their own and bcrypt computations, from the SIP log (written line by
    line on the reactor before the answer that follows them is sent)."""

    def __init__(self, gateway):
        self.gateway = gateway

    def __call__(self) -> tuple[int, int]:
        text = self.gateway.sip_log_text()
        return text.count("borrower rows for"), text.count("password hash check started")


def login_attempts(gateway, cardnumber: str = ADA) -> int:
    rows = gateway.query("SELECT login_attempts FROM borrowers WHERE cardnumber = ?", (cardnumber,))
    return rows[0]["login_attempts"]


def test_a_remembered_password_is_checked_in_the_message_transaction(gateway):
    counts = Counts(gateway)
    with gateway.logged_in() as client:
        reads, bcrypts = counts()
        assert cq(patron_info(client, PIN)) == "Y"
        # First time: the borrower row in a transaction of its own, then bcrypt.
        assert counts() == (reads + 1, bcrypts + 1)
        assert cq(patron_info(client, PIN)) == "Y"
        assert cq(client.request(f"23000{NOW}AOWEL|AA{ADA}|AC|AD{PIN}|")) == "Y"
        # Then only the message's own transaction.
        assert counts() == (reads + 1, bcrypts + 1)
        # A wrong password after a right one: the slow path, and the failure counted.
        assert cq(patron_info(client, "4321")) == "N"
        assert counts() == (reads + 2, bcrypts + 2)
        assert login_attempts(gateway) == 1
        # The right one again: accepted, and the count reset (in the message's transaction).
        assert cq(patron_info(client, PIN)) == "Y"
        assert login_attempts(gateway) == 0
        assert counts()[1] == bcrypts + 2


def test_a_locked_account_stays_refused(gateway):
    counts = Counts(gateway)
    gateway.query("UPDATE systempreferences SET value = '3' WHERE variable = 'FailedLoginAttempts'")
    with gateway.logged_in() as client:
        assert cq(patron_info(client, PIN)) == "Y"  # remembered from now on
        gateway.query("UPDATE borrowers SET login_attempts = 3 WHERE cardnumber = ?", (ADA,))
        reads, bcrypts = counts()
        assert cq(patron_info(client, PIN)) == "N"
        assert counts() == (reads, bcrypts)  # decided in the message's transaction
        assert cq(patron_info(client, PIN)) == "N"
    assert gateway.sip_log_text().count(f"account '{ADA}' is locked after failed logins") == 2
    assert login_attempts(gateway) == 3  # a refusal of a locked account counts nothing


def test_a_password_changed_in_the_database_refuses_the_old_one(gateway):
    counts = Counts(gateway)
    with gateway.logged_in() as client:
        assert cq(patron_info(client, PIN)) == "Y"
        assert cq(patron_info(client, PIN)) == "Y"
        stored = hash_password("5678", 4)
        gateway.query("UPDATE borrowers SET password = ? WHERE cardnumber = ?", (stored, ADA))
        reads, bcrypts = counts()
        assert cq(patron_info(client, PIN)) == "N"
        assert counts() == (reads + 1, bcrypts + 1)  # the new hash: bcrypt again
        assert login_attempts(gateway) == 1
        assert cq(patron_info(client, "5678")) == "Y"
        assert cq(patron_info(client, "5678")) == "Y"
        assert counts() == (reads + 2, bcrypts + 2)
        assert login_attempts(gateway) == 0


def test_unknown_patron_with_a_password(gateway):
    counts = Counts(gateway)
    with gateway.logged_in() as client:
        reads, bcrypts = counts()
        answer = patron_info(client, PIN, patron="99999999999999")
        assert "|BLN|" in answer and "|CQ" not in answer
        assert counts() == (reads, bcrypts)


def test_a_resend_answered_from_the_journal_has_its_password_checked(gateway):
    checkout = f"11YN{NOW}{' ' * 18}AOWEL|AA{ADA}|AB39999000000001|AC|AD{PIN}|"
    with gateway.logged_in() as client:
        assert cq(patron_info(client, PIN)) == "Y"
        first = client.request(checkout)
        gateway.query("UPDATE borrowers SET login_attempts = 2 WHERE cardnumber = ?", (ADA,))
        again = client.request(checkout)
    assert again == first
    assert "resent 11 answered from the request journal" in gateway.sip_log_text()
    # The resend's password was checked as any other's: the right one resets the count.
    assert login_attempts(gateway) == 0
    assert f"AD{PIN}" not in gateway.read_log()
