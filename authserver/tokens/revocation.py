"""Revoking issued tokens: one token, its family, everything of a user or of a client (with
the codes they have not exchanged yet).

Revocation is a row update (``revoked_at``) that introspection reads on every request, so it
counts at once on every instance sharing the database. This module needs only the token and
code tables, so the account and client services can revoke without importing the token issuer.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING
from typing import Any

from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import update

from authserver.audit import service as audit
from authserver.audit.events import AuditEvent
from authserver.extensions import db
from authserver.models import utcnow
from authserver.oauth.models import AuthorizationCode
from authserver.tenancy.models import Tenant
from authserver.tokens.models import ACCESS
from authserver.tokens.models import REFRESH
from authserver.tokens.models import IssuedToken

# How far the clocks of the instances sharing a database may be apart.
INSTANCE_CLOCK_SKEW = timedelta(seconds=60)

if TYPE_CHECKING:  # type names only: this module needs no account or client code
    from authserver.accounts.models import User
    from authserver.clients.models import Client


def revoke_token(
    tenant: Tenant, *, kind: str, jti: str, grant_id: str, actor: str | None = None
) -> int:
    """RFC 7009 §2.1: revoke one presented token; a refresh token takes its whole family.

    An access token goes alone: the refresh token it came with stays usable.
    """
    if kind == REFRESH:
        return revoke_family(tenant, grant_id, actor=actor)
    count = _revoke(tenant, IssuedToken.jti == jti)
    _audit(tenant, actor, jti, "token", count)
    return count


def revoke_family(tenant: Tenant, grant_id: str, *, actor: str | None = None) -> int:
    """Revoke every live token of one authorization; returns how many."""
    count = _revoke(tenant, IssuedToken.grant_id == grant_id)
    _audit(tenant, actor, grant_id, "family", count)
    return count


def retire_replaced_access_tokens(tenant: Tenant, grant_id: str) -> int:
    """A refresh replaces the family's access tokens: they stop being active (INT-05, RFC 7662
    §2.2). Routine rotation, not an operator's revocation: not audited. Returns how many.

    The caller holds the family's rows already (:func:`lock_family`).
    """
    return _update(_live(tenant, IssuedToken.grant_id == grant_id, IssuedToken.kind == ACCESS))


def revoke_for_user(tenant: Tenant, user: User, *, actor: str | None = None) -> int:
    """Revoke every live token issued for the user, and end the codes they have not exchanged
    yet; returns how many tokens."""
    return _revoke_issued(tenant, "user", user, user.username, actor)


def revoke_for_client(tenant: Tenant, client: Client, *, actor: str | None = None) -> int:
    """Revoke every live token issued to the client, and end the codes it has not exchanged
    yet; returns how many tokens."""
    return _revoke_issued(tenant, "client", client, client.client_id, actor)


# Whose tokens and codes a revocation ends: the column naming them in each table.
_ISSUED_FOR = {
    "user": (IssuedToken.user_id, AuthorizationCode.user_id),
    "client": (IssuedToken.client_pk, AuthorizationCode.client_pk),
}


def _revoke_issued(
    tenant: Tenant, of: str, holder: User | Client, name: str, actor: str | None
) -> int:
    """Revoke the live tokens of the user or client (``of``) ``holder``, after ending its codes
    not yet exchanged (:func:`_expire_codes` says why first). The audit record goes by its
    ``name`` (a username, a client_id), so `audit list --subject` finds the revocation with the
    rest of its records; another tenant's user or client, whose name is not this tenant's to
    log, goes by its id (nothing of it is revoked here)."""
    token_column, code_column = _ISSUED_FOR[of]
    codes = _expire_codes(tenant, code_column == holder.id)
    count = _revoke(tenant, token_column == holder.id)
    subject = name if holder.tenant_id == tenant.id else str(holder.id)
    _audit(tenant, actor, subject, of, count, codes=codes)
    return count


def _expire_codes(tenant: Tenant, condition: Any) -> int:
    """A code issued before a revocation would otherwise still buy fresh tokens. It expires
    rather than counting as used, so its exchange is a plain ``invalid_grant``, not a replay, and
    its nonce stays on record (OpenID Connect Core §15.5.2).

    Before the tokens are revoked (PostgreSQL, READ COMMITTED): an exchange that has claimed one
    of these codes holds its row until it commits its tokens; this waits for it, and the
    revocation's statements after this one see those tokens and revoke them.
    """
    statement = (
        update(AuthorizationCode)
        .where(
            AuthorizationCode.tenant_id == tenant.id,
            condition,
            AuthorizationCode.used_at.is_(None),
            AuthorizationCode.expires_at > utcnow() - INSTANCE_CLOCK_SKEW,  # as :func:`_live`
        )
        # Its issue time, not this clock's now: an instance whose clock runs behind ends it too.
        .values(expires_at=AuthorizationCode.issued_at)
    )
    result = db.session.execute(statement, execution_options={"synchronize_session": False})
    return result.rowcount


def _audit(
    tenant: Tenant, actor: str | None, subject: str, scope: str, count: int, **more: Any
) -> None:
    audit.record(
        tenant,
        AuditEvent.TOKEN_REVOKED,
        actor=actor,
        subject=subject,
        of=scope,
        count=count,
        **more,
    )


def lock_family(tenant: Tenant, grant_id: str) -> None:
    """Lock the live token rows of one authorization, in id order, until the transaction ends.

    The live ones are all a refresh and a revocation contend for; the family's spent refresh
    tokens (kept until they expire, to recognise their reuse) are left alone: a long-lived
    family would otherwise write a lock into each of them at every refresh, and wait for
    whoever holds one (the purge deleting the expired ones, :mod:`authserver.upkeep`).
    """
    _lock(*_live(tenant, IssuedToken.grant_id == grant_id))


def _revoke(tenant: Tenant, *conditions: Any) -> int:
    """Lock the live rows matching ``conditions`` in id order, then revoke the live rows.

    Two statements on purpose (PostgreSQL, READ COMMITTED: a statement sees the rows committed
    before it began). A refresh of one of these families holds its live rows
    (:func:`lock_family`) until it commits a new access and refresh token: the lock waits for it
    and cannot see that
    pair (a row it waited for is checked again before it is locked, so the refresh token the
    refresh spent and the access token it retired are passed over); the update, begun after,
    sees and revokes the new pair. A later refresh of these families waits for the locked rows
    and is refused. The update alone would wait for the refresh and leave its new pair active; a
    lock on the user's or client's row would cost every refresh a statement.
    """
    live = _live(tenant, *conditions)
    _lock(*live)
    return _update(live)


def _live(tenant: Tenant, *conditions: Any) -> tuple[Any, ...]:
    """The tokens of ``tenant`` matching ``conditions`` that are still live: not revoked, not
    spent (a rotated refresh token) and not expired.

    The others already answer inactive and buy nothing (introspection and the refresh grant read
    ``used_at`` and ``expires_at`` too): a revocation leaves them as they are, and neither counts
    nor audits them. "Expired" by this instance's clock with :data:`INSTANCE_CLOCK_SKEW` to
    spare: another instance whose clock runs behind still answers for a token this one sees
    just expired.
    """
    return (
        IssuedToken.tenant_id == tenant.id,
        *conditions,
        IssuedToken.revoked_at.is_(None),
        IssuedToken.used_at.is_(None),
        IssuedToken.expires_at > utcnow() - INSTANCE_CLOCK_SKEW,
    )


def _update(live: tuple[Any, ...]) -> int:
    statement = update(IssuedToken).where(*live).values(revoked_at=utcnow())
    result = db.session.execute(statement, execution_options={"synchronize_session": False})
    return result.rowcount


def _lock(*conditions: Any) -> None:
    """Row locks on token rows are always taken in id order (PostgreSQL; SQLite has one writer at
    a time): a revocation and a refresh of one family cannot each hold a row the other waits for
    (a deadlock, and one of them a 500)."""
    locked = select(IssuedToken.id).where(*conditions).order_by(IssuedToken.id).with_for_update()
    db.session.execute(select(func.count()).select_from(locked.subquery()))  # one row back
