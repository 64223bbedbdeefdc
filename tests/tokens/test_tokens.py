"""Issued tokens: RFC 9068 access tokens signed by the tenant, records by jti, family revocation."""

from __future__ import annotations

from datetime import timedelta

import jwt
import pytest

from authserver.extensions import db
from authserver.models import utcnow
from authserver.tokens import revocation
from authserver.tokens import service
from authserver.tokens.models import IssuedToken


@pytest.fixture
def authorization(tenant, make_user, make_client):
    user = make_user(tenant, "dr.who", roles=["physician", "nurse"], fhir_user="Practitioner/7")
    app_client = make_client(tenant).client
    return service.Authorization(
        tenant=tenant,
        client=app_client,
        scope="openid fhirUser patient/Observation.rs",
        user=user,
        context={"patient": "123", "encounter": None, "fhirUser": "https://x/Practitioner/7"},
    )


def verify(client, slug, token):
    jwks = jwt.PyJWKSet.from_dict(client.get(f"/t/{slug}/.well-known/jwks.json").json)
    kid = jwt.get_unverified_header(token)["kid"]
    key = next(key for key in jwks.keys if key.key_id == kid)
    return jwt.decode(
        token,
        key,
        algorithms=["RS256", "ES256"],
        audience=f"https://auth.example.test/t/{slug}/fhir",
    )


def test_access_token_is_an_rfc9068_jwt_of_the_tenant(client, authorization):
    response = service.issue_access_token(authorization)
    db.session.commit()

    token = response["access_token"]
    assert jwt.get_unverified_header(token)["typ"] == "at+jwt"
    claims = verify(client, "clinic-a", token)
    assert claims["iss"] == "https://auth.example.test/t/clinic-a"
    assert claims["tenant"] == "clinic-a"
    assert claims["sub"] == authorization.user.subject
    assert claims["client_id"] == authorization.client.client_id
    assert claims["scope"] == "openid fhirUser patient/Observation.rs"
    assert claims["roles"] == ["nurse", "physician"]
    assert claims["patient"] == "123"
    assert "encounter" not in claims
    assert claims["exp"] - claims["iat"] == response["expires_in"] == 3600
    record = service.find_by_jti(authorization.tenant, claims["jti"])
    assert record is not None and record.kind == "access" and not record.is_revoked
    assert token not in str(record.context) and record.token_digest is None


def test_client_credentials_subject_is_the_client(client, tenant, make_backend_client):
    backend = make_backend_client(tenant).registration.client
    response = service.issue_access_token(
        service.Authorization(tenant=tenant, client=backend, scope="system/*.rs")
    )
    claims = verify(client, "clinic-a", response["access_token"])
    assert claims["sub"] == backend.client_id
    assert "roles" not in claims and "patient" not in claims


def test_es256_access_tokens_when_the_tenant_chooses_them(client, tenant, authorization):
    from authserver.keys import service as keys

    keys.create_key(tenant, "ES256")
    tenant.access_token_alg = "ES256"
    token = service.issue_access_token(authorization)["access_token"]
    assert jwt.get_unverified_header(token)["alg"] == "ES256"
    db.session.commit()
    assert verify(client, "clinic-a", token)["tenant"] == "clinic-a"


def test_refresh_token_is_opaque_and_stored_as_digest(authorization):
    token = service.issue_refresh_token(authorization)
    assert token.startswith("asrt_")
    record = service.find_refresh_token(authorization.tenant, token)
    assert record is not None and record.kind == "refresh"
    assert record.token_digest != token and len(record.token_digest) == 64
    assert service.find_refresh_token(authorization.tenant, token + "x") is None


def test_revoking_a_family_revokes_every_token_of_that_grant(authorization, make_client):
    service.issue_access_token(authorization)
    service.issue_refresh_token(authorization)
    other = service.Authorization(
        tenant=authorization.tenant, client=authorization.client, scope="openid"
    )
    service.issue_access_token(other)

    assert revocation.revoke_family(authorization.tenant, authorization.grant_id) == 2
    rows = db.session.scalars(IssuedToken.for_tenant(authorization.tenant)).all()
    revoked = {row.grant_id: row.is_revoked for row in rows}
    assert revoked == {authorization.grant_id: True, other.grant_id: False}


def test_revoke_for_user_and_client(authorization):
    service.issue_access_token(authorization)
    assert revocation.revoke_for_user(authorization.tenant, authorization.user) == 1
    service.issue_access_token(authorization)
    assert revocation.revoke_for_client(authorization.tenant, authorization.client) == 1


@pytest.mark.parametrize(
    ("expired_ago", "revoked"),
    [(timedelta(seconds=30), True), (timedelta(seconds=90), False)],
    ids=["another-instance-may-still-answer-for-it", "expired-everywhere"],
)
def test_a_token_expired_by_this_clock_alone_is_revoked_too(authorization, expired_ago, revoked):
    # An instance whose clock runs up to a minute behind still finds it live.
    service.issue_access_token(authorization)
    row = db.session.scalar(IssuedToken.for_tenant(authorization.tenant))
    row.expires_at = utcnow() - expired_ago
    db.session.commit()

    assert revocation.revoke_for_user(authorization.tenant, authorization.user) == int(revoked)
    db.session.refresh(row)
    assert row.is_revoked is revoked


def test_another_tenant_sees_and_revokes_none_of_these_tokens(authorization, other_tenant):
    refresh = service.issue_refresh_token(authorization)
    jti = service.find_refresh_token(authorization.tenant, refresh).jti

    assert service.find_refresh_token(other_tenant, refresh) is None
    assert service.find_by_jti(other_tenant, jti) is None
    assert db.session.scalars(IssuedToken.for_tenant(other_tenant)).all() == []
    assert revocation.revoke_family(other_tenant, authorization.grant_id) == 0
    assert revocation.revoke_for_user(other_tenant, authorization.user) == 0
    assert not service.find_refresh_token(authorization.tenant, refresh).is_revoked
