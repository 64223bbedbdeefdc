"""The token endpoint's fast path: a Backend Services client_credentials request, lean.

A backend client asks for a token with a fresh ``private_key_jwt`` assertion, often many times
a second. For exactly that request (form body with ``grant_type=client_credentials``, the
assertion, maybe ``scope`` and ``client_id``, each once; no Authorization header) this module
answers without the ORM and Authlib's request machinery:

- what the request needs of its tenant, client and the tenant's active signing key is read once
  per process (:class:`Entry`), with the client's parsed public keys, the tenant's URLs and
  the decrypted signer (:class:`authserver.keys.service.Signer`, as the full path signs);
- the assertion is verified and its claims checked by the same code as the full path
  (:class:`authserver.clients.assertions.AssertionClaims`), the scope granted by
  :func:`authserver.smart.backend.backend_grant`;
- then ONE write records the assertion's ``jti`` and the issued token, and only if every value
  the request relied on is still what the database holds: the tenant and client active, their
  settings, the client's keys and the signing key unchanged, the client linked to no service
  account. On PostgreSQL the write checks that the three rows are still the versions read
  (their ``xmin``) and runs as a statement prepared through libpq
  (:meth:`authserver.rawdb.RawConnections.execute`); on SQLite it compares the values. A
  change made on any instance (client deleted, tenant suspended, key rotated, service account
  linked) takes effect at once, and a replayed ``jti`` is refused across instances by the same
  unique constraint as on the full path.

A client linked to a service account (whose role ceiling, status and audit trail the grant
must consult) is never served here: both statements require ``service_account_id IS NULL``, so
a link made on another instance sends the very next request to the full path.

Anything else, any refusal and any doubt returns ``None``, and the view answers through
Authlib, which handles every case and renders every error: the fast path only ever answers a
success. When the write finds the cache stale, the entry is dropped and the full path answers.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from dataclasses import dataclass
from dataclasses import field
from datetime import UTC
from datetime import datetime
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl

from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from flask import Flask
from flask import current_app
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import JWKRegistry
from joserfc.jwk import Key
from joserfc.jws import JWSRegistry
from sqlalchemy.engine import Engine

from authserver import upkeep
from authserver.clients.assertions import PRIVATE_KEY_JWT
from authserver.clients.assertions import SIGNING_ALGS
from authserver.clients.assertions import AssertionClaims
from authserver.clients.assertions import assertion_expiry
from authserver.clients.assertions import select_key
from authserver.clients.jwks_fetch import JWKSFetchError
from authserver.clients.jwks_fetch import jwks_cache
from authserver.clients.models import ACTIVE as CLIENT_ACTIVE
from authserver.inputs import MAX_JSON_DEPTH
from authserver.keys import service as keys
from authserver.keys.models import ACTIVE as KEY_ACTIVE
from authserver.models import UTCDateTime
from authserver.oauth.grants.client_credentials import MAX_TOKEN_LIFETIME
from authserver.rawdb import RawConnections
from authserver.smart.backend import backend_grant
from authserver.tenancy.models import ACTIVE as TENANT_ACTIVE
from authserver.tenancy.urls import TOKEN_PATH
from authserver.tenancy.urls import TenantURLs
from authserver.tokens.claims import AccessTokenSubject
from authserver.tokens.claims import access_token_claims
from authserver.tokens.limits import fits
from authserver.tokens.limits import scope_fits
from authserver.tokens.models import ACCESS
from authserver.tokens.service import ACCESS_TOKEN_TYPE
from authserver.tokens.service import new_grant_id
from authserver.validation import storable

log = logging.getLogger(__name__)

EXTENSION = "authserver.token_fastpath"
GRANT_TYPE = "client_credentials"
PARAMETERS = {"grant_type", "scope", "client_assertion_type", "client_assertion", "client_id"}
# Clients kept per process. Enough for the 10,000 clinics the platform is sized for, each with a
# backend client, and more: an entry takes up to about 20 KiB once it has verified and signed
# (its client's parsed key and its tenant's RSA signer, with what OpenSSL keeps for them), so at
# most about 320 MiB (benchmarks/many_tenants.py). Past that the entry kept longest makes room
# for the new one, so only the clients beyond the bound are read again, never all of them.
MAX_ENTRIES = 16_384
# The full path's allow-list (jwt.decode(..., algorithms=SIGNING_ALGS)), built once.
JWS = JWSRegistry(algorithms=list(SIGNING_ALGS))

# The tenant, the client and the tenant's active signer for access tokens, in one read. The
# JSON columns are read as text: SQLite's write below compares them as text, the same
# expression. On PostgreSQL the three rows' versions (xmin) come too: see STILL_CURRENT.
LOAD_QUERY = f"""
SELECT tn.id, tn.access_token_alg, tn.access_token_lifetime,
       COALESCE(tn.fhir_base_url_override, ''),
       c.id, c.allowed_scope, COALESCE(CAST(c.jwks AS TEXT), ''), COALESCE(c.jwks_uri, ''),
       CAST(c.grant_types AS TEXT), k.kid, k.private_key_ciphertext{{versions}}
