"""The tenant's login, logout and signed-in pages."""

from __future__ import annotations

from urllib.parse import unquote
from urllib.parse import urlsplit

from flask import Blueprint
from flask import Response
from flask import redirect
from flask import request
from flask import session
from flask import url_for

from authserver.accounts import service
from authserver.accounts import sessions
from authserver.accounts.forms import LoginForm
from authserver.accounts.forms import LogoutForm
from authserver.extensions import db
from authserver.tenancy.resolution import current_tenant
from authserver.tenancy.resolution import page
from authserver.web import render_tenant_page

bp = Blueprint("accounts", __name__)

LOGIN_FAILED = "Incorrect username or password."
DOT_SEGMENTS = frozenset({".", ".."})


def _safe_next(target: str | None) -> str:
    """Only a path under this tenant, so the login page cannot redirect anywhere else, written
    in printing characters and no spaces, as a ``Location`` header takes it (a line break there
    is a server error, a tab one a browser drops)."""
    home = url_for(".home")
    prefix = home  # "/t/{slug}/"
    if (
        target
        and target.startswith(prefix)
        and "//" not in target
        and "\\" not in target
        and target.isprintable()
        and " " not in target
    ):
        # Browsers resolve "..", also as "%2e%2e": /t/a/../b/ is another tenant's page.
        segments = unquote(urlsplit(target).path).split("/")
        if not DOT_SEGMENTS & set(segments):
            return target
    return home


@bp.route("/login", methods=["GET", "POST"])
@page
def login() -> Response | tuple[str, int] | str:
    form = LoginForm(next=request.args.get("next"))
    if not form.validate_on_submit():
        status = 400 if form.is_submitted() else 200
        return render_tenant_page("accounts/login.html", form=form), status
    destination = _safe_next(form.next.data)  # judged before anything is committed
    tenant = current_tenant()
    user = service.authenticate(tenant, form.username.data or "", form.password.data or "")
    if user is None:
        db.session.commit()  # keep the audit record of the failure
        page_html = render_tenant_page("accounts/login.html", form=form, error=LOGIN_FAILED)
        return page_html, 401
    # A new login replaces the browser's previous one here (whoever it was), ended and audited
    # as a logout; this tenant's Flask session (its CSRF secret) starts afresh, so nothing fixed
    # before the sign-in carries over. Other tenants' sessions are other cookies, left alone.
    previous = sessions.current_login()
    if previous is not None:
        service.end_session(tenant, previous)
    session.clear()
    token, _ = service.start_session(tenant, user)
    db.session.commit()
    response = redirect(destination, code=303)
    sessions.set_cookie(response, token)
    return response


@bp.route("/logout", methods=["GET", "POST"])
@page
def logout() -> Response | str:
    form = LogoutForm()
    if not form.validate_on_submit():
        return render_tenant_page("accounts/logout.html", form=form, login=sessions.current_login())
    login = sessions.current_login()
    if login is not None:
        service.end_session(current_tenant(), login)
        db.session.commit()
    response = redirect(url_for(".login"), code=303)
    sessions.clear_cookie(response)
    return response


@bp.get("/")
@page
def home() -> Response | str:
    login = sessions.current_login()
    if login is None:
        return redirect(url_for(".login"))
    return render_tenant_page("accounts/home.html", login=login, form=LogoutForm())
