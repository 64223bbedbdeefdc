"""Every change to signing keys, and signing with them."""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from flask import current_app
from jwt.algorithms import Algorithm
from jwt.algorithms import get_default_algorithms
from sqlalchemy import case
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from authserver.audit import service as audit
from authserver.audit.events import AuditEvent
from authserver.errors import Conflict
from authserver.errors import NotFound
from authserver.errors import ValidationError
from authserver.extensions import db
from authserver.extensions import flush_or_conflict
from authserver.keys import crypto
from authserver.keys.models import ACTIVE
from authserver.keys.models import IN_JWKS
from authserver.keys.models import NEXT
from authserver.keys.models import PUBLISHED
from authserver.keys.models import RETIRED
from authserver.keys.models import SigningKey
from authserver.models import utcnow
from authserver.outcomes import Outcome
from authserver.tenancy.models import Tenant
from authserver.web import PUBLIC_DOCUMENT_MAX_AGE

# The JWKS lists keys in the order of IN_JWKS (signers first).
_JWKS_ORDER = case({status: rank for rank, status in enumerate(IN_JWKS)}, value=SigningKey.status)


def create_key(tenant: Tenant, alg: str = "RS256", *, actor: str | None = None) -> SigningKey:
    """Make a new signer for ``alg`` that signs at once; the previous signer of that alg stays
    published.

    This is how a tenant gets its first key of an algorithm (tenant creation, a new access-token
    algorithm). A tenant that already signs with ``alg`` should :func:`rotate` instead: a new
    key that signs at once is refused, until they fetch the JWKS again, by verifiers that
    cached it before the key existed.

    :raises ValidationError: for an algorithm we do not sign with.
    :raises Conflict: when another ``alg`` key was made at the same time.
    """
    _check_algorithm(alg)
    previous = _active(tenant, alg)
    key = _new_key(tenant, alg, ACTIVE)
    if previous is not None:
        previous.status, previous.rotated_at = PUBLISHED, utcnow()
    # The previous signer's UPDATE goes first, then the new INSERT.
    flush_or_conflict(
        f"another {alg} key was made for tenant {tenant.slug!r} at the same time; "
        "list the keys and rotate again if needed"
    )
    if previous is None:
        audit.record(tenant, AuditEvent.KEY_CREATED, actor=actor, subject=key.kid, alg=alg)
    else:
        _record_rotation(tenant, previous, key, at_once=True, actor=actor)
    return key


def stage(tenant: Tenant, alg: str = "RS256", *, actor: str | None = None) -> SigningKey:
    """Publish the next signer for ``alg``: in the JWKS at once, signing nothing until
    :func:`rotate` promotes it.

    :raises ValidationError: for an algorithm we do not sign with, when the tenant has no
        active ``alg`` key (a staged key succeeds one), or when an ``alg`` key is staged already.
    :raises Conflict: when another ``alg`` key was staged at the same time.
    """
    _check_algorithm(alg)
    if _active(tenant, alg) is None:
        raise ValidationError(
            f"tenant {tenant.slug!r} has no active {alg} key for a staged key to succeed; "
            "rotate with --now to make one"
        )
    _check_none_staged(tenant, alg)
    return _stage(tenant, alg, actor=actor)


def rotate(
    tenant: Tenant, alg: str = "RS256", *, now: bool = False, actor: str | None = None
) -> SigningKey:
    """Make the staged ``alg`` key the signer, publish the old signer, and stage a successor.

    Verifiers may cache the JWKS for ``PUBLIC_DOCUMENT_MAX_AGE`` seconds, so the staged key must
    have been in it that long: every verifier then knows its ``kid`` before it signs. ``now``
    is for a compromised signer: the staged key, whatever its age, or a new key when none is
    staged, signs at once, and verifiers holding an older JWKS refuse its tokens until they
    fetch it again. Tokens the old signer signed keep verifying until it is retired.

    :returns: the new signer.
    :raises ValidationError: for an algorithm we do not sign with; without ``now``, when no
        ``alg`` key is staged or it was staged less than ``PUBLIC_DOCUMENT_MAX_AGE`` seconds ago.
    :raises Conflict: when another rotation or staging of ``alg`` ran at the same time.
    """
    _check_algorithm(alg)
    staged = staged_key(tenant, alg)
    if not now:
        _check_published_long_enough(tenant, alg, staged)
    if staged is None:
        key = create_key(tenant, alg, actor=actor)
    else:
        key = _promote(tenant, staged, at_once=now, actor=actor)
    # Staged in the same transaction: of two rotations racing, the second finds this successor
    # or collides with it (ux_signing_keys_next_alg).
    _stage(tenant, alg, actor=actor)
    return key


