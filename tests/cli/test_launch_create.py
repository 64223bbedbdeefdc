"""``authserver launch create`` refuses what it is missing or cannot read in one line, as it
refuses a bad patient or fhirContext (tests/launch/test_ehr_launch.py), never with click's usage."""

from __future__ import annotations

import pytest

from authserver.extensions import db
from authserver.launch.models import Launch
from tests.fixtures.commands import refused
from tests.fixtures.commands import run


@pytest.fixture
def app_client_id(tenant, make_client):
    return make_client(tenant).client.client_id


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["clinic-a", "--client", "{app}"], "Missing option '--patient'"),
        (["--patient", "pt-1", "--client", "{app}"], "Missing argument 'TENANT'"),
        (["clinic-a", "--patient", "pt-1", "--client", "{app}", "--pateint", "pt-2"], "--pateint"),
        (
            ["clinic-a", "--patient", "pt-1", "--client", "{app}", "--need-patient-banner=yes"],
            "'--need-patient-banner' does not take a value",
        ),
        (["clinic-a", "--patient", "pt-1", "--client"], "'--client' requires an argument"),
    ],
    ids=["no-patient", "no-tenant", "unknown-option", "value-for-a-flag", "option-without-value"],
)
def test_an_option_missing_or_unreadable_is_refused_in_one_line(cli, app_client_id, args, message):
    args = [arg.replace("{app}", app_client_id) for arg in args]

    line = refused(cli, "launch", "create", *args)

    assert message in line
    assert db.session.query(Launch).count() == 0


@pytest.mark.parametrize(
    "fhir_context",
    ['[{"canonical": "urn:\\ud800"}]', '[{"identifier": {"value": "\\udfff"}}]'],
    ids=["in-a-member", "in-an-identifier"],
)
def test_a_fhir_context_holding_a_lone_surrogate_is_refused(cli, app_client_id, fhir_context):
    """JSON can spell one (``\\ud800``), which no strict JSON parser reads: kept, it would ride
    in every access token of the launch."""
    args = ["clinic-a", "--patient", "pt-1", "--client", app_client_id]

    line = refused(cli, "launch", "create", *args, "--fhir-context", fhir_context)

    assert line == "Error: fhirContext must not hold a NUL character or a lone surrogate"
    assert db.session.query(Launch).count() == 0


def test_a_refusal_exits_1_like_every_other(cli, app_client_id):
    missing_patient = cli.invoke(args=["launch", "create", "clinic-a", "--client", app_client_id])
    missing_client = cli.invoke(args=["launch", "create", "clinic-a", "--patient", "pt-1"])

    assert missing_patient.exit_code == missing_client.exit_code == 1
    assert missing_client.stderr == (
        "Error: --client is required: the client_id of the app the launch is for\n"
    )


def test_the_same_command_complete_creates_the_launch(cli, app_client_id):
    shown = run(cli, "launch", "create", "clinic-a", "--patient", "pt-1", "--client", app_client_id)

    assert shown["launch"].startswith("asln_") and shown["patient"] == "pt-1"
    assert db.session.query(Launch).count() == 1
