"""Introspection with a Bearer token (SMART token introspection, INT-06; RFC 7662 §2.1, §2.3).

A resource server gets an ``introspect`` token from the token endpoint (client_credentials, with
the credential it is registered with) and presents it as ``Authorization: Bearer``. Anything
else as a bearer token is a 401 as RFC 6750 §3 describes it, never an answer.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import replace

import jwt
import pytest

from authserver.clients import service as clients
from authserver.clients.models import RESOURCE_SERVER
from authserver.extensions import db
from authserver.launch import patients
from authserver.tenancy import service as tenants
from authserver.tokens import fastpath
from authserver.tokens import revocation
from authserver.tokens import service as tokens
from tests.fixtures.assertions import ASSERTION_TYPE
from tests.fixtures.assertions import assertion_claims
from tests.fixtures.assertions import jwks_of
from tests.fixtures.assertions import make_client_key
from tests.fixtures.assertions import token_form
from tests.fixtures.tokens import SCOPE
from tests.fixtures.tokens import basic
from tests.oauth.conftest import fhir_base
from tests.oauth.conftest import introspection_endpoint
from tests.oauth.conftest import resigned


@pytest.fixture(autouse=True, params=["full path", "fast path"])
def path(request, tenant, other_tenant):
    """Each test runs twice: introspection's fast path knowing neither tenant yet (so the full
    path answers), and knowing both (so it answers what it may and declines the rest)."""
    if request.param == "fast path":
        fastpath.remember_tenant(tenant)
        fastpath.remember_tenant(other_tenant)
    return request.param


def introspection_token(client, gateway, scope="introspect", slug=None):
    """The token endpoint's answer to the gateway's client_credentials request (Basic auth)."""
    form = {"grant_type": "client_credentials"}
    if scope is not None:
        form["scope"] = scope
    return client.post(
        f"/t/{slug or gateway.tenant_slug}/token",
        data=form,
        headers=basic(gateway.client_id, gateway.secret),
    )


def bearer_token(client, gateway) -> str:
    response = introspection_token(client, gateway)
    assert response.status_code == 200, response.json
    return response.json["access_token"]


def introspect(client, slug, bearer, token, scheme="Bearer", **form):
    return client.post(
        f"/t/{slug}/introspect",
        data={"token": token, **form},
        headers={"Authorization": f"{scheme} {bearer}"},
    )


def assert_bearer_refused(response, error, slug):
    """RFC 7662 §2.3: a 401 as RFC 6750 §3 describes it, in the JSON of RFC 6749 §5.2."""
    assert response.status_code == 401, response.json
    assert response.json["error"] == error
    assert "active" not in response.json
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ")
    assert f'realm="{slug}"' in challenge and f'error="{error}"' in challenge
    assert response.headers["Cache-Control"] == "no-store"


# -- the token --------------------------------------------------------------------------------


def test_a_resource_server_is_issued_an_introspect_token(client, home, gateway):
    response = introspection_token(client, gateway)

    assert response.status_code == 200, response.json
    body = response.json
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "introspect"
    assert 0 < body["expires_in"] <= 300
    assert "refresh_token" not in body
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["client_id"] == claims["sub"] == gateway.client_id
    assert claims["tenant"] == home.slug
    assert "roles" not in claims and "patient" not in claims


def test_a_resource_server_using_private_key_jwt_is_issued_one_too(client, home, make_client):
    key = make_client_key()
    registration = make_client(
        home, name="JWT gateway", kind=RESOURCE_SERVER, auth_method="private_key_jwt",
        jwks=jwks_of(key),
    )  # fmt: skip
    audience = f"https://auth.example.test/t/{home.slug}/token"
    assertion = key.sign(assertion_claims(registration.client.client_id, audience))

    response = client.post(f"/t/{home.slug}/token", data=token_form(assertion, "introspect"))

    assert response.status_code == 200, response.json
    assert response.json["scope"] == "introspect"


def test_a_resource_server_using_client_secret_post_is_issued_one_too(client, home, make_gateway):
    gateway = make_gateway(home, auth_method="client_secret_post")

    response = client.post(
        f"/t/{home.slug}/token",
        data={
            "grant_type": "client_credentials",
            "scope": "introspect",
            "client_id": gateway.client_id,
            "client_secret": gateway.secret,
        },
    )

    assert response.status_code == 200, response.json
    assert response.json["scope"] == "introspect"


@pytest.mark.parametrize("scope", ["system/Patient.rs", "introspect system/Patient.rs", "openid"])
def test_a_resource_server_asking_for_anything_else_is_invalid_scope(client, home, gateway, scope):
    response = introspection_token(client, gateway, scope=scope)

    assert response.status_code == 400
    assert response.json["error"] == "invalid_scope"
    assert "introspect" in response.json["error_description"]


def test_a_resource_server_asking_for_no_scope_is_invalid_request(client, home, gateway):
    response = introspection_token(client, gateway, scope=None)

    assert response.status_code == 400
    assert response.json["error"] == "invalid_request"
    assert "introspect" in response.json["error_description"]


def test_a_resource_server_with_a_wrong_secret_is_invalid_client(client, home, gateway):
    response = introspection_token(client, replace(gateway, secret="ascs_wrong"))

    assert response.status_code == 401
    assert response.json["error"] == "invalid_client"


def test_a_resource_server_of_another_tenant_is_invalid_client(client, home, away, gateway):
    response = introspection_token(client, gateway, slug=away.slug)

    assert response.status_code == 401
    assert response.json["error"] == "invalid_client"


def test_a_backend_app_asking_for_introspect_is_invalid_scope(client, home, make_backend_client):
    backend = make_backend_client(home)
    assertion = backend.assertion(f"https://auth.example.test/t/{home.slug}/token")

    response = client.post(f"/t/{home.slug}/token", data=token_form(assertion, "introspect"))

    assert response.status_code == 400
    assert response.json["error"] == "invalid_scope"
    assert "Only a resource server" in response.json["error_description"]


# -- its audience: the introspection endpoint, never the FHIR server --------------------------


def test_the_introspect_token_is_for_the_introspection_endpoint(client, home, gateway):
    """RFC 9068 §3, RFC 8707: ``aud`` names the resource the token is for. A FHIR server that
    checks ``aud`` against its base refuses it, wherever it leaks."""
    claims = jwt.decode(bearer_token(client, gateway), options={"verify_signature": False})

    assert claims["aud"] == introspection_endpoint(client, home.slug)
    assert claims["aud"] != fhir_base(home.slug)


def test_a_gateway_introspecting_its_own_token_sees_it_is_no_fhir_token(
    client, home, gateway, fast_answers, path
):
    """RFC 7662: active while valid, with the ``aud`` it carries, whoever asks."""
    bearer = bearer_token(client, gateway)

    answers = [introspect(client, home.slug, bearer, bearer), gateway.introspect(client, bearer)]

    for answer in answers:
        assert answer.status_code == 200
        assert answer.json["active"] is True
        assert answer.json["aud"] == introspection_endpoint(client, home.slug)
        assert answer.json["scope"] == "introspect"
        assert answer.json["client_id"] == gateway.client_id
    if path == "fast path":
        assert fast_answers == [answer.json for answer in answers]


@pytest.mark.parametrize("audience", ["FHIR base", "another tenant's introspection endpoint"])
def test_an_introspect_token_for_another_resource_is_refused_and_inactive(
    client, home, away, gateway, issue, audience
):
    """Signed by the tenant's key, so only its ``aud`` can tell: refused as a Bearer, inactive
    when introspected. (Introspect tokens named the FHIR base before they named this
    endpoint; such a token, alive for five minutes at most, is refused alike.)"""
    issued = issue(home)
    bearer = bearer_token(client, gateway)
    assert introspect(client, home.slug, bearer, issued.access_token).json["active"] is True
    elsewhere = fhir_base(home.slug)
    if audience != "FHIR base":
        elsewhere = introspection_endpoint(client, away.slug)
    twin = resigned(home, bearer, aud=elsewhere)

    refused = introspect(client, home.slug, twin, issued.access_token)

    assert_bearer_refused(refused, "invalid_token", home.slug)
    assert gateway.introspect(client, twin).json == {"active": False}


def other_token(kind, client, home, gateway, issue, make_backend_client) -> tuple[str, dict]:
    """An active access token of ``kind``, and the claims to change beside its ``aud``."""
    if kind == "app":
        return issue(home).access_token, {}
    if kind == "backend services":
        backend = make_backend_client(home)
        assertion = backend.assertion(f"https://auth.example.test/t/{home.slug}/token")
        token = client.post(f"/t/{home.slug}/token", data=token_form(assertion)).json
        return token["access_token"], {}
    return bearer_token(client, gateway), {"scope": "introspect system/*.rs"}


@pytest.mark.parametrize("kind", ["app", "backend services", "introspect and more"])
def test_another_token_for_the_introspection_endpoint_is_refused_and_inactive(
    client, home, gateway, issue, make_backend_client, kind
):
    """Only an ``introspect`` token is for the introspection endpoint: any other scope with that
    ``aud``, though signed by the tenant's key, is no token of this tenant."""
    token, changes = other_token(kind, client, home, gateway, issue, make_backend_client)
    forged = resigned(home, token, aud=introspection_endpoint(client, home.slug), **changes)

    refused = introspect(client, home.slug, forged, issue(home).access_token)

    assert_bearer_refused(refused, "invalid_token", home.slug)
    assert gateway.introspect(client, forged).json == {"active": False}


