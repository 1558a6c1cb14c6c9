"""LdapDirectory.authenticate against a real slapd: Koha's checkpw_ldap outcomes (§6.3)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from twisted.logger import globalLogPublisher

from koha_gateway.auth.ldap import LdapDirectory, LdapOutcome
from koha_gateway.config.ldap import LdapConfig
from tests.ldap.conftest import PASSWORDS, PEOPLE, PRIVATE, STAFF
from tests.ldap.slapd import READER_DN, READER_PW, SUFFIX, free_port

OK, REJECTED, NOT_HANDLED = LdapOutcome.OK, LdapOutcome.REJECTED, LdapOutcome.NOT_HANDLED

MAPPING = {
    "userid": ("uid", None),
    "surname": ("sn", None),
    "firstname": ("givenName", None),
    "email": ("mail", None),
    "password": ("userPassword", None),
}


def directory(hosts, **settings) -> LdapDirectory:
    settings.setdefault("mapping", MAPPING)
    settings.setdefault("base", SUFFIX)
    settings.setdefault("connect_timeout", 2.0)
    settings.setdefault("response_timeout", 2.0)
    if isinstance(hosts, str):
        hosts = (hosts,)
    return LdapDirectory(LdapConfig(hosts=tuple(hosts), **settings))


@pytest.fixture
def log_events():
    events = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


def _flatten(events) -> str:
    from twisted.logger import formatEvent

    return "\n".join(formatEvent(e) + repr(e) for e in events)


# -- search-then-bind (auth_by_bind = 0) ----------------------------------------------------------


def test_anonymous_search_then_bind(slapd):
    result = directory(slapd.url).authenticate("jdoe", PASSWORDS["jdoe"])
    assert result.outcome is OK
    assert result.dn == f"uid=jdoe,{PEOPLE}"
    assert result.host == slapd.url
    assert result.attributes["sn"] == ["Doe"]
    assert result.attributes["givenname"] == ["John"]
    assert result.attributes["mail"] == ["jdoe@example.org"]
    # The userPassword attribute is never requested.
    assert "userpassword" not in result.attributes


def test_wrong_password_is_a_definite_rejection(slapd):
    result = directory(slapd.url).authenticate("jdoe", "not-the-password")
    assert result.outcome is REJECTED
    assert "invalid password" in result.reason
    assert "not-the-password" not in result.reason


def test_unknown_user_is_not_handled(slapd):
    result = directory(slapd.url).authenticate("nobody", "whatever")
    assert result.outcome is NOT_HANDLED
    assert "no hit" in result.reason
    assert result.unavailable is False


def test_service_account_search(slapd):
    """anonymous_bind=0 with user/pass: the service account can read ou=private."""
    service = directory(slapd.url, anonymous_bind=False, user=READER_DN, password=READER_PW)
    result = service.authenticate("hidden", PASSWORDS["hidden"])
    assert result.outcome is OK
    assert result.dn == f"uid=hidden,{PRIVATE}"
    assert service.authenticate("hidden", "bad").outcome is REJECTED
    # Anonymously the entry cannot be found: not handled (falls back to the local hash).
    assert directory(slapd.url).authenticate("hidden", PASSWORDS["hidden"]).outcome is NOT_HANDLED


def test_anonymous_bind_default_ignores_the_service_account(slapd):
    """Koha's current default anonymous_bind=1 searches anonymously even with user/pass."""
    koha_default = directory(slapd.url, user=READER_DN, password=READER_PW)
    assert koha_default.authenticate("hidden", PASSWORDS["hidden"]).outcome is NOT_HANDLED


def test_service_account_with_a_wrong_password_is_not_handled(slapd, log_events):
    service = directory(slapd.url, anonymous_bind=False, user=READER_DN, password="wrong-secret")
    result = service.authenticate("jdoe", PASSWORDS["jdoe"])
    assert result.outcome is NOT_HANDLED
    assert "LDAP bind failed as ldapuser cn=reader" in result.reason
    logged = _flatten(log_events)
    assert "LDAP bind failed as ldapuser" in logged
    assert "wrong-secret" not in logged
    assert PASSWORDS["jdoe"] not in logged


def test_each_entry_found_is_tried(slapd):
    """Koha's "multiple branches": the first entry whose bind succeeds wins."""
    result = directory(slapd.url).authenticate("twin", PASSWORDS["twin"])
    assert result.outcome is OK
    assert result.dn == f"cn=twin b,{STAFF}"
    assert directory(slapd.url).authenticate("twin", "twin-a-pw").dn == f"cn=twin a,{PEOPLE}"


@pytest.mark.parametrize("login", ["*)(uid=*", "*", "jd*", "jdoe)(|(uid=*", "\\2a", "jdoe\x00"])
def test_filter_injection_finds_nothing(slapd, login):
    """Filter metacharacters are escaped (Koha interpolates them: §6.3 step 6)."""
    result = directory(slapd.url).authenticate(login, PASSWORDS["jdoe"])
    assert result.outcome is NOT_HANDLED
    assert result.dn is None


