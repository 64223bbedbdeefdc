"""authserver: a tenant-aware SMART on FHIR authorization server.

:func:`create_app` is the only place the app is wired together.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from flask import Flask
from jinja2 import ChoiceLoader
from jinja2 import FileSystemLoader

from authserver import config
from authserver.sessions import TenantSessionInterface

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TEMPLATES_DIR = PROJECT_ROOT / "templates"
# The least verbose each of these loggers is, however verbose the rest is made. Authlib logs
# every issued token response, access and refresh tokens included, at DEBUG ("Issue token %r to
# %r"), and urllib3 every request's path and query (a client's jwks_uri may carry a token
# there). SQLAlchemy logs every statement's parameters at INFO (a password hash being written)
# and result rows at DEBUG (a user's row, read at every sign-in, holds the hash), and its pool
# each connection's comings and goings.
QUIET_LOGGERS = {
    "authlib": logging.INFO,
    "urllib3.connectionpool": logging.INFO,
    "sqlalchemy.engine": logging.WARNING,
    "sqlalchemy.pool": logging.WARNING,
}
MIGRATIONS_DIR = PROJECT_ROOT / "migrations"


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the app from ``AUTHSERVER_*`` settings, with ``test_config`` overriding them.

    :raises config.ConfigError: when a production setting is missing (the message says
        how to fix it).
    """
    settings = config.load(test_config)
    app = Flask(
        __name__,
        instance_path=settings["AUTHSERVER_INSTANCE_PATH"],
        instance_relative_config=True,
        template_folder=str(TEMPLATES_DIR),
    )
    settings = config.finalize(settings, Path(app.instance_path))
    app.config.from_mapping(settings)
    app.config.update(
        SQLALCHEMY_DATABASE_URI=config.sqlalchemy_url(settings["AUTHSERVER_DATABASE_URL"]),
        # A ping per checkout finds connections a PostgreSQL restart dropped; SQLite has none.
        # A failed statement's error (and so its logged traceback) names no parameter: one may
        # be a password hash or a token digest.
        SQLALCHEMY_ENGINE_OPTIONS={
            "pool_pre_ping": not settings["AUTHSERVER_DATABASE_URL"].startswith("sqlite"),
            "hide_parameters": True,
        },
        SECRET_KEY=settings["AUTHSERVER_SECRET_KEY"],
        MAX_CONTENT_LENGTH=settings["AUTHSERVER_MAX_REQUEST_BYTES"],
        SESSION_COOKIE_SECURE=settings["AUTHSERVER_PUBLIC_URL"].startswith("https://"),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        JSON_SORT_KEYS=False,
    )
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.session_interface = TenantSessionInterface()
    app.jinja_loader = ChoiceLoader(
        [FileSystemLoader(settings["AUTHSERVER_TEMPLATE_DIR"]), app.jinja_loader]  # type: ignore[list-item]
    )
    for name, level in QUIET_LOGGERS.items():
        logger = logging.getLogger(name)
        logger.setLevel(max(logger.level, level))
    _init_extensions(app)
    _register_blueprints(app)
    from authserver.hotpaths import HotPaths

    # The gateway's introspection and Backend Services tokens are answered before Flask.
    app.wsgi_app = HotPaths(app)  # type: ignore[method-assign]
    return app


def _init_extensions(app: Flask) -> None:
    from authserver import db_events
    from authserver import inputs
    from authserver import rawdb
    from authserver import schema  # noqa: F401 - every model registered before anything runs
    from authserver import web
    from authserver.accounts.passwords import Passwords
    from authserver.extensions import csrf
    from authserver.extensions import db
    from authserver.extensions import migrate
    from authserver.oauth import fastpath as token_fastpath
    from authserver.oauth import server
    from authserver.tokens import fastpath

    db.init_app(app)
    db_events.init_app(app)
    with app.app_context():
        connections = rawdb.init_app(app, db.engine)
        fastpath.init_app(app, connections)
        token_fastpath.init_app(app, connections, db.engine)
    migrate.init_app(app, db, directory=str(MIGRATIONS_DIR))
    csrf.init_app(app)
    app.extensions["authserver.passwords"] = Passwords.from_config(app.config)
    server.init_app(app)
    web.init_app(app)
    inputs.init_app(app)


def _register_blueprints(app: Flask) -> None:
    from authserver import health
    from authserver.accounts import views as accounts
    from authserver.cli import register_commands
    from authserver.keys import views as keys
    from authserver.launch import views as launch
    from authserver.oauth import authorize
    from authserver.oauth import views as oauth
    from authserver.smart import views as smart
    from authserver.tenancy.resolution import tenant_blueprint

    app.register_blueprint(
        tenant_blueprint(accounts.bp, keys.bp, smart.bp, oauth.bp, authorize.bp, launch.bp)
    )
    app.register_blueprint(health.bp)
    register_commands(app)
