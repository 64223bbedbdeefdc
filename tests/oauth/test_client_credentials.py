"""SMART Backend Services: client_credentials with private_key_jwt at /t/{slug}/token.

Every refusal is its own test and asserts the exact error (CA-09, BS-04, BS-05).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from werkzeug.datastructures import MultiDict

from authserver.extensions import db
from authserver.keys import service as keys
from tests.fixtures.assertions import assertion_claims
from tests.fixtures.assertions import make_client_key
from tests.fixtures.assertions import token_form

TOKEN_PATH = "/t/clinic-a/token"
TOKEN_URL = "https://auth.example.test/t/clinic-a/token"
FHIR_BASE = "https://auth.example.test/t/clinic-a/fhir"


def post_token(client, assertion, scope="system/Patient.rs", path=TOKEN_PATH, **extra):
    return client.post(path, data={**token_form(assertion, scope), **extra})


def assert_invalid_client(response, reason):
    """``invalid_client`` (CA-09), for the reason the test means (checked on the description)."""
    assert response.status_code in (400, 401), response.json
    assert response.json["error"] == "invalid_client"
    assert reason in response.json["error_description"]
    assert response.headers["Cache-Control"] == "no-store"


@pytest.fixture
def backend(tenant, make_backend_client):
    return make_backend_client(tenant)


def verified_access_token(tenant, token):
    header = jwt.get_unverified_header(token)
    jwk = next(k for k in keys.jwks(tenant)["keys"] if k["kid"] == header["kid"])
    return jwt.decode(token, jwt.PyJWK(jwk).key, algorithms=[header["alg"]], audience=FHIR_BASE)


# -- success ---------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["RS384", "ES384", "RS256", "ES256"])
def test_assertion_signed_with_a_registered_key_gets_a_token(
    client, tenant, make_backend_client, alg
):
    backend = make_backend_client(tenant, key=make_client_key(alg))
    response = post_token(client, backend.assertion(TOKEN_URL))
    assert response.status_code == 200, response.json
    body = response.json
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "system/Patient.rs"
    assert isinstance(body["expires_in"], int) and 0 < body["expires_in"] <= 300
    assert "refresh_token" not in body
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Pragma"] == "no-cache"


def test_access_token_names_tenant_and_client_and_no_user_or_patient(client, tenant, backend):
    body = post_token(client, backend.assertion(TOKEN_URL)).json
    claims = verified_access_token(tenant, body["access_token"])
    assert claims["tenant"] == "clinic-a"
    assert claims["client_id"] == backend.client_id
    assert claims["sub"] == backend.client_id
    assert claims["scope"] == "system/Patient.rs"
    assert claims["exp"] - claims["iat"] <= 300
    for absent in ("patient", "encounter", "fhirUser", "roles", "fhirContext"):
        assert absent not in claims


@pytest.mark.parametrize("scope", [None, "", "  "])
def test_a_request_without_scope_is_invalid_request(client, tenant, backend, scope):
    # BS-05: SMART Backend Services requires scope; nothing is granted by default.
    response = post_token(client, backend.assertion(TOKEN_URL), scope=scope)
    assert response.status_code == 400
    assert response.json["error"] == "invalid_request"
    assert "scope" in response.json["error_description"]


def test_wildcard_request_is_narrowed_to_the_registration(client, tenant, backend):
    response = post_token(client, backend.assertion(TOKEN_URL), scope="system/*.rs")
    assert response.status_code == 200
    assert response.json["scope"] == "system/Patient.rs system/Observation.rs"


def test_v1_and_granular_system_scopes(client, tenant, make_backend_client):
    backend = make_backend_client(tenant, scopes=["system/*.read", "system/Observation.rs"])
    scope = "system/Patient.read system/Observation.rs?category=laboratory"
    response = post_token(client, backend.assertion(TOKEN_URL), scope=scope)
    assert response.status_code == 200
    assert response.json["scope"] == scope


def test_scope_partly_outside_the_registration_is_down_scoped(client, tenant, backend):
    scope = "system/Patient.rs system/Encounter.rs system/Observation.cruds"
    response = post_token(client, backend.assertion(TOKEN_URL), scope=scope)
    assert response.status_code == 200
    assert response.json["scope"] == "system/Patient.rs system/Observation.rs"


@pytest.mark.parametrize("name", ['x"', "caf\u00e9"])
def test_a_repeated_parameter_is_invalid_request_whatever_its_name(client, backend, name):
    form = [*token_form(backend.assertion(TOKEN_URL)).items(), (name, "1"), (name, "2")]
    response = client.post(TOKEN_PATH, data=MultiDict(form))
    assert response.status_code == 400
    assert response.json["error"] == "invalid_request"


def test_asymmetric_client_sending_its_own_client_id_in_the_body_is_accepted(client, backend):
    response = post_token(client, backend.assertion(TOKEN_URL), client_id=backend.client_id)
    assert response.status_code == 200


def test_assertion_jti_is_remembered_by_every_instance(make_instance, tenant, backend):
    """Two app instances on one database: an assertion used at one is refused at the other."""
    assertion = backend.assertion(TOKEN_URL)
    first, second = make_instance().test_client(), make_instance().test_client()
    assert post_token(first, assertion).status_code == 200
    assert_invalid_client(post_token(second, assertion), "used before")


# -- scope refusals --------------------------------------------------------------------------


def test_scope_entirely_outside_the_registration_is_invalid_scope(client, tenant, backend):
    response = post_token(client, backend.assertion(TOKEN_URL), scope="system/Encounter.rs")
    assert response.status_code == 400
    assert response.json["error"] == "invalid_scope"


@pytest.mark.parametrize(
    ("registered", "granted"),
    [(["system/Patient.rs", "__bulk"], "system/Patient.rs __bulk"), ([], None)],
    ids=["registered-for-one", "registered-without-scopes"],
)
def test_a_backend_gets_only_the_extension_scopes_its_registration_names(
    client, tenant, make_backend_client, registered, granted
):
    # As at the authorization endpoint (smart/policy.py): an extension scope is a resource
    # server's own permission, granted only when the registration lists it.
    backend = make_backend_client(tenant, scopes=registered)
    scope = "system/Patient.rs __bulk __admin"
    response = post_token(client, backend.assertion(TOKEN_URL), scope=scope)
    if granted is None:
        assert response.status_code == 400
        assert response.json["error"] == "invalid_scope"
    else:
        assert response.status_code == 200, response.json
        assert response.json["scope"] == granted


def registered_before_scope_kinds_were_checked(client_row, scope: str) -> None:
    """Give a client scopes registration now refuses it (none of its grants issues them), as a
    row registered before it checked them may hold: the token endpoint must not grant them."""
    client_row.allowed_scope = scope
    db.session.commit()


def test_patient_or_user_scopes_are_never_granted_to_a_backend(client, tenant, make_backend_client):
    backend = make_backend_client(tenant)
    scope = "patient/*.rs user/*.rs system/Patient.rs"
    registered_before_scope_kinds_were_checked(backend.registration.client, scope)
    response = post_token(client, backend.assertion(TOKEN_URL), scope="patient/*.rs user/*.rs")
    assert response.status_code == 400
    assert response.json["error"] == "invalid_scope"


def test_malformed_scope_is_invalid_scope(client, tenant, backend):
    response = post_token(client, backend.assertion(TOKEN_URL), scope="system/Patient.sr")
    assert response.status_code == 400
    assert response.json["error"] == "invalid_scope"


@pytest.mark.parametrize("scope", ['system/Patient.rs"', "system/Patient.rs\\", "syst\u00e8m/*.rs"])
def test_malformed_scope_with_characters_no_description_may_hold_is_invalid_scope(
    client, backend, scope
):
    # RFC 6749 §5.2 keeps '"', '\\' and non-ASCII out of error_description: quoting the
    # scope must not turn the client's mistake into a 500.
    response = post_token(client, backend.assertion(TOKEN_URL), scope=scope)
    assert response.status_code == 400
    assert response.json["error"] == "invalid_scope"


# -- assertion refusals (CA-09) --------------------------------------------------------------


def test_wrong_aud_is_refused(client, backend):
    assert_invalid_client(post_token(client, backend.assertion(FHIR_BASE)), "'aud'")


def test_aud_of_another_tenants_token_endpoint_is_refused(client, backend, other_tenant):
    other = "https://auth.example.test/t/clinic-b/token"
    assert_invalid_client(post_token(client, backend.assertion(other)), "'aud'")


def test_iss_different_from_sub_is_refused(client, backend):
    assert_invalid_client(
        post_token(client, backend.assertion(TOKEN_URL, iss="someone-else")), "Issuer and Subject"
    )


def test_sub_of_an_unknown_client_is_refused(client, backend):
    claims = assertion_claims("app_unknown", TOKEN_URL)
    assert_invalid_client(post_token(client, backend.key.sign(claims)), "does not exist")


def test_body_client_id_different_from_the_assertion_is_refused(client, backend):
    response = post_token(client, backend.assertion(TOKEN_URL), client_id="app_other")
    assert_invalid_client(response, "client_id does not match")


def test_expired_assertion_is_refused(client, backend):
    past = int(time.time()) - 600
    assert_invalid_client(
        post_token(client, backend.assertion(TOKEN_URL, exp=past, iat=past - 60)), "expired"
    )


def test_exp_more_than_five_minutes_ahead_is_refused(client, backend):
    far = int(time.time()) + 600
    assert_invalid_client(
        post_token(client, backend.assertion(TOKEN_URL, exp=far)), "more than 5 minutes"
    )


def test_nbf_in_the_future_is_refused(client, backend):
    later = int(time.time()) + 240
    assert_invalid_client(
        post_token(client, backend.assertion(TOKEN_URL, nbf=later)), "not yet valid"
    )


def test_missing_jti_is_refused(client, backend):
    claims = assertion_claims(backend.client_id, TOKEN_URL)
    del claims["jti"]
    assert_invalid_client(post_token(client, backend.key.sign(claims)), "Missing JWT ID")


def test_replayed_assertion_is_refused(client, backend):
    assertion = backend.assertion(TOKEN_URL)
    assert post_token(client, assertion).status_code == 200
    assert_invalid_client(post_token(client, assertion), "used before")


@pytest.mark.parametrize("refusal", ["invalid_scope", "unauthorized_client"])
def test_an_assertion_spent_on_a_refused_request_is_refused_again(client, tenant, backend, refusal):
    # The client authenticated with this jti, so it is spent (RFC 7523 §3 item 7), whatever
    # the request then came to; a second try with a good request must not get a token.
    assertion = backend.assertion(TOKEN_URL)
    if refusal == "invalid_scope":
        first = post_token(client, assertion, scope="system/Encounter.rs")
    else:
        first = post_token(client, assertion, grant_type="refresh_token", refresh_token="x")
    assert first.status_code in (400, 401) and first.json["error"] != "invalid_client", first.json

    assert_invalid_client(post_token(client, assertion), "used before")


def test_new_assertion_reusing_a_jti_is_refused(client, backend):
    assert post_token(client, backend.assertion(TOKEN_URL, jti="a" * 64)).status_code == 200
    assert_invalid_client(
        post_token(client, backend.assertion(TOKEN_URL, jti="a" * 64)), "used before"
    )


def test_two_published_keys_with_the_assertions_kid_are_refused(
    client, tenant, make_client, jwks_host
):
    # CA-09: more than one candidate key is a failure, never a guess. (Registration refuses
    # such an inline jwks; what a jwks_uri serves can change at any time.)
    key, twin = make_client_key("RS384", kid="same"), make_client_key("RS384", kid="same")
    registration = make_client(
        tenant,
        auth_method="private_key_jwt",
        scopes=["system/Patient.rs"],
        jwks_uri=jwks_host.publish(key, twin),
    )
    claims = assertion_claims(registration.client.client_id, TOKEN_URL)
    assert_invalid_client(post_token(client, key.sign(claims)), "kid")


def test_unknown_kid_is_refused(client, backend):
    claims = assertion_claims(backend.client_id, TOKEN_URL)
    assert_invalid_client(
        post_token(client, backend.key.sign(claims, kid="not-registered")), "matches the kid"
    )


def test_missing_kid_is_refused(client, backend):
    claims = assertion_claims(backend.client_id, TOKEN_URL)
    token = jwt.encode(claims, backend.key.private_key, algorithm="RS384")
    assert_invalid_client(post_token(client, token), "no kid")


def test_signature_by_another_key_with_the_registered_kid_is_refused(client, backend):
    impostor = make_client_key("RS384", kid=backend.key.kid)
    assert_invalid_client(
        post_token(client, backend.assertion(TOKEN_URL, key=impostor)), "signature"
    )


def test_altered_payload_is_refused(client, backend):
    header, _, signature = backend.assertion(TOKEN_URL).split(".")
    claims = assertion_claims(backend.client_id, TOKEN_URL)
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    assert_invalid_client(post_token(client, f"{header}.{payload}.{signature}"), "signature")


def test_alg_none_is_refused(client, backend):
    claims = assertion_claims(backend.client_id, TOKEN_URL)
    token = jwt.encode(claims, None, algorithm="none", headers={"kid": backend.key.kid})
    assert_invalid_client(post_token(client, token), "'none' is not allowed")


def test_hs256_keyed_with_the_public_key_is_refused(client, backend):
    public_pem = backend.key.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "typ": "JWT", "kid": backend.key.kid}
    claims = assertion_claims(backend.client_id, TOKEN_URL)
    signing_input = ".".join(_b64(json.dumps(part).encode()) for part in (header, claims))
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    assert_invalid_client(
        post_token(client, f"{signing_input}.{_b64(mac)}"), "'HS256' is not allowed"
    )


def test_kid_of_an_ec_key_with_an_rsa_alg_is_refused(client, tenant, make_backend_client):
    ec_key = make_client_key("ES384")
    backend = make_backend_client(tenant, key=ec_key)
    rsa_signer = make_client_key("RS384", kid=ec_key.kid)
    assert_invalid_client(
        post_token(client, backend.assertion(TOKEN_URL, key=rsa_signer)), "matches the kid"
    )


def test_jku_other_than_the_registered_jwks_uri_is_refused(client, backend):
    claims = assertion_claims(backend.client_id, TOKEN_URL)
    token = backend.key.sign(claims, jku="https://attacker.example/jwks.json")
    assert_invalid_client(post_token(client, token), "jku")


def test_wrong_client_assertion_type_is_refused(client, backend):
    response = post_token(
        client, backend.assertion(TOKEN_URL), client_assertion_type="urn:example:other"
    )
    assert_invalid_client(response, "cannot authenticate")


@pytest.mark.parametrize(
    "form",
    [
        {"client_assertion_type": "urn:example:other"},
        {"client_assertion": "not.a.jwt"},
    ],
    ids=["assertion-type", "garbage-assertion"],
)
def test_a_refused_assertion_is_400_without_a_challenge(client, backend, form):
    """RFC 6749 §5.2: 401 is for a client that tried the Authorization header; g10's Backend
    Services test of a wrong client_assertion_type asserts exactly 400."""
    response = post_token(client, backend.assertion(TOKEN_URL), **form)

    assert response.status_code == 400
    assert response.json["error"] == "invalid_client"
    assert "WWW-Authenticate" not in response.headers


def test_garbage_assertion_is_refused(client, backend):
    assert_invalid_client(post_token(client, "not.a.jwt"), "Invalid JWT assertion")


def test_unknown_alg_named_with_a_quote_is_refused(client, backend):
    header = {"alg": 'RS384"', "typ": "JWT", "kid": backend.key.kid}
    claims = assertion_claims(backend.client_id, TOKEN_URL)
    signing_input = ".".join(_b64(json.dumps(part).encode()) for part in (header, claims))
    assert_invalid_client(post_token(client, f"{signing_input}.AAAA"), "not supported")


@pytest.mark.parametrize("name", ['x"y', "\u00e9t\u00e9"])
def test_critical_header_the_server_does_not_know_is_refused(client, backend, name):
    # joserfc quotes the header name in its message; the client chose it.
    token = backend.key.sign(assertion_claims(backend.client_id, TOKEN_URL), crit=[name])
    assert_invalid_client(post_token(client, token), "critical")


def test_client_of_another_tenant_is_refused(client, tenant, other_tenant, make_backend_client):
    theirs = make_backend_client(other_tenant)
    assert_invalid_client(post_token(client, theirs.assertion(TOKEN_URL)), "does not exist")


def test_own_tenant_url_with_another_tenants_assertion_is_refused(
    client, tenant, other_tenant, make_backend_client
):
    theirs = make_backend_client(other_tenant)
    assertion = theirs.assertion("https://auth.example.test/t/clinic-b/token")
    assert_invalid_client(post_token(client, assertion), "does not exist")
    # ... and the same assertion is still good where it belongs.
    assert post_token(client, assertion, path="/t/clinic-b/token").status_code == 200


def test_secret_client_cannot_use_client_credentials(client, tenant, make_client):
    # BS-06: a secret never gets a Backend Services token, not even a confidential web app's.
    registration = make_client(
        tenant,
        auth_method="client_secret_basic",
        redirect_uris=["https://app.example.test/callback"],
    )
    registered_before_scope_kinds_were_checked(registration.client, "system/*.rs")
    credentials = f"{registration.client.client_id}:{registration.client_secret}"
    response = client.post(
        TOKEN_PATH,
        data={"grant_type": "client_credentials", "scope": "system/Patient.rs"},
        headers={"Authorization": "Basic " + base64.b64encode(credentials.encode()).decode()},
    )
    assert response.status_code == 401
    assert response.json["error"] == "invalid_client"
    assert response.headers["WWW-Authenticate"].startswith("Basic")
    # The same secret in the form: refused alike, as a 400 (RFC 6749 §5.2).
    in_form = client.post(
        TOKEN_PATH,
        data={
            "grant_type": "client_credentials",
            "scope": "system/Patient.rs",
            "client_id": registration.client.client_id,
            "client_secret": registration.client_secret,
        },
    )
    assert in_form.status_code == 400
    assert in_form.json["error"] == "invalid_client"


def test_asymmetric_client_without_client_credentials_grant_is_unauthorized(
    client, tenant, make_backend_client
):
    backend = make_backend_client(
        tenant,
        redirect_uris=["https://app.example.test/callback"],
        grant_types=["authorization_code"],
        scopes=["user/*.rs"],
    )
    registered_before_scope_kinds_were_checked(backend.registration.client, "system/*.rs")
    response = post_token(client, backend.assertion(TOKEN_URL))
    assert response.status_code == 400
    assert response.json["error"] == "unauthorized_client"


def test_deleted_client_is_refused(client, tenant, backend):
    from authserver.clients import service as clients

    clients.delete(tenant, backend.client_id)
    db.session.commit()
    assert_invalid_client(post_token(client, backend.assertion(TOKEN_URL)), "does not exist")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
