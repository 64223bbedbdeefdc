"""Roles, users and login sessions; every one belongs to exactly one tenant."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column
from sqlalchemy import Index
from sqlalchemy import Integer
from sqlalchemy import String
from sqlalchemy import Table
from sqlalchemy import Text
from sqlalchemy import UniqueConstraint
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column
from sqlalchemy.orm import relationship

from authserver.models import Base
from authserver.models import TenantOwned
from authserver.models import tenant_reference
from authserver.models import utcnow

ACTIVE = "active"
DISABLED = "disabled"

# Who holds which role. Both foreign keys include the tenant, so the database itself refuses a
# user of one tenant holding a role of another, whatever code wrote the row; ``User.roles``
# fills ``tenant_id`` from them (SQLAlchemy derives its join conditions from these keys).
user_roles = Table(
    "user_roles",
    Base.metadata,
    Column("tenant_id", Integer, primary_key=True),
    Column("user_id", Integer, primary_key=True),
    Column("role_id", Integer, primary_key=True),
    tenant_reference("user_id", "users", ondelete="CASCADE"),
    tenant_reference("role_id", "roles", ondelete="CASCADE"),
    # For the cascade from a deleted role; the primary key serves the one from a user.
    Index("ix_user_roles_tenant_id_role_id", "tenant_id", "role_id"),
)


class Role(TenantOwned, Base):
    """A clinical role of one tenant; its scope ceiling bounds what its holders may grant."""

    __tablename__ = "roles"
    keyed_by_tenant = True
    # (tenant_id, id) is unique anyway; the constraint lets user_roles refer to it.
    __table_args__ = (UniqueConstraint("tenant_id", "name"), UniqueConstraint("tenant_id", "id"))

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(String(200), default="")
    # Space-separated SMART scopes; filled with defaults by the SMART App Launch work.
    scope_ceiling: Mapped[str] = mapped_column(Text, default="")


class User(TenantOwned, Base):
    """A login at one clinic; the same username at another clinic is another person."""

    __tablename__ = "users"
    keyed_by_tenant = True
    __table_args__ = (
        UniqueConstraint("tenant_id", "username"),
        UniqueConstraint("tenant_id", "subject"),
        # For the rows that name a user in its tenant: roles held, logins, codes, tokens, the
        # clients it is the service account of.
        UniqueConstraint("tenant_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(150))
    # The user's ``sub`` wherever the user is named outside the server (ID and access tokens,
    # introspection, the CLI): random, not the row id, which would tell every tenant's apps how
    # many people all tenants have signed up and in what order; never reassigned (OIDC Core
    # §2). Users made before revision 6f3a9d2c1b84 keep str(id), the sub they had then.
    subject: Mapped[str] = mapped_column(String(64))
    password_hash: Mapped[str] = mapped_column(String(255))
    fhir_user: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default=ACTIVE)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    roles: Mapped[list[Role]] = relationship(secondary=user_roles, order_by=Role.name)

    @property
    def is_active(self) -> bool:
        return self.status == ACTIVE

    @property
    def role_names(self) -> list[str]:
        return [role.name for role in self.roles]


class LoginSession(TenantOwned, Base):
    """A browser login at one tenant. The cookie holds a random token; we keep its digest."""

    __tablename__ = "login_sessions"
    keyed_by_tenant = True
    __table_args__ = (
        UniqueConstraint("tenant_id", "token_digest"),
        UniqueConstraint("tenant_id", "id"),  # for the codes and tokens issued at this login
        tenant_reference("user_id", "users", ondelete="CASCADE"),
        # For the user's sessions (ended with their password) and the cascade from the user.
        Index("ix_login_sessions_tenant_id_user_id", "tenant_id", "user_id"),
        # For forgetting expired sessions (authserver/upkeep.py).
        Index("ix_login_sessions_expires_at", "expires_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column()
    token_digest: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    # Through the tenant-bound key; only user_id is the relationship's to write (tenant_id is
    # the session's own).
    user: Mapped[User] = relationship(
        primaryjoin="and_(User.tenant_id == LoginSession.tenant_id,"
        " User.id == foreign(LoginSession.user_id))"
    )

    @property
    def auth_time(self) -> datetime:
        return self.created_at
