"""koha_gateway/clock.py: the system wall clock, or one pinned by KOHA_GATEWAY_CLOCK."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from koha_gateway import clock


class Ticks:
    def __init__(self):
        self.value = 100.0

    def __call__(self) -> float:
        return self.value


def test_unpinned_is_the_system_time():
    wall = clock.from_environment({})
    before = datetime.now().astimezone()
    now = wall.now()
    after = datetime.now().astimezone()
    assert not wall.pinned
    assert before <= now <= after and now.tzinfo is not None


def test_pinned_starts_at_the_instant_and_advances():
    ticks = Ticks()
    start = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    wall = clock.WallClock(start, monotonic=ticks)
    assert wall.pinned and wall.now() == start
    ticks.value += 90.5
    assert wall.now() == start + timedelta(seconds=90.5)
    assert wall.now().tzinfo is not None


def test_environment_value_with_and_without_an_offset():
    wall = clock.from_environment({clock.ENVIRONMENT: "2026-11-29T12:00:00+13:00"})
    assert abs(wall.now() - datetime(2026, 11, 28, 23, 0, tzinfo=UTC)) < timedelta(seconds=5)
    local = clock.from_environment({clock.ENVIRONMENT: "2031-03-01 09:30"})
    assert local.now().replace(tzinfo=None) - datetime(2031, 3, 1, 9, 30) < timedelta(seconds=5)


def test_a_bad_value_says_what_is_expected():
    with pytest.raises(ValueError, match="KOHA_GATEWAY_CLOCK='yesterday' is not an ISO-8601"):
        clock.from_environment({clock.ENVIRONMENT: "yesterday"})


def test_child_processes_start_at_the_pinned_time_of_the_moment():
    ticks = Ticks()
    start = datetime(2026, 11, 29, 12, 0, tzinfo=timezone(timedelta(hours=1)))
    wall = clock.WallClock(start, monotonic=ticks)
    ticks.value += 3600
    env = wall.environment({"PATH": "/bin"})
    assert env["PATH"] == "/bin"
    assert datetime.fromisoformat(env[clock.ENVIRONMENT]) == start + timedelta(hours=1)
    assert clock.ENVIRONMENT not in clock.WallClock().environment({"PATH": "/bin"})


@pytest.fixture
def paris():
    """The process's local zone is Europe/Paris for the test (TZ and tzset)."""
    import os
    import time

    if not hasattr(time, "tzset"):
        pytest.skip("time.tzset is not available")
    saved = os.environ.get("TZ")
    os.environ["TZ"] = "Europe/Paris"
    time.tzset()
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = saved
        time.tzset()


def test_the_local_offset_follows_daylight_saving_time_at_once(paris):
    # Paris moves from +01:00 to +02:00 at 01:00 UTC on 2026-03-29, and back on 2026-10-25.
    for switch, before, after in (
        (datetime(2026, 3, 29, 1, 0, tzinfo=UTC), 1, 2),
        (datetime(2026, 10, 25, 1, 0, tzinfo=UTC), 2, 1),
    ):
        ticks = Ticks()
        wall = clock.WallClock(switch - timedelta(seconds=30), monotonic=ticks)
        seen = []
        for step in (0, 20, 29.999, 30, 31, 90):
            ticks.value = 100.0 + step
            now = wall.now()
            assert now == switch + timedelta(seconds=step - 30)
            seen.append(now.utcoffset() // timedelta(hours=1))
        assert seen == [before, before, before, after, after, after]
        ticks.value = 100.0  # a clock set back asks for the offset again
        assert wall.now().utcoffset() == timedelta(hours=before)


def test_the_unpinned_clock_gives_the_local_offset_of_the_moment(paris):
    now = clock.WallClock().now()
    assert now.utcoffset() == datetime.now().astimezone().utcoffset()
    assert abs(now - datetime.now(UTC)) < timedelta(seconds=5)