def test_a_token_granted_more_than_introspect_is_insufficient_scope(client, home, gateway, issue):
    """An introspect token is granted ``introspect`` and nothing else; one that would carry
    more (re-signed by the tenant's key: never issued) is for the FHIR base, no Bearer here."""
    bearer = bearer_token(client, gateway)
    wider = resigned(home, bearer, aud=fhir_base(home.slug), scope="introspect system/*.rs")

    response = introspect(client, home.slug, wider, issue(home).access_token)

    assert_bearer_refused(response, "insufficient_scope", home.slug)


# -- introspecting with it --------------------------------------------------------------------


def test_the_bearer_token_introspects_like_the_gateways_credential(client, home, gateway, issue):
    issued = issue(home)
    bearer = bearer_token(client, gateway)

    with_bearer = introspect(client, home.slug, bearer, issued.access_token)
    with_secret = gateway.introspect(client, issued.access_token)

    assert with_bearer.status_code == 200
    assert with_bearer.json["active"] is True
    assert with_bearer.json["scope"] == SCOPE
    assert with_bearer.json == with_secret.json
    assert with_bearer.headers["Cache-Control"] == "no-store"


def test_tokens_of_every_client_answer_and_inactive_ones_say_so(client, home, gateway, issue):
    bearer = bearer_token(client, gateway)
    first, second = issue(home), issue(home)
    revocation.revoke_for_client(home, clients.find_client(home, second.client_id))
    db.session.commit()

    assert introspect(client, home.slug, bearer, first.access_token).json["active"] is True
    assert introspect(client, home.slug, bearer, first.refresh_token).json["active"] is True
    assert introspect(client, home.slug, bearer, second.access_token).json == {"active": False}
    assert introspect(client, home.slug, bearer, "not-a-token").json == {"active": False}


