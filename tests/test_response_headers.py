"""Hardening headers on every response, as a scanner or a browser sees them: no content
sniffing, no Referer leaving the pages' own origin, and HSTS once the public URL is https."""

from __future__ import annotations

import pytest

from authserver.clients import service as clients
from authserver.extensions import db
from authserver.oauth import fastpath as token_fastpath
from authserver.tokens import fastpath as introspection_fastpath
from tests.fixtures.accounts import login
from tests.fixtures.assertions import token_form

TOKEN_URL = "https://auth.example.test/t/clinic-a/token"
HSTS = "max-age=31536000"


@pytest.fixture
def signed_in(client, tenant, make_user):
    make_user(tenant, "doc")
    login(client, tenant.slug, "doc")
    return client


@pytest.fixture
def fast_answers(monkeypatch):
    """Which hot path answered: ``(path, answered)`` for each request one considered."""
    seen = []
    for module, name, path in (
        (introspection_fastpath, "introspect", "introspect"),
        (token_fastpath, "issue", "token"),
    ):
        original = getattr(module, name)

        def spy(*args, original=original, path=path):
            seen.append((path, (answer := original(*args)) is not None))
            return answer

        monkeypatch.setattr(module, name, spy)
    return seen


def assert_hardened(response, referrer_policy="no-referrer"):
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == referrer_policy
    assert response.headers["Strict-Transport-Security"] == HSTS


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/t/clinic-a/.well-known/openid-configuration", 200),
        ("GET", "/t/clinic-a/.well-known/jwks.json", 200),
        ("GET", "/t/clinic-a/smart-style.json", 200),
        ("POST", "/t/clinic-a/token", 400),  # an OAuth JSON error
        ("POST", "/t/clinic-a/introspect", 401),
        ("GET", "/t/clinic-a/token", 405),
        ("GET", "/t/no-such-clinic/.well-known/jwks.json", 404),
        ("GET", "/healthz", 200),
    ],
)
def test_every_answer_is_sent_with_nosniff_no_referrer_and_hsts(
    client, tenant, method, path, status
):
    response = client.open(path, method=method)

    assert response.status_code == status
    assert_hardened(response)


@pytest.mark.parametrize(
    ("path", "status"),
    [("/t/clinic-a/login", 200), ("/t/clinic-a/", 302), ("/t/no-such-clinic/login", 404)],
)
def test_pages_send_their_referrer_to_this_server_only(client, tenant, path, status):
    # Over https Flask-WTF wants a same-origin Referer on every form post (login, consent,
    # logout): no-referrer would refuse them all.
    page = client.get(path)

    assert page.status_code == status
    assert_hardened(page, referrer_policy="same-origin")


def test_the_authorization_redirect_carrying_a_code_sends_no_referrer_to_the_app(
    signed_in, tenant, make_client
):
    app = make_client(tenant, redirect_uris=["https://app.example.test/cb"]).client
    clients.set_policy(tenant, app.client_id, trusted=True)  # no consent page: straight back
    db.session.commit()
    params = {
        "response_type": "code",
        "client_id": app.client_id,
        "redirect_uri": "https://app.example.test/cb",
        "scope": "openid user/Patient.rs",
        "state": "s",
        "aud": "https://auth.example.test/t/clinic-a/fhir",
        "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        "code_challenge_method": "S256",
    }

    response = signed_in.get("/t/clinic-a/authorize", query_string=params)

    assert response.status_code == 302
    assert "code=" in response.headers["Location"]
    # same-origin: the app's site, another origin, gets no Referer.
    assert_hardened(response, referrer_policy="same-origin")


def test_the_hot_paths_answers_are_hardened_too(
    client, tenant, make_gateway, issue, make_backend_client, fast_answers
):
    gateway = make_gateway(tenant)
    token = issue(tenant).access_token
    backend = make_backend_client(tenant)
    introspected = [gateway.introspect(client, token) for _ in range(2)]
    issued = [
        client.post("/t/clinic-a/token", data=token_form(backend.assertion(TOKEN_URL)))
        for _ in range(2)
    ]

    assert ("introspect", True) in fast_answers and ("token", True) in fast_answers
    for response in (*introspected, *issued):
        assert response.status_code == 200
        assert_hardened(response)


def test_no_hsts_while_the_public_url_is_plain_http(make_app, tenant):
    # Development on http://localhost: a browser ignores HSTS over http, and a developer's
    # localhost must not be pinned to https by it.
    local = make_app(AUTHSERVER_PUBLIC_URL="http://localhost:5000").test_client()

    for response in (local.get("/healthz"), local.get("/t/clinic-a/login")):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert "Strict-Transport-Security" not in response.headers
