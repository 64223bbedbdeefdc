"""A jwks_uri is fetched from public addresses only: the server is never a way into its network.

Whoever registers a client picks its jwks_uri. In production the fetcher refuses a host that
resolves to loopback, private, link-local (cloud metadata), unspecified, multicast or reserved
addresses, IPv4-mapped forms included, with the usual invalid_client; it connects to the very
address it checked, so a second DNS answer cannot send it elsewhere (the next checked one when
that address takes no connection); TLS still checks the host name. The host's lookup counts in
the fetch's timeout. ``AUTHSERVER_JWKS_URI_ALLOW_PRIVATE`` lets on-premises deployments reach
private networks.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from dataclasses import replace
from ipaddress import ip_address

import pytest

from authserver.clients import addresses
from authserver.clients.jwks_fetch import MAX_PENDING_LOOKUPS
from authserver.clients.jwks_fetch import JWKSFetchError
from authserver.clients.jwks_fetch import fetch
from authserver.clients.jwks_fetch import jwks_cache
from tests.clients.test_jwks_uri import TOKEN_URL
from tests.clients.test_jwks_uri import assert_invalid_client
from tests.clients.test_jwks_uri import post_token
from tests.fixtures.assertions import TLS_HOST_NAME
from tests.fixtures.assertions import make_client_key

REFUSED = "address this server does not fetch from"
FETCH_LOG = "authserver.clients.jwks_fetch"
PARTNER_URL = "https://keys.partner.test/jwks.json"

SPECIAL_ADDRESSES = [
    ("127.0.0.1", "loopback"),
    ("127.53.0.9", "loopback"),
    ("::1", "loopback"),
    ("10.1.2.3", "private"),
    ("172.16.5.4", "private"),
    ("192.168.1.10", "private"),
    ("fd12:3456::1", "private"),
    ("169.254.169.254", "link-local"),  # the cloud instance metadata service
    ("fe80::1", "link-local"),
    ("0.0.0.0", "unspecified"),  # noqa: S104 - an address to refuse, not to bind
    ("::", "unspecified"),
    ("224.0.0.251", "multicast"),
    ("ff02::1", "multicast"),
    ("240.0.0.1", "reserved"),
    ("100.64.0.1", "reserved"),  # carrier-grade NAT
    ("192.0.2.7", "reserved"),  # documentation
    ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:10.0.0.1", "private"),
    ("::ffff:169.254.169.254", "link-local"),
    ("2002:a9fe:a9fe::", "link-local"),  # 6to4 of 169.254.169.254
]


@pytest.fixture
def production(make_instance):
    return make_instance(TESTING=False).test_client()


@pytest.fixture
def testing_policy(app):
    """The fetch policy of tests, as of development: loopback allowed."""
    return jwks_cache().policy


# -- which addresses -------------------------------------------------------------------------


@pytest.mark.parametrize(("address", "kind"), SPECIAL_ADDRESSES)
def test_special_addresses_are_named_for_what_they_are(address, kind):
    assert addresses.kind(ip_address(address)) == kind


@pytest.mark.parametrize("address", ["93.184.215.14", "2606:4700::1111", "::ffff:8.8.8.8"])
def test_public_unicast_addresses_are_fetched_from(address):
    assert addresses.kind(ip_address(address)) is None
    assert addresses.refusal(ip_address(address), allow_loopback=False, allow_private=False) is None


def test_the_settings_allow_loopback_and_private_networks_and_nothing_else():
    def refused(address, **allowed):
        flags = {"allow_loopback": False, "allow_private": False, **allowed}
        return addresses.refusal(ip_address(address), **flags)

    assert refused("127.0.0.1") == "loopback"
    assert refused("127.0.0.1", allow_loopback=True) is None
    assert refused("10.0.0.1") == "private"
    assert refused("10.0.0.1", allow_private=True) is None
    assert refused("127.0.0.1", allow_private=True) == "loopback"
    assert refused("169.254.169.254", allow_loopback=True, allow_private=True) == "link-local"


# -- production, end to end ------------------------------------------------------------------


@pytest.mark.parametrize(("address", "kind"), SPECIAL_ADDRESSES)
def test_production_refuses_a_host_resolving_to_a_special_address(
    production, tenant, make_backend_client, fake_dns, caplog, address, kind
):
    fake_dns.add("keys.partner.test", address)
    backend = make_backend_client(tenant, jwks_uri=PARTNER_URL)

    with caplog.at_level(logging.WARNING, logger=FETCH_LOG):
        response = post_token(production, backend.assertion(TOKEN_URL))

    assert_invalid_client(response, REFUSED)
    assert address not in response.json["error_description"]  # the internal address stays ours
    assert not fake_dns.connected_to(address)
    assert f"keys.partner.test resolves to {address} ({kind})" in caplog.text


def test_production_refuses_a_host_with_any_special_address(
    production, tenant, make_backend_client, fake_dns
):
    # A name with a public and a private address could be connected to on either.
    fake_dns.add("keys.partner.test", "93.184.215.14", "10.0.0.8")
    backend = make_backend_client(tenant, jwks_uri=PARTNER_URL)

    assert_invalid_client(post_token(production, backend.assertion(TOKEN_URL)), REFUSED)
    assert fake_dns.connections == []


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]", TLS_HOST_NAME], ids=str
)
def test_production_does_not_fetch_from_a_server_on_this_machine(
    client, production, tenant, make_backend_client, tls_jwks_host, host
):
    key = make_client_key()
    tls_jwks_host.publish(key)
    backend = make_backend_client(tenant, key=key, jwks_uri=tls_jwks_host.url(host=host))

    assert_invalid_client(post_token(production, backend.assertion(TOKEN_URL)), REFUSED)
    assert tls_jwks_host.hits == {}
    # The same server, from tests (as from development): served.
    assert post_token(client, backend.assertion(TOKEN_URL)).status_code == 200
    assert tls_jwks_host.hits == {"/jwks.json": 1}


def test_development_still_fetches_from_localhost(
    make_instance, tenant, make_backend_client, tls_jwks_host, jwks_host
):
    development = make_instance(AUTHSERVER_ENV="development", TESTING=False).test_client()
    for host, url in [
        (tls_jwks_host, tls_jwks_host.url(host="localhost")),
        (jwks_host, jwks_host.url()),  # plain http to 127.0.0.1
    ]:
        key = make_client_key()
        host.publish(key)
        backend = make_backend_client(tenant, key=key, jwks_uri=url)
        assert post_token(development, backend.assertion(TOKEN_URL)).status_code == 200


def test_on_premises_setting_allows_private_networks_only(
    make_instance, tenant, make_backend_client, fake_dns
):
    on_premises = make_instance(TESTING=False, AUTHSERVER_JWKS_URI_ALLOW_PRIVATE=True).test_client()
    fake_dns.add("keys.partner.test", "10.20.30.40")
    fake_dns.add("metadata.partner.test", "169.254.169.254")
    fake_dns.add("self.partner.test", "127.0.0.1")
    private = make_backend_client(tenant, jwks_uri=PARTNER_URL)
    metadata = make_backend_client(tenant, jwks_uri="https://metadata.partner.test/jwks.json")
    itself = make_backend_client(tenant, jwks_uri="https://self.partner.test/jwks.json")

    # Allowed: the fetcher connects there (the guard makes it fail, as a closed port would).
    response = post_token(on_premises, private.assertion(TOKEN_URL))
    assert_invalid_client(response, "could not be reached")
    assert ("10.20.30.40", 443) in fake_dns.connections
    for refused in (metadata, itself):
        assert_invalid_client(post_token(on_premises, refused.assertion(TOKEN_URL)), REFUSED)
    assert fake_dns.connections == [("10.20.30.40", 443)]


def test_the_private_refusal_log_names_the_setting(
    production, tenant, make_backend_client, fake_dns, caplog
):
    fake_dns.add("keys.partner.test", "192.168.4.4")
    backend = make_backend_client(tenant, jwks_uri=PARTNER_URL)

    with caplog.at_level(logging.WARNING, logger=FETCH_LOG):
        post_token(production, backend.assertion(TOKEN_URL))

    assert "AUTHSERVER_JWKS_URI_ALLOW_PRIVATE" in caplog.text


# -- the address connected to ----------------------------------------------------------------


def test_the_checked_address_is_the_one_connected_to(tls_jwks_host, fake_dns, testing_policy):
    # A rebinding DNS server: the first answer passes the check, the next one would not.
    fake_dns.add(TLS_HOST_NAME, "127.0.0.1", then=["169.254.169.254"])
    key = make_client_key()
    url = tls_jwks_host.publish(key)

    assert fetch(url, testing_policy)[0] == {"keys": [key.public_jwk]}
    assert fake_dns.lookups == [TLS_HOST_NAME]
    assert fake_dns.connections == [("127.0.0.1", tls_jwks_host.server.server_port)]


def test_tls_sends_and_checks_the_host_name_while_connecting_to_the_address(
    tls_jwks_host, testing_policy
):
    key = make_client_key()
    url = tls_jwks_host.publish(key)

    jwks, _ = fetch(url, testing_policy)

    assert jwks == {"keys": [key.public_jwk]}
    assert tls_jwks_host.server_names == [TLS_HOST_NAME]
    assert tls_jwks_host.host_headers == [f"{TLS_HOST_NAME}:{tls_jwks_host.server.server_port}"]


def test_a_certificate_for_another_name_is_refused(tls_jwks_host, fake_dns, testing_policy):
    fake_dns.add("unlisted.partner.test", "127.0.0.1")
    tls_jwks_host.publish(make_client_key())

    with pytest.raises(JWKSFetchError, match="could not be reached") as refused:
        fetch(tls_jwks_host.url(host="unlisted.partner.test"), testing_policy)

    assert refused.value.detail == "SSLError"
    assert tls_jwks_host.hits == {}


@pytest.mark.parametrize("answer", [[], None], ids=["no-address", "no-such-name"])
def test_a_host_that_does_not_resolve_is_unreachable(fake_dns, testing_policy, monkeypatch, answer):
    if answer is None:
        monkeypatch.setattr(fake_dns, "real_getaddrinfo", _no_such_name)
    else:
        fake_dns.add("gone.partner.test", *answer)

    with pytest.raises(JWKSFetchError, match="could not be reached") as refused:
        fetch("https://gone.partner.test/jwks.json", testing_policy)

    assert refused.value.detail == "gone.partner.test does not resolve"
    assert fake_dns.connections == []


def _no_such_name(*args, **kwargs):
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


# -- the host's lookup and its addresses -----------------------------------------------------


def test_a_host_whose_lookup_hangs_is_unreachable_within_the_timeout(fake_dns, testing_policy):
    fake_dns.hold("slow.partner.test")  # a name server that never answers
    policy = replace(testing_policy, timeout=0.3)
    started = time.monotonic()

    with pytest.raises(JWKSFetchError, match="could not be reached") as refused:
        fetch("https://slow.partner.test/jwks.json", policy)

    assert time.monotonic() - started < 2
    assert refused.value.detail == "slow.partner.test did not resolve in time"
    assert fake_dns.connections == []


def test_hanging_lookups_hold_no_more_than_a_few_threads(fake_dns, testing_policy):
    fake_dns.hold("slow.partner.test")
    policy = replace(testing_policy, timeout=0.05)
    for _ in range(MAX_PENDING_LOOKUPS):  # each leaves its lookup waiting on the name server
        with pytest.raises(JWKSFetchError):
            fetch("https://slow.partner.test/jwks.json", policy)
    threads = threading.active_count()

    with pytest.raises(JWKSFetchError, match="could not be reached") as refused:
        fetch("https://slow.partner.test/jwks.json", policy)

    assert refused.value.detail == f"{MAX_PENDING_LOOKUPS} host name lookups still pending"
    assert threading.active_count() == threads
    fake_dns.release()
    for thread in threading.enumerate():
        if thread.name == "jwks-uri-lookup":
            thread.join(timeout=5)
    fake_dns.add("keys.partner.test", "127.0.0.1")
    with pytest.raises(JWKSFetchError) as after:  # the lookups are free again: it resolves
        fetch("https://keys.partner.test:9/jwks.json", testing_policy)
    assert after.value.detail == "ConnectionError"


def test_an_address_that_refuses_is_passed_over_for_the_next(
    tls_jwks_host, fake_dns, testing_policy
):
    # Nothing listens on 127.0.0.2, as on an address of a host that is down.
    fake_dns.add(TLS_HOST_NAME, "127.0.0.2", "127.0.0.1")
    key = make_client_key()
    url = tls_jwks_host.publish(key)

    assert fetch(url, testing_policy)[0] == {"keys": [key.public_jwk]}

    port = tls_jwks_host.server.server_port
    assert fake_dns.connections == [("127.0.0.2", port), ("127.0.0.1", port)]
    assert fake_dns.lookups == [TLS_HOST_NAME]


def test_an_address_that_answered_is_not_passed_over(tls_jwks_host, fake_dns, testing_policy):
    fake_dns.add("unlisted.partner.test", "127.0.0.1", "127.0.0.2")
    tls_jwks_host.publish(make_client_key())

    with pytest.raises(JWKSFetchError) as refused:  # its certificate does not name the host
        fetch(tls_jwks_host.url(host="unlisted.partner.test"), testing_policy)

    assert refused.value.detail == "SSLError"
    assert fake_dns.connections == [("127.0.0.1", tls_jwks_host.server.server_port)]
