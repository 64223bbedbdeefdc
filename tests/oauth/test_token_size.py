"""Every token the server issues fits in a header and in its own introspection (tokens/limits.py).

An audit registered 199 granular scopes, asked for them all and got an access token of about
15 kB (14,920 bytes; 14,828 characters with the scopes here) that introspection answered
``{"active": false}``. These tests make that request at every door (registration, the
authorization endpoint and its consent form, the token endpoint's grants and its fast path) and
check each refuses it in its own format, while a registration stored over the bound keeps
getting the tokens that fit; they check that what the bounds cannot see (URLs longer than
assumed) is refused where tokens are signed; and they sign in at the bounds, in a deployment
whose every other claim is as long as the arithmetic allows, and check the tokens of each grant
fit and introspect active through the real endpoint.
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

import jwt
import pytest
from sqlalchemy import func
from sqlalchemy import select
from werkzeug.wrappers import Request
from werkzeug.wrappers import Response

from authserver.accounts.roles import DEFAULT_ROLES
from authserver.accounts.roles import PATIENT_ROLE
from authserver.clients.models import RESOURCE_SERVER
from authserver.extensions import db
from authserver.launch import patients
from authserver.oauth import fastpath
from authserver.tenancy import service as tenants
from authserver.tokens import service as tokens
from authserver.tokens.limits import ASSUMED_URL_LENGTH
from authserver.tokens.limits import MAX_FHIR_CONTEXT_LENGTH
from authserver.tokens.limits import MAX_INTENT_LENGTH
from authserver.tokens.limits import MAX_TOKEN_LENGTH
from authserver.tokens.limits import MAX_TOKEN_SCOPE_LENGTH
from authserver.tokens.models import IssuedToken
from tests.fixtures.accounts import login
from tests.fixtures.assertions import token_form
from tests.fixtures.database import FreshContextClient
from tests.fixtures.live import serve_in_thread
from tests.fixtures.tokens import basic
from tests.oauth.conftest import REDIRECT_URI
from tests.oauth.conftest import authorization_params
from tests.oauth.conftest import authorize
from tests.oauth.conftest import challenge_of
from tests.oauth.conftest import exchange
from tests.oauth.conftest import redirect_params
from tests.oauth.conftest import set_policy

VERIFIER = "v" * 43
LOINC = "http://loinc.org|"
# The audit's registration: 199 granular scopes of 52 characters.
AUDIT_SCOPES = [f"patient/Observation.rs?code={LOINC}{10000 + n}-{n % 10}" for n in range(199)]
AUDIT_SYSTEM_SCOPES = [scope.replace("patient/", "system/") for scope in AUDIT_SCOPES]
STAFF_ROLES = [role for role in DEFAULT_ROLES if role != PATIENT_ROLE]
TOKEN_URL = "https://auth.example.test/t/clinic-a/token"


def scopes_totalling(length: int, fixed: list[str], prefix: str) -> list[str]:
    """``fixed``, then distinct ``prefix<code>`` scopes: space-joined, exactly ``length`` long."""
    scopes = list(fixed)
    while length - len(" ".join(scopes)) > 2 * (len(prefix) + 8):
        scopes.append(f"{prefix}{len(scopes):07d}")
    scopes.append(prefix + "9" * (length - len(" ".join(scopes)) - 1 - len(prefix)))
    assert len(" ".join(scopes)) == length
    return scopes


def app_scopes(length: int) -> list[str]:
    fixed = ["launch", "launch/patient", "openid", "fhirUser", "offline_access"]
    return scopes_totalling(length, fixed, f"patient/Observation.rs?code={LOINC}")


def backend_scopes(length: int) -> list[str]:
    return scopes_totalling(length, [], f"system/Observation.rs?code={LOINC}")


def assert_invalid_scope(response, description: str) -> None:
    """The token endpoint's JSON error (RFC 6749 §5.2), never a token."""
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.json["error"] == "invalid_scope"
    assert description in response.json["error_description"]
    assert "access_token" not in response.json
    assert response.headers["Cache-Control"] == "no-store"


