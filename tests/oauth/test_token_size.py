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

from authserver import config
from authserver.accounts.roles import DEFAULT_ROLES
from authserver.accounts.roles import PATIENT_ROLE
from authserver.clients import service as clients
from authserver.clients.models import RESOURCE_SERVER
from authserver.errors import ValidationError
from authserver.extensions import db
from authserver.launch import patients
from authserver.oauth import fastpath
from authserver.oauth.models import AuthorizationCode
from authserver.smart import granular
from authserver.smart.scopes import parse_scope
from authserver.tenancy import service as tenants
from authserver.tenancy.urls import MAX_PUBLIC_URL_LENGTH
from authserver.tokens import service as tokens
from authserver.tokens.limits import ASSUMED_URL_LENGTH
from authserver.tokens.limits import MAX_FHIR_CONTEXT_LENGTH
from authserver.tokens.limits import MAX_INTENT_LENGTH
from authserver.tokens.limits import MAX_TOKEN_LENGTH
from authserver.tokens.limits import MAX_TOKEN_SCOPE_LENGTH
from authserver.tokens.models import IssuedToken
from tests.fixtures.accounts import login
from tests.fixtures.assertions import token_form
from tests.fixtures.commands import refused
from tests.fixtures.database import FreshContextClient
from tests.fixtures.live import serve_in_thread
from tests.fixtures.tokens import basic
from tests.oauth.conftest import REDIRECT_URI
from tests.oauth.conftest import authorization_params
from tests.oauth.conftest import authorize
from tests.oauth.conftest import challenge_of
from tests.oauth.conftest import exchange
from tests.oauth.conftest import get_code
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


# --- The audit's 14 kB request, at every door ------------------------------------------------


def test_registration_refuses_the_audits_scopes_and_takes_scopes_at_the_bound(tenant, make_client):
    with pytest.raises(
        ValidationError, match="the scopes take 10546 characters, more than the 2048"
    ):
        make_client(tenant, scopes=AUDIT_SCOPES)
    with pytest.raises(ValidationError, match="more than the 2048"):
        make_client(tenant, scopes=app_scopes(MAX_TOKEN_SCOPE_LENGTH + 1))

    app = make_client(tenant, scopes=app_scopes(MAX_TOKEN_SCOPE_LENGTH)).client

    assert len(app.allowed_scope) == MAX_TOKEN_SCOPE_LENGTH
    with pytest.raises(ValidationError, match="more than the 2048"):
        clients.set_scopes(tenant, app.client_id, app_scopes(MAX_TOKEN_SCOPE_LENGTH + 1))
    db.session.rollback()
    assert len(db.session.get(type(app), app.id).allowed_scope) == MAX_TOKEN_SCOPE_LENGTH


def test_the_cli_refuses_the_audits_scopes_in_one_line(cli, tenant, make_client):
    scope_args = [part for scope in AUDIT_SCOPES for part in ("--scope", scope)]
    create = ["client", "create", "clinic-a", "--name", "Audit", "--public"]
    create += ["--redirect-uri", REDIRECT_URI]

    line = refused(cli, *create, *scope_args)

    assert "the scopes take 10546 characters" in line and "register fewer" in line
    app = make_client(tenant, scopes=["launch/patient", "patient/*.rs"]).client
    line = refused(cli, "client", "set-scopes", "clinic-a", app.client_id, *scope_args)
    assert "more than the 2048 an access token can carry" in line
    db.session.refresh(app)
    assert app.allowed_scope == "launch/patient patient/*.rs"


def test_an_authorization_request_for_the_audits_scopes_is_invalid_scope(client, clinic):
    # The public app registered no scopes: only the user's roles bound it.
    login(client, clinic.slug, "pat")
    scope = " ".join(["launch/patient", *AUDIT_SCOPES])

    response = client.get(
        "/t/clinic-a/authorize", query_string=authorization_params(clinic, scope=scope)
    )

    params = redirect_params(response)
    assert params["error"] == "invalid_scope"
    assert params["error_description"].startswith("The scope is longer than the 2048 characters")
    assert params["state"] == "state-123" and "code" not in params
    assert db.session.scalar(select(func.count()).select_from(AuthorizationCode)) == 0


def test_a_scope_too_long_is_shown_not_redirected_before_the_redirect_uri_checks_out(
    client, clinic
):
    """RFC 6749 §4.1.2.1: no error goes to a redirect URI the client did not register."""
    login(client, clinic.slug, "pat")
    params = authorization_params(
        clinic, scope=" ".join(AUDIT_SCOPES), redirect_uri="https://attacker.example/cb"
    )

    response = client.get("/t/clinic-a/authorize", query_string=params)

    assert response.status_code == 400 and "Location" not in response.headers
    assert '<code class="error-code">invalid_request</code>' in response.get_data(as_text=True)


