"""Forgetting what has expired, so that the tables every token and login add to stay the size of
what is live.

Every issued token, authorization code, EHR launch, login session and accepted client assertion
is a row. Once it has expired the row decides nothing any more: an expired token, code or launch
is refused (introspection answers ``{"active": false}`` by the token's own ``exp``), an expired
login asks for a new one, and an assertion's ``jti`` has to be unique only while the assertion
lives. So :func:`purge_expired` deletes them: assertion records as soon as they expire, the others
``AUTHSERVER_EXPIRED_ROW_RETENTION`` seconds after (an hour by default: room for instances' clocks
to differ, and the recent past for an operator looking into an incident; the audit log keeps the
events for good).

It runs by itself: one request in :data:`PURGE_ONE_IN` that added a row (a token issued, an
assertion accepted) first forgets one batch of each table (:func:`now_and_then`), so the purge
keeps pace with however fast rows come, on every instance, with no scheduler to run. Each batch
is its own short transaction of at most :data:`BATCH_SIZE` rows, taken oldest first; on
PostgreSQL instances purging at once skip each other's rows (``SKIP LOCKED``). ``authserver
purge-expired`` forgets everything due at once, for a database that grew before this ran, or
for a cron job.

Deleting an expired token sends no cache notification (migration 9c4e2b7a1d05): it changes no
introspection answer. Login sessions go last, after the tokens and codes that refer to them.
"""

from __future__ import annotations

import logging
import secrets
from datetime import datetime
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import delete
from sqlalchemy import select

from authserver.accounts.models import LoginSession
from authserver.clients.models import UsedAssertion
from authserver.extensions import db
from authserver.launch.models import Launch
from authserver.models import utcnow
from authserver.oauth.models import AuthorizationCode
from authserver.tokens.models import IssuedToken

log = logging.getLogger(__name__)

# One request in this many that added a row purges a batch of each table.
PURGE_ONE_IN = 500
# Rows one statement deletes at most: a short transaction, however much is due.
BATCH_SIZE = 2000
# What is forgotten, in this order (a login session after the tokens and codes of it), and
# whether it is kept for the retention after it expires.
EXPIRING: tuple[tuple[Any, bool], ...] = (
    (IssuedToken, True),
    (AuthorizationCode, True),
    (Launch, True),
    (UsedAssertion, False),
    (LoginSession, True),
)


def now_and_then() -> None:
    """One time in :data:`PURGE_ONE_IN`, forget a batch of each table's expired rows.

    Called by a request that added a row, once it is committed: the purge is upkeep, so a failure
    is logged and never the request's.
    """
    if secrets.randbelow(PURGE_ONE_IN):
        return
    try:
        purge_expired(batches=1)
    # Whatever it is: the request's own work is committed, and the token fast path would take
    # an escaping error for its own and hand the spent assertion to the full path.
    except Exception as error:  # noqa: BLE001
        # The type only: a message could quote the statement's parameters.
        log.warning("purging expired rows failed (%s)", type(error).__name__)


def purge_expired(now: datetime | None = None, *, batches: int | None = None) -> dict[str, int]:
    """Delete the rows of every tenant that expired before their retention; how many, by table.

    :param batches: the most batches of :data:`BATCH_SIZE` rows per table; None for all due.
    """
    now = now or utcnow()
    retention = timedelta(seconds=current_app.config["AUTHSERVER_EXPIRED_ROW_RETENTION"])
    forgotten = {}
    for model, retained in EXPIRING:
        cutoff = now - retention if retained else now
        forgotten[model.__tablename__] = _purge_table(model, cutoff, batches)
    return forgotten


def _purge_table(model: Any, cutoff: datetime, batches: int | None) -> int:
    total, done = 0, 0
    while batches is None or done < batches:
        with db.engine.begin() as connection:
            deleted = connection.execute(_batch(model, cutoff, connection)).rowcount
        total, done = total + deleted, done + 1
        if deleted < BATCH_SIZE:
            break
    return total


def _batch(model: Any, cutoff: datetime, connection: Any) -> Any:
    """``DELETE`` of the :data:`BATCH_SIZE` oldest rows of ``model`` that expired by ``cutoff``."""
    due = (
        select(model.id)
        .where(model.expires_at <= cutoff)
        .order_by(model.expires_at)
        .limit(BATCH_SIZE)
    )
    if connection.dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)  # another instance's batch: not ours
    return delete(model).where(model.id.in_(due.scalar_subquery()))
