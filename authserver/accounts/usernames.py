"""How a username typed at a login page is read, and how one nobody has is audited."""

from __future__ import annotations

from flask import current_app

from authserver import security
from authserver.tenancy.models import Tenant

# Never a username (a colon is not allowed in one), so never mistaken for a user's record.
UNKNOWN_USERNAME_PREFIX = "unknown-user:"
_UNKNOWN_USERNAME_KEY_PURPOSE = b"authserver audit: failed logins at unknown usernames"


def normalize_username(username: str) -> str:
    """``username`` as accounts store it: usernames are case-insensitive and trimmed."""
    return (username or "").strip().lower()


def unknown_username_subject(tenant: Tenant, username: str) -> str:
    """The audit subject of a failed login at ``username``, which ``tenant`` has no user for.

    People type their password into the username field, so what was typed is never kept or
    logged: a keyed digest of it (HMAC-SHA256 under a key derived from
    ``AUTHSERVER_SECRET_KEY``, bound to the tenant) tells repeated attempts at one name apart
    from others, and cannot be read back. The same name, typed again in any case, gives the
    same subject.
    """
    key = security.derive_key(
        current_app.config["AUTHSERVER_SECRET_KEY"], _UNKNOWN_USERNAME_KEY_PURPOSE
    )
    typed = f"{tenant.id}:{normalize_username(username)}"
    return UNKNOWN_USERNAME_PREFIX + security.keyed_digest(key, typed)
