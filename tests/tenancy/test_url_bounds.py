"""A tenant at the URL bounds signs tokens that fit (tokens/limits.py).

The longest public URL the app starts with, the longest slug and the longest FHIR base URL
``tenant create`` accepts make an issuer and a FHIR base URL within ``ASSUMED_URL_LENGTH``; a
token carrying them and a scope at its own bound is short enough for a header and for our
introspection. (One character more is refused where it comes in: tests/test_config.py,
tests/tenancy/test_tenants.py.)
"""

from __future__ import annotations

import jwt
import pytest

from authserver.tenancy import service as tenants
from authserver.tenancy.urls import MAX_PUBLIC_URL_LENGTH
from authserver.tenancy.urls import MAX_SLUG_LENGTH
from authserver.tokens.limits import ASSUMED_URL_LENGTH
from authserver.tokens.limits import MAX_TOKEN_LENGTH
from authserver.tokens.limits import MAX_TOKEN_SCOPE_LENGTH
from tests.fixtures.assertions import token_form
from tests.fixtures.commands import run
from tests.fixtures.database import FreshContextClient

PUBLIC_URL_AT_BOUND = "https://auth.example.test/" + "p" * (MAX_PUBLIC_URL_LENGTH - 26)
SLUG_AT_BOUND = "c" * MAX_SLUG_LENGTH
FHIR_BASE_AT_BOUND = "https://fhir.example.test/" + "r" * (ASSUMED_URL_LENGTH - 26)
GRANULAR = "system/Observation.rs?code=http://loinc.org|"


def scopes_totalling(length: int) -> list[str]:
    """Distinct granular system/ scopes: space-joined, exactly ``length`` characters."""
    scopes: list[str] = []
    while length - len(" ".join(scopes)) > 2 * (len(GRANULAR) + 8):
        scopes.append(f"{GRANULAR}{len(scopes):07d}")
    scopes.append(GRANULAR + "9" * (length - len(" ".join(scopes)) - 1 - len(GRANULAR)))
    assert len(" ".join(scopes)) == length
    return scopes


@pytest.fixture
def deployment(make_app):
    deployment = make_app(AUTHSERVER_PUBLIC_URL=PUBLIC_URL_AT_BOUND)
    deployment.test_client_class = FreshContextClient
    return deployment


@pytest.mark.parametrize(
    "fhir_base_url", [None, FHIR_BASE_AT_BOUND], ids=["default-fhir-base", "fhir-base-url"]
)
def test_a_tenant_at_the_url_bounds_signs_tokens_that_fit(
    app, deployment, make_backend_client, fhir_base_url
):
    override = ["--fhir-base-url", fhir_base_url] if fhir_base_url else []
    with deployment.app_context():  # the command's app: the public URL at its bound
        cli = deployment.test_cli_runner()
        created = run(cli, "tenant", "create", SLUG_AT_BOUND, "--name", "Widest", *override)
    assert len(created["fhir_base_url"]) == ASSUMED_URL_LENGTH
    assert created["issuer"] == f"{PUBLIC_URL_AT_BOUND}/t/{SLUG_AT_BOUND}"
    scopes = scopes_totalling(MAX_TOKEN_SCOPE_LENGTH)
    backend = make_backend_client(tenants.get_tenant(SLUG_AT_BOUND), scopes=scopes)
    form = token_form(backend.assertion(f"{created['issuer']}/token"), " ".join(scopes))

    response = deployment.test_client().post(f"/t/{SLUG_AT_BOUND}/token", data=form)

    assert response.status_code == 200, response.json
    token = response.json["access_token"]
    assert len(token) <= MAX_TOKEN_LENGTH
    claims = jwt.decode(token, options={"verify_signature": False})
    assert (claims["iss"], claims["aud"]) == (created["issuer"], created["fhir_base_url"])
    assert claims["scope"] == " ".join(scopes)
