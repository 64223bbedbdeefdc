"""One browser at two clinics: each clinic's login and forms are its own.

The browser session that holds a form's CSRF secret is a cookie per tenant, scoped to
``/t/{slug}/`` like the login cookie, so signing in or out at clinic A neither signs anyone out
of clinic B nor spoils a form already open at B, and nothing of A's is accepted at B.
"""

import pytest

from authserver.audit.events import AuditEvent
from authserver.audit.models import AuditRecord
from authserver.extensions import db
from tests.fixtures.accounts import DUMMY_PASSWORD
from tests.fixtures.accounts import csrf_token
from tests.fixtures.accounts import login
from tests.fixtures.database import FreshContextClient

SESSION_COOKIE = "authserver_session"


@pytest.fixture
def staff(tenant, other_tenant, make_user):
    """alice and bob at clinic A; another alice at clinic B."""
    make_user(tenant, "alice")
    make_user(tenant, "bob")
    make_user(other_tenant, "alice")


def form_token(client, path):
    """The CSRF token of the form on ``path``, as a browser tab showing that page holds it."""
    return csrf_token(client.get(path).get_data(as_text=True))


def sign_out(client, slug):
    token = form_token(client, f"/t/{slug}/logout")
    return client.post(f"/t/{slug}/logout", data={"csrf_token": token})


def submit_login(client, slug, token, username="alice"):
    return client.post(
        f"/t/{slug}/login",
        data={"username": username, "password": DUMMY_PASSWORD, "csrf_token": token},
    )


def signed_in_as(client, slug):
    """Who the tenant's home page says is signed in, or None."""
    response = client.get(f"/t/{slug}/")
    if response.status_code != 200:
        return None
    page = response.get_data(as_text=True)
    return page.split("<strong>", 1)[1].split("</strong>", 1)[0]


# --- A form open at B survives what happens at A ---------------------------------------------


@pytest.mark.parametrize(
    "at_clinic_a",
    [
        lambda client: login(client, "clinic-a", "alice"),
        lambda client: login(client, "clinic-a", "bob"),
        lambda client: sign_out(client, "clinic-a"),
    ],
    ids=["sign-in-again", "sign-in-as-another", "sign-out"],
)
def test_a_login_form_open_at_b_still_submits_after_a_sign_in_or_out_at_a(
    client, staff, at_clinic_a
):
    assert login(client, "clinic-a", "alice").status_code == 303
    open_form_at_b = form_token(client, "/t/clinic-b/login")

    at_clinic_a(client)
    response = submit_login(client, "clinic-b", open_form_at_b)

    assert response.status_code == 303
    assert response.headers["Location"] == "/t/clinic-b/"
    assert signed_in_as(client, "clinic-b") == "alice"


def test_a_sign_out_form_open_at_b_still_submits_after_a_sign_in_at_a(client, staff):
    login(client, "clinic-a", "alice")
    login(client, "clinic-b", "alice")
    open_form_at_b = form_token(client, "/t/clinic-b/")

    assert login(client, "clinic-a", "bob").status_code == 303
    response = client.post("/t/clinic-b/logout", data={"csrf_token": open_form_at_b})

    assert response.status_code == 303
    assert signed_in_as(client, "clinic-b") is None
    assert signed_in_as(client, "clinic-a") == "bob"


# --- Logins at A and B are independent -------------------------------------------------------


def test_signing_in_and_out_at_a_leaves_the_login_at_b_alone(client, staff, tenant, other_tenant):
    login(client, "clinic-b", "alice")
    login(client, "clinic-a", "alice")

    login(client, "clinic-a", "bob")
    assert (signed_in_as(client, "clinic-a"), signed_in_as(client, "clinic-b")) == ("bob", "alice")

    assert sign_out(client, "clinic-a").status_code == 303
    assert (signed_in_as(client, "clinic-a"), signed_in_as(client, "clinic-b")) == (None, "alice")

    # Each clinic's audit log has its own sign-ins and sign-outs, and only those.
    signed_in, signed_out = AuditEvent.LOGIN_SUCCEEDED, AuditEvent.LOGOUT
    assert login_events(tenant) == [
        (signed_in, "alice"),
        (signed_in, "bob"),
        (signed_out, "alice"),
        (signed_out, "bob"),
    ]
    assert login_events(other_tenant) == [(signed_in, "alice")]


