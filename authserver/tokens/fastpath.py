"""Introspection's fast path: the FHIR gateway's everyday request in one query, without the ORM.

The gateway introspects on every FHIR call, with its ``client_secret_basic`` credential or the
``introspect`` token it got for itself (``Authorization: Bearer``), and an access token it has
usually shown before. For exactly that request this module reads the tenant, the caller (its
credential, or its token's state and resource server) and the token's state (its revocation,
client, user and signing key) in one prepared query on a raw connection of its own, with
signatures verified once per app (:func:`authserver.tokens.introspection.signed_claims`). On
SQLite every state that can end a token is read on each request; on PostgreSQL the row of a
live token is kept until a trigger's NOTIFY says one of its rows changed
(:mod:`authserver.tokens.statecache`), so a change on any instance counts on the next request
everywhere.

It runs in front of Flask (:mod:`authserver.hotpaths`). Anything else is passed on to Flask,
whose view answers through the Authlib endpoint, which handles every case and renders every
error: a first request for a tenant, another caller authentication, a caller that does not
check out (its 401 comes from there), a refresh token, or a database error.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from authlib.oauth2.rfc6749.util import extract_basic_authorization
from flask import Flask
from flask import current_app

from authserver import inputs
from authserver import security
from authserver.accounts.models import ACTIVE as USER_ACTIVE
from authserver.clients.models import ACTIVE as CLIENT_ACTIVE
from authserver.clients.models import RESOURCE_SERVER
from authserver.keys.models import IN_JWKS
from authserver.rawdb import RawConnections
from authserver.tenancy.models import ACTIVE as TENANT_ACTIVE
from authserver.tenancy.models import Tenant
from authserver.tenancy.urls import TenantURLs
from authserver.tokens import localchanges
from authserver.tokens.claims import minted_by_server
from authserver.tokens.introspection import SECOND_CREDENTIALS
from authserver.tokens.introspection import access_answer
from authserver.tokens.introspection import bearer_credential
from authserver.tokens.introspection import claims_fit
from authserver.tokens.introspection import introspect_token
from authserver.tokens.introspection import remembered_claims
from authserver.tokens.introspection import signed_claims
from authserver.tokens.limits import MAX_TOKEN_LENGTH
from authserver.tokens.service import REFRESH_TOKEN_PREFIX
from authserver.tokens.statecache import Row
from authserver.tokens.statecache import TokenStateCache

INACTIVE: dict[str, Any] = {"active": False}
Keeper = Callable[[], None]
# LEFT JOINs: the row exists whenever the tenant does, whatever else is missing. Columns 0-2
# are the tenant's, the last six the presented token's (TOKEN_COLUMNS), those between the
# caller's (its credential, or its own token's state).
TOKEN_JOINS = """
LEFT JOIN issued_tokens t ON t.tenant_id = tn.id AND t.jti = :jti AND t.kind = 'access'
LEFT JOIN clients c ON c.id = t.client_pk
LEFT JOIN users u ON u.id = t.user_id
LEFT JOIN signing_keys k ON k.tenant_id = tn.id AND k.kid = :kid
"""
TOKEN_COLUMNS = 6
STATE_QUERY = f"""
SELECT tn.id, tn.status, tn.fhir_base_url_override,
       rs.client_secret_digest, rs.kind, rs.status, rs.token_endpoint_auth_method,
       t.client_id, t.revoked_at, c.status, u.status, u.username, k.status
FROM tenants tn
LEFT JOIN clients rs ON rs.tenant_id = tn.id AND rs.client_id = :caller
{TOKEN_JOINS}
WHERE tn.slug = :slug
"""  # noqa: S608 - built from constants, never from input
# The caller's own token (never a user's: a resource server's) in place of its credential.
BEARER_STATE_QUERY = f"""
SELECT tn.id, tn.status, tn.fhir_base_url_override,
       ct.client_id, ct.revoked_at, rs.kind, rs.status, ck.status,
       t.client_id, t.revoked_at, c.status, u.status, u.username, k.status
FROM tenants tn
LEFT JOIN issued_tokens ct ON ct.tenant_id = tn.id AND ct.jti = :caller_jti
  AND ct.kind = 'access' AND ct.user_id IS NULL