FROM tenants tn
JOIN clients c ON c.tenant_id = tn.id AND c.client_id = :client_id
JOIN signing_keys k ON k.tenant_id = tn.id AND k.alg = tn.access_token_alg
WHERE tn.slug = :slug AND tn.status = '{TENANT_ACTIVE}' AND c.status = '{CLIENT_ACTIVE}'
  AND c.token_endpoint_auth_method = '{PRIVATE_KEY_JWT}' AND k.status = '{KEY_ACTIVE}'
  AND c.service_account_id IS NULL
"""  # noqa: S608 - built from constants, never from input
ROW_VERSIONS = ", CAST(tn.xmin AS TEXT), CAST(c.xmin AS TEXT), CAST(k.xmin AS TEXT)"
# SQLite: every value an issued token relied on, as the database holds it now: no row, no token.
STILL_VALID = f"""
SELECT tn.id FROM tenants tn
JOIN clients c ON c.tenant_id = tn.id
JOIN signing_keys k ON k.tenant_id = tn.id
WHERE tn.id = :tenant_id AND tn.status = '{TENANT_ACTIVE}' AND tn.access_token_alg = :alg
  AND tn.access_token_lifetime = :tenant_lifetime
  AND COALESCE(tn.fhir_base_url_override, '') = :fhir_override
  AND c.id = :client_pk AND c.client_id = :client_id AND c.status = '{CLIENT_ACTIVE}'
  AND c.token_endpoint_auth_method = '{PRIVATE_KEY_JWT}' AND c.allowed_scope = :allowed_scope
  AND COALESCE(CAST(c.jwks AS TEXT), '') = :jwks AND COALESCE(c.jwks_uri, '') = :jwks_uri
  AND CAST(c.grant_types AS TEXT) = :grant_types AND c.service_account_id IS NULL
  AND k.kid = :kid AND k.alg = tn.access_token_alg AND k.status = '{KEY_ACTIVE}'
"""  # noqa: S608 - built from constants, never from input
# PostgreSQL: the same, cheaper: the three rows the entry was read from are the very versions
# read (any UPDATE writes a new row version with a new xmin; a DELETE leaves no row; freezing
# keeps the xmin PostgreSQL reports). An UPDATE that writes the same values makes a new version
# too: the write finds nothing, the full path answers and the entry is read again.
STILL_CURRENT = """
SELECT tn.id FROM tenants tn
JOIN clients c ON c.tenant_id = tn.id
JOIN signing_keys k ON k.tenant_id = tn.id
WHERE tn.id = :tenant_id AND tn.xmin = CAST(:tenant_version AS xid)
  AND c.id = :client_pk AND c.xmin = CAST(:client_version AS xid)
  AND k.kid = :kid AND k.xmin = CAST(:key_version AS xid)
