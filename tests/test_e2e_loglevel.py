"""The SIP log level a Koha administrator sets in log4perl.conf (``log4perl.logger.sip``), read
through ``<log4perl_conf>`` of koha-conf.xml by a running gateway started without
``--log-level``, as the Debian package starts it; a SIGHUP reads it again."""

from __future__ import annotations

import signal

import pytest

from tests.gateway import sip_date, wait_for

ADA = "23529000000001"


def _koha_conf(tmp_path, demo_url: str, level: str):
    """koha-conf.xml on the demo database naming a log4perl.conf shaped like Koha's template,
    whose SIP appender writes elsewhere (the gateway writes to --sip-log)."""
    log4perl_conf = tmp_path / "log4perl.conf"
    _write_level(log4perl_conf, level)
    conf = tmp_path / "koha-conf.xml"
    database = demo_url.removeprefix("sqlite://")
    conf.write_text(
        "<yazgfs><config><db_scheme>sqlite</db_scheme>"
        f"<database>{database}</database>"
        f"<log4perl_conf>{log4perl_conf}</log4perl_conf>"
        "</config></yazgfs>"
    )
    return conf, log4perl_conf


def _write_level(path, level: str) -> None:
    path.write_text(
        "log4perl.logger.opac = WARN, OPAC\n"
        f"log4perl.logger.sip = {level}, SIP\n"
        "log4perl.appender.SIP=Log::Log4perl::Appender::File\n"
        f"log4perl.appender.SIP.filename={path.parent / 'koha-sip.log'}\n"
        "log4perl.appender.SIP.mode=append\n"
    )


def _start(make_gateway, conf):
    gateway = make_gateway(koha_conf=conf, start=False)
    gateway.log_level = None  # as the Debian unit: no --log-level
    return gateway.start()


def _wait_for_sip_log(gateway, text: str, count: int = 1) -> str:
    return wait_for(
        lambda: (log := gateway.sip_log_text()).count(text) >= count and log,
        what=f"{text!r} in sip.log",
    )


def _patron_information(gateway, marker: str) -> None:
    with gateway.logged_in() as sc:
        answer = sc.request(f"63000{sip_date()}          AO{marker}|AA{ADA}|AD1234|")
        assert answer.startswith("64"), answer


@pytest.mark.parametrize("engine", ["sqlite"])
def test_debug_in_log4perl_conf_logs_every_message_masked(make_gateway, tmp_path, demo_url):
    conf, log4perl_conf = _koha_conf(tmp_path, demo_url, "DEBUG")
    gateway = _start(make_gateway, conf)
    gateway.wait_for_log(f"SIP log level debug ({log4perl_conf}:2: log4perl.logger.sip = DEBUG)")
    _patron_information(gateway, "WEL")
    gateway.wait_for_log("OUTPUT MSG: '64")
    log = gateway.sip_log_text()
    inputs = [line for line in log.splitlines() if "INPUT MSG: '63" in line]
    assert len(inputs) == 1 and "|AD****|" in inputs[0], inputs
    assert "9300CNjoe|CO****|" in log
    assert "AD1234" not in log and "COjoes" not in log
    assert not (tmp_path / "koha-sip.log").exists()  # the appender's file is not used
    # twistd's own log (sip-output.log with the Debian package) gets no second copy.
    assert "MSG:" not in gateway.log.read_text(errors="replace")

    # WARN and a SIGHUP: no more message lines, nor logins; warnings still.
    _write_level(log4perl_conf, "WARN")
    gateway.signal(signal.SIGHUP)
    gateway.wait_for_log("SIP log level now warn")
    gateway.wait_for_log("reloaded")
    before = gateway.sip_log_text()
    _patron_information(gateway, "WEL")
    with gateway.client() as sc:
        assert sc.login("joe", "not-joes").startswith("940")
    after = _wait_for_sip_log(gateway, "login failed for 'joe'")[len(before) :]
    assert "MSG" not in after and "Successful login/auth" not in after, after


@pytest.mark.parametrize("engine", ["sqlite"])
def test_info_in_log4perl_conf_logs_every_message_as_koha(make_gateway, tmp_path, demo_url):
    # Koha's SIP server writes INPUT MSG / OUTPUT MSG at log4perl's INFO.
    conf, log4perl_conf = _koha_conf(tmp_path, demo_url, "INFO")
    gateway = _start(make_gateway, conf)
    gateway.wait_for_log(f"SIP log level debug ({log4perl_conf}:2: log4perl.logger.sip = INFO)")
    _patron_information(gateway, "WEL")
    log = _wait_for_sip_log(gateway, "OUTPUT MSG: '64")
    assert "INPUT MSG: '63" in log and "Successful login/auth" in log

    # --check-config says which level is in force and where it comes from.
    check = make_gateway(koha_conf=conf, start=False, extra_args=["--check-config"])
    check.log_level = None
    check.ports = {}
    check.start()
    check.process.wait(30)
    output = check.process.stdout.read().decode()
    assert check.process.returncode == 0, output
    assert f"SIP log level debug ({log4perl_conf}:2: log4perl.logger.sip = INFO)" in output


@pytest.mark.parametrize("engine", ["sqlite"])
def test_a_bad_level_warns_and_the_command_line_wins(make_gateway, tmp_path, demo_url):
    conf, log4perl_conf = _koha_conf(tmp_path, demo_url, "LOUD")
    gateway = _start(make_gateway, conf)
    warning = f"{log4perl_conf}:2: log4perl.logger.sip: unknown level 'LOUD'"
    gateway.wait_for_log(warning)
    assert warning in gateway.error_log.read_text()
    gateway.wait_for_log("SIP log level info (default;")

    _write_level(log4perl_conf, "WARN")
    explicit = make_gateway(koha_conf=conf, start=False)  # --log-level debug
    explicit.start()
    explicit.wait_for_log("SIP log level debug (--log-level)")
    _patron_information(explicit, "WEL")
    explicit.wait_for_log("OUTPUT MSG: '64")
