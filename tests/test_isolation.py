"""Nothing made in one tenant is visible, usable, changeable or deletable from another.

One test per tenant-owned table: make the row in clinic A, then look for it, use it and change it
through clinic B's name and URLs. The structural test at the end fails when a table gains a
``tenant_id`` without an isolation test naming it in ``ISOLATION_TESTS``.
"""

import importlib
import pkgutil

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

import authserver
from authserver.accounts import service as accounts
from authserver.accounts.models import LoginSession
from authserver.accounts.models import Role
from authserver.accounts.models import User
from authserver.accounts.sessions import COOKIE_NAME
from authserver.audit.models import AuditRecord
from authserver.clients import service as clients
from authserver.clients.models import Client
from authserver.errors import NotFound
from authserver.errors import ValidationError
from authserver.extensions import db
from authserver.keys import service as keys
from authserver.keys.models import SigningKey
from authserver.models import Base
from authserver.models import TenantOwned
from tests.fixtures.accounts import DUMMY_PASSWORD
from tests.fixtures.accounts import csrf_token
from tests.fixtures.accounts import login
from tests.fixtures.assertions import token_form
from tests.fixtures.commands import refused
from tests.fixtures.commands import run

# For every table whose rows name another tenant-owned row: the schema refuses another tenant's.
REFUSES_ANOTHER_TENANTS_ROW = (
    "tests.test_references:test_the_database_refuses_a_reference_to_another_tenants_row"
)
# Every table with a tenant_id, and the tests that prove it stays in its tenant.
ISOLATION_TESTS = {
    "used_client_assertions": [
        "tests.clients.test_used_assertions:test_a_jti_used_at_one_tenant_is_unknown_at_another"
    ],
    "authorization_codes": [
        "tests.oauth.test_code_exchange:test_code_of_another_tenant_is_worthless",
        REFUSES_ANOTHER_TENANTS_ROW,
    ],
    "launches": [
        "tests.launch.test_ehr_launch:test_launch_of_another_tenant_is_refused",
        REFUSES_ANOTHER_TENANTS_ROW,
    ],
    "users": ["tests.test_isolation:test_users_stay_in_their_tenant"],
    "roles": ["tests.test_isolation:test_roles_stay_in_their_tenant"],
    "user_roles": ["tests.test_isolation:test_the_database_refuses_a_role_of_another_tenant"],
    "clients": [
        "tests.test_isolation:test_clients_stay_in_their_tenant",
        "tests.test_isolation:test_the_authorization_server_finds_only_the_url_tenants_clients",
        "tests.test_isolation:test_a_client_cannot_act_for_another_tenants_user",
        REFUSES_ANOTHER_TENANTS_ROW,
    ],
    "signing_keys": ["tests.test_isolation:test_signing_keys_stay_in_their_tenant"],
    "login_sessions": [
        "tests.test_isolation:test_login_sessions_stay_in_their_tenant",
        "tests.test_isolation:test_a_login_cookie_replayed_at_another_tenant_does_not_log_in",
        REFUSES_ANOTHER_TENANTS_ROW,
    ],
    "audit_records": ["tests.test_isolation:test_audit_records_stay_in_their_tenant"],
    "issued_tokens": [
        "tests.tokens.test_tokens:test_another_tenant_sees_and_revokes_none_of_these_tokens",
        REFUSES_ANOTHER_TENANTS_ROW,
    ],
}


def rows(model, tenant):
    db.session.expire_all()
    # In a stable order: PostgreSQL returns an updated row wherever its new version landed.
    return db.session.scalars(model.for_tenant(tenant).order_by(model.id)).all()


def snapshot(row):
    db.session.refresh(row)
    return {column.name: getattr(row, column.key) for column in type(row).__table__.columns}


# --- One test per tenant-owned table ----------------------------------------------------------


def test_users_stay_in_their_tenant(cli, client, tenant, other_tenant, make_user):
    alice = make_user(tenant, "alice")
    before = snapshot(alice)

    assert rows(User, other_tenant) == []
    assert accounts.find_user(other_tenant, "alice") is None
    with pytest.raises(NotFound):
        accounts.get_user(other_tenant, "alice")
    assert run(cli, "user", "list", "clinic-b") == []
    assert login(client, "clinic-b", "alice").status_code == 401
    assert "no user 'alice' at tenant 'clinic-b'" in refused(
        cli, "user", "disable", "clinic-b", "alice"
    )
    assert "no user 'alice'" in refused(cli, "user", "enable", "clinic-b", "alice")

    assert snapshot(alice) == before
    assert login(client, "clinic-a", "alice").status_code == 303


