"""private_key_jwt clients whose keys live at a jwks_uri served by a local HTTP server.

CA-11: fetched, cached by its headers, fetched again for an unknown kid (at most once per
interval); a URL that is down, slow, too big or returns garbage is a clear invalid_client and
the server goes on serving everyone else.
"""

from __future__ import annotations

import json
import logging
import time

import pytest

from authserver.clients.jwks_fetch import FetchPolicy
from authserver.clients.jwks_fetch import JWKSFetchError
from authserver.clients.jwks_fetch import cache_lifetime
from authserver.clients.jwks_fetch import fetch
from authserver.clients.jwks_fetch import jwks_cache
from tests.fixtures.assertions import assertion_claims
from tests.fixtures.assertions import make_client_key
from tests.fixtures.assertions import token_form

TOKEN_PATH = "/t/clinic-a/token"
TOKEN_URL = "https://auth.example.test/t/clinic-a/token"


def post_token(http, assertion):
    return http.post(TOKEN_PATH, data=token_form(assertion))


def assert_invalid_client(response, reason):
    assert response.status_code in (400, 401), response.json
    assert response.json["error"] == "invalid_client"
    assert reason in response.json["error_description"]


@pytest.fixture
def inline_backend(tenant, make_backend_client):
    """Another client of the tenant, with inline keys: it must keep being served."""
    return make_backend_client(tenant)


def assert_others_still_served(http, inline_backend):
    assert post_token(http, inline_backend.assertion(TOKEN_URL)).status_code == 200


# -- keys from the URL -----------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["RS384", "ES384"])
def test_key_from_jwks_uri_authenticates(client, tenant, make_backend_client, jwks_host, alg):
    """CA-11: the keys of a client registered with a JWKS URL are fetched from it with GET
    (the only method the host answers), asking for JSON."""
    key = make_client_key(alg)
    # Inferno publishes an RSA and an EC key side by side; kid and kty pick the right one.
    url = jwks_host.publish(make_client_key("ES384"), key, make_client_key("RS384"))
    backend = make_backend_client(tenant, key=key, jwks_uri=url)
    response = post_token(client, backend.assertion(TOKEN_URL))
    assert response.status_code == 200, response.json
    assert jwks_host.hits["/jwks.json"] == 1
    assert jwks_host.request_headers["/jwks.json"]["Accept"] == "application/json"


def test_a_key_for_encryption_beside_the_signing_key_does_not_spoil_the_set(
    client, tenant, make_backend_client, jwks_host
):
    key = make_client_key("RS384")
    encryption = {**make_client_key("RS384").public_jwk, "use": "enc", "alg": "RSA-OAEP-256"}
    encryption.pop("key_ops")
    url = jwks_host.publish(body=json.dumps({"keys": [key.public_jwk, encryption]}).encode())
    backend = make_backend_client(tenant, key=key, jwks_uri=url)
    response = post_token(client, backend.assertion(TOKEN_URL))
    assert response.status_code == 200, response.json


def test_jwks_is_cached_between_requests(client, tenant, make_backend_client, jwks_host):
    key = make_client_key()
    backend = make_backend_client(tenant, key=key, jwks_uri=jwks_host.publish(key))
    for _ in range(3):
        assert post_token(client, backend.assertion(TOKEN_URL)).status_code == 200
    assert jwks_host.hits["/jwks.json"] == 1


def test_client_key_rotation_is_picked_up_without_restart(
    make_instance, tenant, make_backend_client, jwks_host
):
    http = make_instance(AUTHSERVER_JWKS_MIN_REFETCH_INTERVAL=0).test_client()
    old, new = make_client_key("RS384"), make_client_key("ES384")
    backend = make_backend_client(tenant, key=old, jwks_uri=jwks_host.publish(old))
    assert post_token(http, backend.assertion(TOKEN_URL)).status_code == 200
    jwks_host.publish(new)  # the client rotates: only the new key is published now
    assert post_token(http, backend.assertion(TOKEN_URL, key=new)).status_code == 200
    assert jwks_host.hits["/jwks.json"] == 2


