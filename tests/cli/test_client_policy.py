"""``authserver client set-policy``: trusted apps and legacy SMART v1 confidential apps."""

import json

from authserver.clients import service


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
