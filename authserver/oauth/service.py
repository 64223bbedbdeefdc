"""Issuing and redeeming authorization codes (RFC 6749 §4.1.2, §10.5).

A code is a random ``asac_…`` token shown once; only its SHA-256 digest is stored. It lives
``tenant.authorization_code_lifetime`` seconds, is bound to its client, and is used once: a second
use revokes every token issued from the first.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy import update

from authserver import security
from authserver.accounts.models import LoginSession
from authserver.accounts.models import User
from authserver.audit import service as audit
from authserver.audit.events import AuditEvent
from authserver.clients.models import Client
from authserver.extensions import db
from authserver.models import utcnow
from authserver.oauth.models import AuthorizationCode
from authserver.tenancy.models import Tenant
from authserver.tokens import revocation
from authserver.tokens import service as tokens
from authserver.tokens.models import IssuedToken

CODE_PREFIX = "asac"


def new_code() -> str:
    return security.new_token(CODE_PREFIX)


@dataclass(frozen=True)
class CodeRequest:
    """What the authorization endpoint decided, to be redeemed once at the token endpoint."""

    client: Client
    user: User
    login: LoginSession
    redirect_uri: str
    scope: str
    context: dict[str, Any]
    nonce: str | None = None
    code_challenge: str | None = None
    code_challenge_method: str | None = None


def save_code(tenant: Tenant, code: str, decided: CodeRequest) -> AuthorizationCode:
    """Store ``code`` (as its digest) for the decided authorization."""
    row = AuthorizationCode(
        tenant_id=tenant.id,
        code_digest=security.digest(code),
        grant_id=tokens.new_grant_id(),
        client_pk=decided.client.id,
        user_id=decided.user.id,
        login_session_id=decided.login.id,
        redirect_uri=decided.redirect_uri,
        scope=decided.scope,
        nonce=decided.nonce,
        code_challenge=decided.code_challenge,
        code_challenge_method=decided.code_challenge_method,
        context=decided.context,
        auth_time=decided.login.auth_time,
        expires_at=utcnow() + timedelta(seconds=tenant.authorization_code_lifetime),
    )
    db.session.add(row)
    db.session.flush()
    audit.record(
        tenant,
        AuditEvent.CODE_ISSUED,
        subject=decided.client.client_id,
        user=decided.user.username,
        scope=decided.scope,
    )
    return row


def redeem_code(tenant: Tenant, code: str, client: Client) -> AuthorizationCode | None:
    """Claim ``code`` for ``client``: the live, unused code of this tenant and client, or None.

    A code presented again revokes the tokens of its first exchange (RFC 6749 §4.1.2); the caller
    commits, so that the revocation stands although the request fails.
    """
    row = db.session.scalar(
        AuthorizationCode.for_tenant(tenant).where(
            AuthorizationCode.code_digest == security.digest(code)
        )
    )
    if row is None or row.client_pk != client.id:
        return None
    if not _claim(row):
        revoked = revocation.revoke_family(tenant, row.grant_id)
        audit.record(tenant, AuditEvent.CODE_REPLAYED, subject=client.client_id, revoked=revoked)
        return None
    if _as_now(AuthorizationCode.expires_at, row) <= utcnow():  # ended by a revocation?
        return None
    return row


def _claim(row: AuthorizationCode | IssuedToken, *still: Any) -> bool:
    """Mark a code or refresh token used, atomically: of two concurrent redemptions one wins.
    ``still``: what else must hold of the row as it is now, not as it was read."""
    model = type(row)
    statement = (
        update(model)
        .where(model.id == row.id, model.used_at.is_(None), *still)
        .values(used_at=utcnow())
    )
    result = db.session.execute(statement, execution_options={"synchronize_session": False})
    return result.rowcount == 1


def _as_now(column: Any, row: AuthorizationCode | IssuedToken) -> Any:
    """``column`` of ``row`` as the database holds it now, not as it was read: a revocation
    (:mod:`authserver.tokens.revocation`) may have changed it since, and the claim waited for it.
    """
    return db.session.scalar(select(column).where(type(row).id == row.id))


def nonce_seen(tenant: Tenant, client: Client, nonce: str) -> bool:
    """Whether ``client`` already got a code for ``nonce`` (OpenID Connect Core §15.5.2)."""
    query = AuthorizationCode.for_tenant(tenant).where(
        AuthorizationCode.client_pk == client.id, AuthorizationCode.nonce == nonce
    )
    return db.session.scalar(query.limit(1)) is not None


def redeem_refresh_token(tenant: Tenant, token: str) -> IssuedToken | None:
    """Claim a live refresh token of ``tenant`` for one rotation, or None.

    A rotated token presented again means it leaked or was stolen: every live token of its
    family is revoked (RFC 9700 §4.14.2) and the caller commits, so that the revocation stands;
    the spent ones stay as they are, so each later replay is refused and recorded too. A claimed
    one replaces the family's access tokens (INT-05), in the request's transaction: a refresh
    that fails after this leaves both the refresh token and those access tokens as they were.
    """
    row = tokens.find_refresh_token(tenant, token)
    if row is None or row.revoked_at is not None or row.expires_at <= utcnow():
        return None
    # The family's live rows in id order first, as every revocation takes them: the claim and the
    # replaced access tokens below then wait for a revocation running now instead of deadlocking
    # with it, and see what it did.
    revocation.lock_family(tenant, row.grant_id)
    if not _claim(row, IssuedToken.revoked_at.is_(None)):
        if _as_now(IssuedToken.revoked_at, row) is not None:  # revoked since read: not reused
            return None
        revoked = revocation.revoke_family(tenant, row.grant_id)
        audit.record(
            tenant, AuditEvent.REFRESH_TOKEN_REUSED, subject=row.client_id, revoked=revoked
        )
        return None
    revocation.retire_replaced_access_tokens(tenant, row.grant_id)
    return row
