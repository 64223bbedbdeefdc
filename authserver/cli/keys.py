"""``authserver keys ...``"""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from authserver.cli.common import ACTOR
from authserver.cli.common import emit
from authserver.cli.common import service_command
from authserver.cli.common import tenant_named
from authserver.keys import service


@click.group()
def keys() -> None:
    """List, rotate and retire a tenant's signing keys."""


@keys.command("list")
@click.argument("tenant")
@with_appcontext
@service_command
def list_(tenant: str) -> None:
    """List TENANT's keys, newest last."""
    emit([key.describe() for key in service.list_keys(tenant_named(tenant))])


@keys.command("rotate")
@click.argument("tenant")
@click.option("--alg", type=click.Choice(["RS256", "ES256"]), default="RS256", show_default=True)
@with_appcontext
@service_command
def rotate(tenant: str, alg: str) -> None:
    """Make a new signer; the old key stays in the JWKS until retired."""
    emit(service.rotate(tenant_named(tenant), alg, actor=ACTOR).describe())


# A kid is a base64url thumbprint and may start with "-": never read it as an option.
@keys.command("retire", context_settings={"ignore_unknown_options": True})
@click.argument("tenant")
@click.argument("kid")
@with_appcontext
@service_command
def retire(tenant: str, kid: str) -> None:
    """Remove KID from TENANT's JWKS; tokens it signed stop verifying."""
    emit(service.retire(tenant_named(tenant), kid, actor=ACTOR).describe())
