"""The token generator and ``save_token`` hook Authlib's grants call.

Grants add what only they know (launch context, the grant family, the login session) to
``flask.g.token_request`` before Authlib asks for a token; the generator reads it from there.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from dataclasses import field
from dataclasses import replace
from typing import Any

from authlib.oauth2.rfc6749 import InvalidScopeError
from flask import g

from authserver.accounts.models import User
from authserver.clients.models import Client
from authserver.extensions import db
from authserver.tenancy.resolution import current_tenant
from authserver.tokens import service as tokens
from authserver.tokens.limits import MAX_TOKEN_LENGTH
from authserver.tokens.limits import MAX_TOKEN_SCOPE_LENGTH
from authserver.tokens.limits import scope_fits

log = logging.getLogger(__name__)

# invalid_scope descriptions: what the client asks for is what makes a token too long.
REQUESTED_SCOPE_TOO_LONG = (
    f"The scope is longer than the {MAX_TOKEN_SCOPE_LENGTH} characters an access token can"
    " carry; ask for fewer scopes."
)
GRANTED_SCOPE_TOO_LONG = (
    f"The scopes to grant are longer than the {MAX_TOKEN_SCOPE_LENGTH} characters an access"
    " token can carry; ask for fewer scopes."
)
TOKEN_TOO_LONG = (
    f"The access token would be longer than {MAX_TOKEN_LENGTH} characters; ask for fewer scopes."
)


def check_requested_scope(scope: str | None) -> None:
    """A token request's or an authorization request's ``scope`` fits in an access token.

    :raises InvalidScopeError: otherwise (:mod:`authserver.tokens.limits`).
    """
    if scope and not scope_fits(scope):
        raise InvalidScopeError(REQUESTED_SCOPE_TOO_LONG)


def check_granted_scope(scope: str) -> None:
    """What a grant is about to issue fits in an access token: narrowing may spell a short
    request (``patient/*.rs``) out as the many scopes of a registration or a role ceiling.

    :raises InvalidScopeError: otherwise.
    """
    if not scope_fits(scope):
        raise InvalidScopeError(GRANTED_SCOPE_TOO_LONG)


@dataclass
class TokenRequest:
    """Per-request extras a grant hands to the generator."""

    context: dict[str, Any] = field(default_factory=dict)
    grant_id: str = field(default_factory=tokens.new_grant_id)
    login_session_id: int | None = None
    refresh_token_lifetime: int | None = None
    # What the refresh token holds, when not the access token's: a refresh may narrow the access
    # token, never the family's refresh token (RFC 6749 §6).
    refresh_scope: str | None = None
    refresh_context: dict[str, Any] | None = None
    # The user a backend client acts for (client_credentials): on the record, not in the token.
    service_account: User | None = None


def token_request() -> TokenRequest:
    """This request's :class:`TokenRequest`, made on first use."""
    if "token_request" not in g:
        g.token_request = TokenRequest()
    return g.token_request


def generate_token(
    grant_type: str,
    client: Client,
    user: User | None = None,
    scope: str | None = None,
    expires_in: int | None = None,
    include_refresh_token: bool = True,
) -> dict[str, Any]:
    """Authlib's token generator: a signed access token and, when asked, a refresh token (of
    the request's ``refresh_scope`` and ``refresh_context`` where a grant set them).

    :raises InvalidScopeError: when the access token would be too long for a header and for our
        introspection (:class:`tokens.TokenTooLong`): nothing is issued.
    """
    extras = token_request()
    authorization = tokens.Authorization(
        tenant=current_tenant(),
        client=client,
        scope=scope or "",
        user=user,
        context=extras.context,
        grant_id=extras.grant_id,
        login_session_id=extras.login_session_id,
        service_account=extras.service_account,
    )
    try:
        response = tokens.issue_access_token(authorization, expires_in)
    except tokens.TokenTooLong as error:
        log.info("refused %s to client %s: %s", grant_type, client.client_id, error)
        raise InvalidScopeError(TOKEN_TOO_LONG) from None
    if include_refresh_token:
        response["refresh_token"] = tokens.issue_refresh_token(
            _held_by_refresh_token(authorization, extras), extras.refresh_token_lifetime
        )
    return response


def _held_by_refresh_token(
    authorization: tokens.Authorization, extras: TokenRequest
) -> tokens.Authorization:
    """``authorization`` with the scope and context a grant kept for the refresh token."""
    scope = authorization.scope if extras.refresh_scope is None else extras.refresh_scope
    context = authorization.context if extras.refresh_context is None else extras.refresh_context
    return replace(authorization, scope=scope, context=context)


def save_token(token: dict[str, Any], request: Any) -> None:
    """Authlib's ``save_token``: the generator recorded every token; make them durable."""
    db.session.commit()
