"""The least a server can do for one client_credentials token, as a bare WSGI app: the floor
``token_issuance.py`` measures beside authserver and oidc-provider, in the same run.

Per request it does only what Backend Services makes every server do: read the form, verify the
RS384 client assertion's signature with the client's public key (held in memory), sign an ES256
access token, and record the assertion's ``jti`` and the token in PostgreSQL with one prepared
statement through libpq; a replayed ``jti`` is refused. Nothing else: no claim checks, no tenant,
no scope rules, no framework, no error format. It is a measuring stick, never a server.

``FLOOR_WRITE`` picks the write:

- ``minimal``: two narrow tables of its own (:data:`MINIMAL_TABLES`), one text key each;
- ``authserver``: authserver's own write, the token fast path's statement on authserver's
  schema (:meth:`authserver.oauth.fastpath.IssuanceStore.record`).

So ``minimal`` to ``authserver`` is what authserver's schema costs per token, and ``authserver``
to authserver itself is what its request handling costs. Settings, from the environment:
``AUTHSERVER_DATABASE_URL`` (PostgreSQL), ``FLOOR_CLIENT_JWK`` (the client's public JWK), and for
``authserver`` the other ``AUTHSERVER_*`` settings, ``FLOOR_TENANT`` and ``FLOOR_CLIENT_ID``.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import threading
import time
from typing import Any
from urllib.parse import parse_qsl

from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm
from jwt.algorithms import RSAAlgorithm

LIFETIME = 300
MINIMAL_TABLES = (
    "CREATE TABLE floor_used_assertions (jti text PRIMARY KEY, expires_at timestamptz NOT NULL)",
    "CREATE TABLE floor_tokens (jti text PRIMARY KEY, scope text NOT NULL,"
    " expires_at timestamptz NOT NULL)",
)
MINIMAL_RECORD = b"""
WITH used AS (
    INSERT INTO floor_used_assertions (jti, expires_at) VALUES ($1, to_timestamp($2))
    ON CONFLICT DO NOTHING RETURNING 1)
INSERT INTO floor_tokens (jti, scope, expires_at) SELECT $3, $4, to_timestamp($5) FROM used
RETURNING 1
"""
REFUSED = b'{"error": "invalid_client"}'


def libpq_dsn(database_url: str) -> str:
    """The libpq form of a SQLAlchemy PostgreSQL URL."""
    from sqlalchemy.engine import make_url

    return make_url(database_url).set(drivername="postgresql").render_as_string(False)


def create_minimal_tables(database_url: str) -> None:
    import psycopg

    with psycopg.connect(libpq_dsn(database_url), autocommit=True) as connection:
        for statement in MINIMAL_TABLES:
            connection.execute(statement)


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class MinimalWrite:
    """One libpq connection per thread, the statement prepared on it once."""

    def __init__(self, database_url: str) -> None:
        self.dsn = libpq_dsn(database_url)
        self.local = threading.local()

    def __call__(self, assertion_jti: str, token_jti: str, scope: str, now: int) -> bool:
        pgconn = getattr(self.local, "pgconn", None)
        if pgconn is None:
            import psycopg

            self.local.connection = psycopg.connect(self.dsn, autocommit=True)
            pgconn = self.local.pgconn = self.local.connection.pgconn
            pgconn.prepare(b"record", MINIMAL_RECORD)
        expires = str(now + LIFETIME).encode()
        values = [assertion_jti.encode(), expires, token_jti.encode(), scope.encode(), expires]
        result = pgconn.exec_prepared(b"record", values)
        if result.error_message:
            raise RuntimeError(result.error_message.decode())
        return result.ntuples == 1


class AuthserverWrite:
    """authserver's token fast-path write, for one tenant and client read at start."""

    def __init__(self) -> None:
        from authserver import create_app
        from authserver.oauth import fastpath

        app = create_app()
        app.app_context().push()  # this process serves nothing else
        self.store = app.extensions[fastpath.EXTENSION]
        entry = self.store.load(os.environ["FLOOR_TENANT"], os.environ["FLOOR_CLIENT_ID"])
        if entry is None:
            raise RuntimeError("the floor's client is not a private_key_jwt backend client")
        self.entry = entry

    def __call__(self, assertion_jti: str, token_jti: str, scope: str, now: int) -> bool:
        values = self.entry.record_values(
            assertion_jti=assertion_jti,
            assertion_expires_at=now + LIFETIME,
            now=now,
            jti=token_jti,
            scope=scope,
            expires_at=now + LIFETIME,
        )
        return self.store.record(values)


class Floor:
    def __init__(self) -> None:
        self.client_key = RSAAlgorithm.from_jwk(os.environ["FLOOR_CLIENT_JWK"])
        self.verifier = RSAAlgorithm(RSAAlgorithm.SHA384)
        self.signer = ECAlgorithm(ECAlgorithm.SHA256)
        self.signing_key = ec.generate_private_key(ec.SECP256R1())
        self.header = _b64(b'{"alg":"ES256","kid":"floor","typ":"at+jwt"}')
        database_url = os.environ["AUTHSERVER_DATABASE_URL"]
        write = os.environ.get("FLOOR_WRITE", "minimal")
        self.write = MinimalWrite(database_url) if write == "minimal" else AuthserverWrite()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        if environ["REQUEST_METHOD"] != "POST":
            start_response("404 Not Found", [("Content-Length", "0")])
            return []
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        form = dict(parse_qsl(body.decode()))
        header, payload, signature = form["client_assertion"].split(".")
        signed = f"{header}.{payload}".encode()
        if not self.verifier.verify(signed, self.client_key, _b64decode(signature)):
            return self._refuse(start_response)
        assertion = json.loads(_b64decode(payload))
        now = int(time.time())
        token_jti = secrets.token_urlsafe(16)
        scope = form.get("scope", "")
        claims = {"sub": assertion["sub"], "scope": scope, "jti": token_jti, "iat": now}
        claims["exp"] = now + LIFETIME
        signing_input = self.header + b"." + _b64(json.dumps(claims).encode())
        token = signing_input + b"." + _b64(self.signer.sign(signing_input, self.signing_key))
        if not self.write(assertion["jti"], token_jti, scope, now):
            return self._refuse(start_response)
        answer = {"access_token": token.decode(), "token_type": "Bearer", "expires_in": LIFETIME}
        content = json.dumps({**answer, "scope": scope}).encode()
        start_response(
            "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(content)))]
        )
        return [content]

    @staticmethod
    def _refuse(start_response: Any) -> list[bytes]:
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(REFUSED)))]
        start_response("400 Bad Request", headers)
        return [REFUSED]


def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """The WSGI entry point; the floor is made on the first request of each worker."""
    global _floor  # noqa: PLW0603 - one per worker process, made once
    if _floor is None:
        _floor = Floor()
    return _floor(environ, start_response)


_floor: Floor | None = None
