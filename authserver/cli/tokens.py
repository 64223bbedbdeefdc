"""``authserver token ...``"""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from authserver.accounts import service as accounts
from authserver.cli.common import ACTOR
from authserver.cli.common import Commands
from authserver.cli.common import emit
from authserver.cli.common import service_command
from authserver.cli.common import tenant_named
from authserver.clients import service as clients
from authserver.errors import ValidationError
from authserver.tokens import revocation


@click.group(cls=Commands)
def token() -> None:
    """Revoke issued tokens."""


@token.command("revoke")
@click.option("--tenant", "tenant_slug", required=True, help="The tenant's slug.")
@click.option("--user", "username", help="Revoke every token issued for this user.")
@click.option("--client", "client_id", help="Revoke every token issued to this client.")
@with_appcontext
@service_command
def revoke(tenant_slug: str, username: str | None, client_id: str | None) -> None:
    """Revoke every live token of one user or one client; introspection says inactive at once."""
    if (username is None) == (client_id is None):
        raise ValidationError("give exactly one of --user or --client")
    tenant = tenant_named(tenant_slug)
    if username is not None:
        user = accounts.get_user(tenant, username)
        revoked = revocation.revoke_for_user(tenant, user, actor=ACTOR)
        emit({"tenant": tenant.slug, "user": user.username, "revoked": revoked})
    else:
        client = clients.get_client(tenant, client_id or "")
        revoked = revocation.revoke_for_client(tenant, client, actor=ACTOR)
        emit({"tenant": tenant.slug, "client_id": client.client_id, "revoked": revoked})
