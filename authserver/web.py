"""Rendering shared by every blueprint: errors in one place, public JSON documents, tenant pages."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from authlib.oauth2 import OAuth2Error
from flask import Flask
from flask import Response
from flask import g
from flask import jsonify
from flask import make_response
from flask import render_template
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException
from werkzeug.exceptions import RequestEntityTooLarge

from authserver.errors import ServiceError
from authserver.tenancy.resolution import current_view_has
from authserver.tenancy.resolution import load_tenant_of_refused_method

log = logging.getLogger(__name__)

PUBLIC_DOCUMENT_MAX_AGE = 300
# An answer no browser or proxy may keep (RFC 6749 §5.1; Pragma for HTTP/1.0 caches).
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
# Every response, the hot paths' included (authserver/hotpaths.py): no browser runs an answer
# as anything but its Content-Type says (a JSON error echoing a parameter is never a script or
# a page), and no request it leads to carries a Referer (a redirect's URL may hold a code).
EVERY_RESPONSE_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
# With an https public URL, browsers come back over https only for a year, so a network
# attacker cannot strip TLS from a later visit; not includeSubDomains: the deployment's
# parent domain may serve other sites, which are not ours to decide.
HSTS = {"Strict-Transport-Security": "max-age=31536000"}
# A page that signs in or consents must not be framed by another site (clickjacking): CSP for
# today's browsers, X-Frame-Options for those that predate frame-ancestors. Nor be kept by a
# browser or proxy cache: pages hold CSRF tokens, who is signed in and the patients a picker
# found, and the authorization endpoint's redirects carry codes. A page's forms send their
# Referer to this server only (as the meta tag in base.html says): Flask-WTF refuses a form
# posted over https without a same-origin Referer, so no-referrer would refuse every sign-in
# and consent; same-origin, unlike strict-origin, sends nothing to another site either (the
# app a redirect goes to, a tenant's logo host).
PAGE_HEADERS = {
    "Content-Security-Policy": "frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    **NO_STORE,
}


def response_headers(app: Flask) -> dict[str, str]:
    """The headers every response of ``app`` carries: :data:`EVERY_RESPONSE_HEADERS`, and
    :data:`HSTS` when its public URL is https (as production's must be, but on loopback)."""
    if app.config["AUTHSERVER_PUBLIC_URL"].startswith("https://"):
        return {**EVERY_RESPONSE_HEADERS, **HSTS}
    return dict(EVERY_RESPONSE_HEADERS)


def public_json(document: dict[str, Any]) -> Response:
    """A document any origin may read and cache briefly (discovery, JWKS)."""
    response = jsonify(document)
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.headers["Cache-Control"] = f"public, max-age={PUBLIC_DOCUMENT_MAX_AGE}"
    response.vary.discard("Cookie")
    return response


def render_tenant_page(name: str, **context: Any) -> str:
    """Render ``name``, preferring the tenant's own ``tenants/{slug}/{name}`` when it has one."""
    tenant = g.get("tenant")
    names = [name]
    if tenant is not None:
        # templates/tenants/{slug}/accounts/login.html, or just templates/tenants/{slug}/login.html
        names = [f"tenants/{tenant.slug}/{name}", f"tenants/{tenant.slug}/{Path(name).name}", name]
    return render_template(names, tenant=tenant, **context)


def error_response(status: int, code: str, description: str) -> tuple[Any, int]:
    """The error as the page or API the request was for expects it."""
    if current_view_has("is_page"):
        page = render_tenant_page(
            "errors/error.html", status=status, message=description, code=code
        )
        return page, status
    return jsonify(error=code, error_description=description), status


def init_app(app: Flask) -> None:
    every_response = response_headers(app)

    @app.after_request
    def security_headers(response: Response) -> Response:
        response.headers.update(every_response)
        if current_view_has("is_page"):
            response.headers.update(PAGE_HEADERS)
        return response

    @app.errorhandler(ServiceError)
    def service_error(error: ServiceError) -> tuple[Any, int]:
        return error_response(error.status, error.code, str(error))

    @app.errorhandler(OAuth2Error)
    def oauth_error(error: OAuth2Error) -> Response | tuple[Any, int]:
        # Authlib sets redirect_uri only once the client and its exact redirect URI checked out
        # (RFC 6749 §4.1.2.1); before that the error is shown here and never redirected.
        if error.redirect_uri:
            status, _, headers = error()
            return Response(status=status, headers=headers)
        return error_response(error.status_code, error.error, error.description or error.error)

    @app.errorhandler(CSRFError)
    def csrf_error(error: CSRFError) -> tuple[Any, int]:
        log.info("refused a form without a valid CSRF token: %s", error.description)
        message = (
            "This form has expired or was not sent by this site. Reload the page and try again."
        )
        return error_response(400, "invalid_request", message)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:
        if current_view_has("is_page"):
            load_tenant_of_refused_method()
        code = (error.name or "error").lower().replace(" ", "_")
        response = make_response(
            error_response(error.code or 500, code, error.description or error.name)
        )
        # Keep what the error says beyond its body, such as a 405's Allow (RFC 9110 §15.5.6).
        for name, value in error.get_headers():
            if name.lower() != "content-type":
                response.headers.add(name, value)
        return response

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(error: RequestEntityTooLarge) -> tuple[Any, int]:
        # Werkzeug refuses a body over MAX_CONTENT_LENGTH when something first reads it (the
        # input checks, before any view); a malformed request in the protocol's words.
        limit = app.config["MAX_CONTENT_LENGTH"]
        message = f"The request body is larger than the {limit} bytes this server takes."
        return error_response(413, "invalid_request", message)

    @app.errorhandler(Exception)
    def unexpected_error(error: Exception) -> tuple[Any, int]:
        log.exception("unhandled error")
        return error_response(500, "server_error", "The server could not complete this request.")
