"""The clinical role list every tenant starts with."""

from __future__ import annotations

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
