"""A registered app or resource server of one tenant, shaped for Authlib's ClientMixin."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from authlib.oauth2.rfc6749 import ClientMixin
from sqlalchemy import JSON
from sqlalchemy import Index
from sqlalchemy import String
from sqlalchemy import Text
from sqlalchemy import UniqueConstraint
from sqlalchemy import false
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column
from sqlalchemy.orm import relationship

from authserver import security
from authserver.accounts.models import User
from authserver.models import Base
from authserver.models import TenantOwned
from authserver.models import tenant_reference
from authserver.models import utcnow

APP = "app"
RESOURCE_SERVER = "resource_server"
# The one scope a resource server is issued (client_credentials): it opens introspection with
# the token as a Bearer credential (SMART token introspection, INT-06) and no FHIR data.
INTROSPECTION_SCOPE = "introspect"
ACTIVE = "active"
DELETED = "deleted"


class Client(TenantOwned, ClientMixin, Base):
    __tablename__ = "clients"
    keyed_by_tenant = True
    __table_args__ = (
        UniqueConstraint("tenant_id", "client_id"),
        UniqueConstraint("tenant_id", "id"),  # for the codes, tokens and launches naming a client
        tenant_reference("service_account_id", "users"),
        # For the check that refuses to delete a linked user.
        Index("ix_clients_tenant_id_service_account_id", "tenant_id", "service_account_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16), default=APP)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default=ACTIVE)
    token_endpoint_auth_method: Mapped[str] = mapped_column(String(32))
    client_secret_digest: Mapped[str | None] = mapped_column(String(64))
    redirect_uris: Mapped[list[str]] = mapped_column(JSON, default=list)
    jwks: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    jwks_uri: Mapped[str | None] = mapped_column(String(2000))
    allowed_scope: Mapped[str] = mapped_column(Text, default="")
    grant_types: Mapped[list[str]] = mapped_column(JSON, default=list)
    # The tenant vouches for the app: its users are not asked to consent (scopes still narrow).
    trusted: Mapped[bool] = mapped_column(default=False, server_default=false())
    # A confidential SMART v1 app that cannot send PKCE; public clients never may omit it.
    legacy_smart_v1: Mapped[bool] = mapped_column(default=False, server_default=false())
    # A resource server registered as an EHR may start launches (POST /launch); one that only
    # introspects (a FHIR gateway) may not, so its leaked secret mints no launch for any
    # patient. Every resource server may introspect; an app never launches, whatever this says.
    may_launch: Mapped[bool] = mapped_column(default=False, server_default=false())
    # A backend client may act for a service-account user of its tenant: that user's role
    # ceiling also bounds its tokens, and its tokens are recorded (and revoked) as that user's.
    # No ON DELETE action: deleting a linked user is refused, since SET NULL would silently lift
    # the ceiling; unlink first (clients.service.set_service_account).
    service_account_id: Mapped[int | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Through the tenant-bound key; only service_account_id is the relationship's to write, so
    # unlinking (None) leaves the client's tenant_id alone.
    service_account: Mapped[User | None] = relationship(
        primaryjoin="and_(User.tenant_id == Client.tenant_id,"
        " User.id == foreign(Client.service_account_id))"
    )

    @property
    def is_public(self) -> bool:
        return self.token_endpoint_auth_method == "none"

    @property
    def is_active(self) -> bool:
        return self.status == ACTIVE

    # -- Authlib ClientMixin (RFC 6749 §2) -------------------------------------------------

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        # SMART App Launch makes redirect_uri REQUIRED (AUTHZ-07): never fall back to one.
        return None

    def get_allowed_scope(self, scope: str) -> str:
        allowed = set(self.allowed_scope.split())
        return " ".join(item for item in (scope or "").split() if item in allowed)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        # Exact string match, never prefix or pattern (RFC 9700 §4.1.3).
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return security.matches(client_secret, self.client_secret_digest)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == self.token_endpoint_auth_method

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code" and "authorization_code" in self.grant_types

    def check_grant_type(self, grant_type: str) -> bool:
        if self.kind == RESOURCE_SERVER:
            # Every resource server may introspect, so each may get the token that does it.
            return grant_type == "client_credentials"
        return grant_type in self.grant_types


class UsedAssertion(TenantOwned, Base):
    """The ``jti`` of a client assertion already accepted, kept until the assertion expires.

    RFC 7523 §3 item 7 and SMART Backend Services: an assertion is good once. The record lives
    in the database, not in a process, so a replay is refused by every instance alike; the
    unique constraint makes the check and the record one insert.
    """

    __tablename__ = "used_client_assertions"
    keyed_by_tenant = True
    __table_args__ = (
        UniqueConstraint("tenant_id", "client_id", "jti"),
        Index("ix_used_client_assertions_expires_at", "expires_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64))
    jti: Mapped[str] = mapped_column(String(255))
    expires_at: Mapped[datetime] = mapped_column()
