"""``koha-gateway-admin ldap-test`` against a real slapd: a koha-conf.xml on disk, the command's
output and exit status for each case a librarian meets."""

from __future__ import annotations

import io
import subprocess
import sys
from xml.sax.saxutils import escape

from koha_gateway import admin
from tests.gateway import ROOT
from tests.ldap.conftest import PASSWORDS, PEOPLE, STAFF
from tests.ldap.slapd import READER_DN, READER_PW, SUFFIX, free_port

MAPPING = """
      <mapping>
        <userid is="uid"></userid>
        <cardnumber is="employeeNumber"></cardnumber>
        <surname is="sn"></surname>
        <branchcode is="departmentNumber">WEL</branchcode>
        <categorycode is="employeeType">PT</categorycode>
        <password is="userPassword"></password>
      </mapping>
      <categorycode_mapping default="PT">
        <categorycode value="staff">S</categorycode>
      </categorycode_mapping>"""


def write_conf(tmp_path, hosts, **elements) -> str:
    settings = {
        "base": SUFFIX,
        "user": READER_DN,
        "pass": READER_PW,
        "anonymous_bind": "0",
        "grant_circulate": "1",
        "connect_timeout": "2",
        "response_timeout": "2",
    }
    settings.update({k: str(v) for k, v in elements.items()})
    inner = "\n".join(f"      <{k}>{escape(v)}</{k}>" for k, v in settings.items())
    path = tmp_path / "koha-conf.xml"
    path.write_text(
        f"""<yazgfs>
  <config>
    <db_scheme>sqlite</db_scheme>
    <database>unused.sqlite</database>
    <useldapserver>1</useldapserver>
    <ldapserver id="ldapserver">
      <hostname>{escape(", ".join(hosts))}</hostname>
{inner}
{MAPPING}
    </ldapserver>
  </config>
</yazgfs>
"""
    )
    return str(path)


