"""Token endpoint, authorization-code grant: SMART-REQUIREMENTS §1.4, §1.7, §2.4 and §3.1."""

from __future__ import annotations

import base64
from datetime import timedelta

import jwt
import pytest
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from werkzeug.datastructures import MultiDict

from authserver.audit.models import AuditRecord
from authserver.extensions import db
from authserver.models import utcnow
from authserver.oauth import service as oauth_service
from authserver.oauth.models import AuthorizationCode
from authserver.tenancy import service as tenants
from authserver.tokens import revocation
from authserver.tokens.models import IssuedToken
from tests.fixtures.accounts import login
from tests.fixtures.assertions import ASSERTION_TYPE
from tests.oauth.conftest import REDIRECT_URI
from tests.oauth.conftest import authorization_params
from tests.oauth.conftest import authorize
from tests.oauth.conftest import challenge_of
from tests.oauth.conftest import exchange
from tests.oauth.conftest import get_code
from tests.oauth.conftest import new_verifier
from tests.oauth.conftest import redirect_params

VERIFIER = "x" * 20 + "-Verifier_with.tilde~" + "y" * 20


@pytest.fixture
def signed_in(client, clinic):
    login(client, clinic.slug, "pat")
    return client


def basic(client_id: str, secret: str) -> dict:
    raw = f"{client_id}:{secret}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def assert_error(response, status: int, code: str) -> None:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.json["error"] == code
    assert response.headers["Cache-Control"] == "no-store"
    assert "access_token" not in response.json


# --- TOK-01..03, 06, 07, 12; §2.4: the success response ------------------------------------


def test_an_asymmetric_app_exchanges_a_code_and_refreshes_with_private_key_jwt(
    signed_in, clinic, make_backend_client
):
    # CA-08, client-confidential-asymmetric: an assertion authenticates, no client_id needed.
    token_url = "https://auth.example.test/t/clinic-a/token"
    app = make_backend_client(
        clinic.tenant,
        scopes=[],
        redirect_uris=[REDIRECT_URI],
        grant_types=["authorization_code", "refresh_token"],
    )
    code = get_code(signed_in, clinic, VERIFIER, app.registration.client)
    assertion = {"client_assertion_type": ASSERTION_TYPE}

    first = signed_in.post(
        "/t/clinic-a/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": VERIFIER,
            **assertion,
            "client_assertion": app.assertion(token_url),
        },
    )
    assert first.status_code == 200, first.json
    refreshed = signed_in.post(
        "/t/clinic-a/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": first.json["refresh_token"],
            **assertion,
            "client_assertion": app.assertion(token_url),
        },
    )
    assert refreshed.status_code == 200, refreshed.json
    unsigned = signed_in.post(
        "/t/clinic-a/token",
        data={"grant_type": "refresh_token", "refresh_token": refreshed.json["refresh_token"]},
    )
    # RFC 6749 §5.2: no Authorization header tried, so a 400 (a 401 is for the header).
    assert unsigned.status_code == 400 and unsigned.json["error"] == "invalid_client"


def test_a_patient_scope_alone_puts_the_patient_in_context(signed_in, clinic):
    # TOK-08: any patient/ scope needs a patient, with or without launch/patient.
    code = get_code(signed_in, clinic, VERIFIER, scope="patient/Observation.rs")
    body = exchange(signed_in, clinic, code, VERIFIER).json
    assert body["scope"] == "patient/Observation.rs"
    assert body["patient"] == "p-clinic-a"


def test_launch_patient_with_a_role_still_puts_the_patient_in_context(signed_in, clinic):
    # SCOPE-09: a role we do not know "SHOULD still yield context for the type".
    scope = "launch/patient?role=https://example.org/referral openid fhirUser"
    body = exchange(signed_in, clinic, get_code(signed_in, clinic, VERIFIER, scope=scope), VERIFIER)
    assert body.json["scope"] == scope
    assert body.json["patient"] == "p-clinic-a"


