"""The migrations build exactly the schema the models describe, and undo it again."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask import current_app
from flask_migrate import downgrade
from flask_migrate import upgrade
from sqlalchemy import inspect

from authserver import create_app
from authserver.extensions import db
from authserver.models import Base
from tests.fixtures.database import app_config


def _migrated_app(make_database_url, tmp_path):
    return create_app(app_config(make_database_url("migrations"), tmp_path / "instance"))


def _differences():
    migrate = current_app.extensions["migrate"]
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts=migrate.configure_args)
        return compare_metadata(context, Base.metadata)


def _tables():
    return set(inspect(db.engine).get_table_names()) - {"alembic_version"}


def test_models_and_migrations_agree(make_database_url, tmp_path):
    app = _migrated_app(make_database_url, tmp_path)
    with app.app_context():
        upgrade(directory=app.extensions["migrate"].directory)
        try:
            assert _differences() == []
            assert _tables() == set(Base.metadata.tables)
        finally:
            db.engine.dispose()


def test_downgrade_to_base_removes_every_table_and_upgrade_works_again(make_database_url, tmp_path):
    app = _migrated_app(make_database_url, tmp_path)
    directory = app.extensions["migrate"].directory
    with app.app_context():
        try:
            upgrade(directory=directory)
            downgrade(directory=directory, revision="base")

            assert _tables() == set()

            upgrade(directory=directory)

            assert _tables() == set(Base.metadata.tables)
            assert _differences() == []
        finally:
            db.engine.dispose()
