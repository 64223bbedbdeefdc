"""Standalone launch, refresh and tenant isolation driven by SMART's own Python client.

``fhirclient`` (SMART Health IT, 4.4) runs against a live authserver; each tenant's FHIR base
(``tenant create --fhir-base-url``) is a small FHIR stand-in in a thread, so the ``aud`` the app
sends is the URL it was given, and the stand-in allows a read the way the product's gateway does:
it introspects the Bearer token at its tenant as a registered resource server.

What fhirclient 4.4 does, read from its source (``server.py``, ``auth.py``, ``client.py``):

- Discovery: only ``GET {base}/metadata``. The OAuth endpoints come from the CapabilityStatement's
  ``oauth-uris`` extension (``authorize``, ``token``); ``.well-known/smart-configuration`` is never
  read. The stand-in builds that extension from the tenant's SMART configuration at authserver.
- Authorization request: ``response_type=code``, ``client_id``, ``redirect_uri``, ``scope`` (with
  ``launch/patient`` put in front while no patient is known), ``aud`` (the base URL exactly as
  configured), ``state`` (a UUID), and always PKCE ``S256``. No ``nonce``. A public client
  therefore meets this server's rule that every client uses PKCE S256; nothing is relaxed.
- Code exchange: ``client_id``, ``code``, ``redirect_uri``, ``code_verifier`` and ``state`` in the
  body; with an ``app_secret`` also HTTP Basic (the body ``client_id`` names the same client, which
  the server accepts, CA-03). So both a public and a ``client_secret_basic`` app work.
- Callback: the ``state`` must equal the one it sent, checked before the code is exchanged; an
  ``error`` in the callback raises with the server's ``error_description``.
- Refresh: ``reauthorize()`` posts ``grant_type=refresh_token``, ``refresh_token`` and
  ``client_id`` (Basic when confidential) and keeps the rotated refresh token.
- Token response: ``patient`` becomes ``client.patient_id``; the rest (``scope``, ``id_token``...)
  stays in ``client.launch_context``. It neither verifies nor reads the ``id_token`` (it logs
  "Received an id_token, ignoring") and has no accessor for ``fhirUser``, so these tests verify
  the ID token against the tenant's JWKS themselves. ``client.human_name`` only formats a
  ``HumanName``.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from urllib.parse import parse_qs
from urllib.parse import urlencode
from urllib.parse import urlsplit
from urllib.parse import urlunsplit

import pytest
import requests
from fhirclient.client import FHIRClient
from fhirclient.models.patient import Patient
from fhirclient.server import FHIRUnauthorizedException
from werkzeug.wrappers import Request
from werkzeug.wrappers import Response

from tests.fixtures.live import Browser
from tests.fixtures.live import serve_in_thread
from tests.fixtures.tokens import Gateway
from tests.oauth.conftest import PATIENT_SCOPE
from tests.oauth.conftest import REDIRECT_URI
from tests.oauth.conftest import verify_with_jwks

OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
# What the app asks for; fhirclient puts launch/patient in front, as no patient is known yet.
APP_SCOPE = "openid fhirUser offline_access patient/*.rs"


class FhirStandIn:
    """Every tenant's FHIR server, under ``/{slug}``: ``metadata`` and ``Patient/{id}``.

    A read needs a Bearer token that the tenant's introspection endpoint calls active (asked with
    the tenant's resource-server credential, as the gateway asks) and, when the token has a
    patient context, that very patient. Each introspection answer is kept in ``introspections``.
    """

    def __init__(self) -> None:
        self.authserver_url = ""
        self.gateways: dict[str, Gateway] = {}
        self.introspections: list[tuple[str, dict]] = []
        self.server, self.url = serve_in_thread(self)

    def base(self, slug: str) -> str:
        return f"{self.url}/{slug}"

    def __call__(self, environ, start_response):
        request = Request(environ)
        _, slug, *rest = request.path.split("/")
        if rest == ["metadata"]:
            response = self.fhir_json(self.capability_statement(slug))
        elif len(rest) == 2 and rest[0] == "Patient":
            response = self.read_patient(request, slug, rest[1])
        else:
            response = Response(status=404)
        return response(environ, start_response)

    def capability_statement(self, slug: str) -> dict:
        smart = requests.get(
            f"{self.authserver_url}/t/{slug}/.well-known/smart-configuration", timeout=10
        ).json()
        endpoints = {
            "authorize": "authorization_endpoint",
            "token": "token_endpoint",
            "introspect": "introspection_endpoint",
            "revoke": "revocation_endpoint",
        }
        uris = [{"url": url, "valueUri": smart[key]} for url, key in endpoints.items()]
        return {
            "resourceType": "CapabilityStatement",
            "status": "active",
            "date": "2025-01-01",
            "kind": "instance",
            "fhirVersion": "4.0.1",
            "format": ["json"],
            "rest": [
                {
                    "mode": "server",
                    "security": {"extension": [{"url": OAUTH_URIS, "extension": uris}]},
                }
            ],
        }

    def read_patient(self, request: Request, slug: str, patient_id: str) -> Response:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        answer = self.introspect(slug, token)
        if not answer["active"]:
            return Response(
                status=401, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}
            )
        if answer.get("patient", patient_id) != patient_id:
            return Response(status=403)
        patient = {
            "resourceType": "Patient",
            "id": patient_id,
            "name": [{"family": "Smith", "given": ["Ann"]}],
        }
        return self.fhir_json(patient)

    def introspect(self, slug: str, token: str) -> dict:
        gateway = self.gateways[slug]
        answer = requests.post(
            f"{self.authserver_url}/t/{slug}/introspect",
            data={"token": token},
            auth=(gateway.client_id, gateway.secret),
            timeout=10,
        ).json()
        self.introspections.append((slug, answer))
        return answer

    @staticmethod
    def fhir_json(resource: dict) -> Response:
        return Response(json.dumps(resource), content_type="application/fhir+json")

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass(frozen=True)
class FhirClinic:
    """A tenant whose FHIR base is the stand-in, with a patient user ``pat`` and two apps."""

    fhir_base: str
    public_app_id: str
    confidential_app_id: str
    secret: str


@pytest.fixture
def fhir():
    stand_in = FhirStandIn()
    yield stand_in
    stand_in.stop()


@pytest.fixture
def make_fhir_clinic(make_tenant, make_user, make_client, make_gateway, fhir):
    def make(slug: str) -> FhirClinic:
        tenant = make_tenant(slug, fhir_base_url=fhir.base(slug))
        make_user(tenant, "pat", roles=["patient"], fhir_user="Patient/p-" + slug)
        public = make_client(tenant, name="fhirclient app", redirect_uris=[REDIRECT_URI])
        confidential = make_client(
            tenant,
            name="fhirclient confidential app",
            auth_method="client_secret_basic",
            redirect_uris=[REDIRECT_URI],
        )
        fhir.gateways[slug] = make_gateway(tenant)
        return FhirClinic(
            fhir.base(slug),
            public.client.client_id,
            confidential.client.client_id,
            confidential.client_secret,
        )

    return make


@pytest.fixture
def server(live_server, fhir):
    started = live_server()
    fhir.authserver_url = started.url
    return started


@pytest.fixture
def clinic_a(make_fhir_clinic) -> FhirClinic:
    return make_fhir_clinic("clinic-a")


@pytest.fixture
def clinic_b(make_fhir_clinic) -> FhirClinic:
    return make_fhir_clinic("clinic-b")


def smart_app(clinic: FhirClinic, *, confidential: bool = False) -> FHIRClient:
    """fhirclient configured as a SMART app at ``clinic`` would be."""
    settings = {
        "app_id": clinic.confidential_app_id if confidential else clinic.public_app_id,
        "api_base": clinic.fhir_base,
        "redirect_uri": REDIRECT_URI,
        "scope": APP_SCOPE,
    }
    if confidential:
        settings["app_secret"] = clinic.secret
    return FHIRClient(settings=settings)


def launch(clinic: FhirClinic, *, confidential: bool = False) -> FHIRClient:
    """The whole standalone launch: the patient signs in and consents, the app takes the code."""
    app = smart_app(clinic, confidential=confidential)
    app.handle_callback(Browser("pat").authorize(app.authorize_url))
    return app


def with_query(url: str, **params: str | None) -> str:
    """``url`` with ``params`` set in its query (``None`` removes one)."""
    parts = urlsplit(url)
    query = {name: values[0] for name, values in parse_qs(parts.query).items()}
    query.update(params)
    kept = {name: value for name, value in query.items() if value is not None}
    return urlunsplit(parts._replace(query=urlencode(kept)))


# --- 1. Standalone launch -------------------------------------------------------------------


@pytest.mark.parametrize("confidential", [False, True], ids=["public", "confidential"])
def test_standalone_patient_launch(server, fhir, clinic_a, confidential):
    app = smart_app(clinic_a, confidential=confidential)
    authorize_url = app.authorize_url
    sent = {name: values[0] for name, values in parse_qs(urlsplit(authorize_url).query).items()}
    assert authorize_url.startswith(server.authorize_url("clinic-a") + "?")
    assert sent["aud"] == clinic_a.fhir_base
    assert sent["scope"] == PATIENT_SCOPE
    assert sent["code_challenge_method"] == "S256"

    app.handle_callback(Browser("pat").authorize(authorize_url))

    assert app.ready
    assert app.patient_id == "p-clinic-a"
    assert app.launch_context["scope"] == PATIENT_SCOPE
    id_token = verify_with_jwks(
        app.launch_context["id_token"], server.jwks("clinic-a"), audience=sent["client_id"]
    )
    assert id_token["iss"] == server.issuer("clinic-a")
    assert id_token["fhirUser"] == f"{clinic_a.fhir_base}/Patient/p-clinic-a"

    patient = app.patient  # Patient.read through the stand-in, which introspects the token
    assert patient.id == "p-clinic-a"
    assert app.human_name(patient.name[0]) == "Ann Smith"
    slug, answer = fhir.introspections[-1]
    assert slug == "clinic-a"
    assert answer["active"] is True
    assert answer["client_id"] == sent["client_id"]
    assert answer["patient"] == "p-clinic-a"
    assert answer["aud"] == clinic_a.fhir_base
    # fhirUser is a URL on the FHIR server, readable with the token (Inferno reads it too).
    assert Patient.read_from(id_token["fhirUser"], app.server).id == "p-clinic-a"


# --- 2. Refresh ----------------------------------------------------------------------------


def test_reauthorize_replaces_the_access_token(server, fhir, clinic_a):
    app = launch(clinic_a)
    before = copy.deepcopy(app.state)  # what an app that saved its state before has
    first_access, first_refresh = app.server.auth.access_token, app.server.auth.refresh_token

    assert app.reauthorize() is True

    second_access, second_refresh = app.server.auth.access_token, app.server.auth.refresh_token
    assert second_access != first_access
    assert second_refresh != first_refresh  # rotated, and fhirclient keeps the new one
    assert app.patient_id == "p-clinic-a"
    assert app.launch_context["scope"] == PATIENT_SCOPE
    # INT-05: the access token the refresh replaced is inactive, the new one active.
    assert fhir.introspect("clinic-a", first_access) == {"active": False}
    assert fhir.introspect("clinic-a", second_access)["active"] is True
    assert Patient.read("p-clinic-a", app.server).id == "p-clinic-a"
    stale = FHIRClient(state=before)
    with pytest.raises(FHIRUnauthorizedException):
        Patient.read("p-clinic-a", stale.server)

    assert app.reauthorize() is True  # REF-09: the chain goes on with the rotated token
    assert fhir.introspect("clinic-a", second_access) == {"active": False}
    assert fhir.introspect("clinic-a", app.server.auth.access_token)["active"] is True


# --- 3. fhirclient's own state check ----------------------------------------------------------


@pytest.mark.parametrize("state", ["forged", None], ids=["other-state", "no-state"])
def test_a_callback_with_another_state_is_refused_by_the_client(server, clinic_a, state):
    app = smart_app(clinic_a)
    callback = Browser("pat").authorize(app.authorize_url)

    with pytest.raises(Exception, match="Invalid state"):
        app.handle_callback(with_query(callback, state=state))

    assert not app.ready
    app.handle_callback(callback)  # the refused callback never spent the code
    assert app.ready and app.patient_id == "p-clinic-a"


def test_a_denied_authorization_reaches_the_app_as_an_error(server, clinic_a):
    app = smart_app(clinic_a)
    callback = Browser("pat").authorize(app.authorize_url, decision="deny")
    assert parse_qs(urlsplit(callback).query)["error"] == ["access_denied"]

    with pytest.raises(Exception, match="denied"):
        app.handle_callback(callback)
    assert not app.ready


# --- 4. Tenant isolation ----------------------------------------------------------------------


def test_a_token_from_clinic_a_is_inactive_at_clinic_b(server, fhir, clinic_a, clinic_b):
    app = launch(clinic_a)
    misdirected_state = copy.deepcopy(app.state)
    misdirected_state["server"]["base_uri"] = clinic_b.fhir_base + "/"
    misdirected = FHIRClient(state=misdirected_state)

    with pytest.raises(FHIRUnauthorizedException):
        Patient.read("p-clinic-a", misdirected.server)

    assert fhir.introspections[-1] == ("clinic-b", {"active": False})
    assert Patient.read("p-clinic-a", app.server).id == "p-clinic-a"
    assert fhir.introspections[-1][1]["active"] is True


def test_clinic_a_app_pointed_at_clinic_b_gets_no_code(server, clinic_a, clinic_b):
    app = FHIRClient(
        settings={
            "app_id": clinic_a.public_app_id,
            "api_base": clinic_b.fhir_base,
            "redirect_uri": REDIRECT_URI,
            "scope": APP_SCOPE,
        }
    )
    authorize_url = app.authorize_url
    assert authorize_url.startswith(server.authorize_url("clinic-b") + "?")
    response = requests.get(authorize_url, allow_redirects=False, timeout=10)
    # An unknown client is a page at clinic B, never a redirect to the URI it named.
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert "invalid_client" in response.text
