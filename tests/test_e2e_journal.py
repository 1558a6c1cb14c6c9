"""The request journal end to end (koha_gateway/ils/journal.py), over real sockets to twistd on
every engine: a resend is answered once, also after other kiosks of the same terminal wrote;
a new request that happens to have the same bytes is applied.

A terminal is a SIP account at a peer address: kiosks that log in with one account from one
address (here two connections from 127.0.0.1) are one terminal. Clients here send no error
detection, so a request's bytes are the same whenever its fields and transaction date are.
"Another terminal" connects from 127.0.0.2 (any 127/8 address reaches the loopback listener
on Linux).
"""

from __future__ import annotations

import re
import threading
import time
from datetime import timedelta

from tests.gateway import NOW as NOW_INSTANT
from tests.gateway import elements, sip_date

BLANK = " " * 18
ADA = "23529000000001"
GRACE = "23529000000002"
AVAILABLE = "39999000000001"
NOW = sip_date()


def checkout(patron: str, barcode: str) -> str:
    return f"11YN{NOW}{BLANK}AOWEL|AA{patron}|AB{barcode}|AC|"


def checkin(barcode: str) -> str:
    return f"09N{NOW}{NOW}AOWEL|APWEL|AB{barcode}|AC|"


def fee_paid(patron: str, amount: str) -> str:
    return f"37{NOW}0100NZDBV{amount}|AOWEL|AA{patron}|BKtxn-{amount}|"


def loans(gateway, barcode: str) -> list[dict]:
    return gateway.query(
        "SELECT b.cardnumber, i.renewals_count FROM issues i "
        "JOIN items it ON it.itemnumber = i.itemnumber "
        "JOIN borrowers b ON b.borrowernumber = i.borrowernumber WHERE it.barcode = ?",
        (barcode,),
    )


def issues_counted(gateway, barcode: str) -> int:
    rows = gateway.query(
        "SELECT COUNT(*) AS n FROM statistics s JOIN items it ON it.itemnumber = s.itemnumber "
        "WHERE it.barcode = ? AND s.type = 'issue'",
        (barcode,),
    )
    return int(rows[0]["n"])


def payments(gateway, patron: str) -> int:
    return len(
        gateway.query(
            "SELECT a.accountlines_id FROM accountlines a "
            "JOIN borrowers b ON b.borrowernumber = a.borrowernumber "
            "WHERE b.cardnumber = ? AND a.credit_type_code = 'PAYMENT'",
            (patron,),
        )
    )


def restricted(gateway, patron: str) -> bool:
    rows = gateway.query(
        "SELECT d.borrower_debarment_id FROM borrower_debarments d "
        "JOIN borrowers b ON b.borrowernumber = d.borrowernumber WHERE b.cardnumber = ?",
        (patron,),
    )
    return bool(rows)


def policy(timeout: int, retries: int):
    """customise=: every institution's policy gives a retry window of timeout x retries s."""

    def customise(tree, gateway):
        for element in elements(tree, "policy"):
            element.set("timeout", str(timeout))
            element.set("retries", str(retries))

    return customise


def test_checkout_checkin_checkout_in_one_second_ends_on_loan(gateway):
    with gateway.logged_in() as kiosk:
        first = kiosk.request(checkout(ADA, AVAILABLE))
        assert first.startswith("121"), first
        back = kiosk.request(checkin(AVAILABLE))
        assert back.startswith("101"), back
        third = kiosk.request(checkout(ADA, AVAILABLE))
        assert third.startswith("121"), third
    assert loans(gateway, AVAILABLE) == [{"cardnumber": ADA, "renewals_count": 0}]
    assert issues_counted(gateway, AVAILABLE) == 2


def test_the_true_resend_on_a_new_connection_is_answered_once(gateway):
    """A kiosk gives up waiting, reconnects, logs in, asks for the status and sends the same
    bytes again: one loan, one payment, the first answers."""
    request = checkout(ADA, AVAILABLE)
    pay = fee_paid(GRACE, "2.00")
    before = payments(gateway, GRACE)
    with gateway.logged_in() as kiosk:
        first = kiosk.request(request)
        assert first.startswith("121"), first
    with gateway.logged_in() as kiosk:
        assert kiosk.request("9900302.00").startswith("98")  # read-only: not journalled
        assert kiosk.request(request) == first
        paid = kiosk.request(pay)
        assert paid.startswith("38Y"), paid
    with gateway.logged_in() as kiosk:
        assert kiosk.request(pay) == paid
    assert loans(gateway, AVAILABLE) == [{"cardnumber": ADA, "renewals_count": 0}]
    assert issues_counted(gateway, AVAILABLE) == 1
    assert payments(gateway, GRACE) == before + 1


