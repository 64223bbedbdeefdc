"""Every change to registered apps and resource servers."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam
from sqlalchemy import select
from sqlalchemy import text
from sqlalchemy import update

from authserver import security
from authserver import upkeep
from authserver import validation
from authserver.accounts import service as accounts
from authserver.accounts.models import User
from authserver.audit import service as audit
from authserver.audit.events import AuditEvent
from authserver.clients import jwks_fetch
from authserver.clients import metadata
from authserver.clients.models import ACTIVE
from authserver.clients.models import APP
from authserver.clients.models import DELETED
from authserver.clients.models import INTROSPECTION_SCOPE
from authserver.clients.models import RESOURCE_SERVER
from authserver.clients.models import Client
from authserver.errors import NotFound
from authserver.errors import ValidationError
from authserver.extensions import db
from authserver.launch.models import Launch
from authserver.models import UTCDateTime
from authserver.models import utcnow
from authserver.outcomes import Outcome
from authserver.tenancy.models import Tenant
from authserver.tokens import revocation

# Built once: client authentication runs it on every token and introspection request.
_ACTIVE_CLIENT = select(Client).where(
    Client.tenant_id == bindparam("tenant_id"),
    Client.client_id == bindparam("client_id"),
    Client.status == ACTIVE,
)

log = logging.getLogger(__name__)

CLIENT_ID_PREFIX = {APP: "app", RESOURCE_SERVER: "rs"}
SECRET_PREFIX = "ascs"
RESOURCE_SERVER_SCOPES = (
    "a resource server has no scopes: it introspects tokens, it is never issued one"
)
APP_LAUNCHES = "only a resource server (an EHR) starts launches, never an app"
# Plain SQL, the same on PostgreSQL and SQLite (3.35+), built once: this runs on every token
# request. The WHERE lets a record whose assertion has expired be taken over by a new one.
_USE_ASSERTION = text(
    "INSERT INTO used_client_assertions (tenant_id, client_id, jti, expires_at)"
    " VALUES (:tenant_id, :client_id, :jti, :expires_at)"
    " ON CONFLICT (tenant_id, client_id, jti) DO UPDATE SET expires_at = excluded.expires_at"
    " WHERE used_client_assertions.expires_at <= :now"
    " RETURNING id"
).bindparams(bindparam("expires_at", type_=UTCDateTime()), bindparam("now", type_=UTCDateTime()))


@dataclass(frozen=True)
class Registration:
    """A new client and, when one was made, its secret: shown this once, never stored."""

    client: Client
    client_secret: str | None


def register(
    tenant: Tenant,
    *,
    name: str,
    auth_method: str,
    kind: str = APP,
    redirect_uris: list[str] | None = None,
    scopes: list[str] | None = None,
    grant_types: list[str] | None = None,
    jwks: Any = None,
    jwks_uri: str | None = None,
    service_account: str | None = None,
    may_launch: bool = False,
    actor: str | None = None,
) -> Registration:
    """Register an app or a resource server at ``tenant``; everything is checked first.

    :param service_account: username of the tenant's user a backend client acts for
        (:func:`set_service_account`).
    :param may_launch: a resource server that may start EHR launches (:func:`set_launch`).
    :raises ValidationError: for any metadata that breaks the rules in :mod:`metadata`, a
        service account that :func:`set_service_account` would refuse, or an app that would
        start launches.
    """
    name = validation.text(name, "name", max_length=200)
    metadata.auth_method(auth_method)
    uris = metadata.redirect_uris(redirect_uris or [])
    keys = _key_source(auth_method, jwks, jwks_uri)
    if kind == RESOURCE_SERVER:
        grants = _resource_server_shape(auth_method, uris, grant_types, scopes)
    elif may_launch:
        raise ValidationError(APP_LAUNCHES)
    else:
        grants = metadata.grant_types(
            grant_types or metadata.default_grant_types(auth_method, bool(uris)),
            method=auth_method,
            has_redirect_uris=bool(uris),
        )
    account = None
    if service_account is not None:
        _check_backend(kind, auth_method, grants, "the new client")
        account = _service_account(tenant, service_account)
    secret = new_secret() if auth_method in metadata.SECRET_METHODS else None
    client = Client(
        tenant_id=tenant.id,
        client_id=f"{CLIENT_ID_PREFIX[kind]}_{secrets.token_urlsafe(18)}",
        kind=kind,
        name=name,
        token_endpoint_auth_method=auth_method,
        client_secret_digest=security.digest(secret) if secret else None,
        redirect_uris=uris,
        allowed_scope=metadata.scopes(scopes or [], grants=grants),
        grant_types=grants,
        service_account=account,
        may_launch=may_launch,
        **keys,
    )
    db.session.add(client)
    db.session.flush()
    audit.record(
        tenant,
        AuditEvent.CLIENT_CREATED,
        actor=actor,
        subject=client.client_id,
        kind=kind,
        may_launch=client.may_launch,
    )
    if account is not None:
        _audit_link(tenant, client, actor)
    return Registration(client, secret)


def new_secret() -> str:
    return security.new_token(SECRET_PREFIX)


def _key_source(auth_method: str, jwks: Any, jwks_uri: str | None) -> dict[str, Any]:
    if auth_method != "private_key_jwt":
        if jwks is not None or jwks_uri:
            raise ValidationError("jwks and jwks_uri are only for private_key_jwt clients")
        return {}
    if (jwks is None) == (not jwks_uri):
        raise ValidationError("a private_key_jwt client needs exactly one of jwks or jwks_uri")
    if jwks_uri:
        return {"jwks_uri": _jwks_uri(jwks_uri)}
    return {"jwks": metadata.assertion_jwks(jwks)}


def _jwks_uri(url: str) -> str:
    # Refused here when this server's fetcher would refuse it (credentials in it, plain http
    # or a loopback host in production, an address it does not fetch from): the client could
    # never authenticate. Never quoted in an error: its query may hold a token.
    url = validation.web_url(url, "jwks_uri", quote=False)
    problem = jwks_fetch.registration_problem(url, jwks_fetch.jwks_cache().policy)
    if problem:
        raise ValidationError(f"jwks_uri {problem}")
    return url


def _resource_server_shape(
    auth_method: str, uris: list[str], grants: list[str] | None, scopes: list[str] | None
) -> list[str]:
    # A resource server only calls introspection: it authenticates, it never gets user tokens.
    if auth_method == "none":
        raise ValidationError("a resource server needs credentials; it cannot be public")
    if uris or grants:
        raise ValidationError("a resource server has no redirect URIs or grant types")
    if scopes:
        # Stored, they would bound nothing: no token is ever issued to a resource server.
        raise ValidationError(RESOURCE_SERVER_SCOPES)
    return []


def find_client(tenant: Tenant, client_id: str) -> Client | None:
    """The active client ``client_id`` of ``tenant``; another tenant's client is none."""
    if not validation.storable(client_id):  # names none (an assertion's sub can hold anything)
        return None
    return db.session.scalar(_ACTIVE_CLIENT, {"tenant_id": tenant.id, "client_id": client_id})


