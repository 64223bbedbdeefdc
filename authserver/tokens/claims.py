"""Access-token claims (RFC 9068 §2.2, SMART 2.2 token response). Pure: no Flask, no DB."""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field
from typing import Any

from authserver.smart.context import RESPONSE_MEMBERS

# Launch context members that go into the token response, the JWT and introspection alike
# (INT-02: introspection repeats every launch-context member of the token response).
CONTEXT_CLAIMS = (*RESPONSE_MEMBERS, "fhirUser")


@dataclass(frozen=True)
class AccessTokenSubject:
    """Everything an access token says, before it is signed."""

    issuer: str
    audience: str
    tenant: str
    client_id: str
    scope: str
    jti: str
    issued_at: int
    expires_in: int
    subject: str
    roles: tuple[str, ...] = ()
    context: dict[str, Any] = field(default_factory=dict)


def minted_by_server(claims: dict[str, Any], issuer: str) -> bool:
    """Whether the tenant's server minted the token for itself (``client_id`` = ``sub`` = its
    issuer, as :func:`authserver.launch.patients.server_token` does to search the FHIR server
    for the patient picker): such a token has no record, and lives a minute."""
    return claims.get("client_id") == issuer and claims.get("sub") == issuer


def access_token_claims(token: AccessTokenSubject) -> dict[str, Any]:
    """The JWT body: RFC 9068 required claims, then ``tenant``/``roles``, then SMART context.

    ``sub`` is the user, or the client itself for client_credentials (RFC 9068 §2.2).
    """
    claims: dict[str, Any] = {
        "iss": token.issuer,
        "sub": token.subject,
        "aud": token.audience,
        "client_id": token.client_id,
        "scope": token.scope,
        "iat": token.issued_at,
        "exp": token.issued_at + token.expires_in,
        "jti": token.jti,
        "tenant": token.tenant,
    }
    if token.roles:
        claims["roles"] = list(token.roles)
    for name in CONTEXT_CLAIMS:
        if token.context.get(name) not in (None, "", [], {}):
            claims[name] = token.context[name]
    return claims
