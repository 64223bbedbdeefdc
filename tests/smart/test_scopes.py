"""Scope grammar and narrowing: SMART-REQUIREMENTS.md §1.6 (SCOPE-01..13) and §1.10 (BS-05)."""

from itertools import combinations
from urllib.parse import parse_qs
from urllib.parse import urlencode

import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from authserver.smart.scopes import InvalidScope
from authserver.smart.scopes import LaunchScope
from authserver.smart.scopes import NamedScope
from authserver.smart.scopes import ResourceScope
from authserver.smart.scopes import covers
from authserver.smart.scopes import describe
from authserver.smart.scopes import describe_all
from authserver.smart.scopes import narrow
from authserver.smart.scopes import parse_scope
from authserver.smart.scopes import parse_scopes
from authserver.smart.scopes import union

LAB_SYSTEM = "http://terminology.hl7.org/CodeSystem/observation-category"
CONDITION_SYSTEM = "http://terminology.hl7.org/CodeSystem/condition-category"
PROPERTY_SETTINGS = settings(max_examples=200, deadline=None)


def narrowed(requested: str, *ceilings: str) -> str:
    return str(narrow(parse_scopes(requested), *(parse_scopes(c) for c in ceilings)))


# --- Grammar: valid forms -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "level", "resource_type", "permissions", "version"),
    [
        # SCOPE-01: v2 examples from the IG.
        ("patient/Observation.rs", "patient", "Observation", "rs", 2),
        ("patient/Patient.r", "patient", "Patient", "r", 2),
        ("user/Appointment.cruds", "user", "Appointment", "cruds", 2),
        ("patient/*.rs", "patient", "*", "rs", 2),
        ("user/*.cruds", "user", "*", "cruds", 2),
        ("system/*.rs", "system", "*", "rs", 2),
        ("patient/Observation.c", "patient", "Observation", "c", 2),
        ("patient/Observation.s", "patient", "Observation", "s", 2),
        ("patient/Observation.cd", "patient", "Observation", "cd", 2),
        ("patient/MedicationRequest.rus", "patient", "MedicationRequest", "rus", 2),
        # SCOPE-04: v1 words expand.
        ("patient/*.read", "patient", "*", "rs", 1),
        ("user/*.*", "user", "*", "cruds", 1),
        ("patient/Observation.write", "patient", "Observation", "cud", 1),
        ("system/*.read", "system", "*", "rs", 1),
        ("user/Patient.read", "user", "Patient", "rs", 1),
    ],
)
def test_resource_scope_fields(text, level, resource_type, permissions, version):
    scope = parse_scope(text)
    assert isinstance(scope, ResourceScope)
    assert scope.level == level
    assert scope.resource_type == resource_type
    assert scope.permissions == frozenset(permissions)
    assert scope.version == version
    assert scope.query == ()
    assert str(scope) == text


@pytest.mark.parametrize(
    ("text", "query"),
    [
        # SCOPE-05: granular scopes, with and without the code system.
        ("patient/Observation.rs?category=laboratory", (("category", "laboratory"),)),
        (
            f"patient/Observation.rs?category={LAB_SYSTEM}|laboratory",
            (("category", f"{LAB_SYSTEM}|laboratory"),),
        ),
        (
            f"patient/Condition.rs?category={CONDITION_SYSTEM}|problem-list-item",
            (("category", f"{CONDITION_SYSTEM}|problem-list-item"),),
        ),
        (
            "patient/Observation.rs?category=laboratory&status=final",
            (("category", "laboratory"), ("status", "final")),
        ),
        ("user/Observation.r?code:in=http://x.org/vs", (("code:in", "http://x.org/vs"),)),
        # Percent-escapes inside a value mean the decoded character.
        (
            "patient/Observation.rs?category=http%3A%2F%2Fx.org%2Fcs%7Claboratory",
            (("category", "http://x.org/cs|laboratory"),),
        ),
        ("patient/Observation.rs?code=a%26b", (("code", "a&b"),)),
    ],
)
def test_granular_scope_query(text, query):
    scope = parse_scope(text)
    assert scope.query == query
    assert scope.version == 2
    assert str(scope) == text


