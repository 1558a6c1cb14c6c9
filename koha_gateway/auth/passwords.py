"""Password hashes as Koha stores them in ``borrowers.password``.

Koha writes bcrypt hashes (``$2a$`` from Crypt::Eksblowfish, ``$2b$``/``$2y$`` from other tools)
and very old installations still hold the legacy unsalted MD5 digest, base64-encoded without
padding (22 characters). Both verify here; new hashes are always bcrypt ``$2b$``.

bcrypt only reads the first 72 bytes of a password. bcrypt 3.2 (Debian bookworm) truncates
silently while bcrypt 5 raises, so the truncation is done here, the same on both.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

import bcrypt

BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")
DEFAULT_ROUNDS = 10  # Koha's cost (C4::Auth::hash_password uses 8; Koha::Patron 10)


def _secret(password: str) -> bytes:
    return password.encode("utf-8")[:72]


def hash_password(password: str, rounds: int = DEFAULT_ROUNDS) -> str:
    """A fresh bcrypt hash of ``password`` in Koha's format."""
    return bcrypt.hashpw(_secret(password), bcrypt.gensalt(rounds)).decode("ascii")


def is_bcrypt(stored: str | None) -> bool:
    return bool(stored) and stored.startswith(BCRYPT_PREFIXES)


def verify_password(password: str, stored: str | None) -> bool:
    """Whether ``password`` matches the stored hash (bcrypt or Koha's legacy MD5-base64).

    An empty or missing stored hash never matches: such an account has no local password.
    """
    if not stored or password is None:
        return False
    if stored.startswith(BCRYPT_PREFIXES):
        candidate = stored
        if candidate.startswith("$2y$"):
            candidate = "$2b$" + candidate[4:]
        try:
            return bcrypt.checkpw(_secret(password), candidate.encode("ascii"))
        except ValueError:
            return False
    if len(stored) == 22:
        digest = base64.b64encode(hashlib.md5(password.encode("utf-8")).digest())
        return hmac.compare_digest(digest.decode("ascii").rstrip("="), stored)
    return False