def test_a_standalone_launch_grants_no_encounter_scope_it_cannot_fill(signed_in, clinic):
    # SA-02: no context-standalone-encounter, so launch/encounter is not granted empty.
    scope = "launch/patient launch/encounter launch/imagingstudy openid fhirUser patient/*.rs"
    body = exchange(signed_in, clinic, get_code(signed_in, clinic, VERIFIER, scope=scope), VERIFIER)
    assert body.json["scope"] == "launch/patient openid fhirUser patient/*.rs"
    assert body.json["patient"] == "p-clinic-a"
    assert "encounter" not in body.json


def test_public_client_exchange(signed_in, clinic):
    response = exchange(signed_in, clinic, get_code(signed_in, clinic, VERIFIER), VERIFIER)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Pragma"] == "no-cache"
    assert response.headers["Access-Control-Allow-Origin"]
    body = response.json
    assert body["token_type"] == "Bearer"
    assert isinstance(body["expires_in"], int) and 0 < body["expires_in"] <= 3600
    assert body["scope"] == "launch/patient openid fhirUser offline_access patient/*.rs"
    assert body["patient"] == "p-clinic-a"
    assert isinstance(body["refresh_token"], str)
    assert "fhirUser" not in body  # an identity claim, not a token-response member


def test_access_token_carries_context_tenant_and_roles(signed_in, clinic):
    body = exchange(signed_in, clinic, get_code(signed_in, clinic, VERIFIER), VERIFIER).json
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["patient"] == "p-clinic-a"
    assert claims["fhirUser"] == "https://auth.example.test/t/clinic-a/fhir/Patient/p-clinic-a"
    assert claims["tenant"] == "clinic-a" and claims["roles"] == ["patient"]
    assert claims["aud"] == "https://auth.example.test/t/clinic-a/fhir"
    assert jwt.get_unverified_header(body["access_token"])["typ"] == "at+jwt"


@pytest.mark.parametrize(
    "scope, untick",
    [
        ("launch/patient offline_access patient/*.rs", ()),
        ("launch/patient openid fhirUser offline_access patient/*.rs", ("fhirUser",)),
    ],
    ids=["not-requested", "unticked-by-the-user"],
)
def test_fhir_user_is_disclosed_only_with_the_fhir_user_scope(
    signed_in, clinic, make_gateway, scope, untick
):
    """OIDC-05: fhirUser is for the fhirUser scope, in the access token as in the ID token."""
    params = authorization_params(clinic, verifier=VERIFIER, scope=scope)
    response = authorize(signed_in, clinic, params, untick=untick)
    body = exchange(signed_in, clinic, redirect_params(response)["code"], VERIFIER).json
    assert body["scope"] == "launch/patient offline_access patient/*.rs"
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert "fhirUser" not in claims and claims["patient"] == "p-clinic-a"
    gateway = make_gateway(clinic.tenant)
    for token in (body["access_token"], body["refresh_token"]):
        answer = gateway.introspect(signed_in, token).json
        assert answer["active"] is True and "fhirUser" not in answer


def test_no_refresh_token_without_offline_or_online_access(signed_in, clinic):
    code = get_code(signed_in, clinic, VERIFIER, scope="launch/patient patient/*.rs")
    body = exchange(signed_in, clinic, code, VERIFIER).json
    assert "refresh_token" not in body
    assert "id_token" not in body  # OIDC-07


def test_id_token(signed_in, clinic, client):
    code = get_code(signed_in, clinic, VERIFIER, nonce="nonce-42")
    body = exchange(signed_in, clinic, code, VERIFIER).json
    header = jwt.get_unverified_header(body["id_token"])
    assert header["alg"] == "RS256"
    jwks = jwt.PyJWKSet.from_dict(client.get("/t/clinic-a/.well-known/jwks.json").json)
    key = next(k for k in jwks.keys if k.key_id == header["kid"])
    claims = jwt.decode(
        body["id_token"], key, algorithms=["RS256"], audience=clinic.public_app.client_id
    )
    assert claims["iss"] == "https://auth.example.test/t/clinic-a"
    assert claims["sub"] == clinic.patient.subject
    assert claims["nonce"] == "nonce-42"
    assert claims["fhirUser"] == "https://auth.example.test/t/clinic-a/fhir/Patient/p-clinic-a"
    assert isinstance(claims["auth_time"], int) and claims["auth_time"] <= claims["iat"]
    assert claims["at_hash"]


