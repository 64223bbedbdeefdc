"""The authorization-code grant (RFC 6749 §4.1) on Authlib's, with our storage hooks.

PKCE, OpenID Connect and the SMART request checks are extensions registered beside it (see
``oauth/server.py``). The authorization endpoint decides what is granted (``oauth/consent.py``)
and hands the decision over as :attr:`AuthorizationCodeGrant.decision` before Authlib asks for a
code to be saved.
"""

from __future__ import annotations

import logging
from typing import Any

from authlib.oauth2.rfc6749 import InvalidRequestError
from authlib.oauth2.rfc6749 import InvalidScopeError
from authlib.oauth2.rfc6749 import OAuth2Error
from authlib.oauth2.rfc6749 import grants

from authserver.accounts.models import User
from authserver.clients.metadata import MAX_SCOPES
from authserver.extensions import db
from authserver.oauth import service
from authserver.oauth.grants.client_auth import CLIENT_AUTH_METHODS
from authserver.oauth.grants.client_auth import TokenRequestChecks
from authserver.oauth.grants.refresh_token import ContinuesFamily
from authserver.oauth.models import AuthorizationCode
from authserver.oauth.tokens import check_requested_scope
from authserver.smart.context import token_response_members
from authserver.smart.scopes import parse_scopes
from authserver.tenancy.resolution import current_tenant

log = logging.getLogger(__name__)


class AuthorizationCodeGrant(ContinuesFamily, TokenRequestChecks, grants.AuthorizationCodeGrant):
    # SMART: public apps (PKCE, no secret) and confidential-symmetric ones (Basic or POST).
    TOKEN_ENDPOINT_AUTH_METHODS = CLIENT_AUTH_METHODS
    # SMART 2.2 capabilities this grant honours (discovery reads them when it is registered).
    CAPABILITIES = (
        "launch-standalone",
        "authorize-post",
        "client-public",
        "client-confidential-symmetric",
        "permission-v1",
        "permission-v2",
        "permission-patient",
        "permission-user",
    )
    # Discovery's scopes_supported: the context and refresh scopes this grant honours, and the
    # resource wildcards (each still narrowed by the client, the roles and the user); the
    # identity scopes are its OpenID extension's.
    SCOPES_SUPPORTED = (
        "launch",
        "launch/patient",
        "launch/encounter",
        "offline_access",
        "online_access",
        "patient/*.rs",
        "user/*.rs",
        "patient/*.read",
        "user/*.read",
    )

    #: Set by the authorization endpoint once the user decided; read by save_authorization_code.
    decision: Any = None

    # -- Authorization endpoint ------------------------------------------------------------

    @staticmethod
    def validate_authorization_redirect_uri(request: Any, client: Any) -> str:
        """Authlib's exact-match check, with a fixed description: Authlib quotes the unverified
        URI in it, and :class:`OAuth2Error` refuses what RFC 6749 §4.1.2.1 keeps out of an
        ``error_description`` (``"``, ``\\``, non-ASCII) with a ValueError, a 500.

        :raises InvalidRequestError: shown as a page, never sent to the unverified URI.
        """
        redirect_uri = request.payload.redirect_uri
        if redirect_uri and not client.check_redirect_uri(redirect_uri):
            log.info("unregistered redirect_uri %a of client %a", redirect_uri, client.client_id)
            raise InvalidRequestError("The redirect_uri is not registered for this client.")
        return grants.AuthorizationCodeGrant.validate_authorization_redirect_uri(request, client)

    def validate_requested_scope(self) -> None:
        """Parse the SMART scopes; malformed ones are dropped (AUTHZ-15, SCOPE-02).

        :raises InvalidScopeError: when no valid scope remains, or more than an app may
            register were asked for, or more than an access token can carry.
        """
        check_requested_scope(self.request.payload.scope)
        requested = parse_scopes(self.request.payload.scope or "")
        if len(requested) + len(requested.dropped) > MAX_SCOPES:
            # Narrowing and consent take time quadratic in the scopes: a long list would hold
            # a worker for seconds. No app may register more than this, nor need to ask for it.
            raise InvalidScopeError(f"At most {MAX_SCOPES} scopes may be requested.")
        if requested.dropped:
            log.info("dropped malformed scopes: %s", " ".join(requested.dropped))
        if not len(requested):
            raise InvalidScopeError("No valid SMART scope was requested.")
        self.request.requested_scope = requested

    def generate_authorization_code(self) -> str:
        return service.new_code()

    def save_authorization_code(self, code: str, request: Any) -> None:
        try:
            self.decision.on_code_issued()  # spends the EHR launch before the code exists
        except OAuth2Error as error:
            error.redirect_uri = self.redirect_uri
            raise
        data = request.payload.data
        decided = service.CodeRequest(
            client=request.client,
            user=request.user,
            login=self.decision.login,
            redirect_uri=request.payload.redirect_uri,
            scope=str(self.decision.scope),
            context=self.decision.context,
            nonce=data.get("nonce") or None,
            code_challenge=data.get("code_challenge") or None,
            code_challenge_method=data.get("code_challenge_method") or None,
        )
        service.save_code(current_tenant(), code, decided)

    # -- Token endpoint ----------------------------------------------------------------------

    def validate_token_request(self) -> None:
        """Authlib's checks, after RFC 6749 §4.1.3's required parameters: a ``code``, and the
        ``redirect_uri`` every code here was issued for (the authorization endpoint requires
        one). One left out, or sent empty (§3.2), is ``invalid_request`` (§5.2, TOK-16), where
        Authlib would call an empty code unknown and a missing URI a mismatch (``invalid_grant``).
        """
        if not self.request.form.get("code"):
            raise InvalidRequestError("Missing 'code'.")
        if not self.request.payload.redirect_uri:
            raise InvalidRequestError(
                "Missing 'redirect_uri': send the one the code was issued for."
            )
        super().validate_token_request()

    def query_authorization_code(self, code: str, client: Any) -> AuthorizationCode | None:
        row = service.redeem_code(current_tenant(), code, client)
        if row is None:
            db.session.commit()  # a replay's revocation and its audit record stand
        return row

    def delete_authorization_code(self, authorization_code: AuthorizationCode) -> None:
        """Nothing to do: :func:`service.redeem_code` spent the code when it claimed it."""

    def authenticate_user(self, authorization_code: AuthorizationCode) -> User | None:
        user = db.session.get(User, authorization_code.user_id)
        return user if user is not None and user.is_active else None

    def redeemed(self) -> AuthorizationCode:
        return self.request.authorization_code

    def create_token_response(self) -> tuple[int, dict[str, Any], list]:
        status, token, headers = super().create_token_response()
        token.update(token_response_members(self.request.authorization_code.context))
        return status, token, headers
