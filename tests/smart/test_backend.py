"""What a backend client may be granted (authserver/smart/backend.py): plain function calls."""

from authserver.smart.backend import backend_grant
from authserver.smart.backend import system_ceiling
from authserver.smart.scopes import parse_scopes

ALLOWED = "system/Patient.rs system/Observation.cruds urn:example:bulk-export"


def grant(requested, *ceilings):
    return str(backend_grant(requested, ALLOWED, *(parse_scopes(c) for c in ceilings)))


def test_user_scopes_are_read_at_system_level_and_patient_scopes_dropped():
    ceiling = parse_scopes(
        "user/Observation.rs?category=laboratory patient/*.cruds "
        "http://smarthealthit.org/fhir/scopes/user/Patient.r"
    )
    assert (
        str(system_ceiling(ceiling)) == "system/Observation.rs?category=laboratory system/Patient.r"
    )


def test_without_a_ceiling_the_registration_decides():
    assert grant("system/*.rs") == "system/Patient.rs system/Observation.rs"


def test_a_ceiling_narrows_permissions_types_and_search_constraints():
    assert grant("system/*.cruds", "user/Observation.rs?category=laboratory user/Patient.r") == (
        "system/Patient.r system/Observation.rs?category=laboratory"
    )


def test_a_wildcard_request_gets_the_registration_within_the_ceiling():
    assert grant("system/*.*", "user/Observation.cu") == "system/Observation.cu"


def test_a_patient_or_empty_ceiling_leaves_no_data_scope():
    assert grant("system/Patient.rs", "patient/*.rs") == ""
    assert grant("system/Patient.rs", "") == ""


def test_extension_scopes_are_bounded_by_the_registration_only():
    assert grant("urn:example:bulk-export system/Patient.rs", "user/Observation.rs") == (
        "urn:example:bulk-export"
    )