LEFT JOIN clients rs ON rs.tenant_id = tn.id AND rs.id = ct.client_pk
LEFT JOIN signing_keys ck ON ck.tenant_id = tn.id AND ck.kid = :caller_kid
{TOKEN_JOINS}
WHERE tn.slug = :slug
"""  # noqa: S608 - built from constants, never from input


@dataclass(frozen=True)
class BasicCaller:
    """A resource server sending its ``client_secret_basic`` credential."""

    client_id: str
    secret: str
    query = "basic"

    def params(self) -> dict[str, str]:
        return {"caller": self.client_id}

    def checks_out(self, row: Row, urls: TenantURLs) -> bool:
        digest, kind, status, method = row[3:7]
        return (
            kind == RESOURCE_SERVER
            and status == CLIENT_ACTIVE
            and method == "client_secret_basic"
            and security.matches(self.secret, digest)
        )


@dataclass(frozen=True)
class BearerCaller:
    """A resource server presenting its ``introspect`` token, verified: its claims and kid."""

    claims: dict[str, Any]
    kid: str
    query = "bearer"

    def params(self) -> dict[str, str]:
        return {"caller_jti": self.claims["jti"], "caller_kid": self.kid}

    def checks_out(self, row: Row, urls: TenantURLs) -> bool:
        """What the full path's bearer check accepts: an active access token of this tenant,
        of an active resource server, granted ``introspect`` for the introspection endpoint
        (its ``aud``), checked on every request, a kept row or not."""
        token_client, revoked_at, kind, status, key_status = row[3:8]
        return (
            row[1] == TENANT_ACTIVE
            and token_client == self.claims["client_id"]
            and revoked_at is None
            and kind == RESOURCE_SERVER
            and status == CLIENT_ACTIVE
            and key_status in IN_JWKS
            and claims_fit(self.claims, urls)
            and introspect_token(self.claims, urls)
        )


Caller = BasicCaller | BearerCaller


class StateReader:
    """Runs :data:`STATE_QUERY` or :data:`BEARER_STATE_QUERY` on the app's raw connections
    (:mod:`authserver.rawdb`), through a :class:`~authserver.tokens.statecache.TokenStateCache`
    when there is one (PostgreSQL)."""

    def __init__(self, connections: RawConnections, cache: TokenStateCache | None) -> None:
        self.connections = connections
        self.cache = cache
        self.sql = {
            BasicCaller.query: connections.sql(STATE_QUERY),
            BearerCaller.query: connections.sql(BEARER_STATE_QUERY),
        }

    def read(self, tenant_id: int, query: str, params: dict[str, str]) -> tuple[Row | None, Keeper]:
        """The row for ``params``, and a function to call if it may be kept for next time."""
        sql = self.sql[query]

        def fetch(cursor: Any) -> Row | None:
            cursor.execute(sql, params)
            return cursor.fetchone()

        cache = self.cache
        if cache is None:
            return self.connections.run(fetch), _keep_nothing
        key = (query, *params.values())
        cached, generation = cache.lookup(tenant_id, key)
        if cached is not None:
            return cached, _keep_nothing
        row = self.connections.run(fetch)

        def keep() -> None:
            if row is not None:
                cache.store(tenant_id, key, row, generation)

        return row, keep


def _keep_nothing() -> None:
    return None


def init_app(app: Flask, connections: RawConnections) -> None:
    cache = None
    max_age = app.config["AUTHSERVER_INTROSPECTION_CACHE_SECONDS"]
    if not connections.sqlite and max_age > 0:
        cache = TokenStateCache(connections.connect, max_age)
        connections.closers.append(cache.close)
        localchanges.init_app(app)
    app.extensions["authserver.fastpath"] = {
        "reader": StateReader(connections, cache),
        "tenant_ids": {},
    }


def remember_tenant(tenant: Tenant) -> None:
    """Note ``tenant``'s id once a full request has resolved it; slugs never change hands."""
    current_app.extensions["authserver.fastpath"]["tenant_ids"][tenant.slug] = tenant.id