def test_a_lost_answer_is_not_applied_twice(gateway):
    """The first copy is applied but its answer never read; the resend gets that answer."""
    pay = fee_paid(GRACE, "1.00")
    before = payments(gateway, GRACE)
    with gateway.logged_in() as kiosk:
        kiosk.send_raw(kiosk.frame(pay))  # and never reads the answer
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and payments(gateway, GRACE) == before:
            time.sleep(0.05)
    assert payments(gateway, GRACE) == before + 1
    with gateway.logged_in() as kiosk:
        answer = kiosk.request(pay)
    assert answer.startswith("38Y"), answer
    assert payments(gateway, GRACE) == before + 1


def test_the_same_bytes_from_another_terminal_are_applied(gateway):
    pay = fee_paid(GRACE, "1.00")
    before = payments(gateway, GRACE)
    with gateway.logged_in() as kiosk:
        assert kiosk.request(pay).startswith("38Y")
    with gateway.logged_in(source_address=("127.0.0.2", 0)) as other:
        assert other.request(pay).startswith("38Y")
    with gateway.logged_in("kilsc", "kilsc1") as other_account:
        assert other_account.request(pay).startswith("38Y")
    assert payments(gateway, GRACE) == before + 3
    # A client with fixed transaction dates: the same checkout from another terminal is applied
    # (a renewal of the patron's own loan, as Koha does), not answered from the journal.
    request = checkout(ADA, AVAILABLE)
    with gateway.logged_in() as kiosk:
        assert kiosk.request(request).startswith("121")
    with gateway.logged_in(source_address=("127.0.0.2", 0)) as other:
        assert other.request(request).startswith("121")
    assert loans(gateway, AVAILABLE) == [{"cardnumber": ADA, "renewals_count": 1}]


def add_patron_with_item(gateway) -> tuple[str, str]:
    """A patron who may borrow, with an available item of their own (the demo's other
    patrons are restricted): the cardnumber and the barcode."""
    from koha_gateway.db.engine import Database
    from tests.support import statements

    db = Database.from_url(gateway.database_url)
    try:
        db.run_blocking(statements.add_kiosk, 1, NOW_INSTANT.date())
    finally:
        db.close()
    return statements.kiosk_patron(1), statements.kiosk_item(1)


def test_a_resend_after_another_kiosk_of_the_terminal_wrote_is_answered_once(gateway):
    """Kiosks A and B share one SIP account behind one address. A's checkout is applied but
    A gives up waiting; B checks out another item; A reconnects and resends: A's answer,
    one loan (not a renewal)."""
    patron, item = add_patron_with_item(gateway)
    request = checkout(ADA, AVAILABLE)
    with gateway.logged_in() as kiosk_a:
        first = kiosk_a.request(request)
        assert first.startswith("121"), first
    with gateway.logged_in() as kiosk_b:
        other = kiosk_b.request(checkout(patron, item))
        assert other.startswith("121"), other
    with gateway.logged_in() as kiosk_a:
        assert kiosk_a.request(request) == first
    assert loans(gateway, AVAILABLE) == [{"cardnumber": ADA, "renewals_count": 0}]
    assert issues_counted(gateway, AVAILABLE) == 1


def test_a_resent_payment_after_another_kiosk_of_the_terminal_paid_is_paid_once(gateway):
    """A's fee payment is applied and its answer never read; B, of the same terminal, pays
    for another patron and checks an item out; A's resend gets A's answer: one payment."""
    pay = fee_paid(GRACE, "1.00")
    before_grace, before_ada = payments(gateway, GRACE), payments(gateway, ADA)
    with gateway.logged_in() as kiosk_a:
        kiosk_a.send_raw(kiosk_a.frame(pay))  # and never reads the answer
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and payments(gateway, GRACE) == before_grace:
            time.sleep(0.05)
    assert payments(gateway, GRACE) == before_grace + 1
    patron, item = add_patron_with_item(gateway)
    with gateway.logged_in() as kiosk_b:
        assert kiosk_b.request(fee_paid(ADA, "0.50")).startswith("38Y")
        assert kiosk_b.request(checkout(patron, item)).startswith("121")
    with gateway.logged_in() as kiosk_a:
        answer = kiosk_a.request(pay)
    assert answer.startswith("38Y"), answer
    assert payments(gateway, GRACE) == before_grace + 1
    assert payments(gateway, ADA) == before_ada + 1


