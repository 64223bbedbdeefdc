"""The tenant-aware Authlib authorization server and the registry discovery is built from.

Grants, client-auth methods, endpoints and capabilities are registered here once per app; the
discovery documents read them back, so they can only list what is wired.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import InvalidClientError
from authlib.oauth2.rfc6749 import InvalidRequestError
from authlib.oauth2.rfc6749 import UnsupportedResponseTypeError
from authlib.oauth2.rfc7636 import CodeChallenge
from flask import Flask
from flask import current_app
from flask import request as flask_request
from werkzeug.http import parse_options_header

from authserver.clients import service as clients
from authserver.clients.models import Client
from authserver.tenancy.resolution import current_tenant

log = logging.getLogger(__name__)

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"


class TenantAuthorizationServer(AuthorizationServer):
    """Authlib's server; every client lookup is limited to the tenant named in the URL."""

    def __init__(self, app: Flask | None = None) -> None:
        super().__init__()
        self.capabilities: list[str] = []
        self.published_endpoints: dict[str, str] = {}
        # Client-auth methods by name: Authlib's built-ins, then what register_client_auth_method
        # adds (with its object, whose SIGNING_ALGS and CAPABILITIES discovery reads).
        self.client_auth_methods: dict[str, object] = dict.fromkeys(
            ("none", "client_secret_basic", "client_secret_post")
        )
        if app is not None:
            self.init_app(app)

    def query_client(self, client_id: str) -> Client | None:
        return clients.find_client(current_tenant(), client_id)

    def save_token(self, token: dict, request: object) -> None:
        from authserver.oauth.tokens import save_token

        save_token(token, request)

    def get_authorization_grant(self, request: Any) -> Any:
        """Authlib's lookup, with a fixed error description: Authlib's is the unverified
        ``response_type`` itself, and :class:`OAuth2Error` refuses what RFC 6749 §4.1.2.1 keeps
        out of an ``error_description`` (``"``, ``\\``, non-ASCII) with a ValueError, a 500. A
        missing ``response_type`` is ``invalid_request`` (RFC 6749 §4.1.2.1), not unsupported.
        """
        registered = self._authorization_grants
        if any(grant.check_authorization_endpoint(request) for grant, _ in registered):
            return super().get_authorization_grant(request)
        response_type = request.payload.response_type
        redirect_uri = self._verified_redirect_uri(request)
        if not response_type:
            raise InvalidRequestError("Missing 'response_type'.", redirect_uri=redirect_uri)
        log.info("unsupported response_type %a", response_type)
        raise UnsupportedResponseTypeError(
            response_type,
            "The response type is not supported by the server.",
            redirect_uri=redirect_uri,
        )

    def _verified_redirect_uri(self, request: Any) -> str | None:
        """The redirect URI an error may go back to, as Authlib's lookup finds it: the request's,
        once its client is known and has it registered; None otherwise (RFC 6749 §4.1.2.1)."""
        client_id = request.payload.client_id
        client = self.query_client(client_id) if client_id else None
        if client is None:
            return None
        requested = request.payload.redirect_uri
        if not requested:
            return client.get_default_redirect_uri()
        return requested if client.check_redirect_uri(requested) else None

    def create_token_response(self, request: Any = None) -> Any:
        """Authlib's, after RFC 6749 §4.1.3's shape: a form-encoded body with a ``grant_type``.

        Anything else (a JSON body, TOK-22; parameters in the URL, which Authlib would read
        before the body's; no ``grant_type``) is ``invalid_request``, where Authlib would answer
        ``unsupported_grant_type`` or take the URL's values.
        """
        oauth_request = self.create_oauth2_request(request)
        content_type = parse_options_header(oauth_request.headers.get("Content-Type"))[0]
        if content_type.lower() != FORM_CONTENT_TYPE:  # media types ignore case (RFC 9110 §8.3.1)
            error = InvalidRequestError(f"The token request body must be {FORM_CONTENT_TYPE}.")
            return self.handle_error_response(oauth_request, error)
        if flask_request.query_string:
            # §4.1.3, §4.4.2: parameters go in the body; in the URL, a secret ends up in logs.
            error = InvalidRequestError(
                "Send the token request's parameters in the body, not the URL."
            )
            return self.handle_error_response(oauth_request, error)
        if not oauth_request.form.get("grant_type"):
            error = InvalidRequestError("Missing 'grant_type'.")
            return self.handle_error_response(oauth_request, error)
        return super().create_token_response(request)

    def handle_error_response(self, request: Any, error: OAuth2Error) -> Any:
        # RFC 6749 §5.2: a client that tried the Authorization header gets 401 + WWW-Authenticate.
        if isinstance(error, InvalidClientError) and request.headers.get("Authorization"):
            error.status_code = 401
        return super().handle_error_response(request, error)

    def publish(self, member: str, endpoint: str) -> None:
        """Advertise the view ``endpoint`` as discovery member ``member`` (e.g. ``jwks_uri``)."""
        self.published_endpoints[member] = endpoint

    def register_grant(self, grant_cls: type, extensions: list | None = None) -> None:
        """Authlib's, plus the ``CAPABILITIES`` (class constant) of the grant and its extensions,
        for discovery."""
        super().register_grant(grant_cls, extensions)
        for feature in (grant_cls, *(extensions or ())):
            self.add_capabilities(*getattr(feature, "CAPABILITIES", ()))

    def register_client_auth_method(self, method: str, func: object) -> None:
        """Authlib's, remembered for discovery with the method's ``CAPABILITIES``."""
        super().register_client_auth_method(method, func)
        self.client_auth_methods[method] = func
        self.add_capabilities(*getattr(func, "CAPABILITIES", ()))

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
    def token_endpoint_auth_signing_alg_values_supported(self) -> list[str]:
        """The ``SIGNING_ALGS`` of the JWT auth methods some grant accepts (RFC 8414 §2)."""
        algs = (
            alg
            for method in self.token_endpoint_auth_methods_supported
            for alg in getattr(self.client_auth_methods.get(method), "SIGNING_ALGS", ())
        )
        return list(dict.fromkeys(algs))

    @property
    def advertised_scopes(self) -> list[str]:
        """``scopes_supported``: the ``SCOPES_SUPPORTED`` of every registered grant and
        extension.

        Kept apart from Authlib's ``scopes_supported``, which would make Authlib refuse every
        scope not spelt exactly as listed; SMART scopes are checked by their grammar instead.
        """
        scopes = self._declared("SCOPES_SUPPORTED")
        return list(dict.fromkeys([*(self.scopes_supported or []), *scopes]))

    @property
    def claims_supported(self) -> list[str]:
        """``claims_supported`` (OIDC Discovery §3): the ``CLAIMS_SUPPORTED`` of every registered
        grant and extension, the claims of the ID tokens they sign."""
        return list(dict.fromkeys(self._declared("CLAIMS_SUPPORTED")))

    def _declared(self, constant: str) -> Iterator[str]:
        """The values of the class constant ``constant`` of each registered grant, then of its
        extensions, in registration order."""
        for grant, extensions in self._authorization_grants + self._token_grants:
            for feature in (grant, *(extensions or ())):
                yield from getattr(feature, constant, ())

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


