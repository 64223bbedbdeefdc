"""Validation of client metadata (RFC 7591 §2 rules, SMART registration expectations)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import jwt

from authserver import validation
from authserver.errors import ValidationError
from authserver.keys.crypto import thumbprint
from authserver.smart.scopes import InvalidScope
from authserver.smart.scopes import ResourceScope
from authserver.smart.scopes import Scope
from authserver.smart.scopes import parse_scope
from authserver.tokens.limits import scope_too_long

AUTH_METHODS = ("none", "client_secret_basic", "client_secret_post", "private_key_jwt")
SECRET_METHODS = ("client_secret_basic", "client_secret_post")
GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials")
PRIVATE_JWK_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "k"})
MAX_REDIRECT_URIS = 20
MAX_SCOPES = 200
MAX_SCOPE_LENGTH = 512  # one scope; all of them together: MAX_TOKEN_SCOPE_LENGTH
MAX_JWKS_KEYS = 20
# private_key_jwt assertions: SMART asks for RS384 and ES384; RS256 and ES256 are what most
# client libraries sign with (clients/assertions.py verifies with these).
SIGNING_ALGS = ("RS384", "ES384", "RS256", "ES256")
KEY_TYPE_OF_ALG = {"RS": "RSA", "ES": "EC"}
# The kinds of scope each grant issues (a resource scope's level, or a named scope's kind):
# SMART App Launch grants what a user may reach (smart/policy.py: role ceilings hold patient/
# and user/ scopes only), with identity, launch and refresh scopes (these last only with the
# refresh_token grant too, :func:`scopes`); SMART Backend Services grants system/ scopes only
# (smart/backend.py). Extension scopes go with either.
SCOPE_KINDS_ISSUED = {
    "authorization_code": ("patient", "user", "identity", "launch", "refresh", "extension"),
    "client_credentials": ("system", "extension"),
}


def redirect_uris(uris: list[str]) -> list[str]:
    """Exact, absolute https redirect URIs (http only for loopback), no fragment, their scheme
    and host in lower case (:func:`lowercase_redirect_uri`)."""
    if len(uris) > MAX_REDIRECT_URIS:
        raise ValidationError(f"at most {MAX_REDIRECT_URIS} redirect URIs")
    return list(
        dict.fromkeys(
            lowercase_redirect_uri(validation.web_url(uri, "redirect URI")) for uri in uris
        )
    )


def lowercase_redirect_uri(uri: str) -> str:
    """``uri``, when its scheme and host are in lower case.

    RFC 3986 §6.2.2.1 makes scheme and host case-insensitive, so ``HTTPS://App.example/cb`` is
    ``https://app.example/cb``; but redirect URIs are compared as strings (RFC 6749 §3.1.2.3,
    simple string comparison, RFC 3986 §6.2.1), so a registration stores one spelling and
    matches only it. Refused rather than stored lowered: the app sends what it was configured
    with, so a quiet change would fail at its first launch instead of here, where the message
    gives the spelling to configure on both sides.

    :raises ValidationError: naming the lower-case form to register instead.
    """
    parts = urlsplit(uri)
    userinfo, at, host = parts.netloc.rpartition("@")
    rest = uri[len(parts.scheme) + len("://") + len(parts.netloc) :]
    lowered = f"{parts.scheme}://{userinfo}{at}{host.lower()}{rest}"
    if lowered != uri:
        raise ValidationError(
            f"redirect URI {uri!r}: write its scheme and host in lower case, as {lowered!r}"
            " (they are case-insensitive, but redirect URIs are matched exactly)"
        )
    return uri


def auth_method(method: str) -> str:
    if method not in AUTH_METHODS:
        raise ValidationError(
            f"unknown token endpoint auth method {method!r}; use one of {', '.join(AUTH_METHODS)}"
        )
    return method


def scopes(scope_list: list[str], *, grants: list[str]) -> str:
    """A space-joined scope string of well-formed SMART and OpenID scopes, each of a kind one
    of ``grants`` issues (:data:`SCOPE_KINDS_ISSUED`).

    The registration is the client's ceiling, so a scope that does not parse is refused here:
    kept, it would restrict nothing. So is one none of its grants ever issues (``patient/`` for
    a backend client, ``system/`` for an app users sign in to), and ``offline_access`` or
    ``online_access`` without the ``refresh_token`` grant (no refresh token is ever issued
    then): kept, it would bound nothing. So are more than fit in an access token together
    (:data:`MAX_TOKEN_SCOPE_LENGTH` characters): the token granting them all would be refused.

    :raises ValidationError: naming the first scope refused and why.
    """
    if len(scope_list) > MAX_SCOPES:
        raise ValidationError(f"at most {MAX_SCOPES} scopes")
    issued = {kind for grant in grants for kind in SCOPE_KINDS_ISSUED.get(grant, ())}
    for scope in scope_list:
        if not scope or len(scope) > MAX_SCOPE_LENGTH or not scope.isprintable() or " " in scope:
            raise ValidationError(f"invalid scope {scope!r}")
        try:
            parsed = parse_scope(scope)
        except InvalidScope as error:
            raise ValidationError(str(error)) from None
        kind = _scope_kind(parsed)
        if kind not in issued:
            raise ValidationError(_not_issued(scope, parsed))
        if kind == "refresh" and "refresh_token" not in grants:
            raise ValidationError(
                f"scope {scope!r} needs the refresh_token grant: without it the client is "
                "never issued a refresh token"
            )
    allowed = " ".join(dict.fromkeys(scope_list))
    too_long = scope_too_long(allowed, "the scopes")
    if too_long:
        raise ValidationError(f"{too_long}: register fewer or broader scopes")
    return allowed


def _scope_kind(scope: Scope) -> str:
    return scope.level if isinstance(scope, ResourceScope) else scope.kind


def _not_issued(text: str, scope: Scope) -> str:
    if _scope_kind(scope) == "system":
        return (
            f"scope {text!r} is for backend clients (the client_credentials grant); "
            "an app users sign in to is granted patient/ and user/ scopes"
        )
    return (
        f"scope {text!r} needs a user signing in (the authorization_code grant); "
        "a backend client is granted system/ scopes, e.g. system/Observation.rs"
    )


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


def assertion_jwks(document: Any) -> dict[str, Any]:
    """:func:`jwks`, for a client registering it to sign its assertions: at least one key can
    verify one (:func:`can_verify`), and no two such keys of one type share a name, which an
    assertion's ``kid`` would match both of (SMART asymmetric auth, step 3).

    :raises ValidationError: otherwise; the client could never authenticate.
    """
    keys = jwks(document)["keys"]
    signing = [key for key in keys if any(can_verify(key, alg) for alg in SIGNING_ALGS)]
    if not signing:
        raise ValidationError(
            "jwks has no key that can verify a client assertion: "
            f"a public RSA or EC key for {', '.join(SIGNING_ALGS)}, with a text kid"
        )
    named: set[tuple[str, str]] = set()
    for key in signing:
        name = (key.get("kid") or thumbprint(key), key["kty"])
        if name in named:
            raise ValidationError(f"jwks holds two {name[1]} keys named {name[0]!r}")
        named.add(name)
    return {"keys": keys}


def can_verify(key: dict[str, Any], alg: Any) -> bool:
    """Whether the JWK may verify a client assertion signed with ``alg``: its type fits the
    algorithm (Inferno's JWKS holds an RSA and an EC key), and an ``alg``, ``use``,
    ``key_ops`` or ``kid`` it states allows this use."""
    if alg not in SIGNING_ALGS or key.get("kty") != KEY_TYPE_OF_ALG[alg[:2]]:
        return False
    if key.get("alg", alg) != alg or key.get("use", "sig") != "sig":
        return False
    if not isinstance(key.get("kid", "-"), str) or not key.get("kid", "-"):
        return False
    return "verify" in key.get("key_ops", ["verify"])


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
        # The key material, whatever its alg: a set may hold keys for other uses (encryption).
        jwt.PyJWK({name: value for name, value in key.items() if name != "alg"})
    except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError, KeyError):
        raise ValidationError(
            f"jwks key {key.get('kid', '')!r} is not a usable public key"
        ) from None
