"""Public keys that verify a tenant's own tokens, parsed once per app instance.

A key's material never changes once written (its ``kid`` is its RFC 7638 thumbprint), so the
parsed public key is kept for the life of the app. Whether a key may still verify is its
*status*, which is not cached: callers read it fresh with the token's own state (see
:mod:`authserver.tokens.introspection`), so a key retired through any instance stops verifying
on every instance at once. An unknown ``kid`` is read from the database, so a key made on
another instance verifies as soon as it exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jwt
from flask import current_app
from sqlalchemy import bindparam
from sqlalchemy import select

from authserver.extensions import db
from authserver.keys.models import IN_JWKS
from authserver.keys.models import SigningKey
from authserver.validation import storable

_keys = SigningKey.__table__.c
_PUBLISHED_KEY = select(_keys.alg, _keys.public_jwk).where(
    _keys.tenant_id == bindparam("tenant_id"),
    _keys.kid == bindparam("kid"),
    _keys.status.in_(IN_JWKS),
)


@dataclass(frozen=True)
class VerifyingKey:
    alg: str
    public_key: Any


def verifying_key(tenant_id: int, kid: str) -> VerifyingKey | None:
    """The tenant's published key ``kid``, from the process cache or the database.

    A cached key is returned whatever its status now is: the caller must check the status.
    """
    # Per app: (tenant id, kid) -> key, bounded by the keys that exist (only found keys enter).
    cache = current_app.extensions.setdefault("authserver.verifying_keys", {})
    key = cache.get((tenant_id, kid))
    if key is None:
        if not storable(kid):  # names no key, and no database can compare it
            return None
        row = db.session.execute(_PUBLISHED_KEY, {"tenant_id": tenant_id, "kid": kid}).first()
        if row is None:
            return None
        key = VerifyingKey(row.alg, jwt.PyJWK(row.public_jwk, row.alg).key)
        cache[(tenant_id, kid)] = key
    return key