def test_the_scheme_is_read_in_any_case(client, home, gateway, issue):
    issued = issue(home)
    bearer = bearer_token(client, gateway)

    response = introspect(client, home.slug, bearer, issued.access_token, scheme="bEARER")

    assert response.json["active"] is True


def test_an_apps_access_token_is_insufficient_scope(client, home, issue):
    issued = issue(home)

    response = introspect(client, home.slug, issued.access_token, issued.access_token)

    assert_bearer_refused(response, "insufficient_scope", home.slug)
    assert 'scope="introspect"' in response.headers["WWW-Authenticate"]


def test_a_backend_services_token_is_insufficient_scope(client, home, make_backend_client, issue):
    backend = make_backend_client(home)
    assertion = backend.assertion(f"https://auth.example.test/t/{home.slug}/token")
    system_token = client.post(f"/t/{home.slug}/token", data=token_form(assertion)).json

    response = introspect(client, home.slug, system_token["access_token"], issue(home).access_token)

    assert_bearer_refused(response, "insufficient_scope", home.slug)


def test_the_servers_own_patient_search_token_is_insufficient_scope(client, home, issue):
    own = patients.server_token(home)

    response = introspect(client, home.slug, own, issue(home).access_token)

    assert_bearer_refused(response, "insufficient_scope", home.slug)


def test_a_refresh_token_is_invalid_token(client, home, issue):
    issued = issue(home)

    response = introspect(client, home.slug, issued.refresh_token, issued.access_token)

    assert_bearer_refused(response, "invalid_token", home.slug)


@pytest.mark.parametrize("bearer", ["", "not-a-token", "a.b.c", "é"])
def test_a_bearer_that_is_no_token_is_invalid_token(client, home, issue, bearer):
    response = introspect(client, home.slug, bearer, issue(home).access_token)

    assert_bearer_refused(response, "invalid_token", home.slug)


def test_a_bearer_whose_kid_is_a_lone_surrogate_is_invalid_token(client, home, gateway, issue):
    """JSON can spell one ("\\ud800"), which no database driver can encode: it names no key."""
    _, payload, signature = bearer_token(client, gateway).split(".")
    header = json.dumps({"alg": "RS256", "typ": "at+jwt", "kid": "\ud800"}).encode()
    forged = ".".join((base64.urlsafe_b64encode(header).rstrip(b"=").decode(), payload, signature))

    response = introspect(client, home.slug, forged, issue(home).access_token)

    assert_bearer_refused(response, "invalid_token", home.slug)


