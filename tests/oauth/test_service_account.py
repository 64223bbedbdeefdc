"""A backend client linked to a service account: the account's role ceiling, status and name.

Tokens are requested with real assertions signed by the client's own key (PyJWT), as in
test_client_credentials.py; each refusal is its own test with its exact error.
"""

from __future__ import annotations

import jwt
import pytest
from sqlalchemy import func
from sqlalchemy import select

from authserver.accounts import service as accounts
from authserver.audit.models import AuditRecord
from authserver.clients import service as clients
from authserver.errors import ValidationError
from authserver.extensions import db
from authserver.keys import service as keys
from authserver.oauth import fastpath
from authserver.tokens import revocation
from authserver.tokens import service as tokens
from authserver.tokens.models import IssuedToken
from tests.fixtures.assertions import token_form
from tests.fixtures.commands import run

TOKEN_PATH = "/t/clinic-a/token"
TOKEN_URL = "https://auth.example.test/t/clinic-a/token"
FHIR_BASE = "https://auth.example.test/t/clinic-a/fhir"
ALL_SYSTEM = "system/Patient.rs system/Observation.rs"


@pytest.fixture
def make_account(tenant, make_user):
    """A user of clinic-a whose only role has exactly ``ceiling``."""

    def make(ceiling: list[str], username: str = "svc-lab", role: str = "clinic-admin"):
        accounts.set_role_ceiling(tenant, role, ceiling)
        db.session.commit()
        return make_user(tenant, username, roles=[role])

    return make


@pytest.fixture
def account(make_account):
    return make_account(["user/Patient.rs"])


@pytest.fixture
def backend(tenant, make_backend_client):
    return make_backend_client(tenant)


@pytest.fixture
def linked(tenant, backend, account):
    link(tenant, backend, account.username)
    return backend


@pytest.fixture
def answers(monkeypatch):
    """The token fast path's answers: a token response, or None when it passed the request on."""
    seen = []
    original = fastpath.issue

    def spy(slug, params):
        seen.append(original(slug, params))
        return seen[-1]

    monkeypatch.setattr(fastpath, "issue", spy)
    return seen


def link(tenant, backend, username):
    clients.set_service_account(tenant, backend.client_id, username)
    db.session.commit()


def post_token(client, backend, scope=ALL_SYSTEM):
    return client.post(TOKEN_PATH, data=token_form(backend.assertion(TOKEN_URL), scope))


def claims_of(tenant, token):
    header = jwt.get_unverified_header(token)
    jwk = next(k for k in keys.jwks(tenant)["keys"] if k["kid"] == header["kid"])
    return jwt.decode(token, jwt.PyJWK(jwk).key, algorithms=[header["alg"]], audience=FHIR_BASE)


def assert_invalid_scope(response):
    assert response.status_code == 400, response.json
    assert response.json == {
        "error": "invalid_scope",
        "error_description": "None of the requested scopes can be granted.",
    }


def issued_count(tenant):
    query = select(func.count()).select_from(IssuedToken).where(IssuedToken.tenant_id == tenant.id)
    return db.session.scalar(query)


# -- the grant -------------------------------------------------------------------------------


def test_role_ceiling_narrows_the_grant(client, tenant, linked, account):
    response = post_token(client, linked)
    assert response.status_code == 200, response.json
    assert response.json["scope"] == "system/Patient.rs"
    claims = claims_of(tenant, response.json["access_token"])
    assert claims["scope"] == "system/Patient.rs"
    # Still a backend token: the client is the subject; no user, role or patient in it.
    assert claims["sub"] == claims["client_id"] == linked.client_id
    for absent in ("patient", "encounter", "fhirUser", "roles", "fhirContext"):
        assert absent not in claims
    record = tokens.find_by_jti(tenant, claims["jti"])
    assert record.user_id == account.id and record.scope == "system/Patient.rs"


def test_a_wildcard_request_gets_the_registration_within_the_ceiling(client, linked):
    response = post_token(client, linked, scope="system/*.rs")
    assert response.status_code == 200, response.json
    assert response.json["scope"] == "system/Patient.rs"


def test_user_ceiling_is_read_at_system_level(client, tenant, backend, make_account):
    account = make_account(["user/Observation.r", "user/Patient.rs?identifier=urn:mrn|1"])
    link(tenant, backend, account.username)
    response = post_token(client, backend, scope="system/*.rs")
    assert response.status_code == 200, response.json
    assert response.json["scope"] == "system/Patient.rs?identifier=urn:mrn|1 system/Observation.r"


