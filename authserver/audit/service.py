"""Writing and reading audit records. Callers pass identifiers and outcomes, never secrets."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import and_
from sqlalchemy import or_

from authserver.accounts.usernames import normalize_username
from authserver.accounts.usernames import unknown_username_subject
from authserver.audit.events import USERNAME_EVENTS
from authserver.audit.events import AuditEvent
from authserver.audit.models import AuditRecord
from authserver.extensions import db
from authserver.tenancy.models import Tenant

log = logging.getLogger("authserver.audit")


def record(
    tenant: Any,
    event: AuditEvent,
    *,
    actor: str | None = None,
    subject: str | None = None,
    **details: Any,
) -> AuditRecord:
    """Add an audit record for ``tenant`` to the current transaction."""
    entry = AuditRecord(
        tenant_id=tenant.id, event=str(event), actor=actor, subject=subject, details=details
    )
    db.session.add(entry)
    log.info(
        "%s tenant=%s actor=%s subject=%s", event, tenant.slug, loggable(actor), loggable(subject)
    )
    return entry


def loggable(value: str | None) -> str | None:
    """``value`` for one log line: a subject may be anything typed at a login page, and one
    holding a line break or another control character would write a forged line of its own
    (CWE-117), so such a value is logged as its escaped ``repr``."""
    if value is None or value.isprintable():
        return value
    return repr(value)


def recent(
    tenant: Tenant,
    *,
    limit: int,
    event: AuditEvent | None = None,
    subject: str | None = None,
) -> list[AuditRecord]:
    """The newest ``limit`` records of ``tenant`` (of ``event``, about ``subject``), oldest
    first. Another tenant's records are never among them."""
    query = AuditRecord.for_tenant(tenant)
    if event is not None:
        query = query.where(AuditRecord.event == str(event))
    if subject is not None:
        query = query.where(_about(tenant, subject))
    newest = db.session.scalars(query.order_by(AuditRecord.id.desc()).limit(limit))
    return list(reversed(newest.all()))


def _about(tenant: Tenant, subject: str) -> Any:
    """Records about ``subject`` as an operator types it: ids, client ids, kids, slugs and role
    names exactly; a user's records also with the username read as the login page reads it
    (``Dr.Smith`` is ``dr.smith``), failed logins at a name nobody had included."""
    username = normalize_username(subject)
    return or_(
        AuditRecord.subject == subject,
        and_(
            AuditRecord.event.in_([str(event) for event in USERNAME_EVENTS]),
            AuditRecord.subject == username,
        ),
        and_(
            AuditRecord.event == str(AuditEvent.LOGIN_FAILED),
            AuditRecord.subject == unknown_username_subject(tenant, username),
        ),
    )
