"""The authorization endpoint (RFC 6749 §3.1; SMART 2.2 #step-4-authorization-code): a page.

GET and POST (``authorize-post``); sign-in, patient picker and consent happen here, each step
re-validating the whole request with Authlib. Errors that cannot be sent back to a verified
redirect URI render as a page (``web.py``); every other one redirects with ``error`` and ``state``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from authlib.oidc.core.errors import ConsentRequiredError
from authlib.oidc.core.errors import LoginRequiredError
from flask import Blueprint
from flask import Response
from flask import redirect
from flask import request
from flask import url_for

from authserver.accounts import sessions
from authserver.accounts.models import LoginSession
from authserver.extensions import csrf
from authserver.launch import patients as patient_search
from authserver.oauth import consent
from authserver.oauth import reauthentication
from authserver.oauth.server import authorization_server
from authserver.tenancy.resolution import current_tenant
from authserver.tenancy.resolution import page
from authserver.web import render_tenant_page

bp = Blueprint("authorize", __name__)

# Fields of our own forms; never read from, nor passed on as, the client's request.
PAGE_FIELDS = frozenset({"csrf_token", "decision", "grant", "patient", "patient_search"})
PATIENT_NOT_CHOSEN = "Choose the patient this app is for."


@bp.route("/authorize", methods=["GET", "POST"])
@page
def authorize() -> Response | tuple[str, int] | str:
    if request.method == "POST" and "csrf_token" not in request.form:
        # authorize-post (AUTHZ-02) from the app's page: a cross-site POST carries no
        # SameSite=Lax cookie, so continue as the same request by GET, which does.
        return redirect(authorization_path(), code=303)
    login = sessions.current_login()
    grant = authorization_server().get_consent_grant(end_user=login.user if login else None)
    if login is None:
        return _sign_in(grant, None)
    if reauthentication.due(grant, login, request_params()):
        return _sign_in_again(grant, login)
    offer = consent.prepare(grant, login, request_params())
    if request.method == "POST":
        csrf.protect()  # the consent form: the only POST here that speaks for the user
        return _decide(offer)
    if offer.skips_consent:
        return consent.issue(offer, consent.decide_trusted(offer))
    if grant.request.payload.data.get("prompt") == "none":
        raise ConsentRequiredError(
            redirect_uri=grant.redirect_uri, state=grant.request.payload.state
        )
    return _consent_page(offer)


# OAuth clients post here without a CSRF token; the consent form is checked in the view.
csrf.exempt(authorize)


def _sign_in_again(grant: Any, login: LoginSession) -> Response:
    """OIDC Core §3.1.2.1: ``prompt=none`` shows no page, so it is ``login_required``."""
    if grant.request.payload.data.get("prompt") == "none":
        raise LoginRequiredError(redirect_uri=grant.redirect_uri, state=grant.request.payload.state)
    return _sign_in(grant, login)


def _sign_in(grant: Any, login: LoginSession | None) -> Response:
    """To the sign-in page, then back to this request. When the request asks for a new sign-in
    (``prompt=login``, ``max_age``), the way back carries a marker that the login made there
    answers: someone not signed in yet signs in once, not twice."""
    params = [(name, value) for name, value in request_params() if name != reauthentication.MARKER]
    if login is not None or reauthentication.asks_for_a_new_login(grant):
        params.append((reauthentication.MARKER, reauthentication.marker_for(login, params)))
    return redirect(url_for("tenant.accounts.login", next=authorization_path(params)))


def _decide(offer: consent.Offer) -> Response | tuple[str, int]:
    try:
        decision = consent.decide(offer, request.form)
    except consent.PatientNotChosen:
        return _consent_page(offer, error=PATIENT_NOT_CHOSEN), 400
    return consent.issue(offer, decision)


def _consent_page(offer: consent.Offer, error: str | None = None) -> str:
    patients, search_error = [], None
    search = (request.args.get("patient_search") or "").strip()
    if offer.pick_patient and search:
        try:
            patients = patient_search.search(current_tenant(), search)
        except patient_search.PatientSearchFailed as failure:
            search_error = str(failure)
    return render_tenant_page(
        "oauth/consent.html",
        offer=offer,
        action=authorization_path(),
        params=request_params(),
        search=search,
        patients=patients,
        error=error or search_error,
    )


def request_params() -> list[tuple[str, str]]:
    """The client's authorization request parameters, in order, without our page fields."""
    return [
        (name, value) for name, value in request.values.items(multi=True) if name not in PAGE_FIELDS
    ]


def authorization_path(params: list[tuple[str, str]] | None = None) -> str:
    """This authorization request (or ``params``) as a GET path under the tenant (the sign-in
    ``next``)."""
    return f"{url_for('.authorize')}?{urlencode(request_params() if params is None else params)}"
