"""What a presented token is, now: the hot path behind introspection (RFC 7662) and revocation.

An access token is verified with the tenant's cached public key, then its state is read in one
indexed Core query on ``issued_tokens`` by ``(tenant_id, jti)``, joined by primary key to its
client, its user and the signing key's current status. Nothing else is read and no ORM object
is built, so a revocation, a disabled user, a deleted client or a retired key written by any
instance counts on the very next request everywhere.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jwt
from flask import current_app
from sqlalchemy import and_
from sqlalchemy import bindparam
from sqlalchemy import select

from authserver import security
from authserver.accounts.models import ACTIVE as USER_ACTIVE
from authserver.accounts.models import LoginSession
from authserver.accounts.models import Role
from authserver.accounts.models import User
from authserver.accounts.models import user_roles
from authserver.clients.models import ACTIVE as CLIENT_ACTIVE
from authserver.clients.models import INTROSPECTION_SCOPE
from authserver.clients.models import Client
from authserver.extensions import db
from authserver.keys.models import IN_JWKS
from authserver.keys.models import SigningKey
from authserver.keys.verification import verifying_key
from authserver.tenancy import service as tenants
from authserver.tenancy.models import Tenant
from authserver.tenancy.urls import INTROSPECTION_PATH
from authserver.tenancy.urls import TenantURLs
from authserver.tokens.claims import CONTEXT_CLAIMS
from authserver.tokens.claims import minted_by_server
from authserver.tokens.limits import MAX_TOKEN_LENGTH
from authserver.tokens.models import ACCESS
from authserver.tokens.models import REFRESH
from authserver.tokens.models import IssuedToken
from authserver.tokens.service import ACCESS_TOKEN_TYPE
from authserver.tokens.service import REFRESH_TOKEN_PREFIX

# Tokens whose signature verified, per app; a digest and claims each (about 2.5 KiB). When full,
# a new one takes the place of the one verified longest ago: emptied whole instead, the cache
# would drop the tokens in use with the rest, and hold half as many on average.
MAX_VERIFIED_TOKENS = 10_000
REQUIRED_CLAIMS = ["iss", "sub", "aud", "exp", "iat", "jti", "client_id"]
# RFC 7662 §2.2 members, then SMART's (§2.5), in the order the answer lists them.
ANSWERED_CLAIMS = ("scope", "client_id", "sub", "exp", "iat", "iss", "aud", "jti", "tenant")
ACCESS_TOKEN_TYPE_NAME = "Bearer"
REFRESH_TOKEN_TYPE_NAME = "refresh_token"

_tokens = IssuedToken.__table__.c
_clients = Client.__table__.c
_users = User.__table__.c
_keys = SigningKey.__table__.c
_logins = LoginSession.__table__.c
_FROM = IssuedToken.__table__.join(Client.__table__, _clients.id == _tokens.client_pk).outerjoin(
    User.__table__, _users.id == _tokens.user_id
)
_STATE_COLUMNS = (
    _tokens.jti,
    _tokens.kind,
    _tokens.grant_id,
    _tokens.client_pk,
    _tokens.client_id,
    _tokens.expires_at,
    _tokens.revoked_at,
    _tokens.used_at,
    _clients.status.label("client_status"),
    _users.status.label("user_status"),
    _users.username,
)
_ACCESS_STATE = (
    select(*_STATE_COLUMNS, _keys.status.label("key_status"))
    .select_from(
        _FROM.outerjoin(
            SigningKey.__table__,
            and_(_keys.tenant_id == _tokens.tenant_id, _keys.kid == bindparam("kid")),
        )
    )
    .where(
        _tokens.tenant_id == bindparam("tenant_id"),
        _tokens.jti == bindparam("jti"),
        _tokens.kind == ACCESS,
    )
)
_REFRESH_STATE = (
    select(
        *_STATE_COLUMNS,
        _tokens.user_id,
        _users.subject.label("user_subject"),
        _tokens.scope,
        _tokens.context,
        _tokens.issued_at,
        _logins.expires_at.label("login_expires_at"),
        _logins.ended_at.label("login_ended_at"),
    )
    .select_from(_FROM.outerjoin(LoginSession.__table__, _logins.id == _tokens.login_session_id))
    .where(
        _tokens.tenant_id == bindparam("tenant_id"),
        _tokens.token_digest == bindparam("digest"),
        _tokens.kind == REFRESH,
    )
)
_KEY_STATUS = select(_keys.status).where(
    _keys.tenant_id == bindparam("tenant_id"), _keys.kid == bindparam("kid")
)
_ROLE_NAMES = (
    select(Role.__table__.c.name)
    .join(user_roles, user_roles.c.role_id == Role.__table__.c.id)
    .where(user_roles.c.user_id == bindparam("user_id"))
    .order_by(Role.__table__.c.name)
)


@dataclass(frozen=True)
class TokenState:
    """One presented token as it stands now; shaped as Authlib's ``TokenMixin`` expects.

    ``revoked`` covers everything that ends a token before its expiry: revocation, refresh
    rotation, and its tenant, client, user or signing key no longer being in good standing.
    """

    kind: str
    jti: str
    grant_id: str
    client_pk: int
    client_id: str
    expires_at: int
    revoked: bool
    claims: dict[str, Any]

    def is_expired(self) -> bool:
        return self.expires_at <= time.time()

    def is_revoked(self) -> bool:
        return self.revoked

    @property
    def is_active(self) -> bool:
        return not (self.revoked or self.is_expired())

    def check_client(self, client: Any) -> bool:
        """RFC 7009 §2.1: only the client a token was issued to may revoke it."""
        return client.id == self.client_pk

    def introspection(self) -> dict[str, Any]:
        """RFC 7662 §2.2 and SMART §2.5 members of an active token."""
        return {"active": True, **self.claims}


# Form members that would be a second client authentication beside a bearer token.
SECOND_CREDENTIALS = frozenset({"client_secret", "client_assertion"})


def bearer_credential(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer`` header (RFC 6750 §2.1; the scheme in any case),
    ``""`` for a Bearer header without one, ``None`` for no header or another scheme."""
    scheme, _, credential = (authorization or "").strip().partition(" ")
    return credential.strip() if scheme.lower() == "bearer" else None