def test_granular_scope_survives_form_and_query_encoding():
    """SCOPE-05: ``?``, ``=``, ``|``, ``&``, ``:``, ``/`` travel percent-encoded, arrive decoded."""
    text = (
        f"patient/Observation.rs?category={LAB_SYSTEM}|laboratory "
        f"patient/Observation.rs?category={LAB_SYSTEM}|vital-signs&status=final"
    )
    body = urlencode({"scope": text})
    assert "%7C" in body and "%3F" in body and "%26" in body and "%2F" in body
    received = parse_qs(body)["scope"][0]
    scopes = parse_scopes(received)
    assert str(scopes) == text
    assert [s.query for s in scopes.resource_scopes] == [
        (("category", f"{LAB_SYSTEM}|laboratory"),),
        (("category", f"{LAB_SYSTEM}|vital-signs"), ("status", "final")),
    ]


@pytest.mark.parametrize(
    ("text", "kind", "name"),
    [
        ("openid", "identity", "openid"),
        ("fhirUser", "identity", "fhirUser"),
        ("profile", "identity", "profile"),
        ("offline_access", "refresh", "offline_access"),
        ("online_access", "refresh", "online_access"),
        ("__internal_debug", "extension", "__internal_debug"),
        ("https://example.org/scopes/billing", "extension", "https://example.org/scopes/billing"),
        ("urn:example:scope", "extension", "urn:example:scope"),
        # SCOPE-13: URI forms reduce to the short name.
        ("http://openid.net/specs/openid-connect-core-1_0#openid", "identity", "openid"),
        ("http://smarthealthit.org/fhir/scopes/fhirUser", "identity", "fhirUser"),
        ("http://smarthealthit.org/fhir/scopes/offline_access", "refresh", "offline_access"),
    ],
)
def test_named_scopes(text, kind, name):
    scope = parse_scope(text)
    assert isinstance(scope, NamedScope)
    assert (scope.kind, scope.name, str(scope)) == (kind, name, text)


@pytest.mark.parametrize(
    ("text", "context_type", "role"),
    [
        ("launch", None, None),
        ("launch/patient", "patient", None),
        ("launch/encounter", "encounter", None),
        ("launch/location", "location", None),
        ("launch/imagingstudy", "imagingstudy", None),
        (
            "launch/patient?role=https://example.org/referral",
            "patient",
            "https://example.org/referral",
        ),
        ("http://smarthealthit.org/fhir/scopes/launch", None, None),
    ],
)
def test_launch_scopes(text, context_type, role):
    scope = parse_scope(text)
    assert isinstance(scope, LaunchScope)
    assert (scope.kind, scope.context_type, scope.role) == ("launch", context_type, role)


def test_uri_form_resource_scope_equals_short_form():
    scope = parse_scope("http://smarthealthit.org/fhir/scopes/patient/*.read")
    assert scope == parse_scope("patient/*.rs")
    assert scope.permissions == frozenset("rs")
    assert str(scope) == "http://smarthealthit.org/fhir/scopes/patient/*.read"


def test_v1_read_never_means_read_and_delete():
    """SCOPE-02: "`.read` must not become r+d"."""
    assert parse_scope("patient/Observation.read").permissions == frozenset("rs")


def test_v1_and_v2_spellings_are_equal():
    """SCOPE-03/04: ``.read`` is ``.rs``, ``.write`` is ``.cud``, ``.*`` is ``.cruds``."""
    assert parse_scope("patient/Observation.read") == parse_scope("patient/Observation.rs")
    assert parse_scope("user/*.write") == parse_scope("user/*.cud")
    assert parse_scope("user/*.*") == parse_scope("user/*.cruds")
    assert parse_scope("user/*.*") != parse_scope("user/*.rs")


def test_query_order_does_not_matter_for_equality():
    assert parse_scope("patient/Observation.rs?a=1&b=2") == parse_scope(
        "patient/Observation.rs?b=2&a=1"
    )


