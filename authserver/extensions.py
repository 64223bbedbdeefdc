"""Extension objects, created unbound; ``create_app`` binds them."""

from __future__ import annotations

from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from sqlalchemy.exc import IntegrityError

from authserver.errors import Conflict
from authserver.models import Base
from authserver.models import render_migration_item

db = SQLAlchemy(model_class=Base)
migrate = Migrate(compare_type=True, render_as_batch=True, render_item=render_migration_item)
csrf = CSRFProtect()


# A unique key (or primary key) already held: PostgreSQL's SQLSTATE, SQLite's extended code.
UNIQUE_VIOLATIONS = frozenset({"23505", "SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY"})


def flush_or_conflict(message: str) -> None:
    """Flush the session; a unique key another transaction took since our own check (another
    instance, another command) rolls back and is a :class:`~authserver.errors.Conflict`.

    :raises IntegrityError: after the rollback, for any other constraint (e.g. a row this one
        refers to, deleted meanwhile): ``message`` says the thing exists, which it would not.
    """
    try:
        db.session.flush()
    except IntegrityError as error:
        db.session.rollback()
        if not is_unique_violation(error):
            raise
        raise Conflict(message) from None


def is_unique_violation(error: IntegrityError) -> bool:
    driver_error = error.orig
    code = getattr(driver_error, "sqlstate", None) or getattr(driver_error, "sqlite_errorname", "")
    return code in UNIQUE_VIOLATIONS