def find_token(tenant: Tenant, token: str) -> TokenState | None:
    """The token of ``tenant`` that ``token`` is, or ``None`` for anything not ours.

    Not ours: malformed, tampered, expired (access tokens), signed by a key this tenant does
    not publish, or unknown. The shape decides the lookup, so a wrong ``token_type_hint``
    cannot hide a token (RFC 7662 §2.1).
    """
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None  # longer than any token we issue (tokens/limits.py): no work on it
    if token.startswith(REFRESH_TOKEN_PREFIX + "_"):
        return _refresh_token(tenant, token)
    return _access_token(tenant, token)


def _access_token(tenant: Tenant, token: str) -> TokenState | None:
    verified = _verified_claims(tenant, token)
    if verified is None:
        return None
    claims, kid = verified
    params = {"tenant_id": tenant.id, "jti": claims["jti"], "kid": kid}
    row = db.session.execute(_ACCESS_STATE, params).first()
    if row is None:
        return _server_token(tenant, claims, kid)
    if row.client_id != claims["client_id"]:
        return None
    revoked = _ended(tenant, row) or row.key_status not in IN_JWKS
    return _state(row, claims["exp"], revoked, access_answer(claims, row.username))


def _server_token(tenant: Tenant, claims: dict[str, Any], kid: str) -> TokenState | None:
    """The token the server minted for itself (no record): live while its tenant is active and
    its key published; no client owns it, so none can revoke it (it lives a minute)."""
    if not minted_by_server(claims, tenants.urls(tenant).issuer):
        return None
    key_status = db.session.scalar(_KEY_STATUS, {"tenant_id": tenant.id, "kid": kid})
    revoked = not tenant.is_active or key_status not in IN_JWKS
    return TokenState(
        kind=ACCESS,
        jti=claims["jti"],
        grant_id="",
        client_pk=0,
        client_id=claims["client_id"],
        expires_at=int(claims["exp"]),
        revoked=revoked,
        claims=access_answer(claims, None),
    )


def _verified_claims(tenant: Tenant, token: str) -> tuple[dict[str, Any], str] | None:
    """RFC 9068 §4: a signature by a key this tenant publishes, then iss, aud and exp now."""
    signed = signed_claims(tenant.id, token)
    if signed is None:
        return None
    claims, kid = signed
    return (claims, kid) if claims_fit(claims, tenants.urls(tenant)) else None


def claims_fit(claims: dict[str, Any], urls: TenantURLs) -> bool:
    """Issued by this tenant, for its FHIR base or, an ``introspect`` token, for its
    introspection endpoint, and not yet expired.

    Which of the two a token may name was settled with its signature
    (:func:`_audience_fits_scope`), so the everyday token costs one comparison of ``aud`` here.
    """
    aud = claims["aud"]
    return (
        claims["iss"] == urls.issuer
        and (aud == urls.fhir_base_url or aud == urls.url(INTROSPECTION_PATH))
        and claims.get("tenant") == urls.slug
        and claims["exp"] > time.time()
    )


def introspect_token(claims: dict[str, Any], urls: TenantURLs) -> bool:
    """Whether ``claims`` (verified, and fitting :func:`claims_fit`) are a resource server's
    ``introspect`` token for this tenant's introspection endpoint: the one access token that
    opens introspection as ``Authorization: Bearer`` (SMART INT-06)."""
    return claims.get("scope") == INTROSPECTION_SCOPE and claims.get("aud") == urls.url(
        INTROSPECTION_PATH
    )


def access_answer(claims: dict[str, Any], username: str | None) -> dict[str, Any]:
    """The RFC 7662 / SMART members of an active access token, from its verified claims."""
    answer = {name: claims[name] for name in ANSWERED_CLAIMS if name in claims}
    answer["token_type"] = ACCESS_TOKEN_TYPE_NAME
    _add_identity(answer, username, claims.get("roles"), claims)
    return answer