"""
# The jti record of clients.service.use_assertion: a row comes back only when one was written.
USE_ASSERTION = """
INSERT INTO used_client_assertions (tenant_id, client_id, jti, expires_at)
SELECT id, :client_id, :assertion_jti, :assertion_expires_at FROM ({guard}) AS ok WHERE 1 = 1
ON CONFLICT (tenant_id, client_id, jti) DO UPDATE SET expires_at = excluded.expires_at
WHERE used_client_assertions.expires_at <= :now
RETURNING tenant_id
"""
TIMESTAMPS = ("now", "expires_at", "assertion_expires_at")


def from_posix_seconds(statement: str) -> str:
    """PostgreSQL: ``statement`` with its times (:data:`TIMESTAMPS`) sent as POSIX seconds and
    made timestamps by the database, which costs less on both sides than text to parse."""
    return re.sub(rf"(?<!:):({'|'.join(TIMESTAMPS)})\b", r"to_timestamp(:\1)", statement)


TOKEN_COLUMNS = "tenant_id, jti, kind, grant_id, client_pk, client_id, scope, context"
TOKEN_COLUMNS += ", issued_at, expires_at"
# PostgreSQL: both inserts in one statement, one round trip, atomic in autocommit.
RECORD_POSTGRESQL = from_posix_seconds(f"""
WITH used AS ({USE_ASSERTION.format(guard=STILL_CURRENT)})
INSERT INTO issued_tokens ({TOKEN_COLUMNS})
SELECT tenant_id, :jti, '{ACCESS}', :grant_id, :client_pk, :client_id, :scope,
       CAST(:context AS JSON), :now, :expires_at
FROM used
RETURNING id
""")  # noqa: S608 - built from constants, never from input
# SQLite has no INSERT in WITH: the same two inserts in one transaction.
RECORD_TOKEN_SQLITE = f"""
INSERT INTO issued_tokens ({TOKEN_COLUMNS})
VALUES (:tenant_id, :jti, '{ACCESS}', :grant_id, :client_pk, :client_id, :scope, :context,
        :now, :expires_at)
"""  # noqa: S608 - built from constants, never from input
RECORD = "token_fastpath_record"  # RECORD_POSTGRESQL, prepared on the raw connections


@dataclass
class Entry:
    """One client of one tenant as the fast path needs it; read once per process."""

    tenant_id: int
    slug: str
    alg: str
    tenant_lifetime: int
    fhir_override: str
    client_pk: int
    client_id: str
    allowed_scope: str
    jwks_text: str
    jwks_uri: str
    grant_types_text: str
    kid: str
    urls: TenantURLs
    signer: keys.Signer
    claims: AssertionClaims  # the full path's claim checks, for this tenant's token URL
    versions: tuple[str, ...]  # PostgreSQL: the xmin of the tenant, client and key rows
    keys: dict[tuple[str, str], Key] = field(default_factory=dict)

    def record_values(
        self,
        *,
        assertion_jti: str,
        assertion_expires_at: float,
        now: int,
        jti: str,
        scope: str,
        expires_at: int,
    ) -> dict[str, Any]:
        """What :meth:`IssuanceStore.record` writes for one token: the assertion's jti, the
        token's record, and the :meth:`guard` parameters. Times are POSIX seconds."""
        values = self.guard()
        values.update(
            assertion_jti=assertion_jti,
            assertion_expires_at=assertion_expires_at,
            now=now,
            jti=jti,
            grant_id=new_grant_id(),
            scope=scope,
            context="{}",
            expires_at=expires_at,
        )
        return values

    def guard(self) -> dict[str, Any]:
        """The parameters of :data:`STILL_CURRENT` (PostgreSQL) or :data:`STILL_VALID`."""
        if self.versions:
            tenant, client, key = self.versions
            return {
                "tenant_id": self.tenant_id,
                "tenant_version": tenant,
                "client_pk": self.client_pk,
                "client_version": client,
                "kid": self.kid,
                "key_version": key,
                "client_id": self.client_id,
            }
        return {
            "tenant_id": self.tenant_id,
            "alg": self.alg,
            "tenant_lifetime": self.tenant_lifetime,
            "fhir_override": self.fhir_override,
            "client_pk": self.client_pk,
            "client_id": self.client_id,
            "allowed_scope": self.allowed_scope,
            "jwks": self.jwks_text,
            "jwks_uri": self.jwks_uri,
            "grant_types": self.grant_types_text,
            "kid": self.kid,
        }


