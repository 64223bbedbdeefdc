"""JWK Sets that ``private_key_jwt`` clients publish at their ``jwks_uri``: fetched, kept, renewed.

SMART App Launch 2.2 ``client-confidential-asymmetric`` (CA-11): the set is fetched with ``GET``
and ``Accept: application/json``, kept no longer than the client's cache headers allow, and
fetched again when an assertion names a ``kid`` it does not hold (the client rotated its key).

The URL belongs to someone else, so every fetch is bounded: a short timeout for the whole
answer, a size limit, https only (plain http to a loopback host in development and tests), no
redirects, and at most one fetch per URL per :attr:`FetchPolicy.min_refetch_interval`, whatever
asks for it. A failure is a :class:`JWKSFetchError` whose message is safe to show the client.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3
from flask import Flask
from flask import current_app
from werkzeug.datastructures import ResponseCacheControl
from werkzeug.http import parse_cache_control_header
from werkzeug.http import parse_date

from authserver.clients import metadata
from authserver.errors import ValidationError
from authserver.validation import LOOPBACK_HOSTS

log = logging.getLogger(__name__)

EXTENSION = "authserver.jwks_cache"
CHUNK_BYTES = 8192


class JWKSFetchError(Exception):
    """The client's JWK Set could not be had; the message names why, never a key or a body."""


@dataclass(frozen=True)
class FetchPolicy:
    """How far a fetch may go; from the ``AUTHSERVER_JWKS_*`` settings."""

    timeout: float
    max_bytes: int
    min_refetch_interval: float
    default_max_age: int
    max_age_limit: int
    allow_loopback_http: bool

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> FetchPolicy:
        return cls(
            timeout=float(config["AUTHSERVER_JWKS_FETCH_TIMEOUT"]),
            max_bytes=int(config["AUTHSERVER_JWKS_MAX_BYTES"]),
            min_refetch_interval=float(config["AUTHSERVER_JWKS_MIN_REFETCH_INTERVAL"]),
            default_max_age=int(config["AUTHSERVER_JWKS_DEFAULT_MAX_AGE"]),
            max_age_limit=int(config["AUTHSERVER_JWKS_MAX_AGE_LIMIT"]),
            allow_loopback_http=config["AUTHSERVER_ENV"] == "development"
            or bool(config.get("TESTING")),
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
            log.warning("jwks_uri %s: %s", url, error)
            # A failed refresh leaves a still-fresh set usable; an expired one stays expired.
            if previous is not None and now < previous.fresh_until:
                return _Entry(previous.jwks, previous.fresh_until, now, str(error))
            return _Entry(None, 0.0, now, str(error))
        lifetime = max(self.policy.min_refetch_interval, max_age)
        return _Entry(jwks, now + lifetime, now)


def fetch(url: str, policy: FetchPolicy) -> tuple[dict[str, Any], int]:
    """GET the JWK Set at ``url`` within ``policy``.

    :returns: the validated public JWK Set and how many seconds its headers let us keep it.
    :raises JWKSFetchError: for a refused URL, a network failure, a non-200 answer, a slow or
        oversized body, or anything that is not a JWK Set of public keys.
    """
    _check_url(url, policy)
    deadline = time.monotonic() + policy.timeout
    try:
        with requests.get(
            url,
            headers={"Accept": "application/json"},
            timeout=policy.timeout,
            stream=True,
            allow_redirects=False,
        ) as response:
            if response.status_code != 200:
                raise JWKSFetchError(f"the client's jwks_uri answered HTTP {response.status_code}")
            body = _read_limited(response, policy.max_bytes, deadline)
            headers = response.headers
    except (requests.RequestException, urllib3.exceptions.HTTPError):
        raise JWKSFetchError("the client's jwks_uri could not be reached in time") from None
    return _parse(body), cache_lifetime(headers, policy)


def _check_url(url: str, policy: FetchPolicy) -> None:
    parts = urlsplit(url)
    if parts.scheme == "https":
        return
    if parts.scheme == "http" and policy.allow_loopback_http and parts.hostname in LOOPBACK_HOSTS:
        return
    raise JWKSFetchError("the client's jwks_uri must use https")


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
