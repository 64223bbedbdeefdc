"""``private_key_jwt``: a client proves itself with a JWT signed by its own key (RFC 7523 §2.2, §3).

SMART App Launch 2.2 ``client-confidential-asymmetric`` and Backend Services: the assertion has
``iss`` = ``sub`` = the client id, ``aud`` = this tenant's token endpoint URL, ``exp`` at most
five minutes ahead, a ``jti`` never used before within its life, ``alg`` RS384 or ES384 (RS256
and ES256 too), and a ``kid`` that picks exactly one key of the client's registered ``jwks`` or
``jwks_uri``. ``none`` and the HMAC algorithms are never accepted.

One implementation serves every endpoint that authenticates clients. It is registered once on
the server (``server.register_client_auth_method(PRIVATE_KEY_JWT, PrivateKeyJWTAuthentication())``)
and an endpoint accepts it by naming it: a grant in ``TOKEN_ENDPOINT_AUTH_METHODS``, an endpoint
such as introspection or revocation in ``CLIENT_AUTH_METHODS``, e.g.
``CLIENT_AUTH_METHODS = ["client_secret_basic", "private_key_jwt"]``. Besides the token
endpoint's URL, ``aud`` may name the URL of the endpoint being called (e.g. introspection).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Iterable
from datetime import UTC
from datetime import datetime
from typing import Any

from authlib.oauth2.rfc6749 import InvalidClientError
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from flask import request as flask_request
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import JWKRegistry
from joserfc.jwk import Key

from authserver.clients import service as clients
from authserver.clients.jwks_fetch import JWKSFetchError
from authserver.clients.jwks_fetch import jwks_cache
from authserver.clients.metadata import SIGNING_ALGS
from authserver.clients.metadata import can_verify
from authserver.clients.models import Client
from authserver.inputs import MAX_JSON_DEPTH
from authserver.inputs import describable
from authserver.keys.crypto import thumbprint
from authserver.tenancy import service as tenants
from authserver.tenancy.resolution import current_tenant
from authserver.tenancy.resolution import public_url_for
from authserver.tenancy.urls import TOKEN_PATH
from authserver.validation import json_depth
from authserver.validation import storable

log = logging.getLogger(__name__)

PRIVATE_KEY_JWT = "private_key_jwt"
MAX_LIFETIME = 300  # SMART Backend Services: exp "no more than five minutes in the future"
CLOCK_SKEW = 60  # Inferno sends exactly now+300; a client clock a little ahead still passes.
MAX_JTI_LENGTH = 255


class PrivateKeyJWTAuthentication(JWTBearerClientAssertion):
    """Authlib's RFC 7523 client assertion, bound to this tenant, its keys and its jti records."""

    CLIENT_AUTH_METHOD = PRIVATE_KEY_JWT
    #: Read by the server registry: token_endpoint_auth_signing_alg_values_supported.
    SIGNING_ALGS = SIGNING_ALGS
    #: Read by the server registry: SMART capabilities this method provides.
    CAPABILITIES = ("client-confidential-asymmetric",)

    def __init__(self) -> None:
        super().__init__(validate_jti=True, leeway=CLOCK_SKEW)

    def __call__(self, query_client: Any, request: Any) -> Client | None:
        client = super().__call__(query_client, request)
        # SMART tells asymmetric clients to send no client_id; one that does must be the issuer.
        claimed = request.payload.data.get("client_id")
        if client is not None and claimed and claimed != client.client_id:
            raise InvalidClientError(description="client_id does not match the assertion.")
        return client

    def extract_assertion(self, assertion: str) -> tuple[Any, dict[str, Any]]:
        """Authlib's reading of the unverified assertion, which also finds malformed a payload
        nesting more than :data:`MAX_JSON_DEPTH` levels (Authlib catches only a ValueError,
        and Python's parser raises a RecursionError at about a thousand: a 500)."""
        malformed = InvalidClientError(description="Invalid JWT payload.")  # as Authlib says it
        try:
            headers, claims = super().extract_assertion(assertion)
        except RecursionError:
            raise malformed from None
        if json_depth(claims) > MAX_JSON_DEPTH:
            raise malformed
        return headers, claims

    def get_audiences(self) -> list[str]:
        token_url = tenants.urls(current_tenant()).url(TOKEN_PATH)
        called = public_url_for(flask_request.endpoint) if flask_request.endpoint else token_url
        return list(dict.fromkeys([token_url, called]))

    def resolve_client_public_key(self, client: Client) -> Any:
        if client.token_endpoint_auth_method != PRIVATE_KEY_JWT:
            raise InvalidClientError(
                description="The client is not registered for private_key_jwt."
            )
        # joserfc calls this with the parsed JWS, so the key is chosen by its header.
        return functools.partial(_verification_key, client)

    def process_assertion_claims(self, assertion: str, resolve_key: Any) -> dict[str, Any]:
        try:
            token = jwt.decode(assertion, resolve_key, algorithms=list(SIGNING_ALGS))
        except JoseError as error:
            # joserfc's reason may quote the assertion's header (its alg, a crit name).
            reason = describable(error.description or "The assertion's signature does not verify.")
            log.info("refused a client assertion: %s", reason)
            raise InvalidClientError(description=reason) from error
        self.verify_claims(token.claims)
        return token.claims

    def verify_claims(self, claims: Any) -> None:
        exp = claims.get("exp")
        if isinstance(exp, int | float) and exp > time.time() + MAX_LIFETIME + CLOCK_SKEW:
            raise InvalidClientError(description="The assertion expires more than 5 minutes ahead.")
        super().verify_claims(claims)

    def validate_jti(self, claims: Any, jti: Any) -> bool:
        check_jti(jti)
        expires_at = assertion_expiry(claims)
        return clients.use_assertion(current_tenant(), claims["sub"], jti, expires_at)