def access_tokens_recorded() -> int:
    db.session.expire_all()
    query = select(func.count()).select_from(IssuedToken).where(IssuedToken.kind == "access")
    return db.session.scalar(query)


@pytest.fixture
def answers(monkeypatch):
    """What the token fast path answered each request it considered (None: it declined)."""
    seen = []
    original = fastpath.issue
    monkeypatch.setattr(fastpath, "issue", lambda *args: seen.append(original(*args)) or seen[-1])
    return seen


# --- URLs longer than the bounds assume: refused where the token is signed --------------------

# A deployment far past ASSUMED_URL_LENGTH: its issuer is in iss, its FHIR base in aud.
SPRAWLING_URL = "https://auth.example.test/" + "p" * (2000 - len("https://auth.example.test/"))
TOO_LONG = f"The access token would be longer than {MAX_TOKEN_LENGTH} characters"


@pytest.fixture
def sprawling(make_app):
    deployment = make_app(AUTHSERVER_PUBLIC_URL=SPRAWLING_URL)
    deployment.test_client_class = FreshContextClient
    return deployment


def sprawling_fhir_base(slug: str = "clinic-a") -> str:
    return f"{SPRAWLING_URL}/t/{slug}/fhir"


def test_a_code_exchange_that_would_sign_too_long_a_token_is_invalid_scope(sprawling, clinic):
    client = sprawling.test_client()
    login(client, clinic.slug, "pat")
    params = authorization_params(clinic, verifier=VERIFIER, aud=sprawling_fhir_base())
    code = redirect_params(authorize(client, clinic, params))["code"]

    response = exchange(client, clinic, code, VERIFIER)

    assert_invalid_scope(response, TOO_LONG)
    assert access_tokens_recorded() == 0


def test_a_refresh_that_would_sign_too_long_a_token_is_invalid_scope(sprawling, clinic):
    client = sprawling.test_client()
    family = tokens.Authorization(
        tenant=clinic.tenant,
        client=clinic.public_app,
        scope="launch/patient openid fhirUser offline_access patient/Observation.rs",
        user=clinic.patient,
        context={
            "patient": "p-clinic-a",
            "fhirUser": f"{sprawling_fhir_base()}/Patient/p-clinic-a",
        },
    )
    refresh_token = tokens.issue_refresh_token(family)
    db.session.commit()
    data = {
        "grant_type": "refresh_token",
        "refresh_token": refresh_token,
        "client_id": clinic.public_app.client_id,
    }

    assert_invalid_scope(client.post("/t/clinic-a/token", data=data), TOO_LONG)
    assert access_tokens_recorded() == 0

    # Without fhirUser (a URL under the FHIR base) the token fits: the refresh token lived on.
    narrower = client.post("/t/clinic-a/token", data={**data, "scope": "patient/Observation.rs"})
    assert narrower.status_code == 200, narrower.json
    assert len(narrower.json["access_token"]) <= MAX_TOKEN_LENGTH


def test_a_backend_token_too_long_is_refused_on_the_fast_path_and_the_full_one(
    sprawling, tenant, make_backend_client, answers
):
    client = sprawling.test_client()
    scopes = backend_scopes(MAX_TOKEN_SCOPE_LENGTH)
    backend = make_backend_client(tenant, scopes=scopes)
    token_url = f"{SPRAWLING_URL}/t/clinic-a/token"
    short = client.post(
        "/t/clinic-a/token", data=token_form(backend.assertion(token_url), scopes[0])
    )
    assert short.status_code == 200 and answers[-1] is not None  # the fast path answered
    answers.clear()

    form = token_form(backend.assertion(token_url), " ".join(scopes))
    response = client.post("/t/clinic-a/token", data=form)

    assert_invalid_scope(response, TOO_LONG)
    assert answers == [None]
    assert access_tokens_recorded() == 1


