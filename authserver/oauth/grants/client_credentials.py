"""``client_credentials`` for SMART Backend Services (RFC 6749 §4.4, SMART Backend Services).

The client authenticates with ``private_key_jwt`` only (a secret-holding client is refused,
BS-06); it gets the ``system/`` scopes it asked for within its registration, an access token of
at most five minutes (BS-02) and no refresh token. The token names the tenant and the client;
there is no user and no patient.

A client linked to a service account (``Client.service_account``) acts for that user: the
user's role ceiling narrows the grant too, the token's record names the user (so disabling the
user or revoking the user's tokens ends it) and the issuance is audited under the user's name.

A resource server (the FHIR gateway) may get a token here too, with whatever credential it is
registered with, for one scope only: ``introspect``, which it presents as a Bearer token at the
introspection endpoint (SMART's "appropriately-scoped" bearer token, INT-06). Such a token is
for that endpoint, its ``aud`` (:func:`authserver.tokens.service.audience`), and reaches no FHIR
data.
"""

from __future__ import annotations

from typing import Any

from authlib.oauth2.rfc6749 import InvalidClientError
from authlib.oauth2.rfc6749 import InvalidGrantError
from authlib.oauth2.rfc6749 import InvalidRequestError
from authlib.oauth2.rfc6749 import InvalidScopeError
from authlib.oauth2.rfc6749 import grants

from authserver.accounts import service as accounts
from authserver.accounts.models import User
from authserver.audit import service as audit
from authserver.audit.events import AuditEvent
from authserver.clients.assertions import PRIVATE_KEY_JWT
from authserver.clients.models import INTROSPECTION_SCOPE
from authserver.clients.models import RESOURCE_SERVER
from authserver.inputs import describable
from authserver.oauth.grants.client_auth import TokenRequestChecks
from authserver.oauth.tokens import check_granted_scope
from authserver.oauth.tokens import check_requested_scope
from authserver.oauth.tokens import token_request
from authserver.smart.backend import backend_grant
from authserver.smart.scopes import InvalidScope
from authserver.tenancy.resolution import current_tenant

# SMART Backend Services: "access tokens ... SHOULD have a lifetime of no more than five minutes".
MAX_TOKEN_LIFETIME = 300


class ClientCredentialsGrant(TokenRequestChecks, grants.ClientCredentialsGrant):
    # Apps: private_key_jwt only (BS-06, checked in authenticate_token_endpoint_client); a
    # resource server: its registered method, secrets included, for its introspection token.
    TOKEN_ENDPOINT_AUTH_METHODS = [PRIVATE_KEY_JWT, "client_secret_basic", "client_secret_post"]
    #: Discovery's scopes_supported: system scopes in v1 and v2 form.
    SCOPES_SUPPORTED = ("system/*.cruds", "system/*.rs", "system/*.*", "system/*.read")
    #: SMART capabilities this grant honours: both scope grammars (granular v2 included).
    CAPABILITIES = ("permission-v1", "permission-v2")

    def authenticate_token_endpoint_client(self) -> Any:
        client = super().authenticate_token_endpoint_client()
        if client.kind != RESOURCE_SERVER and client.token_endpoint_auth_method != PRIVATE_KEY_JWT:
            # BS-06: a secret never gets a Backend Services token, not a confidential app's. A
            # 400, or a 401 for the Authorization header, as every failed authentication.
            raise InvalidClientError(
                description="client_credentials needs private_key_jwt client authentication."
            )
        return client

    def validate_requested_scope(self) -> None:
        """Grant = requested ∩ the client's system scopes (BS-05) ∩ its service account's role
        ceiling, when it has one; nothing grantable, or more than an access token can carry, is
        an error. A resource server is granted ``introspect``, exactly."""
        requested = (self.request.payload.scope or "").strip()
        check_requested_scope(requested)
        if self.request.client.kind == RESOURCE_SERVER:
            self.granted_scope = _introspection_scope(requested)
            return
        if not requested:
            # SMART Backend Services §4.1: scope is required (BS-05), never a default grant.
            raise InvalidRequestError("Missing 'scope': ask for the system/ scopes this job needs.")
        account = self.service_account()
        ceilings = (accounts.role_ceiling(account),) if account is not None else ()
        client = self.request.client
        if INTROSPECTION_SCOPE in requested.split():
            raise InvalidScopeError(
                description=f"Only a resource server is issued '{INTROSPECTION_SCOPE}'."
            )
        try:
            granted = backend_grant(requested, client.allowed_scope, *ceilings)
        except InvalidScope as error:
            malformed = describable(error.scope[:80])
            raise InvalidScopeError(description=f"Malformed scope '{malformed}'.") from None
        if not granted:
            raise InvalidScopeError(description="None of the requested scopes can be granted.")
        check_granted_scope(str(granted))
        self.granted_scope = str(granted)
        token_request().service_account = account

    def service_account(self) -> User | None:
        """The active user the authenticated client acts for, or None for an unlinked client.

        A linked account that is not active (disabled, or never of this tenant) refuses the
        request with ``invalid_grant``, not ``invalid_client``: the client did authenticate,
        what is withdrawn is the authority it was arranged to use (RFC 6749 §5.2 "the provided
        authorization grant ... is revoked"), as the code and refresh grants answer for a
        disabled user.
        """
        client = self.request.client
        if client.service_account_id is None:
            return None
        account = client.service_account
        if account is None or account.tenant_id != client.tenant_id or not account.is_active:
            raise InvalidGrantError(description="The client's service account is not active.")
        return account

    def generate_token(self, **_: Any) -> dict[str, Any]:
        tenant = current_tenant()
        lifetime = min(tenant.access_token_lifetime, MAX_TOKEN_LIFETIME)
        token = super().generate_token(
            scope=self.granted_scope, expires_in=lifetime, include_refresh_token=False
        )
        account = token_request().service_account
        if account is not None:
            audit.record(
                tenant,
                AuditEvent.SERVICE_ACCOUNT_TOKEN_ISSUED,
                subject=account.username,
                client_id=self.request.client.client_id,
                grant_id=token_request().grant_id,
                scope=self.granted_scope,
            )
        return token


def _introspection_scope(requested: str) -> str:
    """The one scope a resource server is issued, when it asks for exactly that."""
    if not requested:
        raise InvalidRequestError(
            f"Missing 'scope': a resource server asks for '{INTROSPECTION_SCOPE}'."
        )
    if set(requested.split()) != {INTROSPECTION_SCOPE}:
        raise InvalidScopeError(
            description=f"A resource server is issued '{INTROSPECTION_SCOPE}' and nothing else."
        )
    return INTROSPECTION_SCOPE