def test_id_token_stays_rs256_when_the_tenant_signs_access_tokens_with_es256(
    signed_in, clinic, client
):
    """OIDC-02: the ID token is signed RS256 whatever the access tokens use (Inferno fails any
    other alg), with a ``kid`` naming its key in a JWKS that then holds several keys."""
    tenants.set_access_token_alg(clinic.tenant, "ES256", now=True)
    db.session.commit()

    body = exchange(signed_in, clinic, get_code(signed_in, clinic, VERIFIER), VERIFIER).json

    assert jwt.get_unverified_header(body["access_token"])["alg"] == "ES256"
    header = jwt.get_unverified_header(body["id_token"])
    assert header["alg"] == "RS256"
    jwks = client.get("/t/clinic-a/.well-known/jwks.json").json
    assert len(jwks["keys"]) > 1
    (key,) = [key for key in jwks["keys"] if key["kid"] == header["kid"]]
    assert key["kty"] == "RSA"
    claims = jwt.decode(
        body["id_token"],
        jwt.PyJWK(key).key,
        algorithms=["RS256"],
        audience=clinic.public_app.client_id,
    )
    assert claims["iss"] == "https://auth.example.test/t/clinic-a"


def test_id_token_without_fhir_user_scope_has_no_fhir_user(signed_in, clinic):
    code = get_code(signed_in, clinic, VERIFIER, scope="openid patient/Patient.rs")
    body = exchange(signed_in, clinic, code, VERIFIER).json
    claims = jwt.decode(body["id_token"], options={"verify_signature": False})
    assert "fhirUser" not in claims and "nonce" not in claims


def test_v1_profile_scope_gets_profile_claim(signed_in, clinic):
    code = get_code(signed_in, clinic, VERIFIER, scope="openid profile patient/*.read")
    body = exchange(signed_in, clinic, code, VERIFIER).json
    assert body["scope"] == "openid profile patient/*.read"
    claims = jwt.decode(body["id_token"], options={"verify_signature": False})
    assert claims["profile"].endswith("/Patient/p-clinic-a")
    assert "fhirUser" not in claims
    # The access token's fhirUser claim, like the ID token's, is the fhirUser scope's (OIDC-05).
    assert "fhirUser" not in jwt.decode(body["access_token"], options={"verify_signature": False})


def test_nonce_replay_is_refused(signed_in, clinic):
    get_code(signed_in, clinic, VERIFIER, nonce="once")
    params = authorization_params(clinic, verifier=VERIFIER, nonce="once")
    response = signed_in.get("/t/clinic-a/authorize", query_string=params)
    assert redirect_params(response)["error"] == "invalid_request"


# --- Confidential clients: CA-02..07 --------------------------------------------------------


def test_client_secret_basic_without_body_client_id(signed_in, clinic):
    app = clinic.confidential_app
    code = get_code(signed_in, clinic, VERIFIER, app)
    response = signed_in.post(
        "/t/clinic-a/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": VERIFIER,
        },
        headers=basic(app.client_id, clinic.secret),
    )
    assert response.status_code == 200, response.json


def test_client_secret_post(signed_in, clinic, make_client):
    registration = make_client(
        clinic.tenant, auth_method="client_secret_post", redirect_uris=[REDIRECT_URI]
    )
    code = get_code(signed_in, clinic, VERIFIER, registration.client)
    response = exchange(
        signed_in,
        clinic,
        code,
        VERIFIER,
        registration.client,
        client_secret=registration.client_secret,
    )
    assert response.status_code == 200, response.json


def token_request(clinic, code, **extra):
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "code_verifier": VERIFIER,
    }
    data.update(extra)
    return {k: v for k, v in data.items() if v is not None}


