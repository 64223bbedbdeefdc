"""The catalogue of granular sub-scopes a user may grant instead of a resource-level one."""

from __future__ import annotations

import pytest

from authserver.smart.granular import sub_scopes
from authserver.smart.scopes import covers
from authserver.smart.scopes import parse_scope

LAB = "http://terminology.hl7.org/CodeSystem/observation-category|laboratory"


def test_observation_offers_the_us_core_categories():
    texts = [sub.text for sub in sub_scopes(parse_scope("patient/Observation.rs"))]
    assert texts == [
        f"patient/Observation.rs?category={LAB}",
        "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|social-history",
        "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|vital-signs",
        "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|survey",
        "patient/Observation.rs?category=http://hl7.org/fhir/us/core/CodeSystem/us-core-category|sdoh",
        "patient/Observation.rs?category=http://hl7.org/fhir/us/core/CodeSystem/us-core-observation-category|clinical-test",
    ]


def test_condition_offers_the_us_core_categories():
    texts = [sub.text for sub in sub_scopes(parse_scope("user/Condition.rs"))]
    assert texts == [
        "user/Condition.rs?category=http://terminology.hl7.org/CodeSystem/condition-category|encounter-diagnosis",
        "user/Condition.rs?category=http://terminology.hl7.org/CodeSystem/condition-category|problem-list-item",
        "user/Condition.rs?category=http://hl7.org/fhir/us/core/CodeSystem/condition-category|health-concern",
    ]


def test_v1_read_gets_v2_granular_sub_scopes():
    assert sub_scopes(parse_scope("patient/Observation.read"))[0].text == (
        f"patient/Observation.rs?category={LAB}"
    )


@pytest.mark.parametrize(
    "scope",
    [
        "patient/Observation.cruds",
        "patient/Observation.read",
        "patient/Condition.s",
        "user/Observation.*",
    ],
)
def test_every_sub_scope_is_part_of_its_scope(scope):
    subs = sub_scopes(parse_scope(scope))
    assert subs
    assert all(covers(parse_scope(scope), sub) and sub != parse_scope(scope) for sub in subs)


@pytest.mark.parametrize(
    "scope",
    [
        "patient/Patient.rs",
        "patient/*.rs",
        "patient/Observation.cud",
        f"patient/Observation.rs?category={LAB}",
        "openid",
        "launch/patient",
    ],
)
def test_other_scopes_have_no_sub_scopes(scope):
    assert sub_scopes(parse_scope(scope)) == ()
