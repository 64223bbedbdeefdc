"""Input no endpoint can use gets a client error in the endpoint's own format, never a 500.

PostgreSQL cannot hold or compare text with a NUL character, so on PostgreSQL each of these once
reached a query and failed there; no database driver can encode a lone UTF-16 surrogate, which
JSON can spell (``"\\ud800"``), so on both backends such a value in a JWT or a JSON body did the
same; HTTP Basic credentials that are not base64 of UTF-8 failed inside the credential parser.
Both backends run every case.
"""

from __future__ import annotations

import base64
import io
import json
from urllib.parse import urlencode

import pytest
from flask.testing import FlaskClient

from tests.fixtures.accounts import csrf_token
from tests.fixtures.assertions import ASSERTION_TYPE
from tests.fixtures.assertions import token_form
from tests.fixtures.tokens import basic

REDIRECT = "https://app.example.test/callback"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_jwt(header: dict, payload: dict) -> str:
    return f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(payload).encode())}.AAAA"


def assert_oauth_error(response, status, error):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.json["error"] == error


# -- NUL characters --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/t/clinic-a%00/.well-known/smart-configuration",
        "/t/%00/.well-known/jwks.json",
        "/t/clinic-a%00/login",
        "/t/clinic-a%00/token",
    ],
)
def test_a_nul_in_the_tenant_slug_names_no_tenant(client, tenant, path):
    response = client.get(path) if "token" not in path else client.post(path, data={})

    assert response.status_code == 404


@pytest.mark.parametrize(
    "form",
    [
        {"grant_type": "authorization_code", "client_id": "app_\x00", "code": "x"},
        {"grant_type": "client_credentials\x00"},
        {"grant_type": "refresh_token", "refresh_token": "x", "scope\x00": "openid"},
    ],
)
def test_a_nul_in_a_token_request_is_invalid_request(client, tenant, form):
    response = client.post("/t/clinic-a/token", data={**form, "redirect_uri": REDIRECT})

    assert_oauth_error(response, 400, "invalid_request")
    assert "NUL" in response.json["error_description"]
    # As every token endpoint answer: never cached, readable by a browser app (CORS-02).
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Pragma"] == "no-cache"
    assert response.headers["Access-Control-Allow-Origin"] == "*"


@pytest.mark.parametrize(
    "path, cors", [("/t/clinic-a/introspect", False), ("/t/clinic-a/revoke", True)]
)
def test_a_nul_at_introspection_or_revocation_is_an_uncached_invalid_request(
    client, tenant, path, cors
):
    response = client.post(path, data={"token": "x", "token_type_hint": "access_token\x00"})

    assert_oauth_error(response, 400, "invalid_request")
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Pragma"] == "no-cache"
    assert ("Access-Control-Allow-Origin" in response.headers) is cors


@pytest.mark.parametrize("name", ["client_id", "nonce", "state"])
def test_a_nul_in_an_authorization_request_is_an_error_page(client, tenant, name):
    params = {"response_type": "code", "client_id": "app_x", "redirect_uri": REDIRECT}
    params[name] = "x\x00y"

    response = client.get("/t/clinic-a/authorize", query_string=params)

    assert response.status_code == 400
    assert response.content_type.startswith("text/html")
    assert "Location" not in response.headers  # nothing checked out, so nothing is redirected


def test_a_nul_in_a_login_username_is_refused_and_signs_no_one_in(client, tenant, make_user):
    make_user(tenant, "nurse")
    page = client.get("/t/clinic-a/login")
    form = {
        "csrf_token": csrf_token(page.get_data(as_text=True)),
        "username": "nurse\x00",
        "password": "x",
    }

    response = client.post("/t/clinic-a/login", data=form)

    assert response.status_code == 400
    assert "Set-Cookie" not in response.headers or "asls" not in response.headers["Set-Cookie"]


def test_a_nul_in_an_assertions_subject_is_invalid_client(client, tenant):
    assertion = unsigned_jwt(
        {"alg": "RS384", "kid": "k", "typ": "JWT"},
        {"iss": "app\x00", "sub": "app\x00", "aud": "x", "exp": 1, "jti": "j"},
    )
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion,
    }

    response = client.post("/t/clinic-a/token", data=form)

    # RFC 6749 §5.2: 401 is for a failed Authorization header; an assertion may get a 400.
    assert response.status_code in (400, 401), response.json
    assert response.json["error"] == "invalid_client"


def test_a_token_whose_kid_holds_a_nul_is_inactive(client, tenant, make_gateway, issue):
    gateway = make_gateway(tenant)
    assert gateway.introspect(client, issue(tenant).access_token).json["active"] is True
    token = unsigned_jwt({"alg": "RS256", "typ": "at+jwt", "kid": "k\x00"}, {})

    response = gateway.introspect(client, token)

    assert response.status_code == 200
    assert response.json == {"active": False}


# -- lone UTF-16 surrogates -------------------------------------------------------------------
# Forms and query strings cannot carry one (Werkzeug decodes them with replacement characters):
# a JWT's header or payload, and a JSON body, can.

SURROGATE = "\ud800"


