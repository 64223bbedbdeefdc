"""SCOPE-06 and §3.1 item 16: on the consent page a user narrows Condition and Observation to
granular categories, and the granted ``scope`` says exactly that."""

from __future__ import annotations

import pytest

from authserver.extensions import db
from authserver.oauth.models import AuthorizationCode
from tests.fixtures.accounts import login
from tests.fixtures.live import Browser
from tests.oauth.conftest import app_session
from tests.oauth.conftest import authorization_params
from tests.oauth.conftest import authorize
from tests.oauth.conftest import new_verifier
from tests.oauth.conftest import redirect_params
from tests.oauth.conftest import verify_with_jwks

HL7_CONDITION = "http://terminology.hl7.org/CodeSystem/condition-category"
US_CORE_CONDITION = "http://hl7.org/fhir/us/core/CodeSystem/condition-category"
HL7_OBSERVATION = "http://terminology.hl7.org/CodeSystem/observation-category"
US_CORE_CATEGORY = "http://hl7.org/fhir/us/core/CodeSystem/us-core-category"

ENCOUNTER_DIAGNOSIS = f"patient/Condition.rs?category={HL7_CONDITION}|encounter-diagnosis"
HEALTH_CONCERN = f"patient/Condition.rs?category={US_CORE_CONDITION}|health-concern"
LABORATORY = f"patient/Observation.rs?category={HL7_OBSERVATION}|laboratory"
VITAL_SIGNS = f"patient/Observation.rs?category={HL7_OBSERVATION}|vital-signs"
SDOH = f"patient/Observation.rs?category={US_CORE_CATEGORY}|sdoh"
RESOURCE_LEVEL = "patient/Condition.rs patient/Observation.rs"
SCOPE = f"launch/patient openid fhirUser offline_access {RESOURCE_LEVEL} patient/Patient.rs"


def test_user_grants_granular_categories_instead_of_whole_types(live_server, clinic):
    server = live_server()
    session = app_session(server, clinic, scope=SCOPE)
    verifier = new_verifier()
    url, _ = session.create_authorization_url(
        server.authorize_url(clinic.slug), code_verifier=verifier, aud=server.fhir_base("clinic-a")
    )
    browser = Browser("pat")
    location = browser.authorize(
        url,
        untick=("patient/Condition.rs", "patient/Observation.rs"),
        tick=(ENCOUNTER_DIAGNOSIS, HEALTH_CONCERN, LABORATORY, SDOH),
    )
    token = session.fetch_token(
        server.token_url(clinic.slug), authorization_response=location, code_verifier=verifier
    )

    expected = (
        "launch/patient openid fhirUser offline_access "
        f"{ENCOUNTER_DIAGNOSIS} {HEALTH_CONCERN} {LABORATORY} {SDOH} patient/Patient.rs"
    )
    assert token["scope"] == expected
    claims = verify_with_jwks(
        token["access_token"], server.jwks("clinic-a"), audience=server.fhir_base("clinic-a")
    )
    assert claims["scope"] == expected
    assert "Read and search your lab results" in browser.last_page
    assert "Read and search your health concerns" in browser.last_page


@pytest.fixture
def signed_in(client, clinic):
    login(client, clinic.slug, "pat")
    return client


def granted_scope(client, clinic, scope: str, **consent) -> str:
    """The scope the consent form grants, as saved with the code."""
    params = authorization_params(clinic, scope=scope)
    assert "code" in redirect_params(authorize(client, clinic, params, **consent))
    return db.session.scalar(AuthorizationCode.for_tenant(clinic.tenant)).scope


def test_consent_page_offers_categories_unticked(signed_in, clinic):
    params = authorization_params(clinic, scope="patient/Observation.rs patient/Patient.rs")
    page = signed_in.get("/t/clinic-a/authorize", query_string=params).get_data(as_text=True)
    assert f'name="grant" value="{VITAL_SIGNS}">' in page
    assert 'value="patient/Observation.rs" checked>' in page
    assert "Read and search your vital signs" in page


def test_default_consent_keeps_the_resource_level_scope(signed_in, clinic):
    scope = granted_scope(signed_in, clinic, f"openid {RESOURCE_LEVEL}")
    assert scope == f"openid {RESOURCE_LEVEL}"


def test_v1_read_request_narrows_to_a_v2_granular_scope(signed_in, clinic):
    scope = granted_scope(
        signed_in,
        clinic,
        "patient/Observation.read patient/Patient.read",
        untick=("patient/Observation.read",),
        tick=(VITAL_SIGNS,),
    )
    assert scope == f"{VITAL_SIGNS} patient/Patient.read"


def test_resource_level_box_ticked_beside_a_category_grants_the_resource_level(signed_in, clinic):
    scope = granted_scope(signed_in, clinic, "patient/Observation.rs", tick=(LABORATORY,))
    assert scope == "patient/Observation.rs"


def test_category_not_offered_grants_nothing(signed_in, clinic):
    imaging = f"patient/Observation.rs?category={HL7_OBSERVATION}|imaging"
    scope = granted_scope(
        signed_in,
        clinic,
        "patient/Observation.rs patient/Patient.rs",
        untick=("patient/Observation.rs",),
        extra=(imaging, "patient/Observation.rs?category=laboratory"),
    )
    assert scope == "patient/Patient.rs"


def test_scope_not_requested_grants_nothing(signed_in, clinic):
    scope = granted_scope(
        signed_in,
        clinic,
        "patient/Observation.rs patient/Patient.rs",
        untick=("patient/Observation.rs",),
        extra=(ENCOUNTER_DIAGNOSIS, "patient/MedicationRequest.rs", "patient/*.rs"),
    )
    assert scope == "patient/Patient.rs"
