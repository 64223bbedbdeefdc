"""Random tokens with recognisable prefixes, and the digests we keep instead of them."""

from __future__ import annotations

import hashlib
import hmac
import secrets


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