class AssertionClaims(PrivateKeyJWTAuthentication):
    """The claim checks of :class:`PrivateKeyJWTAuthentication` for known audiences, without
    recording the ``jti``: for a caller that records it in a statement of its own (the token
    fast path). Everything else (iss = sub, aud, exp within 5 minutes, nbf, jti shape) is the
    same code.
    """

    def __init__(self, audiences: list[str]) -> None:
        super().__init__()
        self.audiences = audiences

    def get_audiences(self) -> list[str]:
        return self.audiences

    def validate_jti(self, claims: Any, jti: Any) -> bool:
        check_jti(jti)
        return True


def check_jti(jti: Any) -> None:
    if not isinstance(jti, str) or not 0 < len(jti) <= MAX_JTI_LENGTH or not storable(jti):
        raise InvalidClientError(description="Invalid JWT ID.")


def assertion_expiry(claims: Any) -> datetime:
    """Until when a used ``jti`` is kept: while the assertion could still pass, leeway included."""
    return datetime.fromtimestamp(int(claims["exp"]) + CLOCK_SKEW, UTC)


def _verification_key(client: Client, token: Any) -> Key:
    header = token.headers()
    kid, alg = header.get("kid"), header.get("alg")
    if not isinstance(kid, str) or not kid:
        raise InvalidClientError(description="The assertion header has no kid.")
    if "jku" in header and header["jku"] != client.jwks_uri:
        raise InvalidClientError(description="The assertion's jku is not the registered jwks_uri.")
    jwk = select_key(_client_keys(client), kid, alg)
    if jwk is None and client.jwks_uri:
        # An unknown kid may be a key the client has just rotated in: look at its URL again.
        jwk = select_key(_client_keys(client, refresh=True), kid, alg)
    if jwk is None:
        raise InvalidClientError(description="No registered key of the client matches the kid.")
    return JWKRegistry.import_key(jwk)


def _client_keys(client: Client, *, refresh: bool = False) -> list[dict[str, Any]]:
    if not client.jwks_uri:
        return list((client.jwks or {}).get("keys", []))
    try:
        return list(jwks_cache().get(client.jwks_uri, refresh=refresh)["keys"])
    except JWKSFetchError as error:
        raise InvalidClientError(description=str(error)) from None


def select_key(keys: Iterable[dict[str, Any]], kid: str, alg: Any) -> dict[str, Any] | None:
    """The one key named ``kid`` that can verify ``alg`` (SMART asymmetric auth, step 3).

    A key without a ``kid`` is named by its RFC 7638 thumbprint. The key type must fit the
    algorithm (Inferno's JWKS holds an RSA and an EC key); a key that states its ``alg``,
    ``use`` or ``key_ops`` must allow this use.

    :raises InvalidClientError: when more than one key fits.
    """
    candidates = [key for key in keys if _names(key, kid) and can_verify(key, alg)]
    if len(candidates) > 1:
        raise InvalidClientError(description="More than one registered key matches the kid.")
    return candidates[0] if candidates else None


def _names(key: dict[str, Any], kid: str) -> bool:
    if "kid" in key:
        return key["kid"] == kid
    try:
        return thumbprint(key) == kid
    except KeyError:
        return False
