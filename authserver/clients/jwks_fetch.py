"""JWK Sets that ``private_key_jwt`` clients publish at their ``jwks_uri``: fetched, kept, renewed.

SMART App Launch 2.2 ``client-confidential-asymmetric`` (CA-11): the set is fetched with ``GET``
and ``Accept: application/json``, kept no longer than the client's cache headers allow, and
fetched again when an assertion names a ``kid`` it does not hold (the client rotated its key).

The URL belongs to someone else, so every fetch is bounded: a short timeout for the whole
answer, a size limit, https only (plain http to a loopback host in development and tests), no
redirects, and at most one fetch per URL per :attr:`FetchPolicy.min_refetch_interval`, whatever
asks for it. Its host is resolved once, within the same timeout, and must resolve to addresses
:mod:`addresses` allows; the connection goes to an address that was checked
(:class:`CheckedAddressAdapter`), the next one if the first cannot be connected to. So it goes
direct, never through a proxy named in the environment, which would resolve the name again
itself. A failure is a :class:`JWKSFetchError` whose message is safe to show the client.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from ipaddress import ip_address
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3
from flask import Flask
from flask import current_app
from requests.adapters import HTTPAdapter
from urllib3.util.connection import allowed_gai_family
from werkzeug.datastructures import ResponseCacheControl
from werkzeug.http import parse_cache_control_header
from werkzeug.http import parse_date

from authserver.clients import addresses
from authserver.clients import metadata
from authserver.errors import ValidationError
from authserver.validation import LOOPBACK_HOSTS

log = logging.getLogger(__name__)

EXTENSION = "authserver.jwks_cache"
CHUNK_BYTES = 8192
DEFAULT_PORTS = {"https": 443, "http": 80}
UNREACHABLE = "the client's jwks_uri could not be reached in time"
# Host names being resolved at once, per process. A lookup can outlast the fetch that asked for
# it (the resolver has no timeout of ours), so slow DNS can hold at most this many threads.
MAX_PENDING_LOOKUPS = 8
_pending_lookups = threading.BoundedSemaphore(MAX_PENDING_LOOKUPS)


class JWKSFetchError(Exception):
    """The client's JWK Set could not be had; the message names why, never a key or a body.

    ``detail`` is what only the log says: the address a host resolved to, what failed.
    """

    def __init__(self, message: str, detail: str | None = None) -> None:
        super().__init__(message)
        self.detail = detail


@dataclass(frozen=True)
class FetchPolicy:
    """How far a fetch may go; from the ``AUTHSERVER_JWKS_*`` settings."""

    timeout: float
    max_bytes: int
    min_refetch_interval: float
    default_max_age: int
    max_age_limit: int
    # Development and tests: plain http to a loopback host, and loopback addresses.
    allow_loopback: bool
    allow_private: bool

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> FetchPolicy:
        return cls(
            timeout=float(config["AUTHSERVER_JWKS_FETCH_TIMEOUT"]),
            max_bytes=int(config["AUTHSERVER_JWKS_MAX_BYTES"]),
            min_refetch_interval=float(config["AUTHSERVER_JWKS_MIN_REFETCH_INTERVAL"]),
            default_max_age=int(config["AUTHSERVER_JWKS_DEFAULT_MAX_AGE"]),
            max_age_limit=int(config["AUTHSERVER_JWKS_MAX_AGE_LIMIT"]),
            allow_loopback=config["AUTHSERVER_ENV"] == "development" or bool(config.get("TESTING")),
            allow_private=bool(config["AUTHSERVER_JWKS_URI_ALLOW_PRIVATE"]),
        )


@dataclass(frozen=True)
class _Entry:
    jwks: dict[str, Any] | None
    fresh_until: float
    fetched_at: float
    error: str | None = None

    def keys(self, now: float) -> dict[str, Any]:
        # "<=": a no-store answer (lifetime 0) still serves the request that fetched it.
        if self.jwks is not None and now <= self.fresh_until:
            return self.jwks
        raise JWKSFetchError(self.error or "the client's JWK Set has expired")


class JWKSCache:
    """JWK Sets by URL, for one app (one per process; each instance fetches on its own)."""

    def __init__(self, policy: FetchPolicy, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()

    def get(self, url: str, *, refresh: bool = False) -> dict[str, Any]:
        """The JWK Set at ``url``, from the cache while it is fresh.

        :param refresh: the caller met an unknown ``kid``; fetch again unless the URL was
            fetched less than ``min_refetch_interval`` ago.
        :raises JWKSFetchError: when there is no usable set.
        """
        with self._lock(url):
            entry = self._entries.get(url)
            now = self._clock()
            if entry is not None and (
                now - entry.fetched_at < self.policy.min_refetch_interval
                or (not refresh and now < entry.fresh_until)
            ):
                return entry.keys(now)
            entry = self._refetch(url, entry, now)
            self._entries[url] = entry
            return entry.keys(now)

    def _lock(self, url: str) -> threading.Lock:
        # One fetch per URL at a time: concurrent requests for one client wait for its answer.
        with self._locks_lock:
            return self._locks.setdefault(url, threading.Lock())

    def _refetch(self, url: str, previous: _Entry | None, now: float) -> _Entry:
        try:
            jwks, max_age = fetch(url, self.policy)
        except JWKSFetchError as error:
            detail = f" ({error.detail})" if error.detail else ""
            log.warning("jwks_uri %s: %s%s", loggable_url(url), error, detail)
            # A failed refresh leaves a still-fresh set usable; an expired one stays expired.
            if previous is not None and now < previous.fresh_until:
                return _Entry(previous.jwks, previous.fresh_until, now, str(error))
            return _Entry(None, 0.0, now, str(error))
        lifetime = max(self.policy.min_refetch_interval, max_age)
        return _Entry(jwks, now + lifetime, now)


def loggable_url(url: str) -> str:
    """``url`` without the parts that may be a secret: user name and password, query."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(a malformed URL)"
    query = "?(query not shown)" if parts.query else ""
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}{query}"


