"""The declarative base, shared column types and the tenant-owned mixin."""

from __future__ import annotations

from datetime import UTC
from datetime import datetime
from typing import Any
from typing import ClassVar

from sqlalchemy import DateTime
from sqlalchemy import ForeignKey
from sqlalchemy import ForeignKeyConstraint
from sqlalchemy import MetaData
from sqlalchemy import Select
from sqlalchemy import select
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import declared_attr
from sqlalchemy.orm import mapped_column
from sqlalchemy.orm import registry
from sqlalchemy.types import TypeDecorator

# Deterministic constraint names, so migrations name what they create and can drop it again.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps stored as UTC and always read back timezone-aware, on SQLite as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use authserver.models.utcnow()")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    registry = registry(
        metadata=MetaData(naming_convention=NAMING_CONVENTION),
        type_annotation_map={datetime: UTCDateTime()},
    )


class TenantOwned:
    """Mixin for every row that belongs to one tenant.

    ``tenant_id`` is NOT NULL and indexed; every read starts from :meth:`for_tenant`, which takes
    the tenant as a required argument, so a query cannot forget it.
    """

    # True on a table with a unique key or an index that starts with ``tenant_id``: that index
    # serves the same lookups and the tenant's cascading delete, and a second index would only
    # cost memory and writes (tests/test_migrations.py checks every table has exactly one).
    keyed_by_tenant: ClassVar[bool] = False

    @declared_attr
    def tenant_id(cls) -> Mapped[int]:  # noqa: N805 - declared_attr passes the class
        return mapped_column(
            ForeignKey("tenants.id", ondelete="CASCADE"), index=not cls.keyed_by_tenant
        )

    @classmethod
    def for_tenant(cls, tenant: Any) -> Select[Any]:
        """``SELECT`` of this model limited to ``tenant`` (a Tenant row or its id)."""
        tenant_id = getattr(tenant, "id", tenant)
        if tenant_id is None:
            raise ValueError("a tenant is required")
        return select(cls).where(cls.tenant_id == tenant_id)  # type: ignore[attr-defined]


def tenant_reference(
    column: str, table: str, *, ondelete: str | None = None, **options: Any
) -> ForeignKeyConstraint:
    """A foreign key from ``column`` to the row of ``table`` with that id in the same tenant.

    ``(tenant_id, column)`` refers to ``table``'s ``(tenant_id, id)``, which the target declares
    unique, so the database itself refuses a row of one tenant naming a row of another, whatever
    code wrote it. Not for ``ondelete="SET NULL"``, which would null ``tenant_id`` too (NOT
    NULL): :func:`tenant_reference_set_null` is.

    :param options: passed on to :class:`~sqlalchemy.ForeignKeyConstraint` (``deferrable``,
        ``initially``).
    """
    return ForeignKeyConstraint(
        ["tenant_id", column], [f"{table}.tenant_id", f"{table}.id"], ondelete=ondelete, **options
    )


def tenant_reference_set_null(
    column: str, table: str
) -> tuple[ForeignKeyConstraint, ForeignKeyConstraint]:
    """A reference to ``table`` in the same tenant that a deleted target leaves NULL.

    ``ON DELETE SET NULL`` on the composite key would null ``tenant_id`` as well (NOT NULL, so
    the delete would fail); PostgreSQL 15 can name the one column to null, SQLite cannot. So two
    keys: ``column`` alone refers to ``table (id)`` ``ON DELETE SET NULL``, and the tenant-bound
    key (:func:`tenant_reference`) refuses another tenant's row. The latter is checked at commit:
    checked at the end of the statement, PostgreSQL may run it before the other key has set the
    column NULL (a table's foreign key triggers fire in the order of their generated names) and
    refuse the delete.
    """
    return (
        ForeignKeyConstraint([column], [f"{table}.id"], ondelete="SET NULL"),
        tenant_reference(column, table, deferrable=True, initially="DEFERRED"),
    )


def render_migration_item(type_: str, obj: Any, autogen_context: Any) -> str | bool:
    """Autogenerate writes our column types as plain SQLAlchemy ones (no app imports)."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False
