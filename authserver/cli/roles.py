"""``authserver role ...``"""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from authserver.accounts import service
from authserver.cli.common import ACTOR
from authserver.cli.common import Commands
from authserver.cli.common import emit
from authserver.cli.common import service_command
from authserver.cli.common import tenant_named


@click.group(cls=Commands)
def role() -> None:
    """Show and change the scope ceilings of a tenant's roles."""


@role.command("list")
@click.argument("tenant")
@with_appcontext
@service_command
def list_(tenant: str) -> None:
    """List TENANT's roles with the scopes each may grant."""
    emit([service.describe_role(row) for row in service.list_roles(tenant_named(tenant))])


@role.command("set-ceiling")
@click.argument("tenant")
@click.argument("role_name", metavar="ROLE")
@click.argument("scopes", nargs=-1, required=True)
@with_appcontext
@service_command
def set_ceiling(tenant: str, role_name: str, scopes: tuple[str, ...]) -> None:
    """Make SCOPES (patient/ or user/ resource scopes) the most ROLE's holders may grant."""
    changed = service.set_role_ceiling(tenant_named(tenant), role_name, list(scopes), actor=ACTOR)
    emit(service.describe_role(changed))