def test_a_backend_request_for_the_audits_scopes_is_invalid_scope(
    client, tenant, make_backend_client, answers
):
    backend = make_backend_client(tenant, scopes=["system/Observation.rs"])
    form = token_form(backend.assertion(TOKEN_URL), " ".join(AUDIT_SYSTEM_SCOPES))

    response = client.post("/t/clinic-a/token", data=form)

    assert_invalid_scope(response, "The scope is longer than the 2048 characters")
    assert not any(answers)  # the fast path issued nothing (a body this long, it never sees)
    assert access_tokens_recorded() == 0


def test_a_refresh_asking_for_the_audits_scopes_is_invalid_scope(client, clinic):
    login(client, clinic.slug, "pat")
    code = get_code(client, clinic, VERIFIER, scope="launch/patient offline_access patient/*.rs")
    family = exchange(client, clinic, code, VERIFIER).json
    data = {
        "grant_type": "refresh_token",
        "refresh_token": family["refresh_token"],
        "client_id": clinic.public_app.client_id,
        "scope": " ".join(AUDIT_SCOPES),
    }

    response = client.post("/t/clinic-a/token", data=data)

    assert_invalid_scope(response, "The scope is longer than the 2048 characters")
    data.pop("scope")
    assert client.post("/t/clinic-a/token", data=data).status_code == 200  # still good


def test_granular_boxes_ticked_past_the_bound_are_invalid_scope(client, clinic):
    """A user may share categories instead of a whole type (SCOPE-06): the nine granular boxes
    of Observation and Condition are 800 characters longer than the two scopes they replace."""
    broad = ["patient/Observation.rs", "patient/Condition.rs"]
    asked = scopes_totalling(
        1900, ["launch/patient", *broad], f"patient/Observation.rs?code={LOINC}"
    )
    categories = [sub.text for scope in broad for sub in granular.sub_scopes(parse_scope(scope))]
    login(client, clinic.slug, "pat")
    params = authorization_params(clinic, scope=" ".join(asked))

    refused = redirect_params(authorize(client, clinic, params, untick=broad, tick=categories))

    assert refused["error"] == "invalid_scope" and "code" not in refused
    assert "scopes to grant are longer than the 2048" in refused["error_description"]
    granted = redirect_params(authorize(client, clinic, params, untick=broad, tick=categories[:1]))
    assert "code" in granted


# --- Registrations and families stored before the bounds ---------------------------------------


def stored_before_the_bounds(client_row, scopes: list[str]) -> None:
    """A registration written before registration checked the total (no migration changes it)."""
    client_row.allowed_scope = " ".join(scopes)
    db.session.commit()


def test_a_registration_over_the_bound_still_gets_the_tokens_that_fit(client, clinic, make_gateway):
    stored_before_the_bounds(clinic.public_app, ["launch/patient", *AUDIT_SCOPES])
    login(client, clinic.slug, "pat")
    asked = " ".join(["launch/patient", *AUDIT_SCOPES[:3]])

    body = exchange(client, clinic, get_code(client, clinic, VERIFIER, scope=asked), VERIFIER).json

    assert body["scope"] == asked
    answer = make_gateway(clinic.tenant).introspect(client, body["access_token"]).json
    assert answer["active"] is True and answer["scope"] == asked


def test_a_wildcard_spelt_out_as_a_stored_registration_over_the_bound_is_invalid_scope(
    client, clinic
):
    # patient/Observation.rs narrowed by 199 granular scopes is those 199 scopes: a 14 kB token.
    stored_before_the_bounds(clinic.public_app, ["launch/patient", *AUDIT_SCOPES])
    login(client, clinic.slug, "pat")
    params = authorization_params(clinic, scope="launch/patient patient/Observation.rs")

    params = redirect_params(client.get("/t/clinic-a/authorize", query_string=params))

    assert params["error"] == "invalid_scope" and "code" not in params
    assert "scopes to grant are longer than the 2048" in params["error_description"]


def test_a_backend_wildcard_spelt_out_as_a_stored_registration_is_invalid_scope(
    client, tenant, make_backend_client, answers
):
    backend = make_backend_client(tenant)
    stored_before_the_bounds(backend.registration.client, AUDIT_SYSTEM_SCOPES)
    few = " ".join(AUDIT_SYSTEM_SCOPES[:3])
    first = client.post("/t/clinic-a/token", data=token_form(backend.assertion(TOKEN_URL), few))
    assert first.json["scope"] == few
    answers.clear()

    form = token_form(backend.assertion(TOKEN_URL), "system/Observation.rs")
    response = client.post("/t/clinic-a/token", data=form)

    assert_invalid_scope(response, "The scopes to grant are longer than the 2048 characters")
    assert answers == [None]


def refresh_request(family: tokens.Authorization) -> dict[str, str]:
    """The token request refreshing a refresh token issued now for ``family``."""
    refresh_token = tokens.issue_refresh_token(family)
    db.session.commit()
    return {
        "grant_type": "refresh_token",
        "refresh_token": refresh_token,
        "client_id": family.client.client_id,
    }