# --- Grammar: invalid forms -----------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        # SCOPE-02: out of order or undefined letters.
        "patient/Observation.dus",
        "patient/Observation.sr",
        "patient/Observation.rc",
        "patient/Observation.x",
        "patient/Observation.rx",
        "patient/Observation.rrs",
        "patient/Observation.Read",
        "patient/Observation.READ",
        "patient/Observation.reads",
        "patient/Observation.cruds*",
        "patient/Observation.",
        "patient/Observation",
        "patient/Observation.rs.s",
        # Level and type.
        "practitioner/Observation.rs",
        "Patient/Observation.rs",
        "patient/observation.rs",
        "patient/Obs3rvation.rs",
        "patient/.rs",
        "patient//Observation.rs",
        "patient/**.rs",
        "patient/Observación.rs",
        # Granular query.
        "patient/Observation.rs?",
        "patient/Observation.rs?category",
        "patient/Observation.rs?category=",
        "patient/Observation.rs?=laboratory",
        "patient/Observation.rs?category=laboratory&",
        "patient/Observation.rs?category=a?b",
        "patient/Observation.rs?category=a=b",
        "patient/Observation.read?category=laboratory",
        "patient/Observation.*?category=laboratory",
        # SCOPE-10: identity scopes are case-sensitive.
        "OpenID",
        "openID",
        "fhiruser",
        "FHIRUser",
        "Profile",
        "Offline_access",
        "offline-access",
        # SCOPE-09: launch scopes.
        "launch/",
        "launch/Patient",
        "launch/patient?role=",
        "launch/patient?role=not-a-uri",
        "launch/patient?role=https://a.org/x&role=https://a.org/y",
        "launch?role=https://example.org/referral",
        "launch/patient/encounter",
        "Launch",
        # SCOPE-11: extensions need a URI or the "__" prefix.
        "_single",
        "__",
        "billing",
        # SCOPE-13: a SMART URI prefix with a malformed scope is not an extension scope.
        "http://smarthealthit.org/fhir/scopes/patient/Observation.x",
        "http://smarthealthit.org/fhir/scopes/bogus",
        "http://openid.net/specs/openid-connect-core-1_0#OpenID",
        # RFC 6749 scope-token characters.
        "",
        'patient/Observation.rs?category="lab"',
        "open\\id",
        "patient/Observation.rs\t",
    ],
)
def test_malformed_scope_is_rejected(text):
    with pytest.raises(InvalidScope):
        parse_scope(text)


def test_invalid_scope_is_a_value_error_naming_the_scope():
    with pytest.raises(ValueError, match="patient/Observation.sr") as info:
        parse_scope("patient/Observation.sr")
    assert info.value.scope == "patient/Observation.sr"


# --- ScopeSet -------------------------------------------------------------------------------


def test_parse_scopes_keeps_order_collapses_spaces_and_removes_duplicates():
    scopes = parse_scopes("  openid   patient/Patient.rs openid patient/Patient.read launch ")
    assert [str(s) for s in scopes] == ["openid", "patient/Patient.rs", "launch"]
    assert str(scopes) == "openid patient/Patient.rs launch"
    assert len(scopes) == 3
    assert scopes.dropped == ()


def test_parse_scopes_reports_dropped_tokens():
    scopes = parse_scopes("openid patient/Observation.sr OpenID patient/Observation.rs OpenID")
    assert str(scopes) == "openid patient/Observation.rs"
    assert scopes.dropped == ("patient/Observation.sr", "OpenID")


def test_parse_scopes_strict_raises_on_malformed_token():
    with pytest.raises(InvalidScope, match="patient/Observation.x"):
        parse_scopes("openid patient/Observation.x", strict=True)
    assert str(parse_scopes("openid patient/Observation.rs", strict=True)) == (
        "openid patient/Observation.rs"
    )


def test_empty_scope_string_is_an_empty_set():
    """SCOPE-12: an empty grant is possible."""
    scopes = parse_scopes("   ")
    assert len(scopes) == 0
    assert str(scopes) == ""
    assert list(scopes) == []


