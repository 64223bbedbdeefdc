"""The token endpoint's protocol shell: errors in RFC 6749 §5.2 form, never cached, CORS."""

from dataclasses import dataclass
from typing import Any

import pytest

from tests.fixtures.assertions import ASSERTION_TYPE
from tests.fixtures.tokens import basic
from tests.oauth.conftest import REDIRECT_URI


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


# -- a failed client authentication answers alike whatever the grant (RFC 6749 §5.2) ----------

GRANT_FORMS = {
    "authorization_code": {
        "grant_type": "authorization_code",
        "code": "a-code",
        "redirect_uri": REDIRECT_URI,
        "code_verifier": "v" * 43,
    },
    "refresh_token": {"grant_type": "refresh_token", "refresh_token": "asrt_a-refresh-token"},
    "client_credentials": {"grant_type": "client_credentials", "scope": "system/*.rs"},
}


@dataclass(frozen=True)
class ConfidentialApps:
    """A confidential app of each authentication method, at one tenant."""

    basic: str  # the client_id of a client_secret_basic app
    post: str  # of a client_secret_post app
    asymmetric: Any  # a private_key_jwt client (tests.fixtures.assertions.BackendClient)


@pytest.fixture
def apps(tenant, make_client, make_backend_client) -> ConfidentialApps:
    confidential = {"redirect_uris": [REDIRECT_URI]}
    basic_app = make_client(tenant, auth_method="client_secret_basic", **confidential)
    post_app = make_client(tenant, auth_method="client_secret_post", **confidential)
    return ConfidentialApps(
        basic_app.client.client_id, post_app.client.client_id, make_backend_client(tenant)
    )


def no_credentials(apps):
    return {"client_id": apps.basic}


def a_wrong_form_secret(apps):
    return {"client_id": apps.post, "client_secret": "ascs_wrong"}


def an_assertion_for_another_server(apps):
    assertion = apps.asymmetric.assertion("https://elsewhere.example.test/token")
    return {"client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion}


def an_unreadable_assertion(apps):
    return {"client_assertion_type": ASSERTION_TYPE, "client_assertion": "not.a.jwt"}


def an_unknown_client_id(apps):
    return {"client_id": "BAD_CLIENT_ID"}


def a_wrong_basic_secret(apps):
    return basic(apps.basic, "ascs_wrong")


def an_unknown_basic_client(apps):
    return basic("BAD_CLIENT_ID", "ascs_wrong")


# What each failure adds to the grant's form, without an Authorization header ...
FORM_FAILURES = [
    no_credentials,
    a_wrong_form_secret,
    an_assertion_for_another_server,
    an_unreadable_assertion,
    an_unknown_client_id,
]
# ... and the Authorization header of each failure that used one.
HEADER_FAILURES = [a_wrong_basic_secret, an_unknown_basic_client]


@pytest.mark.parametrize("failure", FORM_FAILURES, ids=[f.__name__ for f in FORM_FAILURES])
@pytest.mark.parametrize("grant", GRANT_FORMS)
def test_a_failed_client_authentication_without_the_header_is_400(client, apps, grant, failure):
    """§5.2: ``invalid_client`` with 400, no challenge, for a client that did not use the
    Authorization header (g10's Backend Services test asserts exactly 400)."""
    form = {**GRANT_FORMS[grant], **failure(apps)}

    response = client.post("/t/clinic-a/token", data=form)

    assert response.status_code == 400, response.json
    assert response.json["error"] == "invalid_client"
    assert "WWW-Authenticate" not in response.headers
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("failure", HEADER_FAILURES, ids=[f.__name__ for f in HEADER_FAILURES])
@pytest.mark.parametrize("grant", GRANT_FORMS)
def test_a_failed_client_authentication_with_the_header_is_401(client, apps, grant, failure):
    """§5.2: a client that used the Authorization header gets 401 and a challenge of its
    scheme."""
    response = client.post("/t/clinic-a/token", data=GRANT_FORMS[grant], headers=failure(apps))

    assert response.status_code == 401, response.json
    assert response.json["error"] == "invalid_client"
    assert response.headers["WWW-Authenticate"].startswith("Basic ")
    assert response.headers["Cache-Control"] == "no-store"