def test_wildcard_user_ceiling_leaves_the_registration(client, tenant, backend, make_account):
    link(tenant, backend, make_account(["user/*.cruds"]).username)
    response = post_token(client, backend, scope="system/*.cruds")
    assert response.status_code == 200, response.json
    assert response.json["scope"] == "system/Patient.rs system/Observation.rs"


def test_patient_ceiling_gives_a_backend_nothing(client, tenant, backend, make_account):
    link(tenant, backend, make_account(["patient/*.cruds"]).username)
    assert_invalid_scope(post_token(client, backend))
    assert issued_count(tenant) == 0


def test_scope_outside_the_ceiling_is_invalid_scope(client, linked):
    assert_invalid_scope(post_token(client, linked, scope="system/Observation.rs"))


def test_account_without_roles_gives_nothing(client, tenant, backend, account):
    account.roles = []
    db.session.commit()
    link(tenant, backend, account.username)
    assert_invalid_scope(post_token(client, backend))


def test_ceiling_change_applies_to_the_next_token(client, tenant, linked):
    assert post_token(client, linked).json["scope"] == "system/Patient.rs"
    accounts.set_role_ceiling(tenant, "clinic-admin", ["user/Observation.rs"])
    db.session.commit()
    assert post_token(client, linked).json["scope"] == "system/Observation.rs"


def test_unlinked_client_gets_its_registration_again(client, tenant, linked):
    clients.set_service_account(tenant, linked.client_id, None)
    db.session.commit()
    response = post_token(client, linked)
    assert response.json["scope"] == ALL_SYSTEM
    record = tokens.find_by_jti(tenant, claims_of(tenant, response.json["access_token"])["jti"])
    assert record.user_id is None


# -- a service account not in good standing --------------------------------------------------


def test_disabled_service_account_is_refused_with_invalid_grant(client, tenant, linked, account):
    accounts.set_status(tenant, account, active=False)
    db.session.commit()
    response = post_token(client, linked)
    assert response.status_code == 400
    assert response.json == {
        "error": "invalid_grant",
        "error_description": "The client's service account is not active.",
    }
    assert response.headers["Cache-Control"] == "no-store"
    assert issued_count(tenant) == 0


def test_reenabled_service_account_gets_tokens_again(client, tenant, linked, account):
    accounts.set_status(tenant, account, active=False)
    accounts.set_status(tenant, account, active=True)
    db.session.commit()
    assert post_token(client, linked).status_code == 200


# -- the record: revocation and introspection ------------------------------------------------


@pytest.fixture
def gateway(tenant, make_gateway):
    return make_gateway(tenant)


def introspect_everywhere(client, make_instance, gateway, token):
    """The answers of this instance (warm: introspection's fast path) and of a fresh one (its
    first request takes the full path), which must agree."""
    fresh = make_instance().test_client()
    answers = [gateway.introspect(each, token).json for each in (client, fresh)]
    assert answers[0] == answers[1]
    return answers[0]


def test_introspection_names_the_account_and_keeps_the_client_as_subject(
    client, tenant, linked, account, gateway, make_instance
):
    gateway.introspect(client, "warm-up")
    token = post_token(client, linked).json["access_token"]
    answer = introspect_everywhere(client, make_instance, gateway, token)
    assert answer["active"] is True
    assert answer["sub"] == answer["client_id"] == linked.client_id
    assert answer["username"] == account.username
    assert answer["scope"] == "system/Patient.rs"
    assert "patient" not in answer and "fhirUser" not in answer


def test_disabling_the_account_ends_its_clients_tokens(
    client, tenant, linked, account, gateway, make_instance
):
    gateway.introspect(client, "warm-up")
    token = post_token(client, linked).json["access_token"]
    accounts.set_status(tenant, account, active=False)
    db.session.commit()
    assert introspect_everywhere(client, make_instance, gateway, token) == {"active": False}


def test_revoking_the_accounts_tokens_ends_its_clients_tokens(
    cli, client, tenant, linked, account, gateway, make_instance
):
    gateway.introspect(client, "warm-up")
    token = post_token(client, linked).json["access_token"]
    shown = run(cli, "token", "revoke", "--tenant", "clinic-a", "--user", account.username)
    assert shown["revoked"] == 1
    assert introspect_everywhere(client, make_instance, gateway, token) == {"active": False}
    # The revocation ended what was issued; the account's next token is live.
    fresh = post_token(client, linked).json["access_token"]
    assert gateway.introspect(client, fresh).json["active"] is True


