def test_tenant_discovery_served(client, tenant):
    response = client.get("/t/clinic-a/.well-known/smart-configuration")
    assert response.status_code == 200
    assert response.json["jwks_uri"] == "https://auth.example.test/t/clinic-a/.well-known/jwks.json"