def introspect(slug: str, authorization: str | None, token: str | None) -> dict[str, Any] | None:
    """The answer for the gateway's everyday request, or ``None`` to take the full path.

    The caller is authenticated before the token is verified, as on the full path: a key is
    looked up and a signature checked only for a resource server whose credential checks out.
    Runs in an app context (for the verified-signature and public-key caches).
    """
    state = current_app.extensions["authserver.fastpath"]
    tenant_id = state["tenant_ids"].get(slug)
    if tenant_id is None or not token or authorization is None:
        return None
    if len(token) > MAX_TOKEN_LENGTH or token.startswith(REFRESH_TOKEN_PREFIX + "_"):
        return None
    try:
        caller = _caller(tenant_id, authorization)
        if caller is None:
            return None
        # A token verified before is read with the caller, in one query; one not seen yet is
        # verified once the caller checks out, and read then.
        signed = remembered_claims(tenant_id, token)
        read = _caller_read(state["reader"], tenant_id, slug, caller, signed)
        if read is not None and signed is None:
            signed = signed_claims(tenant_id, token)
            if signed is None:
                return INACTIVE
            read = _caller_read(state["reader"], tenant_id, slug, caller, signed)
    # Unreadable credentials or database trouble: the full path answers them properly.
    except Exception:  # noqa: BLE001
        return None
    if read is None:
        return None  # a caller that does not check out: the full path's 401
    row, keep, urls = read
    token_state = row[-TOKEN_COLUMNS:]
    if not _live(row[1], token_state, signed[0], urls.issuer) or not claims_fit(signed[0], urls):
        return INACTIVE
    keep()  # a live token's state, until a change to one of its rows is notified
    return {"active": True, **access_answer(signed[0], token_state[4])}


def _caller(tenant_id: int, authorization: str) -> Caller | None:
    """Who the ``Authorization`` header says is calling, or ``None`` for the full path: not
    Basic or Bearer, unreadable, or a bearer token whose signature does not verify here."""
    bearer = bearer_credential(authorization)
    if bearer is None:
        credential = extract_basic_authorization({"Authorization": authorization})
        return BasicCaller(*credential) if all(credential) else None
    if not bearer or len(bearer) > MAX_TOKEN_LENGTH or bearer.startswith(REFRESH_TOKEN_PREFIX):
        return None
    signed = signed_claims(tenant_id, bearer)
    return BearerCaller(*signed) if signed is not None else None


def _caller_read(
    reader: StateReader,
    tenant_id: int,
    slug: str,
    caller: Caller,
    signed: tuple[dict[str, Any], str] | None,
) -> tuple[Row, Keeper, TenantURLs] | None:
    """The state row of the verified token ``signed`` (none yet: of no token), its keeper and
    the tenant's URLs, or ``None`` when the caller does not check out."""
    jti, kid = (signed[0]["jti"], signed[1]) if signed else ("", "")
    params = {"slug": slug, **caller.params(), "jti": jti, "kid": kid}
    row, keep = reader.read(tenant_id, caller.query, params)
    if row is None or row[0] != tenant_id:
        return None
    urls = TenantURLs(current_app.config["AUTHSERVER_PUBLIC_URL"], slug, row[2])
    return (row, keep, urls) if caller.checks_out(row, urls) else None


def _live(
    tenant_status: str, token_state: tuple[Any, ...], claims: dict[str, Any], issuer: str
) -> bool:
    token_client, revoked_at, client_status, user_status, _, key_status = token_state
    if token_client is None:  # no record: live only if the server minted it for itself
        return (
            minted_by_server(claims, issuer)
            and tenant_status == TENANT_ACTIVE
            and key_status in IN_JWKS
        )
    return (
        tenant_status == TENANT_ACTIVE
        and token_client == claims["client_id"]
        and revoked_at is None
        and client_status == CLIENT_ACTIVE
        and user_status in (None, USER_ACTIVE)
        and key_status in IN_JWKS
    )


def answer(slug: str, environ: dict[str, Any], body: bytes) -> bytes | None:
    """The JSON body for ``POST /t/{slug}/introspect``, or ``None`` to take the full path.

    Called by :class:`authserver.hotpaths.HotPaths` in front of Flask, in an app context.
    """
    authorization = environ.get("HTTP_AUTHORIZATION")
    if authorization is None or not inputs.basic_credentials_readable(authorization):
        return None  # the full path's 401 (a Bearer header is judged by introspect)
    # Blank values count, as the full path reads the form: "token=&token=X" names no token.
    pairs = parse_qsl(body.decode("latin-1"), keep_blank_values=True)
    tokens = [value for name, value in pairs if name == "token"]
    if len(tokens) != 1 or inputs.holds_nul(pairs):
        return None  # the full path's invalid_request, or its reading of the form
    if bearer_credential(authorization) is not None and any(
        name in SECOND_CREDENTIALS for name, _ in pairs
    ):
        return None  # a bearer token and a credential: the full path's invalid_request
    result = introspect(slug, authorization, tokens[0])
    return None if result is None else json.dumps(result).encode()