def test_revoking_the_accounts_tokens_leaves_unlinked_clients_alone(
    client, tenant, linked, account, make_backend_client
):
    unlinked = make_backend_client(tenant)
    assert post_token(client, linked).status_code == 200
    kept = claims_of(tenant, post_token(client, unlinked).json["access_token"])["jti"]
    assert revocation.revoke_for_user(tenant, account) == 1
    assert tokens.find_by_jti(tenant, kept).revoked_at is None


# -- the audit trail -------------------------------------------------------------------------


def test_issuance_is_audited_under_the_accounts_name(client, tenant, linked, account):
    response = post_token(client, linked)
    claims = claims_of(tenant, response.json["access_token"])
    record = tokens.find_by_jti(tenant, claims["jti"])
    (event,) = db.session.scalars(
        AuditRecord.for_tenant(tenant).where(AuditRecord.event == "service-account:token-issued")
    ).all()
    assert event.subject == account.username
    assert event.details == {
        "client_id": linked.client_id,
        "grant_id": record.grant_id,
        "scope": "system/Patient.rs",
    }


def test_linking_and_unlinking_are_audited(tenant, backend, account):
    link(tenant, backend, account.username)
    clients.set_service_account(tenant, backend.client_id, None, actor="cli")
    db.session.commit()
    events = db.session.scalars(
        AuditRecord.for_tenant(tenant)
        .where(AuditRecord.event.like("client:service-account-%"))
        .order_by(AuditRecord.id)
    ).all()
    assert [(e.event, e.subject, e.details) for e in events] == [
        ("client:service-account-linked", backend.client_id, {"service_account": "svc-lab"}),
        ("client:service-account-unlinked", backend.client_id, {"service_account": "svc-lab"}),
    ]


# -- what can be linked ----------------------------------------------------------------------


def test_user_of_another_tenant_cannot_be_linked(tenant, other_tenant, backend, make_user):
    make_user(other_tenant, "svc-elsewhere")
    with pytest.raises(ValidationError, match="no user 'svc-elsewhere' at tenant 'clinic-a'"):
        clients.set_service_account(tenant, backend.client_id, "svc-elsewhere")
    db.session.rollback()
    assert clients.get_client(tenant, backend.client_id).service_account_id is None


def test_client_that_is_not_a_backend_cannot_be_linked(tenant, make_client, account):
    app = make_client(tenant).client
    with pytest.raises(ValidationError, match="is not a backend client"):
        clients.set_service_account(tenant, app.client_id, account.username)


def test_registration_with_an_unknown_account_registers_nothing(tenant, account):
    before = len(clients.list_clients(tenant))
    with pytest.raises(ValidationError, match="no user 'nobody'"):
        clients.register(
            tenant,
            name="Lab",
            auth_method="private_key_jwt",
            grant_types=["client_credentials"],
            scopes=["system/Patient.rs"],
            jwks_uri="https://lab.example.test/jwks.json",
            service_account="nobody",
        )
    db.session.rollback()
    assert len(clients.list_clients(tenant)) == before


# -- the token fast path ---------------------------------------------------------------------


def test_link_made_after_the_fast_path_cached_the_client_applies_at_once(
    client, tenant, backend, account, answers
):
    post_token(client, backend)  # fills the process's entry
    assert post_token(client, backend).json["scope"] == ALL_SYSTEM
    assert answers[-1] is not None  # the fast path answered, from its cached entry
    link(tenant, backend, account.username)  # as another instance would
    answers.clear()

    response = post_token(client, backend)

    assert response.status_code == 200, response.json
    assert response.json["scope"] == "system/Patient.rs"
    assert answers == [None]  # its write found the client linked: the full path answered
    claims = claims_of(tenant, response.json["access_token"])
    assert tokens.find_by_jti(tenant, claims["jti"]).user_id == account.id


def test_linked_client_always_takes_the_full_path(client, tenant, linked, account, answers):
    for _ in range(3):
        assert post_token(client, linked).json["scope"] == "system/Patient.rs"
    assert answers == [None, None, None]


def test_account_disabled_while_linked_client_is_refused_at_once(
    client, tenant, linked, account, answers
):
    assert post_token(client, linked).status_code == 200
    accounts.set_status(tenant, account, active=False)
    db.session.commit()
    assert post_token(client, linked).json["error"] == "invalid_grant"


def test_unlinked_client_returns_to_the_fast_path(client, tenant, linked, answers):
    clients.set_service_account(tenant, linked.client_id, None)
    db.session.commit()
    post_token(client, linked)
    assert post_token(client, linked).json["scope"] == ALL_SYSTEM
    assert answers[-1] is not None
