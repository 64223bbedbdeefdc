"""Append-only audit records, one stream per tenant."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON
from sqlalchemy import String
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from authserver.models import Base
from authserver.models import TenantOwned
from authserver.models import utcnow


class AuditRecord(TenantOwned, Base):
    __tablename__ = "audit_records"

    id: Mapped[int] = mapped_column(primary_key=True)
    event: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str | None] = mapped_column(String(200))
    subject: Mapped[str | None] = mapped_column(String(200))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    def describe(self) -> dict[str, Any]:
        return {
            "at": self.created_at.isoformat(),
            "event": self.event,
            "actor": self.actor,
            "subject": self.subject,
            "details": self.details,
        }
