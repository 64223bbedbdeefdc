"""``authserver user ...``"""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from authserver.accounts import service
from authserver.cli.common import ACTOR
from authserver.cli.common import Commands
from authserver.cli.common import emit
from authserver.cli.common import nothing_changed
from authserver.cli.common import password_from_stdin
from authserver.cli.common import service_command
from authserver.cli.common import tenant_named


@click.group(cls=Commands)
def user() -> None:
    """Create and manage staff and patient accounts."""


@user.command("create")
@click.argument("tenant")
@click.argument("username")
@click.option(
    "--role", "roles", multiple=True, required=True, help="A role of the tenant (repeat)."
)
@click.option("--fhir-user", help="Practitioner/ID, PractitionerRole/ID, Patient/ID, ...")
@click.option(
    "--password-stdin", is_flag=True, required=True, help="Read the password from standard input."
)
@with_appcontext
@service_command
def create(
    tenant: str, username: str, roles: tuple[str, ...], fhir_user: str | None, password_stdin: bool
) -> None:
    """Create USERNAME at TENANT; the password comes from stdin, never the command line."""
    password = password_from_stdin()
    created = service.create_user(
        tenant_named(tenant), username, password, list(roles), fhir_user=fhir_user, actor=ACTOR
    )
    emit(service.describe_user(created))


@user.command("list")
@click.argument("tenant")
@with_appcontext
@service_command
def list_(tenant: str) -> None:
    """List TENANT's accounts."""
    emit([service.describe_user(row) for row in service.all_users(tenant_named(tenant))])


@user.command("set-roles")
@click.argument("tenant")
@click.argument("username")
@click.option(
    "--role",
    "roles",
    multiple=True,
    required=True,
    help="A role of the tenant (repeat); together they replace the user's roles.",
)
@with_appcontext
@service_command
def set_roles(tenant: str, username: str, roles: tuple[str, ...]) -> None:
    """Replace the roles of USERNAME at TENANT with the given ones.

    Access tokens already issued keep their scope until they expire; each refresh from now on
    gets only what the new roles allow.
    """
    tenant_row = tenant_named(tenant)
    account = service.get_user(tenant_row, username)
    if not service.set_roles(tenant_row, account, list(roles), actor=ACTOR).changed:
        held = ", ".join(account.role_names)
        nothing_changed(f"User {account.username} of tenant {tenant} already has roles {held}")
    emit(service.describe_user(account))


@user.command("set-password")
@click.argument("tenant")
@click.argument("username")
@click.option(
    "--password-stdin", is_flag=True, required=True, help="Read the password from standard input."
)
@with_appcontext
@service_command
def set_password(tenant: str, username: str, password_stdin: bool) -> None:
    """Give USERNAME at TENANT a new password (from stdin) and sign them out everywhere.

    Their login sessions end; their OAuth tokens stay valid, apart from online_access refresh
    tokens, which end with the login. After a suspected compromise, revoke the tokens too:

    \b
      authserver token revoke --tenant TENANT --user USERNAME
    """
    tenant_row = tenant_named(tenant)
    account = service.get_user(tenant_row, username)
    password = password_from_stdin()
    ended = service.set_password(tenant_row, account, password, actor=ACTOR)
    emit({**service.describe_user(account), "sessions_ended": ended})


@user.command("disable")
@click.argument("tenant")
@click.argument("username")
@with_appcontext
@service_command
def disable(tenant: str, username: str) -> None:
    """Disable USERNAME at TENANT and end their login sessions."""
    _set_status(tenant, username, active=False)


@user.command("enable")
@click.argument("tenant")
@click.argument("username")
@with_appcontext
@service_command
def enable(tenant: str, username: str) -> None:
    """Enable USERNAME at TENANT again."""
    _set_status(tenant, username, active=True)


def _set_status(tenant: str, username: str, *, active: bool) -> None:
    tenant_row = tenant_named(tenant)
    account = service.get_user(tenant_row, username)
    if not service.set_status(tenant_row, account, active, actor=ACTOR).changed:
        status = "enabled" if active else "disabled"
        nothing_changed(f"User {account.username} of tenant {tenant} is already {status}")
    emit(service.describe_user(account))
