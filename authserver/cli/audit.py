"""``authserver audit ...``"""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from authserver.audit import service
from authserver.audit.events import AuditEvent
from authserver.cli.common import Commands
from authserver.cli.common import emit
from authserver.cli.common import service_command
from authserver.cli.common import tenant_named

MAX_LIMIT = 1000


@click.group(cls=Commands)
def audit() -> None:
    """Read a tenant's audit log."""


@audit.command("list")
@click.argument("tenant")
@click.option("--event", type=click.Choice([str(event) for event in AuditEvent]))
@click.option(
    "--subject",
    help="Only records about this user (in any case, as at login), client, key...",
)
@click.option(
    "--limit",
    type=click.IntRange(1, MAX_LIMIT),
    default=50,
    show_default=True,
    help="How many of the newest records.",
)
@with_appcontext
@service_command
def list_(tenant: str, event: str | None, subject: str | None, limit: int) -> None:
    """The newest records of TENANT's audit log, oldest first."""
    records = service.recent(
        tenant_named(tenant),
        limit=limit,
        event=AuditEvent(event) if event else None,
        subject=subject,
    )
    emit([record.describe() for record in records])
