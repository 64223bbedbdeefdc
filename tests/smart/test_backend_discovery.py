"""Discovery agrees with the registrations: Backend Services, private_key_jwt (SMART 2.2 §2.2)."""

from __future__ import annotations

import pytest

from authserver.oauth.server import authorization_server
from tests.fixtures.assertions import make_client_key
from tests.fixtures.assertions import token_form

TOKEN_URL = "https://auth.example.test/t/clinic-a/token"


@pytest.fixture
def smart_configuration(client, tenant):
    response = client.get("/t/clinic-a/.well-known/smart-configuration")
    assert response.status_code == 200
    return response.json


def test_backend_services_members_are_advertised(smart_configuration):
    assert "client_credentials" in smart_configuration["grant_types_supported"]
    assert "private_key_jwt" in smart_configuration["token_endpoint_auth_methods_supported"]
    algs = smart_configuration["token_endpoint_auth_signing_alg_values_supported"]
    assert {"RS384", "ES384"} <= set(algs)
    assert not {"none", "HS256", "HS384", "HS512"} & set(algs)
    assert {"client-confidential-asymmetric", "permission-v2"} <= set(
        smart_configuration["capabilities"]
    )
    assert any(scope.startswith("system/") for scope in smart_configuration["scopes_supported"])
    assert smart_configuration["token_endpoint"] == TOKEN_URL


def test_discovery_is_the_server_registry(app, smart_configuration):
    server = authorization_server()
    assert smart_configuration["grant_types_supported"] == server.grant_types_supported
    # SMART names three methods (DISC-11): the registry's others (a public client's "none")
    # stay out of the SMART document.
    assert smart_configuration["token_endpoint_auth_methods_supported"] == [
        method
        for method in server.token_endpoint_auth_methods_supported
        if method in {"client_secret_post", "client_secret_basic", "private_key_jwt"}
    ]
    assert smart_configuration["token_endpoint_auth_signing_alg_values_supported"] == (
        server.token_endpoint_auth_signing_alg_values_supported
    )
    assert smart_configuration["scopes_supported"] == server.advertised_scopes
    registered = {grant.GRANT_TYPE for grant, _ in server._token_grants}
    registered |= {grant.GRANT_TYPE for grant, _ in server._authorization_grants}
    # authorization_code is claimed exactly when a grant for it is registered.
    assert ("authorization_code" in smart_configuration["grant_types_supported"]) == (
        "authorization_code" in registered
    )


def test_openid_configuration_agrees(client, smart_configuration):
    openid = client.get("/t/clinic-a/.well-known/openid-configuration").json
    for member in (
        "token_endpoint",
        "grant_types_supported",
        "token_endpoint_auth_signing_alg_values_supported",
    ):
        assert openid[member] == smart_configuration[member]
    # OIDC Core §9 defines "none" for public clients; SMART's list has no such value (DISC-11).
    assert openid["token_endpoint_auth_methods_supported"] == [
        *smart_configuration["token_endpoint_auth_methods_supported"],
        "none",
    ]


def test_every_advertised_signing_alg_is_accepted(
    client, tenant, make_backend_client, smart_configuration
):
    """CA-10: the server validates every algorithm it advertises."""
    for alg in smart_configuration["token_endpoint_auth_signing_alg_values_supported"]:
        backend = make_backend_client(tenant, key=make_client_key(alg))
        response = client.post("/t/clinic-a/token", data=token_form(backend.assertion(TOKEN_URL)))
        assert response.status_code == 200, (alg, response.json)


def test_every_advertised_system_scope_can_be_granted(
    client, tenant, make_backend_client, smart_configuration
):
    system_scopes = [s for s in smart_configuration["scopes_supported"] if s.startswith("system/")]
    backend = make_backend_client(tenant, scopes=system_scopes)
    for scope in system_scopes:
        form = token_form(backend.assertion(TOKEN_URL), scope=scope)
        response = client.post("/t/clinic-a/token", data=form)
        assert response.status_code == 200, (scope, response.json)
        assert response.json["scope"] == scope