def test_scope_set_membership_and_lookups():
    scopes = parse_scopes("openid launch/patient patient/Observation.rs user/*.read __x")
    assert "openid" in scopes
    assert parse_scope("patient/Observation.rs") in scopes
    assert "patient/Observation.read" in scopes  # same access, other spelling
    assert "patient/Observation.r" not in scopes  # membership is exact; see permits()
    assert "patient/Observation.sr" not in scopes
    assert "fhirUser" not in scopes
    assert scopes.has("openid") and scopes.has("launch/patient") and scopes.has("__x")
    assert not scopes.has("launch") and not scopes.has("patient/Observation.rs")
    assert [str(s) for s in scopes.resource_scopes] == ["patient/Observation.rs", "user/*.read"]


def test_scope_set_equality_ignores_order_and_spelling():
    assert parse_scopes("openid patient/*.read") == parse_scopes("patient/*.rs openid")
    assert parse_scopes("openid patient/*.read") != parse_scopes("patient/*.r openid")


@pytest.mark.parametrize(
    ("granted", "level", "resource_type", "letter", "query", "expected"),
    [
        ("patient/Observation.rs", "patient", "Observation", "r", (), True),
        ("patient/Observation.rs", "patient", "Observation", "s", (), True),
        ("patient/Observation.rs", "patient", "Observation", "c", (), False),
        ("patient/Observation.rs", "patient", "Condition", "r", (), False),
        ("patient/Observation.rs", "user", "Observation", "r", (), False),
        ("user/*.read", "patient", "Condition", "r", (), True),
        ("user/*.read", "user", "Condition", "d", (), False),
        ("user/*.read", "system", "Condition", "r", (), False),
        ("system/*.rs", "system", "Patient", "s", (), True),
        ("patient/Observation.rs?category=laboratory", "patient", "Observation", "r", (), False),
        (
            "patient/Observation.rs?category=laboratory",
            "patient",
            "Observation",
            "r",
            (("category", "laboratory"),),
            True,
        ),
        ("patient/Observation.r patient/Observation.s", "patient", "Observation", "s", (), True),
        ("patient/*.cruds", "patient", "Observation", "rs", (), False),
        ("patient/*.cruds", "patient", "Observation", "ud", (), False),
        ("openid", "patient", "Observation", "r", (), False),
    ],
)
def test_permits(granted, level, resource_type, letter, query, expected):
    assert parse_scopes(granted).permits(level, resource_type, letter, query) is expected


def test_set_covers_uses_union_of_scopes():
    """SCOPE-03: ``Observation.rs`` is the same access as ``Observation.r Observation.s``."""
    split = parse_scopes("patient/Observation.r patient/Observation.s")
    assert split.covers(parse_scope("patient/Observation.rs"))
    assert split.covers(parse_scopes("patient/Observation.read"))
    assert not split.covers(parse_scope("patient/Observation.rds"))


def test_union_of_role_ceilings():
    merged = union(parse_scopes("user/Patient.rs openid"), parse_scopes("user/*.r openid"))
    assert str(merged) == "user/Patient.rs openid user/*.r"


# --- covers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ceiling", "requested", "expected"),
    [
        ("user/Observation.rs", "patient/Observation.rs", True),
        ("patient/Observation.rs", "user/Observation.rs", False),
        ("system/Observation.rs", "user/Observation.rs", False),
        ("user/Observation.rs", "system/Observation.rs", False),
        ("system/*.rs", "system/Observation.r", True),
        ("patient/*.rs", "patient/Observation.rs", True),
        ("patient/Observation.rs", "patient/*.rs", False),
        ("patient/Observation.read", "patient/Observation.rs", True),
        ("patient/Observation.rs", "patient/Observation.read", True),
        ("patient/Observation.rs", "patient/Observation.write", False),
        ("patient/Observation.rs", "patient/Observation.rs?category=laboratory", True),
        ("patient/Observation.rs?category=laboratory", "patient/Observation.rs", False),
        (
            "patient/Observation.rs?category=laboratory",
            "patient/Observation.r?category=laboratory&status=final",
            True,
        ),
        (
            "patient/Observation.rs?category=laboratory&status=final",
            "patient/Observation.r?category=laboratory",
            False,
        ),
        (
            f"patient/Observation.rs?category={LAB_SYSTEM}%7Claboratory",
            f"patient/Observation.rs?category={LAB_SYSTEM}|laboratory",
            True,
        ),
        ("openid", "openid", True),
        ("openid", "fhirUser", False),
        ("http://openid.net/specs/openid-connect-core-1_0#openid", "openid", True),
        ("launch/patient", "launch/patient?role=https://example.org/referral", False),
        ("user/*.cruds", "openid", False),
        ("openid", "patient/*.rs", False),
    ],
)
def test_covers(ceiling, requested, expected):
    assert covers(parse_scope(ceiling), parse_scope(requested)) is expected


