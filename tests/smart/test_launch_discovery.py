"""Discovery grows with what is registered: SMART 2.2 §metadata, checked like Inferno does."""


def test_smart_configuration_advertises_the_launch_endpoints(client, tenant):
    document = client.get("/t/clinic-a/.well-known/smart-configuration").json
    issuer = "https://auth.example.test/t/clinic-a"
    assert document["issuer"] == issuer
    assert document["authorization_endpoint"] == issuer + "/authorize"
    assert document["token_endpoint"] == issuer + "/token"
    assert document["grant_types_supported"][:2] == ["authorization_code", "refresh_token"]
    assert document["response_types_supported"] == ["code"]
    assert document["code_challenge_methods_supported"] == ["S256"]
    assert set(document["token_endpoint_auth_methods_supported"]) >= {
        "client_secret_basic",
        "client_secret_post",
    }
    # DISC-11: only the methods SMART names; public clients still work without "none" listed.
    assert set(document["token_endpoint_auth_methods_supported"]) <= {
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt",
    }
    assert set(document["capabilities"]) >= {
        "launch-standalone",
        "context-standalone-patient",
        "authorize-post",
        "client-public",
        "client-confidential-symmetric",
        "sso-openid-connect",
        "permission-v1",
        "permission-v2",
        "permission-patient",
        "permission-user",
        "permission-offline",
        "permission-online",
    }
    assert all(isinstance(capability, str) for capability in document["capabilities"])


def test_openid_configuration_matches(client, tenant):
    smart = client.get("/t/clinic-a/.well-known/smart-configuration").json
    openid = client.get("/t/clinic-a/.well-known/openid-configuration").json
    assert openid["issuer"] == smart["issuer"]
    assert openid["authorization_endpoint"] == smart["authorization_endpoint"]
    assert openid["token_endpoint"] == smart["token_endpoint"]
    assert openid["id_token_signing_alg_values_supported"] == ["RS256"]
