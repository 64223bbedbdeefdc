"""Validation of client metadata (RFC 7591 §2 rules, SMART registration expectations)."""

from __future__ import annotations

from typing import Any

import jwt

from authserver import validation
from authserver.errors import ValidationError
from authserver.smart.scopes import InvalidScope
from authserver.smart.scopes import parse_scope

AUTH_METHODS = ("none", "client_secret_basic", "client_secret_post", "private_key_jwt")
SECRET_METHODS = ("client_secret_basic", "client_secret_post")
GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials")
PRIVATE_JWK_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "k"})
MAX_REDIRECT_URIS = 20
MAX_SCOPES = 200
MAX_SCOPE_LENGTH = 512
MAX_JWKS_KEYS = 20


def redirect_uris(uris: list[str]) -> list[str]:
    """Exact, absolute https redirect URIs (http only for loopback), no fragment."""
    if len(uris) > MAX_REDIRECT_URIS:
        raise ValidationError(f"at most {MAX_REDIRECT_URIS} redirect URIs")
    return list(dict.fromkeys(validation.web_url(uri, "redirect URI") for uri in uris))


def auth_method(method: str) -> str:
    if method not in AUTH_METHODS:
        raise ValidationError(
            f"unknown token endpoint auth method {method!r}; use one of {', '.join(AUTH_METHODS)}"
        )
    return method


def scopes(scope_list: list[str]) -> str:
    """A space-joined scope string of well-formed SMART and OpenID scopes.

    The registration is the client's ceiling, so a scope that does not parse is refused here:
    kept, it would restrict nothing.
    """
    if len(scope_list) > MAX_SCOPES:
        raise ValidationError(f"at most {MAX_SCOPES} scopes")
    for scope in scope_list:
        if not scope or len(scope) > MAX_SCOPE_LENGTH or not scope.isprintable() or " " in scope:
            raise ValidationError(f"invalid scope {scope!r}")
        try:
            parse_scope(scope)
        except InvalidScope as error:
            raise ValidationError(str(error)) from None
    return " ".join(dict.fromkeys(scope_list))


def grant_types(grants: list[str], *, method: str, has_redirect_uris: bool) -> list[str]:
    """An app's grant types, checked against the auth method and the redirect URIs they need.

    :raises ValidationError: for a grant the token endpoint would never serve this app, or
        for none at all (the app could never get a token).
    """
    unknown = sorted(set(grants) - set(GRANT_TYPES))
    if unknown:
        raise ValidationError(
            f"unknown grant type {', '.join(unknown)}; use one of {', '.join(GRANT_TYPES)}"
        )
    if not grants:
        raise ValidationError(
            "an app needs a redirect URI (for authorization_code), "
            "or private_key_jwt keys (jwks or jwks_uri) for client_credentials"
        )
    if "authorization_code" in grants and not has_redirect_uris:
        raise ValidationError("the authorization_code grant needs at least one redirect URI")
    if "client_credentials" in grants and method != "private_key_jwt":
        # SMART Backend Services: the token endpoint takes a signed assertion, never a secret.
        raise ValidationError(
            "client_credentials needs a private_key_jwt client (SMART Backend Services): "
            "register its public keys (jwks or jwks_uri) instead"
        )
    if "refresh_token" in grants and "authorization_code" not in grants:
        raise ValidationError("refresh_token is only issued with authorization_code")
    return list(dict.fromkeys(grants))


def default_grant_types(method: str, has_redirect_uris: bool) -> list[str]:
    if has_redirect_uris:
        return ["authorization_code", "refresh_token"]
    return ["client_credentials"] if method == "private_key_jwt" else []


def jwks(document: Any) -> dict[str, Any]:
    """A public JWK Set: every key importable, none carrying private members, ``kid`` when several.

    :raises ValidationError: otherwise.
    """
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValidationError('jwks must be a JSON object with a "keys" array')
    keys = document["keys"]
    if not 1 <= len(keys) <= MAX_JWKS_KEYS:
        raise ValidationError(f"jwks must hold 1 to {MAX_JWKS_KEYS} keys")
    for key in keys:
        _public_jwk(key, several=len(keys) > 1)
    return {"keys": keys}


def _public_jwk(key: Any, *, several: bool) -> None:
    if not isinstance(key, dict):
        raise ValidationError("every jwks key must be a JSON object")
    if PRIVATE_JWK_MEMBERS & set(key):
        raise ValidationError(
            "jwks must hold public keys only; a private or symmetric key was given"
        )
    if several and not key.get("kid"):
        raise ValidationError("every key needs a kid when jwks holds several")
    try:
        jwt.PyJWK(key)
    except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError, KeyError):
        raise ValidationError(
            f"jwks key {key.get('kid', '')!r} is not a usable public key"
        ) from None