def get_client(tenant: Tenant, client_id: str) -> Client:
    """:raises NotFound: when ``tenant`` has no active client ``client_id``."""
    client = find_client(tenant, client_id)
    if client is None:
        raise NotFound(f"no client {client_id!r} at tenant {tenant.slug!r}")
    return client


def list_clients(tenant: Tenant) -> list[Client]:
    return list(db.session.scalars(Client.for_tenant(tenant).order_by(Client.id)))


def delete(tenant: Tenant, client_id: str, *, actor: str | None = None) -> Client:
    """Mark the client deleted and revoke its tokens: it can no longer authenticate or be found.

    An EHR's (a resource server's) launches not yet used end with it: whoever stopped trusting
    the credential stops trusting what it started, not five minutes later. A deleted app's own
    launches need nothing: they are bound to it, and it can no longer authenticate.
    """
    client = get_client(tenant, client_id)
    client.status = DELETED
    revocation.revoke_for_client(tenant, client, actor=actor)
    launches = _end_launches_of(tenant, client) if client.kind == RESOURCE_SERVER else 0
    db.session.flush()
    audit.record(
        tenant, AuditEvent.CLIENT_DELETED, actor=actor, subject=client_id, launches_ended=launches
    )
    return client


def _end_launches_of(tenant: Tenant, ehr: Client) -> int:
    """End the live launches ``ehr`` created; returns how many. Like a revoked code, a launch
    ends by expiring (at its creation time, whatever this instance's clock says)."""
    statement = (
        update(Launch)
        .where(
            Launch.tenant_id == tenant.id,
            Launch.created_by == ehr.client_id,
            Launch.used_at.is_(None),
            Launch.expires_at > utcnow(),
        )
        .values(expires_at=Launch.created_at)
    )
    result = db.session.execute(statement, execution_options={"synchronize_session": False})
    return result.rowcount


