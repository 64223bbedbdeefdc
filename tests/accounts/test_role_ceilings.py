"""Role ceilings: minimum-necessary defaults as tenant data, changed only through the service."""

from __future__ import annotations

import json

import pytest
from flask_migrate import downgrade
from flask_migrate import upgrade
from sqlalchemy import select
from sqlalchemy import text

from authserver import create_app
from authserver.accounts import service
from authserver.accounts.roles import DEFAULT_CEILINGS
from authserver.accounts.roles import DEFAULT_ROLES
from authserver.audit.models import AuditRecord
from authserver.errors import NotFound
from authserver.errors import ValidationError
from authserver.extensions import db
from authserver.smart.policy import grantable
from authserver.smart.scopes import parse_scopes
from authserver.tokens.limits import MAX_TOKEN_SCOPE_LENGTH
from tests.fixtures.commands import refused
from tests.fixtures.database import app_config

CLINICAL = ("Observation", "Condition", "MedicationRequest", "AllergyIntolerance", "Procedure")


def ceiling_of(tenant, role_name):
    return parse_scopes(service.get_role(tenant, role_name).scope_ceiling)


def grant_for(user, requested):
    return str(grantable(parse_scopes(requested), parse_scopes(""), service.role_ceiling(user)))


def test_every_new_tenant_role_gets_its_default_ceiling(tenant):
    roles = {role.name: role for role in service.list_roles(tenant)}
    assert set(roles) == set(DEFAULT_ROLES)
    for name, role in roles.items():
        assert role.scope_ceiling.split() == DEFAULT_CEILINGS[name]
        service.parse_ceiling(role.scope_ceiling.split())  # every default is a valid ceiling


def test_front_desk_asking_for_observations_gets_none(tenant, make_user):
    desk = make_user(tenant, "desk", roles=["front-desk"])
    assert grant_for(desk, "openid fhirUser user/Observation.rs") == "openid fhirUser"
    assert grant_for(desk, "user/Patient.rs user/Appointment.rs") == (
        "user/Patient.rs user/Appointment.rs"
    )


def test_billing_gets_no_clinical_scope(tenant, make_user):
    billing = make_user(tenant, "billing", roles=["billing"])
    granted = parse_scopes(grant_for(billing, "user/*.rs"))
    types = {scope.resource_type for scope in granted.resource_scopes}
    financial = {"Account", "ChargeItem", "Claim", "Coverage", "ExplanationOfBenefit", "Invoice"}
    assert types == financial | {"Patient"}
    assert not types & set(CLINICAL)


def test_clinic_admin_gets_no_clinical_data(tenant, make_user):
    admin = make_user(tenant, "admin", roles=["clinic-admin"])
    granted = parse_scopes(grant_for(admin, "user/*.cruds patient/*.rs"))
    types = {scope.resource_type for scope in granted.resource_scopes}
    assert types == {"Location", "Organization", "Practitioner", "PractitionerRole"}
    assert all(scope.permissions == frozenset("rs") for scope in granted.resource_scopes)


def test_patient_role_only_reaches_patient_scopes(tenant, make_user):
    patient = make_user(tenant, "pat", roles=["patient"], fhir_user="Patient/p1")
    assert grant_for(patient, "user/Observation.rs patient/Observation.rs") == (
        "patient/Observation.rs"
    )
    assert grant_for(patient, "patient/Observation.write") == ""


def test_nurse_reads_the_chart_and_writes_observations_only(tenant, make_user):
    nurse = make_user(tenant, "nurse", roles=["nurse"])
    assert grant_for(nurse, "user/Observation.cruds") == "user/Observation.crus"
    assert grant_for(nurse, "user/Condition.write user/Condition.read") == "user/Condition.read"


def test_several_roles_grant_the_union_of_their_ceilings(tenant, make_user):
    both = make_user(tenant, "both", roles=["front-desk", "billing"])
    assert grant_for(both, "user/Claim.rs user/Appointment.rs user/Observation.rs") == (
        "user/Claim.rs user/Appointment.rs"
    )


def test_v1_request_narrowed_by_v2_ceiling(tenant, make_user):
    nurse = make_user(tenant, "nurse", roles=["nurse"])
    service.set_role_ceiling(tenant, "nurse", ["user/Observation.rs", "user/Patient.r"])
    # .read means r+s: the Observation ceiling covers it and keeps the v1 spelling;
    # Patient only allows r, which v1 cannot say, so it comes back as v2.
    assert grant_for(nurse, "patient/Observation.read user/Patient.read") == (
        "patient/Observation.read user/Patient.r"
    )
    assert grant_for(nurse, "user/*.read") == "user/Observation.read user/Patient.r"


