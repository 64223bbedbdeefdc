"""Random tokens with recognisable prefixes, and the digests we keep instead of them."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def new_token(prefix: str, nbytes: int = 32) -> str:
    """A random token such as ``ascs_3q2…``; the prefix lets leaked ones be scanned for."""
    return f"{prefix}_{secrets.token_urlsafe(nbytes)}"


def digest(token: str) -> str:
    """SHA-256 hex digest: what is stored at rest instead of a token or machine-made secret."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def matches(token: str, stored_digest: str | None) -> bool:
    """Constant-time comparison of ``token`` against a stored digest."""
    if not stored_digest:
        return False
    return hmac.compare_digest(digest(token), stored_digest)


def derive_key(secret: str, purpose: bytes) -> bytes:
    """A 32-byte key for ``purpose`` alone, derived from a deployment secret (HKDF, RFC 5869):
    a digest made with it says nothing about the secret or about any other use of it."""
    kdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose)
    return kdf.derive(secret.encode("utf-8"))


def keyed_digest(key: bytes, value: str, nbytes: int = 16) -> str:
    """HMAC-SHA256 of ``value`` under ``key``, hex, truncated to ``nbytes``: the same value gives
    the same digest, and without the key the value cannot be read back or guessed at."""
    mac = hmac.new(key, value.encode("utf-8", "surrogatepass"), hashlib.sha256)
    return mac.hexdigest()[: 2 * nbytes]
