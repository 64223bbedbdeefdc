"""Introspection (RFC 7662, SMART §2.5): what an active token answers, and every way to be inactive.

Each inactive case runs at both tenants, so nothing depends on which tenant came first.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import jwt
import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.hazmat.primitives.serialization import PublicFormat

from authserver.accounts import service as accounts
from authserver.clients import service as clients
from authserver.clients.models import RESOURCE_SERVER
from authserver.extensions import db
from authserver.keys import service as keys
from authserver.launch import patients
from authserver.tenancy import service as tenants
from authserver.tokens import introspection
from authserver.tokens import revocation
from authserver.tokens import service as tokens
from tests.fixtures.accounts import login
from tests.fixtures.assertions import ASSERTION_TYPE
from tests.fixtures.assertions import assertion_claims
from tests.fixtures.assertions import jwks_of
from tests.fixtures.assertions import make_client_key
from tests.fixtures.tokens import CONTEXT
from tests.fixtures.tokens import SCOPE
from tests.fixtures.tokens import basic
from tests.oauth.conftest import exchange
from tests.oauth.conftest import get_code


def assert_inactive(response):
    assert response.status_code == 200
    assert response.json == {"active": False}
    assert response.headers["Cache-Control"] == "no-store"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segments(token: str) -> tuple[dict, dict, str]:
    header, payload, signature = token.split(".")
    pad = lambda part: part + "=" * (-len(part) % 4)  # noqa: E731
    return (
        json.loads(base64.urlsafe_b64decode(pad(header))),
        json.loads(base64.urlsafe_b64decode(pad(payload))),
        signature,
    )


def compact(header: dict, payload: dict, signature: str) -> str:
    return ".".join(
        (b64(json.dumps(header).encode()), b64(json.dumps(payload).encode()), signature)
    )


# -- active tokens ---------------------------------------------------------------------------


def test_active_access_token_answers_every_member(client, home, gateway, issue):
    issued = issue(home)

    response = gateway.introspect(client, issued.access_token)

    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Pragma"] == "no-cache"
    body = response.json
    issuer = f"https://auth.example.test/t/{home.slug}"
    claims = jwt.decode(issued.access_token, options={"verify_signature": False})
    assert body["active"] is True
    assert body["scope"] == SCOPE
    assert body["client_id"] == issued.client_id
    assert body["sub"] == issued.subject
    assert body["username"].startswith("user")
    assert body["token_type"] == "Bearer"
    assert body["iss"] == issuer
    assert body["aud"] == f"{issuer}/fhir"
    assert body["exp"] == claims["exp"] and isinstance(body["exp"], int)
    assert body["iat"] == claims["iat"]
    assert body["jti"] == claims["jti"]
    assert body["tenant"] == home.slug
    assert body["roles"] == ["nurse", "physician"]
    assert body["patient"] == CONTEXT["patient"]
    assert body["encounter"] == CONTEXT["encounter"]
    assert body["fhirUser"] == CONTEXT["fhirUser"]
    assert body["fhirContext"] == CONTEXT["fhirContext"]


def test_backend_services_token_has_no_user_members(client, home, gateway, make_backend_client):
    backend = make_backend_client(home).registration.client
    authorization = tokens.Authorization(tenant=home, client=backend, scope="system/*.rs")
    token = tokens.issue_access_token(authorization)["access_token"]
    db.session.commit()

    body = gateway.introspect(client, token).json

    assert body["active"] is True
    assert body["sub"] == body["client_id"] == backend.client_id
    assert body["scope"] == "system/*.rs"
    for member in ("username", "roles", "patient", "fhirUser"):
        assert member not in body


def test_an_app_token_agrees_with_its_token_response_and_id_token(client, clinic, make_gateway):
    """INT-01 and INT-03: for a token from an app launch, introspection names the client, the
    granted ``scope`` and ``exp`` as the token response did, and ``iss``, ``sub`` and
    ``fhirUser`` as the ID token issued with it."""
    login(client, clinic.slug, "pat")
    verifier = "v" * 43
    body = exchange(client, clinic, get_code(client, clinic, verifier), verifier).json
    id_token = jwt.decode(body["id_token"], options={"verify_signature": False})

    answer = make_gateway(clinic.tenant).introspect(client, body["access_token"]).json

    assert answer["active"] is True
    assert answer["client_id"] == clinic.public_app.client_id
    assert answer["scope"].split() == body["scope"].split()
    assert answer["exp"] - answer["iat"] == body["expires_in"]
    assert {name: answer[name] for name in ("iss", "sub", "fhirUser")} == {
        name: id_token[name] for name in ("iss", "sub", "fhirUser")
    }


@pytest.mark.parametrize("hint", [None, "refresh_token", "access_token"])
def test_refresh_token_is_introspectable_whatever_the_hint(client, home, gateway, issue, hint):
    issued = issue(home)
    form = {"token_type_hint": hint} if hint else {}

    body = gateway.introspect(client, issued.refresh_token, **form).json

    assert body["active"] is True
    assert body["token_type"] == "refresh_token"
    assert body["client_id"] == issued.client_id
    assert body["scope"] == SCOPE
    assert body["sub"] == issued.subject
    assert body["tenant"] == home.slug
    assert body["roles"] == ["nurse", "physician"]
    assert body["patient"] == CONTEXT["patient"]


def test_access_token_with_refresh_hint_is_still_found(client, home, gateway, issue):
    issued = issue(home)
    body = gateway.introspect(client, issued.access_token, token_type_hint="refresh_token").json
    assert body["active"] is True


def test_the_token_the_server_minted_to_search_patients_is_active(client, home, gateway):
    # The picker's search goes through the same gateway as the apps' requests.
    token = patients.server_token(home)
    issuer = f"https://auth.example.test/t/{home.slug}"

    answers = [gateway.introspect(client, token).json for _ in range(2)]  # full, then fast path

    for answer in answers:
        assert answer["active"] is True
        assert answer["scope"] == "system/Patient.rs"
        assert answer["client_id"] == answer["sub"] == issuer
        assert "username" not in answer and "patient" not in answer


@pytest.mark.parametrize("ended_by", ["suspended tenant", "retired key"])
def test_the_servers_own_token_ends_like_any_other(client, home, gateway, ended_by):
    token = patients.server_token(home)
    assert gateway.introspect(client, token).json["active"] is True

    if ended_by == "suspended tenant":
        tenants.suspend(home)
    else:
        kid = jwt.get_unverified_header(token)["kid"]
        keys.rotate(home, now=True)
        keys.retire(home, kid)
    db.session.commit()

    assert_inactive(gateway.introspect(client, token))


def test_a_token_shaped_like_the_servers_own_but_signed_elsewhere_is_inactive(
    client, home, away, gateway
):
    forged = patients.server_token(away)  # another tenant's key and issuer

    assert_inactive(gateway.introspect(client, forged))


def test_resource_server_may_use_client_secret_post(client, home, make_gateway, issue):
    gateway = make_gateway(home, auth_method="client_secret_post")
    issued = issue(home)

    response = client.post(
        f"/t/{home.slug}/introspect",
        data={
            "token": issued.access_token,
            "client_id": gateway.client_id,
            "client_secret": gateway.secret,
        },
    )

    assert response.json["active"] is True


def test_resource_server_may_use_private_key_jwt_once_per_assertion(
    client, home, make_client, issue
):
    # The same private_key_jwt as the token endpoint (RFC 7523 §2.2); its jti is spent even
    # though introspection itself writes nothing (RFC 7523 §3 item 7).
    key = make_client_key()
    registration = make_client(
        home, name="JWT gateway", kind=RESOURCE_SERVER, auth_method="private_key_jwt",
        jwks=jwks_of(key),
    )  # fmt: skip
    audience = f"https://auth.example.test/t/{home.slug}/introspect"
    form = {
        "token": issue(home).access_token,
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": key.sign(assertion_claims(registration.client.client_id, audience)),
    }

    first = client.post(f"/t/{home.slug}/introspect", data=form)
    replayed = client.post(f"/t/{home.slug}/introspect", data=form)

    assert first.status_code == 200 and first.json["active"] is True, first.json
    assert replayed.status_code == 401, replayed.json
    assert replayed.json["error"] == "invalid_client"
    assert "used before" in replayed.json["error_description"]


# -- every inactive case, each its own test --------------------------------------------------


def test_expired_access_token_is_inactive(client, home, gateway, issue):
    issued = issue(home, expires_in=-60)
    assert_inactive(gateway.introspect(client, issued.access_token))


def test_expired_refresh_token_is_inactive(client, home, gateway, issue):
    issued = issue(home, refresh_expires_in=-60)
    assert_inactive(gateway.introspect(client, issued.refresh_token))


def test_revoked_access_token_is_inactive(client, home, gateway, issue):
    issued = issue(home)
    assert gateway.introspect(client, issued.access_token).json["active"] is True
    jti = jwt.decode(issued.access_token, options={"verify_signature": False})["jti"]
    revocation.revoke_token(home, kind="access", jti=jti, grant_id="")
    db.session.commit()

    assert_inactive(gateway.introspect(client, issued.access_token))


def test_revoked_refresh_token_is_inactive(client, home, gateway, issue):
    issued = issue(home)
    record = tokens.find_refresh_token(home, issued.refresh_token)
    revocation.revoke_family(home, record.grant_id)
    db.session.commit()

    assert_inactive(gateway.introspect(client, issued.refresh_token))


def test_used_refresh_token_is_inactive(client, home, gateway, issue):
    issued = issue(home)
    record = tokens.find_refresh_token(home, issued.refresh_token)
    record.used_at = record.issued_at
    db.session.commit()

    assert_inactive(gateway.introspect(client, issued.refresh_token))


@pytest.mark.parametrize("token", ["invalid_token_value", "asrt_" + "x" * 43])
def test_unknown_token_is_inactive(client, home, gateway, token):
    assert_inactive(gateway.introspect(client, token))


def test_malformed_token_is_inactive(client, home, gateway):
    assert_inactive(gateway.introspect(client, "abc.def.ghi"))


def test_tampered_token_is_inactive(client, home, gateway, issue):
    header, payload, signature = segments(issue(home).access_token)
    payload["scope"] = "patient/*.cruds"

    assert_inactive(gateway.introspect(client, compact(header, payload, signature)))


def test_token_signed_with_another_tenants_key_is_inactive(client, home, away, gateway, issue):
    _, payload, _ = segments(issue(home).access_token)
    forged = keys.sign(away, payload, typ="at+jwt")

    assert_inactive(gateway.introspect(client, forged))


def test_another_tenants_token_is_inactive_here(client, home, away, gateway, issue):
    issued = issue(away)

    assert_inactive(gateway.introspect(client, issued.access_token))
    assert_inactive(gateway.introspect(client, issued.refresh_token))


def test_token_of_a_suspended_tenant_is_inactive(client, home, gateway, issue):
    issued = issue(home)
    tenants.suspend(home)
    db.session.commit()

    assert_inactive(gateway.introspect(client, issued.access_token))
    assert_inactive(gateway.introspect(client, issued.refresh_token))


def test_token_of_a_disabled_user_is_inactive(client, home, gateway, issue, make_user):
    user = make_user(home, "dr.gone")
    issued = issue(home, user=user)
    accounts.set_status(home, user, False)
    db.session.commit()

    assert_inactive(gateway.introspect(client, issued.access_token))
    assert_inactive(gateway.introspect(client, issued.refresh_token))


def test_disabled_user_stays_inactive_without_a_revocation_row(
    client, home, gateway, issue, make_user
):
    # The user's status is read with the token, so even an un-revoked token is refused.
    user = make_user(home, "dr.paused")
    issued = issue(home, user=user)
    user.status = "disabled"
    db.session.commit()

    assert_inactive(gateway.introspect(client, issued.access_token))


def test_token_of_a_deleted_client_is_inactive(client, home, gateway, issue, make_client):
    app_client = make_client(home).client
    issued = issue(home, client=app_client)
    clients.delete(home, app_client.client_id)
    db.session.commit()

    assert_inactive(gateway.introspect(client, issued.access_token))
    assert_inactive(gateway.introspect(client, issued.refresh_token))


def test_token_signed_by_a_retired_key_is_inactive(client, home, gateway, issue):
    issued = issue(home)
    old_kid = jwt.get_unverified_header(issued.access_token)["kid"]
    keys.rotate(home, now=True)
    db.session.commit()
    # Published after rotation: still verifies (and is now cached by this instance).
    assert gateway.introspect(client, issued.access_token).json["active"] is True
    keys.retire(home, old_kid)
    db.session.commit()

    assert_inactive(gateway.introspect(client, issued.access_token))


# -- caller authentication -------------------------------------------------------------------


def test_introspection_without_credentials_is_401(client, home, issue):
    response = client.post(f"/t/{home.slug}/introspect", data={"token": issue(home).access_token})

    assert response.status_code == 401
    assert response.json["error"] == "invalid_client"
    assert response.headers["Cache-Control"] == "no-store"


def test_introspection_with_a_wrong_secret_is_401(client, home, gateway, issue):
    response = client.post(
        f"/t/{home.slug}/introspect",
        data={"token": issue(home).access_token},
        headers=basic(gateway.client_id, "ascs_wrong"),
    )

    assert response.status_code == 401
    assert response.json["error"] == "invalid_client"
    assert response.headers["WWW-Authenticate"].startswith("Basic ")


def test_an_app_that_is_not_a_resource_server_gets_401(client, home, issue, make_client):
    app_registration = make_client(
        home, auth_method="client_secret_basic", redirect_uris=["https://app.example.test/cb"]
    )
    response = client.post(
        f"/t/{home.slug}/introspect",
        data={"token": issue(home).access_token},
        headers=basic(app_registration.client.client_id, app_registration.client_secret),
    )

    assert response.status_code == 401
    assert response.json["error"] == "invalid_client"
    assert "WWW-Authenticate" in response.headers


def test_a_resource_server_of_another_tenant_gets_401(client, home, away, make_gateway, issue):
    foreign_gateway = make_gateway(away)

    response = foreign_gateway.introspect(client, issue(home).access_token, slug=home.slug)

    assert response.status_code == 401
    assert response.json["error"] == "invalid_client"


def test_a_deleted_resource_server_gets_401(client, home, gateway, issue):
    clients.delete(home, gateway.client_id)
    db.session.commit()

    response = gateway.introspect(client, issue(home).access_token)

    assert response.status_code == 401


@pytest.mark.parametrize("caller", ["a wrong secret", "an app's credentials"])
def test_a_caller_that_does_not_check_out_costs_no_key_lookup(
    client, home, gateway, issue, make_client, monkeypatch, caller
):
    """The caller is authenticated before any work on the token: for a caller that does not
    check out, a token naming an unknown ``kid`` (or a good one not seen yet) looks up no key,
    in the process cache or the database, although the fast path knows the tenant; and it gets
    the 401 that a token seen before gets."""
    seen, unseen = issue(home), issue(home)
    assert gateway.introspect(client, seen.access_token).json["active"] is True
    header, payload, signature = segments(unseen.access_token)
    header["kid"] = "no-such-key"
    app_registration = make_client(
        home, auth_method="client_secret_basic", redirect_uris=["https://app.example.test/cb"]
    )
    headers = {
        "a wrong secret": basic(gateway.client_id, "ascs_wrong"),
        "an app's credentials": basic(
            app_registration.client.client_id, app_registration.client_secret
        ),
    }[caller]
    looked_up = []
    lookup = introspection.verifying_key
    monkeypatch.setattr(
        introspection,
        "verifying_key",
        lambda tenant_id, kid: looked_up.append(kid) or lookup(tenant_id, kid),
    )

    def introspect(token):
        return client.post(f"/t/{home.slug}/introspect", data={"token": token}, headers=headers)

    unknown_kid = introspect(compact(header, payload, signature))
    not_seen_yet = introspect(unseen.access_token)
    seen_before = introspect(seen.access_token)

    assert looked_up == []
    assert seen_before.status_code == 401
    assert seen_before.json["error"] == "invalid_client"
    assert seen_before.headers["WWW-Authenticate"].startswith("Basic ")
    for refused in (unknown_kid, not_seen_yet):
        assert refused.status_code == 401
        assert refused.json == seen_before.json
        assert refused.headers["WWW-Authenticate"] == seen_before.headers["WWW-Authenticate"]
        assert refused.headers["Cache-Control"] == "no-store"


def test_the_fast_path_answers_tokens_it_has_not_seen_for_a_caller_that_checks_out(
    client, home, gateway, issue, fast_answers
):
    """After its first request for a tenant, the gateway's everyday request is answered in
    front of Flask, for a token it shows for the first time and for one that is no token."""
    first, second = issue(home), issue(home)
    assert gateway.introspect(client, first.access_token).json["active"] is True
    fast_answers.clear()
    header, payload, signature = segments(second.access_token)
    header["kid"] = "no-such-key"

    answers = [
        gateway.introspect(client, token).json
        for token in (second.access_token, compact(header, payload, signature), "not-a-jwt")
    ]

    assert [answer["active"] for answer in answers] == [True, False, False]
    assert fast_answers == answers


def test_a_token_verified_past_the_bound_drops_only_the_one_verified_longest_ago(
    app, client, home, gateway, issue
):
    """A worker remembers the tokens whose signature it checked, up to a bound: with thousands
    of tenants it holds many, and one more must not make it check every one of them again."""
    verified = app.extensions.setdefault("authserver.verified_tokens", {})
    verified.clear()
    others = [
        (0, number.to_bytes(32, "big")) for number in range(introspection.MAX_VERIFIED_TOKENS)
    ]
    verified.update(dict.fromkeys(others, ({}, "kid")))  # stand-ins for other tenants' tokens
    issued = issue(home)

    assert gateway.introspect(client, issued.access_token).json["active"] is True

    assert introspection.remembered_claims(home.id, issued.access_token) is not None
    assert len(verified) == introspection.MAX_VERIFIED_TOKENS
    assert others[0] not in verified
    assert set(others[1:]) <= verified.keys()


# -- bad input: never a 500, never active ----------------------------------------------------


def test_missing_token_is_invalid_request(client, home, gateway):
    response = client.post(f"/t/{home.slug}/introspect", data={}, headers=gateway.headers)

    assert response.status_code == 400
    assert response.json["error"] == "invalid_request"
    assert response.headers["Cache-Control"] == "no-store"


def test_empty_token_is_inactive(client, home, gateway):
    assert_inactive(gateway.introspect(client, ""))


def test_a_50_kb_token_is_inactive(client, home, gateway, issue):
    # Six times the longest token issued, and within the request size limit (64 KiB).
    header, payload, signature = segments(issue(home).access_token)
    payload["padding"] = "x" * 36_000

    assert_inactive(gateway.introspect(client, compact(header, payload, signature)))
    assert_inactive(gateway.introspect(client, "y" * 50_000))


@pytest.mark.parametrize("token", ["tökén", "eyJ.Ünïcödé.☃", "asrt_☃", "\x00\x01"])
def test_non_ascii_token_is_inactive(client, home, gateway, token):
    assert_inactive(gateway.introspect(client, token))


def test_non_ascii_credentials_are_401_not_500(client, home, issue):
    credentials = base64.b64encode("rs_☃:sécret".encode()).decode()
    response = client.post(
        f"/t/{home.slug}/introspect",
        data={"token": issue(home).access_token},
        headers={"Authorization": f"Basic {credentials}"},
    )

    assert response.status_code == 401


def test_alg_none_token_is_inactive(client, home, gateway, issue):
    header, payload, _ = segments(issue(home).access_token)
    header["alg"] = "none"

    assert_inactive(gateway.introspect(client, compact(header, payload, "")))


def test_hs256_signed_with_the_public_key_is_inactive(client, home, gateway, issue):
    header, payload, _ = segments(issue(home).access_token)
    public_jwk = next(k for k in keys.jwks(home)["keys"] if k["kid"] == header["kid"])
    public_pem = jwt.PyJWK(public_jwk).key.public_bytes(
        Encoding.PEM, PublicFormat.SubjectPublicKeyInfo
    )
    header["alg"] = "HS256"
    unsigned = compact(header, payload, "").rstrip(".")
    for secret in (public_pem, json.dumps(public_jwk).encode()):
        mac = hmac.new(secret, unsigned.encode(), hashlib.sha256).digest()
        assert_inactive(gateway.introspect(client, f"{unsigned}.{b64(mac)}"))


def test_wrong_kid_is_inactive(client, home, gateway, issue):
    header, payload, signature = segments(issue(home).access_token)
    header["kid"] = "no-such-key"

    assert_inactive(gateway.introspect(client, compact(header, payload, signature)))


def test_a_kid_that_is_a_lone_surrogate_is_inactive_on_the_fast_path_too(
    client, home, gateway, issue, fast_answers
):
    """JSON can spell one ("\\ud800"), which no database driver can encode: it names no key."""
    issued = issue(home)
    assert gateway.introspect(client, issued.access_token).json["active"] is True
    fast_answers.clear()
    header, payload, signature = segments(issued.access_token)
    header["kid"] = "\ud800"

    assert_inactive(gateway.introspect(client, compact(header, payload, signature)))
    assert fast_answers == [{"active": False}]


def test_an_unknown_token_type_hint_is_ignored(client, home, gateway, issue):
    # RFC 7662 §2.1: the server searches all its token types whatever the hint.
    response = gateway.introspect(client, issue(home).access_token, token_type_hint="id_token")

    assert response.json["active"] is True


@pytest.mark.parametrize("name, scheme", [("authorization", "basic"), ("AUTHORIZATION", "BASIC")])
def test_the_gateways_authorization_header_is_read_in_any_case(
    client, home, gateway, issue, fast_answers, name, scheme
):
    """HDR-04: header names are case-insensitive, and so is the scheme of the Authorization
    header (RFC 7235 §2.1), on the first request (the full path) as on the next one (the
    fast path)."""
    issued = issue(home)
    credentials = gateway.headers["Authorization"].split(" ", 1)[1]

    answers = [
        client.post(
            f"/t/{home.slug}/introspect",
            data={"token": issued.access_token},
            headers={name: f"{scheme} {credentials}"},
        )
        for _ in range(2)
    ]

    assert [answer.status_code for answer in answers] == [200, 200]
    assert [answer.json["active"] for answer in answers] == [True, True]
    assert fast_answers[0] is None and fast_answers[1]["active"] is True


@pytest.mark.parametrize(
    ("body", "authorization", "status", "answer"),
    [
        # A NUL in any parameter but the token is invalid_request (authserver/inputs.py).
        ("token={token}&token_type_hint=%00", None, 400, "invalid_request"),
        ("token={token}&%00=", None, 400, "invalid_request"),
        # Basic credentials that are not strict base64 are unreadable: 401.
        ("token={token}", "Basic {credentials}!!", 401, "invalid_client"),
        # A blank first token is the token the full path reads.
        ("token=&token={token}", None, 200, False),
    ],
    ids=["nul-in-hint", "nul-name", "loose-base64", "blank-first-token"],
)
def test_the_fast_path_refuses_what_the_full_path_refuses(
    client, home, gateway, issue, body, authorization, status, answer
):
    token = issue(home).access_token
    assert gateway.introspect(client, token).json["active"] is True  # the fast path knows home
    credentials = gateway.headers["Authorization"].removeprefix("Basic ")
    headers = {
        "Authorization": (authorization or "Basic {credentials}").format(credentials=credentials)
    }

    response = client.post(
        f"/t/{home.slug}/introspect",
        data=body.format(token=token),
        headers=headers,
        content_type="application/x-www-form-urlencoded",
    )

    assert response.status_code == status
    assert response.json.get("error", response.json.get("active")) == answer


def test_get_is_not_allowed(client, home, gateway):
    response = client.get(f"/t/{home.slug}/introspect", headers=gateway.headers)

    assert response.status_code == 405
    assert "POST" in response.allow


# -- discovery -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/.well-known/smart-configuration", "/.well-known/openid-configuration"]
)
def test_discovery_publishes_introspection_and_revocation(client, home, path):
    document = client.get(f"/t/{home.slug}{path}").json
    base = f"https://auth.example.test/t/{home.slug}"

    assert document["introspection_endpoint"] == f"{base}/introspect"
    assert document["revocation_endpoint"] == f"{base}/revoke"