class IssuanceStore:
    """The per-process entries, and the statements run on the app's raw connections."""

    def __init__(self, app: Flask, connections: RawConnections, engine: Engine) -> None:
        self.connections = connections
        self.public_url = app.config["AUTHSERVER_PUBLIC_URL"].rstrip("/")  # as TenantURLs.of
        self.entries: dict[tuple[str, str], Entry] = {}
        self.sqlite = connections.sqlite
        self.timestamp = UTCDateTime().bind_processor(engine.dialect)
        self.sql = {
            name: connections.sql(sql)
            for name, sql in {
                "load": LOAD_QUERY.format(versions="" if self.sqlite else ROW_VERSIONS),
                "use_assertion": USE_ASSERTION.format(guard=STILL_VALID),
                "record_token": RECORD_TOKEN_SQLITE,
            }.items()
        }
        if not self.sqlite:
            connections.prepare(RECORD, RECORD_POSTGRESQL)

    def load(self, slug: str, client_id: str) -> Entry | None:
        rows = self._run(lambda cursor: self._fetch(cursor, "load", slug=slug, client_id=client_id))
        if len(rows) != 1:  # none, or (never expected) two active signers: the full path decides
            return None
        row = rows[0]
        if GRANT_TYPE not in json.loads(row[8] or "[]"):
            return None
        urls = TenantURLs(self.public_url, slug, row[3] or None)
        entry = Entry(
            tenant_id=row[0],
            slug=slug,
            alg=row[1],
            tenant_lifetime=row[2],
            fhir_override=row[3],
            client_pk=row[4],
            client_id=client_id,
            allowed_scope=row[5],
            jwks_text=row[6],
            jwks_uri=row[7],
            grant_types_text=row[8],
            kid=row[9],
            urls=urls,
            signer=keys.signer(row[0], row[9], bytes(row[10]), alg=row[1], typ=ACCESS_TOKEN_TYPE),
            claims=AssertionClaims([urls.url(TOKEN_PATH)]),
            versions=tuple(row[11:]),
        )
        if len(self.entries) >= MAX_ENTRIES:
            del self.entries[next(iter(self.entries))]  # dicts keep insertion order
        self.entries[(slug, client_id)] = entry
        return entry

    def record(self, values: dict[str, Any]) -> bool:
        """Record the assertion's jti and the token if the entry still holds; False otherwise.

        ``now``, ``expires_at`` and ``assertion_expires_at`` are POSIX seconds.
        """
        if self.sqlite:
            for name in TIMESTAMPS:
                values[name] = self.timestamp(datetime.fromtimestamp(values[name], UTC))
            recorded = self._run(lambda cursor: self._record_sqlite(cursor, values))
        else:
            recorded = bool(self.connections.execute(RECORD, values))
        if recorded:
            upkeep.now_and_then()  # forgets expired rows (authserver/upkeep.py)
        return recorded

    def _record_sqlite(self, cursor: Any, values: dict[str, Any]) -> bool:
        cursor.execute("BEGIN IMMEDIATE")
        try:
            cursor.execute(self.sql["use_assertion"], values)
            row = cursor.fetchone()
            if row is not None:
                cursor.execute(self.sql["record_token"], {**values, "tenant_id": row[0]})
        except BaseException:
            cursor.execute("ROLLBACK")
            raise
        cursor.execute("COMMIT" if row is not None else "ROLLBACK")
        return row is not None

    def _fetch(self, cursor: Any, name: str, **params: Any) -> list[Any]:
        cursor.execute(self.sql[name], params)
        return list(cursor.fetchall())

    def _run(self, work: Any) -> Any:
        return self.connections.run(work)


def init_app(app: Flask, connections: RawConnections, engine: Engine) -> None:
    app.extensions[EXTENSION] = IssuanceStore(app, connections, engine)


def form(environ: dict[str, Any], body: bytes) -> dict[str, str] | None:
    """The body's parameters when the request is the fast path's kind, else ``None``."""
    if "HTTP_AUTHORIZATION" in environ or not body.isascii():
        return None  # a form of this kind is ASCII: anything else is the full path's to judge
    pairs = parse_qsl(body.decode("ascii"), keep_blank_values=True)
    params = dict(pairs)
    if len(params) != len(pairs) or not params.keys() <= PARAMETERS:
        return None  # a repeated or unexpected parameter: the full path says what is wrong
    if params.get("grant_type") != GRANT_TYPE:
        return None
    if params.get("client_assertion_type") != JWTBearerClientAssertion.CLIENT_ASSERTION_TYPE:
        return None
    return params if params.get("client_assertion") else None


