"""``authserver client set-policy``: trusted apps and legacy SMART v1 confidential apps."""

import json

from sqlalchemy import select

from authserver.audit.models import AuditRecord
from authserver.clients import service
from authserver.extensions import db
from tests.fixtures.commands import refused
from tests.fixtures.commands import run
from tests.fixtures.commands import unchanged


def test_set_policy_marks_an_app_trusted_and_legacy(cli, tenant, make_client):
    app = make_client(
        tenant, auth_method="client_secret_basic", redirect_uris=["https://a.test/cb"]
    )
    result = cli.invoke(
        args=[
            "client",
            "set-policy",
            "clinic-a",
            app.client.client_id,
            "--trusted",
            "--legacy-smart-v1",
        ]
    )
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["trusted"] is True and shown["legacy_smart_v1"] is True
    result = cli.invoke(
        args=["client", "set-policy", "clinic-a", app.client.client_id, "--not-trusted"]
    )
    shown = json.loads(result.output)
    assert shown["trusted"] is False and shown["legacy_smart_v1"] is True


def test_public_app_cannot_be_legacy(cli, tenant, make_client):
    app = make_client(tenant).client
    result = cli.invoke(
        args=["client", "set-policy", "clinic-a", app.client_id, "--legacy-smart-v1"]
    )
    assert result.exit_code != 0
    assert "must use PKCE" in result.output
    assert service.get_client(tenant, app.client_id).legacy_smart_v1 is False


def test_policy_of_another_tenants_client_is_not_found(cli, tenant, other_tenant, make_client):
    app = make_client(other_tenant).client
    result = cli.invoke(args=["client", "set-policy", "clinic-a", app.client_id, "--trusted"])
    assert result.exit_code != 0
    assert "no client" in result.output


def policy_events():
    db.session.expire_all()
    query = select(AuditRecord).where(AuditRecord.event == "client:policy-changed")
    return db.session.scalars(query).all()


def test_the_policy_an_app_has_already_is_said_and_not_audited_again(cli, tenant, make_client):
    app = make_client(
        tenant, auth_method="client_secret_basic", redirect_uris=["https://a.test/cb"]
    ).client
    run(cli, "client", "set-policy", "clinic-a", app.client_id, "--trusted")
    audited = len(policy_events())

    shown, line = unchanged(
        cli, "client", "set-policy", "clinic-a", app.client_id, "--trusted", "--no-legacy-smart-v1"
    )

    assert (
        line
        == f"Client {app.client_id} of tenant clinic-a has that policy already; nothing changed."
    )
    assert (shown["trusted"], shown["legacy_smart_v1"]) == (True, False)
    assert len(policy_events()) == audited


def test_set_policy_without_a_flag_is_refused(cli, tenant, make_client):
    app = make_client(tenant).client

    line = refused(cli, "client", "set-policy", "clinic-a", app.client_id)

    assert line.startswith("Error: nothing to change: give --trusted or --not-trusted")
    assert policy_events() == []
