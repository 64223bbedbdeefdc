"""EHR launch (SMART-REQUIREMENTS §1.8, AUTHZ-20, TOK-09..11): launch ids and their context."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import jwt
import pytest
import requests
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from authserver.audit.models import AuditRecord
from authserver.errors import ValidationError
from authserver.extensions import db
from authserver.launch import service as launches
from authserver.launch.models import Launch
from authserver.models import utcnow
from tests.fixtures.accounts import login
from tests.fixtures.live import Browser
from tests.fixtures.live import consent_boxes
from tests.oauth.conftest import app_session
from tests.oauth.conftest import authorization_params
from tests.oauth.conftest import authorize
from tests.oauth.conftest import exchange
from tests.oauth.conftest import new_verifier
from tests.oauth.conftest import redirect_params
from tests.oauth.conftest import verify_with_jwks

EHR_SCOPE = "launch openid fhirUser offline_access user/*.rs patient/*.rs"
FHIR_CONTEXT = [
    {"reference": "DiagnosticReport/dr-7"},
    {"reference": "Patient/mom-1", "role": "https://example.org/roles/mother"},
    {"canonical": "http://example.org/Questionnaire/q|1.0", "type": "Questionnaire"},
]
VERIFIER = new_verifier()
# A FHIR Identifier as deep as the datatype goes: fhirContext, item, identifier, assigner,
# its identifier, type, coding, a coding: 8 levels.
DEEP_IDENTIFIER = {
    "system": "urn:oid:2.16.840.1.113883.4.1",
    "value": "123-45-6789",
    "assigner": {
        "identifier": {
            "value": "ssa",
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203"}]},
        }
    },
}


def nested_identifier(levels):
    """An identifier object that nests ``levels`` objects deep."""
    identifier = {"value": "x"}
    for _ in range(levels - 1):
        identifier = {"extension": identifier}
    return identifier


def make_ehr(make_client, tenant, **metadata):
    """A resource server of ``tenant`` registered to start launches: the EHR's credential."""
    return make_client(
        tenant,
        kind="resource_server",
        auth_method="client_secret_basic",
        may_launch=True,
        **metadata,
    )


@pytest.fixture
def ehr(make_client, clinic):
    return make_ehr(make_client, clinic.tenant)


def basic(client_id, secret):
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


def new_launch(clinic, **context):
    """A launch at ``clinic`` for its public app, unless ``client_id`` names another."""
    context.setdefault("patient", "pt-1")
    context.setdefault("client_id", clinic.public_app.client_id)
    launch_id, _ = launches.create_launch(clinic.tenant, actor="test", **context)
    db.session.commit()
    return launch_id


# --- Full flow with Authlib's client, EHR-started, at two tenants ----------------------------


def test_ehr_launch_with_encounter_and_fhir_context_at_two_tenants(
    live_server, clinic, other_clinic, make_client
):
    server = live_server()
    issued = {}
    for current in (clinic, other_clinic):
        ehr = make_ehr(make_client, current.tenant)
        started = requests.post(
            f"{server.url}/t/{current.slug}/launch",
            json={
                "patient": f"pt-{current.slug}",
                "encounter": "enc-9",
                "fhirContext": FHIR_CONTEXT,
                "intent": "reconcile-medications",
                "need_patient_banner": True,
                "client_id": current.confidential_app.client_id,
            },
            auth=(ehr.client.client_id, ehr.client_secret),
            timeout=10,
        )
        assert started.status_code == 201, started.text
        assert started.headers["Cache-Control"] == "no-store"
        launch = started.json()
        assert launch["iss"] == server.fhir_base(current.slug)

        session = app_session(server, current, confidential=True, scope=EHR_SCOPE)
        verifier = new_verifier()
        url, _ = session.create_authorization_url(
            server.authorize_url(current.slug),
            code_verifier=verifier,
            aud=launch["iss"],
            launch=launch["launch"],
        )
        location = Browser("doc").authorize(url)
        token = session.fetch_token(
            server.token_url(current.slug), authorization_response=location, code_verifier=verifier
        )
        assert token["patient"] == f"pt-{current.slug}"
        assert token["encounter"] == "enc-9"
        assert token["fhirContext"] == FHIR_CONTEXT
        assert token["need_patient_banner"] is True
        assert token["intent"] == "reconcile-medications"
        assert token["smart_style_url"] == server.issuer(current.slug) + "/smart-style.json"
        assert set(token["scope"].split()) >= {"launch", "openid", "fhirUser", "offline_access"}
        style = requests.get(token["smart_style_url"], timeout=10)
        assert style.status_code == 200 and style.json()["color_highlight"]
        issued[current.slug] = token

    for slug, token in issued.items():
        other = "clinic-b" if slug == "clinic-a" else "clinic-a"
        claims = verify_with_jwks(
            token["access_token"], server.jwks(slug), audience=server.fhir_base(slug)
        )
        assert claims["patient"] == f"pt-{slug}" and claims["encounter"] == "enc-9"
        assert claims["fhirContext"] == FHIR_CONTEXT
        assert claims["roles"] == ["physician"]
        with pytest.raises(Exception, match="no key"):
            verify_with_jwks(
                token["access_token"], server.jwks(other), audience=server.fhir_base(slug)
            )


