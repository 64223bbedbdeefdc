"""Standalone launch (SMART-REQUIREMENTS §1.9): patients are their own context; staff pick one.

The picker searches the tenant's FHIR server; there is none here, so a tiny fake Patient search
endpoint runs in a thread and records what it was sent.
"""

from __future__ import annotations

import json
import time
from urllib.parse import parse_qs
from urllib.parse import urlsplit

import jwt
import pytest
from itsdangerous import TimestampSigner
from itsdangerous import URLSafeTimedSerializer
from werkzeug.wrappers import Request
from werkzeug.wrappers import Response

from authserver.accounts import service as accounts
from authserver.extensions import db
from authserver.launch import patients
from authserver.oauth import picker
from authserver.oauth.authorize import PATIENT_NOT_CHOSEN
from authserver.oauth.models import AuthorizationCode
from authserver.tenancy import service as tenants
from authserver.tenancy.resolution import load_tenant_by_slug
from authserver.tokens.models import IssuedToken
from tests.fixtures.accounts import login
from tests.fixtures.live import Browser
from tests.fixtures.live import offered_patients
from tests.fixtures.live import serve_in_thread
from tests.oauth.conftest import app_session
from tests.oauth.conftest import authorization_params
from tests.oauth.conftest import consent_form
from tests.oauth.conftest import exchange
from tests.oauth.conftest import new_verifier
from tests.oauth.conftest import redirect_params
from tests.oauth.conftest import verify_with_jwks

PROVIDER_SCOPE = "launch/patient openid fhirUser offline_access patient/*.rs"
ANN = "Smith, Ann (born 1970-01-01)"  # the one patient the fake search finds
VERIFIER = new_verifier()


