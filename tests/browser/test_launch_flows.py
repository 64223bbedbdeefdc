"""SMART launches end to end in a real browser: a person signs in and consents, an app gets tokens.

The app is Authlib's own OAuth client (PKCE S256) set up from SMART discovery, with a small web
server of its own for the launch URL and the redirect URI; Chromium does what a person does on
the authorization server's pages (types, searches, ticks, presses buttons).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import urlencode
from urllib.parse import urlsplit

import pytest
import requests

from authserver.accounts.sessions import COOKIE_NAME as LOGIN_COOKIE
from authserver.extensions import db
from authserver.tenancy import service as tenants
from tests.browser.smart_app import AppServer
from tests.browser.smart_app import PatientSearch
from tests.browser.smart_app import SmartClient
from tests.fixtures.commands import run
from tests.oauth.conftest import verify_with_jwks

STANDALONE_SCOPE = "launch/patient openid fhirUser offline_access patient/Observation.rs"
EHR_SCOPE = "launch openid fhirUser offline_access patient/Observation.rs"
PASSWORD = "riverside-password"
ANN = "Smith, Ann (born 1970-01-01)"
BOB = "Smith, Bob (born 1982-05-17)"
PATIENTS = [
    {
        "resourceType": "Patient",
        "id": "smith-ann",
        "name": [{"family": "Smith", "given": ["Ann"]}],
        "birthDate": "1970-01-01",
    },
    {
        "resourceType": "Patient",
        "id": "smith-bob",
        "name": [{"family": "Smith", "given": ["Bob"]}],
        "birthDate": "1982-05-17",
    },
    {
        "resourceType": "Patient",
        "id": "jones-cy",
        "name": [{"family": "Jones", "given": ["Cy"]}],
        "birthDate": "1990-03-03",
    },
]


@dataclass(frozen=True)
class Clinic:
    """A tenant, and the ``client_id`` the app was registered with there."""

    tenant: Any
    client_id: str

    @property
    def slug(self) -> str:
        return self.tenant.slug


@pytest.fixture
def app_server() -> Iterator[AppServer]:
    server = AppServer()
    yield server
    server.stop()


@pytest.fixture
def patient_search() -> Iterator[PatientSearch]:
    search = PatientSearch(PATIENTS)
    yield search
    search.stop()


@pytest.fixture
def riverside(make_tenant, make_user, make_client, app_server, patient_search) -> Clinic:
    """A branded clinic with a physician, a patient (Ann), the app and the picker's search."""
    tenant = make_tenant("riverside", "Riverside Family Clinic")
    tenants.brand(tenant, primary_color="#116611", support_contact="help@riverside.test")
    tenants.set_patient_search_url(tenant, patient_search.url_for("riverside"))
    db.session.commit()
    make_user(
        tenant, "dr.adams", password=PASSWORD, roles=["physician"], fhir_user="Practitioner/adams"
    )
    make_user(tenant, "ann", password=PASSWORD, roles=["patient"], fhir_user="Patient/smith-ann")
    return register_app(make_client, tenant, app_server)


@pytest.fixture
def hillcrest(make_tenant, make_user, make_client, app_server) -> Clinic:
    """Another clinic, where a different dr.adams works, with another password."""
    tenant = make_tenant("hillcrest", "Hillcrest Hospital")
    make_user(tenant, "dr.adams", password="hillcrest-password", roles=["physician"])
    return register_app(make_client, tenant, app_server)


def register_app(make_client, tenant, app_server: AppServer) -> Clinic:
    """Register the app at ``tenant``: a public client with its loopback redirect URI."""
    registration = make_client(tenant, name="Growth chart", redirect_uris=[app_server.redirect_uri])
    return Clinic(tenant, registration.client.client_id)


def app_client(site, clinic: Clinic, app_server: AppServer, scope: str) -> SmartClient:
    """The app, set up for ``clinic``'s FHIR server from its SMART discovery."""
    return SmartClient(
        clinic.client_id, app_server.redirect_uri, scope, site.fhir_base(clinic.slug)
    )


# --- What a person does and sees ------------------------------------------------------------


def sign_in(page, username: str, password: str = PASSWORD) -> None:
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def allow_button(page) -> Any:
    return page.get_by_role("button", name="Allow", exact=True)


def consent_page_title(page) -> str:
    """The title of the consent page, once it is shown."""
    allow_button(page).wait_for()
    return page.title()


def back_at_app(page, app_server: AppServer) -> dict[str, str]:
    """Wait until the browser is back at the app; the query parameters the app received."""
    page.wait_for_url(lambda url: url.startswith(app_server.redirect_uri))
    assert page.locator("h1").inner_text() == "Back in the app"
    return app_server.last_redirect()


def assert_at_login(page, site, slug: str) -> None:
    assert page.url.startswith(f"{site.url}/t/{slug}/login"), page.url


# --- 1. Standalone launch by a physician, who picks the patient (SA-01) ----------------------


