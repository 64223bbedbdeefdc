"""The clinical role list every tenant starts with, and each role's default scope ceiling.

A role's ceiling bounds the FHIR data its holders may let an app reach (resource scopes only:
identity, launch and refresh scopes are bounded by the client's registration and the user's
consent). The defaults follow minimum-necessary practice (HIPAA 45 CFR 164.502(b)): each role gets
the resource types its work needs and no more; a tenant changes them with
``authserver role set-ceiling``.
"""

from __future__ import annotations

# Its holders sign in as patients: their context is pinned to their own record, which only
# patient/ scopes respect (a user/ scope reaches every patient the FHIR server holds).
PATIENT_ROLE = "patient"

DEFAULT_ROLES: dict[str, str] = {
    "physician": "Physician",
    "nurse-practitioner": "Nurse practitioner",
    "nurse": "Nurse",
    "medical-assistant": "Medical assistant",
    "care-coordinator": "Care coordinator",
    "front-desk": "Front desk",
    "billing": "Billing",
    "clinic-admin": "Clinic administrator",
    "patient": "Patient",
}

# The patient's chart: what clinicians read and write.
CLINICAL_TYPES = (
    "AllergyIntolerance",
    "CarePlan",
    "CareTeam",
    "Condition",
    "Device",
    "DiagnosticReport",
    "DocumentReference",
    "Encounter",
    "FamilyMemberHistory",
    "Goal",
    "Immunization",
    "Medication",
    "MedicationAdministration",
    "MedicationDispense",
    "MedicationRequest",
    "MedicationStatement",
    "Observation",
    "Patient",
    "Procedure",
    "QuestionnaireResponse",
    "RelatedPerson",
    "ServiceRequest",
    "Specimen",
)
# Who and where: read by every staff role, written by nobody through an app.
DIRECTORY_TYPES = ("Location", "Organization", "Practitioner", "PractitionerRole", "Provenance")
SCHEDULING_TYPES = ("Appointment", "Schedule", "Slot")
FINANCIAL_TYPES = ("Account", "ChargeItem", "Claim", "Coverage", "ExplanationOfBenefit", "Invoice")


def _user(types: tuple[str, ...], permissions: str) -> list[str]:
    return [f"user/{resource_type}.{permissions}" for resource_type in types]


_CLINICIAN = [
    *_user(CLINICAL_TYPES, "cruds"),
    *_user(DIRECTORY_TYPES, "rs"),
    *_user(SCHEDULING_TYPES, "rs"),
]
# Read the chart; record vital signs and other observations.
_NURSING = [
    *_user(CLINICAL_TYPES, "rs"),
    "user/Observation.cu",
    *_user(DIRECTORY_TYPES, "rs"),
    *_user(SCHEDULING_TYPES, "rs"),
]

DEFAULT_CEILINGS: dict[str, list[str]] = {
    "physician": _CLINICIAN,
    "nurse-practitioner": _CLINICIAN,
    "nurse": _NURSING,
    "medical-assistant": _NURSING,
    # Reads the chart, keeps care plans, teams, goals and referrals, books appointments.
    "care-coordinator": [
        *_user(CLINICAL_TYPES, "rs"),
        *_user(("CarePlan", "CareTeam", "Goal", "ServiceRequest"), "cu"),
        *_user(DIRECTORY_TYPES, "rs"),
        "user/Appointment.crus",
        *_user(("Schedule", "Slot"), "rs"),
    ],
    # Demographics and scheduling only.
    "front-desk": [
        "user/Patient.crus",
        "user/Coverage.crus",
        "user/Appointment.crus",
        *_user(("Schedule", "Slot"), "rs"),
        *_user(DIRECTORY_TYPES[:4], "rs"),
    ],
    # Financial resources, plus reading who the patient is.
    "billing": [*_user(FINANCIAL_TYPES, "crus"), "user/Patient.rs"],
    # Runs the clinic: the directory, no clinical data.
    "clinic-admin": _user(DIRECTORY_TYPES[:4], "rs"),
    # Their own record, read only; the patient context pins it to them.
    "patient": ["patient/*.rs"],
}