def test_metacharacters_in_a_real_login_name_match_literally(slapd):
    result = directory(slapd.url).authenticate("o(ops)*", "odd-pw")
    assert result.outcome is OK
    assert result.dn == f"cn=odd,{PEOPLE}"


def test_non_ascii_login_name_and_password(slapd):
    result = directory(slapd.url).authenticate("zoë", PASSWORDS["zoë"])
    assert result.outcome is OK
    assert result.attributes["sn"] == ["Ñúñez"]
    assert directory(slapd.url).authenticate("zoë", "passwort").outcome is REJECTED


def test_empty_credentials_are_rejected_without_asking(slapd):
    # A closed port would make any attempt "unavailable": REJECTED proves nothing was sent.
    closed = f"ldap://127.0.0.1:{free_port()}"
    assert directory(closed).authenticate("jdoe", "").outcome is REJECTED
    assert directory(closed).authenticate("", "x").outcome is REJECTED
    assert directory(slapd.url).authenticate("jdoe", "").outcome is REJECTED


# -- auth_by_bind ------------------------------------------------------------------------------

AD_MAPPING = {
    "userid": ("sAMAccountName", None),
    "surname": ("sn", None),
    "email": ("userPrincipalName", None),
}


def test_auth_by_bind_with_principal_name(slapd):
    """auth_by_bind=1, anonymous_bind=0: bind as principal_name % userid, then read the entry."""
    ad = directory(
        slapd.url,
        auth_by_bind=True,
        anonymous_bind=False,
        principal_name=f"cn=%s,{STAFF}",
        mapping=AD_MAPPING,
    )
    result = ad.authenticate("bwayne", PASSWORDS["bwayne"])
    assert result.outcome is OK
    assert result.dn == f"cn=bwayne,{STAFF}"
    assert result.attributes["userprincipalname"] == ["bwayne@example.org"]
    assert result.attributes["samaccountname"] == ["bwayne"]
    # Koha bug 12831: a failed direct bind is "not handled" (falls back to the local hash).
    assert ad.authenticate("bwayne", "wrong").outcome is NOT_HANDLED
    # The login name is escaped for the DN: no way to bind as another entry.
    assert ad.authenticate(f"bwayne,{STAFF}", PASSWORDS["bwayne"]).outcome is NOT_HANDLED


def test_auth_by_bind_without_reading_the_entry(slapd):
    ad = directory(
        slapd.url,
        auth_by_bind=True,
        anonymous_bind=False,
        principal_name=f"cn=%s,{STAFF}",
        mapping=AD_MAPPING,
        update=False,
        replicate=False,
    )
    result = ad.authenticate("bwayne", PASSWORDS["bwayne"])
    assert result.outcome is OK
    assert result.attributes == {}
    assert result.dn == f"cn=bwayne,{STAFF}"


def test_auth_by_bind_with_anonymous_search_by_user_principal_name(slapd):
    """auth_by_bind=1, anonymous_bind=1: find the DN by userPrincipalName, bind as it."""
    ad = directory(
        slapd.url,
        auth_by_bind=True,
        mapping={"userid": ("userPrincipalName", None), "surname": ("sn", None)},
    )
    result = ad.authenticate("bwayne@example.org", PASSWORDS["bwayne"])
    assert result.outcome is OK
    assert result.dn == f"cn=bwayne,{STAFF}"
    assert result.attributes["sn"] == ["Wayne"]
    # The DN came from the search: a wrong password is a definite rejection.
    assert ad.authenticate("bwayne@example.org", "wrong").outcome is REJECTED
    assert ad.authenticate("robin@example.org", "x").outcome is NOT_HANDLED


def test_principal_name_formats():
    upn = directory("ldap://h", auth_by_bind=True, anonymous_bind=False, principal_name="%s@ex.org")
    assert upn._principal("bwayne") == "bwayne@ex.org"
    dn = directory("ldap://h", auth_by_bind=True, principal_name="uid=%s,ou=people,dc=ex")
    assert dn._principal("a,b+c") == "uid=a\\,b\\+c,ou=people,dc=ex"
    bare = directory("ldap://h", auth_by_bind=True, principal_name="EXAMPLE")
    assert bare._principal("bwayne") == "bwayne"


# -- TLS -------------------------------------------------------------------------------------


def test_ldaps_with_the_test_ca(slapd, ldap_pki):
    result = directory(slapd.ldaps_url, ca_file=str(ldap_pki["ca"])).authenticate(
        "jdoe", PASSWORDS["jdoe"]
    )
    assert result.outcome is OK
    assert result.host.startswith("ldaps://")