# --- narrow ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("requested", "ceiling", "expected"),
    [
        # Letter-wise intersection, v1 <-> v2.
        ("patient/Observation.cruds", "patient/Observation.read", "patient/Observation.rs"),
        ("patient/Observation.read", "patient/Observation.r", "patient/Observation.r"),
        ("patient/*.read", "patient/*.read", "patient/*.read"),
        ("patient/*.read", "patient/*.rs", "patient/*.read"),
        ("patient/*.rs", "patient/*.read", "patient/*.rs"),
        ("patient/*.*", "patient/*.read", "patient/*.read"),
        ("user/*.*", "user/*.cud", "user/*.write"),
        ("user/*.*", "user/*.rds", "user/*.rds"),
        ("patient/Observation.write", "patient/Observation.rs", ""),
        ("patient/Observation.rs", "patient/Observation.r patient/Observation.s", None),
        (
            "patient/Observation.rs",
            "patient/Observation.c patient/Observation.s",
            "patient/Observation.s",
        ),
        # Levels.
        ("patient/Observation.rs", "user/Observation.rs", "patient/Observation.rs"),
        ("patient/Observation.rs", "user/*.r", "patient/Observation.r"),
        ("user/Observation.rs", "patient/Observation.rs", ""),
        ("system/*.rs", "user/*.cruds", ""),
        ("user/*.rs", "system/*.cruds", ""),
        (
            "system/*.rs",
            "system/Patient.rs system/Observation.r",
            "system/Patient.rs system/Observation.r",
        ),
        # Wildcard types.
        (
            "user/*.rs",
            "user/Patient.rs user/Appointment.cruds",
            "user/Patient.rs user/Appointment.rs",
        ),
        ("patient/Observation.rs", "patient/*.rs", "patient/Observation.rs"),
        (
            "patient/*.read",
            "patient/Patient.read patient/Condition.r",
            "patient/Patient.read patient/Condition.r",
        ),
        ("patient/Condition.rs", "patient/Observation.rs", ""),
        # Pieces already covered by a broader piece are not repeated.
        ("patient/*.rs", "patient/*.r patient/Observation.r", "patient/*.r"),
        (
            "patient/*.rs",
            "patient/*.r patient/Observation.rs",
            "patient/*.r patient/Observation.rs",
        ),
        # Non-resource scopes pass only when identical.
        ("openid fhirUser launch offline_access", "openid launch", "openid launch"),
        ("launch/patient?role=https://example.org/referral", "launch/patient", ""),
        ("__x urn:example:scope", "__x", "__x"),
        ("profile", "openid", ""),
        (
            "http://openid.net/specs/openid-connect-core-1_0#openid",
            "openid",
            "http://openid.net/specs/openid-connect-core-1_0#openid",
        ),
        (
            "http://smarthealthit.org/fhir/scopes/patient/*.read",
            "patient/*.r",
            "patient/*.r",
        ),
        # Order follows the request.
        (
            "launch/patient openid patient/Patient.rs fhirUser",
            "fhirUser patient/*.cruds openid launch/patient",
            "launch/patient openid patient/Patient.rs fhirUser",
        ),
        ("", "patient/*.cruds openid", ""),
    ],
)
def test_narrow(requested, ceiling, expected):
    expected = requested if expected is None else expected
    assert narrowed(requested, ceiling) == expected


