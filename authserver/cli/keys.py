"""``authserver keys ...``"""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from authserver.cli.common import ACTOR
from authserver.cli.common import Commands
from authserver.cli.common import emit
from authserver.cli.common import nothing_changed
from authserver.cli.common import service_command
from authserver.cli.common import tenant_named
from authserver.keys import service

ALG = click.option(
    "--alg", type=click.Choice(["RS256", "ES256"]), default="RS256", show_default=True
)


@click.group(cls=Commands)
def keys() -> None:
    """List, stage, rotate and retire a tenant's signing keys."""


@keys.command("list")
@click.argument("tenant")
@with_appcontext
@service_command
def list_(tenant: str) -> None:
    """List TENANT's keys, newest last."""
    emit([key.describe() for key in service.list_keys(tenant_named(tenant))])


@keys.command("stage")
@click.argument("tenant")
@ALG
@with_appcontext
@service_command
def stage(tenant: str, alg: str) -> None:
    """Publish TENANT's next ALG signer in the JWKS.

    It signs nothing until `keys rotate` makes it the signer.
    """
    emit(service.stage(tenant_named(tenant), alg, actor=ACTOR).describe())


@keys.command("rotate")
@click.argument("tenant")
@ALG
@click.option(
    "--now",
    is_flag=True,
    help="Switch at once (a compromised key), before every verifier's cached JWKS holds the "
    "new key.",
)
@with_appcontext
@service_command
def rotate(tenant: str, alg: str, now: bool) -> None:
    """Make TENANT's staged ALG key the signer.

    The staged key must have been in the JWKS for as long as verifiers may cache it. The old
    signer stays in the JWKS until retired, and a successor is staged at once.
    """
    emit(service.rotate(tenant_named(tenant), alg, now=now, actor=ACTOR).describe())


# A kid is a base64url thumbprint and may start with "-": never read it as an option.
@keys.command("retire", context_settings={"ignore_unknown_options": True})
@click.argument("tenant")
@click.argument("kid")
@with_appcontext
@service_command
def retire(tenant: str, kid: str) -> None:
    """Remove KID from TENANT's JWKS; tokens it signed stop verifying."""
    outcome = service.retire(tenant_named(tenant), kid, actor=ACTOR)
    if not outcome.changed:
        nothing_changed(f"Key {kid} of tenant {tenant} is already retired")
    emit(outcome.row.describe())