def fetch(url: str, policy: FetchPolicy) -> tuple[dict[str, Any], int]:
    """GET the JWK Set at ``url`` within ``policy``: everything, the host's lookup included,
    within ``policy.timeout``.

    :returns: the validated public JWK Set and how many seconds its headers let us keep it.
    :raises JWKSFetchError: for a refused URL or address, a network failure, a non-200 answer,
        a slow or oversized body, or anything that is not a JWK Set of public keys.
    """
    _check_url(url, policy)
    deadline = time.monotonic() + policy.timeout
    parts = urlsplit(url)
    port = parts.port or DEFAULT_PORTS[parts.scheme]
    candidates = checked_addresses(parts.hostname or "", port, policy, deadline)
    failure = "out of time"
    for tried, address in enumerate(candidates):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        # Each address left gets an equal share of the time left to connect, so one that
        # never answers (an IPv6 address without a route) leaves time for the next.
        connect_timeout = remaining / (len(candidates) - tried)
        try:
            with (
                _session(address) as session,
                session.get(
                    url,
                    headers={"Accept": "application/json"},
                    timeout=(connect_timeout, remaining),
                    stream=True,
                    allow_redirects=False,
                    verify=_trusted_certificates(),
                ) as response,
            ):
                if response.status_code != 200:
                    raise JWKSFetchError(
                        f"the client's jwks_uri answered HTTP {response.status_code}"
                    )
                body = _read_limited(response, policy.max_bytes, deadline)
                return _parse(body), cache_lifetime(response.headers, policy)
        except (requests.RequestException, urllib3.exceptions.HTTPError) as error:
            # Not str(error): requests names the URL in it, query string and all.
            failure = type(error).__name__
            if not _not_connected(error):
                break
            log.info("jwks_uri %s: %s not connected to (%s)", loggable_url(url), address, failure)
    raise JWKSFetchError(UNREACHABLE, failure)