def test_confidential_client_without_credentials_is_invalid_client(signed_in, clinic):
    app = clinic.confidential_app
    code = get_code(signed_in, clinic, VERIFIER, app)
    response = signed_in.post(
        "/t/clinic-a/token", data=token_request(clinic, code, client_id=app.client_id)
    )
    # CA-02, RFC 6749 §5.2: 400 without a challenge, as the client tried no Authorization header.
    assert_error(response, 400, "invalid_client")
    assert "WWW-Authenticate" not in response.headers


def test_wrong_secret_is_invalid_client_with_basic_challenge(signed_in, clinic):
    app = clinic.confidential_app
    code = get_code(signed_in, clinic, VERIFIER, app)
    response = signed_in.post(
        "/t/clinic-a/token", data=token_request(clinic, code), headers=basic(app.client_id, "no")
    )
    assert_error(response, 401, "invalid_client")
    assert response.headers["WWW-Authenticate"].startswith("Basic ")


def test_two_authentication_methods_are_refused(signed_in, clinic):
    app = clinic.confidential_app
    code = get_code(signed_in, clinic, VERIFIER, app)
    response = signed_in.post(
        "/t/clinic-a/token",
        data=token_request(clinic, code, client_secret=clinic.secret),
        headers=basic(app.client_id, clinic.secret),
    )
    assert_error(response, 400, "invalid_request")


def test_body_client_id_other_than_basic_user_is_refused(signed_in, clinic):
    app = clinic.confidential_app
    code = get_code(signed_in, clinic, VERIFIER, app)
    response = signed_in.post(
        "/t/clinic-a/token",
        data=token_request(clinic, code, client_id=clinic.public_app.client_id),
        headers=basic(app.client_id, clinic.secret),
    )
    assert_error(response, 401, "invalid_client")


def test_body_client_id_equal_to_basic_user_is_accepted(signed_in, clinic):
    app = clinic.confidential_app
    code = get_code(signed_in, clinic, VERIFIER, app)
    response = signed_in.post(
        "/t/clinic-a/token",
        data=token_request(clinic, code, client_id=app.client_id),
        headers=basic(app.client_id, clinic.secret),
    )
    assert response.status_code == 200, response.json


def test_unknown_client_id_is_invalid_client(signed_in, clinic):
    code = get_code(signed_in, clinic, VERIFIER)
    response = signed_in.post(
        "/t/clinic-a/token", data=token_request(clinic, code, client_id="BAD_CLIENT_ID")
    )
    assert response.status_code in (400, 401)
    assert response.json["error"] == "invalid_client"


def test_unknown_client_in_basic_header_is_invalid_client(signed_in, clinic):
    code = get_code(signed_in, clinic, VERIFIER)
    response = signed_in.post(
        "/t/clinic-a/token", data=token_request(clinic, code), headers=basic("BAD_CLIENT_ID", "s")
    )
    assert_error(response, 401, "invalid_client")


def percent_encoded(value: str) -> str:
    """Every byte of ``value`` as ``%XX``, which a form-urlencoding decoder reads back."""
    return "".join(f"%{byte:02X}" for byte in value.encode())


def test_basic_credentials_are_form_decoded(signed_in, clinic):
    """CA-05: the client id and secret of a Basic header are form-urlencoded before base64
    (RFC 6749 §2.3.1), so a client whose encoder escapes every character still signs in."""
    app = clinic.confidential_app
    code = get_code(signed_in, clinic, VERIFIER, app)
    headers = basic(percent_encoded(app.client_id), percent_encoded(clinic.secret))

    response = signed_in.post(
        "/t/clinic-a/token", data=token_request(clinic, code), headers=headers
    )

    assert response.status_code == 200, response.json


@pytest.mark.parametrize("name, scheme", [("authorization", "basic"), ("AUTHORIZATION", "BASIC")])
def test_the_authorization_header_is_read_in_any_case(signed_in, clinic, name, scheme):
    """HDR-04: header names are case-insensitive, and so is the scheme of the Authorization
    header (RFC 7235 §2.1): ``authorization: basic ...`` authenticates like ``Basic``."""
    app = clinic.confidential_app
    code = get_code(signed_in, clinic, VERIFIER, app)
    credentials = basic(app.client_id, clinic.secret)["Authorization"].split(" ", 1)[1]

    response = signed_in.post(
        "/t/clinic-a/token",
        data=token_request(clinic, code),
        headers={name: f"{scheme} {credentials}"},
    )

    assert response.status_code == 200, response.json