@pytest.mark.parametrize(
    ("cache_control", "fetches"),
    [("no-store", 2), ("public, max-age=3600", 1)],
    ids=["no-store is fetched again", "max-age is kept"],
)
def test_cache_headers_decide_whether_the_keys_are_fetched_again(
    make_instance, tenant, make_backend_client, jwks_host, cache_control, fetches
):
    http = make_instance(AUTHSERVER_JWKS_MIN_REFETCH_INTERVAL=0).test_client()
    key = make_client_key()
    url = jwks_host.publish(key, headers={"Cache-Control": cache_control})
    backend = make_backend_client(tenant, key=key, jwks_uri=url)
    for _ in range(2):
        assert post_token(http, backend.assertion(TOKEN_URL)).status_code == 200
    assert jwks_host.hits["/jwks.json"] == fetches


def test_flood_of_unknown_kids_fetches_the_url_at_most_once_per_interval(
    client, tenant, make_backend_client, jwks_host
):
    key = make_client_key()
    backend = make_backend_client(tenant, key=key, jwks_uri=jwks_host.publish(key))
    assert post_token(client, backend.assertion(TOKEN_URL)).status_code == 200
    for number in range(5):
        claims = assertion_claims(backend.client_id, TOKEN_URL)
        response = post_token(client, key.sign(claims, kid=f"bogus-{number}"))
        assert_invalid_client(response, "matches the kid")
    assert jwks_host.hits["/jwks.json"] == 1
    assert post_token(client, backend.assertion(TOKEN_URL)).status_code == 200


# -- a URL that fails ------------------------------------------------------------------------


def test_jwks_uri_down(client, tenant, make_backend_client, inline_backend):
    backend = make_backend_client(tenant, jwks_uri="http://127.0.0.1:9/jwks.json")
    assert_invalid_client(post_token(client, backend.assertion(TOKEN_URL)), "could not be reached")
    assert_others_still_served(client, inline_backend)


def test_jwks_uri_too_slow(make_instance, tenant, make_backend_client, jwks_host, inline_backend):
    http = make_instance(AUTHSERVER_JWKS_FETCH_TIMEOUT=0.3).test_client()
    key = make_client_key()
    backend = make_backend_client(tenant, key=key, jwks_uri=jwks_host.publish(key, delay=1.0))
    assert_invalid_client(post_token(http, backend.assertion(TOKEN_URL)), "in time")
    assert_others_still_served(http, inline_backend)


@pytest.mark.parametrize("content_length", [True, False], ids=["declared", "streamed"])
def test_jwks_uri_dripping_its_answer_is_given_up_on_in_time(
    make_instance, tenant, make_backend_client, jwks_host, inline_backend, content_length
):
    # Each byte comes well within the read timeout; the whole answer would take ~100 s.
    http = make_instance(AUTHSERVER_JWKS_FETCH_TIMEOUT=0.5).test_client()
    key = make_client_key()
    url = jwks_host.publish(key, drip=0.1, content_length=content_length)
    backend = make_backend_client(tenant, key=key, jwks_uri=url)
    started = time.monotonic()
    response = post_token(http, backend.assertion(TOKEN_URL))
    assert time.monotonic() - started < 2.0
    assert_invalid_client(response, "in time")
    assert_others_still_served(http, inline_backend)


@pytest.mark.parametrize("content_length", [True, False], ids=["declared", "streamed"])
def test_jwks_too_big(
    make_instance, tenant, make_backend_client, jwks_host, inline_backend, content_length
):
    http = make_instance(AUTHSERVER_JWKS_MAX_BYTES=4096).test_client()
    key = make_client_key()
    padding = [make_client_key().public_jwk for _ in range(10)]
    body = json.dumps({"keys": [key.public_jwk, *padding]}).encode()
    url = jwks_host.publish(body=body, content_length=content_length)
    backend = make_backend_client(tenant, key=key, jwks_uri=url)
    assert_invalid_client(post_token(http, backend.assertion(TOKEN_URL)), "too large")
    assert_others_still_served(http, inline_backend)