def test_a_family_granted_before_the_bounds_is_refused_a_refresh_and_kept(client, clinic):
    """A refresh token of the audit's 199 scopes (issued before the bounds) refreshes to no
    14 kB token; it stays good for a refresh that asks for less."""
    stored_before_the_bounds(clinic.public_app, ["launch/patient", *AUDIT_SCOPES])
    family = tokens.Authorization(
        tenant=clinic.tenant,
        client=clinic.public_app,
        scope=" ".join(["launch/patient", "offline_access", *AUDIT_SCOPES]),
        user=clinic.patient,
        context={"patient": "p-clinic-a"},
    )
    data = refresh_request(family)

    assert_invalid_scope(client.post("/t/clinic-a/token", data=data), "scopes to grant are longer")
    assert access_tokens_recorded() == 0

    narrower = client.post("/t/clinic-a/token", data={**data, "scope": AUDIT_SCOPES[0]})
    assert narrower.status_code == 200 and narrower.json["scope"] == AUDIT_SCOPES[0]


# --- URLs longer than the bounds assume: refused where the token is signed --------------------

# A deployment far past ASSUMED_URL_LENGTH: its issuer is in iss, its FHIR base in aud.
SPRAWLING_URL = "https://auth.example.test/" + "p" * (2000 - len("https://auth.example.test/"))
TOO_LONG = f"The access token would be longer than {MAX_TOKEN_LENGTH} characters"


@pytest.fixture
def sprawling(make_app, monkeypatch):
    """A deployment whose URLs no token can carry. The app refuses to start with such a public
    URL (config.public_url), and tenant create such a FHIR base URL: that bound is lifted here,
    for what those checks never saw (a FHIR base URL stored before them)."""
    monkeypatch.setattr(config, "MAX_PUBLIC_URL_LENGTH", len(SPRAWLING_URL))
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
    data = refresh_request(family)

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

# The public URL at its bound, so the issuer ({public URL}/t/{63-character slug}) is as long as
# one can be (its default FHIR base, {issuer}/fhir, at ASSUMED_URL_LENGTH), and the FHIR base
# URL at ASSUMED_URL_LENGTH.
WIDEST_SLUG = "c" * 63
WIDEST_URL = "https://auth.example.test/" + "p" * (MAX_PUBLIC_URL_LENGTH - 26)
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
    assert len(f"{WIDEST_ISSUER}/fhir") == len(WIDEST_FHIR_BASE) == ASSUMED_URL_LENGTH
    deployment = make_app(AUTHSERVER_PUBLIC_URL=WIDEST_URL)
    deployment.test_client_class = FreshContextClient
    tenant = make_tenant(WIDEST_SLUG, fhir_base_url=WIDEST_FHIR_BASE)
    make_user(tenant, "doc", roles=STAFF_ROLES, fhir_user="PractitionerRole/" + "u" * 64)
    app = make_client(tenant, scopes=app_scopes(MAX_TOKEN_SCOPE_LENGTH)).client
    set_policy(tenant, app, trusted=True)
    ehr = make_client(
        tenant, kind=RESOURCE_SERVER, auth_method="client_secret_basic", may_launch=True
    )
    return deployment.test_client(), tenant, app, ehr


def launch(client, ehr, app, **context):
    body = {
        "client_id": app.client_id,
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
    launched = launch(client, ehr, app)
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


def test_a_scope_one_character_past_the_bound_is_invalid_scope(widest):
    client, tenant, app, ehr = widest
    too_long = " ".join(app_scopes(MAX_TOKEN_SCOPE_LENGTH + 1))
    launched = launch(client, ehr, app).json["launch"]
    login(client, WIDEST_SLUG, "doc")

    params = redirect_params(widest_authorization(client, app, launched, too_long))

    assert params["error"] == "invalid_scope" and "code" not in params


@pytest.mark.parametrize(
    ("past", "at"),
    [
        (
            {"fhirContext": fhir_context_of(MAX_FHIR_CONTEXT_LENGTH + 1)},
            {"fhirContext": fhir_context_of(MAX_FHIR_CONTEXT_LENGTH)},
        ),
        # A non-ASCII character takes 6 in the token's JSON: 196 characters are 201 there.
        ({"intent": "é" + "i" * (MAX_INTENT_LENGTH - 5)}, {"intent": "é" + "i" * 194}),
    ],
    ids=["fhir-context", "intent"],
)
def test_a_launch_context_past_its_bound_is_invalid_request(widest, past, at):
    client, tenant, app, ehr = widest

    response = launch(client, ehr, app, **past)

    assert response.status_code == 400
    assert response.json["error"] == "invalid_request"
    assert "at most" in response.json["error_description"]
    assert launch(client, ehr, app, **at).status_code == 201


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