def test_roles_stay_in_their_tenant(tenant, other_tenant, make_user):
    own_role_ids = {role.id for role in rows(Role, tenant)}

    other_role_ids = {role.id for role in rows(Role, other_tenant)}
    (physician_at_b,) = accounts.find_roles(other_tenant, ["physician"])
    bob = make_user(other_tenant, "bob", roles=["physician", "nurse"])

    assert own_role_ids and other_role_ids
    assert not own_role_ids & other_role_ids
    assert physician_at_b.id in other_role_ids
    assert {role.tenant_id for role in bob.roles} == {other_tenant.id}
    assert {role.id for role in rows(Role, tenant)} == own_role_ids


def test_the_database_refuses_a_role_of_another_tenant(tenant, other_tenant, make_user):
    """Whatever code writes the link, through the ORM or in SQL, and whichever tenant it
    claims: a user of clinic A cannot hold a role of clinic B."""
    alice = make_user(tenant, "alice", roles=["nurse"])
    (physician_at_b,) = accounts.find_roles(other_tenant, ["physician"])

    alice.roles.append(physician_at_b)
    with pytest.raises(IntegrityError):
        db.session.flush()
    db.session.rollback()
    for claimed in (tenant.id, other_tenant.id):
        with pytest.raises(IntegrityError), db.engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO user_roles (tenant_id, user_id, role_id)"
                    " VALUES (:tenant_id, :user_id, :role_id)"
                ),
                {"tenant_id": claimed, "user_id": alice.id, "role_id": physician_at_b.id},
            )

    db.session.expire_all()
    assert accounts.get_user(tenant, "alice").role_names == ["nurse"]


def test_clients_stay_in_their_tenant(cli, tenant, other_tenant, make_client):
    registration = make_client(
        tenant, auth_method="client_secret_basic", redirect_uris=["https://app.example/cb"]
    )
    client_id, secret = registration.client.client_id, registration.client_secret
    before = snapshot(registration.client)

    assert rows(Client, other_tenant) == []
    assert clients.find_client(other_tenant, client_id) is None
    with pytest.raises(NotFound):
        clients.get_client(other_tenant, client_id)
    assert run(cli, "client", "list", "clinic-b") == []
    assert f"no client '{client_id}' at tenant 'clinic-b'" in refused(
        cli, "client", "delete", "clinic-b", client_id
    )
    assert "no client" in refused(cli, "client", "reset-secret", "clinic-b", client_id)

    assert snapshot(registration.client) == before
    assert clients.find_client(tenant, client_id).check_client_secret(secret)


def test_the_authorization_server_finds_only_the_url_tenants_clients(
    app, tenant, other_tenant, make_client
):
    own = make_client(tenant).client.client_id
    server = app.extensions["authserver.authorization"]

    def query_client_at(slug, client_id):
        with app.app_context(), app.test_request_context(f"/t/{slug}/.well-known/jwks.json"):
            app.preprocess_request()
            found = server.query_client(client_id)
            return found.client_id if found else None

    assert query_client_at("clinic-a", own) == own
    assert query_client_at("clinic-b", own) is None


def test_a_client_cannot_act_for_another_tenants_user(
    cli, client, tenant, other_tenant, make_user, make_backend_client
):
    bob = make_user(other_tenant, "svc-bob")
    own = make_backend_client(tenant)
    theirs = make_backend_client(other_tenant)
    before = snapshot(own.registration.client)

    with pytest.raises(ValidationError, match="no user 'svc-bob' at tenant 'clinic-a'"):
        clients.set_service_account(tenant, own.client_id, "svc-bob")
    db.session.rollback()
    assert "no user 'svc-bob' at tenant 'clinic-a'" in refused(
        cli, "client", "link-service-account", "clinic-a", own.client_id, "svc-bob"
    )
    assert f"no client '{theirs.client_id}' at tenant 'clinic-a'" in refused(
        cli, "client", "link-service-account", "clinic-a", theirs.client_id, "svc-bob"
    )
    assert snapshot(own.registration.client) == before

    # Nor does the database take such a link, however it is written.
    for attribute, value in (("service_account", bob), ("service_account_id", bob.id)):
        setattr(clients.get_client(tenant, own.client_id), attribute, value)
        with pytest.raises(IntegrityError):
            db.session.commit()
        db.session.rollback()
    assert snapshot(own.registration.client) == before
    token_url = "https://auth.example.test/t/clinic-a/token"
    response = client.post("/t/clinic-a/token", data=token_form(own.assertion(token_url)))
    assert response.status_code == 200
    assert response.json["access_token"]