# --- Authorize with a launch -----------------------------------------------------------------


@pytest.fixture
def doctor(client, clinic):
    login(client, clinic.slug, "doc")
    return client


def ehr_params(clinic, launch_id, **overrides):
    return authorization_params(
        clinic, verifier=VERIFIER, scope=EHR_SCOPE, launch=launch_id, **overrides
    )


def assert_refused(response, code="invalid_request"):
    params = redirect_params(response)
    assert params["error"] == code and "code" not in params
    assert params["state"] == "state-123"


def test_launch_context_reaches_the_token_response(doctor, clinic):
    launch_id = new_launch(clinic, patient="pt-3")
    code = redirect_params(authorize(doctor, clinic, ehr_params(clinic, launch_id)))["code"]
    body = exchange(doctor, clinic, code, VERIFIER).json
    assert body["patient"] == "pt-3"
    assert body["need_patient_banner"] is False  # present in every EHR launch
    assert "encounter" not in body and "fhirContext" not in body


def test_ehr_launch_scope_and_context_survive_refresh(doctor, clinic):
    """§3.1 items 15 and 17: the granted scope echoes the identity and launch scopes, and the
    context (``need_patient_banner`` included) is there again after a refresh."""
    scope = "launch openid fhirUser offline_access patient/Patient.rs"  # g10's EHR patient launch
    launch_id = new_launch(clinic, patient="pt-3", encounter="enc-4")
    params = authorization_params(clinic, verifier=VERIFIER, scope=scope, launch=launch_id)
    code = redirect_params(authorize(doctor, clinic, params))["code"]
    first = exchange(doctor, clinic, code, VERIFIER).json
    assert first["scope"] == scope
    refreshed = doctor.post(
        "/t/clinic-a/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": first["refresh_token"],
            "client_id": clinic.public_app.client_id,
        },
    ).json
    assert refreshed["scope"] == scope
    assert (refreshed["patient"], refreshed["encounter"]) == ("pt-3", "enc-4")
    assert refreshed["need_patient_banner"] is False


def test_introspection_repeats_every_launch_context_member_of_the_token_response(
    doctor, clinic, make_gateway
):
    # INT-02: the same members with the same values, for the access and the refresh token.
    scope = "launch openid fhirUser offline_access patient/Patient.rs"
    launch_id = new_launch(
        clinic,
        patient="pt-3",
        encounter="enc-4",
        fhir_context=FHIR_CONTEXT,
        intent="reconcile-medications",
        need_patient_banner=True,
    )
    params = authorization_params(clinic, verifier=VERIFIER, scope=scope, launch=launch_id)
    code = redirect_params(authorize(doctor, clinic, params))["code"]
    body = exchange(doctor, clinic, code, VERIFIER).json
    gateway = make_gateway(clinic.tenant)
    members = ("patient", "encounter", "fhirContext", "need_patient_banner", "intent")
    members += ("smart_style_url",)
    expected = {name: body[name] for name in members if name in body}
    assert set(expected) >= {"patient", "encounter", "fhirContext", "need_patient_banner", "intent"}

    for token in (body["access_token"], body["refresh_token"]):
        answer = gateway.introspect(doctor, token).json
        assert {name: answer.get(name) for name in expected} == expected


# --- SCOPE-08: the context rides only with the scopes that were granted ---------------------


