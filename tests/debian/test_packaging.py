"""Static checks of the Debian packaging (issue 6), run with the unit tests.

They need neither root nor a built package: shell syntax of every script, the instance-name
rules and paths of ``koha-gateway-functions.sh`` (Koha's layout: ``/etc/koha/sites/<i>``,
``/var/run/koha/<i>/<i>-koha-sip.pid``, ``/var/log/koha/<i>/``), that the systemd unit and the
start-stop-daemon path run the same twistd command line, that every option they pass exists in
the twistd plugin, the diversions, the dependencies and the version. The package itself is
built, installed and exercised by ``tests/debian/install-test.sh`` (``.ci/deb-test``).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parents[2]
DEBIAN = TOP / "debian"
FUNCTIONS = DEBIAN / "scripts" / "koha-gateway-functions.sh"
UNIT = DEBIAN / "koha-gateway@.service"

BASH_SCRIPTS = [
    DEBIAN / "scripts" / "koha-sip",
    DEBIAN / "scripts" / "prepare-instance",
    FUNCTIONS,
    TOP / "tests" / "debian" / "build-deb.sh",
    TOP / "tests" / "debian" / "install-test.sh",
    TOP / ".ci" / "deb-test",
]
SH_SCRIPTS = [
    DEBIAN / "scripts" / "koha-enable-sip",
    DEBIAN / "scripts" / "koha-start-sip",
    DEBIAN / "scripts" / "koha-stop-sip",
    DEBIAN / "koha-gateway.preinst",
    DEBIAN / "koha-gateway.postinst",
    DEBIAN / "koha-gateway.prerm",
    DEBIAN / "koha-gateway.postrm",
]
LEGACY = ["koha-enable-sip", "koha-start-sip", "koha-stop-sip"]
DEBIAN_DEPENDS = [
    "python3-twisted",
    "python3-ldap3",
    "python3-lxml",
    "python3-psycopg2",
    "python3-openssl",
    "python3-service-identity",
    "python3-bcrypt",
    "python3-prometheus-client",
]


def functions(snippet: str, *args: str) -> subprocess.CompletedProcess:
    """Run ``snippet`` in bash after sourcing koha-gateway-functions.sh."""
    return subprocess.run(
        ["bash", "-c", f'. "$0"; {snippet}', str(FUNCTIONS), *args],
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize("script", BASH_SCRIPTS, ids=lambda p: p.name)
def test_bash_syntax(script):
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("script", SH_SCRIPTS, ids=lambda p: p.name)
def test_posix_sh_syntax(script):
    shell = shutil.which("dash") or "sh"
    result = subprocess.run([shell, "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert script.read_text().startswith("#!/bin/sh\n")


@pytest.mark.parametrize(
    "script",
    [DEBIAN / "scripts" / name for name in ["koha-sip", "prepare-instance", *LEGACY]]
    + [DEBIAN / "rules"],
    ids=lambda p: p.name,
)
def test_scripts_are_executable(script):
    assert os.access(script, os.X_OK)


@pytest.mark.parametrize("name", ["demo", "lib1", "my_library", "Lib-2", "a" * 27])
def test_valid_instance_names(name):
    assert functions('kg_valid_instance_name "$1"', name).returncode == 0


@pytest.mark.parametrize(
    "name", ["", "-x", "_x", "a/b", "../etc", "a b", "lib;rm", "a.b", "é", "a" * 28]
)
def test_invalid_instance_names(name):
    assert functions('kg_valid_instance_name "$1"', name).returncode == 1


def test_paths_follow_koha_layout():
    result = functions(
        "for f in kg_sipconfig kg_kohaconf kg_enabled_flag kg_pidfile kg_sip_log kg_error_log "
        'kg_output_log kg_unit; do "$f" "$1"; done',
        "lib1",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "/etc/koha/sites/lib1/SIPconfig.xml",
        "/etc/koha/sites/lib1/koha-conf.xml",
        "/var/lib/koha/lib1/sip.enabled",
        "/var/run/koha/lib1/lib1-koha-sip.pid",
        "/var/log/koha/lib1/sip.log",
        "/var/log/koha/lib1/sip-error.log",
        "/var/log/koha/lib1/sip-output.log",
        "koha-gateway@lib1.service",
    ]


def test_instance_user_falls_back_to_the_package_user():
    # No "<name>-koha" account exists for this made-up instance name.
    result = functions('kg_instance_user "$1"', "kgwnosuchinstance")
    assert result.stdout.strip() == "koha-gateway"


def test_bind_capability_matches_the_kernel_view():
    status = Path("/proc/self/status").read_text()
    effective = int(re.search(r"^CapEff:\s*([0-9a-f]+)$", status, re.M).group(1), 16)
    assert functions("kg_can_bind_privileged").returncode == (0 if effective & (1 << 10) else 1)
    assert functions("kg_can_drop_bounding_set").returncode == (0 if effective & (1 << 8) else 1)


def twistd_command_of_unit() -> list[str]:
    """The twistd argument list of the unit's ExecStart, %i replaced by "lib1"."""
    exec_start = re.search(r"^ExecStart=(.*)$", UNIT.read_text(), re.M).group(1)
    words = shlex.split(exec_start)
    assert words[:2] == ["/bin/sh", "-c"], "ExecStart runs twistd through /bin/sh -c"
    inner = shlex.split(words[2].replace("%i", "lib1"))
    assert inner[0] == "exec"
    redirect = inner.index(">>/var/log/koha/lib1/sip-output.log")
    assert inner[redirect + 1 :] == ["2>&1"]
    return inner[1:redirect]


