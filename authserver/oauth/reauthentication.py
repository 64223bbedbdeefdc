"""Signing in again when the app asks for it (OpenID Connect Core §3.1.2.1).

``prompt=login``, or a login older than ``max_age`` seconds, sends a signed-in user back to the
tenant's sign-in page. The way back to the request carries a marker, signed with the app's
secret, that names the request and the login found too old: a login other than that one, started
since the marker was made, answers the request, so the flow goes on instead of asking again. The
marker cannot be forged to skip the sign-in, nor carried over to another request.
"""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from authlib.oauth2.rfc6749 import InvalidRequestError
from flask import current_app
from itsdangerous import BadData
from itsdangerous import URLSafeTimedSerializer

from authserver.accounts.models import LoginSession
from authserver.models import utcnow

#: The request parameter that carries the marker back to the authorization endpoint.
MARKER = "reauthentication"
#: Seconds the user has to sign in again before being asked once more.
MARKER_LIFETIME = 15 * 60
_SALT = "authserver.oauth.reauthentication"
_MAX_AGE = re.compile(r"[0-9]{1,10}")


def max_age(payload: Any) -> int | None:
    """The request's ``max_age``: the seconds a login may be old (OIDC Core §3.1.2.1).

    :raises InvalidRequestError: when it is not a whole number of seconds.
    """
    value = payload.data.get("max_age")
    if not value:  # RFC 6749 §3.1: a parameter sent without a value is treated as omitted
        return None
    if not _MAX_AGE.fullmatch(value):
        raise InvalidRequestError("'max_age' must be a whole number of seconds.")
    return int(value)


def due(grant: Any, login: LoginSession, params: list[tuple[str, str]]) -> bool:
    """Whether the request asks for a newer login than ``login``, and none answered it yet.

    :param params: the authorization request's parameters, with the marker if it has one.
    """
    return _asked(grant, login) and not _signed_in_again(login, params)


def marker_for(login: LoginSession | None, params: list[tuple[str, str]]) -> str:
    """A marker saying that, as of now, ``login`` (or no login at all) is too old for the
    request ``params``."""
    return _serializer().dumps(
        {"request": fingerprint(params), "login": login.id if login is not None else None}
    )


def asks_for_a_new_login(grant: Any) -> bool:
    """Whether the OpenID request asks for a sign-in made for it, whoever is signed in:
    ``prompt=login`` or any ``max_age`` (``grant.prompt`` is ``login`` for everyone not
    signed in, so it cannot tell)."""
    if not hasattr(grant.request, "max_age"):  # set for OpenID requests only (grants/openid.py)
        return False
    prompts = (grant.request.payload.data.get("prompt") or "").split()
    return "login" in prompts or grant.request.max_age is not None


def _asked(grant: Any, login: LoginSession) -> bool:
    # Authlib sets grant.prompt from an OpenID request's prompt; the OpenID extension, max_age.
    if grant.prompt == "login":
        return True
    seconds = getattr(grant.request, "max_age", None)
    return seconds is not None and utcnow() - login.auth_time > timedelta(seconds=seconds)


def _signed_in_again(login: LoginSession, params: list[tuple[str, str]]) -> bool:
    marker = dict(params).get(MARKER)
    if not marker:
        return False
    try:
        found, asked_at = _serializer().loads(
            marker, max_age=MARKER_LIFETIME, return_timestamp=True
        )
    except BadData:
        return False
    return (
        found.get("request") == fingerprint(params)
        and found.get("login") != login.id
        and login.auth_time >= asked_at
    )


def fingerprint(params: list[tuple[str, str]]) -> str:
    """The authorization request ``params``, whatever their order; the marker is no part of it.

    What identifies one request from one step of the flow to the next.
    """
    request = sorted((name, value) for name, value in params if name != MARKER)
    return hashlib.sha256(urlencode(request).encode()).hexdigest()


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.secret_key, salt=_SALT)
