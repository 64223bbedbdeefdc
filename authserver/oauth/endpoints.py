"""Introspection (RFC 7662) and revocation (RFC 7009) on Authlib's endpoints.

Both are configured with class constants and filled in through Authlib's storage hooks; what a
token *is* lives in :mod:`authserver.tokens.introspection`, and revoking it in
:mod:`authserver.tokens.revocation`.
"""

from __future__ import annotations

from typing import Any

from authlib.oauth2.rfc6749 import InvalidClientError
from authlib.oauth2.rfc6749 import InvalidRequestError
from authlib.oauth2.rfc6750 import InvalidTokenError
from authlib.oauth2.rfc7009 import RevocationEndpoint as _RevocationEndpoint
from authlib.oauth2.rfc7662 import IntrospectionEndpoint as _IntrospectionEndpoint

from authserver.clients import service as clients
from authserver.clients.models import INTROSPECTION_SCOPE
from authserver.clients.models import RESOURCE_SERVER
from authserver.clients.models import Client
from authserver.extensions import db
from authserver.tenancy import service as tenants
from authserver.tenancy.resolution import current_tenant
from authserver.tokens import revocation
from authserver.tokens.introspection import SECOND_CREDENTIALS
from authserver.tokens.introspection import TokenState
from authserver.tokens.introspection import bearer_credential
from authserver.tokens.introspection import find_token
from authserver.tokens.introspection import introspect_token
from authserver.tokens.models import ACCESS


class _TenantTokenEndpoint:
    """Client authentication with whichever of ``CLIENT_AUTH_METHODS`` the server has wired.

    ``private_key_jwt`` is listed before it is registered, so it works as soon as it is.
    """

    CLIENT_AUTH_METHODS: list[str]
    ENDPOINT_NAME: str
    server: Any

    def authenticate_endpoint_client(self, request: Any) -> Client:
        wired = self.server.client_auth_methods
        methods = [method for method in self.CLIENT_AUTH_METHODS if method in wired]
        client = self.server.authenticate_client(request, methods, self.ENDPOINT_NAME)
        self.check_caller(client)
        request.client = client
        return client

    def check_caller(self, client: Client) -> None:
        """Refuse an authenticated client that may not call this endpoint."""

    def check_params(self, request: Any, client: Client) -> None:
        # RFC 7009 §2.1 and RFC 7662 §2.1: an unknown token_type_hint is ignored (the token's
        # shape decides where to look); only a missing token is an error.
        if "token" not in request.form:
            raise InvalidRequestError("The 'token' parameter is required.")


class InsufficientScopeError(InvalidTokenError):
    """RFC 6750 §3.1 ``insufficient_scope``, with the 401 RFC 7662 §2.3 gives it here."""

    error = "insufficient_scope"


class IntrospectionEndpoint(_TenantTokenEndpoint, _IntrospectionEndpoint):
    """RFC 7662 for the tenant's resource servers (the FHIR gateway), as §4 of our decisions says.

    Any resource server of the tenant may introspect any token of the tenant; everything that is
    not an active token of this tenant answers ``{"active": false}`` and nothing else. A resource
    server authenticates with its credential, or with ``Authorization: Bearer`` and the
    ``introspect`` token it got from the token endpoint (SMART token introspection, INT-06).
    """

    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt"]

    def authenticate_endpoint_client(self, request: Any) -> Client:
        bearer = bearer_credential(request.headers.get("Authorization"))
        if bearer is not None:
            client = self.authenticate_bearer(request, bearer)
            request.client = client
            return client
        try:
            return super().authenticate_endpoint_client(request)
        except InvalidClientError as error:
            # RFC 7662 §2.3: credentials that do not check out are a 401, whatever their kind
            # (a form secret or an assertion as well as a Basic header).
            error.status_code = 401
            raise

    def check_caller(self, client: Client) -> None:
        if client.kind != RESOURCE_SERVER:
            # 401 like a bad credential: an app's credentials do not open introspection.
            raise InvalidClientError(
                status_code=401, description="Only a resource server may introspect tokens."
            )

    def authenticate_bearer(self, request: Any, bearer: str) -> Client:
        """The resource server whose active ``introspect`` token of this tenant ``bearer`` is.

        RFC 7662 §2.3: a token that is not one answers 401 as RFC 6750 §3 describes,
        ``invalid_token`` or, for an active token with no right to introspect (an app's),
        ``insufficient_scope``. An ``introspect`` token names this endpoint as its ``aud``; one
        naming another (the FHIR base) is no token of this tenant: ``invalid_token``.
        """
        if any(request.form.get(name) for name in SECOND_CREDENTIALS):
            raise InvalidRequestError("Use one client authentication method, not several.")
        tenant = current_tenant()
        state = find_token(tenant, bearer)
        if state is None or state.kind != ACCESS or not state.is_active:
            raise InvalidTokenError(
                description="The bearer token is not an active access token of this tenant.",
                realm=tenant.slug,
            )
        client = clients.find_client(tenant, state.client_id)
        if (
            client is None
            or client.id != state.client_pk
            or client.kind != RESOURCE_SERVER
            or not introspect_token(state.claims, tenants.urls(tenant))
        ):
            raise InsufficientScopeError(
                description=f"Only a resource server's '{INTROSPECTION_SCOPE}' token may "
                "introspect.",
                realm=tenant.slug,
                extra_attributes={"scope": INTROSPECTION_SCOPE},
            )
        return client

    def query_token(self, token_string: str, token_type_hint: str | None) -> TokenState | None:
        state = find_token(current_tenant(), token_string)
        return state if state is not None and state.is_active else None

    def check_permission(self, token: TokenState, client: Client, request: Any) -> bool:
        return True

    def introspect_token(self, token: TokenState) -> dict[str, Any]:
        return token.introspection()


class RevocationEndpoint(_TenantTokenEndpoint, _RevocationEndpoint):
    """RFC 7009 for apps, with their own authentication; public apps name their ``client_id``.

    A client may revoke only its own tokens (Authlib answers ``invalid_grant`` otherwise); an
    unknown, expired or foreign token answers ``200`` and changes nothing (§2.2).
    """

    CLIENT_AUTH_METHODS = [
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt",
        "none",
    ]

    def query_token(self, token_string: str, token_type_hint: str | None) -> TokenState | None:
        return find_token(current_tenant(), token_string)

    def revoke_token(self, token: TokenState, request: Any) -> None:
        revocation.revoke_token(
            current_tenant(),
            kind=token.kind,
            jti=token.jti,
            grant_id=token.grant_id,
            actor=token.client_id,
        )
        db.session.commit()
