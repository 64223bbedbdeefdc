"""A pending EHR launch of one tenant: its context, kept under the digest of its opaque id."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON
from sqlalchemy import Index
from sqlalchemy import String
from sqlalchemy import UniqueConstraint
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from authserver.models import Base
from authserver.models import TenantOwned
from authserver.models import tenant_reference
from authserver.models import utcnow


class Launch(TenantOwned, Base):
    """SMART 2.2 #step-2-launch-ehr: "an opaque handle to the EHR context"; used once."""

    __tablename__ = "launches"
    keyed_by_tenant = True
    # Found by tenant and digest (service.resolve), so unique per tenant like every other key.
    __table_args__ = (
        UniqueConstraint("tenant_id", "launch_digest"),
        tenant_reference("client_pk", "clients", ondelete="CASCADE"),
        # For forgetting expired launches (authserver/upkeep.py).
        Index("ix_launches_expires_at", "expires_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    launch_digest: Mapped[str] = mapped_column(String(64))
    patient: Mapped[str] = mapped_column(String(64))
    encounter: Mapped[str | None] = mapped_column(String(64))
    fhir_context: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    intent: Mapped[str | None] = mapped_column(String(200))
    need_patient_banner: Mapped[bool] = mapped_column(default=False)
    # The app the launch is for, the only one that may use it (EHR-05). Every launch is created
    # bound; the column stays nullable for rows stored before that, which resolve() refuses.
    client_pk: Mapped[int | None] = mapped_column()
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