def test_ldaps_with_an_untrusted_ca_is_unavailable(slapd, ldap_pki, log_events):
    result = directory(slapd.ldaps_url, ca_file=str(ldap_pki["other_ca"])).authenticate(
        "jdoe", PASSWORDS["jdoe"]
    )
    assert result.outcome is NOT_HANDLED
    assert result.unavailable is True
    assert "LDAP connection failed" in _flatten(log_events)


def test_verify_off_accepts_any_certificate(slapd, ldap_pki):
    lax = directory(slapd.ldaps_url, ca_file=str(ldap_pki["other_ca"]), verify=False)
    assert lax.authenticate("jdoe", PASSWORDS["jdoe"]).outcome is OK


def test_start_tls(slapd, ldap_pki):
    url = f"ldap://localhost:{slapd.port}"
    secure = directory(url, start_tls=True, ca_file=str(ldap_pki["ca"]))
    assert secure.authenticate("jdoe", PASSWORDS["jdoe"]).outcome is OK
    assert secure.authenticate("jdoe", "wrong").outcome is REJECTED
    untrusted = directory(url, start_tls=True, ca_file=str(ldap_pki["other_ca"]))
    assert untrusted.authenticate("jdoe", PASSWORDS["jdoe"]).unavailable is True


def test_certificate_name_is_checked(named_slapd, ldap_pki):
    """A trusted certificate for another name is refused unless tls_name expects that name."""
    url = f"ldaps://127.0.0.1:{named_slapd.ldaps_port}"
    wrong = directory(url, ca_file=str(ldap_pki["ca"]))
    result = wrong.authenticate("jdoe", PASSWORDS["jdoe"])
    assert result.outcome is NOT_HANDLED and result.unavailable
    named = directory(url, ca_file=str(ldap_pki["ca"]), tls_name="ldap.example.org")
    assert named.authenticate("jdoe", PASSWORDS["jdoe"]).outcome is OK


# -- unavailable servers, fallback order -----------------------------------------------------


def test_next_host_is_tried_and_remembered(slapd, log_events):
    closed_port = free_port()
    both = directory([f"ldap://127.0.0.1:{closed_port}", slapd.url])
    assert both.host_order()[0].port == closed_port
    result = both.authenticate("jdoe", PASSWORDS["jdoe"])
    assert result.outcome is OK
    assert result.host.endswith(f":{slapd.port}")
    assert "LDAP connection failed" in _flatten(log_events)
    # The host that answered is tried first from now on.
    assert both.host_order()[0].port == slapd.port


def test_a_hung_server_times_out_and_the_next_one_answers(slapd, black_hole):
    both = directory([f"ldap://127.0.0.1:{black_hole.port}", slapd.url], response_timeout=1)
    started = time.monotonic()
    assert both.authenticate("jdoe", PASSWORDS["jdoe"]).outcome is OK
    first = time.monotonic() - started
    assert 0.9 < first < 5
    started = time.monotonic()
    assert both.authenticate("jdoe", PASSWORDS["jdoe"]).outcome is OK
    assert time.monotonic() - started < 0.9  # the answering host goes first now


def test_no_host_answers(black_hole, log_events):
    hosts = [f"ldap://127.0.0.1:{free_port()}", f"ldap://127.0.0.1:{black_hole.port}"]
    started = time.monotonic()
    result = directory(hosts, response_timeout=1).authenticate("jdoe", "secret-pw")
    elapsed = time.monotonic() - started
    assert result.outcome is NOT_HANDLED
    assert result.unavailable is True
    assert result.reason.startswith("LDAP connection failed")
    assert elapsed < 5
    assert "secret-pw" not in _flatten(log_events)


def test_ldap_stopped_mid_run(own_slapd):
    """Stopping slapd gives a quick "unavailable"; starting it again recovers."""
    ldap = directory(own_slapd.url, response_timeout=2)
    assert ldap.authenticate("jdoe", PASSWORDS["jdoe"]).outcome is OK
    own_slapd.stop()
    started = time.monotonic()
    result = ldap.authenticate("jdoe", PASSWORDS["jdoe"])
    assert result.outcome is NOT_HANDLED and result.unavailable
    assert time.monotonic() - started < 3
    own_slapd.start()
    assert ldap.authenticate("jdoe", PASSWORDS["jdoe"]).outcome is OK


# -- threads ---------------------------------------------------------------------------------


def test_concurrent_calls_from_many_threads(slapd):
    ldap = directory(slapd.url)
    cases = [("jdoe", PASSWORDS["jdoe"], OK), ("jdoe", "bad", REJECTED)]
    cases += [("asmith", PASSWORDS["asmith"], OK), ("ghost", "x", NOT_HANDLED)]
    cases = cases * 15
    names = set()

    def run(case):
        names.add(threading.current_thread().name)
        userid, password, expected = case
        return ldap.authenticate(userid, password).outcome is expected

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert all(pool.map(run, cases))
    assert len(names) > 1
