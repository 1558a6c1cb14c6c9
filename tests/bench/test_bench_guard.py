"""bench/guard.py: reading the recorded share from bench/RESULTS.md and the decision."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import guard  # noqa: E402

RESULTS = """# Results

| a | b |
|---|---|

```guard
# the share the CI guard checks
sqlite saturation share: 0.058
sqlite saturation wall share: 0.20
```

More text.
"""


def test_recorded_share_is_read_from_the_guard_block():
    assert guard.recorded_share(RESULTS) == pytest.approx(0.058)
    assert guard.recorded_shares(RESULTS) == {
        "sqlite saturation share": pytest.approx(0.058),
        "sqlite saturation wall share": pytest.approx(0.20),
    }


def test_the_shipped_results_file_has_a_usable_share():
    assert guard.recorded_share(guard.RESULTS.read_text(encoding="utf-8")) > 0


@pytest.mark.parametrize(
    "text, problem",
    [
        ("no block here", "no ```guard block"),
        ("```guard\nsomething else: 1\n```\n", "no 'sqlite saturation share'"),
        ("```guard\nsqlite saturation share: fast\n```\n", "'fast' is no number"),
        ("```guard\nsqlite saturation share 0.1\n```\n", "expected 'name: value'"),
        ("```guard\nsqlite saturation share: 0\n```\n", "must be above 0"),
    ],
)
def test_unusable_guard_blocks_are_named(text, problem):
    with pytest.raises(guard.GuardError, match=problem.replace("(", r"\(")):
        guard.recorded_share(text)


def test_median_at_or_above_half_of_the_recorded_share_passes():
    ok, message = guard.decide([0.030, 0.029, 0.5], 0.058)
    assert ok, message
    assert message.startswith("ok:")
    assert "0.030" in message and "0.029" in message


def test_median_below_half_of_the_recorded_share_fails_with_a_clear_message():
    ok, message = guard.decide([0.020, 0.9, 0.028], 0.058)
    assert not ok
    assert message.startswith("FAIL:")
    assert "0.028" in message and "0.058" in message and "floor 0.029" in message
    assert "regression" in message


def test_one_disturbed_round_does_not_decide():
    assert guard.decide([0.055, 0.001, 0.06], 0.058)[0]
    assert not guard.decide([0.001, 0.06, 0.002], 0.058)[0]


def test_no_round_fails():
    assert guard.decide([], 0.058) == (False, "no round measured")


def test_with_share_replaces_only_the_guarded_line():
    text = guard.with_share(RESULTS, 0.0612)
    assert guard.recorded_shares(text) == {
        "sqlite saturation share": pytest.approx(0.061),
        "sqlite saturation wall share": pytest.approx(0.20),
    }
    assert text.replace("0.061", "0.058") == RESULTS


def test_with_share_adds_a_missing_block():
    text = guard.with_share("# Results\n", 0.05)
    assert guard.recorded_share(text) == pytest.approx(0.05)