def test_v2_request_narrowed_by_v1_ceiling(tenant, make_user):
    nurse = make_user(tenant, "nurse", roles=["nurse"])
    service.set_role_ceiling(tenant, "nurse", ["user/*.read"])
    assert grant_for(nurse, "user/Observation.cruds patient/Condition.rs") == (
        "user/Observation.rs patient/Condition.rs"
    )
    assert grant_for(nurse, "user/Observation.cud") == ""


def test_set_ceiling_replaces_the_ceiling_and_is_audited(tenant):
    role = service.set_role_ceiling(
        tenant, "front-desk", ["user/Patient.rs", "user/Patient.rs"], actor="t"
    )
    db.session.commit()
    assert role.scope_ceiling == "user/Patient.rs"
    records = db.session.scalars(
        select(AuditRecord).where(AuditRecord.event == "role:ceiling-changed")
    ).all()
    assert [(record.subject, record.actor) for record in records] == [("front-desk", "t")]
    # What changed, for whoever reviews it later: the ceiling before and after.
    assert records[0].details["after"] == "user/Patient.rs"
    assert records[0].details["before"].split() == DEFAULT_CEILINGS["front-desk"]


@pytest.mark.parametrize(
    "scope",
    ["openid", "launch/patient", "offline_access", "system/*.rs", "user/Observation.x", "bogus"],
)
def test_ceiling_takes_only_patient_or_user_resource_scopes(tenant, scope):
    before = service.get_role(tenant, "nurse").scope_ceiling
    with pytest.raises(ValidationError):
        service.set_role_ceiling(tenant, "nurse", ["user/Patient.rs", scope])
    assert service.get_role(tenant, "nurse").scope_ceiling == before


def ceiling_totalling(length: int) -> list[str]:
    """Distinct granular user/ scopes: space-joined, exactly ``length`` characters."""
    prefix = "user/Observation.rs?code=http://loinc.org|"
    scopes = []
    while length - len(" ".join(scopes)) > 2 * (len(prefix) + 8):
        scopes.append(f"{prefix}{len(scopes):07d}")
    scopes.append(prefix + "9" * (length - len(" ".join(scopes)) - 1 - len(prefix)))
    assert len(" ".join(scopes)) == length
    return scopes


def test_a_ceiling_as_long_as_a_token_scope_may_be_is_set(tenant):
    widest = ceiling_totalling(MAX_TOKEN_SCOPE_LENGTH)

    role = service.set_role_ceiling(tenant, "nurse", [*widest, widest[0]])  # counted once

    assert role.scope_ceiling == " ".join(widest)


def test_a_ceiling_longer_than_a_token_scope_may_be_is_refused_and_nothing_changes(cli, tenant):
    before = service.get_role(tenant, "nurse").scope_ceiling
    audited = db.session.query(AuditRecord).count()

    message = refused(
        cli,
        "role",
        "set-ceiling",
        "clinic-a",
        "nurse",
        *ceiling_totalling(MAX_TOKEN_SCOPE_LENGTH + 1),
    )

    assert message == (
        "Error: the ceiling's scopes take 2049 characters, more than the 2048 an access token "
        "can carry: set fewer or broader scopes"
    )
    db.session.expire_all()
    assert service.get_role(tenant, "nurse").scope_ceiling == before
    assert db.session.query(AuditRecord).count() == audited


def test_unknown_role_is_not_found(tenant):
    with pytest.raises(NotFound):
        service.set_role_ceiling(tenant, "surgeon", ["user/Patient.rs"])


def test_ceiling_of_one_tenant_leaves_the_other_alone(tenant, other_tenant):
    service.set_role_ceiling(tenant, "nurse", ["user/Patient.rs"])
    db.session.commit()
    assert ceiling_of(other_tenant, "nurse") == parse_scopes(" ".join(DEFAULT_CEILINGS["nurse"]))


# --- CLI -------------------------------------------------------------------------------------