def _not_connected(error: Exception) -> bool:
    """Whether ``error`` says no connection was made (refused, unreachable, timed out), so
    nothing was sent and another address of the host may be tried."""
    if isinstance(error, requests.ConnectTimeout):
        return True
    reason = getattr(error.args[0] if error.args else None, "reason", None)
    return isinstance(error, requests.ConnectionError) and isinstance(
        reason, urllib3.exceptions.NewConnectionError
    )


def registration_problem(url: str, policy: FetchPolicy) -> str | None:
    """Why :func:`fetch` would refuse ``url`` whatever its host resolved to, or None.

    Registration asks, so that a URL the server would never fetch is refused there and then.
    Only a host that is an address, or ``localhost``, is judged without DNS: what a name
    resolves to may change after registration, so each fetch checks it again.
    """
    problem = _url_problem(url, policy)
    if problem:
        return problem
    host = urlsplit(url).hostname or ""
    address = addresses.literal(host)
    if address is not None:
        refused = _refusal(address, policy)
    else:
        loopback = addresses.is_loopback_name(host) and not policy.allow_loopback
        refused = addresses.LOOPBACK if loopback else None
    if refused:
        return f"is at an address this server does not fetch from ({refused}){_hint(refused)}"
    return None


def _check_url(url: str, policy: FetchPolicy) -> None:
    problem = _url_problem(url, policy)
    if problem:
        raise JWKSFetchError(f"the client's jwks_uri {problem}")


def _url_problem(url: str, policy: FetchPolicy) -> str | None:
    parts = urlsplit(url)
    if "@" in parts.netloc:
        # requests would send them as Basic credentials, and they would end up in logs.
        return "must not hold a user name or password: publish the JWK Set openly"
    if parts.scheme == "https":
        return None
    if parts.scheme == "http" and policy.allow_loopback and parts.hostname in LOOPBACK_HOSTS:
        return None
    return "must use https"


def _session(address: addresses.Address) -> requests.Session:
    session = requests.Session()
    # No proxy or .netrc from the environment: a proxy would resolve the host itself, past the
    # address check, and .netrc would hand this machine's credentials to the client's server.
    session.trust_env = False
    adapter = CheckedAddressAdapter(address)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def _trusted_certificates() -> str | bool:
    # The CA bundle requests itself would take from the environment (trust_env is off).
    return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True


