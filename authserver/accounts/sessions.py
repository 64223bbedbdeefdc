"""The per-tenant login cookie.

Each tenant has its own cookie, scoped to ``/t/{slug}/``, holding a random token whose digest is a
tenant-owned row: a login at clinic A is not a login at clinic B, even if the cookie is replayed.
"""

from __future__ import annotations

from flask import Response
from flask import current_app
from flask import g
from flask import request

from authserver.accounts import service
from authserver.accounts.models import LoginSession
from authserver.tenancy.resolution import current_tenant

COOKIE_NAME = "authserver_login"


def _cookie_path() -> str:
    return f"{request.script_root}/t/{current_tenant().slug}/"


def current_login() -> LoginSession | None:
    """This request's live login at the current tenant, if any."""
    if "login" not in g:
        g.login = service.find_session(current_tenant(), request.cookies.get(COOKIE_NAME))
    return g.login


def set_cookie(response: Response, token: str) -> None:
    """Set the login cookie: a browser-session cookie (no ``Max-Age``), so that closing the
    browser of a shared clinic workstation signs its user out; the login row still ends
    ``AUTHSERVER_LOGIN_SESSION_LIFETIME`` after the sign-in, however long the browser stays
    open (:func:`service.find_session`)."""
    response.set_cookie(
        COOKIE_NAME,
        token,
        path=_cookie_path(),
        secure=current_app.config["SESSION_COOKIE_SECURE"],
        httponly=True,
        samesite="Lax",
    )


def clear_cookie(response: Response) -> None:
    response.delete_cookie(COOKIE_NAME, path=_cookie_path())
