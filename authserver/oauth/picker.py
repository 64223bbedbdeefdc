"""The patient a staff user picks in a standalone launch (SA-01), as a value only we can make.

The consent page offers the patients a search of the tenant's FHIR server found
(``launch/patients.py``), whose URL an operator may narrow, e.g. to a panel of patients. So the
form does not carry a bare patient id, which a user could replace with any other: each choice is
the id signed with the app's secret together with the tenant, the login and the authorization
request it was offered to. On submit only such a value names a patient; a raw id, or a value
offered to another request, tenant or login, changed, or too old, names none, and the page asks
again.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import current_app
from itsdangerous import BadData
from itsdangerous import URLSafeTimedSerializer

from authserver.accounts.models import LoginSession
from authserver.oauth.reauthentication import fingerprint
from authserver.tenancy.resolution import current_tenant

log = logging.getLogger(__name__)

#: Seconds an offered patient can be picked: time enough to read the consent page, and a
#: patient taken off a narrowed search is not offered for long after.
CHOICE_LIFETIME = 15 * 60
_SALT = "authserver.oauth.picker"


def offer(login: LoginSession, params: list[tuple[str, str]], patient_id: str) -> str:
    """The form value that offers ``patient_id`` to ``login`` for the request ``params``."""
    return _serializer().dumps({**_binding(login, params), "patient": patient_id})


def picked(login: LoginSession, params: list[tuple[str, str]], value: str | None) -> str | None:
    """The patient ``value`` names if we offered it to ``login`` for ``params``, else ``None``."""
    if not value:
        return None
    try:
        found = _serializer().loads(value, max_age=CHOICE_LIFETIME)
    except BadData as error:
        log.info("picked patient refused: %s", type(error).__name__)
        return None
    if any(found.get(name) != bound for name, bound in _binding(login, params).items()):
        log.info("picked patient refused: offered to another request, login or tenant")
        return None
    return found.get("patient")


def _binding(login: LoginSession, params: list[tuple[str, str]]) -> dict[str, Any]:
    # The tenant as the URL names it: a value offered at one clinic is nothing at another.
    return {"tenant": current_tenant().id, "login": login.id, "request": fingerprint(params)}


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.secret_key, salt=_SALT)
