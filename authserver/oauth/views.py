"""The token, introspection and revocation endpoints; authorize joins them."""

from __future__ import annotations

from authlib.oauth2.rfc6749.grants import BaseGrant as TokenGrant
from flask import Blueprint
from flask import Response
from flask import request

from authserver import upkeep
from authserver.extensions import csrf
from authserver.extensions import db
from authserver.oauth.endpoints import IntrospectionEndpoint
from authserver.oauth.endpoints import RevocationEndpoint
from authserver.oauth.server import authorization_server
from authserver.tenancy.resolution import current_tenant
from authserver.tenancy.resolution import serves_suspended
from authserver.tenancy.urls import INTROSPECTION_PATH
from authserver.tokens import fastpath
from authserver.web import NO_STORE

bp = Blueprint("oauth", __name__)
# OAuth endpoints authenticate clients, not browser sessions: CSRF tokens do not apply.
csrf.exempt(bp)

# What Authlib's token response carries (Content-Type among them), for the fast path's answer
# (authserver/hotpaths.py).
TOKEN_RESPONSE_HEADERS = dict(TokenGrant.TOKEN_RESPONSE_HEADER)
CORS_HEADERS = {
    # Browser apps call the token endpoint cross-origin (SMART 2.2 CORS-02); no credentials.
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type",
    "Access-Control-Max-Age": "600",
}

FAST_TOKEN_HEADERS = list({**TOKEN_RESPONSE_HEADERS, **NO_STORE, **CORS_HEADERS}.items())


@bp.route("/token", methods=["POST", "OPTIONS"])
def token() -> Response:
    # Backend Services requests its fast path (oauth/fastpath.py, in front of Flask) declined
    # come here, with every other token request.
    if request.method == "OPTIONS":
        return Response(status=204, headers=CORS_HEADERS)
    response = authorization_server().create_token_response()
    if response.status_code >= 400:
        # A refused request changes nothing it did not commit on purpose (e.g. a code it claimed).
        db.session.rollback()
    else:
        upkeep.now_and_then()  # its tokens are committed: forget some expired rows now and then
    return response


@bp.post(INTROSPECTION_PATH)  # an introspect token's aud (tokens/service.py)
@serves_suspended  # a suspended tenant's tokens answer {"active": false}, not an error page
def introspect() -> Response:
    # Requests the fast path (tokens/fastpath.py, in front of Flask) declined come here.
    fastpath.remember_tenant(current_tenant())
    return authorization_server().create_endpoint_response(IntrospectionEndpoint.ENDPOINT_NAME)


@bp.route("/revoke", methods=["POST", "OPTIONS"])
def revoke() -> Response:
    # Browser apps revoke their own tokens on sign-out (RFC 7009 §2 allows CORS here).
    if request.method == "OPTIONS":
        return Response(status=204, headers=CORS_HEADERS)
    return authorization_server().create_endpoint_response(RevocationEndpoint.ENDPOINT_NAME)


@bp.after_request
def endpoint_headers(response: Response) -> Response:
    """On every answer of these endpoints, errors refused before the view ran included (a NUL in
    a parameter, ``authserver/inputs.py``): never cached (RFC 6749 §5.1, RFC 7662 §4, SMART
    INT-10; Inferno checks both headers), and readable by browser apps at the token and
    revocation endpoints (SMART 2.2 CORS-02)."""
    response.headers.update(NO_STORE)
    if request.endpoint is not None and not request.endpoint.endswith(".introspect"):
        response.headers.update(CORS_HEADERS)
    return response
