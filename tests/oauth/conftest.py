"""Shared set-up for the SMART App Launch tests: clinics with users and apps, PKCE helpers."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import jwt
import pytest
from authlib.integrations.requests_client import OAuth2Session

from authserver.clients import service as clients
from authserver.extensions import db

REDIRECT_URI = "https://app.example.test/callback"
PATIENT_SCOPE = "launch/patient openid fhirUser offline_access patient/*.rs"


@dataclass
class Clinic:
    """A tenant with a patient, a physician, a public app and a confidential app."""

    tenant: Any
    patient: Any
    physician: Any
    public_app: Any
    confidential_app: Any
    secret: str

    @property
    def slug(self) -> str:
        return self.tenant.slug


@pytest.fixture
def fast_answers(monkeypatch):
    """What introspection's fast path answered each request (None: it passed it to Flask)."""
    from authserver.tokens import fastpath

    seen = []
    original = fastpath.introspect
    monkeypatch.setattr(
        fastpath, "introspect", lambda *args: seen.append(original(*args)) or seen[-1]
    )
    return seen


@pytest.fixture(params=["clinic-a", "clinic-b"])
def home(request, tenant, other_tenant):
    """The tenant under test, each of two in turn, so nothing depends on which came first; the
    other one is ``away``."""
    return tenant if request.param == "clinic-a" else other_tenant


@pytest.fixture
def away(home, tenant, other_tenant):
    return other_tenant if home is tenant else tenant


@pytest.fixture
def gateway(home, make_gateway):
    """A resource server of ``home`` (modules that test one tenant define their own)."""
    return make_gateway(home)


@pytest.fixture
def make_clinic(make_tenant, make_user, make_client):
    def make(slug: str) -> Clinic:
        tenant = make_tenant(slug)
        patient = make_user(tenant, "pat", roles=["patient"], fhir_user="Patient/p-" + slug)
        physician = make_user(tenant, "doc", roles=["physician"], fhir_user="Practitioner/dr-1")
        public_app = make_client(tenant, name="Public app", redirect_uris=[REDIRECT_URI]).client
        confidential = make_client(
            tenant,
            name="Confidential app",
            auth_method="client_secret_basic",
            redirect_uris=[REDIRECT_URI],
        )
        return Clinic(
            tenant, patient, physician, public_app, confidential.client, confidential.client_secret
        )

    return make


@pytest.fixture
def clinic(make_clinic) -> Clinic:
    return make_clinic("clinic-a")


@pytest.fixture
def other_clinic(make_clinic) -> Clinic:
    return make_clinic("clinic-b")


def set_policy(tenant, client, **policy) -> None:
    clients.set_policy(tenant, client.client_id, **policy)
    db.session.commit()


def new_verifier() -> str:
    return secrets.token_urlsafe(48)


def app_session(
    server, clinic: Clinic, *, confidential=False, scope=PATIENT_SCOPE
) -> OAuth2Session:
    """Authlib's own OAuth client, configured as the SMART app would be."""
    if confidential:
        return OAuth2Session(
            clinic.confidential_app.client_id,
            clinic.secret,
            scope=scope,
            redirect_uri=REDIRECT_URI,
            code_challenge_method="S256",
            token_endpoint_auth_method="client_secret_basic",
        )
    return OAuth2Session(
        clinic.public_app.client_id,
        scope=scope,
        redirect_uri=REDIRECT_URI,
        code_challenge_method="S256",
        token_endpoint_auth_method="none",
    )


def verify_with_jwks(token: str, jwks: dict, *, audience: str) -> dict:
    """Verify ``token`` against exactly the given JWK Set (raises when no key there signed it)."""
    keys = jwt.PyJWKSet.from_dict(jwks)
    kid = jwt.get_unverified_header(token)["kid"]
    matching = [key for key in keys.keys if key.key_id == kid]
    if not matching:
        raise jwt.InvalidSignatureError(f"no key {kid} in this JWKS")
    return jwt.decode(token, matching[0], algorithms=["RS256", "ES256"], audience=audience)


