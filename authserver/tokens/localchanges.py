"""This process's own changes to token state, applied to its introspection cache at commit.

The cache (:mod:`authserver.tokens.statecache`) hears of a change through PostgreSQL NOTIFY,
which reaches the listening connection a moment after the commit. Another instance lives with
that moment (RFC 7009 §2's propagation delay); this one need not: it knows what it changed.
When a session of this process commits a change to a table introspection reads (the triggers'
``WATCHED`` tables: tenants, clients, users, signing keys, issued tokens), the tenants it touched
are dropped from this process's cache before the commit returns to its caller, so a request
that follows here (an app's refresh, then its old token introspected) never sees the old state.

Tenants are read from the changed rows; a bulk ``UPDATE``/``DELETE`` statement (revocation)
counts for the request's tenant, or, outside a request, for every tenant.
"""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask import current_app
from flask import g
from flask import has_app_context
from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState
from sqlalchemy.orm import Session

from authserver.extensions import db
from authserver.tokens.statecache import EVERY_TENANT

# The tables the NOTIFY triggers watch (migration 68265a9805a3).
WATCHED_TABLES = frozenset({"tenants", "clients", "users", "signing_keys", "issued_tokens"})
_CHANGED = "authserver.token_state_changed"  # Session.info key: tenant ids (or EVERY_TENANT)
_registered = False


def init_app(app: Flask) -> None:
    """Listen to the sessions' flushes and commits (once: every app shares ``db.session``; each
    commit applies to the cache of the app it runs in)."""
    global _registered  # noqa: PLW0603 - one set of listeners per process
    if _registered:
        return
    event.listen(db.session, "after_flush", _after_flush)
    event.listen(db.session, "do_orm_execute", _after_statement)
    event.listen(db.session, "after_commit", _after_commit)
    event.listen(db.session, "after_rollback", _forget)
    _registered = True


def _after_flush(session: Session, flush_context: Any) -> None:
    for row in (*session.dirty, *session.deleted):
        table = getattr(row, "__tablename__", None)
        if table in WATCHED_TABLES:
            _changed(session).add(str(row.id if table == "tenants" else row.tenant_id))


def _after_statement(state: ORMExecuteState) -> None:
    if not (state.is_update or state.is_delete):
        return
    table = getattr(state.statement, "table", None)
    if getattr(table, "name", None) in WATCHED_TABLES:
        tenant = g.get("tenant") if has_app_context() else None
        _changed(state.session).add(str(tenant.id) if tenant is not None else EVERY_TENANT)


def _after_commit(session: Session) -> None:
    changed = session.info.pop(_CHANGED, None)
    if not changed or not has_app_context():
        return
    fastpath = current_app.extensions.get("authserver.fastpath")
    cache = fastpath["reader"].cache if fastpath else None
    if cache is not None:
        cache.forget(changed)


def _forget(session: Session) -> None:
    session.info.pop(_CHANGED, None)


def _changed(session: Session) -> set[str]:
    return session.info.setdefault(_CHANGED, set())
