"""Helpers shared by the whole test suite: strict CI mode and a private reactor thread.

Tests use real parts (sockets, servers, databases). A test whose server cannot start is skipped on
a developer machine but FAILS when the environment variable ``CI`` is ``true``: a green CI run
must mean every engine and every server really ran.
"""

from __future__ import annotations

import os
import threading

import pytest

__all__ = ["ReactorThread", "ci_strict", "server_unavailable"]


def ci_strict() -> bool:
    """True when ``CI=true``: missing servers fail tests instead of skipping them."""
    return os.environ.get("CI", "").strip().lower() == "true"


def server_unavailable(reason: str) -> None:
    """Fail the running test under ``CI=true``, skip it otherwise. Never returns."""
    if ci_strict():
        pytest.fail(f"CI=true and a required server is unavailable: {reason}", pytrace=False)
    pytest.skip(reason)


class ReactorThread:
    """A private Twisted reactor running in a daemon thread.

    It is *not* the global reactor, so it never interferes with trial test cases or with other
    tests that run the global reactor. Code under test must be given this reactor explicitly
    (``Database.from_url(url, reactor=rt.reactor)``); test code calls into it with :meth:`call`,
    which runs a function in the reactor thread and waits for its result (a Deferred is waited
    for too).

    Use as a context manager or call :meth:`start` / :meth:`stop`.
    """

    def __init__(self) -> None:
        from twisted.internet.selectreactor import SelectReactor

        self.reactor = SelectReactor()
        self._thread: threading.Thread | None = None

    def start(self) -> ReactorThread:
        started = threading.Event()
        self.reactor.callWhenRunning(started.set)
        self._thread = threading.Thread(
            target=self.reactor.run,
            kwargs={"installSignalHandlers": False},
            name="test-reactor",
            daemon=True,
        )
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError("the private test reactor did not start")
        return self

    def call(self, fn, *args, timeout: float = 60.0, **kw):
        """Run ``fn(*args, **kw)`` in the reactor thread; return its (Deferred's) result."""
        from twisted.internet import defer

        done = threading.Event()
        box: dict = {}

        def invoke() -> None:
            d = defer.maybeDeferred(fn, *args, **kw)

            def finish(result):
                box["result"] = result
                done.set()

            d.addBoth(finish)

        self.reactor.callFromThread(invoke)
        if not done.wait(timeout):
            raise TimeoutError(f"{fn!r} did not finish within {timeout} s")
        result = box["result"]
        from twisted.python.failure import Failure

        if isinstance(result, Failure):
            result.raiseException()
        return result

    def stop(self) -> None:
        if self._thread is None:
            return
        self.reactor.callFromThread(self.reactor.stop)
        self._thread.join(10)
        self._thread = None

    def __enter__(self) -> ReactorThread:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