def login_events(clinic):
    events = [AuditEvent.LOGIN_SUCCEEDED, AuditEvent.LOGOUT]
    query = AuditRecord.for_tenant(clinic).where(AuditRecord.event.in_(events))
    return [
        (record.event, record.subject)
        for record in db.session.scalars(query.order_by(AuditRecord.id))
    ]


# --- Nothing of A's is accepted at B ---------------------------------------------------------


@pytest.mark.parametrize("visited_b", [True, False], ids=["b-page-open", "b-never-visited"])
def test_a_csrf_token_from_a_page_at_a_is_refused_at_b(client, staff, visited_b):
    token_from_a = form_token(client, "/t/clinic-a/login")
    if visited_b:
        form_token(client, "/t/clinic-b/login")

    response = submit_login(client, "clinic-b", token_from_a)

    assert response.status_code == 400
    assert "This form has expired" in response.get_data(as_text=True)
    assert signed_in_as(client, "clinic-b") is None


def test_the_session_cookie_is_scoped_to_the_tenant(client, staff):
    response = client.get("/t/clinic-a/login")

    (cookie,) = [
        header
        for header in response.headers.getlist("Set-Cookie")
        if header.startswith(f"{SESSION_COOKIE}=")
    ]
    attributes = [part.strip() for part in cookie.split(";")]
    assert "Path=/t/clinic-a/" in attributes
    assert "HttpOnly" in attributes
    assert "SameSite=Lax" in attributes
    assert "Secure" in attributes
    assert client.get_cookie(SESSION_COOKIE, path="/t/clinic-a/") is not None
    assert client.get_cookie(SESSION_COOKIE, path="/t/clinic-b/") is None


def test_a_page_outside_any_tenant_sets_no_session_cookie(client, staff):
    response = client.get("/healthz")

    assert not response.headers.getlist("Set-Cookie")


# --- Session fixation: the sign-in renews the signed-in tenant's session ---------------------


def test_a_form_token_from_before_a_sign_in_is_refused_after_it(client, staff):
    # An attacker who planted a session (and so knows its form token) in the victim's browser
    # before they sign in at A can no longer use it once they have.
    before_sign_in = form_token(client, "/t/clinic-a/login")
    secret_before = client.get_cookie(SESSION_COOKIE, path="/t/clinic-a/").value

    assert submit_login(client, "clinic-a", before_sign_in).status_code == 303
    after_sign_in = form_token(client, "/t/clinic-a/logout")

    assert client.get_cookie(SESSION_COOKIE, path="/t/clinic-a/").value != secret_before
    refused = client.post("/t/clinic-a/logout", data={"csrf_token": before_sign_in})
    assert refused.status_code == 400
    assert signed_in_as(client, "clinic-a") == "alice"
    assert client.post("/t/clinic-a/logout", data={"csrf_token": after_sign_in}).status_code == 303


def session_cookies(response):
    """The (name, attributes) of each cookie ``response`` sets."""
    cookies = []
    for header in response.headers.getlist("Set-Cookie"):
        name, rest = header.split("=", 1)
        cookies.append((name, [part.strip() for part in rest.split(";")[1:]]))
    return cookies


def test_the_session_cookie_takes_the_configured_name_and_keeps_the_tenant_path(make_app, staff):
    app = make_app(SESSION_COOKIE_NAME="clinic_forms")
    app.test_client_class = FreshContextClient
    browser = app.test_client()

    response = browser.get("/t/clinic-a/login")

    ((name, attributes),) = session_cookies(response)
    assert name == "clinic_forms"
    assert "Path=/t/clinic-a/" in attributes
    assert browser.get_cookie(SESSION_COOKIE, path="/t/clinic-a/") is None
    # The form's secret is read back from that cookie: the sign-in passes its CSRF check.
    token = csrf_token(response.get_data(as_text=True))
    assert submit_login(browser, "clinic-a", token).status_code == 303