def reset_secret(tenant: Tenant, client_id: str, *, actor: str | None = None) -> Registration:
    """Give a secret client a new secret; the old one stops working at once.

    A resource server's ``introspect`` tokens are revoked with it: whoever held the old secret
    could have got one, and the gateway gets a new one with its new secret. (An app's tokens
    stay: its users' sessions did not leak with its secret.)

    :raises ValidationError: for a client that does not authenticate with a secret.
    """
    client = get_client(tenant, client_id)
    if client.token_endpoint_auth_method not in metadata.SECRET_METHODS:
        raise ValidationError(f"client {client_id!r} does not use a client secret")
    secret = new_secret()
    client.client_secret_digest = security.digest(secret)
    if client.kind == RESOURCE_SERVER:
        revocation.revoke_for_client(tenant, client, actor=actor)
    db.session.flush()
    audit.record(tenant, AuditEvent.CLIENT_SECRET_RESET, actor=actor, subject=client_id)
    return Registration(client, secret)


def set_scopes(
    tenant: Tenant, client_id: str, scopes: list[str], *, actor: str | None = None
) -> Outcome[Client]:
    """Replace the scopes client ``client_id`` may be granted, checked as :func:`register` checks
    them (:func:`metadata.scopes`, against the client's grants).

    Access tokens already issued keep their scope until they expire; every token minted from
    now on, a refresh's included, gets no more than the new registration allows
    (``oauth/grants/refresh_token.py``). The same scopes in any order change nothing, and
    nothing is audited.

    :raises NotFound: for a client ``tenant`` does not have.
    :raises ValidationError: for a resource server, no scope at all (an app registered with
        none is bounded by its users' roles alone, and granted no extension scope), or a scope
        registration refuses.
    """
    client = get_client(tenant, client_id)
    if client.kind == RESOURCE_SERVER:
        raise ValidationError(RESOURCE_SERVER_SCOPES)
    if not scopes:
        raise ValidationError("give at least one --scope: the scopes the client may be granted")
    allowed = metadata.scopes(scopes, grants=client.grant_types)
    before = client.allowed_scope
    if set(allowed.split()) == set(before.split()):
        return Outcome(client, changed=False)
    client.allowed_scope = allowed
    db.session.flush()
    audit.record(
        tenant,
        AuditEvent.CLIENT_SCOPES_CHANGED,
        actor=actor,
        subject=client_id,
        before=before.split(),
        after=allowed.split(),
    )
    return Outcome(client, changed=True)


