"""Every ``AUTHSERVER_*`` deployment setting, with its default and the reason for it.

Per-tenant policy (branding, token lifetimes, role ceilings) lives on the tenant's rows, never
here. Settings are read from the environment; tests pass overrides into ``create_app(...)``.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from authserver.tenancy.urls import DEFAULT_FHIR_PATH
from authserver.tenancy.urls import MAX_PUBLIC_URL_LENGTH
from authserver.tenancy.urls import MAX_SLUG_LENGTH
from authserver.tenancy.urls import TENANT_PATH
from authserver.tenancy.urls import token_length
from authserver.tokens.limits import ASSUMED_URL_LENGTH

log = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {
    # "production" refuses to start without explicit secrets; "development" makes them up once.
    "AUTHSERVER_ENV": "production",
    # Issuers are {public URL}/t/{slug}; must be what clients see, behind any proxy. At most
    # MAX_PUBLIC_URL_LENGTH (185) characters: every access token carries it twice.
    "AUTHSERVER_PUBLIC_URL": "http://localhost:5000",
    # None means a SQLite file in the instance folder: zero set-up for a first run.
    "AUTHSERVER_DATABASE_URL": None,
    # Wraps every tenant's private signing keys at rest (32 bytes, base64). Comma-separated:
    # the first encrypts, all decrypt, so the key-encryption key itself can be rotated.
    "AUTHSERVER_KEY_ENCRYPTION_KEY": None,
    # Signs the CSRF cookie session.
    "AUTHSERVER_SECRET_KEY": None,
    # Where development secrets and the default SQLite file go. None means Flask's ./instance.
    "AUTHSERVER_INSTANCE_PATH": None,
    # Deployment-wide template overrides (templates/tenants/{slug}/login.html etc.), searched
    # before the packaged templates. None means {instance folder}/templates.
    "AUTHSERVER_TEMPLATE_DIR": None,
    # How long a login session lasts without a new login (seconds).
    "AUTHSERVER_LOGIN_SESSION_LIFETIME": 8 * 3600,
    # argon2id cost; the defaults are argon2-cffi's (RFC 9106 low-memory profile). Changing them
    # makes every password rehash at its owner's next login.
    "AUTHSERVER_ARGON2_TIME_COST": 3,
    "AUTHSERVER_ARGON2_MEMORY_COST": 65536,
    "AUTHSERVER_ARGON2_PARALLELISM": 4,
    # Fetching a private_key_jwt client's jwks_uri: a slow or huge answer must not hold a worker.
    "AUTHSERVER_JWKS_FETCH_TIMEOUT": 3.0,
    "AUTHSERVER_JWKS_MAX_BYTES": 65536,
    # Seconds between two fetches of one jwks_uri, whatever the cause (an unknown kid, a
    # no-store answer, a failure): a flood of bad assertions cannot make us hammer the URL.
    "AUTHSERVER_JWKS_MIN_REFETCH_INTERVAL": 30,
    # How long a jwks_uri answer is kept when it sends no cache headers, and at most.
    "AUTHSERVER_JWKS_DEFAULT_MAX_AGE": 300,
    "AUTHSERVER_JWKS_MAX_AGE_LIMIT": 24 * 3600,
    # A jwks_uri is only fetched from public addresses (clients/addresses.py): anyone registering
    # a client picks it. True also allows private networks (10/8, 172.16/12, 192.168/16,
    # fc00::/7), for on-premises deployments whose partners live there; never loopback,
    # link-local (cloud metadata) or other special addresses.
    "AUTHSERVER_JWKS_URI_ALLOW_PRIVATE": False,
    # On PostgreSQL, keep a live token's state in each worker for up to this many seconds
    # between introspections, dropped at once by NOTIFY from triggers when any instance changes
    # it (authserver/tokens/statecache.py); the age limit only bounds the damage of a listener
    # connection that died silently. 0 turns the cache off (say, behind a pooler that does not
    # pass LISTEN through): every introspection then reads the database.
    "AUTHSERVER_INTROSPECTION_CACHE_SECONDS": 5.0,
    # How long expired tokens, codes, launches and login sessions are kept before they are
    # deleted (seconds; authserver/upkeep.py). They decide nothing once expired: the margin is for
    # instances' clocks and for an operator looking into the last hour.
    "AUTHSERVER_EXPIRED_ROW_RETENTION": 3600,
    # The largest request body taken (bytes; Flask's MAX_CONTENT_LENGTH): a larger one is a 413
    # before any of it is read, so no request can make a worker hold more. The largest legitimate
    # body is about 19 kB (a sign-in with a 1,024-character password whose next is the longest
    # authorization request); token requests with an assertion, introspection of the longest
    # token, consent and an EHR's launch context take 3-9 kB.
    "AUTHSERVER_MAX_REQUEST_BYTES": 64 * 1024,
    # The name of the per-tenant session cookie holding the CSRF secret (authserver/sessions.py;
    # Flask's SESSION_COOKIE_NAME), for a deployment whose other apps share its host. Not
    # Flask's "session": browsers may still hold one of those for path /, from when every
    # tenant shared it, and would send it along with a tenant's own.
    "AUTHSERVER_SESSION_COOKIE_NAME": "authserver_session",
}

ENVIRONMENTS = ("production", "development")
# How an on/off setting may be spelled in the environment.
BOOLEANS = {"true": True, "yes": True, "on": True, "1": True}
BOOLEANS |= {"false": False, "no": False, "off": False, "0": False}
# The least each number may be: below it a setting breaks requests instead of the start
# (requests refuses a timeout of 0, argon2 refuses to hash with no time, lanes or memory).
MINIMUMS: dict[str, float] = {
    "AUTHSERVER_LOGIN_SESSION_LIFETIME": 1,
    "AUTHSERVER_ARGON2_TIME_COST": 1,
    "AUTHSERVER_ARGON2_PARALLELISM": 1,
    "AUTHSERVER_JWKS_FETCH_TIMEOUT": 0.001,
    "AUTHSERVER_JWKS_MAX_BYTES": 1,
    "AUTHSERVER_JWKS_MIN_REFETCH_INTERVAL": 0,
    "AUTHSERVER_JWKS_DEFAULT_MAX_AGE": 0,
    "AUTHSERVER_JWKS_MAX_AGE_LIMIT": 0,
    "AUTHSERVER_INTROSPECTION_CACHE_SECONDS": 0,
    "AUTHSERVER_EXPIRED_ROW_RETENTION": 0,
    "AUTHSERVER_MAX_REQUEST_BYTES": 1,
}
ARGON2_MEMORY_PER_LANE = 8  # KiB: argon2's least memory for each lane of parallelism
KEK_HELP = (
    "set AUTHSERVER_KEY_ENCRYPTION_KEY to 32 random bytes in base64, "
    "for example the output of: openssl rand -base64 32"
)
SECRET_HELP = (
    "set AUTHSERVER_SECRET_KEY to a long random string, "
    "for example the output of: openssl rand -base64 32"
)
# It signs sessions, CSRF tokens and sign-in markers: guessable, it forges all of them.
MIN_SECRET_KEY_LENGTH = 32
PUBLIC_URL_HELP = (
    "set AUTHSERVER_PUBLIC_URL to the URL clients reach this server at, "
    "for example https://auth.example.org or https://example.org/auth"
)
# Plain http is only safe where nobody else can listen: the machine itself.
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
# An RFC 7230 token (tchar), which RFC 6265 §4.1.1 makes a cookie's name.
COOKIE_NAME_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


class ConfigError(RuntimeError):
    """A deployment setting is missing or malformed; the message says how to fix it."""


def load(overrides: dict[str, Any] | None) -> dict[str, Any]:
    """Return the settings: defaults, then the environment, then ``overrides``."""
    settings = dict(DEFAULTS)
    for name, default in DEFAULTS.items():
        if name in os.environ:
            settings[name] = _coerce(name, os.environ[name], default)
    settings.update(overrides or {})
    if settings["AUTHSERVER_ENV"] not in ENVIRONMENTS:
        raise ConfigError(f"AUTHSERVER_ENV must be one of {', '.join(ENVIRONMENTS)}")
    _check_ranges(settings)
    return settings


def _check_ranges(settings: dict[str, Any]) -> None:
    """:raises ConfigError: for a number below what its use can work with."""
    least = dict(MINIMUMS)
    least["AUTHSERVER_ARGON2_MEMORY_COST"] = ARGON2_MEMORY_PER_LANE * max(
        1, settings["AUTHSERVER_ARGON2_PARALLELISM"]
    )
    for name, minimum in least.items():
        if settings[name] < minimum:
            raise ConfigError(f"{name} must be at least {minimum}, got {settings[name]!r}")


def _coerce(name: str, value: str, default: Any) -> Any:
    if isinstance(default, bool):
        try:
            return BOOLEANS[value.strip().lower()]
        except KeyError:
            raise ConfigError(f"{name}: expected true or false, got {value!r}") from None
    if isinstance(default, float):
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{name}: expected a number, got {value!r}") from None
    if isinstance(default, int):
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"{name}: expected an integer, got {value!r}") from None
    return value


def finalize(settings: dict[str, Any], instance_path: Path) -> dict[str, Any]:
    """Fill in derived settings and refuse to run production without its secrets.

    :raises ConfigError: when a production secret is missing, or a key or the public URL is
        malformed.
    """
    development = settings["AUTHSERVER_ENV"] == "development"
    settings["AUTHSERVER_PUBLIC_URL"] = public_url(
        settings["AUTHSERVER_PUBLIC_URL"], production=not development
    )
    if not settings["AUTHSERVER_DATABASE_URL"]:
        settings["AUTHSERVER_DATABASE_URL"] = f"sqlite:///{instance_path / 'authserver.sqlite'}"
    for name, help_text in (
        ("AUTHSERVER_KEY_ENCRYPTION_KEY", KEK_HELP),
        ("AUTHSERVER_SECRET_KEY", SECRET_HELP),
    ):
        if not settings[name]:
            if not development:
                raise ConfigError(f"{name} is not set: {help_text} (or AUTHSERVER_ENV=development)")
            settings[name] = _development_secret(instance_path, name)
    if not development and len(settings["AUTHSERVER_SECRET_KEY"]) < MIN_SECRET_KEY_LENGTH:
        raise ConfigError(
            f"AUTHSERVER_SECRET_KEY is shorter than {MIN_SECRET_KEY_LENGTH} characters: "
            f"{SECRET_HELP}"
        )
    settings["AUTHSERVER_KEY_ENCRYPTION_KEYS"] = parse_keks(
        settings["AUTHSERVER_KEY_ENCRYPTION_KEY"]
    )
    if not settings["AUTHSERVER_TEMPLATE_DIR"]:
        settings["AUTHSERVER_TEMPLATE_DIR"] = str(instance_path / "templates")
    # Flask's own name for it, given to create_app(...), still wins.
    settings["SESSION_COOKIE_NAME"] = session_cookie_name(
        settings.get("SESSION_COOKIE_NAME") or settings["AUTHSERVER_SESSION_COOKIE_NAME"],
        secure=settings["AUTHSERVER_PUBLIC_URL"].startswith("https://"),
    )
    return settings


def session_cookie_name(name: str, *, secure: bool) -> str:
    """Check the session cookie's name: one a browser stores, and sends back on every page of a
    tenant beside the login cookie.

    :param secure: whether the cookie is sent with ``Secure`` (an https public URL).
    :raises ConfigError: for a name that is not an RFC 6265 token, the login cookie's name, or
        one with a prefix browsers refuse on this cookie.
    """
    problem = _cookie_name_problem(name, secure)
    if problem:
        raise ConfigError(
            f"AUTHSERVER_SESSION_COOKIE_NAME {name!r} {problem}; the default is authserver_session"
        )
    return name


def _cookie_name_problem(name: str, secure: bool) -> str | None:
    from authserver.accounts.sessions import COOKIE_NAME as LOGIN_COOKIE_NAME

    if not COOKIE_NAME_TOKEN.fullmatch(name):
        return "is not a cookie name: use letters, digits and !#$%&'*+-.^_`|~ only"
    if name == LOGIN_COOKIE_NAME:
        return "is the login cookie's name: one would overwrite the other"
    if name.lower().startswith("__host-"):
        # RFC 6265bis §4.1.3.2: only with Path=/, and the cookie's path is the tenant's.
        return "starts with __Host-, which browsers refuse on a cookie of one tenant's path"
    if name.lower().startswith("__secure-") and not secure:
        # RFC 6265bis §4.1.3.1: only with Secure, set when AUTHSERVER_PUBLIC_URL is https.
        return "starts with __Secure-, which browsers refuse without https"
    return None


def public_url(value: str, *, production: bool) -> str:
    """Check the URL every issuer and discovery URL starts with; return it without a trailing /.

    :raises ConfigError: when it is not an absolute http(s) URL that a path can be appended to,
        when production would advertise plain http on a host other than loopback, or when it is
        too long for a tenant's issuer and default FHIR base URL to fit in an access token
        (:data:`MAX_PUBLIC_URL_LENGTH`).
    """
    problem = _public_url_problem(value, production)
    if problem:
        raise ConfigError(f"AUTHSERVER_PUBLIC_URL {value!r} {problem}: {PUBLIC_URL_HELP}")
    return value.rstrip("/")


def _public_url_problem(value: str, production: bool) -> str | None:
    try:
        parts = urlsplit(value)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        return "is not a valid URL"
    if parts.scheme not in ("https", "http") or not host:
        return "is not an absolute http(s) URL"
    if "?" in value or "#" in value:
        return "must not have a query or fragment"
    if production and parts.scheme == "http" and host not in LOOPBACK_HOSTS:
        # Tokens and passwords would cross the network in clear; loopback stays on the machine.
        return "uses plain http, which production allows only for localhost, 127.0.0.1 and ::1"
    length = token_length(value.rstrip("/"))
    if length > MAX_PUBLIC_URL_LENGTH:
        # Every token carries the issuer and the FHIR base URL (tokens/limits.py).
        return (
            f"takes {length} characters as a token writes it, more than {MAX_PUBLIC_URL_LENGTH}: "
            f"an access token has {ASSUMED_URL_LENGTH} for the issuer (this URL, {TENANT_PATH} "
            f"and a slug of up to {MAX_SLUG_LENGTH} characters) and as many for the default "
            f"FHIR base URL (the issuer and {DEFAULT_FHIR_PATH})"
        )
    return None


def parse_keks(value: str) -> list[bytes]:
    """Decode the comma-separated key-encryption keys.

    :raises ConfigError: when one is not 32 bytes of base64.
    """
    keys = []
    for part in value.split(","):
        part = part.strip()
        try:  # either base64 alphabet, padded or not; any other character is a mistake
            key = base64.b64decode(part + "=" * (-len(part) % 4), altchars=b"-_", validate=True)
        except (binascii.Error, ValueError):
            key = b""
        if len(key) != 32:
            raise ConfigError(f"AUTHSERVER_KEY_ENCRYPTION_KEY is malformed: {KEK_HELP}")
        keys.append(key)
    return keys


def _development_secret(instance_path: Path, name: str) -> str:
    """Make a secret once into the instance folder, so restarts keep the data readable."""
    path = instance_path / name.lower()
    if not path.exists():
        instance_path.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(base64.b64encode(secrets.token_bytes(32)).decode())
        log.warning(
            "development mode: generated %s into %s; never use this in production", name, path
        )
    return path.read_text().strip()


def sqlalchemy_url(url: str) -> str:
    """Map a plain ``postgresql://`` URL to the psycopg 3 driver we ship."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url