# --- TOK-13..17, 23: the code --------------------------------------------------------------


def test_bad_code_is_exactly_400_invalid_grant(signed_in, clinic):
    assert_error(exchange(signed_in, clinic, "BAD_CODE", VERIFIER), 400, "invalid_grant")


def test_an_empty_code_is_a_missing_code(signed_in, clinic):
    """RFC 6749 §3.2: a parameter sent without a value is treated as omitted, so ``code=`` is
    a missing parameter, ``invalid_request`` (§5.2), as a missing ``code`` is; only a code
    that names none is ``invalid_grant`` (TOK-14)."""
    assert_error(exchange(signed_in, clinic, "", VERIFIER), 400, "invalid_request")


def test_code_replay_is_refused_and_revokes_the_first_tokens(signed_in, clinic):
    code = get_code(signed_in, clinic, VERIFIER)
    first = exchange(signed_in, clinic, code, VERIFIER)
    assert first.status_code == 200
    assert_error(exchange(signed_in, clinic, code, VERIFIER), 400, "invalid_grant")
    db.session.expire_all()
    issued = db.session.scalars(IssuedToken.for_tenant(clinic.tenant)).all()
    assert {row.kind for row in issued} == {"access", "refresh"}
    assert all(row.revoked_at is not None for row in issued)


@pytest.mark.parametrize("revoke", ["--user", "--client"])
def test_a_code_not_yet_exchanged_buys_nothing_after_its_user_or_client_is_revoked(
    signed_in, clinic, cli, make_client, revoke
):
    # `authserver token revoke` ends what was issued before it, the codes in flight included.
    other_app = make_client(clinic.tenant, name="Other app", redirect_uris=[REDIRECT_URI]).client
    code = get_code(signed_in, clinic, VERIFIER)
    target = {"--user": "pat", "--client": clinic.public_app.client_id}[revoke]

    result = cli.invoke(args=["token", "revoke", "--tenant", clinic.slug, revoke, target])

    assert result.exit_code == 0, result.output
    assert_error(exchange(signed_in, clinic, code, VERIFIER), 400, "invalid_grant")
    record = db.session.scalars(
        select(AuditRecord).where(AuditRecord.event == "token:revoked")
    ).one()
    assert record.details["codes"] == 1
    # Ended as of its issue time, so an instance whose clock runs behind refuses it too.
    ended = db.session.scalars(select(AuthorizationCode)).one()
    assert ended.expires_at == ended.issued_at
    # A code issued afterwards works, and so does one of another client (after --client).
    later = get_code(signed_in, clinic, VERIFIER, app=other_app)
    assert exchange(signed_in, clinic, later, VERIFIER, app=other_app).status_code == 200


def test_a_code_expired_by_this_clock_alone_is_ended_by_a_revocation(signed_in, clinic):
    # Another instance whose clock runs up to a minute behind would still exchange it.
    get_code(signed_in, clinic, VERIFIER)
    just_expired = utcnow() - timedelta(seconds=30)
    db.session.execute(update(AuthorizationCode).values(expires_at=just_expired))
    db.session.commit()

    revocation.revoke_for_user(clinic.tenant, clinic.patient)

    ended = db.session.scalars(select(AuthorizationCode)).one()
    assert ended.expires_at == ended.issued_at