def test_unticking_launch_shares_none_of_the_ehr_context_and_leaves_the_launch(doctor, clinic):
    launch_id = new_launch(clinic, patient="pt-3", encounter="enc-4", intent="review")
    params = authorization_params(
        clinic, verifier=VERIFIER, scope="launch openid user/*.rs", launch=launch_id
    )

    code = redirect_params(authorize(doctor, clinic, params, untick=("launch",)))["code"]
    body = exchange(doctor, clinic, code, VERIFIER).json

    assert "launch" not in body["scope"].split()
    assert not {"patient", "encounter", "intent", "need_patient_banner"} & set(body)
    assert db.session.scalar(db.select(Launch)).used_at is None


def test_an_app_not_registered_for_launch_gets_no_ehr_context(doctor, clinic, make_client):
    app = make_client(clinic.tenant, scopes=["openid", "user/*.rs"]).client
    launch_id = new_launch(clinic, patient="pt-3", encounter="enc-4", client_id=app.client_id)
    params = authorization_params(
        clinic, app, VERIFIER, scope="launch openid user/*.rs", launch=launch_id
    )

    code = redirect_params(authorize(doctor, clinic, params))["code"]
    body = exchange(doctor, clinic, code, VERIFIER, app=app).json

    assert "launch" not in body["scope"].split() and "openid" in body["scope"].split()
    assert "patient" not in body and "encounter" not in body
    assert db.session.scalar(db.select(Launch)).used_at is None


def test_unticking_launch_but_keeping_patient_scopes_is_access_denied(doctor, clinic):
    launch_id = new_launch(clinic, patient="pt-3")
    params = ehr_params(clinic, launch_id)  # launch with patient/ scopes
    assert_refused(authorize(doctor, clinic, params, untick=("launch",)), "access_denied")


def test_unticking_launch_patient_names_no_patient_and_asks_for_none(doctor, clinic):
    params = authorization_params(
        clinic, verifier=VERIFIER, scope="launch/patient openid user/*.rs"
    )

    response = authorize(doctor, clinic, params, untick=("launch/patient",))
    body = exchange(doctor, clinic, redirect_params(response)["code"], VERIFIER).json

    assert "launch/patient" not in body["scope"].split()
    assert "patient" not in body


# --- TOK-09, SCOPE-09: a context scope is granted only with something in context ------------

CONTEXT_SCOPE_CASES = {
    # name: (launch context, context scope asked for, whether the launch can fill it)
    "encounter-present": ({"encounter": "enc-4"}, "launch/encounter", True),
    "encounter-absent": ({}, "launch/encounter", False),
    "encounter-only-in-fhircontext": (
        {"fhir_context": [{"reference": "Encounter/e-0", "role": "https://example.org/prior"}]},
        "launch/encounter",
        False,  # TOK-09: launch/encounter promises the encounter member
    ),
    "encounter-with-a-role-in-fhircontext": (
        {"fhir_context": [{"reference": "Encounter/e-0", "role": "https://example.org/prior"}]},
        "launch/encounter?role=https://example.org/prior",
        True,
    ),
    "typed-item-present": (
        {"fhir_context": [{"reference": "ImagingStudy/is-1"}]},
        "launch/imagingstudy",
        True,
    ),
    "typed-item-by-type": (
        {"fhir_context": [{"identifier": {"value": "1.2.840.1"}, "type": "ImagingStudy"}]},
        "launch/imagingstudy",
        True,
    ),
    "typed-item-of-another-role": (  # SCOPE-09: an unknown role still yields the type
        {"fhir_context": [{"reference": "List/l-1", "role": "https://example.org/at-home"}]},
        "launch/list?role=https://example.org/in-hospital",
        True,
    ),
    "typed-item-absent": (
        {"fhir_context": [{"reference": "DiagnosticReport/dr-7"}]},
        "launch/imagingstudy",
        False,
    ),
    "no-fhircontext": ({"encounter": "enc-4"}, "launch/imagingstudy", False),
    "untyped-item": (
        {"fhir_context": [{"canonical": "http://example.org/ImagingStudy/q"}]},
        "launch/imagingstudy",
        False,
    ),
}