def stage_first(tenant: Tenant, alg: str, *, actor: str | None = None) -> SigningKey:
    """Publish the tenant's first ``alg`` key: in the JWKS at once, signing nothing until
    :func:`activate_first` makes it the signer (a new access-token algorithm).

    :raises ValidationError: for an algorithm we do not sign with, when the tenant has an active
        ``alg`` key (:func:`stage` stages its successor), or when an ``alg`` key is staged
        already.
    :raises Conflict: when another ``alg`` key was staged at the same time.
    """
    _check_algorithm(alg)
    _check_none_active(tenant, alg)
    _check_none_staged(tenant, alg)
    return _stage(tenant, alg, actor=actor)


def activate_first(
    tenant: Tenant, alg: str, *, at_once: bool, actor: str | None = None
) -> SigningKey:
    """Make the tenant's first ``alg`` signer: its staged ``alg`` key, or a new key when none is
    staged. No successor is staged, as for a new tenant's first key.

    The caller decides whether the staged key has been in the JWKS long enough
    (:func:`seconds_until_it_may_sign`); ``at_once`` records that it did not wait.

    :raises ValidationError: for an algorithm we do not sign with, or when the tenant has an
        active ``alg`` key already.
    :raises Conflict: when another command made, promoted or retired an ``alg`` key at the
        same time.
    """
    _check_algorithm(alg)
    _check_none_active(tenant, alg)
    staged = staged_key(tenant, alg)
    if staged is None:
        return create_key(tenant, alg, actor=actor)
    return _promote(tenant, staged, at_once=at_once, actor=actor)


def seconds_in_jwks(key: SigningKey) -> float:
    """How long ``key`` has been in the JWKS; never below 0, as another instance's clock may
    run ahead of this one's."""
    return max(0.0, (utcnow() - key.created_at).total_seconds())


def seconds_until_it_may_sign(key: SigningKey) -> int:
    """Whole seconds until ``key`` has been in the JWKS for as long as verifiers may cache it:
    0 once it may sign, at most ``PUBLIC_DOCUMENT_MAX_AGE``."""
    return max(0, math.ceil(PUBLIC_DOCUMENT_MAX_AGE - seconds_in_jwks(key)))


def _check_none_staged(tenant: Tenant, alg: str) -> None:
    staged = staged_key(tenant, alg)
    if staged is not None:
        raise ValidationError(
            f"{alg} key {staged.kid!r} is staged already; rotate to it, or retire it first"
        )


def _check_none_active(tenant: Tenant, alg: str) -> None:
    active = _active(tenant, alg)
    if active is not None:
        raise ValidationError(
            f"tenant {tenant.slug!r} signs with {alg} key {active.kid!r} already; "
            "rotate it instead (keys stage, keys rotate)"
        )


def _check_published_long_enough(tenant: Tenant, alg: str, staged: SigningKey | None) -> None:
    if staged is None:
        raise ValidationError(
            f"tenant {tenant.slug!r} has no staged {alg} key: stage one (keys stage) and rotate "
            f"{PUBLIC_DOCUMENT_MAX_AGE} s later, or rotate with --now to switch at once"
        )
    check_may_sign(staged, retry="rotate")


def check_may_sign(staged: SigningKey, *, retry: str) -> None:
    """Refuse to sign with ``staged`` before it has been in the JWKS as long as verifiers may
    cache it.

    :param retry: what the operator is to run again, for the message.
    :raises ValidationError: naming the wait.
    """
    wait = seconds_until_it_may_sign(staged)
    if wait > 0:
        raise ValidationError(
            f"{staged.alg} key {staged.kid!r} was staged {int(seconds_in_jwks(staged))} s ago and "
            f"verifiers may cache the JWKS for {PUBLIC_DOCUMENT_MAX_AGE} s: {retry} again in "
            f"{wait} s, or with --now to switch at once"
        )


def _promote(tenant: Tenant, staged: SigningKey, *, at_once: bool, actor: str | None) -> SigningKey:
    previous = _active(tenant, staged.alg)
    conflict = (
        f"another {staged.alg} rotation or retirement of tenant {tenant.slug!r} ran at the same "
        "time; list the keys and rotate again if needed"
    )
    if previous is not None:
        # Steps down first: one active key per alg (ux_signing_keys_active_alg).
        _move(previous, ACTIVE, conflict, status=PUBLISHED, rotated_at=utcnow())
    _move(staged, NEXT, conflict, status=ACTIVE)
    _record_rotation(tenant, previous, staged, at_once=at_once, actor=actor)
    return staged


