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
