"""What every command shares: JSON output, one-line errors, the tenant argument, the password
on standard input."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any
from typing import TypeVar

import click

from authserver.errors import ServiceError
from authserver.extensions import db
from authserver.tenancy import service as tenants
from authserver.tenancy.models import Tenant
from authserver.validation import storable

Command = TypeVar("Command", bound=Callable[..., Any])
ACTOR = "cli"


def emit(document: Any) -> None:
    click.echo(json.dumps(document, indent=2))


def service_command(command: Command) -> Command:
    """Commit when ``command`` succeeds; on a refused request roll back and fail in one line.
    An argument that is not UTF-8 text is refused so before ``command`` runs."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        refuse_text_not_utf8(kwargs)
        try:
            result = command(*args, **kwargs)
        except ServiceError as error:
            db.session.rollback()
            raise click.ClickException(str(error)) from None
        db.session.commit()
        return result

    return wrapper  # type: ignore[return-value]


def refuse_text_not_utf8(values: dict[str, Any]) -> None:
    """Refuse the command's arguments and options if one is not UTF-8 text.

    Python hands a command-line byte that is not UTF-8 (a Latin-1 terminal's ``Clínica``,
    ``$'\\xff'``) to the command as a lone surrogate (PEP 383), which no database can hold or
    compare (:func:`authserver.validation.storable`).

    :param values: the command's parameters, by name.
    :raises click.ClickException: naming the first argument or option holding one.
    """
    for param in click.get_current_context().command.params:
        value = values.get(param.name or "")
        texts = value if isinstance(value, tuple | list) else (value,)
        if any(isinstance(text, str) and not storable(text) for text in texts):
            shown = param.opts[0] if isinstance(param, click.Option) else param.human_readable_name
            raise click.ClickException(f"{shown} is not valid UTF-8 text")


def password_from_stdin() -> str:
    """The first line of standard input: a password, which the command line would show to
    every user of the machine.

    :raises click.ClickException: when it is not UTF-8 text.
    """
    line = sys.stdin.buffer.readline()
    try:
        return line.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        raise click.ClickException("the password on standard input is not UTF-8 text") from None


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
