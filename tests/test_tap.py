"""twistd's command line (koha_gateway/tap.py): the reference cache's bound, and the SIP log
level (``--log-level``, else Koha's log4perl.conf, else info; service.py)."""

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


# --- the SIP log level: --log-level, else Koha's log4perl.conf, else info -------------------


def _koha_conf(tmp_path, log4perl_conf: str | None):
    element = f"<log4perl_conf>{log4perl_conf}</log4perl_conf>" if log4perl_conf else ""
    path = tmp_path / "koha-conf.xml"
    path.write_text(
        "<yazgfs><config><db_scheme>sqlite</db_scheme><database>x.sqlite</database>"
        f"{element}</config></yazgfs>"
    )
    return str(path)


def _level(*argv):
    from koha_gateway.service import _log_level

    found = _log_level(_options(*argv))
    return found.level, found.source, found.warnings


def test_log_level_is_none_unless_given():
    assert _options()["log-level"] is None
    assert _options("--log-level", "warn")["log-level"] == "warn"
    with pytest.raises(usage.UsageError, match="--log-level is one of debug, info, warn"):
        _options("--log-level", "DEBUG")


def test_log_level_precedence(tmp_path):
    log4perl_conf = tmp_path / "log4perl.conf"
    log4perl_conf.write_text("log4perl.logger.sip = DEBUG, SIP\n")
    conf = _koha_conf(tmp_path, str(log4perl_conf))
    # koha-conf.xml's log4perl.conf when the command line gives no level
    assert _level("--koha-conf", conf) == (
        "debug",
        f"{log4perl_conf}:1: log4perl.logger.sip = DEBUG",
        (),
    )
    # the command line wins
    assert _level("--koha-conf", conf, "--log-level", "warn") == ("warn", "--log-level", ())
    # no koha-conf.xml, or one without <log4perl_conf>: info
    assert _level() == ("info", "default; no <log4perl_conf>", ())
    assert _level("--koha-conf", _koha_conf(tmp_path, None))[:2] == (
        "info",
        "default; no <log4perl_conf>",
    )


def test_a_missing_log4perl_conf_does_not_stop_start_up(tmp_path):
    missing = tmp_path / "log4perl.conf"
    level, source, warnings = _level("--koha-conf", _koha_conf(tmp_path, str(missing)))
    assert (level, source) == ("info", f"default; {missing} not read")
    assert warnings == (
        f"{missing}: cannot read log4perl.conf: No such file or directory; SIP log level info",
    )