@pytest.mark.parametrize(
    ("context", "context_scope", "filled"),
    list(CONTEXT_SCOPE_CASES.values()),
    ids=list(CONTEXT_SCOPE_CASES),
)
def test_an_ehr_launch_grants_a_context_scope_only_with_that_context(
    doctor, clinic, make_gateway, context, context_scope, filled
):
    """The granted scope never promises context the launch does not hold: not on the consent
    page, nor in the token response, the access token or introspection."""
    launch_id = new_launch(clinic, patient="pt-3", **context)
    scope = f"launch {context_scope} openid fhirUser user/Patient.rs"
    params = authorization_params(clinic, verifier=VERIFIER, scope=scope, launch=launch_id)
    expected = scope if filled else "launch openid fhirUser user/Patient.rs"

    page = doctor.get("/t/clinic-a/authorize", query_string=params).get_data(as_text=True)
    offered = {scope for value, _ in consent_boxes(page) for scope in value.split()}
    code = redirect_params(authorize(doctor, clinic, params))["code"]
    body = exchange(doctor, clinic, code, VERIFIER).json

    assert (context_scope in offered) is filled
    assert body["scope"] == expected
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["scope"] == expected
    introspected = make_gateway(clinic.tenant).introspect(doctor, body["access_token"]).json
    assert introspected["scope"] == expected
    assert body.get("encounter") == context.get("encounter")
    assert body.get("fhirContext") == context.get("fhir_context")


def test_unticking_launch_takes_the_context_scopes_only_it_could_fill(doctor, clinic):
    """Without ``launch`` the EHR's context stays behind, so ``launch/encounter`` would be
    granted with no encounter; ``launch/patient`` keeps its own rule (the patient is asked for)."""
    launch_id = new_launch(clinic, patient="pt-3", encounter="enc-4")
    scope = "launch launch/encounter openid fhirUser user/Patient.rs"
    params = authorization_params(clinic, verifier=VERIFIER, scope=scope, launch=launch_id)

    code = redirect_params(authorize(doctor, clinic, params, untick=("launch",)))["code"]
    body = exchange(doctor, clinic, code, VERIFIER).json

    assert body["scope"] == "openid fhirUser user/Patient.rs"
    assert "encounter" not in body


def test_unticking_launch_keeping_only_a_context_scope_approves_nothing(doctor, clinic):
    launch_id = new_launch(clinic, patient="pt-3", encounter="enc-4")
    params = authorization_params(
        clinic, verifier=VERIFIER, scope="launch launch/encounter", launch=launch_id
    )
    assert_refused(authorize(doctor, clinic, params, untick=("launch",)), "access_denied")
    assert db.session.scalar(db.select(Launch)).used_at is None


def test_launch_is_used_once(doctor, clinic):
    launch_id = new_launch(clinic)
    assert "code" in redirect_params(authorize(doctor, clinic, ehr_params(clinic, launch_id)))
    assert_refused(doctor.get("/t/clinic-a/authorize", query_string=ehr_params(clinic, launch_id)))


def test_unknown_launch_is_refused(doctor, clinic):
    params = ehr_params(clinic, "asln_unknown")
    assert_refused(doctor.get("/t/clinic-a/authorize", query_string=params))


def test_expired_launch_is_refused(doctor, clinic):
    launch_id = new_launch(clinic)
    db.session.execute(update(Launch).values(expires_at=utcnow() - timedelta(seconds=1)))
    db.session.commit()
    assert_refused(doctor.get("/t/clinic-a/authorize", query_string=ehr_params(clinic, launch_id)))


def test_deleting_the_ehr_credential_ends_the_launches_it_started(doctor, clinic, ehr, cli):
    """Deleting the credential is how an admin stops trusting it: a launch it started and
    nobody used yet is refused at once, not for the rest of its lifetime."""
    headers = basic(ehr.client.client_id, ehr.client_secret)
    body = {"patient": "pt-1", "client_id": clinic.public_app.client_id}
    started = doctor.post("/t/clinic-a/launch", json=body, headers=headers)
    assert started.status_code == 201, started.json
    kept_id = new_launch(clinic)  # another EHR's (here the CLI's): left alone

    result = cli.invoke(args=["client", "delete", "clinic-a", ehr.client.client_id])

    assert result.exit_code == 0, result.output
    params = ehr_params(clinic, started.json["launch"])
    assert_refused(doctor.get("/t/clinic-a/authorize", query_string=params))
    assert "code" in redirect_params(authorize(doctor, clinic, ehr_params(clinic, kept_id)))
    event = db.session.scalar(db.select(AuditRecord).where(AuditRecord.event == "client:deleted"))
    assert event.details["launches_ended"] == 1


