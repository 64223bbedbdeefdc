"""The token endpoint's protocol shell: errors in RFC 6749 §5.2 form, never cached, CORS."""


def test_unknown_grant_type_is_unsupported_grant_type(client, tenant):
    response = client.post("/t/clinic-a/token", data={"grant_type": "password"})
    assert response.status_code == 400
    assert response.json["error"] == "unsupported_grant_type"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Pragma"] == "no-cache"
    assert response.headers["Access-Control-Allow-Origin"] == "*"


def test_preflight_allows_browser_apps(client, tenant):
    response = client.options("/t/clinic-a/token", headers={"Origin": "https://app.example"})
    assert response.status_code == 204
    assert "Authorization" in response.headers["Access-Control-Allow-Headers"]
    assert "Access-Control-Allow-Credentials" not in response.headers


def test_token_endpoint_of_unknown_tenant_is_a_json_404(client, tenant):
    response = client.post("/t/no-such-clinic/token", data={"grant_type": "client_credentials"})
    assert response.status_code == 404
    assert response.json["error"] == "not_found"