@pytest.mark.parametrize("revoke", ["user", "client"])
def test_a_revocation_between_reading_a_code_and_claiming_it_still_ends_the_code(
    signed_in, clinic, monkeypatch, revoke
):
    # `token revoke` committed by another process after the exchange read the code (so its
    # expires_at as read is still in the future) and before it claimed it: no tokens.
    code = get_code(signed_in, clinic, VERIFIER)
    claim = oauth_service._claim

    def revoked_then_claimed(row, *still):
        if revoke == "user":
            revocation.revoke_for_user(clinic.tenant, clinic.patient)
        else:
            revocation.revoke_for_client(clinic.tenant, clinic.public_app)
        return claim(row, *still)

    monkeypatch.setattr(oauth_service, "_claim", revoked_then_claimed)

    assert_error(exchange(signed_in, clinic, code, VERIFIER), 400, "invalid_grant")
    assert db.session.scalars(IssuedToken.for_tenant(clinic.tenant)).all() == []


def test_expired_code_is_invalid_grant(signed_in, clinic):
    code = get_code(signed_in, clinic, VERIFIER)
    db.session.execute(update(AuthorizationCode).values(expires_at=utcnow() - timedelta(seconds=1)))
    db.session.commit()
    assert_error(exchange(signed_in, clinic, code, VERIFIER), 400, "invalid_grant")


def test_code_lives_the_tenant_code_lifetime(signed_in, clinic):
    get_code(signed_in, clinic, VERIFIER)
    row = db.session.scalar(select(AuthorizationCode))
    assert timedelta(seconds=55) < row.expires_at - row.issued_at <= timedelta(seconds=61)
    assert not row.code_digest.startswith("asac_")  # stored as a digest only


def test_redirect_uri_mismatch_is_invalid_grant(signed_in, clinic):
    code = get_code(signed_in, clinic, VERIFIER)
    response = exchange(signed_in, clinic, code, VERIFIER, redirect_uri=REDIRECT_URI + "/other")
    assert_error(response, 400, "invalid_grant")


@pytest.mark.parametrize("redirect_uri", [None, ""], ids=["missing", "empty"])
def test_missing_redirect_uri_is_invalid_request(signed_in, clinic, redirect_uri):
    """TOK-16: the authorization request had a ``redirect_uri`` (SMART requires one), so the
    token request must send it too (RFC 6749 §4.1.3); one left out, or sent empty (§3.2), is
    a missing parameter, ``invalid_request`` (§5.2), not a mismatch. The code stays usable."""
    code = get_code(signed_in, clinic, VERIFIER)

    response = exchange(signed_in, clinic, code, VERIFIER, redirect_uri=redirect_uri)

    assert_error(response, 400, "invalid_request")
    assert exchange(signed_in, clinic, code, VERIFIER).status_code == 200


def test_code_of_another_client_is_invalid_grant(signed_in, clinic, make_client):
    code = get_code(signed_in, clinic, VERIFIER)
    other_app = make_client(clinic.tenant, redirect_uris=[REDIRECT_URI]).client
    assert_error(exchange(signed_in, clinic, code, VERIFIER, other_app), 400, "invalid_grant")


def test_code_of_another_tenant_is_worthless(signed_in, clinic, other_clinic):
    code = get_code(signed_in, clinic, VERIFIER)
    response = exchange(signed_in, other_clinic, code, VERIFIER, other_clinic.public_app)
    assert_error(response, 400, "invalid_grant")
    # ...and still works where it was issued.
    assert exchange(signed_in, clinic, code, VERIFIER).status_code == 200


def test_repeated_token_parameter_is_invalid_request(signed_in, clinic):
    code = get_code(signed_in, clinic, VERIFIER)
    data = list(token_request(clinic, code, client_id=clinic.public_app.client_id).items())
    response = signed_in.post("/t/clinic-a/token", data=MultiDict(data + [("code", code)]))
    assert_error(response, 400, "invalid_request")


def test_get_is_not_a_token_request(signed_in, clinic):
    response = signed_in.get("/t/clinic-a/token")

    assert response.status_code == 405
    assert response.json["error"] == "method_not_allowed"
    assert "POST" in response.allow  # RFC 9110 §15.5.6: a 405 names the allowed methods


