"""The gateway's wall clock: the one place that says what date and time it is.

Dates written to the database (loans, due dates, payments, the request journal) and the
timestamps of SIP2 answers come from a :class:`WallClock`. Timers, timeouts and throttles use
the reactor's clock (``IReactorTime.seconds``/``callLater``), which tests replace with
``twisted.internet.task.Clock``.

Testing and trial use: with the environment variable ``KOHA_GATEWAY_CLOCK`` set to an ISO-8601
instant (``2026-11-29T12:00:00+00:00``; without an offset it is local time) the gateway runs as if
it had been started at that instant; from there its clock advances normally. The end-to-end
tests start every gateway at one fixed instant so that nothing they check depends on the day
they run. Worker processes (``--workers``) are started with the master's pinned time of the
moment, so all processes agree.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from datetime import datetime, tzinfo

ENVIRONMENT = "KOHA_GATEWAY_CLOCK"


class WallClock:
    """Aware local date and time; optionally started at a pinned instant."""

    def __init__(
        self,
        start: datetime | None = None,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self._monotonic = monotonic
        self._start = None if start is None else _aware(start)
        self._start_ts = None if start is None else self._start.timestamp()
        self._started = monotonic()
        # (from, until, zone): the local zone's offset during one minute of UTC time.
        self._zone: tuple[float, float, tzinfo | None] = (0.0, 0.0, None)

    @property
    def pinned(self) -> bool:
        return self._start is not None

    def now(self) -> datetime:
        """The current local time, aware (SIP2 timestamps are local time)."""
        if self._start_ts is None:
            return self._local(time.time())
        return self._local(self._start_ts + (self._monotonic() - self._started))

    def _local(self, seconds: float) -> datetime:
        """The instant ``seconds`` (Unix time) in the local zone.

        Finding the local zone's offset (``astimezone()``) is most of what reading the clock
        costs, so the offset found is used again for the rest of that minute of UTC time: time
        zones change their offset (daylight saving time, new rules) only at whole minutes, so
        the next minute, or a clock set back, asks again. A change of the system's zone itself
        is seen within the minute, as before the next message that matters.
        """
        start, until, zone = self._zone
        if zone is None or not start <= seconds < until:
            zone = datetime.fromtimestamp(seconds).astimezone().tzinfo
            start = seconds - seconds % 60
            self._zone = (start, start + 60, zone)  # one tuple: threads see all or nothing
        return datetime.fromtimestamp(seconds, zone)

    def environment(self, env: Mapping[str, str]) -> dict[str, str]:
        """``env`` for a child process that must share this clock."""
        out = dict(env)
        if self._start is not None:
            out[ENVIRONMENT] = self.now().isoformat()
        return out


def parse(value: str) -> datetime:
    """The instant of a ``KOHA_GATEWAY_CLOCK`` value; ValueError says what is wrong."""
    try:
        return _aware(datetime.fromisoformat(value.strip()))
    except ValueError:
        raise ValueError(
            f"{ENVIRONMENT}={value!r} is not an ISO-8601 date and time "
            "(for example 2026-11-29T12:00:00+00:00)"
        ) from None


def from_environment(environ: Mapping[str, str] | None = None) -> WallClock:
    """The wall clock the environment asks for: the system's, or one pinned at a start."""
    value = (os.environ if environ is None else environ).get(ENVIRONMENT, "").strip()
    return WallClock(parse(value) if value else None)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.astimezone()


_default: WallClock | None = None


def default() -> WallClock:
    """The process's wall clock, read from the environment once."""
    global _default
    if _default is None:
        _default = from_environment()
    return _default