def answer(slug: str, environ: dict[str, Any], body: bytes) -> bytes | None:
    """The JSON body for ``POST /t/{slug}/token``, or ``None`` to take the full path.

    Called by :class:`authserver.hotpaths.HotPaths` in front of Flask, in an app context.
    """
    params = form(environ, body)
    response = issue(slug, params) if params else None
    return None if response is None else json.dumps(response).encode()


def issue(slug: str, params: dict[str, str]) -> dict[str, Any] | None:
    """The token response for a good request, or ``None`` to take the full path."""
    store: IssuanceStore = current_app.extensions[EXTENSION]
    assertion = params["client_assertion"]
    try:
        compact = jws.extract_compact(assertion.encode())
        if compact.payload.count(b"[") + compact.payload.count(b"{") > MAX_JSON_DEPTH:
            return None  # may nest deeper than the full path reads: it says so
        header, unverified = compact.headers(), json.loads(compact.payload)
    except (JoseError, ValueError):
        return None
    client_id = unverified.get("sub") if isinstance(unverified, dict) else None
    kid, alg = header.get("kid"), header.get("alg")
    if not isinstance(client_id, str) or not isinstance(kid, str) or not kid or "jku" in header:
        return None
    if alg not in SIGNING_ALGS or params.get("client_id", client_id) != client_id:
        return None
    if not storable(client_id):
        return None  # names no client: never sent to the database (the full path says so)
    try:
        entry = store.entries.get((slug, client_id)) or store.load(slug, client_id)
        if entry is None:
            return None
        key = _public_key(entry, kid, alg)
        if key is None:
            return None
        if not jws.validate_compact(compact, key, registry=JWS):
            return None
        claims = unverified  # the payload whose signature was just checked
        entry.claims.verify_claims(claims)
        granted = _granted(params.get("scope", ""), entry.allowed_scope)
        if not granted:
            return None
        lifetime = min(entry.tenant_lifetime, MAX_TOKEN_LIFETIME)
        now = int(time.time())
        subject = AccessTokenSubject(
            issuer=entry.urls.issuer,
            audience=entry.urls.fhir_base_url,
            tenant=slug,
            client_id=client_id,
            scope=granted,
            jti=secrets.token_urlsafe(16),
            issued_at=now,
            expires_in=lifetime,
            subject=client_id,
        )
        token_claims = access_token_claims(subject)
        token = entry.signer.sign(token_claims)
        if not fits(token):
            return None  # the full path refuses it, and says why (tokens/limits.py)
        values = entry.record_values(
            assertion_jti=claims["jti"],
            assertion_expires_at=assertion_expiry(claims).timestamp(),
            now=now,
            jti=subject.jti,
            scope=granted,
            expires_at=token_claims["exp"],
        )
        if not store.record(values):
            # Stale entry or a replayed jti: forget the entry; the full path decides and says why.
            store.entries.pop((slug, client_id), None)
            return None
    except Exception:  # noqa: BLE001 - a refusal or database trouble: the full path answers
        log.debug("token fast path declined", exc_info=True)
        return None
    return {"access_token": token, "token_type": "Bearer", "expires_in": lifetime, "scope": granted}


@lru_cache(maxsize=4096)
def _granted(requested: str, allowed: str) -> str:
    """The scope to grant: :func:`backend_grant`, pure, so kept per process; none for no
    request (the full path says that ``scope`` is required), nor for a request or a grant
    longer than a token can carry (the full path says that it is too long)."""
    if not requested.strip() or not scope_fits(requested):
        return ""
    granted = str(backend_grant(requested, allowed))
    return granted if scope_fits(granted) else ""


def _public_key(entry: Entry, kid: str, alg: str) -> Key | None:
    """The client's key named ``kid`` for ``alg``, parsed once per entry (inline ``jwks``) or
    taken from the jwks_uri cache (whose refresh on an unknown kid is the full path's)."""
    if entry.jwks_uri:
        try:
            keys_ = jwks_cache().get(entry.jwks_uri)["keys"]
        except JWKSFetchError:
            return None
        jwk = select_key(keys_, kid, alg)
        return JWKRegistry.import_key(jwk) if jwk is not None else None
    key = entry.keys.get((kid, alg))
    if key is None:
        jwk = select_key(json.loads(entry.jwks_text or "{}").get("keys", []), kid, alg)
        if jwk is None:
            return None
        key = entry.keys[(kid, alg)] = JWKRegistry.import_key(jwk)
    return key
