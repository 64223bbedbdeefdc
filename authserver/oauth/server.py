"""The tenant-aware Authlib authorization server and the registry discovery is built from.

Grants, client-auth methods, endpoints and capabilities are registered here once per app; the
discovery documents read them back, so they can only list what is wired.
"""

from __future__ import annotations

import copy

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc7636 import CodeChallenge
from flask import Flask
from flask import current_app

from authserver.clients import service as clients
from authserver.clients.models import Client
from authserver.tenancy.resolution import current_tenant


class TenantAuthorizationServer(AuthorizationServer):
    """Authlib's server; every client lookup is limited to the tenant named in the URL."""

    def __init__(self, app: Flask | None = None) -> None:
        super().__init__()
        self.capabilities: list[str] = []
        self.published_endpoints: dict[str, str] = {}
        # Authlib's built-in client-auth methods; register_client_auth_method adds to them.
        self.client_auth_methods: set[str] = {"none", "client_secret_basic", "client_secret_post"}
        if app is not None:
            self.init_app(app)

    def register_grant(self, grant_cls: type, extensions: list | None = None) -> None:
        """Register ``grant_cls``; any PKCE extension on it is narrowed to S256.

        SMART 2.2 (app-launch §PKCE): servers SHALL NOT support ``plain``. Authlib's
        ``CodeChallenge`` accepts it, and discovery reads the methods from here, so narrowing
        the extension both refuses ``plain`` and keeps it out of the documents.
        """
        if extensions:
            extensions = [_s256_only(extension) for extension in extensions]
        super().register_grant(grant_cls, extensions)

    def query_client(self, client_id: str) -> Client | None:
        return clients.find_client(current_tenant(), client_id)

    def save_token(self, token: dict, request: object) -> None:
        from authserver.oauth.tokens import save_token

        save_token(token, request)

    def register_client_auth_method(self, method: str, func: object) -> None:
        super().register_client_auth_method(method, func)
        self.client_auth_methods.add(method)

    def publish(self, member: str, endpoint: str) -> None:
        """Advertise the view ``endpoint`` as discovery member ``member`` (e.g. ``jwks_uri``)."""
        self.published_endpoints[member] = endpoint

    def add_capabilities(self, *capabilities: str) -> None:
        """SMART capabilities a registered feature honours (SMART 2.2 conformance §capabilities)."""
        self.capabilities.extend(c for c in capabilities if c not in self.capabilities)

    @property
    def grant_types_supported(self) -> list[str]:
        grants = self._authorization_grants + self._token_grants
        return list(dict.fromkeys(grant.GRANT_TYPE for grant, _ in grants))

    @property
    def response_types_supported(self) -> list[str]:
        types = (t for grant, _ in self._authorization_grants for t in grant.RESPONSE_TYPES)
        return list(dict.fromkeys(types))

    @property
    def token_endpoint_auth_methods_supported(self) -> list[str]:
        methods = (m for grant, _ in self._token_grants for m in grant.TOKEN_ENDPOINT_AUTH_METHODS)
        return list(dict.fromkeys(methods))

    @property
    def code_challenge_methods_supported(self) -> list[str]:
        methods = (
            method
            for _, extensions in self._authorization_grants + self._token_grants
            for extension in extensions or ()
            if isinstance(extension, CodeChallenge)
            for method in extension.SUPPORTED_CODE_CHALLENGE_METHOD
        )
        return list(dict.fromkeys(methods))


def _s256_only(extension: object) -> object:
    if not isinstance(extension, CodeChallenge):
        return extension
    narrowed = copy.copy(extension)
    narrowed.SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]  # type: ignore[misc]
    # RFC 7636 §4.3 makes a missing method "plain"; here it can only mean S256.
    narrowed.DEFAULT_CODE_CHALLENGE_METHOD = "S256"  # type: ignore[misc]
    return narrowed


def init_app(app: Flask) -> TenantAuthorizationServer:
    """Build the app's server and register what works today; later grants register here too."""
    from authserver.oauth import tokens
    from authserver.oauth.endpoints import IntrospectionEndpoint
    from authserver.oauth.endpoints import RevocationEndpoint

    server = TenantAuthorizationServer(app)
    server.register_token_generator("default", tokens.generate_token)
    server.publish("jwks_uri", "tenant.keys.jwks")
    server.register_endpoint(IntrospectionEndpoint)
    server.publish("introspection_endpoint", "tenant.oauth.introspect")
    server.register_endpoint(RevocationEndpoint)
    server.publish("revocation_endpoint", "tenant.oauth.revoke")
    # The token endpoint is published by the first grant that needs it, e.g.:
    #   server.register_grant(ClientCredentialsGrant); server.publish("token_endpoint", TOKEN)
    app.extensions["authserver.authorization"] = server
    return server


TOKEN_ENDPOINT = "tenant.oauth.token"


def authorization_server() -> TenantAuthorizationServer:
    return current_app.extensions["authserver.authorization"]
