"""Creating, resolving and spending EHR launches (SMART 2.2 #step-2-launch-ehr, EHR-01..05).

A launch id is a random ``asln_…`` token shown once; only its SHA-256 digest is kept. It belongs to
one tenant, is bound to the one app it was issued for (EHR-05), expires after
``tenant.launch_lifetime`` seconds, and is spent when a code is issued from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from authlib.oauth2.rfc6749 import InvalidRequestError
from sqlalchemy import update

from authserver import security
from authserver import validation
from authserver.audit import service as audit
from authserver.audit.events import AuditEvent
from authserver.clients import service as clients
from authserver.clients.models import APP
from authserver.clients.models import Client
from authserver.errors import ValidationError
from authserver.extensions import db
from authserver.launch.models import Launch
from authserver.models import utcnow
from authserver.smart import context as launch_context
from authserver.tenancy import service as tenants
from authserver.tenancy.models import Tenant
from authserver.tokens.limits import MAX_INTENT_LENGTH

LAUNCH_PREFIX = "asln"
STYLE_PATH = "/smart-style.json"


def create_launch(
    tenant: Tenant,
    *,
    patient: Any,
    encounter: Any = None,
    fhir_context: Any = None,
    intent: Any = None,
    need_patient_banner: Any = False,
    client_id: Any,
    actor: str,
) -> tuple[str, Launch]:
    """Record an EHR launch for the app ``client_id``; returns the launch id (shown this once)
    and its row.

    :param client_id: the app the launch is for, the only one that may use it (EHR-05).
    :raises ValidationError: for a malformed patient, encounter, fhirContext or intent, one
        longer than an access token can carry (:mod:`authserver.tokens.limits`), or a missing
        ``client_id`` or one naming no app of this tenant.
    """
    try:
        patient = launch_context.fhir_id(patient, "patient")
        # Only a member left out (or null) is absent: "" or {} is a mistake to refuse, not to drop.
        if encounter is not None:
            encounter = launch_context.fhir_id(encounter, "encounter")
        if fhir_context is not None:
            fhir_context = launch_context.fhir_context(fhir_context) or None
    except ValueError as error:
        raise ValidationError(str(error)) from None
    if not isinstance(need_patient_banner, bool):
        raise ValidationError("need_patient_banner must be true or false")
    if intent is not None and not isinstance(intent, str):
        raise ValidationError("intent must be a string")
    intent = validation.text(intent, "intent", max_length=MAX_INTENT_LENGTH, required=False)
    try:
        intent = launch_context.intent(intent)
    except ValueError as error:
        raise ValidationError(str(error)) from None
    app = _bound_app(tenant, client_id)
    launch_id = security.new_token(LAUNCH_PREFIX)
    row = Launch(
        tenant_id=tenant.id,
        launch_digest=security.digest(launch_id),
        patient=patient,
        encounter=encounter,
        fhir_context=fhir_context,
        intent=intent,
        need_patient_banner=need_patient_banner,
        client_pk=app.id,
        created_by=actor,
        expires_at=utcnow() + timedelta(seconds=tenant.launch_lifetime),
    )
    db.session.add(row)
    db.session.flush()
    audit.record(
        tenant, AuditEvent.LAUNCH_CREATED, actor=actor, subject=patient, client_id=app.client_id
    )
    return launch_id, row


def _bound_app(tenant: Tenant, client_id: Any) -> Client:
    """The app ``client_id`` names: the one app that may use the launch.

    :raises ValidationError: for no ``client_id`` (an unbound launch would be any app's: another
        app of the tenant could redeem it and get its patient), one that is not a non-empty
        string, or one that names no app of ``tenant``: a bad member of the request like any
        other, so ``invalid_request``, and the same answer for a client another tenant has as
        for none.
    """
    if client_id is None:
        raise ValidationError(
            "client_id is required: the client_id of the app this launch is for, the only app "
            "that may use it"
        )
    if not isinstance(client_id, str) or not client_id:
        raise ValidationError("client_id must be the client_id of one of this tenant's apps")
    client = clients.find_client(tenant, client_id)
    if client is None:
        raise ValidationError(f"no client {client_id!r} at this tenant")
    if client.kind != APP:
        raise ValidationError(f"client {client_id!r} is not an app")
    return client


@dataclass
class LaunchGrant:
    """A live launch being used by an authorization request."""

    tenant: Tenant
    row: Launch

    def token_context(self) -> dict[str, Any]:
        """The launch context members of the token response (EHR-02, TOK-09..11)."""
        return {
            "patient": self.row.patient,
            "encounter": self.row.encounter,
            "fhirContext": self.row.fhir_context,
            "need_patient_banner": self.row.need_patient_banner,
            "smart_style_url": style_url(self.tenant),
            "intent": self.row.intent,
        }

    def consume(self) -> None:
        """Spend the launch; a concurrent use that got there first wins.

        :raises InvalidRequestError: when it was spent meanwhile.
        """
        statement = (
            update(Launch)
            .where(Launch.id == self.row.id, Launch.used_at.is_(None))
            .values(used_at=utcnow())
        )
        result = db.session.execute(statement, execution_options={"synchronize_session": False})
        if result.rowcount != 1:
            raise InvalidRequestError("The 'launch' was already used.")


def resolve(tenant: Tenant, launch_id: str, client: Any) -> LaunchGrant | None:
    """The live launch ``launch_id`` of ``tenant`` that ``client`` may use, or None (AUTHZ-20):
    unknown, another tenant's, expired, spent or bound to another app are all none, and so is
    one bound to no app (stored before launches had to be bound: any app could have used it)."""
    row = db.session.scalar(
        Launch.for_tenant(tenant).where(Launch.launch_digest == security.digest(launch_id))
    )
    if row is None or row.used_at is not None or row.expires_at <= utcnow():
        return None
    if row.client_pk != client.id:  # another app's, or (stored unbound) no app's
        return None
    return LaunchGrant(tenant, row)


def style_url(tenant: Tenant) -> str:
    return tenants.urls(tenant).url(STYLE_PATH)


def describe(tenant: Tenant, launch_id: str, row: Launch) -> dict[str, Any]:
    """What the EHR needs to open the app: ``{launch URL}?iss=…&launch=…`` (EHR-01)."""
    return {
        "launch": launch_id,
        "iss": tenants.urls(tenant).fhir_base_url,
        "expires_in": max(0, int((row.expires_at - utcnow()).total_seconds())),
        "patient": row.patient,
    }