@pytest.mark.parametrize(
    ("requested", "ceiling", "expected"),
    [
        # A ceiling without a query covers any query on that type.
        (
            "patient/Observation.rs?category=laboratory",
            "patient/Observation.cruds",
            "patient/Observation.rs?category=laboratory",
        ),
        (
            "patient/Observation.rs?category=laboratory",
            "patient/Observation.r",
            "patient/Observation.r?category=laboratory",
        ),
        (
            "patient/*.rs",
            "patient/Observation.rs?category=laboratory",
            "patient/Observation.rs?category=laboratory",
        ),
        # A resource-level request narrowed by granular ceilings gets the ceilings' constraints.
        (
            "patient/Observation.rs",
            "patient/Observation.rs?category=laboratory patient/Observation.r?category=vital-signs",
            "patient/Observation.rs?category=laboratory patient/Observation.r?category=vital-signs",
        ),
        (
            "patient/Observation.read",
            "user/Observation.cruds?category=laboratory",
            "patient/Observation.rs?category=laboratory",
        ),
        (
            "patient/Observation.s",
            "patient/Observation.r?category=laboratory",
            "",
        ),
        # Both sides constrained: AND semantics.
        (
            "patient/Observation.rs?category=laboratory&status=final",
            "patient/Observation.rs?category=laboratory",
            "patient/Observation.rs?category=laboratory&status=final",
        ),
        (
            "patient/Observation.rs?category=laboratory",
            "patient/Observation.rs?category=laboratory&status=final",
            "patient/Observation.rs?category=laboratory&status=final",
        ),
        (
            "patient/Observation.rs?category=laboratory",
            "patient/Observation.rs?category=vital-signs",
            "",
        ),
        (
            "patient/Observation.rs?category=laboratory",
            "patient/Observation.rs?status=final",
            "",
        ),
        # The system-qualified and bare codes are different constraints.
        (
            "patient/Observation.rs?category=laboratory",
            f"patient/Observation.rs?category={LAB_SYSTEM}|laboratory",
            "",
        ),
        # Percent-encoding does not change a constraint; the request's spelling is echoed.
        (
            f"patient/Observation.rs?category={LAB_SYSTEM}|laboratory",
            f"patient/Observation.rs?category={LAB_SYSTEM}%7Claboratory",
            f"patient/Observation.rs?category={LAB_SYSTEM}|laboratory",
        ),
        (
            f"patient/Observation.rs?category={LAB_SYSTEM}|laboratory",
            "patient/Observation.rs",
            f"patient/Observation.rs?category={LAB_SYSTEM}|laboratory",
        ),
    ],
)
def test_narrow_granular(requested, ceiling, expected):
    assert narrowed(requested, ceiling) == expected


def test_user_can_narrow_resource_level_request_to_categories():
    """SCOPE-06: no resource-level Condition/Observation, granular ones for each, Patient kept."""
    requested = "openid fhirUser patient/Condition.rs patient/Observation.rs patient/Patient.rs"
    approved = (
        f"openid fhirUser patient/Condition.rs?category={CONDITION_SYSTEM}|problem-list-item "
        f"patient/Observation.rs?category={LAB_SYSTEM}|laboratory "
        f"patient/Observation.rs?category={LAB_SYSTEM}|vital-signs patient/Patient.rs"
    )
    granted = narrow(parse_scopes(requested), parse_scopes(approved))
    assert str(granted) == approved
    assert not granted.permits("patient", "Observation", "r")
    assert not granted.permits("patient", "Condition", "r")
    assert granted.permits("patient", "Patient", "r")


def test_narrow_chains_client_roles_and_user():
    requested = parse_scopes("launch openid fhirUser offline_access user/*.cruds patient/*.read")
    client = parse_scopes("launch openid fhirUser offline_access user/*.cruds patient/*.cruds")
    roles = union(
        parse_scopes("launch openid fhirUser offline_access user/Patient.rs"),
        parse_scopes("launch openid fhirUser user/Observation.cruds"),
    )
    user_approved = parse_scopes("launch openid fhirUser user/*.cruds patient/*.cruds")
    granted = narrow(requested, client, roles, user_approved)
    assert str(granted) == (
        "launch openid fhirUser user/Patient.rs user/Observation.cruds "
        "patient/Patient.read patient/Observation.read"
    )


def test_narrow_without_ceilings_returns_request():
    requested = parse_scopes("openid patient/*.rs")
    assert str(narrow(requested)) == "openid patient/*.rs"


