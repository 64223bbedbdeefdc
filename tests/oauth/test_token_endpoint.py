"""The token endpoint's protocol shell: errors in RFC 6749 §5.2 form, never cached, CORS."""

import pytest


def test_unknown_grant_type_is_unsupported_grant_type(client, tenant):
    response = client.post("/t/clinic-a/token", data={"grant_type": "password"})
    assert response.status_code == 400
    assert response.json["error"] == "unsupported_grant_type"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Pragma"] == "no-cache"
    assert response.headers["Access-Control-Allow-Origin"] == "*"


def test_preflight_allows_browser_apps(client, tenant):
    """CORS-03: a browser app's preflight is a 2xx naming the origin, ``POST`` and the
    ``Authorization`` and ``Content-Type`` headers a token request sends."""
    response = client.options(
        "/t/clinic-a/token",
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    allowed = {
        name.strip().lower() for name in response.headers["Access-Control-Allow-Headers"].split(",")
    }
    assert {"authorization", "content-type"} <= allowed


@pytest.mark.parametrize(
    ("method", "path", "form"),
    [
        ("GET", "/t/clinic-a/.well-known/smart-configuration", None),
        ("GET", "/t/clinic-a/fhir/.well-known/smart-configuration", None),
        ("GET", "/t/clinic-a/.well-known/openid-configuration", None),
        ("GET", "/t/clinic-a/.well-known/jwks.json", None),
        ("OPTIONS", "/t/clinic-a/token", None),
        ("POST", "/t/clinic-a/token", {"grant_type": "password"}),
        ("OPTIONS", "/t/clinic-a/revoke", None),
        ("POST", "/t/clinic-a/revoke", {"token": "x", "client_id": "app_unknown"}),
    ],
)
def test_cross_origin_answers_never_allow_credentials(client, tenant, method, path, form):
    """CORS-04: every answer a browser app may read cross-origin allows any origin (``*``) and
    never says ``Access-Control-Allow-Credentials: true`` with it (Fetch standard)."""
    response = client.open(
        path, method=method, data=form, headers={"Origin": "https://app.example"}
    )

    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in response.headers


def test_token_endpoint_of_unknown_tenant_is_a_json_404(client, tenant):
    response = client.post("/t/no-such-clinic/token", data={"grant_type": "client_credentials"})
    assert response.status_code == 404
    assert response.json["error"] == "not_found"