def test_an_expired_introspect_token_is_invalid_token(client, home, gateway, issue):
    rs = clients.find_client(home, gateway.client_id)
    authorization = tokens.Authorization(tenant=home, client=rs, scope="introspect")
    expired = tokens.issue_access_token(authorization, -60)["access_token"]
    db.session.commit()

    response = introspect(client, home.slug, expired, issue(home).access_token)

    assert_bearer_refused(response, "invalid_token", home.slug)


def test_a_revoked_introspect_token_is_invalid_token(client, home, gateway, issue):
    bearer = bearer_token(client, gateway)
    claims = jwt.decode(bearer, options={"verify_signature": False})
    revocation.revoke_token(
        home, kind="access", jti=claims["jti"], grant_id="", actor=gateway.client_id
    )
    db.session.commit()

    response = introspect(client, home.slug, bearer, issue(home).access_token)

    assert_bearer_refused(response, "invalid_token", home.slug)


def test_the_gateway_may_revoke_its_own_introspect_token(client, home, gateway, issue):
    bearer = bearer_token(client, gateway)

    revoked = client.post(
        f"/t/{home.slug}/revoke",
        data={"token": bearer},
        headers=basic(gateway.client_id, gateway.secret),
    )

    assert revoked.status_code == 200
    response = introspect(client, home.slug, bearer, issue(home).access_token)
    assert_bearer_refused(response, "invalid_token", home.slug)


def test_deleting_the_resource_server_ends_its_introspect_token(client, home, gateway, issue):
    bearer = bearer_token(client, gateway)
    clients.delete(home, gateway.client_id)
    db.session.commit()

    response = introspect(client, home.slug, bearer, issue(home).access_token)

    assert_bearer_refused(response, "invalid_token", home.slug)


def test_a_new_gateway_secret_ends_the_introspect_tokens_the_old_one_got(
    client, home, gateway, issue
):
    bearer = bearer_token(client, gateway)
    renewed = clients.reset_secret(home, gateway.client_id)
    db.session.commit()

    response = introspect(client, home.slug, bearer, issue(home).access_token)

    assert_bearer_refused(response, "invalid_token", home.slug)
    fresh = bearer_token(client, replace(gateway, secret=renewed.client_secret))
    assert introspect(client, home.slug, fresh, issue(home).access_token).json["active"] is True


def test_another_tenants_introspect_token_is_invalid_token_here(
    client, home, away, make_gateway, issue
):
    theirs = bearer_token(client, make_gateway(away))

    response = introspect(client, home.slug, theirs, issue(home).access_token)

    assert_bearer_refused(response, "invalid_token", home.slug)
    # ... and it still works where it belongs, on that tenant's tokens only.
    there = introspect(client, away.slug, theirs, issue(away).access_token)
    assert there.json["active"] is True


def test_a_suspended_tenants_introspect_token_is_invalid_token(client, home, gateway, issue):
    bearer = bearer_token(client, gateway)
    issued = issue(home)
    tenants.suspend(home)
    db.session.commit()

    response = introspect(client, home.slug, bearer, issued.access_token)

    assert_bearer_refused(response, "invalid_token", home.slug)


@pytest.mark.parametrize("name", ["client_secret", "client_assertion"])
def test_a_bearer_with_another_credential_is_invalid_request(client, home, gateway, issue, name):
    bearer = bearer_token(client, gateway)
    extra = {name: gateway.secret, "client_id": gateway.client_id}
    if name == "client_assertion":
        extra["client_assertion_type"] = ASSERTION_TYPE

    response = introspect(client, home.slug, bearer, issue(home).access_token, **extra)

    assert response.status_code == 400
    assert response.json["error"] == "invalid_request"


def test_the_bearer_is_not_accepted_once_it_expires(client, home, gateway, issue, monkeypatch):
    bearer = bearer_token(client, gateway)
    issued = issue(home)
    assert introspect(client, home.slug, bearer, issued.access_token).status_code == 200
    exp = jwt.decode(bearer, options={"verify_signature": False})["exp"]
    later = exp + 1.0
    monkeypatch.setattr(time, "time", lambda: later)

    response = introspect(client, home.slug, bearer, issued.access_token)

    assert_bearer_refused(response, "invalid_token", home.slug)


def test_the_fast_path_answers_a_bearer_caller_once_it_knows_the_tenant(
    client, home, gateway, issue, fast_answers, path
):
    issued, other = issue(home), issue(home)
    bearer = bearer_token(client, gateway)

    answers = [
        introspect(client, home.slug, bearer, token).json
        for token in (issued.access_token, issued.access_token, other.access_token, "not-a-jwt")
    ]

    assert [answer["active"] for answer in answers] == [True, True, True, False]
    # The first request of a tenant goes to Flask, which tells the fast path about it.
    expected = answers if path == "fast path" else [None, *answers[1:]]
    assert fast_answers == expected