class RecordingFhir:
    """A FHIR server's Patient search that records what it was sent and finds nobody."""

    def __init__(self) -> None:
        self.authorizations: list[str] = []
        self.server, self.url = serve_in_thread(self)

    def __call__(self, environ, start_response):
        self.authorizations.append(Request(environ).headers.get("Authorization", ""))
        bundle = {"resourceType": "Bundle", "type": "searchset", "entry": []}
        return Response(json.dumps(bundle), content_type="application/fhir+json")(
            environ, start_response
        )


@pytest.fixture
def fhir():
    recording = RecordingFhir()
    yield recording
    recording.server.shutdown()
    recording.server.server_close()


def test_the_patient_search_sends_no_token_too_long(app, sprawling, tenant, fhir):
    tenants.set_patient_search_url(tenant, f"{fhir.url}/Patient")
    db.session.commit()
    assert patients.search(tenant, "Smith") == []  # here the token fits
    assert len(fhir.authorizations[-1]) <= len("Bearer ") + MAX_TOKEN_LENGTH

    with sprawling.app_context(), pytest.raises(patients.PatientSearchFailed, match="unavailable"):
        patients.search(db.session.merge(tenant), "Smith")

    assert len(fhir.authorizations) == 1


# --- At the bounds, with every other claim as long as the arithmetic allows -------------------

# The issuer ({public URL}/t/{63-character slug}) and the FHIR base URL at ASSUMED_URL_LENGTH.
WIDEST_SLUG = "c" * 63
WIDEST_URL = "https://auth.example.test/" + "p" * (ASSUMED_URL_LENGTH - 66 - 26)
WIDEST_FHIR_BASE = "https://fhir.example.test/" + "r" * (ASSUMED_URL_LENGTH - 26)
WIDEST_ISSUER = f"{WIDEST_URL}/t/{WIDEST_SLUG}"


def fhir_context_of(length: int) -> list[dict]:
    """A fhirContext whose JSON is ``length`` characters, as the launch measures it."""
    context = [{"canonical": "https://x.test/" + "c" * (length - 34)}]
    assert len(json.dumps(context)) == length
    return context


@pytest.fixture
def widest(make_app, make_tenant, make_user, make_client):
    """A tenant, a user, an app and an EHR whose every claim but the scope and fhirContext is
    as long as tokens/limits.py allows: URLs, slug, client_id, roles, fhirUser."""
    assert len(WIDEST_ISSUER) == len(WIDEST_FHIR_BASE) == ASSUMED_URL_LENGTH
    deployment = make_app(AUTHSERVER_PUBLIC_URL=WIDEST_URL)
    deployment.test_client_class = FreshContextClient
    tenant = make_tenant(WIDEST_SLUG, fhir_base_url=WIDEST_FHIR_BASE)
    make_user(tenant, "doc", roles=STAFF_ROLES, fhir_user="PractitionerRole/" + "u" * 64)
    app = make_client(tenant, scopes=app_scopes(MAX_TOKEN_SCOPE_LENGTH)).client
    set_policy(tenant, app, trusted=True)
    ehr = make_client(tenant, kind=RESOURCE_SERVER, auth_method="client_secret_basic")
    return deployment.test_client(), tenant, app, ehr


def launch(client, ehr, **context):
    body = {
        "patient": "p" * 64,
        "encounter": "e" * 64,
        "fhirContext": fhir_context_of(MAX_FHIR_CONTEXT_LENGTH),
        "intent": "i" * MAX_INTENT_LENGTH,
        "need_patient_banner": False,
        **context,
    }
    headers = basic(ehr.client.client_id, ehr.client_secret)
    return client.post(f"/t/{WIDEST_SLUG}/launch", json=body, headers=headers)


