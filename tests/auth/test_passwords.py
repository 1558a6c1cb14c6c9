"""Password hashes as Koha stores them (bcrypt $2a$/$2b$/$2y$, legacy MD5-base64)."""

import base64
import hashlib

import bcrypt

from koha_gateway.auth.passwords import hash_password, is_bcrypt, verify_password


def test_new_hashes_are_bcrypt_and_verify():
    stored = hash_password("joes", rounds=4)
    assert stored.startswith("$2b$") and is_bcrypt(stored)
    assert verify_password("joes", stored)
    assert not verify_password("joe", stored)


def test_koha_2a_and_2y_hashes_verify():
    stored = bcrypt.hashpw(b"1234", bcrypt.gensalt(4, prefix=b"2a")).decode()
    assert stored.startswith("$2a$") and verify_password("1234", stored)
    as_2y = "$2y$" + stored[4:]
    assert verify_password("1234", as_2y)


def test_legacy_md5_base64():
    legacy = base64.b64encode(hashlib.md5(b"secret").digest()).decode().rstrip("=")
    assert len(legacy) == 22
    assert verify_password("secret", legacy)
    assert not verify_password("Secret", legacy)


def test_empty_or_unknown_hash_never_matches():
    assert not verify_password("", None)
    assert not verify_password("", "")
    assert not verify_password("x", "not-a-hash")


def test_long_passwords_behave_the_same_on_every_bcrypt_version():
    long = "p" * 100
    stored = hash_password(long, rounds=4)
    assert verify_password(long, stored)
    assert verify_password("p" * 72, stored)
