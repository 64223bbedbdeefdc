"""``authserver launch ...``"""

from __future__ import annotations

import json

import click
from flask.cli import with_appcontext

from authserver.cli.common import ACTOR
from authserver.cli.common import Commands
from authserver.cli.common import emit
from authserver.cli.common import service_command
from authserver.cli.common import tenant_named
from authserver.errors import ValidationError
from authserver.launch import service


@click.group(cls=Commands)
def launch() -> None:
    """Start EHR launches (the opaque launch id an app gets with iss)."""


@launch.command("create")
@click.argument("tenant")
@click.option("--patient", required=True, help="Patient id in context.")
@click.option("--encounter", help="Encounter id in context.")
@click.option("--fhir-context", help='SMART 2.2 fhirContext JSON, e.g. [{"reference": "X/1"}].')
@click.option("--intent", help="What the app is launched for, e.g. reconcile-medications.")
@click.option("--need-patient-banner", is_flag=True, help="The app must show a patient banner.")
@click.option(
    "--client",
    "client_id",
    help="Required: the client_id of the app the launch is for; only it may use the launch.",
)
@with_appcontext
@service_command
def create(
    tenant: str,
    patient: str,
    encounter: str | None,
    fhir_context: str | None,
    intent: str | None,
    need_patient_banner: bool,
    client_id: str | None,
) -> None:
    """Create a launch at TENANT for one app; prints its id (shown once), iss and lifetime."""
    if client_id is None:
        # Checked here to say what it is for; click's own check would only name it.
        raise ValidationError("--client is required: the client_id of the app the launch is for")
    tenant_row = tenant_named(tenant)
    launch_id, row = service.create_launch(
        tenant_row,
        patient=patient,
        encounter=encounter,
        fhir_context=_parse_json(fhir_context),
        intent=intent,
        need_patient_banner=need_patient_banner,
        client_id=client_id,
        actor=ACTOR,
    )
    emit(service.describe(tenant_row, launch_id, row))


def _parse_json(text: str | None) -> object:
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValidationError(f"--fhir-context is not JSON: {error.msg}") from None
    except RecursionError:
        raise ValidationError("--fhir-context nests too deeply to be fhirContext") from None
