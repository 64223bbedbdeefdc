"""Granted = requested ∩ client's allowed ∩ union of role ceilings ∩ approved, and never more."""

from __future__ import annotations

from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from authserver.smart.policy import grantable
from authserver.smart.policy import granted
from authserver.smart.scopes import ResourceScope
from authserver.smart.scopes import parse_scopes
from authserver.smart.scopes import union

RESOURCE_SCOPES = st.builds(
    "{}/{}.{}".format,
    st.sampled_from(["patient", "user"]),
    st.sampled_from(["*", "Observation", "Patient", "Condition"]),
    st.sampled_from(["read", "write", "*", "r", "s", "rs", "cu", "cruds", "crus", "d"]),
)
GRANULAR = st.sampled_from(
    ["patient/Observation.rs?category=laboratory", "user/Condition.rs?category=problem-list-item"]
)
NAMED = st.sampled_from(["openid", "fhirUser", "launch/patient", "offline_access", "launch"])
EXTENSIONS = st.sampled_from(["__admin", "https://rs.example/scopes/export"])
SCOPE_STRINGS = st.lists(st.one_of(RESOURCE_SCOPES, GRANULAR, NAMED, EXTENSIONS), max_size=6).map(
    " ".join
)
CEILINGS = st.lists(st.one_of(RESOURCE_SCOPES, GRANULAR), max_size=4).map(" ".join)
REGISTRATIONS = st.lists(st.one_of(RESOURCE_SCOPES, GRANULAR, EXTENSIONS), max_size=4).map(" ".join)


def test_named_scopes_pass_the_role_ceiling_but_not_the_client_registration():
    requested = parse_scopes("openid fhirUser launch/patient patient/Observation.rs")
    assert str(grantable(requested, parse_scopes(""), parse_scopes("user/*.rs"))) == str(requested)
    client_allowed = parse_scopes("openid patient/*.rs")
    assert str(grantable(requested, client_allowed, parse_scopes("user/*.rs"))) == (
        "openid patient/Observation.rs"
    )


def test_only_a_registration_naming_an_extension_scope_grants_it():
    """SCOPE-11 scopes are a resource server's own permissions, which no role ceiling bounds: an
    app registered without scopes gets its SMART and OpenID scopes (its refresh scopes
    included) as the role ceiling allows, and no extension scope."""
    requested = parse_scopes(
        "launch/patient openid offline_access patient/*.rs __admin https://rs.example/scopes/su"
    )
    ceiling = parse_scopes("patient/*.rs")

    assert str(grantable(requested, parse_scopes(""), ceiling)) == (
        "launch/patient openid offline_access patient/*.rs"
    )
    registered = parse_scopes("launch/patient patient/*.rs __admin")
    assert str(grantable(requested, registered, ceiling)) == "launch/patient patient/*.rs __admin"


def test_user_approval_narrows_to_granular_scopes():
    could = parse_scopes("patient/Observation.rs patient/Patient.rs")
    approved = parse_scopes("patient/Observation.rs?category=laboratory patient/Patient.rs")
    assert str(granted(could, approved)) == (
        "patient/Observation.rs?category=laboratory patient/Patient.rs"
    )


@settings(max_examples=300, deadline=None)
@given(SCOPE_STRINGS, REGISTRATIONS, st.lists(CEILINGS, min_size=1, max_size=3), SCOPE_STRINGS)
def test_granted_never_exceeds_any_ceiling(requested, client_allowed, role_ceilings, approved):
    requested_set = parse_scopes(requested)
    client_set = parse_scopes(client_allowed)
    role_union = union(*(parse_scopes(ceiling) for ceiling in role_ceilings))
    result = granted(grantable(requested_set, client_set, role_union), parse_scopes(approved))
    for scope in result:
        assert requested_set.covers(scope), scope
        assert parse_scopes(approved).covers(scope), scope
        if isinstance(scope, ResourceScope):
            assert role_union.covers(scope), scope
            if len(client_set):
                assert client_set.covers(scope), scope
        elif scope.kind == "extension":
            assert client_set.covers(scope), scope
