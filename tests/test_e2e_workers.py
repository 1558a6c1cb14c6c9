"""``--workers N``: processes sharing the listening sockets, reloaded and stopped together."""

from __future__ import annotations

import os
import re
import signal
import time

from tests.gateway import wait_for


def _pids_in_log(gateway) -> set[str]:
    return set(re.findall(r"\] \[(\d+)\] \[INFO\] joe@", gateway.sip_log_text()))


def test_three_processes_share_the_listeners(make_gateway):
    gateway = make_gateway(extra_args=["--workers", "3"])
    pids: set[str] = set()
    deadline = time.monotonic() + 30
    while len(pids) < 2 and time.monotonic() < deadline:
        clients = [gateway.client() for _ in range(30)]
        try:
            for client in clients:
                assert client.login("joe", "joes") == "941"
                assert client.request("9900302.00").startswith("98")
        finally:
            for client in clients:
                client.close()
        time.sleep(0.2)  # a pause between rounds of logins, not a wait for a result
        pids = _pids_in_log(gateway)
    assert len(pids) >= 2, gateway.read_log()
    gateway.signal(signal.SIGHUP)
    # The master and both workers re-read the file.
    wait_for(
        lambda: gateway.sip_log_text().count(f"reloaded {gateway.sipconfig}") >= 3,
        timeout=30,
        what="three processes reloaded",
    )
    with gateway.client() as client:
        assert client.login("joe", "joes") == "941"
    gateway.stop()

    def running(pid: str) -> bool:
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        return True

    wait_for(
        lambda: not any(running(pid) for pid in pids),
        timeout=15,
        what="every process gone after the master stopped",
    )


def test_one_winner_for_one_item_across_workers(make_gateway):
    # Kiosks on different processes check out the same item for two patrons at the same moment:
    # the database decides, on every engine, and exactly one patron gets the loan. (A second
    # checkout for the winner is a renewal, as in Koha, so only the other patron's are refused.)
    import threading

    from tests.gateway import sip_date

    gateway = make_gateway(extra_args=["--workers", "3"])
    now = sip_date()
    patrons = ["23529000000001", "23529000000002"] * 6
    clients = [gateway.client(source_address=(f"127.0.0.{10 + n}", 0)) for n in range(12)]
    answers: list[tuple[str, str]] = []
    try:
        for client in clients:
            assert client.login("joe", "joes") == "941"
        start = threading.Barrier(len(clients))

        def send(client, patron):
            start.wait()
            request = f"11YN{now}{' ' * 18}AOWEL|AA{patron}|AB39999000000001|AC|"
            answers.append((patron, client.request(request)))

        threads = [threading.Thread(target=send, args=pair) for pair in zip(clients, patrons)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        for client in clients:
            client.close()
    assert len(answers) == 12
    loans = gateway.query(
        "SELECT b.cardnumber FROM issues i JOIN items it ON it.itemnumber = i.itemnumber "
        "JOIN borrowers b ON b.borrowernumber = i.borrowernumber "
        "WHERE it.barcode = '39999000000001'"
    )
    assert len(loans) == 1
    winner = loans[0]["cardnumber"]
    assert all(a.startswith("120") for p, a in answers if p != winner), answers
    issued = gateway.query(
        "SELECT COUNT(*) AS n FROM statistics s JOIN items it ON it.itemnumber = s.itemnumber "
        "WHERE it.barcode = '39999000000001' AND s.type = 'issue'"
    )
    assert int(issued[0]["n"]) == 1


def test_workers_from_server_params(make_gateway):
    """``workers`` in SIPconfig.xml's ``<server-params>`` (a fixed command line, as the Debian
    package's, cannot say ``--workers``)."""
    from tests.gateway import elements

    def customise(tree, _process):
        (params,) = elements(tree, "server-params")
        params.set("workers", "2")

    gateway = make_gateway(customise=customise)
    gateway.wait_for_log("worker 1 started as process", timeout=30)
    assert "worker 2 started" not in gateway.read_log()
    with gateway.client() as client:
        assert client.login("joe", "joes") == "941"
