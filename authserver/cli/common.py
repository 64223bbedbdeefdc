"""What every command shares: JSON output, one-line errors, the tenant argument."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any
from typing import TypeVar

import click

from authserver.errors import ServiceError
from authserver.extensions import db
from authserver.tenancy import service as tenants
from authserver.tenancy.models import Tenant

Command = TypeVar("Command", bound=Callable[..., Any])
ACTOR = "cli"


def emit(document: Any) -> None:
    click.echo(json.dumps(document, indent=2))


def service_command(command: Command) -> Command:
    """Commit when ``command`` succeeds; on a refused request roll back and fail in one line."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            result = command(*args, **kwargs)
        except ServiceError as error:
            db.session.rollback()
            raise click.ClickException(str(error)) from None
        db.session.commit()
        return result

    return wrapper  # type: ignore[return-value]


class OneLineErrors(click.Command):
    """A command whose missing or malformed options are refused like any other bad input: one
    ``Error:`` line and exit status 1, rather than click's usage text and status 2."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as error:
            raise click.ClickException(error.format_message()) from None


class Commands(click.Group):
    """A group of commands that refuse bad options in one line (:class:`OneLineErrors`)."""

    command_class = OneLineErrors


def nothing_changed(message: str) -> None:
    """Say on stderr that what the command asks for holds already: it changes and audits
    nothing, and still succeeds, printing the thing as it is on stdout."""
    click.echo(f"{message}; nothing changed.", err=True)


def tenant_named(slug: str) -> Tenant:
    return tenants.get_tenant(slug)