def test_physician_picks_the_patient_in_a_standalone_launch(
    browser, site, riverside, app_server, patient_search, make_gateway
):
    app = app_client(site, riverside, app_server, STANDALONE_SCOPE)
    page = browser.new_page()
    page.goto(app.authorization_url())
    assert_at_login(page, site, "riverside")
    assert page.title() == "Sign in · Riverside Family Clinic"
    assert "help@riverside.test" in page.locator("footer").inner_text()
    sign_in(page, "dr.adams")

    assert consent_page_title(page) == "Allow Growth chart? · Riverside Family Clinic"
    assert "Search for the patient first." in page.locator("main").inner_text()
    page.get_by_label("Find the patient").fill("smith")
    page.get_by_role("button", name="Search").click()
    page.get_by_label(BOB).check()
    assert page.get_by_label(ANN).is_visible() and not page.get_by_label(ANN).is_checked()
    assert page.get_by_text("Jones").count() == 0
    assert patient_search.searches == ["smith"]
    allow_button(page).click()

    redirect = back_at_app(page, app_server)
    assert redirect["code"] and redirect["state"] == app.state
    token = app.fetch_token(app_server.redirects[-1])
    assert token["patient"] == "smith-bob"
    assert token["scope"] == STANDALONE_SCOPE
    identity = verify_with_jwks(
        token["id_token"], site.jwks("riverside"), audience=riverside.client_id
    )
    assert identity["fhirUser"] == site.fhir_base("riverside") + "/Practitioner/adams"

    gateway = make_gateway(riverside.tenant)
    answer = requests.post(
        app.configuration["introspection_endpoint"],
        data={"token": token["access_token"]},
        auth=(gateway.client_id, gateway.secret),
        timeout=10,
    ).json()
    assert answer["active"] is True
    assert (answer["patient"], answer["tenant"]) == ("smith-bob", "riverside")

    # Refreshing (which rotates the token family) keeps the patient.
    refreshed = app.session.refresh_token(
        app.configuration["token_endpoint"], refresh_token=token["refresh_token"]
    )
    assert refreshed["patient"] == "smith-bob"


# --- 2. and 3. A patient shares less, or nothing ---------------------------------------------


def test_a_scope_the_patient_unticks_is_not_granted(browser, site, riverside, app_server):
    scope = "launch/patient openid fhirUser patient/Patient.rs patient/Observation.rs"
    app = app_client(site, riverside, app_server, scope)
    page = browser.new_page()
    page.goto(app.authorization_url())
    sign_in(page, "ann")

    consent_page_title(page)
    assert page.get_by_label("Find the patient").count() == 0  # she is her own context
    observations = page.get_by_label("Read and search your observations", exact=True)
    observations.uncheck()
    allow_button(page).click()

    assert back_at_app(page, app_server)["state"] == app.state
    token = app.fetch_token(app_server.redirects[-1])
    granted = token["scope"].split()
    assert "patient/Observation.rs" not in granted  # SCOPE-08
    assert {"launch/patient", "openid", "fhirUser", "patient/Patient.rs"} <= set(granted)
    assert token["patient"] == "smith-ann"


def test_deny_sends_access_denied_and_the_state_back(browser, site, riverside, app_server):
    app = app_client(site, riverside, app_server, STANDALONE_SCOPE)
    page = browser.new_page()
    page.goto(app.authorization_url())
    sign_in(page, "ann")
    consent_page_title(page)
    page.get_by_role("button", name="Deny", exact=True).click()

    redirect = back_at_app(page, app_server)
    assert redirect["error"] == "access_denied"  # AUTHZ-16
    assert redirect["state"] == app.state
    assert "code" not in redirect


# --- 4. EHR launch: the context comes with the launch, no picker (EHR-01, EHR-02) ------------


def test_ehr_launch_brings_its_patient_and_encounter(browser, site, riverside, app_server):
    # The operator's command, run by the live server's app so that `iss` is the URL apps see.
    with site.app.app_context():
        launch = run(
            site.app.test_cli_runner(),
            *("launch", "create", "riverside", "--patient", "smith-bob", "--encounter", "enc-5"),
            *("--client", riverside.client_id),
        )
    launched: dict[str, SmartClient] = {}

    def on_launch(iss: str, launch_id: str) -> str:
        launched["app"] = SmartClient(riverside.client_id, app_server.redirect_uri, EHR_SCOPE, iss)
        return launched["app"].authorization_url(launch=launch_id)

    app_server.on_launch = on_launch
    page = browser.new_page()
    # The EHR opens the app's launch URL; the app sends the browser on to authorize.
    opened_with = urlencode({"iss": launch["iss"], "launch": launch["launch"]})
    page.goto(f"{app_server.launch_uri}?{opened_with}")
    assert_at_login(page, site, "riverside")
    sign_in(page, "dr.adams")

    consent_page_title(page)
    assert page.get_by_label("Find the patient").count() == 0
    assert page.get_by_role("radio").count() == 0
    allow_button(page).click()

    app = launched["app"]
    assert app.iss == site.fhir_base("riverside")
    assert back_at_app(page, app_server)["state"] == app.state
    token = app.fetch_token(app_server.redirects[-1])
    assert (token["patient"], token["encounter"]) == ("smith-bob", "enc-5")
    assert token["scope"] == EHR_SCOPE