def test_systemd_unit_and_start_stop_daemon_run_the_same_server():
    result = functions('kg_twistd_args "$1"', "lib1")
    assert result.returncode == 0, result.stderr
    from_scripts = ["/usr/bin/twistd3", *result.stdout.split("\n")[:-1]]
    from_unit = [arg.replace("/run/koha/", "/var/run/koha/") for arg in twistd_command_of_unit()]
    assert from_unit == from_scripts


def test_twistd_command_matches_the_plugin_options():
    from koha_gateway.tap import Options

    known = {f"--{row[0]}" for row in Options.optParameters}
    args = twistd_command_of_unit()
    plugin_args = args[args.index("koha-gateway") + 1 :]
    passed = [arg for arg in plugin_args if arg.startswith("--")]
    assert passed == ["--sip-config", "--koha-conf", "--sip-log", "--error-log"]
    assert set(passed) <= known


def test_unit_hardening_and_behaviour():
    unit = UNIT.read_text()
    for line in [
        "User=koha-gateway",
        "Restart=on-failure",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
    ]:
        assert re.search(rf"^{re.escape(line)}$", unit, re.M), line


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
def test_unit_passes_systemd_analyze_verify(tmp_path):
    copy = tmp_path / "koha-gateway@lib1.service"
    copy.write_text(UNIT.read_text())
    result = subprocess.run(
        ["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60
    )
    problems = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        # Not installed in the source tree: the helper and the man pages.
        if "/usr/libexec/koha-gateway/prepare-instance" not in line
        and "Command 'man " not in line
        and line.strip()
    ]
    assert problems == []


def test_diversions_are_added_and_removed_in_pairs():
    pattern = re.compile(r"--divert (/usr/sbin/\S+\.koha-common) (/usr/sbin/\S+)")
    added = pattern.findall((DEBIAN / "koha-gateway.preinst").read_text())
    removed = pattern.findall((DEBIAN / "koha-gateway.postrm").read_text())
    commands = ["koha-sip", *LEGACY]
    assert added == [(f"/usr/sbin/{c}.koha-common", f"/usr/sbin/{c}") for c in commands]
    assert removed == added


def test_every_installed_command_has_a_man_page():
    installed = [
        line.split()[0]
        for line in (DEBIAN / "koha-gateway.install").read_text().splitlines()
        if line.split() and line.split()[1] == "usr/sbin"
    ]
    pages = (DEBIAN / "koha-gateway.manpages").read_text().split()
    names = {Path(page).name.rsplit(".", 1)[0] for page in pages}
    assert {Path(path).name for path in installed} <= names
    assert "koha-gateway-admin" in names
    assert "koha-gateway-client" in names
    for page in pages:
        assert (TOP / page).is_file(), page


