"""Backend Services end to end: Authlib's own OAuth client against the server on a real socket."""

from __future__ import annotations

import socket
import threading
import time

import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from joserfc.jwk import ECKey
from joserfc.jwk import RSAKey
from werkzeug.serving import make_server

from tests.fixtures.assertions import make_client_key

pytestmark = pytest.mark.slow


class SmartPrivateKeyJWT(PrivateKeyJWT):
    """Authlib's client auth with SMART's claims: exp now+300 (Authlib's default is an hour)."""

    def sign(self, auth, token_endpoint):
        self.claims = {"exp": int(time.time()) + 300}  # a new dict: Authlib adds a fresh jti
        return super().sign(auth, token_endpoint)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def start_live_server(make_instance):
    """Serve a new app (with config overrides) on a free port; returns its base URL."""
    running = []

    def start(**config):
        port = free_port()
        app = make_instance(AUTHSERVER_PUBLIC_URL=f"http://127.0.0.1:{port}", **config)
        server = make_server("127.0.0.1", port, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
        thread.start()
        running.append((server, thread))
        return f"http://127.0.0.1:{port}"

    yield start
    for server, thread in running:
        server.shutdown()
        thread.join()


@pytest.fixture
def live_server(start_live_server):
    return start_live_server()


def session_for(backend, alg):
    key_class = RSAKey if alg.startswith("RS") else ECKey
    private_key = key_class.import_key(backend.key.private_key)
    auth = SmartPrivateKeyJWT(headers={"kid": backend.key.kid, "typ": "JWT"}, alg=alg)
    return OAuth2Session(
        backend.client_id, private_key, token_endpoint_auth_method=auth, scope="system/*.rs"
    )


@pytest.mark.parametrize("alg", ["RS384", "ES384"])
def test_authlib_client_gets_a_backend_token(
    live_server, tenant, make_backend_client, jwks_host, alg
):
    key = make_client_key(alg)
    backend = make_backend_client(tenant, key=key, jwks_uri=jwks_host.publish(key))
    session = session_for(backend, alg)
    token_url = f"{live_server}/t/clinic-a/token"
    for _ in range(2):  # each request carries a new assertion (new jti)
        token = session.fetch_token(token_url, grant_type="client_credentials")
        assert token["token_type"] == "Bearer"
        assert token["scope"] == "system/Patient.rs system/Observation.rs"
        assert "refresh_token" not in token


def test_discovered_token_endpoint_is_the_accepted_audience(
    live_server, tenant, make_backend_client
):
    backend = make_backend_client(tenant)
    config = requests.get(
        f"{live_server}/t/clinic-a/.well-known/smart-configuration", timeout=5
    ).json()
    session = session_for(backend, "RS384")
    token = session.fetch_token(config["token_endpoint"], grant_type="client_credentials")
    assert token["access_token"]


def test_slow_jwks_uri_does_not_hold_up_other_clients(
    start_live_server, tenant, make_backend_client, jwks_host
):
    """A client whose jwks_uri hangs waits alone; another client is served meanwhile."""
    live_server = start_live_server(AUTHSERVER_JWKS_FETCH_TIMEOUT=1.0)
    slow_key = make_client_key()
    slow = make_backend_client(
        tenant, key=slow_key, jwks_uri=jwks_host.publish(slow_key, delay=2.0)
    )
    fast = make_backend_client(tenant)
    token_url = f"{live_server}/t/clinic-a/token"
    outcome = {}
    slow_session = session_for(slow, "RS384")

    def slow_request():
        try:
            slow_session.fetch_token(token_url, grant_type="client_credentials")
        except Exception as error:  # noqa: BLE001 - record whatever the client raised
            outcome["error"] = error

    waiting = threading.Thread(target=slow_request)
    waiting.start()
    token = session_for(fast, "RS384").fetch_token(token_url, grant_type="client_credentials")
    assert token["access_token"]
    assert waiting.is_alive()  # the slow client was still waiting while the other got served
    waiting.join()
    assert "invalid_client" in str(outcome["error"])


def test_a_gateway_introspects_with_the_token_authlibs_client_got_for_it(
    live_server, tenant, make_gateway, make_backend_client
):
    """INT-06 end to end: the gateway's own OAuth client fetches its ``introspect`` token with
    its secret, then sends it as a Bearer token to introspect a backend job's token."""
    gateway = make_gateway(tenant)
    job = session_for(make_backend_client(tenant), "RS384")
    session = OAuth2Session(
        gateway.client_id,
        gateway.secret,
        token_endpoint_auth_method="client_secret_basic",
        scope="introspect",
    )
    token = session.fetch_token(f"{live_server}/t/clinic-a/token", grant_type="client_credentials")
    assert token["scope"] == "introspect"
    job_token = job.fetch_token(f"{live_server}/t/clinic-a/token", grant_type="client_credentials")

    answer = session.post(
        f"{live_server}/t/clinic-a/introspect", data={"token": job_token["access_token"]}, timeout=5
    )

    assert answer.request.headers["Authorization"] == f"Bearer {token['access_token']}"
    assert answer.status_code == 200
    assert answer.json()["active"] is True
    assert answer.json()["client_id"] == job.client_id
    assert answer.json()["scope"] == job_token["scope"]