def test_backend_request_outside_preauthorization_is_down_scoped():
    """BS-05: "never more than pre-authorized"."""
    assert narrowed("system/*.rs", "system/Patient.rs system/Group.r") == (
        "system/Patient.rs system/Group.r"
    )
    assert narrowed("system/*.cruds", "patient/*.cruds user/*.cruds") == ""


# --- describe -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scope", "description"),
    [
        ("patient/Observation.rs?category=laboratory", "Read and search your lab results"),
        (
            f"patient/Observation.rs?category={LAB_SYSTEM}|vital-signs",
            "Read and search your vital signs",
        ),
        ("user/*.cruds", "Create, read, update, delete and search all data you can access"),
        ("patient/*.read", "Read and search all your data"),
        ("system/*.rs", "Read and search all data on this server"),
        ("patient/Condition.rs", "Read and search your conditions"),
        ("patient/MedicationRequest.r", "Read your medications"),
        ("patient/AllergyIntolerance.rs", "Read and search your allergies"),
        ("patient/Patient.rs", "Read and search your demographics"),
        ("user/Appointment.cu", "Create and update appointments you can access"),
        ("system/Patient.write", "Create, update and delete all demographics on this server"),
        ("patient/MedicationDispense.s", "Search your medication dispense records"),
        (
            "patient/Observation.rs?status=final",
            "Read and search your observations where status is final",
        ),
        ("openid", "Know who you are"),
        ("fhirUser", "Know who you are"),
        ("offline_access", "Keep access when you are not using it"),
        ("online_access", "Keep access while you are using it"),
        ("launch/patient", "Know which patient is selected"),
        ("launch/encounter", "Know which encounter is selected"),
        ("launch/location", "Know which location is selected"),
        ("__x", "Use the additional permission __x"),
    ],
)
def test_describe(scope, description):
    assert describe(scope) == description
    assert describe(parse_scope(scope)) == description


def test_describe_all_gives_one_line_per_meaning():
    scopes = parse_scopes("openid fhirUser launch/patient offline_access patient/Patient.rs")
    assert describe_all(scopes) == [
        "Know who you are",
        "Know which patient is selected",
        "Keep access when you are not using it",
        "Read and search your demographics",
    ]


# --- Properties -----------------------------------------------------------------------------

LEVELS = ("patient", "user", "system")
TYPES = ("Observation", "Condition", "Patient")
QUERY_PAIRS = (
    "category=laboratory",
    "category=vital-signs",
    "status=final",
    f"category={LAB_SYSTEM}|laboratory",
)
v2_permissions = st.sets(st.sampled_from("cruds"), min_size=1).map(
    lambda letters: "".join(letter for letter in "cruds" if letter in letters)
)
queries = st.lists(st.sampled_from(QUERY_PAIRS), max_size=2, unique=True).map("&".join)
named_tokens = st.sampled_from(
    [
        "openid",
        "fhirUser",
        "launch",
        "launch/patient",
        "offline_access",
        "__x",
        "urn:example:scope",
        "launch/patient?role=https://example.org/referral",
        "http://openid.net/specs/openid-connect-core-1_0#openid",
    ]
)


@st.composite
def resource_tokens(draw):
    prefix = f"{draw(st.sampled_from(LEVELS))}/{draw(st.sampled_from((*TYPES, '*')))}"
    if draw(st.booleans()):
        return f"{prefix}.{draw(st.sampled_from(['read', 'write', '*']))}"
    query = draw(queries)
    return f"{prefix}.{draw(v2_permissions)}" + (f"?{query}" if query else "")


scope_tokens = st.one_of(resource_tokens(), resource_tokens(), named_tokens)
scope_strings = st.lists(scope_tokens, max_size=6).map(" ".join)


def access_points():
    """Every concrete (level, type, letter, search constraints) a granted scope could allow."""
    pairs = [tuple(pair.split("=", 1)) for pair in QUERY_PAIRS]
    constraint_sets = [frozenset(c) for n in range(3) for c in combinations(pairs, n)]
    for level in LEVELS:
        for resource_type in (*TYPES, "*"):
            for letter in "cruds":
                for constraints in constraint_sets:
                    yield level, resource_type, letter, constraints