def test_the_same_bytes_after_the_retry_window_are_applied(make_gateway):
    gateway = make_gateway(customise=policy(timeout=2, retries=1))
    pay = fee_paid(GRACE, "1.00")
    before = payments(gateway, GRACE)
    with gateway.logged_in() as kiosk:
        assert kiosk.request(pay).startswith("38Y")
        assert kiosk.request(pay).startswith("38Y")  # within the window: the resend
        assert payments(gateway, GRACE) == before + 1
        assert kiosk.request(checkout(ADA, AVAILABLE)).startswith("121")
        time.sleep(3.2)  # the window is two seconds of the gateway's clock: let them pass
        assert kiosk.request(checkout(ADA, AVAILABLE)).startswith("121")  # a renewal
        assert kiosk.request(pay).startswith("38Y")  # out of the window: new again
    assert payments(gateway, GRACE) == before + 2
    # Each write deleted the terminal's rows out of the window: the last two are left.
    rows = gateway.query("SELECT digest FROM kgw_request_journal WHERE peer = '127.0.0.1'")
    assert len(rows) == 2
    assert loans(gateway, AVAILABLE) == [{"cardnumber": ADA, "renewals_count": 1}]


def test_a_change_by_someone_else_makes_it_a_new_request(gateway):
    """Staff check the item in (Koha's staff interface: a direct change of the tables), then
    the kiosk's identical checkout is a new loan, not the journalled answer."""
    request = checkout(ADA, AVAILABLE)
    with gateway.logged_in() as kiosk:
        assert kiosk.request(request).startswith("121")
    with gateway.logged_in(source_address=("127.0.0.2", 0)) as desk:
        assert desk.request(checkin(AVAILABLE)).startswith("101")
    assert loans(gateway, AVAILABLE) == []
    with gateway.logged_in() as kiosk:
        assert kiosk.request(request).startswith("121")
    assert loans(gateway, AVAILABLE) == [{"cardnumber": ADA, "renewals_count": 0}]


def test_block_enable_block_leaves_the_patron_blocked(gateway):
    block = f"01N{NOW}AOWEL|ALlost card|AA{ADA}|AC|"
    enable = f"25{NOW}AOWEL|AA{ADA}|AC|"
    with gateway.logged_in() as kiosk:
        assert kiosk.request(block).startswith("24")
        assert restricted(gateway, ADA)
        assert kiosk.request(enable).startswith("26")
        assert not restricted(gateway, ADA)
        assert kiosk.request(block).startswith("24")
    assert restricted(gateway, ADA)
    # Each applied request is in the SIP log (the audit lines of the ACS).
    blocked = f"joe@127.0.0.1: patron {ADA} blocked by the self-check"
    enabled = f"joe@127.0.0.1: patron {ADA} enabled by the self-check"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        text = gateway.sip_log_text()
        if text.count(blocked) == 2 and enabled in text:
            break
        time.sleep(0.05)
    assert text.count(blocked) == 2 and text.count(enabled) == 1, text[-3000:]


def test_concurrent_copies_from_one_terminal_apply_once(gateway):
    copies = 4

    pay = fee_paid(GRACE, "0.50")
    before = payments(gateway, GRACE)
    kiosks = [gateway.logged_in() for _ in range(copies)]
    answers: list[str] = []
    go = threading.Barrier(copies)

    def send(kiosk):
        go.wait(10)
        answers.append(kiosk.request(pay))

    threads = [threading.Thread(target=send, args=(k,)) for k in kiosks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    for kiosk in kiosks:
        kiosk.close()
    assert len(answers) == copies and len(set(answers)) == 1, answers
    assert answers[0].startswith("38Y"), answers
    assert payments(gateway, GRACE) == before + 1


def test_the_journal_survives_a_restart(make_gateway, demo_url):
    pay = fee_paid(GRACE, "1.00")
    first = make_gateway()
    before = payments(first, GRACE)
    with first.logged_in() as kiosk:
        paid = kiosk.request(pay)
    first.stop()
    # Restarted half a minute later (the pinned clock of the new process starts there).
    again = make_gateway(clock=NOW_INSTANT + timedelta(seconds=30))
    with again.logged_in() as kiosk:
        assert kiosk.request(pay) == paid
    assert payments(again, GRACE) == before + 1


def test_copies_on_several_worker_processes_apply_once(make_gateway):
    gateway = make_gateway(extra_args=["--workers", "3"])
    pay = fee_paid(GRACE, "1.00")
    before = payments(gateway, GRACE)
    answers: set[str] = set()

    def serving() -> set[str]:
        """The processes that received the payment (pids in the SIP log)."""
        text = gateway.sip_log_text()
        return set(re.findall(r"\] \[(\d+)\] \[DEBUG\] joe@[^:]+: INPUT MSG: '37", text))

    deadline = time.monotonic() + 30
    while len(serving()) < 2 and time.monotonic() < deadline:
        # Connections open at once land on several processes (once the workers run).
        kiosks = [gateway.logged_in() for _ in range(20)]
        try:
            answers |= {kiosk.request(pay) for kiosk in kiosks}
        finally:
            for kiosk in kiosks:
                kiosk.close()
    assert len(serving()) >= 2, "the copies all went to one process"
    assert len(answers) == 1 and answers.pop().startswith("38Y")
    assert payments(gateway, GRACE) == before + 1