def test_launch_of_another_tenant_is_refused(doctor, clinic, other_clinic):
    launch_id = new_launch(other_clinic)
    assert_refused(doctor.get("/t/clinic-a/authorize", query_string=ehr_params(clinic, launch_id)))


def test_a_launch_digest_is_unique_within_its_tenant_only(clinic, other_clinic):
    """Launches are found by tenant and digest, so, like every other key, the digest is unique
    per tenant: the same one at another tenant is that tenant's own launch."""
    launch_id, row = launches.create_launch(
        clinic.tenant, patient="pt-a", client_id=clinic.public_app.client_id, actor="test"
    )
    db.session.commit()

    def twin(at, patient):
        return Launch(
            tenant_id=at.tenant.id,
            launch_digest=row.launch_digest,
            patient=patient,
            client_pk=at.public_app.id,
            created_by="test",
            expires_at=row.expires_at,
        )

    db.session.add(twin(other_clinic, "pt-b"))
    db.session.commit()
    db.session.add(twin(clinic, "pt-c"))
    with pytest.raises(IntegrityError):
        db.session.commit()
    db.session.rollback()

    here = launches.resolve(clinic.tenant, launch_id, clinic.public_app)
    there = launches.resolve(other_clinic.tenant, launch_id, other_clinic.public_app)
    assert (here.row.patient, there.row.patient) == ("pt-a", "pt-b")


def test_launch_bound_to_another_app_is_refused(doctor, clinic):
    launch_id = new_launch(clinic, client_id=clinic.confidential_app.client_id)
    assert_refused(doctor.get("/t/clinic-a/authorize", query_string=ehr_params(clinic, launch_id)))


def test_launch_scope_without_launch_is_refused(doctor, clinic):
    params = ehr_params(clinic, None)
    assert_refused(doctor.get("/t/clinic-a/authorize", query_string=params))


def test_launch_default_lifetime_is_minutes(clinic):
    _, row = launches.create_launch(
        clinic.tenant, patient="pt-1", client_id=clinic.public_app.client_id, actor="test"
    )
    assert timedelta(minutes=4) < row.expires_at - row.created_at <= timedelta(minutes=5)


def test_patient_cannot_take_another_patients_launch(client, clinic):
    login(client, clinic.slug, "pat")
    launch_id = new_launch(clinic, patient="somebody-else")
    params = authorization_params(
        clinic, verifier=VERIFIER, scope="launch openid patient/*.rs", launch=launch_id
    )
    assert_refused(client.get("/t/clinic-a/authorize", query_string=params), "access_denied")


def test_patient_portal_launch_of_own_record(client, clinic):
    login(client, clinic.slug, "pat")
    launch_id = new_launch(clinic, patient="p-clinic-a")
    params = authorization_params(
        clinic, verifier=VERIFIER, scope="launch openid patient/*.rs", launch=launch_id
    )
    code = redirect_params(authorize(client, clinic, params))["code"]
    assert exchange(client, clinic, code, VERIFIER).json["patient"] == "p-clinic-a"


def test_refresh_keeps_the_launch_context(doctor, clinic):
    launch_id = new_launch(clinic, patient="pt-5", encounter="enc-5")
    code = redirect_params(authorize(doctor, clinic, ehr_params(clinic, launch_id)))["code"]
    first = exchange(doctor, clinic, code, VERIFIER).json
    refreshed = doctor.post(
        "/t/clinic-a/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": first["refresh_token"],
            "client_id": clinic.public_app.client_id,
        },
    ).json
    assert refreshed["patient"] == "pt-5" and refreshed["encounter"] == "enc-5"


# --- POST /launch ----------------------------------------------------------------------------


def launch_body(clinic, **members):
    """A good ``POST /launch`` body: a patient, for ``clinic``'s public app."""
    return {"patient": "pt-1", "client_id": clinic.public_app.client_id, **members}


def test_post_launch_needs_a_resource_server_credential(client, clinic, ehr):
    response = client.post("/t/clinic-a/launch", json=launch_body(clinic))
    assert response.status_code == 401 and response.json["error"] == "invalid_client"
    response = client.post(
        "/t/clinic-a/launch",
        json=launch_body(clinic),
        headers=basic(ehr.client.client_id, "wrong"),
    )
    assert response.status_code == 401 and response.json["error"] == "invalid_client"


