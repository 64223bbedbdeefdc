"""The discovery documents, built from what the server has registered and never hand-written.

SMART App Launch 2.2 ``conformance.html#metadata`` and OpenID Connect Discovery 1.0 §3: a member
appears only when the feature behind it is wired, so the documents grow as grants are registered.
"""

from __future__ import annotations

from typing import Any

from authserver.oauth.server import TenantAuthorizationServer

SSO_CAPABILITY = "sso-openid-connect"
ID_TOKEN_SIGNING_ALGS = ["RS256"]  # SMART requires RS256 id_tokens (Inferno fails others).
# SMART 2.2 §metadata names only these (DISC-11); a public client's "none" (RFC 8414) is left to
# the OpenID document, where OIDC Core §9 defines it.
SMART_CLIENT_AUTH_METHODS = ("client_secret_post", "client_secret_basic", "private_key_jwt")


def endpoint_members(server: TenantAuthorizationServer, url_of: Any) -> dict[str, str]:
    """Each published endpoint as an absolute URL, e.g. ``{"jwks_uri": "https://…/jwks.json"}``."""
    return {member: url_of(endpoint) for member, endpoint in server.published_endpoints.items()}


def smart_configuration(
    server: TenantAuthorizationServer, issuer: str, endpoints: dict[str, str]
) -> dict[str, Any]:
    """``.well-known/smart-configuration`` (SMART 2.2 §metadata)."""
    document: dict[str, Any] = {}
    # 2.2: issuer is present exactly when sso-openid-connect is offered.
    if SSO_CAPABILITY in server.capabilities:
        document["issuer"] = issuer
    document.update(endpoints)
    document.update(_shared_members(server))
    if "token_endpoint_auth_methods_supported" in document:
        document["token_endpoint_auth_methods_supported"] = [
            method
            for method in document["token_endpoint_auth_methods_supported"]
            if method in SMART_CLIENT_AUTH_METHODS
        ]
    document["capabilities"] = list(server.capabilities)
    document["code_challenge_methods_supported"] = server.code_challenge_methods_supported
    return document


def openid_configuration(
    server: TenantAuthorizationServer, issuer: str, endpoints: dict[str, str]
) -> dict[str, Any]:
    """``.well-known/openid-configuration`` (OIDC Discovery §3)."""
    document: dict[str, Any] = {"issuer": issuer, **endpoints}
    document.update(_shared_members(server))
    document["subject_types_supported"] = ["public"]
    document["id_token_signing_alg_values_supported"] = ID_TOKEN_SIGNING_ALGS
    if server.claims_supported:
        document["claims_supported"] = server.claims_supported
    if server.code_challenge_methods_supported:
        document["code_challenge_methods_supported"] = server.code_challenge_methods_supported
    return document


def _shared_members(server: TenantAuthorizationServer) -> dict[str, Any]:
    document: dict[str, Any] = {
        "grant_types_supported": server.grant_types_supported,
        "response_types_supported": server.response_types_supported,
        "scopes_supported": server.advertised_scopes,
    }
    if server.token_endpoint_auth_methods_supported:
        document["token_endpoint_auth_methods_supported"] = (
            server.token_endpoint_auth_methods_supported
        )
    if server.token_endpoint_auth_signing_alg_values_supported:
        document["token_endpoint_auth_signing_alg_values_supported"] = (
            server.token_endpoint_auth_signing_alg_values_supported
        )
    return document