@pytest.mark.parametrize(
    "path, status",
    [("/t/clinic-a/token", 400), ("/t/clinic-a/introspect", 401), ("/t/clinic-a/revoke", 400)],
)
def test_an_assertion_whose_subject_is_a_lone_surrogate_is_invalid_client(
    client, tenant, path, status
):
    """The assertion's ``sub`` names the client, read before its signature is checked."""
    assertion = unsigned_jwt(
        {"alg": "RS384", "kid": "k", "typ": "JWT"},
        {"iss": SURROGATE, "sub": SURROGATE, "aud": "x", "exp": 1, "jti": "j"},
    )
    form = {"client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion, "token": "t"}
    if path.endswith("/token"):
        form = {"grant_type": "client_credentials", "scope": "system/Patient.rs", **form}
        del form["token"]

    response = client.post(path, data=form)

    assert_oauth_error(response, status, "invalid_client")
    assert response.headers["Cache-Control"] == "no-store"


def test_a_token_whose_kid_is_a_lone_surrogate_is_inactive_and_revokes_nothing(
    client, tenant, make_gateway, make_client, issue
):
    gateway = make_gateway(tenant)
    live = issue(tenant).access_token
    assert gateway.introspect(client, live).json["active"] is True
    token = unsigned_jwt({"alg": "RS256", "typ": "at+jwt", "kid": SURROGATE}, {"jti": "j"})
    app = make_client(tenant).client  # a public app revokes with its client_id alone

    introspected = gateway.introspect(client, token)
    revoked = client.post("/t/clinic-a/revoke", data={"token": token, "client_id": app.client_id})

    assert introspected.status_code == 200 and introspected.json == {"active": False}
    assert revoked.status_code == 200, revoked.get_data(as_text=True)
    assert gateway.introspect(client, live).json["active"] is True


@pytest.mark.parametrize("path", ["/t/clinic-a/launch", "/t/clinic-a/token", "/healthz"])
def test_a_lone_surrogate_in_a_json_body_is_invalid_request(client, tenant, path):
    """Refused like a NUL, before anything reads the body, whatever the URL."""
    body = json.dumps({"patient": "pt-1", "intent": SURROGATE})
    assert "\\ud800" in body  # JSON's own spelling of it, all ASCII

    response = client.post(path, data=body, content_type="application/json")

    assert_oauth_error(response, 400, "invalid_request")
    assert "surrogate" in response.json["error_description"]


# -- deeply nested JSON ------------------------------------------------------------------------


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("depth", [33, 5000])
@pytest.mark.parametrize(
    "method, path",
    [
        ("POST", "/t/clinic-a/launch"),
        ("POST", "/t/clinic-a/token"),
        ("POST", "/t/clinic-a/introspect"),
        ("GET", "/t/clinic-a/.well-known/jwks.json"),
        ("POST", "/healthz"),
    ],
)
def test_a_json_body_nested_too_deep_is_invalid_request_at_any_url(
    client, tenant, caplog, method, path, depth
):
    """5000 levels (10 kB) once exhausted the parser's recursion before anything else ran."""
    response = client.open(path, method=method, data=nested(depth), content_type="application/json")

    assert_oauth_error(response, 400, "invalid_request")
    assert response.json["error_description"] == "The JSON body nests deeper than 32 levels."
    assert not [record for record in caplog.records if record.levelname == "ERROR"]


@pytest.mark.parametrize(
    "path, status",
    [("/t/clinic-a/token", 400), ("/t/clinic-a/introspect", 401), ("/t/clinic-a/revoke", 400)],
)
def test_an_assertion_whose_payload_nests_too_deep_is_invalid_client(client, tenant, path, status):
    """Authlib reads the payload before the signature and catches only a ValueError; the
    parser's RecursionError was a 500 at every endpoint that authenticates clients."""
    header = b64url(json.dumps({"alg": "RS384", "kid": "k", "typ": "JWT"}).encode())
    assertion = f"{header}.{b64url(nested(5000).encode())}.AAAA"
    form = {"client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion}
    form |= {"grant_type": "client_credentials"} if path.endswith("/token") else {"token": "t"}

    response = client.post(path, data=form)

    assert_oauth_error(response, status, "invalid_client")
    assert response.json["error_description"] == "Invalid JWT payload."


def test_a_json_body_nested_too_deep_at_a_page_is_an_error_page(client, tenant):
    response = client.get("/t/clinic-a/login", data=nested(5000), content_type="application/json")

    assert response.status_code == 400
    assert response.content_type.startswith("text/html")
    assert "nests deeper than 32 levels" in response.get_data(as_text=True)


def test_a_json_body_nested_32_deep_is_read_as_any_other(client, tenant):
    response = client.post("/healthz", data=nested(32), content_type="application/json")

    assert response.status_code == 405  # what POST /healthz is without a body


# -- request size ----------------------------------------------------------------------------

LIMIT = 64 * 1024  # AUTHSERVER_MAX_REQUEST_BYTES's default
FORM = "application/x-www-form-urlencoded"


def send(client: FlaskClient, path: str, content: bytes, content_type: str, **headers: str):
    """POST ``content`` as a stream, as a server hands it on; return the response and how many
    bytes of it were read."""
    body = io.BytesIO(content)
    response = client.post(
        path,
        input_stream=body,
        content_length=len(content),
        content_type=content_type,
        headers=headers,
    )
    return response, body.tell()


@pytest.mark.parametrize(
    "path, content_type",
    [
        ("/healthz", "application/json"),
        ("/t/clinic-a/launch", "application/json"),
        ("/t/clinic-a/token", FORM),
        ("/t/clinic-a/introspect", FORM),
        ("/t/clinic-a/revoke", FORM),
    ],
)
def test_a_body_over_the_limit_is_refused_unread(client, tenant, caplog, path, content_type):
    """60 MB of JSON once cost a worker 228 MB before a 405: now nothing of it is read."""
    content = b"[" + b"0," * (LIMIT // 2) + b"0]" if "json" in content_type else b"x=" * LIMIT

    response, read = send(client, path, content, content_type)

    assert response.status_code == 413, response.get_data(as_text=True)
    assert response.json == {
        "error": "invalid_request",
        "error_description": "The request body is larger than the 65536 bytes this server takes.",
    }
    assert read == 0
    assert not [record for record in caplog.records if record.levelname == "ERROR"]


def test_a_token_endpoint_refusal_for_size_is_uncached_and_readable_by_browser_apps(client, tenant):
    response, _ = send(client, "/t/clinic-a/token", b"x" * (LIMIT + 1), FORM)

    assert response.status_code == 413
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Access-Control-Allow-Origin"] == "*"


@pytest.mark.parametrize("path", ["/t/clinic-a/login", "/t/clinic-a/authorize"])
def test_a_page_over_the_limit_is_an_error_page(client, tenant, path):
    response, read = send(client, path, b"x" * (LIMIT + 1), FORM)

    assert response.status_code == 413
    assert response.content_type.startswith("text/html")
    assert "larger than the 65536 bytes" in response.get_data(as_text=True)
    assert read == 0


def test_a_body_of_the_limit_is_read_as_any_other(client, tenant):
    content = urlencode({"grant_type": "client_credentials", "pad": "x" * LIMIT}).encode()[:LIMIT]

    response, read = send(client, "/t/clinic-a/token", content, FORM)

    assert response.status_code == 400 and response.json["error"] != "invalid_request"
    assert read == LIMIT


def test_the_limit_is_a_deployment_setting_the_token_fast_path_honours_too(
    make_app, tenant, make_backend_client
):
    backend = make_backend_client(tenant)
    content = urlencode(token_form(backend.assertion("https://auth.example.test/t/clinic-a/token")))
    app = make_app(AUTHSERVER_MAX_REQUEST_BYTES=len(content) - 1)  # the fast path reads 9 kB

    response, read = send(app.test_client(), "/t/clinic-a/token", content.encode(), FORM)

    assert response.status_code == 413, response.get_data(as_text=True)
    assert str(len(content) - 1) in response.json["error_description"]
    assert read == 0


# -- Basic credentials that cannot be read -----------------------------------------------------

UNREADABLE = [b"\xff\xfe:secret", b"rs_\x00:secret", b"rs_%00:secret", b"no-colon"]


@pytest.mark.parametrize("credentials", UNREADABLE)
@pytest.mark.parametrize(
    "path, form",
    [
        ("/t/clinic-a/token", {"grant_type": "refresh_token", "refresh_token": "asrt_x"}),
        ("/t/clinic-a/introspect", {"token": "x"}),
        ("/t/clinic-a/revoke", {"token": "x"}),
    ],
)
def test_unreadable_basic_credentials_are_invalid_client(
    client, tenant, make_gateway, issue, path, form, credentials
):
    gateway = make_gateway(tenant)  # and the introspection fast path knows the tenant
    assert gateway.introspect(client, issue(tenant).access_token).json["active"] is True
    authorization = "Basic " + base64.b64encode(credentials).decode()

    response = client.post(path, data=form, headers={"Authorization": authorization})

    assert_oauth_error(response, 401, "invalid_client")
    assert response.headers["WWW-Authenticate"].startswith("Basic")
    assert response.headers["Cache-Control"] == "no-store"


def test_readable_basic_credentials_still_work_beside_them(client, tenant, make_gateway, issue):
    gateway = make_gateway(tenant)
    token = issue(tenant).access_token
    response = client.post(
        "/t/clinic-a/introspect",
        data={"token": token},
        headers=basic(gateway.client_id, gateway.secret),
    )

    assert response.json["active"] is True


def test_a_nul_in_the_presented_token_is_just_not_a_token_of_ours(client, tenant, make_gateway):
    gateway = make_gateway(tenant)
    headers = basic(gateway.client_id, gateway.secret)
    form = {"token": "x\x00y"}

    introspected = client.post("/t/clinic-a/introspect", data=form, headers=headers)
    revoked = client.post("/t/clinic-a/revoke", data=form, headers=headers)

    assert introspected.status_code == 200 and introspected.json == {"active": False}
    assert revoked.status_code == 200, revoked.get_data(as_text=True)