def signed_claims(tenant_id: int, token: str) -> tuple[dict[str, Any], str] | None:
    """The claims of a token signed by the tenant's key ``kid``; verified once per app.

    A signature never changes its verdict, so a verified token is remembered by its digest: the
    gateway presents the same token on every FHIR call, and parsing it again costs more than
    everything else on the hot path. Expiry and the key's status are checked on every request.
    """
    verified, digest = _verified_tokens(), _token_digest(tenant_id, token)
    signed = verified.get(digest)
    if signed is None:
        signed = _verify_signature(tenant_id, token)
        if signed is None:
            return None
        if len(verified) >= MAX_VERIFIED_TOKENS:
            del verified[next(iter(verified))]  # dicts keep insertion order
        verified[digest] = signed
    return signed


def remembered_claims(tenant_id: int, token: str) -> tuple[dict[str, Any], str] | None:
    """What :func:`signed_claims` answers if this app has verified ``token`` already, else
    ``None``: no key is looked up and no signature checked."""
    return _verified_tokens().get(_token_digest(tenant_id, token))


def _verified_tokens() -> dict[tuple[int, bytes], tuple[dict[str, Any], str]]:
    return current_app.extensions.setdefault("authserver.verified_tokens", {})


def _token_digest(tenant_id: int, token: str) -> tuple[int, bytes]:
    return tenant_id, hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def _verify_signature(tenant_id: int, token: str) -> tuple[dict[str, Any], str] | None:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        return None
    kid = header.get("kid")
    if header.get("typ") != ACCESS_TOKEN_TYPE or not isinstance(kid, str):
        return None
    key = verifying_key(tenant_id, kid)
    if key is None:
        return None
    try:
        claims = jwt.decode(
            token,
            key.public_key,
            algorithms=[key.alg],
            options={"require": REQUIRED_CLAIMS, "verify_aud": False, "verify_exp": False},
        )
    except jwt.PyJWTError:
        return None
    if not all(isinstance(claims[name], str) for name in ("iss", "aud", "jti", "client_id")):
        return None
    if not isinstance(claims["exp"], int) or not _audience_fits_scope(claims):
        return None
    return claims, kid


def _audience_fits_scope(claims: dict[str, Any]) -> bool:
    """An ``introspect`` token is for its issuer's introspection endpoint, and no other token is
    (:func:`authserver.tokens.service.audience`): a token's own claims tell, once per token."""
    for_introspection = claims["aud"] == claims["iss"] + INTROSPECTION_PATH
    return for_introspection == (claims.get("scope") == INTROSPECTION_SCOPE)


def _refresh_token(tenant: Tenant, token: str) -> TokenState | None:
    params = {"tenant_id": tenant.id, "digest": security.digest(token)}
    row = db.session.execute(_REFRESH_STATE, params).first()
    if row is None:
        return None
    # A used refresh token was rotated away: only its successor is live (RFC 9700 §4.14.2).
    revoked = _ended(tenant, row) or row.used_at is not None or _session_gone(row)
    issuer = tenants.urls(tenant).issuer
    answer: dict[str, Any] = {
        "scope": row.scope,
        "client_id": row.client_id,
        "sub": row.user_subject if row.user_id is not None else row.client_id,
        "exp": _epoch(row.expires_at),
        "iat": _epoch(row.issued_at),
        "iss": issuer,
        "jti": row.jti,
        "tenant": tenant.slug,
        "token_type": REFRESH_TOKEN_TYPE_NAME,
    }
    roles = _role_names(row.user_id) if row.user_id is not None and not revoked else None
    _add_identity(answer, row.username, roles, row.context or {})
    return _state(row, answer["exp"], revoked, answer)


def _session_gone(row: Any) -> bool:
    """An ``online_access`` refresh token dies with its login session (SMART: "online" access
    lasts while the user is signed in), as the refresh grant refuses it then too."""
    words = row.scope.split()
    if "online_access" not in words or "offline_access" in words:
        return False
    return (
        row.login_expires_at is None
        or row.login_ended_at is not None
        or _epoch(row.login_expires_at) <= time.time()
    )


def _ended(tenant: Tenant, row: Any) -> bool:
    """Revoked, or its tenant, client or user no longer in good standing."""
    return (
        row.revoked_at is not None
        or not tenant.is_active
        or row.client_status != CLIENT_ACTIVE
        or (row.user_status is not None and row.user_status != USER_ACTIVE)
    )


def _add_identity(
    answer: dict[str, Any], username: str | None, roles: Any, context: dict[str, Any]
) -> None:
    if username is not None:
        answer["username"] = username
    if roles:
        answer["roles"] = list(roles)
    for name in CONTEXT_CLAIMS:
        if context.get(name) not in (None, "", [], {}):
            answer[name] = context[name]


def _state(row: Any, expires_at: int, revoked: bool, answer: dict[str, Any]) -> TokenState:
    return TokenState(
        kind=row.kind,
        jti=row.jti,
        grant_id=row.grant_id,
        client_pk=row.client_pk,
        client_id=row.client_id,
        expires_at=int(expires_at),
        revoked=revoked,
        claims=answer,
    )


def _role_names(user_id: int) -> list[str]:
    return list(db.session.scalars(_ROLE_NAMES, {"user_id": user_id}))


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())
