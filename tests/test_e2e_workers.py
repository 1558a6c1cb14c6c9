"""``--workers N``: processes sharing the listening sockets, reloaded and stopped together."""

from __future__ import annotations

import os
import re
import signal
import time


def _pids_in_log(gateway) -> set[str]:
    return set(re.findall(r"\] \[(\d+)\] \[INFO\] joe@", gateway.sip_log.read_text()))


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
        time.sleep(0.2)
        pids = _pids_in_log(gateway)
    assert len(pids) >= 2, gateway.read_log()
    gateway.signal(signal.SIGHUP)
    time.sleep(1)
    with gateway.client() as client:
        assert client.login("joe", "joes") == "941"
    gateway.stop()
    time.sleep(0.5)
    for pid in pids:
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            continue
        raise AssertionError(f"process {pid} still runs after the master stopped")