class FakeFhir:
    """``GET /{tenant}/Patient?name=`` answering a searchset Bundle; remembers each request."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.server, self.url = serve_in_thread(self)
        self.broken = False

    def __call__(self, environ, start_response):
        request = Request(environ)
        self.requests.append(
            {
                "path": request.path,
                "args": request.args.to_dict(),
                "authorization": request.headers.get("Authorization", ""),
            }
        )
        if self.broken:
            return Response("down", status=503)(environ, start_response)
        slug = request.path.split("/")[1]
        entries = [
            {
                "resource": {
                    "resourceType": "Patient",
                    "id": f"{slug}-smith-1",
                    "name": [{"family": "Smith", "given": ["Ann"]}],
                    "birthDate": "1970-01-01",
                }
            },
            {"resource": {"resourceType": "Patient", "id": "not a valid id"}},
            {"resource": {"resourceType": "Observation", "id": "o1"}},
        ]
        bundle = {"resourceType": "Bundle", "type": "searchset", "entry": entries}
        return Response(json.dumps(bundle), content_type="application/fhir+json")(
            environ, start_response
        )

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fhir():
    fake = FakeFhir()
    yield fake
    fake.stop()


def point_picker(clinic, fhir) -> None:
    tenants.set_patient_search_url(clinic.tenant, f"{fhir.url}/{clinic.slug}/Patient")
    db.session.commit()


# --- Full flow with Authlib's client, a provider picking the patient, at two tenants ---------


def test_standalone_provider_launch_with_picker_at_two_tenants(
    live_server, clinic, other_clinic, fhir
):
    server = live_server()
    for current in (clinic, other_clinic):
        point_picker(current, fhir)
        session = app_session(server, current, scope=PROVIDER_SCOPE)
        verifier = new_verifier()
        url, _ = session.create_authorization_url(
            server.authorize_url(current.slug),
            code_verifier=verifier,
            aud=server.fhir_base(current.slug),
        )
        browser = Browser("doc")
        location = browser.authorize(url, patient_search="smith")
        assert ANN in browser.last_page
        token = session.fetch_token(
            server.token_url(current.slug), authorization_response=location, code_verifier=verifier
        )
        assert token["patient"] == f"{current.slug}-smith-1"
        claims = verify_with_jwks(
            token["access_token"],
            server.jwks(current.slug),
            audience=server.fhir_base(current.slug),
        )
        assert claims["patient"] == f"{current.slug}-smith-1"
        assert claims["fhirUser"] == server.fhir_base(current.slug) + "/Practitioner/dr-1"

        search = fhir.requests[-1]
        assert search["path"] == f"/{current.slug}/Patient"
        assert search["args"]["name"] == "smith"
        system_token = search["authorization"].removeprefix("Bearer ")
        system = verify_with_jwks(
            system_token, server.jwks(current.slug), audience=server.fhir_base(current.slug)
        )
        assert system["scope"] == "system/Patient.rs"
        assert system["tenant"] == current.slug
        assert system["exp"] - system["iat"] <= 60
        assert jwt.get_unverified_header(system_token)["typ"] == "at+jwt"


# --- The picker, step by step -----------------------------------------------------------------


@pytest.fixture
def doctor(client, clinic):
    login(client, clinic.slug, "doc")
    return client


def test_staff_user_is_shown_a_picker(doctor, clinic):
    params = authorization_params(clinic, verifier=VERIFIER, scope=PROVIDER_SCOPE)
    page = doctor.get("/t/clinic-a/authorize", query_string=params).get_data(as_text=True)
    assert 'name="patient_search"' in page
    assert "Search for the patient first." in page


def test_picker_searches_the_default_fhir_base(clinic):
    assert patients.search_url(clinic.tenant) == "https://auth.example.test/t/clinic-a/fhir/Patient"


def test_consent_without_a_picked_patient_asks_again(doctor, clinic):
    params = authorization_params(clinic, verifier=VERIFIER, scope=PROVIDER_SCOPE)
    page = doctor.get("/t/clinic-a/authorize", query_string=params).get_data(as_text=True)
    response = doctor.post("/t/clinic-a/authorize", query_string=params, data=consent_form(page))
    assert response.status_code == 400
    assert "Choose the patient this app is for." in response.get_data(as_text=True)


def search_page(browser, clinic, params, name="smith") -> str:
    """The consent page of the request ``params`` after searching for ``name``."""
    return browser.get(
        f"/t/{clinic.slug}/authorize", query_string={**params, "patient_search": name}
    ).get_data(as_text=True)


def test_picked_patient_becomes_the_context(doctor, clinic, fhir):
    point_picker(clinic, fhir)
    params = authorization_params(clinic, verifier=VERIFIER, scope=PROVIDER_SCOPE)
    page = search_page(doctor, clinic, params)
    assert list(offered_patients(page)) == [ANN]
    # What the page sends for Ann is a value only this request can use, not her bare id.
    assert 'value="clinic-a-smith-1"' not in page
    assert "not a valid id" not in page
    # Not offered, as a value or as text ("o1" alone can turn up inside the random CSRF token).
    assert 'value="o1"' not in page and ">o1<" not in page
    response = doctor.post(
        "/t/clinic-a/authorize", query_string=params, data=consent_form(page, pick=ANN)
    )
    code = redirect_params(response)["code"]
    body = exchange(doctor, clinic, code, VERIFIER).json
    assert body["patient"] == "clinic-a-smith-1"
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["patient"] == "clinic-a-smith-1"


# --- Only a patient the search offered, to this request, can be picked -----------------------


def assert_asked_again(response, clinic) -> None:
    """Refused like a form without a patient: the page asks again; no code, so no token."""
    assert response.status_code == 400
    assert "Location" not in response.headers
    page = response.get_data(as_text=True)
    assert PATIENT_NOT_CHOSEN in page and 'name="patient_search"' in page
    for model in (AuthorizationCode, IssuedToken):
        assert db.session.scalar(model.for_tenant(clinic.tenant)) is None


def post_consent(browser, clinic, params, form):
    return browser.post(f"/t/{clinic.slug}/authorize", query_string=params, data=form)


@pytest.mark.parametrize(
    "value",
    [
        "clinic-a-smith-1",  # the offered patient's bare id
        "somebody-else",  # a patient the search never offered
        "clinic-a-smith-1.AAAAAA.forged",
        "Ä" * 3,
        "x" * 5000,
    ],
)
def test_a_patient_the_page_did_not_offer_is_refused(doctor, clinic, fhir, value):
    point_picker(clinic, fhir)
    params = authorization_params(clinic, verifier=VERIFIER, scope=PROVIDER_SCOPE)
    page = search_page(doctor, clinic, params)
    assert_asked_again(
        post_consent(doctor, clinic, params, consent_form(page, patient=value)), clinic
    )


def test_a_patient_offered_for_another_request_is_refused(doctor, clinic, fhir):
    point_picker(clinic, fhir)
    first = authorization_params(clinic, verifier=VERIFIER, scope=PROVIDER_SCOPE)
    offered = offered_patients(search_page(doctor, clinic, first))[ANN]
    another = {**first, "state": "another-request"}
    page = search_page(doctor, clinic, another)
    refused = post_consent(doctor, clinic, another, consent_form(page, patient=offered))
    assert_asked_again(refused, clinic)
    # The request it was offered to takes it.
    response = post_consent(doctor, clinic, first, consent_form(page, patient=offered))
    assert "code" in redirect_params(response)


def test_a_patient_offered_to_another_user_is_refused(app, doctor, clinic, fhir, make_user):
    point_picker(clinic, fhir)
    make_user(clinic.tenant, "doc2", roles=["physician"], fhir_user="Practitioner/dr-2")
    colleague = app.test_client()
    login(colleague, clinic.slug, "doc2")
    params = authorization_params(clinic, verifier=VERIFIER, scope=PROVIDER_SCOPE)
    offered = offered_patients(search_page(doctor, clinic, params))[ANN]
    page = search_page(colleague, clinic, params)
    refused = post_consent(colleague, clinic, params, consent_form(page, patient=offered))
    assert_asked_again(refused, clinic)


def test_a_patient_offered_at_another_tenant_is_refused(doctor, clinic, other_clinic, fhir):
    point_picker(clinic, fhir)
    point_picker(other_clinic, fhir)
    login(doctor, other_clinic.slug, "doc")
    there = authorization_params(other_clinic, verifier=VERIFIER, scope=PROVIDER_SCOPE)
    offered = offered_patients(search_page(doctor, other_clinic, there))[ANN]
    params = authorization_params(clinic, verifier=VERIFIER, scope=PROVIDER_SCOPE)
    page = search_page(doctor, clinic, params)
    refused = post_consent(doctor, clinic, params, consent_form(page, patient=offered))
    assert_asked_again(refused, clinic)


def test_a_choice_names_its_tenant(app, clinic, other_clinic):
    """Mis-bound on purpose: the same login and request, offered at another tenant."""
    _, made = accounts.start_session(clinic.tenant, clinic.physician)
    db.session.commit()
    params = [("client_id", clinic.public_app.client_id), ("state", "state-123")]

    def at(tenant, step):
        with app.app_context(), app.test_request_context(f"/t/{tenant.slug}/authorize"):
            load_tenant_by_slug(tenant.slug)
            return step()

    elsewhere = at(other_clinic.tenant, lambda: picker.offer(made, params, "clinic-a-smith-1"))
    assert at(clinic.tenant, lambda: picker.picked(made, params, elsewhere)) is None
    here = at(clinic.tenant, lambda: picker.offer(made, params, "clinic-a-smith-1"))
    assert at(clinic.tenant, lambda: picker.picked(made, params, here)) == "clinic-a-smith-1"


def test_a_tampered_choice_is_refused(doctor, clinic, fhir):
    point_picker(clinic, fhir)
    params = authorization_params(clinic, verifier=VERIFIER, scope=PROVIDER_SCOPE)
    page = search_page(doctor, clinic, params)
    offered = offered_patients(page)[ANN]
    # Another patient written into the payload, the signature kept (no secret needed to read it).
    unsigned = URLSafeTimedSerializer("not the server's secret")
    _, claims = unsigned.loads_unsafe(offered)
    assert claims["patient"] == "clinic-a-smith-1"
    original, timestamp, signature = offered.rsplit(".", 2)
    payload = unsigned.dump_payload({**claims, "patient": "somebody-else"}).decode()
    # A signature's first character carries six whole bits (its last, padding bits too).
    flipped = ("B" if signature[0] == "A" else "A") + signature[1:]
    for tampered in (f"{payload}.{timestamp}.{signature}", f"{original}.{timestamp}.{flipped}"):
        refused = post_consent(doctor, clinic, params, consent_form(page, patient=tampered))
        assert_asked_again(refused, clinic)


def test_an_expired_choice_is_refused(doctor, clinic, fhir, monkeypatch):
    point_picker(clinic, fhir)
    params = authorization_params(clinic, verifier=VERIFIER, scope=PROVIDER_SCOPE)
    made_at = int(time.time()) - picker.CHOICE_LIFETIME - 1
    with monkeypatch.context() as past:
        past.setattr(TimestampSigner, "get_timestamp", lambda signer: made_at)
        page = search_page(doctor, clinic, params)
    assert_asked_again(post_consent(doctor, clinic, params, consent_form(page, pick=ANN)), clinic)


def test_unreachable_fhir_server_shows_a_message(doctor, clinic, fhir):
    point_picker(clinic, fhir)
    fhir.broken = True
    params = authorization_params(clinic, verifier=VERIFIER, scope=PROVIDER_SCOPE)
    response = doctor.get("/t/clinic-a/authorize", query_string={**params, "patient_search": "x"})
    assert response.status_code == 200
    assert patients.UNAVAILABLE in response.get_data(as_text=True)


def test_patient_search_parameter_of_the_client_is_not_passed_on(doctor, clinic, fhir):
    point_picker(clinic, fhir)
    params = authorization_params(clinic, verifier=VERIFIER, scope=PROVIDER_SCOPE)
    page = doctor.get(
        "/t/clinic-a/authorize", query_string={**params, "patient_search": "smith"}
    ).get_data(as_text=True)
    action = urlsplit(
        page.split('<form method="post" action="')[1].split('"')[0].replace("&amp;", "&")
    )
    assert "patient_search" not in parse_qs(action.query)


def test_patient_user_is_never_shown_a_picker(client, clinic):
    login(client, clinic.slug, "pat")
    params = authorization_params(clinic, verifier=VERIFIER, scope=PROVIDER_SCOPE)
    page = client.get("/t/clinic-a/authorize", query_string=params).get_data(as_text=True)
    assert 'name="patient_search"' not in page and 'name="patient"' not in page


def test_patient_cannot_pick_another_patient(client, clinic):
    login(client, clinic.slug, "pat")
    params = authorization_params(clinic, verifier=VERIFIER, scope=PROVIDER_SCOPE)
    page = client.get("/t/clinic-a/authorize", query_string=params).get_data(as_text=True)
    response = client.post(
        "/t/clinic-a/authorize",
        query_string=params,
        data=consent_form(page, patient="somebody-else"),
    )
    code = redirect_params(response)["code"]
    assert exchange(client, clinic, code, VERIFIER).json["patient"] == "p-clinic-a"


def test_patient_user_without_a_patient_record_is_denied(client, clinic, make_user):
    make_user(clinic.tenant, "nolink", roles=["patient"])
    login(client, clinic.slug, "nolink")
    params = authorization_params(clinic, verifier=VERIFIER, scope=PROVIDER_SCOPE)
    response = client.get("/t/clinic-a/authorize", query_string=params)
    assert redirect_params(response)["error"] == "access_denied"


def test_trusted_app_still_asks_staff_for_the_patient(doctor, clinic):
    from tests.oauth.conftest import set_policy

    set_policy(clinic.tenant, clinic.public_app, trusted=True)
    params = authorization_params(clinic, verifier=VERIFIER, scope=PROVIDER_SCOPE)
    page = doctor.get("/t/clinic-a/authorize", query_string=params).get_data(as_text=True)
    assert 'name="patient_search"' in page and 'name="grant"' not in page


# --- Tenant configuration --------------------------------------------------------------------


def test_cli_sets_and_resets_the_patient_search(cli, clinic):
    result = cli.invoke(
        args=["tenant", "set-patient-search", "clinic-a", "https://fhir.example.test/r4/Patient"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["patient_search_url"] == "https://fhir.example.test/r4/Patient"
    result = cli.invoke(args=["tenant", "set-patient-search", "clinic-a", ""])
    assert json.loads(result.output)["patient_search_url"].endswith("/t/clinic-a/fhir/Patient")


def test_cli_refuses_a_plain_http_search_url(cli, clinic):
    result = cli.invoke(args=["tenant", "set-patient-search", "clinic-a", "http://fhir.example/P"])
    assert result.exit_code != 0 and "https" in result.output


def test_picker_labels_are_built_from_the_bundle():
    bundle = {
        "resourceType": "Bundle",
        "entry": [
            {"resource": {"resourceType": "Patient", "id": "a", "name": [{"text": "Jo Bloggs"}]}},
            {"resource": {"resourceType": "Patient", "id": "b"}},
        ],
    }
    assert [(p.id, p.label) for p in patients.patients_in(bundle)] == [
        ("a", "Jo Bloggs"),
        ("b", "Patient b"),
    ]
    with pytest.raises(patients.PatientSearchFailed):
        patients.patients_in({"resourceType": "OperationOutcome"})


@pytest.mark.parametrize(
    "name, label",
    [
        ([{"family": ["Smith"], "given": ["Ann"]}], "Smith, Ann"),  # FHIR DSTU2: family a list
        ([{"family": "Smith", "given": "Ann"}], "Smith, Ann"),
        ({"family": "Smith"}, "Patient a"),
        ([{"family": {"value": "Smith"}}], "Patient a"),
    ],
    ids=["family-list", "given-string", "name-object", "family-object"],
)
def test_picker_labels_survive_names_of_another_shape(name, label):
    # A FHIR server answering another FHIR version's shape gets a label, not a 500 page.
    resource = {"resourceType": "Patient", "id": "a", "name": name}
    bundle = {"resourceType": "Bundle", "entry": [{"resource": resource}]}
    assert [(p.id, p.label) for p in patients.patients_in(bundle)] == [("a", label)]


def test_a_bundle_whose_entry_is_not_a_list_is_no_answer():
    with pytest.raises(patients.PatientSearchFailed):
        patients.patients_in({"resourceType": "Bundle", "entry": 5})


def test_an_odd_patient_name_on_the_consent_page_is_not_a_500(doctor, clinic, monkeypatch):
    odd = {"resourceType": "Patient", "id": "a", "name": {"family": "Smith"}}
    bundle = {"resourceType": "Bundle", "entry": [{"resource": odd}]}
    monkeypatch.setattr(patients, "search", lambda tenant, name: patients.patients_in(bundle))
    params = authorization_params(clinic, scope=PROVIDER_SCOPE, patient_search="smith")

    page = doctor.get("/t/clinic-a/authorize", query_string=params)

    assert page.status_code == 200
    assert "Patient a" in page.get_data(as_text=True)