def ldap_test(monkeypatch, capsys, *argv: str, stdin: str | None = None) -> tuple[int, str, str]:
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    status = admin.main(["ldap-test", *argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_good_user_and_password(slapd, tmp_path, monkeypatch, capsys):
    conf = write_conf(tmp_path, [slapd.url], start_tls="1", ca_file=slapd.tls[0])
    status, out, err = ldap_test(
        monkeypatch, capsys, "--koha-conf", conf, "--user", "jdoe", "--password", PASSWORDS["jdoe"]
    )
    assert status == 0, out + err
    assert f"host {slapd.url}" in out
    assert "ok    DNS: 127.0.0.1 is 127.0.0.1" in out
    assert "ok    TCP: connected to port" in out
    assert "ok    TLS: StartTLS, certificate verified with <ca_file>" in out
    assert f"ok    bind: bound as <user> {READER_DN}" in out
    assert f"ok    search: (uid=jdoe) under {SUFFIX}: uid=jdoe,{PEOPLE}" in out
    assert f"entry uid=jdoe,{PEOPLE}" in out and "  mail: jdoe@example.org" in out
    assert "  branchcode = HISTORY    [from departmentNumber]" in out
    assert (
        "  categorycode = PT    [from employeeType, 'patron' not in <categorycode_mapping>" in out
    )
    assert "  flags = 2    [circulate permission added (<grant_circulate>)]" in out
    assert "  cardnumber = 23529000000101" in out
    assert "LDAP accepts the password of 'jdoe'" in out
    assert PASSWORDS["jdoe"] not in out
    assert out.rstrip().endswith("result: all checks passed")


def test_staff_category_is_mapped(slapd, tmp_path, monkeypatch, capsys):
    conf = write_conf(tmp_path, [slapd.url])
    status, out, _ = ldap_test(monkeypatch, capsys, "--koha-conf", conf, "--user", "kiosk1")
    assert status == 0
    assert "categorycode = S    [from employeeType, 'staff' -> S by <categorycode_mapping>]" in out
    assert "branchcode = WEL    [default (departmentNumber not in the entry)]" in out


def test_wrong_password(slapd, tmp_path, monkeypatch, capsys):
    conf = write_conf(tmp_path, [slapd.url])
    status, out, _ = ldap_test(
        monkeypatch, capsys, "--koha-conf", conf, "--user", "jdoe", "--password", stdin="nope\n"
    )
    assert status == 1
    assert "FAIL  LDAP refuses the password: LDAP Auth rejected: invalid password" in out
    assert "result: FAILED" in out


def test_unknown_user(slapd, tmp_path, monkeypatch, capsys):
    conf = write_conf(tmp_path, [slapd.url])
    status, out, _ = ldap_test(monkeypatch, capsys, "--koha-conf", conf, "--user", "nobody")
    assert status == 1
    assert "FAIL  search: no entry for 'nobody': the search (uid=nobody)" in out
    assert "\nentry " not in out


def test_several_entries(slapd, tmp_path, monkeypatch, capsys):
    conf = write_conf(tmp_path, [slapd.url])
    status, out, _ = ldap_test(
        monkeypatch, capsys, "--koha-conf", conf, "--user", "twin", "--password", PASSWORDS["twin"]
    )
    assert "WARN  search: 2 entries match (uid=twin)" in out
    assert f"cn=twin a,{PEOPLE}" in out and f"cn=twin b,{STAFF}" in out
    assert "LDAP accepts the password of 'twin'" in out
    assert status == 0


def test_wrong_service_password(slapd, tmp_path, monkeypatch, capsys):
    conf = write_conf(tmp_path, [slapd.url], **{"pass": "not-the-password"})
    status, out, _ = ldap_test(monkeypatch, capsys, "--koha-conf", conf, "--user", "jdoe")
    assert status == 1
    assert f"FAIL  bind: bind as <user> {READER_DN} failed: invalidCredentials (49)" in out
    assert "check <user> and <pass>" in out


def test_without_a_user_checks_the_base(slapd, tmp_path, monkeypatch, capsys):
    conf = write_conf(tmp_path, [slapd.url], anonymous_bind="1")
    status, out, _ = ldap_test(monkeypatch, capsys, "--koha-conf", conf)
    assert status == 0
    assert "ok    bind: bound anonymously" in out
    assert f"ok    base: search base {SUFFIX} exists" in out


def test_server_down(own_slapd, tmp_path, monkeypatch, capsys):
    conf = write_conf(tmp_path, [own_slapd.url, own_slapd.ldaps_url], ca_file=own_slapd.tls[0])
    own_slapd.stop()
    status, out, _ = ldap_test(monkeypatch, capsys, "--koha-conf", conf, "--user", "jdoe")
    assert status == 1
    assert f"FAIL  TCP: cannot connect to 127.0.0.1:{own_slapd.port}: Connection refused" in out
    assert f"FAIL  TCP: cannot connect to localhost:{own_slapd.ldaps_port}" in out


def test_bad_ca(slapd, ldap_pki, tmp_path, monkeypatch, capsys):
    conf = write_conf(tmp_path, [slapd.ldaps_url], ca_file=ldap_pki["other_ca"])
    status, out, _ = ldap_test(monkeypatch, capsys, "--koha-conf", conf, "--user", "jdoe")
    assert status == 1
    assert "ok    TCP: connected" in out
    assert "FAIL  TLS: " in out and "CERTIFICATE_VERIFY_FAILED" in out
    assert f"<ca_file> {ldap_pki['other_ca']}" in out


def test_bad_ca_with_start_tls(slapd, ldap_pki, tmp_path, monkeypatch, capsys):
    conf = write_conf(tmp_path, [slapd.url], start_tls="1", ca_file=ldap_pki["other_ca"])
    status, out, _ = ldap_test(monkeypatch, capsys, "--koha-conf", conf, "--user", "jdoe")
    assert status == 1
    assert "FAIL  TLS: StartTLS: " in out


def test_unknown_host_and_closed_port(tmp_path, monkeypatch, capsys):
    port = free_port()
    conf = write_conf(tmp_path, ["no-such-host.invalid", f"127.0.0.1:{port}"])
    status, out, _ = ldap_test(monkeypatch, capsys, "--koha-conf", conf, "--user", "jdoe")
    assert status == 1
    assert "FAIL  DNS: cannot resolve 'no-such-host.invalid'" in out
    assert f"FAIL  TCP: cannot connect to 127.0.0.1:{port}: Connection refused" in out


def test_usage_errors(tmp_path, monkeypatch, capsys):
    status, _, err = ldap_test(monkeypatch, capsys)
    assert status == 1 and "ldap-test needs --koha-conf PATH" in err
    plain = tmp_path / "plain.xml"
    plain.write_text(
        "<yazgfs><config><db_scheme>sqlite</db_scheme><database>x.sqlite</database>"
        "</config></yazgfs>"
    )
    status, _, err = ldap_test(monkeypatch, capsys, "--koha-conf", str(plain))
    assert status == 1 and "LDAP is not in use" in err


def test_console_script(slapd, tmp_path):
    conf = write_conf(tmp_path, [slapd.url])
    result = subprocess.run(
        [sys.executable, "-m", "koha_gateway.admin", "ldap-test", "--koha-conf", conf],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "result: all checks passed" in result.stdout
