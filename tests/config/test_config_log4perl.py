"""Koha's log4perl.conf: the level of the ``sip`` category (koha_gateway/config/log4perl.py) and
``<log4perl_conf>`` of koha-conf.xml."""

from __future__ import annotations

import pytest

from koha_gateway.config import load_koha_conf
from koha_gateway.config.log4perl import parse_sip_level, read_sip_level

#: The SIP part of Koha's Debian template (debian/templates/log4perl-site.conf.in), with a
#: logger before it as in the template (and its long line continued).
KOHA_TEMPLATE = """\
log4perl.logger.opac = WARN, OPAC
log4perl.appender.OPAC=Log::Log4perl::Appender::File
log4perl.appender.OPAC.filename=/var/log/koha/lib/opac-error.log

log4perl.logger.sip = {level}, SIP
log4perl.appender.SIP=Log::Log4perl::Appender::File
log4perl.appender.SIP.filename=/var/log/koha/lib/sip.log
log4perl.appender.SIP.mode=append
log4perl.appender.SIP.layout=PatternLayout
log4perl.appender.SIP.layout.ConversionPattern=[%d] [%P] [%p] \\
    %X{{accountid}}@%X{{peeraddr}}: %m %l%n
log4perl.appender.SIP.utf8=1
"""


@pytest.mark.parametrize(
    ("word", "level"),
    [
        ("ALL", "debug"),
        ("TRACE", "debug"),
        ("DEBUG", "debug"),
        ("INFO", "debug"),  # Koha logs the messages at INFO
        ("WARN", "warn"),
        ("ERROR", "warn"),
        ("FATAL", "warn"),
        ("OFF", "warn"),
    ],
)
def test_koha_template_levels(word, level):
    found = parse_sip_level(KOHA_TEMPLATE.format(level=word), "/etc/koha/sites/lib/log4perl.conf")
    assert found.level == level
    assert found.source == f"/etc/koha/sites/lib/log4perl.conf:5: log4perl.logger.sip = {word}"
    assert found.warnings == ()


def test_comments_blank_lines_and_lines_without_equals():
    text = (
        "# log4perl.logger.sip = DEBUG, SIP\n"
        "\n"
        "   \n"
        "a line log4perl skips\n"
        "log4perl.logger.sip = INFO, SIP   # was DEBUG\n"
    )
    found = parse_sip_level(text, "l.conf")
    assert (found.level, found.source) == ("debug", "l.conf:5: log4perl.logger.sip = INFO")


def test_continuation_lines():
    text = (
        "log4perl.appender.SIP.layout.ConversionPattern=[%d] \\\n"
        "    [%p] %m%n\n"
        "log4perl.logger.sip = \\   # the level follows\n"
        "      WARN, \\\n"
        "  SIP\n"
        "log4perl.logger.opac = DEBUG, OPAC\n"
    )
    found = parse_sip_level(text, "l.conf")
    assert found.level == "warn"
    assert found.source == "l.conf:3: log4perl.logger.sip = WARN"  # where the statement starts


def test_a_continued_key_and_a_backslash_on_the_last_line():
    assert parse_sip_level("log4perl.logger.\\\nsip = DEBUG", "l.conf").level == "debug"
    assert parse_sip_level("log4perl.logger.sip = WARN, SIP \\", "l.conf").level == "warn"


def test_synonyms_of_the_key():
    for key in (
        "log4perl.category.sip",
        "log4j.logger.sip",
        "log4j.category.sip",
        "l4p.logger.sip",
        "logger.sip",
        "log4perl::logger::sip",
    ):
        assert parse_sip_level(f"{key}=DEBUG,SIP", "l.conf").level == "debug", key


def test_the_last_of_two_lines_wins():
    text = "log4perl.logger.sip = DEBUG, SIP\nlog4perl.logger.sip = WARN, SIP\n"
    found = parse_sip_level(text, "l.conf")
    assert (found.level, found.source) == ("warn", "l.conf:2: log4perl.logger.sip = WARN")


def test_sub_categories_and_other_loggers_are_not_the_sip_level():
    text = "log4perl.logger.sip.term1 = DEBUG, SIP\nlog4perl.logger.sipx = DEBUG\n"
    found = parse_sip_level(text, "l.conf")
    assert found.level == "info"
    assert found.source == "default; l.conf sets no level for sip nor the root logger"
    assert found.warnings == ()


