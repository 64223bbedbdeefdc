"""The ``authserver`` command: Flask's CLI with one group per domain.

Commands that create something print JSON on stdout; bad input prints one line and exits non-zero.
"""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import FlaskGroup

from authserver.config import ConfigError


def register_commands(app: Flask) -> None:
    from authserver.cli import audit
    from authserver.cli import clients
    from authserver.cli import demo
    from authserver.cli import keys
    from authserver.cli import launch
    from authserver.cli import roles
    from authserver.cli import tenants
    from authserver.cli import tokens
    from authserver.cli import upkeep
    from authserver.cli import users

    for command in (
        tenants.tenant,
        users.user,
        clients.client,
        keys.keys,
        tokens.token,
        demo.demo,
        roles.role,
        launch.launch,
        audit.audit,
        upkeep.purge_expired,
    ):
        app.cli.add_command(command)


def _create_app() -> Flask:
    from authserver import create_app

    try:
        return create_app()
    except ConfigError as error:
        raise click.ClickException(str(error)) from None


@click.group(cls=FlaskGroup, create_app=_create_app, add_version_option=False)
def main() -> None:
    """authserver: tenant-aware SMART on FHIR authorization server."""
