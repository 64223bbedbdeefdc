"""Signing keys: one active signer per algorithm per tenant, at most one staged successor, older
ones published until retired."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON
from sqlalchemy import Index
from sqlalchemy import LargeBinary
from sqlalchemy import String
from sqlalchemy import UniqueConstraint
from sqlalchemy import text
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from authserver.keys import crypto
from authserver.models import Base
from authserver.models import TenantOwned
from authserver.models import utcnow

ACTIVE = "active"  # signs new tokens; in the JWKS
NEXT = "next"  # signs nothing yet; in the JWKS so verifiers know it before it signs
PUBLISHED = "published"  # no longer signs; in the JWKS so earlier tokens still verify
RETIRED = "retired"  # gone from the JWKS; tokens it signed no longer verify
# In the JWKS, in this order: a verifier that just takes the first key gets a signer.
IN_JWKS = (ACTIVE, NEXT, PUBLISHED)


class SigningKey(TenantOwned, Base):
    __tablename__ = "signing_keys"
    keyed_by_tenant = True
    __table_args__ = (
        UniqueConstraint("tenant_id", "kid"),
        # One signer per algorithm: two rotations racing cannot both leave an active key.
        Index(
            "ux_signing_keys_active_alg",
            "tenant_id",
            "alg",
            unique=True,
            postgresql_where=text(f"status = '{ACTIVE}'"),
            sqlite_where=text(f"status = '{ACTIVE}'"),
        ),
        # One staged successor per algorithm: two stagings racing cannot both publish one.
        Index(
            "ux_signing_keys_next_alg",
            "tenant_id",
            "alg",
            unique=True,
            postgresql_where=text(f"status = '{NEXT}'"),
            sqlite_where=text(f"status = '{NEXT}'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kid: Mapped[str] = mapped_column(String(64))
    alg: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(16), default=ACTIVE)
    public_jwk: Mapped[dict[str, Any]] = mapped_column(JSON)
    private_key_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    rotated_at: Mapped[datetime | None]
    retired_at: Mapped[datetime | None]

    @property
    def associated_data(self) -> str:
        return crypto.associated_data(self.tenant_id, self.kid)

    def describe(self) -> dict[str, Any]:
        return {
            "kid": self.kid,
            "alg": self.alg,
            "status": self.status,
            "created_at": self.created_at.isoformat(),
            "retired_at": self.retired_at.isoformat() if self.retired_at else None,
        }
