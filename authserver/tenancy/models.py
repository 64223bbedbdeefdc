"""The Tenant row: identity, status, FHIR base, branding and token lifetime policy."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from authserver.models import Base
from authserver.models import utcnow

ACTIVE = "active"
SUSPENDED = "suspended"


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(63), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default=ACTIVE)
    # None means the default, {issuer}/fhir, which follows the public URL if that moves.
    fhir_base_url_override: Mapped[str | None] = mapped_column(String(2000))
    logo_url: Mapped[str | None] = mapped_column(String(2000))
    primary_color: Mapped[str | None] = mapped_column(String(7))
    support_contact: Mapped[str | None] = mapped_column(String(200))
    access_token_lifetime: Mapped[int] = mapped_column(default=3600)
    refresh_token_lifetime: Mapped[int] = mapped_column(default=90 * 24 * 3600)
    authorization_code_lifetime: Mapped[int] = mapped_column(default=60)
    id_token_lifetime: Mapped[int] = mapped_column(default=3600)
    # EHR launch ids expire after this many seconds ("expires in minutes").
    launch_lifetime: Mapped[int] = mapped_column(default=300, server_default="300")
    # Where the standalone-launch patient picker searches; None means {fhir_base}/Patient.
    patient_search_url: Mapped[str | None] = mapped_column(String(2000))
    # RS256 or ES256 for access tokens; id_tokens are always RS256 (SMART requires it).
    access_token_alg: Mapped[str] = mapped_column(
        String(8), default="RS256", server_default="RS256"
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    @property
    def is_active(self) -> bool:
        return self.status == ACTIVE

    def __repr__(self) -> str:
        return f"<Tenant {self.slug}>"