def test_post_launch_refuses_an_app_credential(client, clinic):
    response = client.post(
        "/t/clinic-a/launch",
        json=launch_body(clinic),
        headers=basic(clinic.confidential_app.client_id, clinic.secret),
    )
    assert response.status_code == 403 and response.json["error"] == "unauthorized_client"


def test_post_launch_resource_server_of_another_tenant_is_unknown(
    client, clinic, other_clinic, make_client
):
    foreign = make_client(
        other_clinic.tenant, kind="resource_server", auth_method="client_secret_basic"
    )
    response = client.post(
        "/t/clinic-a/launch",
        json=launch_body(clinic),
        headers=basic(foreign.client.client_id, foreign.client_secret),
    )
    assert response.status_code == 401


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"patient": "a b"},
        {"patient": "pt-1", "encounter": "x/y"},
        {"patient": "pt-1", "fhirContext": "DiagnosticReport/1"},
        {"patient": "pt-1", "fhirContext": [{"type": "Observation"}]},
        {"patient": "pt-1", "fhirContext": [{"reference": "Patient/2"}]},
        {"patient": "pt-1", "fhirContext": [{"reference": "Observation/1", "role": ""}]},
        {"patient": "pt-1", "need_patient_banner": "yes"},
        {"patient": "pt-1", "intent": 7},
        {"patient": "pt-1", "fhirContext": [{"canonical": "urn:x\u0000y"}]},
        {"patient": "pt-1", "intent": "\ud800"},
        {"patient": "pt-1", "fhirContext": [{"canonical": "urn:\ud800"}]},
        {"patient": "pt-1", "fhirContext": [{"identifier": {"value": "\udfff"}}]},
        {"patient": "pt-1", "fhirContext": [{"reference": None}]},
        {"patient": "pt-1", "fhirContext": [{"reference": "Patient/2", "type": "Observation"}]},
        {"patient": "pt-1", "fhirContext": [{"reference": f"Observation/{i}"} for i in range(21)]},
        {"patient": "pt-1", "fhirContext": [{"canonical": "https://x.test/" + "c" * 3000}]},
        {"patient": "pt-1", "client_id": ""},
        {"patient": "pt-1", "client_id": 0},
        {"patient": "pt-1", "client_id": False},
        {"patient": "pt-1", "client_id": []},
        {"patient": "pt-1", "encounter": ""},
        {"patient": "pt-1", "encounter": 0},
        {"patient": "pt-1", "fhirContext": {}},
        {"patient": "pt-1", "fhirContext": ""},
        {"patient": "pt-1", "fhirContext": [{"identifier": nested_identifier(9)}]},
    ],
    ids=[
        "no-patient",
        "bad-patient",
        "bad-encounter",
        "context-not-array",
        "context-without-target",
        "patient-in-context-without-role",
        "empty-role",
        "banner-not-boolean",
        "intent-not-text",
        "nul-in-a-member",  # PostgreSQL cannot keep it in jsonb, so it would be stuck forever
        # No database driver can encode a lone surrogate: a 500 for intent's column, and the
        # JSON columns would keep it for every token, whose JSON no strict parser reads.
        "surrogate-intent",
        "surrogate-in-a-member",
        "surrogate-in-an-identifier",
        "null-reference",
        "type-against-the-reference",
        "too-many-items",  # it rides in every access token: SMART asks for tokens under ~8 kB
        "too-long",
        # A binding the EHR asked for and got wrong must not become a launch any app can use.
        "empty-client-id",
        "zero-client-id",
        "false-client-id",
        "empty-list-client-id",
        # Context the EHR sent and we cannot use is refused, never silently left out.
        "empty-encounter",
        "zero-encounter",
        "context-an-empty-object",
        "context-an-empty-string",
        # Within the body's nesting limit, but no FHIR context nests so deep (11 levels).
        "context-nested-too-deep",
    ],
)
def test_post_launch_refuses_a_malformed_context(client, clinic, ehr, body):
    headers = basic(ehr.client.client_id, ehr.client_secret)
    body = {"client_id": clinic.public_app.client_id, **body}  # each case's fault alone
    response = client.post("/t/clinic-a/launch", json=body, headers=headers)
    assert response.status_code == 400
    assert response.json["error"] == "invalid_request"
    assert db.session.query(Launch).count() == 0