def test_the_root_logger_when_sip_is_not_set():
    text = "log4perl.rootLogger = DEBUG, LOGFILE\nlog4perl.logger.opac = WARN, OPAC\n"
    found = parse_sip_level(text, "l.conf")
    assert found.level == "debug"
    assert found.source == (
        "l.conf:1: log4perl.rootLogger = DEBUG (the sip category inherits the root logger's)"
    )


def test_the_sip_level_wins_over_the_root_logger():
    text = "log4perl.rootLogger = DEBUG, LOGFILE\nlog4perl.logger.sip = WARN, SIP\n"
    assert parse_sip_level(text, "l.conf").level == "warn"


@pytest.mark.parametrize(
    ("value", "word"),
    [("debug, SIP", "debug"), ("VERBOSE, SIP", "VERBOSE"), (", SIP", ""), ("", "")],
)
def test_an_unknown_level_warns_and_keeps_info(value, word):
    text = f"# Koha\nlog4perl.logger.sip = {value}\n"
    found = parse_sip_level(text, "/etc/l.conf")
    assert found.level == "info"
    assert found.source == "default; /etc/l.conf:2 not understood"
    (warning,) = found.warnings
    assert warning.startswith(f"/etc/l.conf:2: log4perl.logger.sip: unknown level {word!r} ")
    assert "ALL, TRACE, DEBUG, INFO, WARN, ERROR, FATAL, OFF" in warning
    assert warning.endswith("SIP log level info")


def test_an_unknown_root_level_warns_when_sip_inherits_it():
    (warning,) = parse_sip_level("log4perl.rootLogger=LOUD, A", "l.conf").warnings
    assert warning.startswith("l.conf:1: log4perl.rootLogger: unknown level 'LOUD'")
    # ... and is not looked at when sip has its own level.
    found = parse_sip_level("log4perl.rootLogger=LOUD, A\nlog4perl.logger.sip=DEBUG", "l.conf")
    assert (found.level, found.warnings) == ("debug", ())


def test_read_from_a_file(tmp_path):
    path = tmp_path / "log4perl.conf"
    path.write_text(KOHA_TEMPLATE.format(level="DEBUG"), encoding="utf-8")
    found = read_sip_level(path)
    assert (found.level, found.source) == ("debug", f"{path}:5: log4perl.logger.sip = DEBUG")


def test_a_missing_file_warns_and_keeps_info(tmp_path):
    path = tmp_path / "nowhere" / "log4perl.conf"
    found = read_sip_level(path)
    assert found.level == "info"
    assert found.source == f"default; {path} not read"
    assert found.warnings == (
        f"{path}: cannot read log4perl.conf: No such file or directory; SIP log level info",
    )


def test_a_directory_warns_and_keeps_info(tmp_path):
    (warning,) = read_sip_level(tmp_path).warnings
    assert warning == f"{tmp_path}: cannot read log4perl.conf: Is a directory; SIP log level info"


def test_bytes_that_are_not_utf8_do_not_stop_the_reading(tmp_path):
    path = tmp_path / "log4perl.conf"
    path.write_bytes(b"# caf\xe9\nlog4perl.logger.sip = DEBUG, SIP\n")
    assert read_sip_level(path).level == "debug"


def _koha_conf(tmp_path, element: str):
    path = tmp_path / "koha-conf.xml"
    path.write_text(
        f"<yazgfs><config><db_scheme>sqlite</db_scheme><database>x.sqlite</database>"
        f"{element}</config></yazgfs>"
    )
    return load_koha_conf(path)


def test_log4perl_conf_in_koha_conf(tmp_path):
    absolute = "/etc/koha/sites/lib/log4perl.conf"
    assert _koha_conf(tmp_path, f"<log4perl_conf>{absolute}</log4perl_conf>").log4perl_conf == (
        absolute
    )
    relative = _koha_conf(tmp_path, "<log4perl_conf> conf/log4perl.conf </log4perl_conf>")
    assert relative.log4perl_conf == str(tmp_path / "conf" / "log4perl.conf")
    assert _koha_conf(tmp_path, "").log4perl_conf is None
    assert _koha_conf(tmp_path, "<log4perl_conf/>").log4perl_conf is None
