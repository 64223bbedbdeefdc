"""``client_credentials`` for SMART Backend Services (RFC 6749 §4.4, SMART Backend Services).

The client authenticates with ``private_key_jwt`` only (a secret-holding client is refused,
BS-06); it gets the ``system/`` scopes it asked for within its registration, an access token of
at most five minutes (BS-02) and no refresh token. The token names the tenant and the client;
there is no user and no patient.
"""

from __future__ import annotations

from typing import Any

from authlib.oauth2.rfc6749 import InvalidScopeError
from authlib.oauth2.rfc6749 import grants

from authserver.clients.assertions import PRIVATE_KEY_JWT
from authserver.smart.backend import backend_grant
from authserver.smart.scopes import InvalidScope
from authserver.tenancy.resolution import current_tenant

# SMART Backend Services: "access tokens ... SHOULD have a lifetime of no more than five minutes".
MAX_TOKEN_LIFETIME = 300


class ClientCredentialsGrant(grants.ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = [PRIVATE_KEY_JWT]
    #: Discovery's scopes_supported: system scopes in v1 and v2 form.
    SCOPES_SUPPORTED = ("system/*.cruds", "system/*.rs", "system/*.*", "system/*.read")
    #: SMART capabilities this grant honours: both scope grammars (granular v2 included).
    CAPABILITIES = ("permission-v1", "permission-v2")

    def validate_requested_scope(self) -> None:
        """Grant = requested ∩ the client's system scopes (BS-05); nothing grantable is an error."""
        try:
            granted = backend_grant(self.request.payload.scope, self.request.client.allowed_scope)
        except InvalidScope as error:
            raise InvalidScopeError(description=f"Malformed scope {error.scope[:80]!r}.") from None
        if not granted:
            raise InvalidScopeError(description="None of the requested scopes can be granted.")
        self.granted_scope = str(granted)

    def generate_token(self, **_: Any) -> dict[str, Any]:
        lifetime = min(current_tenant().access_token_lifetime, MAX_TOKEN_LIFETIME)
        return super().generate_token(
            scope=self.granted_scope, expires_in=lifetime, include_refresh_token=False
        )