@pytest.mark.parametrize("named", ["unknown", "other-tenants-app", "resource-server"])
def test_post_launch_bound_to_no_app_of_the_tenant_is_a_bad_request(
    client, clinic, other_clinic, ehr, named
):
    """A binding to an app the tenant does not have is the EHR's mistake in the request: the
    same invalid_request as any other bad member, alike for another tenant's app and for none."""
    client_id = {
        "unknown": "app_nope",
        "other-tenants-app": other_clinic.confidential_app.client_id,
        "resource-server": ehr.client.client_id,
    }[named]
    headers = basic(ehr.client.client_id, ehr.client_secret)
    body = {"patient": "pt-1", "client_id": client_id}
    response = client.post("/t/clinic-a/launch", json=body, headers=headers)
    assert response.status_code == 400, response.json
    assert response.json["error"] == "invalid_request"
    assert client_id in response.json["error_description"]
    assert db.session.query(Launch).count() == 0


@pytest.mark.parametrize("body", [{"patient": "pt-1"}, {"patient": "pt-1", "client_id": None}])
def test_post_launch_for_no_app_is_a_bad_request(client, clinic, ehr, body):
    """EHR-05: a launch is bound to the app it was issued for. Unbound, any app of the tenant
    could redeem the launch id and get its patient."""
    headers = basic(ehr.client.client_id, ehr.client_secret)
    response = client.post("/t/clinic-a/launch", json=body, headers=headers)
    assert response.status_code == 400, response.json
    assert response.json["error"] == "invalid_request"
    assert "client_id is required" in response.json["error_description"]
    assert db.session.query(Launch).count() == 0


def test_a_posted_launch_is_for_the_app_it_names_only(client, clinic, ehr):
    headers = basic(ehr.client.client_id, ehr.client_secret)
    body = launch_body(clinic, patient="pt-7")  # for the public app
    launch_id = client.post("/t/clinic-a/launch", json=body, headers=headers).json["launch"]
    login(client, clinic.slug, "doc")

    other = ehr_params(clinic, launch_id, client_id=clinic.confidential_app.client_id)
    assert_refused(client.get("/t/clinic-a/authorize", query_string=other))
    code = redirect_params(authorize(client, clinic, ehr_params(clinic, launch_id)))["code"]
    assert exchange(client, clinic, code, VERIFIER).json["patient"] == "pt-7"


def test_a_posted_launch_is_audited_naming_the_app_it_is_for(client, cli, clinic, ehr):
    headers = basic(ehr.client.client_id, ehr.client_secret)
    body = launch_body(clinic, patient="pt-7", client_id=clinic.confidential_app.client_id)
    launch_id = client.post("/t/clinic-a/launch", json=body, headers=headers).json["launch"]

    result = cli.invoke(args=["audit", "list", "clinic-a", "--event", "launch:created"])

    assert result.exit_code == 0, result.output
    [record] = json.loads(result.stdout)
    assert (record["actor"], record["subject"]) == (ehr.client.client_id, "pt-7")
    assert record["details"] == {"client_id": clinic.confidential_app.client_id}
    assert launch_id not in result.stdout  # shown once, to the EHR; never in the log


def test_a_launch_stored_unbound_is_used_by_no_app(doctor, clinic):
    """Launches stored before they had to be bound (they live minutes) are refused, rather than
    left for any app of the tenant to use until they expire."""
    launch_id = new_launch(clinic)
    db.session.execute(update(Launch).values(client_pk=None))
    db.session.commit()

    for app in (clinic.public_app, clinic.confidential_app):
        params = ehr_params(clinic, launch_id, client_id=app.client_id)
        assert_refused(doctor.get("/t/clinic-a/authorize", query_string=params))
    assert db.session.scalar(db.select(Launch)).used_at is None


def test_an_intent_no_database_can_hold_is_refused_by_the_service(clinic):
    """Whoever calls it (the endpoint refuses such JSON first; a command line's byte that is not
    UTF-8 arrives as a lone surrogate), the service never hands one to the database."""
    with pytest.raises(ValidationError, match="intent is not valid UTF-8 text"):
        new_launch(clinic, intent="caf\udce9")
    assert db.session.query(Launch).count() == 0


