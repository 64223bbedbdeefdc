"""Roles, users and login sessions; every one belongs to exactly one tenant."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column
from sqlalchemy import ForeignKey
from sqlalchemy import String
from sqlalchemy import Table
from sqlalchemy import Text
from sqlalchemy import UniqueConstraint
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column
from sqlalchemy.orm import relationship

from authserver.models import Base
from authserver.models import TenantOwned
from authserver.models import utcnow

ACTIVE = "active"
DISABLED = "disabled"

user_roles = Table(
    "user_roles",
    Base.metadata,
    Column("user_id", ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("role_id", ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True),
)


class Role(TenantOwned, Base):
    """A clinical role of one tenant; its scope ceiling bounds what its holders may grant."""

    __tablename__ = "roles"
    keyed_by_tenant = True
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(String(200), default="")
    # Space-separated SMART scopes; filled with defaults by the SMART App Launch work.
    scope_ceiling: Mapped[str] = mapped_column(Text, default="")


class User(TenantOwned, Base):
    """A login at one clinic; the same username at another clinic is another person."""

    __tablename__ = "users"
    keyed_by_tenant = True
    __table_args__ = (UniqueConstraint("tenant_id", "username"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(150))
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
    __table_args__ = (UniqueConstraint("tenant_id", "token_digest"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_digest: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    user: Mapped[User] = relationship()

    @property
    def auth_time(self) -> datetime:
        return self.created_at
