"""``authserver client create --service-account`` and ``client (un)link-service-account``."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from authserver.accounts import service as accounts
from authserver.audit.models import AuditRecord
from authserver.clients import service
from authserver.extensions import db
from tests.fixtures.assertions import assertion_claims
from tests.fixtures.assertions import jwks_of
from tests.fixtures.assertions import make_client_key
from tests.fixtures.assertions import token_form
from tests.fixtures.commands import refused
from tests.fixtures.commands import run
from tests.fixtures.commands import unchanged

TOKEN_URL = "https://auth.example.test/t/clinic-a/token"


@pytest.fixture
def account(tenant, make_user):
    accounts.set_role_ceiling(tenant, "billing", ["user/Patient.rs"])
    db.session.commit()
    return make_user(tenant, "svc-lab", roles=["billing"])


def create_backend(cli, tmp_path, *extra):
    key = make_client_key()
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps(jwks_of(key)))
    scopes = ["--scope", "system/Patient.rs", "--scope", "system/Observation.rs"]
    shown = run(cli, "client", "create", "clinic-a", "--name", "Lab", "--jwks-file", str(jwks_file),
                *scopes, *extra)  # fmt: skip
    return shown, key


def token_scope(client, client_id, key):
    assertion = key.sign(assertion_claims(client_id, TOKEN_URL))
    response = client.post("/t/clinic-a/token", data=token_form(assertion, "system/*.rs"))
    assert response.status_code == 200, response.json
    return response.json["scope"]


def test_create_with_a_service_account_links_it(cli, client, tmp_path, tenant, account):
    shown, key = create_backend(cli, tmp_path, "--service-account", "SVC-LAB")
    assert shown["service_account"] == "svc-lab"
    assert shown["grant_types"] == ["client_credentials"]
    assert token_scope(client, shown["client_id"], key) == "system/Patient.rs"


def test_link_and_unlink_an_existing_client(cli, client, tmp_path, tenant, account):
    shown, key = create_backend(cli, tmp_path)
    client_id = shown["client_id"]
    assert "service_account" not in shown

    linked = run(cli, "client", "link-service-account", "clinic-a", client_id, "svc-lab")
    assert linked["service_account"] == "svc-lab"
    assert token_scope(client, client_id, key) == "system/Patient.rs"
    listed = {row["client_id"]: row for row in run(cli, "client", "list", "clinic-a")}
    assert listed[client_id]["service_account"] == "svc-lab"

    unlinked = run(cli, "client", "unlink-service-account", "clinic-a", client_id)
    assert "service_account" not in unlinked
    assert token_scope(client, client_id, key) == "system/Patient.rs system/Observation.rs"


def test_unknown_user_is_refused(cli, tmp_path, tenant, account):
    shown, _ = create_backend(cli, tmp_path)
    line = refused(cli, "client", "link-service-account", "clinic-a", shown["client_id"], "nobody")
    assert line == "Error: no user 'nobody' at tenant 'clinic-a' to be a service account"
    assert service.get_client(tenant, shown["client_id"]).service_account_id is None


def test_user_of_another_tenant_is_refused(cli, tmp_path, tenant, other_tenant, make_user):
    make_user(other_tenant, "svc-b")
    shown, _ = create_backend(cli, tmp_path)
    line = refused(cli, "client", "link-service-account", "clinic-a", shown["client_id"], "svc-b")
    assert line == "Error: no user 'svc-b' at tenant 'clinic-a' to be a service account"


def test_create_with_an_unknown_user_registers_nothing(cli, tmp_path, tenant, account):
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps(jwks_of(make_client_key())))
    line = refused(cli, "client", "create", "clinic-a", "--name", "Lab",
                   "--jwks-file", str(jwks_file), "--service-account", "nobody")  # fmt: skip
    assert line == "Error: no user 'nobody' at tenant 'clinic-a' to be a service account"
    assert run(cli, "client", "list", "clinic-a") == []


@pytest.mark.parametrize(
    "options",
    [
        ["--public", "--redirect-uri", "https://app.example.test/cb"],
        ["--secret", "--redirect-uri", "https://app.example.test/cb"],
        ["--resource-server", "--secret"],
    ],
    ids=["public-app", "secret-client", "resource-server"],
)
def test_client_that_is_not_a_backend_is_refused(cli, tenant, account, options):
    shown = run(cli, "client", "create", "clinic-a", "--name", "App", *options)
    line = refused(cli, "client", "link-service-account", "clinic-a", shown["client_id"], "svc-lab")
    assert line == (
        f"Error: client {shown['client_id']!r} is not a backend client: only a private_key_jwt "
        "client with the client_credentials grant can act for a service account"
    )


def test_create_of_a_non_backend_with_a_service_account_is_refused(cli, tenant, account):
    line = refused(cli, "client", "create", "clinic-a", "--name", "App", "--secret",
                   "--redirect-uri", "https://app.example.test/cb",
                   "--service-account", "svc-lab")  # fmt: skip
    assert "the new client is not a backend client" in line
    assert run(cli, "client", "list", "clinic-a") == []


def test_unknown_client_is_refused(cli, tenant, account):
    line = refused(cli, "client", "link-service-account", "clinic-a", "app_nope", "svc-lab")
    assert line == "Error: no client 'app_nope' at tenant 'clinic-a'"


def service_account_events():
    db.session.expire_all()
    query = select(AuditRecord).where(AuditRecord.event.like("client:service-account-%"))
    return db.session.scalars(query).all()


def test_linking_the_user_linked_already_is_said_and_not_audited_again(cli, tmp_path, account):
    client_id = create_backend(cli, tmp_path, "--service-account", "svc-lab")[0]["client_id"]
    audited = len(service_account_events())

    shown, line = unchanged(cli, "client", "link-service-account", "clinic-a", client_id, "SVC-LAB")

    assert (
        line == f"Client {client_id} of tenant clinic-a acts for svc-lab already; nothing changed."
    )
    assert shown["service_account"] == "svc-lab"
    assert len(service_account_events()) == audited


def test_unlinking_a_client_that_is_not_linked_is_said(cli, tmp_path, account):
    client_id = create_backend(cli, tmp_path)[0]["client_id"]

    shown, line = unchanged(cli, "client", "unlink-service-account", "clinic-a", client_id)

    assert line == (
        f"Client {client_id} of tenant clinic-a acts for no service account; nothing changed."
    )
    assert "service_account" not in shown
    assert service_account_events() == []
