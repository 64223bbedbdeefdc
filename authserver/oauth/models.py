"""Authorization codes: SHA-256 digests with a short life, used once, tenant-owned."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from authlib.oidc.core import AuthorizationCodeMixin
from sqlalchemy import JSON
from sqlalchemy import Index
from sqlalchemy import String
from sqlalchemy import Text
from sqlalchemy import UniqueConstraint
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from authserver.models import Base
from authserver.models import TenantOwned
from authserver.models import tenant_reference
from authserver.models import tenant_reference_set_null
from authserver.models import utcnow


class AuthorizationCode(TenantOwned, AuthorizationCodeMixin, Base):
    """One authorization (RFC 6749 §4.1.2), waiting for its single exchange at the token endpoint.

    ``grant_id`` is the family the tokens issued from this code will carry, so that a replayed
    code can revoke them (RFC 6749 §4.1.2: "SHOULD revoke ... all tokens previously issued based
    on that authorization code").
    """

    __tablename__ = "authorization_codes"
    keyed_by_tenant = True
    __table_args__ = (
        # Found by tenant and digest (service.redeem_code), so unique per tenant like every key.
        UniqueConstraint("tenant_id", "code_digest"),
        tenant_reference("client_pk", "clients", ondelete="CASCADE"),
        tenant_reference("user_id", "users", ondelete="CASCADE"),
        # An ended login leaves its codes as they are; a deleted one leaves them NULL here.
        *tenant_reference_set_null("login_session_id", "login_sessions"),
        # For a revocation's codes of a client or a user, and the cascades from them.
        Index("ix_authorization_codes_tenant_id_client_pk", "tenant_id", "client_pk"),
        Index("ix_authorization_codes_tenant_id_user_id", "tenant_id", "user_id"),
        # For a deleted login session's SET NULL, and for forgetting expired codes.
        Index("ix_authorization_codes_login_session_id", "login_session_id"),
        Index("ix_authorization_codes_expires_at", "expires_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    code_digest: Mapped[str] = mapped_column(String(64))
    grant_id: Mapped[str] = mapped_column(String(64))
    client_pk: Mapped[int] = mapped_column()
    user_id: Mapped[int] = mapped_column()
    login_session_id: Mapped[int | None] = mapped_column()
    redirect_uri: Mapped[str] = mapped_column(String(2000))
    scope: Mapped[str] = mapped_column(Text)
    nonce: Mapped[str | None] = mapped_column(String(255))
    code_challenge: Mapped[str | None] = mapped_column(String(128))
    code_challenge_method: Mapped[str | None] = mapped_column(String(8))
    # Launch context (patient, encounter, fhirContext, ...) and, with the fhirUser scope, fhirUser:
    # what the tokens carry.
    context: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    auth_time: Mapped[datetime]
    issued_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]

    # -- Authlib AuthorizationCodeMixin (RFC 6749, OpenID Connect Core) ----------------------

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return int(self.auth_time.timestamp())