# --- 5. A login at one clinic is no login at another ----------------------------------------


def test_a_riverside_login_does_not_carry_over_to_hillcrest(
    browser, site, riverside, hillcrest, app_server
):
    page = browser.new_page()
    at_riverside = app_client(site, riverside, app_server, "openid fhirUser")
    page.goto(at_riverside.authorization_url())
    sign_in(page, "dr.adams")
    allow_button(page).click()
    assert "code" in back_at_app(page, app_server)

    at_hillcrest = app_client(site, hillcrest, app_server, "openid fhirUser")
    page.goto(at_hillcrest.authorization_url())
    assert_at_login(page, site, "hillcrest")
    assert page.title() == "Sign in · Hillcrest Hospital"
    assert "Riverside" not in page.content()

    for username in ("dr.adams", "ann"):  # a namesake works at Hillcrest; Ann is not known there
        sign_in(page, username, PASSWORD)
        assert page.get_by_role("alert").inner_text() == "Incorrect username or password."
        assert_at_login(page, site, "hillcrest")
    assert len(app_server.redirects) == 1

    # Still signed in at Riverside: its next request goes straight to the consent page.
    page.goto(at_riverside.authorization_url())
    assert consent_page_title(page) == "Allow Growth chart? · Riverside Family Clinic"


def test_signing_in_at_riverside_in_another_tab_leaves_hillcrests_open_consent_page_working(
    browser, site, riverside, hillcrest, app_server
):
    hillcrest_tab = browser.new_page()
    at_hillcrest = app_client(site, hillcrest, app_server, "openid fhirUser")
    hillcrest_tab.goto(at_hillcrest.authorization_url())
    sign_in(hillcrest_tab, "dr.adams", "hillcrest-password")
    assert consent_page_title(hillcrest_tab) == "Allow Growth chart? · Hillcrest Hospital"

    # While Hillcrest's consent page waits, the same person signs in at Riverside in a new tab.
    riverside_tab = browser.new_page()
    riverside_tab.goto(f"{site.url}/t/riverside/login")
    sign_in(riverside_tab, "dr.adams")
    riverside_tab.wait_for_url(f"{site.url}/t/riverside/")

    allow_button(hillcrest_tab).click()
    assert back_at_app(hillcrest_tab, app_server)["state"] == at_hillcrest.state
    token = at_hillcrest.fetch_token(app_server.redirects[-1])
    assert token["scope"] == "openid fhirUser"

    # Signing out of Riverside leaves the Hillcrest login alone.
    riverside_tab.get_by_role("button", name="Sign out").click()
    riverside_tab.wait_for_url(f"{site.url}/t/riverside/login")
    hillcrest_tab.goto(f"{site.url}/t/hillcrest/")
    assert (
        "signed in to Hillcrest Hospital as dr.adams" in hillcrest_tab.locator("main").inner_text()
    )


# --- 6. authorize-post from the app's page on another site (AUTHZ-02) -----------------------


def test_an_authorization_request_posted_from_another_site_finds_the_login(
    browser, site, riverside, app_server
):
    """The login cookie is SameSite=Lax, so the browser leaves it off the app's cross-site POST;
    the server answers that POST with a 303 to the same request as a GET, which carries it."""
    page = browser.new_page()
    page.goto(f"{site.url}/t/riverside/login")
    sign_in(page, "ann")
    page.wait_for_url(f"{site.url}/t/riverside/")
    (login_cookie,) = [c for c in browser.cookies() if c["name"] == LOGIN_COOKIE]
    assert login_cookie["sameSite"] == "Lax"

    app = app_client(site, riverside, app_server, STANDALONE_SCOPE)
    app_server.posted_authorization = app.authorization_url()
    seen = []
    page.on("request", lambda request: seen.append(request))
    page.goto(f"{app_server.cross_site_url}/authorize-by-post")

    page.wait_for_url(lambda url: url.startswith(site.url))
    assert urlsplit(page.url).path == "/t/riverside/authorize", "sent to sign in again"
    assert consent_page_title(page) == "Allow Growth chart? · Riverside Family Clinic"
    endpoint = site.authorize_url("riverside")
    posted, followed = [request for request in seen if request.url.startswith(endpoint)]
    assert (posted.method, followed.method) == ("POST", "GET")
    assert not carries_the_login(posted)  # SameSite=Lax: a cross-site POST
    assert carries_the_login(followed)  # a top-level GET, cross-site or not
    allow_button(page).click()

    redirect = back_at_app(page, app_server)
    assert redirect["state"] == app.state
    assert app.fetch_token(app_server.redirects[-1])["patient"] == "smith-ann"


def carries_the_login(request: Any) -> bool:
    """Whether the browser sent the tenant's login cookie with ``request``."""
    return LOGIN_COOKIE in SimpleCookie(request.all_headers().get("cookie", ""))
