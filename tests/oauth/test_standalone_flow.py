"""Standalone launch end to end, with Authlib's own OAuth client against a live server."""

from __future__ import annotations

from urllib.parse import parse_qs
from urllib.parse import urlsplit

import pytest
import requests

from tests.fixtures.live import Browser
from tests.oauth.conftest import PATIENT_SCOPE
from tests.oauth.conftest import app_session
from tests.oauth.conftest import new_verifier
from tests.oauth.conftest import verify_with_jwks


def patient_launch(server, clinic, *, confidential=False, scope=PATIENT_SCOPE, nonce="n-1"):
    session = app_session(server, clinic, confidential=confidential, scope=scope)
    verifier = new_verifier()
    url, state = session.create_authorization_url(
        server.authorize_url(clinic.slug),
        code_verifier=verifier,
        aud=server.fhir_base(clinic.slug),
        nonce=nonce,
    )
    location = Browser("pat").authorize(url)
    token = session.fetch_token(
        server.token_url(clinic.slug), authorization_response=location, code_verifier=verifier
    )
    return session, token, location, state


@pytest.mark.parametrize("confidential", [False, True], ids=["public", "confidential"])
def test_standalone_patient_launch_at_two_tenants(live_server, clinic, other_clinic, confidential):
    server = live_server()
    tokens = {}
    for current in (clinic, other_clinic):
        _, token, location, state = patient_launch(server, current, confidential=confidential)
        assert parse_qs(urlsplit(location).query)["state"] == [state]
        assert token["token_type"] == "Bearer"
        assert isinstance(token["expires_in"], int)
        assert token["scope"] == PATIENT_SCOPE
        assert token["patient"] == f"p-{current.slug}"
        assert token["refresh_token"].startswith("asrt_")
        tokens[current.slug] = token

    for slug, token in tokens.items():
        other = "clinic-b" if slug == "clinic-a" else "clinic-a"
        claims = verify_with_jwks(
            token["access_token"], server.jwks(slug), audience=server.fhir_base(slug)
        )
        assert claims["iss"] == server.issuer(slug)
        assert claims["patient"] == f"p-{slug}"
        assert claims["tenant"] == slug
        assert claims["roles"] == ["patient"]
        with pytest.raises(Exception, match="no key"):
            verify_with_jwks(
                token["access_token"], server.jwks(other), audience=server.fhir_base(slug)
            )


def test_authorize_by_post_gives_the_same_result(live_server, clinic):
    server = live_server()
    session = app_session(server, clinic)
    verifier = new_verifier()
    url, state = session.create_authorization_url(
        server.authorize_url(clinic.slug), code_verifier=verifier, aud=server.fhir_base("clinic-a")
    )
    endpoint, _, query = url.partition("?")
    location = Browser("pat").authorize(
        endpoint, method="POST", data={k: v[0] for k, v in parse_qs(query).items()}
    )
    token = session.fetch_token(
        server.token_url(clinic.slug), authorization_response=location, code_verifier=verifier
    )
    assert token["patient"] == "p-clinic-a"
    assert parse_qs(urlsplit(location).query)["state"] == [state]


def test_id_token_verifies_against_the_tenant_jwks(live_server, clinic):
    server = live_server()
    _, token, _, _ = patient_launch(server, clinic, nonce="n-xyz")
    claims = verify_with_jwks(
        token["id_token"], server.jwks("clinic-a"), audience=clinic.public_app.client_id
    )
    assert claims["iss"] == server.issuer("clinic-a")
    assert claims["nonce"] == "n-xyz"
    assert claims["fhirUser"] == server.fhir_base("clinic-a") + "/Patient/p-clinic-a"
    discovery = requests.get(
        server.issuer("clinic-a") + "/.well-known/openid-configuration", timeout=10
    ).json()
    assert discovery["issuer"] == claims["iss"]
