"""Flask's signed-cookie session (it only holds the CSRF secret), one per tenant.

Each tenant's pages get their own session cookie, scoped to ``/t/{slug}/`` like the login cookie
(:mod:`authserver.accounts.sessions`): a browser holds one CSRF secret per clinic, so a sign-in
at clinic A, which starts A's session afresh against session fixation, leaves the forms already
open at clinic B working, and a token from A's pages is never B's. Outside a tenant there are no
forms and no session. The cookie is named by ``SESSION_COOKIE_NAME`` (``authserver_session``
unless configured, :mod:`authserver.config`).

Flask builds a new signing serializer on every request, even when no cookie was sent. API
callers such as the FHIR gateway never send one, so for them opening the session is skipped;
the serializer is built once per app.
"""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask import Response
from flask import request
from flask.sessions import SecureCookieSession
from flask.sessions import SecureCookieSessionInterface
from flask.sessions import SessionMixin
from itsdangerous import URLSafeTimedSerializer

from authserver.tenancy.urls import SLUG


def tenant_cookie_path(path: str, script_root: str = "") -> str | None:
    """``{script_root}/t/{slug}/`` when ``path`` is a page under a tenant, else ``None``."""
    parts = path.split("/", 3)  # "", "t", slug, the rest
    if len(parts) < 4 or parts[:2] != ["", "t"] or not SLUG.fullmatch(parts[2]):
        return None
    return f"{script_root}/t/{parts[2]}/"


class TenantSessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie session, one cookie per tenant's path; none outside a tenant."""

    def open_session(self, app: Flask, request: Any) -> SecureCookieSession | None:
        # No cookie (API callers), or a path no tenant's cookie is for: nothing to verify.
        name = self.get_cookie_name(app)
        if name not in request.cookies or tenant_cookie_path(request.path) is None:
            return self.session_class()
        return super().open_session(app, request)

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        if tenant_cookie_path(request.path) is not None:
            super().save_session(app, session, response)

    def get_cookie_path(self, app: Flask) -> str:
        # save_session sets and deletes the cookie only under a tenant, so never falls back.
        return tenant_cookie_path(request.path, request.script_root) or super().get_cookie_path(app)

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        serializer = app.extensions.get("authserver.session_serializer")
        if serializer is None:
            serializer = super().get_signing_serializer(app)
            app.extensions["authserver.session_serializer"] = serializer
        return serializer
