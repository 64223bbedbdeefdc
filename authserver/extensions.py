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


def flush_or_conflict(message: str) -> None:
    """Flush the session; a unique key another transaction took since our own check (another
    instance, another command) rolls back and is a :class:`~authserver.errors.Conflict`."""
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise Conflict(message) from None