def test_json_body_is_invalid_request_and_leaves_the_code_usable(signed_in, clinic):
    """TOK-22: the token request is form-encoded (RFC 6749 §4.1.3)."""
    code = get_code(signed_in, clinic, VERIFIER)
    data = token_request(clinic, code, client_id=clinic.public_app.client_id)
    assert_error(signed_in.post("/t/clinic-a/token", json=data), 400, "invalid_request")
    assert exchange(signed_in, clinic, code, VERIFIER).status_code == 200


def test_missing_grant_type_is_invalid_request(signed_in, clinic):
    code = get_code(signed_in, clinic, VERIFIER)
    data = token_request(clinic, code, client_id=clinic.public_app.client_id)
    del data["grant_type"]
    assert_error(signed_in.post("/t/clinic-a/token", data=data), 400, "invalid_request")


def test_empty_grant_type_is_invalid_request(signed_in, clinic):
    assert_error(
        signed_in.post("/t/clinic-a/token", data={"grant_type": ""}), 400, "invalid_request"
    )


# --- TOK-19: PKCE, each with a fresh code ---------------------------------------------------


def test_missing_code_verifier_is_invalid_request(signed_in, clinic):
    code = get_code(signed_in, clinic, VERIFIER)
    assert_error(exchange(signed_in, clinic, code, None), 400, "invalid_request")


def test_empty_code_verifier_is_invalid_request(signed_in, clinic):
    code = get_code(signed_in, clinic, VERIFIER)
    assert_error(exchange(signed_in, clinic, code, ""), 400, "invalid_request")


def test_wrong_code_verifier_is_invalid_grant(signed_in, clinic):
    code = get_code(signed_in, clinic, VERIFIER)
    assert_error(exchange(signed_in, clinic, code, new_verifier()), 400, "invalid_grant")


def test_code_verifier_equal_to_challenge_is_invalid_grant(signed_in, clinic):
    code = get_code(signed_in, clinic, VERIFIER)
    response = exchange(signed_in, clinic, code, challenge_of(VERIFIER))
    assert_error(response, 400, "invalid_grant")


def test_confidential_client_must_send_its_verifier_too(signed_in, clinic):
    app = clinic.confidential_app
    code = get_code(signed_in, clinic, VERIFIER, app)
    response = signed_in.post(
        "/t/clinic-a/token",
        data=token_request(clinic, code, code_verifier=None),
        headers=basic(app.client_id, clinic.secret),
    )
    assert_error(response, 400, "invalid_request")


def test_legacy_client_without_pkce_exchanges_without_verifier(signed_in, clinic):
    from tests.oauth.conftest import set_policy

    app = clinic.confidential_app
    set_policy(clinic.tenant, app, legacy_smart_v1=True)
    code = get_code(
        signed_in, clinic, VERIFIER, app, code_challenge=None, code_challenge_method=None
    )
    response = signed_in.post(
        "/t/clinic-a/token",
        data=token_request(clinic, code, code_verifier=None),
        headers=basic(app.client_id, clinic.secret),
    )
    assert response.status_code == 200, response.json


def test_a_code_digest_is_unique_within_its_tenant_only(signed_in, clinic, other_clinic):
    """Codes are found by tenant and digest, so, like every other key, the digest is unique per
    tenant: a twin at another tenant is that tenant's own row, and the code still exchanges
    here for this tenant's grant."""
    code = get_code(signed_in, clinic, VERIFIER)
    row = db.session.scalar(select(AuthorizationCode))

    def twin(home):
        copied = {
            column.key: getattr(row, column.key)
            for column in AuthorizationCode.__table__.columns
            if column.key not in ("id", "tenant_id", "client_pk", "user_id", "login_session_id")
        }
        return AuthorizationCode(
            **copied,
            tenant_id=home.tenant.id,
            client_pk=home.public_app.id,
            user_id=home.patient.id,
        )

    db.session.add(twin(other_clinic))
    db.session.commit()
    db.session.add(twin(clinic))
    with pytest.raises(IntegrityError):
        db.session.commit()
    db.session.rollback()

    response = exchange(signed_in, clinic, code, VERIFIER)
    assert response.status_code == 200, response.json
    assert response.json["patient"] == "p-clinic-a"