ACCESS_POINTS = list(access_points())


def allows(scopes, point):
    """Oracle written from the spec, independent of the module's coverage code."""
    level, resource_type, letter, constraints = point
    return any(
        (scope.level == level or (scope.level, level) == ("user", "patient"))
        and scope.resource_type in ("*", resource_type)
        and letter in scope.permissions
        and set(scope.query) <= constraints
        for scope in scopes.resource_scopes
    )


def named(scopes):
    return {scope.key for scope in scopes if isinstance(scope, NamedScope)}


@PROPERTY_SETTINGS
@given(scope_tokens)
def test_property_parse_round_trips(token):
    scope = parse_scope(token)
    assert str(scope) == token
    assert parse_scope(str(scope)) == scope


@PROPERTY_SETTINGS
@given(scope_strings)
def test_property_parse_scopes_round_trips(text):
    scopes = parse_scopes(text)
    again = parse_scopes(str(scopes))
    assert again == scopes
    assert str(again) == str(scopes)
    assert scopes.dropped == ()


@PROPERTY_SETTINGS
@given(scope_strings, scope_strings)
def test_property_narrow_grants_nothing_unrequested_or_beyond_the_ceiling(requested, ceiling):
    requested, ceiling = parse_scopes(requested), parse_scopes(ceiling)
    granted = narrow(requested, ceiling)
    for point in ACCESS_POINTS:
        if allows(granted, point):
            assert allows(requested, point), point
            assert allows(ceiling, point), point
    assert named(granted) <= named(requested) & named(ceiling)
    assert requested.covers(granted) and ceiling.covers(granted)


@PROPERTY_SETTINGS
@given(scope_strings, scope_strings, scope_strings)
def test_property_chained_narrow_stays_within_every_ceiling(requested, first, second):
    requested, first, second = parse_scopes(requested), parse_scopes(first), parse_scopes(second)
    granted = narrow(requested, first, second)
    assert requested.covers(granted) and first.covers(granted) and second.covers(granted)


@PROPERTY_SETTINGS
@given(scope_strings, scope_strings)
def test_property_narrow_keeps_fully_allowed_requests_verbatim(requested, ceiling):
    requested, ceiling = parse_scopes(requested), parse_scopes(ceiling)
    granted_text = str(narrow(requested, ceiling)).split(" ")
    for scope in requested:
        if ceiling.covers(scope):
            assert str(scope) in granted_text


@PROPERTY_SETTINGS
@given(scope_strings, scope_strings)
def test_property_narrow_is_idempotent(requested, ceiling):
    requested, ceiling = parse_scopes(requested), parse_scopes(ceiling)
    once = narrow(requested, ceiling)
    twice = narrow(once, ceiling)
    assert str(twice) == str(once)


@PROPERTY_SETTINGS
@given(scope_strings)
def test_property_narrow_by_itself_is_identity(text):
    requested = parse_scopes(text)
    assert str(narrow(requested, requested)) == str(requested)


@PROPERTY_SETTINGS
@given(scope_strings, scope_strings)
def test_property_narrow_output_has_no_duplicates(requested, ceiling):
    granted = narrow(parse_scopes(requested), parse_scopes(ceiling))
    keys = [scope.key for scope in granted]
    assert len(keys) == len(set(keys))
    assert parse_scopes(str(granted)) == granted


def is_valid_permission_string(perms):
    """Oracle: the v1 words, or distinct letters of ``cruds`` in that order."""
    if perms in ("read", "write", "*"):
        return True
    return (
        bool(perms)
        and all(letter in "cruds" for letter in perms)
        and list(perms) == sorted(set(perms), key="cruds".index)
    )


@PROPERTY_SETTINGS
@given(st.text(alphabet="crudsxRreadwit*.", max_size=6), st.sampled_from((*TYPES, "*")))
def test_property_malformed_permissions_never_parse(perms, resource_type):
    text = f"patient/{resource_type}.{perms}"
    if is_valid_permission_string(perms):
        assert parse_scope(text).permissions <= frozenset("cruds")
    else:
        with pytest.raises(InvalidScope):
            parse_scope(text)
