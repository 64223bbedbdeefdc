"""The refresh-token grant (RFC 6749 §6; SMART 2.2 #step-7-refresh) on Authlib's.

``offline_access`` refresh tokens live the tenant's refresh lifetime; ``online_access`` ones live
no longer than the login session they came from and die with it. Every refresh rotates the token;
presenting a rotated one again revokes its whole family (RFC 9700 §4.14.2).
"""

from __future__ import annotations

from authserver.accounts.models import LoginSession
from authserver.extensions import db
from authserver.models import utcnow
from authserver.smart.scopes import ScopeSet
from authserver.tenancy.models import Tenant


def refresh_lifetime(tenant: Tenant, scope: ScopeSet, login_session_id: int | None) -> int | None:
    """Seconds a refresh token for ``scope`` may live, or None when none is due (TOK-12)."""
    if scope.has("offline_access"):
        return tenant.refresh_token_lifetime
    if scope.has("online_access"):
        remaining = _session_remaining(tenant, login_session_id)
        return min(remaining, tenant.refresh_token_lifetime) if remaining else None
    return None


def _session_remaining(tenant: Tenant, login_session_id: int | None) -> int:
    """Whole seconds the login session has left; 0 when it has ended or belongs elsewhere."""
    login = db.session.get(LoginSession, login_session_id) if login_session_id else None
    if login is None or login.tenant_id != tenant.id or login.ended_at is not None:
        return 0
    return max(0, int((login.expires_at - utcnow()).total_seconds()))
