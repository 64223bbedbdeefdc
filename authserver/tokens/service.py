"""Issuing and revoking tokens. Every issued token gets a row, so it can be revoked by ``jti``."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from dataclasses import field
from datetime import UTC
from datetime import datetime
from typing import Any

from authserver import security
from authserver.accounts.models import User
from authserver.clients.models import INTROSPECTION_SCOPE
from authserver.clients.models import Client
from authserver.extensions import db
from authserver.keys import service as keys
from authserver.tenancy import service as tenants
from authserver.tenancy.models import Tenant
from authserver.tenancy.urls import INTROSPECTION_PATH
from authserver.tenancy.urls import TenantURLs
from authserver.tokens.claims import AccessTokenSubject
from authserver.tokens.claims import access_token_claims
from authserver.tokens.limits import MAX_TOKEN_LENGTH
from authserver.tokens.limits import fits
from authserver.tokens.models import ACCESS
from authserver.tokens.models import REFRESH
from authserver.tokens.models import IssuedToken

REFRESH_TOKEN_PREFIX = "asrt"
ACCESS_TOKEN_TYPE = "at+jwt"  # RFC 9068 §2.1


def new_grant_id() -> str:
    return secrets.token_urlsafe(16)


def audience(scope: str, urls: TenantURLs) -> str:
    """The ``aud`` of an access token of ``scope``: the resource it is for (RFC 9068 §3, RFC
    8707 §2).

    That is the tenant's FHIR base, except for a resource server's ``introspect`` token, which
    is for this server's introspection endpoint and nothing else (SMART INT-06): shown to the
    FHIR server, it names another resource than the one the gateway serves. Introspection holds
    every token to the same rule (:mod:`authserver.tokens.introspection`).
    """
    if scope == INTROSPECTION_SCOPE:
        return urls.url(INTROSPECTION_PATH)
    return urls.fhir_base_url


class TokenTooLong(Exception):
    """An access token would be longer than :data:`MAX_TOKEN_LENGTH`: too long for an HTTP
    header, and for our own introspection, which would answer it inactive. Nothing is issued."""

    def __init__(self, length: int) -> None:
        super().__init__(f"an access token of {length} characters, over {MAX_TOKEN_LENGTH}")
        self.length = length


@dataclass(frozen=True)
class Authorization:
    """What a token is issued for: one client, at one tenant, for a scope and maybe a user.

    ``service_account`` is the user a backend client acts for: recorded on the token's row (so
    disabling that user or revoking its tokens ends the token) but never a claim of the token,
    whose subject stays the client.
    """

    tenant: Tenant
    client: Client
    scope: str
    user: User | None = None
    context: dict[str, Any] = field(default_factory=dict)
    grant_id: str = field(default_factory=new_grant_id)
    login_session_id: int | None = None
    service_account: User | None = None

    @property
    def subject(self) -> str:
        """The token's ``sub``: the user's opaque subject, or the client itself (RFC 9068 §2.2)
        when no user signed in, a service account's client included."""
        return self.user.subject if self.user is not None else self.client.client_id


def issue_access_token(
    authorization: Authorization, expires_in: int | None = None
) -> dict[str, Any]:
    """Sign an RFC 9068 access token with the tenant's key and record it by ``jti``.

    :returns: the token response: ``access_token``, ``token_type``, ``expires_in``, ``scope``.
    :raises TokenTooLong: when the token would be too long; nothing is recorded then.
    """
    tenant = authorization.tenant
    expires_in = expires_in or tenant.access_token_lifetime
    urls = tenants.urls(tenant)
    subject = AccessTokenSubject(
        issuer=urls.issuer,
        audience=audience(authorization.scope, urls),
        tenant=tenant.slug,
        client_id=authorization.client.client_id,
        scope=authorization.scope,
        jti=secrets.token_urlsafe(16),
        issued_at=int(time.time()),
        expires_in=expires_in,
        subject=authorization.subject,
        roles=tuple(authorization.user.role_names) if authorization.user else (),
        context=authorization.context,
    )
    claims = access_token_claims(subject)
    token = sign_access_token(tenant, claims)
    _record(authorization, ACCESS, subject.jti, claims["exp"])
    return {
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": expires_in,
        "scope": authorization.scope,
    }


def sign_access_token(tenant: Tenant, claims: dict[str, Any]) -> str:
    """Sign access-token ``claims`` with the tenant's access-token key, if the token fits.

    :raises TokenTooLong: when it would be longer than :data:`MAX_TOKEN_LENGTH`
        (:mod:`authserver.tokens.limits` bounds what goes in; this is the last check).
    """
    token = keys.sign(tenant, claims, alg=tenant.access_token_alg, typ=ACCESS_TOKEN_TYPE)
    if not fits(token):
        raise TokenTooLong(len(token))
    return token


def issue_refresh_token(authorization: Authorization, expires_in: int | None = None) -> str:
    """An opaque refresh token of the authorization's family; only its digest is stored."""
    token = security.new_token(REFRESH_TOKEN_PREFIX)
    expires_in = expires_in or authorization.tenant.refresh_token_lifetime
    record = _record(
        authorization, REFRESH, secrets.token_urlsafe(16), int(time.time()) + expires_in
    )
    record.token_digest = security.digest(token)
    db.session.flush()
    return token


def _record(authorization: Authorization, kind: str, jti: str, expires_at: int) -> IssuedToken:
    record = IssuedToken(
        tenant_id=authorization.tenant.id,
        jti=jti,
        kind=kind,
        grant_id=authorization.grant_id,
        client_pk=authorization.client.id,
        client_id=authorization.client.client_id,
        user_id=_recorded_user_id(authorization),
        login_session_id=authorization.login_session_id,
        scope=authorization.scope,
        context=authorization.context,
        expires_at=datetime.fromtimestamp(expires_at, UTC),
    )
    db.session.add(record)
    db.session.flush()
    return record


def _recorded_user_id(authorization: Authorization) -> int | None:
    user = authorization.user or authorization.service_account
    return user.id if user is not None else None


def find_refresh_token(tenant: Tenant, token: str) -> IssuedToken | None:
    """The refresh-token row of ``tenant`` that ``token`` is; another tenant's is none."""
    query = IssuedToken.for_tenant(tenant).where(
        IssuedToken.kind == REFRESH, IssuedToken.token_digest == security.digest(token)
    )
    return db.session.scalar(query)


def find_by_jti(tenant: Tenant, jti: str) -> IssuedToken | None:
    return db.session.scalar(IssuedToken.for_tenant(tenant).where(IssuedToken.jti == jti))