def _move(key: SigningKey, was: str, conflict: str, **values: Any) -> None:
    """Write ``values`` to ``key`` only if it still has the status ``was`` it was read with: of a
    rotation and a retirement racing for one key, the second finds it moved and changes nothing.

    :raises Conflict: when another command changed the key since it was read.
    """
    statement = (
        update(SigningKey).where(SigningKey.id == key.id, SigningKey.status == was).values(**values)
    )
    try:
        moved = db.session.execute(statement).rowcount == 1
    except IntegrityError:  # another key took the status meanwhile (the partial unique indexes)
        moved = False
    if not moved:
        db.session.rollback()
        raise Conflict(conflict)


def _stage(tenant: Tenant, alg: str, *, actor: str | None) -> SigningKey:
    key = _new_key(tenant, alg, NEXT)
    flush_or_conflict(
        f"another {alg} key was staged for tenant {tenant.slug!r} at the same time; "
        "list the keys and try again if needed"
    )
    audit.record(tenant, AuditEvent.KEY_STAGED, actor=actor, subject=key.kid, alg=alg)
    return key


def _new_key(tenant: Tenant, alg: str, status: str) -> SigningKey:
    generated = crypto.generate(alg)
    key = SigningKey(
        tenant_id=tenant.id,
        kid=generated.kid,
        alg=alg,
        status=status,
        public_jwk=generated.public_jwk,
    )
    key.private_key_ciphertext = crypto.encrypt_private_key(
        generated.private_pem, _keks(), key.associated_data
    )
    db.session.add(key)
    return key


def _record_rotation(
    tenant: Tenant,
    previous: SigningKey | None,
    key: SigningKey,
    *,
    at_once: bool,
    actor: str | None,
) -> None:
    audit.record(
        tenant,
        AuditEvent.KEY_ROTATED,
        actor=actor,
        subject=key.kid,
        alg=key.alg,
        previous_kid=previous.kid if previous else None,
        at_once=at_once,
    )


def _check_algorithm(alg: str) -> None:
    if alg not in crypto.SUPPORTED_ALGORITHMS:
        raise ValidationError(f"unsupported algorithm {alg!r}; use one of RS256, ES256")


def retire(tenant: Tenant, kid: str, *, actor: str | None = None) -> Outcome[SigningKey]:
    """Take a published or staged key out of the JWKS, so tokens it signed stop verifying.

    A key retired already is left as it is, and nothing is audited.

    :raises NotFound: when this tenant has no such key.
    :raises ValidationError: for the active signer (rotate first).
    :raises Conflict: when another command rotated or retired the key at the same time.
    """
    key = db.session.scalar(SigningKey.for_tenant(tenant).where(SigningKey.kid == kid))
    if key is None:
        raise NotFound(f"tenant {tenant.slug!r} has no key {kid!r}")
    if key.status == ACTIVE:
        raise ValidationError(f"key {kid!r} is the active signer; rotate before retiring it")
    if key.status == RETIRED:
        return Outcome(key, changed=False)
    conflict = (
        f"key {kid!r} was rotated or retired at the same time; list the keys and retire again "
        "if needed"
    )
    _move(key, key.status, conflict, status=RETIRED, retired_at=utcnow())
    audit.record(tenant, AuditEvent.KEY_RETIRED, actor=actor, subject=kid)
    return Outcome(key, changed=True)


def list_keys(tenant: Tenant) -> list[SigningKey]:
    return list(db.session.scalars(SigningKey.for_tenant(tenant).order_by(SigningKey.id)))


def jwks(tenant: Tenant) -> dict[str, list[dict[str, Any]]]:
    """The tenant's public JWK Set: its signers, then its staged keys, then its published keys,
    each newest first."""
    query = (
        SigningKey.for_tenant(tenant)
        .where(SigningKey.status.in_(IN_JWKS))
        .order_by(_JWKS_ORDER, SigningKey.id.desc())
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


def staged_key(tenant: Tenant, alg: str) -> SigningKey | None:
    """The tenant's staged (``next``) ``alg`` key, if any."""
    query = SigningKey.for_tenant(tenant).where(SigningKey.alg == alg, SigningKey.status == NEXT)
    return db.session.scalar(query)


def _keks() -> list[bytes]:
    return current_app.config["AUTHSERVER_KEY_ENCRYPTION_KEYS"]


def active_algorithms(tenant: Tenant) -> list[str]:
    query = select(SigningKey.alg).where(
        SigningKey.tenant_id == tenant.id, SigningKey.status == ACTIVE
    )
    return sorted(db.session.scalars(query))