@pytest.mark.skipif(not shutil.which("groff"), reason="groff not installed")
@pytest.mark.parametrize(
    "page",
    ["koha-sip.8", "koha-gateway.8", "koha-gateway-admin.8", "koha-gateway-client.1"],
    ids=lambda p: p,
)
def test_man_pages_render_without_warnings(page):
    result = subprocess.run(
        ["groff", "-man", "-ww", "-z", "-Tutf8", str(TOP / "docs" / "man" / page)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0
    assert result.stderr == ""


def test_control_depends_on_debian_python_packages():
    control = (DEBIAN / "control").read_text()
    binary = control.split("\nPackage: koha-gateway\n", 1)[1]
    depends = re.search(r"^Depends:(.*?)^\S", binary, re.M | re.S).group(1)
    names = {part.strip().split()[0] for part in depends.split(",") if part.strip()}
    assert set(DEBIAN_DEPENDS) <= names
    assert "adduser" in names


def test_plugin_cache_trigger():
    assert (DEBIAN / "koha-gateway.triggers").read_text().split() == [
        "activate-noawait",
        "twisted-plugins-cache",
    ]


def test_changelog_version_matches_the_python_package():
    from koha_gateway import __version__

    first = (DEBIAN / "changelog").read_text().splitlines()[0]
    match = re.match(r"^koha-gateway \(([^)]+)\) ", first)
    assert match, first
    upstream, _, revision = match.group(1).rpartition("-")
    assert upstream == __version__
    assert revision.isdigit()


def test_logrotate_covers_the_three_logs_before_koha():
    config = (DEBIAN / "koha-gateway.00-koha-gateway.logrotate").read_text()
    for name in ["sip.log", "sip-error.log", "sip-output.log"]:
        assert f"/var/log/koha/*/{name}" in config
    assert "copytruncate" in config
    assert "ignoreduplicates" in config
    # logrotate reads /etc/logrotate.d in name order: ours must come before koha-common.
    assert "dh_installlogrotate --name=00-koha-gateway" in (DEBIAN / "rules").read_text()
    assert sorted(["koha-common", "00-koha-gateway"])[0] == "00-koha-gateway"


@pytest.mark.skipif(not shutil.which("logrotate"), reason="logrotate not installed")
def test_logrotate_accepts_the_config(tmp_path):
    config = tmp_path / "00-koha-gateway"
    config.write_text((DEBIAN / "koha-gateway.00-koha-gateway.logrotate").read_text())
    result = subprocess.run(
        ["logrotate", "--debug", "--state", str(tmp_path / "state"), str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert not re.search(r"^error:", result.stderr, re.M), result.stderr


def test_debian_template_is_the_demo_config_without_the_demo_tls_listener():
    """/etc/koha/SIPconfig.xml must start on a fresh machine: no TLS files to point at."""
    import dataclasses

    from koha_gateway.config import load_sip_config

    template = load_sip_config(DEBIAN / "templates" / "SIPconfig.xml")
    demo = load_sip_config(TOP / "conf" / "SIPconfig.xml")
    assert [s.tls_certificate for s in template.services] == [None] * len(template.services)
    assert {s.transport for s in template.services} == {"RAW", "telnet"}
    assert [str(s.address) for s in template.services] == [
        str(s.address) for s in demo.services if s.tls_certificate is None
    ]

    def without_lines(mapping):
        return {
            key: {k: v for k, v in dataclasses.asdict(value).items() if k != "line"}
            for key, value in mapping.items()
        }

    # The demo data set (koha-gateway-admin load-demo) matches these accounts.
    assert without_lines(template.accounts) == without_lines(demo.accounts)
    assert without_lines(template.institutions) == without_lines(demo.institutions)
    assert template.syspref_overrides == demo.syspref_overrides


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
def test_unit_exposure_stays_low(tmp_path):
    copy = tmp_path / "koha-gateway@lib1.service"
    copy.write_text(UNIT.read_text())
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    if match is None and "unrecognized option" in result.stderr:
        pytest.skip("this systemd-analyze has no offline security check")
    assert match, result.stdout + result.stderr
    # 1.5 when written; "OK" ends at 4.9 on systemd's scale (10 is unprotected).
    assert float(match.group(1)) <= 2.0


def test_site_koha_conf_template_offers_the_admin_port(tmp_path):
    """The SIP-only instance's koha-conf.xml: as written it has no admin listener; its
    commented <admin_port> example, uncommented, is read by the gateway."""
    from koha_gateway.config import load_koha_conf

    template = (DEBIAN / "templates" / "koha-conf-site.xml.in").read_text()
    text = template.replace("__KOHASITE__", "lib1").replace(
        "__SQLITE_DB__", str(tmp_path / "koha-gateway.sqlite3")
    )
    path = tmp_path / "koha-conf.xml"
    path.write_text(text)
    assert load_koha_conf(path).admin_port is None
    start = text.index("<admin_port>")
    example = text[start : text.index("</admin_port>") + len("</admin_port>")]
    switch = "    <useldapserver>0</useldapserver>"
    assert switch in text
    path.write_text(text.replace(switch, f"    {example}\n{switch}", 1))
    assert load_koha_conf(path).admin_port == 9180
