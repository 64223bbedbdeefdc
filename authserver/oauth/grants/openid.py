"""OpenID Connect for the code grant: Authlib's extension, signing ID tokens with the tenant key.

SMART 2.2 "Scopes for requesting identity data" and OIDC Core §2: RS256 always (Inferno fails any
other alg), ``iss`` the tenant issuer, ``aud`` the client, ``fhirUser`` an absolute URL under the
tenant's FHIR base, ``nonce`` echoed, ``auth_time`` of the login (always, so also when ``max_age``
was asked for, OIDC Core §3.1.2.1).
"""

from __future__ import annotations

import time
from typing import Any

from authlib.oidc.core import UserInfo
from authlib.oidc.core.grants import OpenIDCode
from authlib.oidc.core.util import create_half_hash

from authserver.keys import service as keys
from authserver.oauth import reauthentication
from authserver.oauth import service
from authserver.smart.context import fhir_user_url
from authserver.smart.scopes import parse_scopes
from authserver.tenancy import service as tenants
from authserver.tenancy.resolution import current_tenant

ID_TOKEN_ALG = "RS256"
# The identity scopes that each put a claim of their own name in the ID token, the user's FHIR
# resource URL: ``fhirUser`` (SMART 2.2) and ``profile``, its SMART v1 name (OIDC-06).
FHIR_USER_SCOPES = ("fhirUser", "profile")


def id_token_claims(
    *,
    issuer: str,
    client_id: str,
    subject: str,
    scope: str,
    issued_at: int,
    lifetime: int,
    auth_time: int,
    nonce: str | None = None,
    fhir_user: str | None = None,
    access_token: str | None = None,
) -> dict[str, Any]:
    """The ID token body (OIDC Core §2, §3.1.3.6). Pure.

    ``fhirUser`` appears when the ``fhirUser`` scope was granted, ``profile`` (its SMART v1 alias)
    when ``profile`` was.
    """
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": subject,
        "aud": client_id,
        "iat": issued_at,
        "exp": issued_at + lifetime,
        "auth_time": auth_time,
    }
    if nonce:
        claims["nonce"] = nonce
    granted = parse_scopes(scope)
    for name in FHIR_USER_SCOPES:
        if fhir_user and granted.has(name):
            claims[name] = fhir_user
    if access_token:
        claims["at_hash"] = create_half_hash(access_token, ID_TOKEN_ALG).decode("ascii")
    return claims


def id_token_claim_names() -> tuple[str, ...]:
    """Every claim an ID token can carry (OIDC Discovery §3 ``claims_supported``): those of
    :func:`id_token_claims` given every input and every identity scope. Pure."""
    fullest = id_token_claims(
        issuer="iss",
        client_id="aud",
        subject="sub",
        scope=" ".join(("openid", *FHIR_USER_SCOPES)),
        issued_at=0,
        lifetime=0,
        auth_time=0,
        nonce="nonce",
        fhir_user="Patient/p",
        access_token="token",  # noqa: S106 - a stand-in: only the claim names are read
    )
    return tuple(fullest)


class SmartOpenIDCode(OpenIDCode):
    """Authlib's ``OpenIDCode`` with our storage and the tenant's signing key."""

    CAPABILITIES = ("sso-openid-connect",)
    # Discovery's scopes_supported and claims_supported: the identity scopes this extension
    # answers, and the claims of the ID tokens it signs.
    SCOPES_SUPPORTED = ("openid", *FHIR_USER_SCOPES)
    CLAIMS_SUPPORTED = id_token_claim_names()

    def __init__(self) -> None:
        super().__init__(require_nonce=False)

    def validate_openid_authorization_request(self, grant: Any, redirect_uri: str) -> None:
        """Authlib's nonce check, then ``max_age`` for the authorization endpoint to honour."""
        super().validate_openid_authorization_request(grant, redirect_uri)
        grant.request.max_age = reauthentication.max_age(grant.request.payload)

    def exists_nonce(self, nonce: str, request: Any) -> bool:
        return service.nonce_seen(current_tenant(), request.client, nonce)

    def generate_user_info(self, user: Any, scope: str) -> UserInfo:
        return UserInfo(sub=user.subject)

    def encode_id_token(self, token: dict[str, Any], request: Any) -> str:
        tenant = current_tenant()
        urls = tenants.urls(tenant)
        code = request.authorization_code
        claims = id_token_claims(
            issuer=urls.issuer,
            client_id=request.client.client_id,
            subject=request.user.subject,
            scope=token["scope"],
            issued_at=int(time.time()),
            lifetime=tenant.id_token_lifetime,
            auth_time=code.get_auth_time(),
            nonce=code.get_nonce(),
            # From the user, not the code: the code's context has it only with fhirUser granted,
            # and the SMART v1 ``profile`` claim needs it too.
            fhir_user=fhir_user_url(urls.fhir_base_url, request.user.fhir_user),
            access_token=token.get("access_token"),
        )
        return keys.sign(tenant, claims, alg=ID_TOKEN_ALG)