def resigned(tenant, token: str, **changes) -> str:
    """``token`` with ``changes`` to its claims, signed again with the tenant's own access-token
    key: a token only this server could have signed, so only its claims can refuse it."""
    from authserver.keys import service as keys

    claims = {**jwt.decode(token, options={"verify_signature": False}), **changes}
    return keys.sign(tenant, claims, alg=tenant.access_token_alg, typ="at+jwt")


def introspection_endpoint(client, slug: str) -> str:
    """The tenant's introspection endpoint, as its SMART discovery document names it."""
    return client.get(f"/t/{slug}/.well-known/smart-configuration").json["introspection_endpoint"]


# --- The same flow through Flask's test client, for the many one-fault requests --------------

PUBLIC_URL = "https://auth.example.test"


def fhir_base(slug: str) -> str:
    return f"{PUBLIC_URL}/t/{slug}/fhir"


def challenge_of(verifier: str) -> str:
    from authlib.oauth2.rfc7636 import create_s256_code_challenge

    return create_s256_code_challenge(verifier)


def authorization_params(clinic: Clinic, app=None, verifier: str | None = None, **overrides):
    """A valid SMART authorization request; ``None`` in ``overrides`` leaves a parameter out."""
    params = {
        "response_type": "code",
        "client_id": (app or clinic.public_app).client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": PATIENT_SCOPE,
        "state": "state-123",
        "aud": fhir_base(clinic.slug),
        "code_challenge": challenge_of(verifier or "v" * 43),
        "code_challenge_method": "S256",
    }
    params.update(overrides)
    return {name: value for name, value in params.items() if value is not None}


def consent_form(
    page: str, *, untick=(), tick=(), extra=(), decision="allow", pick=None, patient=None
):
    """The form a user sends from the consent ``page``.

    :param pick: the label of the patient the user picks; the page's value for it is sent.
    :param patient: a ``patient`` value sent as is, as a tampered form would.
    """
    from tests.fixtures.accounts import csrf_token
    from tests.fixtures.live import offered_patients
    from tests.fixtures.live import ticked_boxes

    form = {
        "csrf_token": csrf_token(page),
        "decision": decision,
        "grant": ticked_boxes(page, untick, tick) + list(extra),
    }
    if pick is not None:
        offered = offered_patients(page)
        assert pick in offered, f"the page offers no patient {pick!r}, only {list(offered)}"
        form["patient"] = offered[pick]
    if patient is not None:
        form["patient"] = patient
    return form


def authorize(client, clinic: Clinic, params: dict, **consent) -> Any:
    """GET the request as the signed-in user, then answer the consent page; the final response."""
    response = client.get(f"/t/{clinic.slug}/authorize", query_string=params)
    if response.status_code != 200 or 'name="decision"' not in response.get_data(as_text=True):
        return response
    return client.post(
        f"/t/{clinic.slug}/authorize",
        query_string=params,
        data=consent_form(response.get_data(as_text=True), **consent),
    )


def redirect_params(response) -> dict:
    from urllib.parse import parse_qs
    from urllib.parse import urlsplit

    assert response.status_code == 302, response.get_data(as_text=True)
    location = response.headers["Location"]
    assert location.startswith(REDIRECT_URI)
    return {name: values[0] for name, values in parse_qs(urlsplit(location).query).items()}


def get_code(client, clinic: Clinic, verifier: str, app=None, **overrides) -> str:
    params = authorization_params(clinic, app, verifier, **overrides)
    return redirect_params(authorize(client, clinic, params))["code"]


def exchange(client, clinic: Clinic, code: str, verifier: str | None, app=None, **extra):
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "client_id": (app or clinic.public_app).client_id,
    }
    if verifier is not None:
        data["code_verifier"] = verifier
    data.update(extra)
    return client.post(
        f"/t/{clinic.slug}/token", data={k: v for k, v in data.items() if v is not None}
    )
