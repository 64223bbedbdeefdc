"""default role ceilings

Revision ID: 7ca1a24a0360
Revises: 70c8bffe1278
Create Date: 2026-11-24

Fills the scope ceiling of every default role that has none, at every existing tenant, with the
minimum-necessary defaults new tenants get (authserver/accounts/roles.py at this revision; copied,
because a migration must not change when the application code does). A ceiling a tenant has
already set is left alone.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '7ca1a24a0360'
down_revision = '70c8bffe1278'
branch_labels = None
depends_on = None

DEFAULT_CEILINGS = {
    'physician': (
        'user/AllergyIntolerance.cruds user/CarePlan.cruds user/CareTeam.cruds '
        'user/Condition.cruds user/Device.cruds user/DiagnosticReport.cruds '
        'user/DocumentReference.cruds user/Encounter.cruds user/FamilyMemberHistory.cruds '
        'user/Goal.cruds user/Immunization.cruds user/Medication.cruds '
        'user/MedicationAdministration.cruds user/MedicationDispense.cruds user/MedicationRequest.cruds '
        'user/MedicationStatement.cruds user/Observation.cruds user/Patient.cruds '
        'user/Procedure.cruds user/QuestionnaireResponse.cruds user/RelatedPerson.cruds '
        'user/ServiceRequest.cruds user/Specimen.cruds user/Location.rs '
        'user/Organization.rs user/Practitioner.rs user/PractitionerRole.rs '
        'user/Provenance.rs user/Appointment.rs user/Schedule.rs '
        'user/Slot.rs'
    ),
    'nurse-practitioner': (
        'user/AllergyIntolerance.cruds user/CarePlan.cruds user/CareTeam.cruds '
        'user/Condition.cruds user/Device.cruds user/DiagnosticReport.cruds '
        'user/DocumentReference.cruds user/Encounter.cruds user/FamilyMemberHistory.cruds '
        'user/Goal.cruds user/Immunization.cruds user/Medication.cruds '
        'user/MedicationAdministration.cruds user/MedicationDispense.cruds user/MedicationRequest.cruds '
        'user/MedicationStatement.cruds user/Observation.cruds user/Patient.cruds '
        'user/Procedure.cruds user/QuestionnaireResponse.cruds user/RelatedPerson.cruds '
        'user/ServiceRequest.cruds user/Specimen.cruds user/Location.rs '
        'user/Organization.rs user/Practitioner.rs user/PractitionerRole.rs '
        'user/Provenance.rs user/Appointment.rs user/Schedule.rs '
        'user/Slot.rs'
    ),
    'nurse': (
        'user/AllergyIntolerance.rs user/CarePlan.rs user/CareTeam.rs '
        'user/Condition.rs user/Device.rs user/DiagnosticReport.rs '
        'user/DocumentReference.rs user/Encounter.rs user/FamilyMemberHistory.rs '
        'user/Goal.rs user/Immunization.rs user/Medication.rs '
        'user/MedicationAdministration.rs user/MedicationDispense.rs user/MedicationRequest.rs '
        'user/MedicationStatement.rs user/Observation.rs user/Patient.rs '
        'user/Procedure.rs user/QuestionnaireResponse.rs user/RelatedPerson.rs '
        'user/ServiceRequest.rs user/Specimen.rs user/Observation.cu '
        'user/Location.rs user/Organization.rs user/Practitioner.rs '
        'user/PractitionerRole.rs user/Provenance.rs user/Appointment.rs '
        'user/Schedule.rs user/Slot.rs'
    ),
    'medical-assistant': (
        'user/AllergyIntolerance.rs user/CarePlan.rs user/CareTeam.rs '
        'user/Condition.rs user/Device.rs user/DiagnosticReport.rs '
        'user/DocumentReference.rs user/Encounter.rs user/FamilyMemberHistory.rs '
        'user/Goal.rs user/Immunization.rs user/Medication.rs '
        'user/MedicationAdministration.rs user/MedicationDispense.rs user/MedicationRequest.rs '
        'user/MedicationStatement.rs user/Observation.rs user/Patient.rs '
        'user/Procedure.rs user/QuestionnaireResponse.rs user/RelatedPerson.rs '
        'user/ServiceRequest.rs user/Specimen.rs user/Observation.cu '
        'user/Location.rs user/Organization.rs user/Practitioner.rs '
        'user/PractitionerRole.rs user/Provenance.rs user/Appointment.rs '
        'user/Schedule.rs user/Slot.rs'
    ),
    'care-coordinator': (
        'user/AllergyIntolerance.rs user/CarePlan.rs user/CareTeam.rs '
        'user/Condition.rs user/Device.rs user/DiagnosticReport.rs '
        'user/DocumentReference.rs user/Encounter.rs user/FamilyMemberHistory.rs '
        'user/Goal.rs user/Immunization.rs user/Medication.rs '
        'user/MedicationAdministration.rs user/MedicationDispense.rs user/MedicationRequest.rs '
        'user/MedicationStatement.rs user/Observation.rs user/Patient.rs '
        'user/Procedure.rs user/QuestionnaireResponse.rs user/RelatedPerson.rs '
        'user/ServiceRequest.rs user/Specimen.rs user/CarePlan.cu '
        'user/CareTeam.cu user/Goal.cu user/ServiceRequest.cu '
        'user/Location.rs user/Organization.rs user/Practitioner.rs '
        'user/PractitionerRole.rs user/Provenance.rs user/Appointment.crus '
        'user/Schedule.rs user/Slot.rs'
    ),
    'front-desk': (
        'user/Patient.crus user/Coverage.crus user/Appointment.crus '
        'user/Schedule.rs user/Slot.rs user/Location.rs '
        'user/Organization.rs user/Practitioner.rs user/PractitionerRole.rs'
    ),
    'billing': (
        'user/Account.crus user/ChargeItem.crus user/Claim.crus '
        'user/Coverage.crus user/ExplanationOfBenefit.crus user/Invoice.crus '
        'user/Patient.rs'
    ),
    'clinic-admin': (
        'user/Location.rs user/Organization.rs user/Practitioner.rs '
        'user/PractitionerRole.rs'
    ),
    'patient': (
        'patient/*.rs'
    ),
}

roles = sa.table("roles", sa.column("name", sa.String), sa.column("scope_ceiling", sa.Text))


def upgrade():
    for name, ceiling in DEFAULT_CEILINGS.items():
        op.execute(
            roles.update()
            .where(roles.c.name == name, roles.c.scope_ceiling == "")
            .values(scope_ceiling=ceiling)
        )


def downgrade():
    # Only ceilings still equal to the defaults are cleared: a tenant's own choice survives.
    for name, ceiling in DEFAULT_CEILINGS.items():
        op.execute(
            roles.update()
            .where(roles.c.name == name, roles.c.scope_ceiling == ceiling)
            .values(scope_ceiling="")
        )
