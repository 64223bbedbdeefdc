"""``authserver purge-expired``"""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy.exc import SQLAlchemyError

from authserver import upkeep
from authserver.cli.common import OneLineErrors
from authserver.cli.common import emit


@click.command("purge-expired", cls=OneLineErrors)
@with_appcontext
def purge_expired() -> None:
    """Delete every expired token, code, launch, login session and assertion record now.

    The server does this by itself a batch at a time (authserver/upkeep.py); run this for a
    database that grew before, or from cron. Tokens, codes, launches and login sessions are kept
    AUTHSERVER_EXPIRED_ROW_RETENTION seconds after they expire.
    """
    try:
        forgotten = upkeep.purge_expired()
    except SQLAlchemyError as error:
        raise click.ClickException(
            f"purging stopped: the database refused ({type(error).__name__}); "
            "what was deleted before stays deleted, run it again"
        ) from None
    retention = current_app.config["AUTHSERVER_EXPIRED_ROW_RETENTION"]
    emit({"retention_seconds": retention, "deleted": forgotten})
