"""``authserver client set-scopes``: what a registered client may be granted, changed later.

How a narrowed app registration narrows the app's next refresh is tested with the other refresh
policies, in ``tests/oauth/test_refresh_policy.py``.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from authserver.audit.models import AuditRecord
from authserver.clients import service as clients
from authserver.errors import ValidationError
from authserver.extensions import db
from tests.fixtures.assertions import assertion_claims
from tests.fixtures.assertions import token_form
from tests.fixtures.commands import refused
from tests.fixtures.commands import run
from tests.fixtures.commands import unchanged

APP_SCOPES = ["launch/patient", "openid", "fhirUser", "offline_access", "patient/*.rs"]
TOKEN_URL = "https://auth.example.test/t/clinic-a/token"


@pytest.fixture
def app_id(tenant, make_client):
    return make_client(tenant, name="Growth chart", scopes=APP_SCOPES).client.client_id


@pytest.fixture
def backend(tenant, make_backend_client):
    return make_backend_client(tenant, scopes=["system/Patient.rs", "system/Observation.rs"])


def set_scopes(client_id, *scopes, slug="clinic-a"):
    args = ["client", "set-scopes", slug, client_id]
    return [*args, *(part for scope in scopes for part in ("--scope", scope))]


def scope_events():
    db.session.expire_all()
    query = select(AuditRecord).where(AuditRecord.event == "client:scopes-changed")
    return db.session.scalars(query).all()


def registered_scope(cli, client_id):
    listed = {row["client_id"]: row for row in run(cli, "client", "list", "clinic-a")}
    return listed[client_id]["scope"]


def test_set_scopes_replaces_an_apps_scopes_and_audits_before_and_after(cli, app_id):
    shown = run(cli, *set_scopes(app_id, "launch/patient", "openid", "patient/Observation.rs"))

    assert shown["client_id"] == app_id
    assert shown["scope"] == "launch/patient openid patient/Observation.rs"
    assert registered_scope(cli, app_id) == "launch/patient openid patient/Observation.rs"
    [event] = scope_events()
    assert (event.subject, event.actor) == (app_id, "cli")
    assert event.details == {
        "before": APP_SCOPES,
        "after": ["launch/patient", "openid", "patient/Observation.rs"],
    }


def test_the_scopes_a_client_has_already_are_said_and_not_audited(cli, app_id):
    # The same scopes in another order, one of them twice: nothing to change.
    shown, line = unchanged(cli, *set_scopes(app_id, *reversed(APP_SCOPES), "openid"))

    assert line == f"Client {app_id} of tenant clinic-a has those scopes already; nothing changed."
    assert shown["scope"] == " ".join(APP_SCOPES)  # as registered, not as typed this time
    assert scope_events() == []


@pytest.mark.parametrize(
    ("scope", "message"),
    [
        ("patient/Observation.sr", "malformed scope 'patient/Observation.sr'"),
        ("patient/*.rs patient/Patient.rs", "invalid scope 'patient/*.rs patient/Patient.rs'"),
        ("system/Patient.rs", "scope 'system/Patient.rs' is for backend clients"),
    ],
    ids=["malformed", "two-in-one", "system-for-an-app"],
)
def test_a_scope_registration_refuses_is_refused_and_nothing_changes(cli, app_id, scope, message):
    line = refused(cli, *set_scopes(app_id, "openid", scope))

    assert line.startswith(f"Error: {message}")
    assert registered_scope(cli, app_id) == " ".join(APP_SCOPES)
    assert scope_events() == []


@pytest.mark.parametrize("scope", ["offline_access", "online_access"])
def test_a_refresh_scope_needs_the_refresh_grant_and_nothing_changes(
    cli, tenant, make_client, scope
):
    # Stored, it would bound nothing: without the grant no refresh token is ever issued.
    code_only = make_client(tenant, grant_types=["authorization_code"], scopes=["openid"]).client

    line = refused(cli, *set_scopes(code_only.client_id, "openid", scope))

    assert line == (
        f"Error: scope {scope!r} needs the refresh_token grant: without it the client is "
        "never issued a refresh token"
    )
    assert registered_scope(cli, code_only.client_id) == "openid"
    assert scope_events() == []


def test_the_service_refuses_a_refresh_scope_without_the_refresh_grant(tenant, make_client):
    code_only = make_client(tenant, grant_types=["authorization_code"], scopes=["openid"]).client

    with pytest.raises(ValidationError, match="'offline_access' needs the refresh_token grant"):
        clients.set_scopes(tenant, code_only.client_id, ["openid", "offline_access"])

    db.session.rollback()
    assert code_only.allowed_scope == "openid"
    assert scope_events() == []


def test_an_app_with_the_refresh_grant_may_have_refresh_scopes_set(cli, tenant, app_id):
    shown = run(cli, *set_scopes(app_id, "openid", "online_access", "patient/*.rs"))

    assert shown["grant_types"] == ["authorization_code", "refresh_token"]
    assert shown["scope"] == "openid online_access patient/*.rs"
    outcome = clients.set_scopes(tenant, app_id, ["openid", "offline_access", "online_access"])
    assert outcome.changed
    assert outcome.row.allowed_scope == "openid offline_access online_access"


def test_a_backend_client_takes_system_scopes_only(cli, backend):
    line = refused(cli, *set_scopes(backend.client_id, "system/Patient.rs", "patient/*.rs"))

    assert line.startswith("Error: scope 'patient/*.rs' needs a user signing in")
    shown = run(cli, *set_scopes(backend.client_id, "system/Patient.rs", "system/Encounter.rs"))
    assert shown["scope"] == "system/Patient.rs system/Encounter.rs"


def test_a_backend_clients_next_token_gets_only_the_new_scopes(cli, client, backend):
    def token_scope():
        assertion = backend.key.sign(assertion_claims(backend.client_id, TOKEN_URL))
        response = client.post("/t/clinic-a/token", data=token_form(assertion, "system/*.rs"))
        assert response.status_code == 200, response.json
        return response.json["scope"]

    assert token_scope() == "system/Patient.rs system/Observation.rs"

    run(cli, *set_scopes(backend.client_id, "system/Observation.rs"))

    assert token_scope() == "system/Observation.rs"


def test_a_resource_server_is_refused(cli, tenant, make_client):
    gateway = make_client(tenant, kind="resource_server", auth_method="client_secret_basic")

    line = refused(cli, *set_scopes(gateway.client.client_id, "system/Patient.rs"))

    assert line == (
        "Error: a resource server has no scopes: it introspects tokens, it is never issued one"
    )


def test_no_scope_is_refused(cli, app_id):
    # An app registered with no scopes is bounded by its users' roles alone: never the
    # outcome of a command meant to narrow it.
    line = refused(cli, "client", "set-scopes", "clinic-a", app_id)

    assert line == "Error: give at least one --scope: the scopes the client may be granted"
    assert registered_scope(cli, app_id) == " ".join(APP_SCOPES)


def test_another_tenants_client_is_not_found(cli, tenant, other_tenant, make_client):
    foreign = make_client(other_tenant, scopes=APP_SCOPES).client

    line = refused(cli, *set_scopes(foreign.client_id, "openid"))

    assert line == f"Error: no client {foreign.client_id!r} at tenant 'clinic-a'"
    db.session.expire_all()
    assert foreign.allowed_scope == " ".join(APP_SCOPES)