class CheckedAddressAdapter(HTTPAdapter):
    """Connects to the address it is given (one :func:`checked_addresses` allowed), never to
    what the host name resolves to by then.

    A name that resolves elsewhere by the time of connecting (DNS rebinding) changes nothing.
    TLS still sends the host name (SNI) and checks the certificate against it, and the ``Host``
    header still names it.
    """

    def __init__(self, address: addresses.Address) -> None:
        super().__init__()
        self.address = address

    def build_connection_pool_key_attributes(
        self, request: requests.PreparedRequest, verify: Any, cert: Any = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(
            request, verify, cert
        )
        host, port = host_params["host"], host_params["port"]
        named = f"[{host}]" if ":" in host else host
        request.headers["Host"] = f"{named}:{port}" if port else named
        if host_params["scheme"] == "https":
            pool_kwargs["server_hostname"] = host
            pool_kwargs["assert_hostname"] = host
        address = self.address
        host_params["host"] = f"[{address}]" if address.version == 6 else str(address)
        return host_params, pool_kwargs


def checked_addresses(
    host: str, port: int, policy: FetchPolicy, deadline: float
) -> list[addresses.Address]:
    """``host`` resolved once, before ``deadline``: its addresses in the resolver's order, when
    ``policy`` allows them all.

    :raises JWKSFetchError: when it does not resolve (in time), or resolves to a refused address.
    """
    resolved = list(dict.fromkeys(entry[4][0] for entry in _resolve(host, port, deadline)))
    if not resolved:
        raise JWKSFetchError(UNREACHABLE, f"{host} does not resolve")
    for address in resolved:
        refused = _refusal(ip_address(address.partition("%")[0]), policy)
        if refused:
            raise JWKSFetchError(
                "the client's jwks_uri is at an address this server does not fetch from",
                f"{host} resolves to {address} ({refused}){_hint(refused)}",
            )
    return [ip_address(address.partition("%")[0]) for address in resolved]


def _resolve(host: str, port: int, deadline: float) -> list[Any]:
    """``getaddrinfo`` for ``host``, given up on at ``deadline``: the lookup runs in a thread of
    its own, since the resolver's own timeouts (seconds per try, per name server) are not ours.
    An unknown name is no addresses."""
    answer: list[Any] = []
    done = threading.Event()

    def lookup() -> None:
        try:
            answer.extend(socket.getaddrinfo(host, port, allowed_gai_family(), socket.SOCK_STREAM))
        except (OSError, UnicodeError):
            pass
        finally:
            _pending_lookups.release()
            done.set()

    if not _pending_lookups.acquire(timeout=max(0.0, deadline - time.monotonic())):
        raise JWKSFetchError(UNREACHABLE, f"{MAX_PENDING_LOOKUPS} host name lookups still pending")
    threading.Thread(target=lookup, name="jwks-uri-lookup", daemon=True).start()
    if not done.wait(max(0.0, deadline - time.monotonic())):
        raise JWKSFetchError(UNREACHABLE, f"{host} did not resolve in time")
    return answer


def _refusal(address: addresses.Address, policy: FetchPolicy) -> str | None:
    return addresses.refusal(
        address, allow_loopback=policy.allow_loopback, allow_private=policy.allow_private
    )


def _hint(refused: str) -> str:
    if refused == addresses.PRIVATE:
        return "; AUTHSERVER_JWKS_URI_ALLOW_PRIVATE=true allows private networks"
    return ""


def _read_limited(response: requests.Response, max_bytes: int, deadline: float) -> bytes:
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise JWKSFetchError("the client's JWK Set is too large")
    body = bytearray()
    # read1, not iter_content: a chunk of iter_content waits for all its bytes (or the end), so
    # a server dripping a byte now and then, each within the read timeout, would hold us for
    # as long as it likes. read1 returns what one socket read brings, and the deadline is
    # checked after each: the whole answer takes at most the timeout plus one read's.
    while chunk := response.raw.read1(CHUNK_BYTES, decode_content=True):
        body += chunk
        if len(body) > max_bytes:
            raise JWKSFetchError("the client's JWK Set is too large")
        if time.monotonic() > deadline:
            raise JWKSFetchError("the client's jwks_uri could not be reached in time")
    return bytes(body)


def _parse(body: bytes) -> dict[str, Any]:
    try:
        return metadata.jwks(json.loads(body))
    except (ValueError, RecursionError, ValidationError):
        raise JWKSFetchError("the client's jwks_uri did not return a usable JWK Set") from None


def cache_lifetime(headers: Mapping[str, str], policy: FetchPolicy) -> int:
    """Seconds the answer may be kept: ``Cache-Control`` first, then ``Expires``, else a default.

    Never more than ``max_age_limit``; ``no-store``/``no-cache`` mean not at all (the caller still
    waits ``min_refetch_interval`` before fetching again).
    """
    control = parse_cache_control_header(headers.get("Cache-Control"), cls=ResponseCacheControl)
    if control.no_store or control.no_cache:
        return 0
    if control.max_age is not None:
        return max(0, min(int(control.max_age), policy.max_age_limit))
    expires = parse_date(headers.get("Expires"))
    if expires is not None:
        seconds = (expires - datetime.now(UTC)).total_seconds()
        return max(0, min(int(seconds), policy.max_age_limit))
    return policy.default_max_age


def init_app(app: Flask) -> None:
    app.extensions[EXTENSION] = JWKSCache(FetchPolicy.from_config(app.config))


def jwks_cache() -> JWKSCache:
    return current_app.extensions[EXTENSION]
