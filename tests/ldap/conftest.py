"""Fixtures for the LDAP tests: a real OpenLDAP slapd with a test directory and a test CA.

Without slapd the tests are skipped, except under ``CI=true`` where they fail.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.ldap.slapd import READER_DN, READER_PW, SUFFIX, BlackHole, Slapd, SlapdUnavailable
from tests.support import server_unavailable

PEOPLE = f"ou=people,{SUFFIX}"
PRIVATE = f"ou=private,{SUFFIX}"
STAFF = f"ou=staff,{SUFFIX}"

PASSWORDS = {
    "jdoe": "patron-pw",
    "asmith": "student-pw",
    "kiosk1": "kiosk-pw",
    "hidden": "hidden-pw",
    "bwayne": "bat-pw",
    "twin": "twin-b-pw",
    "zoë": "pässwörd-ü",
}


def _person(dn: str, uid: str, given: str, sn: str, password: str, **extra: str) -> str:
    lines = [
        f"dn: {dn}",
        "objectClass: inetOrgPerson",
        f"uid: {uid}",
        f"cn: {given} {sn}",
        f"givenName: {given}",
        f"sn: {sn}",
        f"userPassword: {password}",
    ]
    lines += [f"{name}: {value}" for name, value in extra.items()]
    return "\n".join(lines)


def directory_ldif() -> str:
    entries = [
        f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example",
        f"dn: {READER_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n"
        f"cn: reader\nuserPassword: {READER_PW}",
        f"dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people",
        f"dn: {PRIVATE}\nobjectClass: organizationalUnit\nou: private",
        f"dn: {STAFF}\nobjectClass: organizationalUnit\nou: staff",
        _person(
            f"uid=jdoe,{PEOPLE}",
            "jdoe",
            "John",
            "Doe",
            PASSWORDS["jdoe"],
            mail="jdoe@example.org",
            employeeType="patron",
            telephoneNumber="+1 555 0100",
            postalCode="12345",
            l="Springfield",
            employeeNumber="23529000000101",
            departmentNumber="HISTORY",
        ),
        _person(
            f"uid=asmith,{PEOPLE}",
            "asmith",
            "Alice",
            "Smith",
            PASSWORDS["asmith"],
            mail="asmith@example.org",
            employeeType="student",
            employeeNumber="23529000000102",
        ),
        _person(
            f"uid=kiosk1,{PEOPLE}",
            "kiosk1",
            "Kiosk",
            "One",
            PASSWORDS["kiosk1"],
            employeeType="staff",
        ),
        _person(
            f"uid=hidden,{PRIVATE}",
            "hidden",
            "Hidden",
            "Person",
            PASSWORDS["hidden"],
            employeeType="patron",
        ),
        # A login name full of filter metacharacters, to show that escaping finds it literally.
        _person(f"cn=odd,{PEOPLE}", "o(ops)*", "Odd", "Name", "odd-pw"),
        # Non-ASCII login name, names and password.
        _person(f"uid=zoe,{PEOPLE}", "zoë", "Zoë", "Ñúñez", PASSWORDS["zoë"]),
        # Two entries with the same uid in different branches: Koha binds to each in turn.
        _person(f"cn=twin a,{PEOPLE}", "twin", "Twin", "A", "twin-a-pw"),
        _person(f"cn=twin b,{STAFF}", "twin", "Twin", "B", PASSWORDS["twin"]),
        # Active-Directory-like: named by cn, logs in as sAMAccountName / userPrincipalName.
        "\n".join(
            [
                f"dn: cn=bwayne,{STAFF}",
                "objectClass: inetOrgPerson",
                "objectClass: testAdUser",
                "cn: bwayne",
                "sn: Wayne",
                "givenName: Bruce",
                "uid: bwayne",
                "sAMAccountName: bwayne",
                "userPrincipalName: bwayne@example.org",
                "mail: bwayne@example.org",
                "employeeType: staff",
                f"userPassword: {PASSWORDS['bwayne']}",
            ]
        ),
    ]
    return "\n\n".join(entries) + "\n"


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_ca(directory: Path, common_name: str):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    path = directory / f"{common_name.replace(' ', '-')}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key, path


def make_server_cert(directory: Path, ca_cert, ca_key, names: list[str]) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    alt: list[x509.GeneralName] = []
    for name in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(names[0]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_path = directory / "server.pem"
    key_path = directory / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    os.chmod(key_path, 0o644)  # slapd may drop privileges; the key is a throwaway
    return cert_path, key_path


@pytest.fixture(scope="session")
def ldap_pki(tmp_path_factory):
    """A test CA, a server certificate for localhost and a second, untrusted CA."""
    base = tmp_path_factory.mktemp("ldap-pki")
    ca_cert, ca_key, ca_path = make_ca(base, "LDAP test CA")
    cert, key = make_server_cert(base, ca_cert, ca_key, ["localhost", "127.0.0.1"])
    _other, _other_key, other_ca = make_ca(base, "Untrusted CA")
    named = base / "named"
    named.mkdir()
    named_cert, named_key = make_server_cert(named, ca_cert, ca_key, ["ldap.example.org"])
    return {
        "ca": ca_path,
        "cert": cert,
        "key": key,
        "other_ca": other_ca,
        "named_cert": named_cert,
        "named_key": named_key,
    }


def start_slapd(ldap_pki=None, *, named: bool = False) -> Slapd:
    """A started slapd; ``named`` serves a certificate for ldap.example.org only."""
    tls = None
    if ldap_pki:
        cert, key = ("named_cert", "named_key") if named else ("cert", "key")
        tls = (ldap_pki["ca"], ldap_pki[cert], ldap_pki[key])
    try:
        server = Slapd(directory_ldif(), tls=tls)
    except SlapdUnavailable as exc:
        server_unavailable(f"slapd: {exc}")
    try:
        server.start()
    except SlapdUnavailable as exc:
        server.destroy()
        server_unavailable(f"slapd: {exc}")
    return server


@pytest.fixture(scope="session")
def slapd(ldap_pki):
    """One slapd for the session (ldap:// with StartTLS and ldaps://). Tests that change an
    entry use their own user or put the value back."""
    server = start_slapd(ldap_pki)
    yield server
    server.destroy()


@pytest.fixture
def own_slapd(ldap_pki):
    """A slapd of its own, for tests that stop and start the server."""
    server = start_slapd(ldap_pki)
    yield server
    server.destroy()


@pytest.fixture
def named_slapd(ldap_pki):
    """A slapd whose certificate names ldap.example.org, not 127.0.0.1 or localhost."""
    server = start_slapd(ldap_pki, named=True)
    yield server
    server.destroy()


@pytest.fixture
def black_hole():
    hole = BlackHole()
    yield hole
    hole.close()