def describe(client: Client, secret: str | None = None) -> dict[str, Any]:
    """The client's registration as the CLI prints it; the secret only when just made.

    A resource server's registration holds no grant types or scopes, yet each may get its
    ``introspect`` token with the grants ``Client.check_grant_type`` lets it use
    (``client_credentials``): those are shown, as printing none would say it gets nothing.
    Whether it may start EHR launches (``may_launch``) is shown too; an app never may.
    """
    resource_server = client.kind == RESOURCE_SERVER
    shown: dict[str, Any] = {
        "client_id": client.client_id,
        "name": client.name,
        "kind": client.kind,
        "token_endpoint_auth_method": client.token_endpoint_auth_method,
        "redirect_uris": client.redirect_uris,
        "scope": INTROSPECTION_SCOPE if resource_server else client.allowed_scope,
        "grant_types": (
            [grant for grant in metadata.GRANT_TYPES if client.check_grant_type(grant)]
            if resource_server
            else client.grant_types
        ),
    }
    if resource_server:
        shown["may_launch"] = client.may_launch
    if client.jwks_uri:
        shown["jwks_uri"] = client.jwks_uri
    if client.service_account is not None:
        shown["service_account"] = client.service_account.username
    if secret:
        shown["client_secret"] = secret
    return shown


def set_policy(
    tenant: Tenant,
    client_id: str,
    *,
    trusted: bool | None = None,
    legacy_smart_v1: bool | None = None,
    actor: str | None = None,
) -> Outcome[Client]:
    """Change how the authorization endpoint treats an app; ``None`` leaves a flag as it is.

    ``trusted`` skips the consent page; ``legacy_smart_v1`` lets a confidential SMART v1 app
    omit PKCE (public apps never may, SMART 2.2 #considerations-for-pkce-support). An app that
    has the policy asked for already is left as is, and nothing is audited.

    :raises NotFound: for a client ``tenant`` does not have.
    :raises ValidationError: for no flag given (nothing would change), a resource server, or
        a public app marked legacy.
    """
    client = get_client(tenant, client_id)
    if trusted is None and legacy_smart_v1 is None:
        raise ValidationError(
            "nothing to change: give --trusted or --not-trusted, "
            "--legacy-smart-v1 or --no-legacy-smart-v1"
        )
    if client.kind != APP:
        raise ValidationError(f"client {client_id!r} is a resource server, not an app")
    if legacy_smart_v1 and client.is_public:
        raise ValidationError("a public app must use PKCE; only confidential apps may be legacy")
    before = (client.trusted, client.legacy_smart_v1)
    after = (
        before[0] if trusted is None else trusted,
        before[1] if legacy_smart_v1 is None else legacy_smart_v1,
    )
    if after == before:
        return Outcome(client, changed=False)
    client.trusted, client.legacy_smart_v1 = after
    db.session.flush()
    audit.record(
        tenant,
        AuditEvent.CLIENT_POLICY_CHANGED,
        actor=actor,
        subject=client_id,
        trusted=client.trusted,
        legacy_smart_v1=client.legacy_smart_v1,
    )
    return Outcome(client, changed=True)


def set_launch(
    tenant: Tenant, client_id: str, may_launch: bool, *, actor: str | None = None
) -> Outcome[Client]:
    """Let resource server ``client_id`` start EHR launches (``POST /launch``), or stop it.

    ``POST /launch`` reads the client's row on every request, so its next one is answered by
    the new registration, on every instance. Withdrawing the right also ends the launches it
    started that no app has used yet, as :func:`delete` does: whoever stopped trusting it to
    launch stops trusting what it launched. A resource server that has the right asked for
    already is left as is, and nothing is audited.

    :raises NotFound: for a client ``tenant`` does not have.
    :raises ValidationError: for an app: apps never start launches.
    """
    client = get_client(tenant, client_id)
    if client.kind != RESOURCE_SERVER:
        raise ValidationError(f"client {client_id!r} is an app: {APP_LAUNCHES}")
    if client.may_launch == may_launch:
        return Outcome(client, changed=False)
    client.may_launch = may_launch
    if may_launch:
        db.session.flush()
        audit.record(tenant, AuditEvent.CLIENT_LAUNCH_GRANTED, actor=actor, subject=client_id)
    else:
        launches = _end_launches_of(tenant, client)
        db.session.flush()
        audit.record(
            tenant,
            AuditEvent.CLIENT_LAUNCH_WITHDRAWN,
            actor=actor,
            subject=client_id,
            launches_ended=launches,
        )
    return Outcome(client, changed=True)


