"""Flask's signed-cookie session (it only holds the CSRF token), without per-request waste.

Flask builds a new signing serializer on every request, even when no cookie was sent. API
callers such as the FHIR gateway never send one, so for them opening the session is skipped;
the serializer is built once per app.
"""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask.sessions import SecureCookieSession
from flask.sessions import SecureCookieSessionInterface
from itsdangerous import URLSafeTimedSerializer


class LeanSessionInterface(SecureCookieSessionInterface):
    def open_session(self, app: Flask, request: Any) -> SecureCookieSession | None:
        if self.get_cookie_name(app) not in request.cookies:
            return self.session_class()
        return super().open_session(app, request)

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        serializer = app.extensions.get("authserver.session_serializer")
        if serializer is None:
            serializer = super().get_signing_serializer(app)
            app.extensions["authserver.session_serializer"] = serializer
        return serializer
