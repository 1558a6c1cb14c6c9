"""twistd's command line (koha_gateway/tap.py): the reference cache's bound."""

from __future__ import annotations

import pytest
from twisted.python import usage

from koha_gateway.tap import Options


def _options(*argv):
    options = Options()
    options.parseOptions(["--database", "sqlite:////nonexistent/x.sqlite", *argv])
    return options


def test_reference_max_age_and_workers_are_none_unless_given():
    """None: <server-params> may set them (service.py), else the defaults (10 s, 1)."""
    assert _options()["reference-max-age"] is None
    assert _options()["workers"] is None
    assert _options("--workers", "3")["workers"] == 3
    assert _options("--reference-max-age", "0")["reference-max-age"] == 0.0
    assert _options("--reference-max-age", "2.5")["reference-max-age"] == 2.5


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("soon", "--reference-max-age takes a number of seconds"),
        ("-1", "--reference-max-age is 0 or more seconds"),
        ("nan", "--reference-max-age is 0 or more seconds"),
        ("inf", "--reference-max-age is 0 or more seconds"),
    ],
)
def test_reference_max_age_errors(value, message):
    with pytest.raises(usage.UsageError, match=message):
        _options("--reference-max-age", value)