def init_app(app: Flask) -> TenantAuthorizationServer:
    """Build the app's server and register what works today; later grants register here too."""
    from authserver.clients import jwks_fetch
    from authserver.clients.assertions import PRIVATE_KEY_JWT
    from authserver.clients.assertions import PrivateKeyJWTAuthentication
    from authserver.oauth import tokens
    from authserver.oauth.endpoints import IntrospectionEndpoint
    from authserver.oauth.endpoints import RevocationEndpoint
    from authserver.oauth.grants.authorization_code import AuthorizationCodeGrant
    from authserver.oauth.grants.client_credentials import ClientCredentialsGrant
    from authserver.oauth.grants.openid import SmartOpenIDCode
    from authserver.oauth.grants.pkce import RequiredS256
    from authserver.oauth.grants.refresh_token import RefreshTokenGrant
    from authserver.oauth.grants.smart import SmartAuthorizationRequest

    server = TenantAuthorizationServer(app)
    server.register_token_generator("default", tokens.generate_token)
    server.publish("jwks_uri", "tenant.keys.jwks")
    server.register_endpoint(IntrospectionEndpoint)
    server.publish("introspection_endpoint", "tenant.oauth.introspect")
    server.register_endpoint(RevocationEndpoint)
    server.publish("revocation_endpoint", "tenant.oauth.revoke")
    # SMART App Launch: the code grant with PKCE (S256 only), OpenID Connect and SMART's checks.
    server.register_grant(
        AuthorizationCodeGrant, [RequiredS256(), SmartAuthorizationRequest(), SmartOpenIDCode()]
    )
    server.register_grant(RefreshTokenGrant)
    server.publish("authorization_endpoint", AUTHORIZATION_ENDPOINT)
    server.publish("token_endpoint", TOKEN_ENDPOINT)
    # One private_key_jwt for every endpoint; each lists the methods it accepts.
    jwks_fetch.init_app(app)
    server.register_client_auth_method(PRIVATE_KEY_JWT, PrivateKeyJWTAuthentication())
    server.register_grant(ClientCredentialsGrant)
    app.extensions["authserver.authorization"] = server
    return server


TOKEN_ENDPOINT = "tenant.oauth.token"
AUTHORIZATION_ENDPOINT = "tenant.authorize.authorize"


def authorization_server() -> TenantAuthorizationServer:
    return current_app.extensions["authserver.authorization"]