def set_service_account(
    tenant: Tenant, client_id: str, username: str | None, *, actor: str | None = None
) -> Outcome[Client]:
    """Link backend client ``client_id`` to the user ``username`` of ``tenant``, or unlink it.

    A linked client acts for that user: the user's role ceiling (its ``user/`` scopes read at
    ``system/`` level) also bounds the client's tokens, a disabled user gets it no token, and
    its tokens are recorded as the user's, so disabling the user or revoking the user's tokens
    ends them. Tokens already issued keep their scope until they expire (a backend client gets
    no refresh token, and its access tokens live five minutes at most).

    :param username: None to unlink. Nothing changes, and nothing is audited, for a client
        that is not linked, or linked to that user already.
    :raises NotFound: for a client ``tenant`` does not have.
    :raises ValidationError: for a client that is not a backend (client_credentials,
        private_key_jwt) client, or a username ``tenant`` has no user for.
    """
    client = get_client(tenant, client_id)
    if username is None:
        return _unlink(tenant, client, actor)
    _check_backend(
        client.kind, client.token_endpoint_auth_method, client.grant_types, f"client {client_id!r}"
    )
    account = _service_account(tenant, username)
    if client.service_account is account:
        return Outcome(client, changed=False)
    client.service_account = account
    db.session.flush()
    _audit_link(tenant, client, actor)
    return Outcome(client, changed=True)


def _unlink(tenant: Tenant, client: Client, actor: str | None) -> Outcome[Client]:
    if client.service_account is None:
        return Outcome(client, changed=False)
    previous = client.service_account.username
    client.service_account = None
    db.session.flush()
    audit.record(
        tenant,
        AuditEvent.CLIENT_SERVICE_ACCOUNT_UNLINKED,
        actor=actor,
        subject=client.client_id,
        service_account=previous,
    )
    return Outcome(client, changed=True)


def _check_backend(kind: str, auth_method: str, grants: list[str], named: str) -> None:
    backend = kind == APP and auth_method == "private_key_jwt" and "client_credentials" in grants
    if not backend:
        raise ValidationError(
            f"{named} is not a backend client: only a private_key_jwt client with the "
            "client_credentials grant can act for a service account"
        )


def _service_account(tenant: Tenant, username: str) -> User:
    # Looked up in this tenant only: another tenant's user of the same name is nobody here.
    account = accounts.find_user(tenant, username)
    if account is None:
        name = accounts.normalize_username(username)
        raise ValidationError(f"no user {name!r} at tenant {tenant.slug!r} to be a service account")
    return account


def _audit_link(tenant: Tenant, client: Client, actor: str | None) -> None:
    audit.record(
        tenant,
        AuditEvent.CLIENT_SERVICE_ACCOUNT_LINKED,
        actor=actor,
        subject=client.client_id,
        service_account=client.service_account.username if client.service_account else None,
    )


def use_assertion(tenant: Tenant, client_id: str, jti: str, expires_at: datetime) -> bool:
    """Record that ``client_id`` of ``tenant`` used the assertion ``jti`` (RFC 7523 §3 item 7).

    One statement that inserts or fails, so two instances racing on one ``jti`` cannot both
    win: the unique constraint decides. A record whose assertion has expired may be reused,
    since the ``jti`` only has to be unique while its assertion is alive.

    The record is committed at once, on a connection of its own: it stands whatever becomes
    of the request it authenticated (refused for its scope, an introspection that writes
    nothing, a revocation of an unknown token), so the assertion can never be shown again.

    Not audited: it is part of authenticating a token request, not a change anyone makes.

    :returns: False when the ``jti`` was already used by a live assertion of this client.
    """
    values = {"tenant_id": tenant.id, "client_id": client_id, "jti": jti}
    values.update(expires_at=expires_at, now=utcnow())
    with db.engine.begin() as connection:
        # A row comes back only when one was written.
        recorded = connection.execute(_USE_ASSERTION, values).first() is not None
    if recorded:
        upkeep.now_and_then()  # forgets expired records (authserver/upkeep.py)
    return recorded