def test_post_launch_needs_json(client, clinic, ehr):
    headers = basic(ehr.client.client_id, ehr.client_secret)
    response = client.post("/t/clinic-a/launch", data={"patient": "pt-1"}, headers=headers)
    assert response.status_code == 400 and response.json["error"] == "invalid_request"


# --- CLI -------------------------------------------------------------------------------------


def test_cli_launch_create(cli, clinic):
    result = cli.invoke(
        args=[
            "launch",
            "create",
            "clinic-a",
            "--patient",
            "pt-1",
            "--encounter",
            "enc-1",
            "--fhir-context",
            json.dumps(FHIR_CONTEXT),
            "--intent",
            "review",
            "--need-patient-banner",
            "--client",
            clinic.confidential_app.client_id,
        ]
    )
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["launch"].startswith("asln_")
    assert shown["iss"] == "https://auth.example.test/t/clinic-a/fhir"
    row = db.session.scalar(db.select(Launch))
    assert row.launch_digest != shown["launch"]
    assert (row.encounter, row.intent, row.need_patient_banner) == ("enc-1", "review", True)
    assert row.fhir_context == FHIR_CONTEXT
    assert row.client_pk == clinic.confidential_app.id


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--patient", "a/b"], "patient must be a FHIR id"),
        (["--patient", "p", "--fhir-context", "{"], "not JSON"),
        (["--patient", "p", "--fhir-context", "[" * 100_000], "nests too deeply"),
        (["--patient", "p", "--fhir-context", "[{}]"], "fhirContext[0]"),
        (["--patient", "p", "--fhir-context", '[{"canonical": "urn:x\\u0000"}]'], "NUL"),
        (["--patient", "p", "--client", "app_nope"], "no client"),
        (["--patient", "p", "--client", ""], "client_id"),
        (["--patient", "p", "--encounter", ""], "encounter must be a FHIR id"),
        (["--patient", "p", "--fhir-context", "{}"], "fhirContext must be a JSON array"),
        # With the longest scope, a longer one would make a token too long (tokens/limits.py).
        (
            ["--patient", "p", "--fhir-context", json.dumps([{"canonical": "x" * 1518}])],
            "fhirContext may be at most 1536 characters of JSON",
        ),
        (["--patient", "p", "--intent", "é" * 34], "intent may take at most 200 characters"),
        # No other limit holds the command line's JSON: 500 levels fit in 1536 characters.
        (
            [
                "--patient",
                "p",
                "--fhir-context",
                json.dumps([{"identifier": nested_identifier(9)}]),
            ],
            "fhirContext may nest at most 10 levels deep",
        ),
        (
            [
                "--patient",
                "p",
                "--fhir-context",
                '[{"identifier": {"a": ' + "[" * 500 + "]" * 500 + "}}]",
            ],
            "fhirContext may nest at most 10 levels deep",
        ),
    ],
)
def test_cli_launch_create_refuses_bad_input_in_one_line(cli, clinic, args, message):
    if "--client" not in args:  # each case's fault alone
        args = [*args, "--client", clinic.public_app.client_id]
    result = cli.invoke(args=["launch", "create", "clinic-a", *args])
    assert result.exit_code != 0
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_a_fhir_identifier_as_deep_as_the_datatype_goes_is_kept(client, clinic, ehr):
    headers = basic(ehr.client.client_id, ehr.client_secret)
    context = [{"identifier": DEEP_IDENTIFIER, "type": "Coverage"}]
    body = {"patient": "pt-1", "client_id": clinic.public_app.client_id, "fhirContext": context}
    response = client.post("/t/clinic-a/launch", json=body, headers=headers)
    assert response.status_code == 201, response.json
    assert db.session.scalar(db.select(Launch)).fhir_context == context


def test_cli_launch_create_needs_the_app(cli, clinic):
    result = cli.invoke(args=["launch", "create", "clinic-a", "--patient", "pt-1"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: --client is required: the client_id of the app the launch is for"
    ]
    assert db.session.query(Launch).count() == 0


def test_discovery_advertises_ehr_launch(client, clinic):
    capabilities = client.get("/t/clinic-a/.well-known/smart-configuration").json["capabilities"]
    assert {"launch-ehr", "context-ehr-patient", "context-ehr-encounter"} <= set(capabilities)
    assert {"context-banner", "context-style"} <= set(capabilities)
