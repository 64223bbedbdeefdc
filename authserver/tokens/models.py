"""One row per issued token, by ``jti`` (access) or digest (refresh); never the token itself."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON
from sqlalchemy import Index
from sqlalchemy import String
from sqlalchemy import Text
from sqlalchemy import UniqueConstraint
from sqlalchemy import text
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from authserver.models import Base
from authserver.models import TenantOwned
from authserver.models import tenant_reference
from authserver.models import tenant_reference_set_null
from authserver.models import utcnow

ACCESS = "access"
REFRESH = "refresh"


class IssuedToken(TenantOwned, Base):
    """An issued access or refresh token.

    ``grant_id`` names the family: every token that came from one authorization (a code and the
    refresh chain after it, or one client_credentials request), so that a replayed code or a
    reused refresh token can revoke all of it at once.
    """

    __tablename__ = "issued_tokens"
    keyed_by_tenant = True
    __table_args__ = (
        UniqueConstraint("tenant_id", "jti"),
        UniqueConstraint("tenant_id", "token_digest"),
        Index("ix_issued_tokens_tenant_id_grant_id", "tenant_id", "grant_id"),
        tenant_reference("client_pk", "clients", ondelete="CASCADE"),
        tenant_reference("user_id", "users", ondelete="CASCADE"),
        # An ended login leaves its tokens as they are; a deleted one leaves them NULL here.
        *tenant_reference_set_null("login_session_id", "login_sessions"),
        # For revoking a client's or a user's tokens, and the cascades from them.
        Index("ix_issued_tokens_tenant_id_client_pk", "tenant_id", "client_pk"),
        Index("ix_issued_tokens_tenant_id_user_id", "tenant_id", "user_id"),
        # For a deleted login session's SET NULL; most tokens (Backend Services) have none.
        Index(
            "ix_issued_tokens_login_session_id",
            "login_session_id",
            postgresql_where=text("login_session_id IS NOT NULL"),
            sqlite_where=text("login_session_id IS NOT NULL"),
        ),
        # For forgetting expired rows (authserver/upkeep.py).
        Index("ix_issued_tokens_expires_at", "expires_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    jti: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    grant_id: Mapped[str] = mapped_column(String(64))
    # Refresh tokens are opaque: only their SHA-256 digest is kept, to look them up.
    token_digest: Mapped[str | None] = mapped_column(String(64))
    client_pk: Mapped[int] = mapped_column()
    client_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[int | None] = mapped_column()
    login_session_id: Mapped[int | None] = mapped_column()
    scope: Mapped[str] = mapped_column(Text, default="")
    # Launch context and identity claims that ride along: patient, encounter, fhirContext...
    context: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    issued_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    # A refresh token is used once: rotation sets this, and a second use revokes the family.
    used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None