@pytest.mark.parametrize(
    "body",
    [
        b"<html>maintenance</html>",
        b'{"keys": "none"}',
        b"[" * 50_000,
        json.dumps({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "x"}]}).encode(),
    ],
    ids=["html", "not-a-jwks", "deeply-nested", "secret-key"],
)
def test_jwks_uri_returning_garbage(
    client, tenant, make_backend_client, jwks_host, inline_backend, body
):
    backend = make_backend_client(tenant, jwks_uri=jwks_host.publish(body=body))
    assert_invalid_client(post_token(client, backend.assertion(TOKEN_URL)), "usable JWK Set")
    assert_others_still_served(client, inline_backend)


@pytest.mark.parametrize("status", [500, 302, 404])
def test_jwks_uri_error_status(client, tenant, make_backend_client, jwks_host, status):
    url = jwks_host.publish(make_client_key(), status=status, headers={"Location": "/x"})
    backend = make_backend_client(tenant, jwks_uri=url)
    assert_invalid_client(post_token(client, backend.assertion(TOKEN_URL)), f"HTTP {status}")


def test_failing_url_is_not_fetched_again_within_the_interval(
    client, tenant, make_backend_client, jwks_host
):
    backend = make_backend_client(tenant, jwks_uri=jwks_host.publish(body=b"oops", status=500))
    for _ in range(3):
        assert_invalid_client(post_token(client, backend.assertion(TOKEN_URL)), "HTTP 500")
    assert jwks_host.hits["/jwks.json"] == 1


def test_the_fetch_failure_log_shows_neither_the_query_nor_credentials(
    client, tenant, make_backend_client, jwks_host, caplog
):
    url = jwks_host.publish(body=b"oops", status=500, path="/jwks.json?token=s3cret-query")
    backend = make_backend_client(tenant, jwks_uri=url)

    with caplog.at_level(logging.DEBUG):
        assert_invalid_client(post_token(client, backend.assertion(TOKEN_URL)), "HTTP 500")

    assert jwks_host.hits == {"/jwks.json?token=s3cret-query": 1}
    assert "s3cret" not in caplog.text
    port = jwks_host.server.server_port
    assert f"jwks_uri http://127.0.0.1:{port}/jwks.json?(query not shown): " in caplog.text


def test_a_stored_jwks_uri_with_credentials_is_not_fetched(app, jwks_host, caplog):
    # Registration refuses one now; a row from before is refused where it is used.
    url = jwks_host.publish(make_client_key()).replace("http://", "http://partner:s3cret-pw@")

    with caplog.at_level(logging.DEBUG), pytest.raises(JWKSFetchError, match="user name or pass"):
        jwks_cache().get(url)

    assert jwks_host.hits == {}
    assert "s3cret" not in caplog.text
    assert f"jwks_uri http://127.0.0.1:{jwks_host.server.server_port}/jwks.json: " in caplog.text


def test_plain_http_jwks_uri_is_refused_outside_development_and_tests(
    make_instance, tenant, make_backend_client, jwks_host
):
    http = make_instance(TESTING=False).test_client()
    key = make_client_key()
    backend = make_backend_client(tenant, key=key, jwks_uri=jwks_host.publish(key))
    assert_invalid_client(post_token(http, backend.assertion(TOKEN_URL)), "must use https")
    assert "/jwks.json" not in jwks_host.hits


# -- the fetch policy on its own -------------------------------------------------------------

POLICY = FetchPolicy(
    timeout=1.0,
    max_bytes=65536,
    min_refetch_interval=30,
    default_max_age=300,
    max_age_limit=86400,
    allow_loopback=False,
    allow_private=False,
)


def test_fetch_refuses_plain_http_when_not_allowed(jwks_host):
    with pytest.raises(JWKSFetchError, match="https"):
        fetch(jwks_host.publish(make_client_key()), POLICY)


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({}, 300),
        ({"Cache-Control": "max-age=60"}, 60),
        ({"Cache-Control": "public, max-age=999999999"}, 86400),
        ({"Cache-Control": "no-store"}, 0),
        ({"Cache-Control": "no-cache, max-age=600"}, 0),
        ({"Expires": "Thu, 01 Jan 1970 00:00:00 GMT"}, 0),
    ],
)
def test_cache_lifetime_follows_the_headers(headers, seconds):
    assert cache_lifetime(headers, POLICY) == seconds
