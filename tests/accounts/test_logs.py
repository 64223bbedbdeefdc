"""No password, password hash or login token in the logs, however verbose an operator makes them:
SQLAlchemy logs statements with their parameters at INFO and result rows at DEBUG, and a user's
row holds the argon2 hash, so its loggers stay at WARNING."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from authserver.accounts import service
from authserver.extensions import db
from tests.fixtures.accounts import login

PASSWORD = "a clinic password 7 words long"
SQLALCHEMY_LOGGERS = (
    "sqlalchemy",
    "sqlalchemy.engine",
    "sqlalchemy.engine.Engine",
    "sqlalchemy.pool",
)


@pytest.fixture
def app(worker_loggers, app):
    """The app, built as a production worker builds it (``wsgi.py``)."""
    return app


@pytest.fixture
def worker_loggers():
    """SQLAlchemy's loggers as a worker finds them: untouched. The suite's own migration run
    (``migrations/env.py`` reads ``alembic.ini``) set them to WARN, which a worker serving
    requests never does."""
    loggers = [logging.getLogger(name) for name in SQLALCHEMY_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.NOTSET)
    yield
    for logger, level in zip(loggers, levels, strict=True):
        logger.setLevel(level)


def test_creating_a_user_and_signing_in_log_no_hash_token_or_password(
    app, client, tenant, make_gateway, issue, caplog
):
    gateway = make_gateway(tenant)
    with caplog.at_level(logging.DEBUG):
        user = service.create_user(tenant, "dr.log", PASSWORD, ["physician"])
        db.session.commit()
        signed_in = login(client, tenant.slug, "dr.log", PASSWORD)
        issued = issue(tenant, user=user)
        # The gateway's introspection, twice: the second is answered by the fast path's raw
        # connection (authserver/rawdb.py), outside SQLAlchemy's logging.
        for _ in range(2):
            assert gateway.introspect(client, issued.access_token).json["active"] is True

    assert signed_in.status_code == 303
    assert caplog.records  # the requests were logged at DEBUG
    login_cookie = client.get_cookie("authserver_login", path=f"/t/{tenant.slug}/")
    secrets = [
        PASSWORD,
        user.password_hash,
        "$argon2",
        login_cookie.value,
        gateway.secret,
        issued.access_token,
        issued.refresh_token,
    ]
    assert [secret[:12] for secret in secrets if secret in caplog.text] == []


def test_a_database_error_quotes_no_parameter(app, tenant, make_user):
    # A failed statement's message ends up in a traceback in the log; its parameters may be a
    # password hash being written.
    password_hash = make_user(tenant, "dr.hash").password_hash
    statement = text("UPDATE users SET password_hash = :password_hash WHERE no_such_column = 1")

    with pytest.raises(DBAPIError) as raised:
        db.session.execute(statement, {"password_hash": password_hash})
    db.session.rollback()

    assert password_hash not in str(raised.value)
    assert "no_such_column" in str(raised.value)  # the statement itself is still named