def widest_authorization(client, app, launch_id: str, scope: str):
    params = {
        "response_type": "code",
        "client_id": app.client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": scope,
        "state": "state-123",
        "aud": WIDEST_FHIR_BASE,
        "launch": launch_id,
        "code_challenge": challenge_of(VERIFIER),
        "code_challenge_method": "S256",
    }
    return client.get(f"/t/{WIDEST_SLUG}/authorize?{urlencode(params)}")


def introspect(client, ehr, token: str) -> dict:
    response = client.post(
        f"/t/{WIDEST_SLUG}/introspect",
        data={"token": token},
        headers=basic(ehr.client.client_id, ehr.client_secret),
    )
    assert response.status_code == 200
    return response.json


def test_an_ehr_launch_at_every_bound_gets_tokens_that_introspect_active(widest):
    client, tenant, app, ehr = widest
    scope = app.allowed_scope
    launched = launch(client, ehr)
    assert launched.status_code == 201, launched.json
    login(client, WIDEST_SLUG, "doc")
    location = widest_authorization(client, app, launched.json["launch"], scope)
    code = dict(redirect_params(location))["code"]

    body = client.post(
        f"/t/{WIDEST_SLUG}/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "client_id": app.client_id,
            "code_verifier": VERIFIER,
        },
    ).json

    token = body["access_token"]
    assert body["scope"] == scope and len(scope) == MAX_TOKEN_SCOPE_LENGTH
    # Nearly full: only sub (a user id) and client_id are shorter than the arithmetic allows.
    assert MAX_TOKEN_LENGTH - 500 < len(token) <= MAX_TOKEN_LENGTH
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["roles"] == sorted(STAFF_ROLES) and claims["fhirUser"].startswith(
        WIDEST_FHIR_BASE
    )
    answer = introspect(client, ehr, token)
    assert answer["active"] is True and answer["scope"] == scope
    assert answer["fhirContext"] == fhir_context_of(MAX_FHIR_CONTEXT_LENGTH)

    refreshed = client.post(
        f"/t/{WIDEST_SLUG}/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": body["refresh_token"],
            "client_id": app.client_id,
        },
    ).json
    assert len(refreshed["access_token"]) <= MAX_TOKEN_LENGTH
    assert introspect(client, ehr, refreshed["access_token"])["active"] is True
    assert introspect(client, ehr, token) == {"active": False}  # replaced by the refresh


def test_backend_and_introspect_tokens_at_the_bound_introspect_active(
    widest, make_backend_client, answers
):
    client, tenant, app, ehr = widest
    scopes = backend_scopes(MAX_TOKEN_SCOPE_LENGTH)
    backend = make_backend_client(tenant, scopes=scopes)
    form = token_form(backend.assertion(f"{WIDEST_ISSUER}/token"), " ".join(scopes))

    body = client.post(f"/t/{WIDEST_SLUG}/token", data=form).json

    assert answers[-1] is not None  # the fast path issued it
    assert len(body["access_token"]) <= MAX_TOKEN_LENGTH
    assert body["scope"] == " ".join(scopes)
    introspect_form = {"grant_type": "client_credentials", "scope": "introspect"}
    headers = basic(ehr.client.client_id, ehr.client_secret)
    bearer = client.post(f"/t/{WIDEST_SLUG}/token", data=introspect_form, headers=headers).json
    assert len(bearer["access_token"]) <= MAX_TOKEN_LENGTH
    answer = client.post(
        f"/t/{WIDEST_SLUG}/introspect",
        data={"token": body["access_token"]},
        headers={"Authorization": f"Bearer {bearer['access_token']}"},
    ).json
    assert answer["active"] is True and answer["scope"] == " ".join(scopes)


def test_the_patient_search_token_at_the_widest_urls_introspects_active(widest):
    client, tenant, app, ehr = widest
    with client.application.app_context():
        token = patients.server_token(db.session.merge(tenant))

    assert len(token) <= MAX_TOKEN_LENGTH
    assert introspect(client, ehr, token)["active"] is True
