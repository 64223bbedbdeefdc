"""Every change to signing keys, and signing with them."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from flask import current_app
from jwt.algorithms import Algorithm
from jwt.algorithms import get_default_algorithms
from sqlalchemy import select

from authserver.audit import service as audit
from authserver.audit.events import AuditEvent
from authserver.errors import NotFound
from authserver.errors import ValidationError
from authserver.extensions import db
from authserver.extensions import flush_or_conflict
from authserver.keys import crypto
from authserver.keys.models import ACTIVE
from authserver.keys.models import IN_JWKS
from authserver.keys.models import PUBLISHED
from authserver.keys.models import RETIRED
from authserver.keys.models import SigningKey
from authserver.models import utcnow
from authserver.tenancy.models import Tenant


def create_key(tenant: Tenant, alg: str = "RS256", *, actor: str | None = None) -> SigningKey:
    """Make a new signer for ``alg``; the previous signer of that alg stays published.

    :raises ValidationError: for an algorithm we do not sign with.
    """
    if alg not in crypto.SUPPORTED_ALGORITHMS:
        raise ValidationError(f"unsupported algorithm {alg!r}; use one of RS256, ES256")
    previous = _active(tenant, alg)
    generated = crypto.generate(alg)
    key = SigningKey(
        tenant_id=tenant.id,
        kid=generated.kid,
        alg=alg,
        status=ACTIVE,
        public_jwk=generated.public_jwk,
    )
    key.private_key_ciphertext = crypto.encrypt_private_key(
        generated.private_pem, _keks(), key.associated_data
    )
    db.session.add(key)
    if previous is not None:
        previous.status, previous.rotated_at = PUBLISHED, utcnow()
    # The previous signer's UPDATE goes first, then the new INSERT.
    flush_or_conflict(
        f"another {alg} key was made for tenant {tenant.slug!r} at the same time; "
        "list the keys and rotate again if needed"
    )
    event = AuditEvent.KEY_ROTATED if previous else AuditEvent.KEY_CREATED
    audit.record(tenant, event, actor=actor, subject=key.kid, alg=alg)
    return key


def rotate(tenant: Tenant, alg: str = "RS256", *, actor: str | None = None) -> SigningKey:
    """Make a new signer; tokens signed by the old one keep verifying until it is retired."""
    return create_key(tenant, alg, actor=actor)


def retire(tenant: Tenant, kid: str, *, actor: str | None = None) -> SigningKey:
    """Take a published key out of the JWKS, so tokens it signed stop verifying.

    :raises NotFound: when this tenant has no such key.
    :raises ValidationError: for the active signer (rotate first) or a retired key.
    """
    key = db.session.scalar(SigningKey.for_tenant(tenant).where(SigningKey.kid == kid))
    if key is None:
        raise NotFound(f"tenant {tenant.slug!r} has no key {kid!r}")
    if key.status == ACTIVE:
        raise ValidationError(f"key {kid!r} is the active signer; rotate before retiring it")
    if key.status == RETIRED:
        raise ValidationError(f"key {kid!r} is already retired")
    key.status, key.retired_at = RETIRED, utcnow()
    db.session.flush()
    audit.record(tenant, AuditEvent.KEY_RETIRED, actor=actor, subject=kid)
    return key


def list_keys(tenant: Tenant) -> list[SigningKey]:
    return list(db.session.scalars(SigningKey.for_tenant(tenant).order_by(SigningKey.id)))


def jwks(tenant: Tenant) -> dict[str, list[dict[str, Any]]]:
    """The tenant's public JWK Set: its signers and published keys, newest first."""
    query = (
        SigningKey.for_tenant(tenant)
        .where(SigningKey.status.in_(IN_JWKS))
        .order_by(SigningKey.id.desc())
    )
    return {"keys": [dict(key.public_jwk) for key in db.session.scalars(query)]}


def sign(tenant: Tenant, claims: dict[str, Any], *, alg: str = "RS256", typ: str = "JWT") -> str:
    """Sign ``claims`` with the tenant's active key for ``alg``, naming it by ``kid``.

    :raises NotFound: when the tenant has no active key for ``alg``.
    """
    key = _active(tenant, alg)
    if key is None:
        raise NotFound(f"tenant {tenant.slug!r} has no active {alg} key")
    return sign_with(key.tenant_id, key.kid, key.private_key_ciphertext, claims, alg=alg, typ=typ)


def sign_with(
    tenant_id: int, kid: str, ciphertext: bytes, claims: dict[str, Any], *, alg: str, typ: str
) -> str:
    """Sign ``claims`` with the key stored as ``ciphertext`` (a row already read), named ``kid``."""
    return signer(tenant_id, kid, ciphertext, alg=alg, typ=typ).sign(claims)


@dataclass(frozen=True)
class Signer:
    """One signing key, decrypted, with its JWS header already encoded: signs claims into a
    compact JWS (RFC 7515 §7.1), the signature made by PyJWT's implementation of ``alg``.

    Kept per process (:func:`signer`), so a token costs the signature and its payload's JSON.
    """

    kid: str
    alg: str
    key: crypto.PrivateKey
    algorithm: Algorithm
    header: bytes  # BASE64URL(UTF8(JWS Protected Header))

    def sign(self, claims: dict[str, Any]) -> str:
        payload = _b64url(json.dumps(claims, separators=(",", ":")).encode())
        signing_input = self.header + b"." + payload
        signature = self.algorithm.sign(signing_input, self.key)
        return (signing_input + b"." + _b64url(signature)).decode("ascii")


def signer(tenant_id: int, kid: str, ciphertext: bytes, *, alg: str, typ: str) -> Signer:
    """The :class:`Signer` of the key stored as ``ciphertext`` (a row already read).

    For callers that read the key's row in a query of their own (the token fast path).
    """
    return _signer(tenant_id, kid, ciphertext, alg, typ, tuple(_keks()))


@lru_cache(maxsize=4096)
def _signer(
    tenant_id: int, kid: str, ciphertext: bytes, alg: str, typ: str, keks: tuple[bytes, ...]
) -> Signer:
    # Keys never change once written, so a decrypted key can be kept for the process's life.
    if alg not in crypto.SUPPORTED_ALGORITHMS:
        raise ValueError(f"unsupported algorithm {alg!r}")
    key = crypto.decrypt_private_key(ciphertext, list(keks), crypto.associated_data(tenant_id, kid))
    header = {"alg": alg, "kid": kid, "typ": typ}
    encoded = _b64url(json.dumps(header, separators=(",", ":"), sort_keys=True).encode())
    return Signer(kid, alg, key, get_default_algorithms()[alg], encoded)


def _b64url(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _active(tenant: Tenant, alg: str) -> SigningKey | None:
    query = SigningKey.for_tenant(tenant).where(SigningKey.alg == alg, SigningKey.status == ACTIVE)
    return db.session.scalar(query)


def _keks() -> list[bytes]:
    return current_app.config["AUTHSERVER_KEY_ENCRYPTION_KEYS"]


def active_algorithms(tenant: Tenant) -> list[str]:
    query = select(SigningKey.alg).where(
        SigningKey.tenant_id == tenant.id, SigningKey.status == ACTIVE
    )
    return sorted(db.session.scalars(query))