def test_signing_keys_stay_in_their_tenant(cli, client, tenant, other_tenant):
    (old_kid,) = [key.kid for key in rows(SigningKey, tenant)]
    run(cli, "keys", "rotate", "clinic-a", "--now")
    own_keys = [snapshot(key) for key in rows(SigningKey, tenant)]

    assert old_kid not in {key.kid for key in rows(SigningKey, other_tenant)}
    assert old_kid not in {key["kid"] for key in keys.jwks(other_tenant)["keys"]}
    jwks_at_b = client.get("/t/clinic-b/.well-known/jwks.json").json
    assert old_kid not in {key["kid"] for key in jwks_at_b["keys"]}
    with pytest.raises(NotFound):
        keys.retire(other_tenant, old_kid)
    db.session.rollback()
    assert "tenant 'clinic-b' has no key" in refused(cli, "keys", "retire", "clinic-b", old_kid)

    assert [snapshot(key) for key in rows(SigningKey, tenant)] == own_keys
    assert old_kid in {key["kid"] for key in keys.jwks(tenant)["keys"]}


def test_login_sessions_stay_in_their_tenant(client, tenant, other_tenant, make_user):
    make_user(tenant, "alice")
    make_user(other_tenant, "alice")
    login(client, "clinic-a", "alice")
    (session_at_a,) = rows(LoginSession, tenant)
    token = client.get_cookie(COOKIE_NAME, path="/t/clinic-a/").value

    assert rows(LoginSession, other_tenant) == []
    assert accounts.find_session(other_tenant, token) is None

    # A logout at B, carrying A's cookie there, ends nothing at A.
    client.set_cookie(COOKIE_NAME, token, path="/t/clinic-b/")
    page = client.get("/t/clinic-b/login").get_data(as_text=True)
    logout = client.post("/t/clinic-b/logout", data={"csrf_token": csrf_token(page)})

    assert logout.status_code == 303

    assert snapshot(session_at_a)["ended_at"] is None
    assert accounts.find_session(tenant, token) is not None
    assert client.get("/t/clinic-a/").status_code == 200


def test_a_login_cookie_replayed_at_another_tenant_does_not_log_in(
    client, tenant, other_tenant, make_user
):
    make_user(tenant, "alice")
    make_user(other_tenant, "alice")
    login(client, "clinic-a", "alice")
    token = client.get_cookie(COOKIE_NAME, path="/t/clinic-a/").value

    client.set_cookie(COOKIE_NAME, token, path="/t/clinic-b/")
    response = client.get("/t/clinic-b/")

    assert response.status_code == 302
    assert response.headers["Location"] == "/t/clinic-b/login"
    assert client.get("/t/clinic-a/").status_code == 200


def test_audit_records_stay_in_their_tenant(client, tenant, other_tenant, make_user):
    make_user(tenant, "alice")
    login(client, "clinic-a", "alice")
    own_records = {record.id for record in rows(AuditRecord, tenant)}

    # Failing at B with A's user's name is B's event, not A's.
    login(client, "clinic-b", "alice", DUMMY_PASSWORD)

    other_records = rows(AuditRecord, other_tenant)
    assert own_records
    assert not own_records & {record.id for record in other_records}
    assert {record.tenant_id for record in other_records} == {other_tenant.id}
    assert "login:failed" in {record.event for record in other_records}
    assert {record.id for record in rows(AuditRecord, tenant)} == own_records


# --- Structure --------------------------------------------------------------------------------


def tenant_owned_tables():
    """Tables with a ``tenant_id`` column, after importing every ``models`` module there is."""
    for module in pkgutil.walk_packages(authserver.__path__, "authserver."):
        if module.name.rsplit(".", 1)[-1] == "models":
            importlib.import_module(module.name)
    return {name for name, table in Base.metadata.tables.items() if "tenant_id" in table.c}


def test_every_tenant_owned_table_has_an_isolation_test():
    missing = tenant_owned_tables() - set(ISOLATION_TESTS)

    assert not missing, (
        f"tenant-owned tables without an isolation test: {sorted(missing)}; write one (create "
        "the row in one tenant, prove another tenant cannot see, use, change or delete it) and "
        "name it in ISOLATION_TESTS"
    )


@pytest.mark.parametrize("table", sorted(ISOLATION_TESTS))
def test_each_named_isolation_test_exists(table):
    for reference in ISOLATION_TESTS[table]:
        module, name = reference.split(":")
        assert callable(getattr(importlib.import_module(module), name, None)), reference


def test_every_tenant_owned_table_is_read_through_the_tenant_helper():
    tenant_owned_tables()
    for mapper in Base.registry.mappers:
        table = mapper.local_table
        if "tenant_id" in table.c:
            assert issubclass(mapper.class_, TenantOwned), mapper.class_
            assert not table.c.tenant_id.nullable, table.name
            targets = {key.target_fullname for key in table.c.tenant_id.foreign_keys}
            assert "tenants.id" in targets, table.name