@pytest.mark.parametrize("scope", ["user/*.rs", "user/Observation.rs?category=laboratory"])
def test_the_patient_role_ceiling_never_reaches_beyond_the_patients_own_record(
    cli, tenant, make_user, scope
):
    patient = make_user(tenant, "pat", roles=["patient"], fhir_user="Patient/p1")

    message = refused(cli, "role", "set-ceiling", "clinic-a", "patient", "patient/*.rs", scope)

    assert "patient role" in message and "patient/" in message
    db.session.expire_all()
    assert str(ceiling_of(tenant, "patient")) == "patient/*.rs"
    assert grant_for(patient, "user/Observation.rs") == ""


def test_cli_role_list_shows_ceilings(cli, tenant):
    result = cli.invoke(args=["role", "list", "clinic-a"])
    assert result.exit_code == 0, result.output
    roles = {row["name"]: row for row in json.loads(result.output)}
    assert roles["patient"]["scope_ceiling"] == ["patient/*.rs"]
    assert roles["billing"]["description"] == "Billing"


def test_cli_set_ceiling(cli, tenant):
    result = cli.invoke(
        args=["role", "set-ceiling", "clinic-a", "billing", "user/Claim.rs", "user/Patient.r"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["scope_ceiling"] == ["user/Claim.rs", "user/Patient.r"]
    db.session.expire_all()
    assert ceiling_of(tenant, "billing") == parse_scopes("user/Claim.rs user/Patient.r")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["clinic-a", "billing", "user/Claim.bogus"], "malformed scope"),
        (["clinic-a", "billing", "openid"], "cannot be in a role ceiling"),
        (["clinic-a", "surgeon", "user/Claim.rs"], "no role 'surgeon'"),
        (["no-such-clinic", "billing", "user/Claim.rs"], "no tenant"),
    ],
)
def test_cli_set_ceiling_refuses_bad_input_in_one_line(cli, tenant, args, message):
    result = cli.invoke(args=["role", "set-ceiling", *args])
    assert result.exit_code != 0
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1


# --- Migration data step ---------------------------------------------------------------------


def test_migration_fills_empty_ceilings_of_existing_tenants(make_database_url, tmp_path):
    migrated = create_app(app_config(make_database_url("ceilings"), tmp_path / "instance"))
    with migrated.app_context():
        directory = migrated.extensions["migrate"].directory
        upgrade(directory=directory, revision="70c8bffe1278")
        with db.engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO tenants (id, slug, display_name, status, access_token_lifetime, "
                    "refresh_token_lifetime, authorization_code_lifetime, id_token_lifetime, "
                    "created_at) VALUES (1, 'old', 'Old', 'active', 3600, 60, 60, 3600, "
                    "CURRENT_TIMESTAMP)"
                )
            )
            for role_id, (name, ceiling) in enumerate(
                [("nurse", ""), ("billing", "user/Claim.rs"), ("surgeon", "")], start=1
            ):
                connection.execute(
                    text(
                        "INSERT INTO roles (id, tenant_id, name, description, scope_ceiling) "
                        "VALUES (:id, 1, :name, '', :ceiling)"
                    ),
                    {"id": role_id, "name": name, "ceiling": ceiling},
                )
        upgrade(directory=directory, revision="7ca1a24a0360")
        ceilings = dict(db.session.execute(text("SELECT name, scope_ceiling FROM roles")).all())
        assert ceilings == {
            "nurse": " ".join(DEFAULT_CEILINGS["nurse"]),
            "billing": "user/Claim.rs",  # the tenant's own choice is kept
            "surgeon": "",  # not a default role: nothing to fill in
        }
        db.session.remove()
        downgrade(directory=directory, revision="70c8bffe1278")
        ceilings = dict(db.session.execute(text("SELECT name, scope_ceiling FROM roles")).all())
        assert ceilings == {"nurse": "", "billing": "user/Claim.rs", "surgeon": ""}
        db.session.remove()
        db.engine.dispose()


@pytest.mark.parametrize("roles", [["patient", "physician"], ["nurse", "patient"]])
def test_the_patient_role_is_held_alone(tenant, roles):
    with pytest.raises(ValidationError, match="patient role cannot be combined"):
        service.create_user(tenant, "mixed", "a long enough password", roles)

    assert service.find_user(tenant, "mixed") is None


def test_a_patient_given_a_staff_role_around_the_service_still_reaches_only_their_record(
    tenant, make_user
):
    patient = make_user(tenant, "pat", roles=["patient"], fhir_user="Patient/p1")
    patient.roles.append(service.get_role(tenant, "physician"))  # as a hand-written row would
    db.session.commit()

    assert grant_for(patient, "user/Observation.rs patient/Observation.rs") == (
        "patient/Observation.rs"
    )
