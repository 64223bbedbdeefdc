"""Token-request checks shared by every grant that authenticates a client (RFC 6749 §2.3, §3.2)."""

from __future__ import annotations

from typing import Any

from authlib.oauth2.rfc6749 import InvalidClientError
from authlib.oauth2.rfc6749 import InvalidRequestError
from authlib.oauth2.rfc6749.util import extract_basic_authorization

from authserver.inputs import describable

# private_key_jwt is registered on the server by the Backend Services work (clients/assertions.py).
CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"]


class TokenRequestChecks:
    """Mixed into a grant: refuse ambiguous requests before authenticating the client, and
    answer a failed authentication alike whatever the grant.

    RFC 6749 §3.2: "Request and response parameters MUST NOT be included more than once"
    (TOK-23); §2.3: "The client MUST NOT use more than one authentication method in each
    request" (CA-07); a body ``client_id`` must name the client of the Basic header (CA-03).
    §5.2: ``invalid_client`` is a 401 with ``WWW-Authenticate`` for a client that tried the
    Authorization header (the server's ``handle_error_response`` sets both), else a 400.
    """

    request: Any

    def authenticate_token_endpoint_client(self) -> Any:
        request = self.request
        for name, values in request.payload.datalist.items():
            if len(values) > 1:
                raise InvalidRequestError(f"Multiple '{describable(name)}' in request.")
        methods = [name for name in ("client_secret", "client_assertion") if request.form.get(name)]
        if request.headers.get("Authorization", "").lower().startswith("basic "):
            methods.append("Authorization")
        if len(methods) > 1:
            raise InvalidRequestError("Use one client authentication method, not several.")
        if "Authorization" in methods:
            basic_client_id, _ = extract_basic_authorization(request.headers)
            body_client_id = request.form.get("client_id")
            if body_client_id and body_client_id != basic_client_id:
                raise InvalidClientError(
                    status_code=401,
                    description="The client_id in the body is not the client of the header.",
                )
        try:
            return super().authenticate_token_endpoint_client()  # type: ignore[misc]
        except InvalidClientError as error:
            # Authlib answers 401 whenever client_secret_basic is among the methods: a wrong
            # form secret or an assertion that does not check out is a 400 (g10's Backend
            # Services test asserts exactly 400 for a wrong client_assertion_type).
            if not request.headers.get("Authorization"):
                error.status_code = 400
            raise
