"""Granular sub-scopes a user may grant instead of a whole resource type (SCOPE-06). Pure.

ONC g10 (``g10_smart_granular_scope_selection``) and US Core: a user asked for resource-level
``patient/Condition.rs`` or ``patient/Observation.rs`` may share only some categories, and the
granted ``scope`` then lists those granular scopes instead, e.g.
``patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory``.
The sub-scopes offered are a catalogue, so a consent form can only ever ask for one of them.
"""

from __future__ import annotations

from authserver.smart.scopes import PERMISSION_LETTERS
from authserver.smart.scopes import ResourceScope
from authserver.smart.scopes import Scope
from authserver.smart.scopes import parse_scope

HL7_CONDITION = "http://terminology.hl7.org/CodeSystem/condition-category"
US_CORE_CONDITION = "http://hl7.org/fhir/us/core/CodeSystem/condition-category"
HL7_OBSERVATION = "http://terminology.hl7.org/CodeSystem/observation-category"
US_CORE_CATEGORY = "http://hl7.org/fhir/us/core/CodeSystem/us-core-category"
US_CORE_OBSERVATION = "http://hl7.org/fhir/us/core/CodeSystem/us-core-observation-category"

# ``system|code`` category tokens per resource type, as US Core and g10 use them.
CATEGORIES: dict[str, tuple[str, ...]] = {
    "Condition": (
        f"{HL7_CONDITION}|encounter-diagnosis",
        f"{HL7_CONDITION}|problem-list-item",
        f"{US_CORE_CONDITION}|health-concern",
    ),
    "Observation": (
        f"{HL7_OBSERVATION}|laboratory",
        f"{HL7_OBSERVATION}|social-history",
        f"{HL7_OBSERVATION}|vital-signs",
        f"{HL7_OBSERVATION}|survey",
        f"{US_CORE_CATEGORY}|sdoh",
        f"{US_CORE_OBSERVATION}|clinical-test",
    ),
}


def sub_scopes(scope: Scope) -> tuple[ResourceScope, ...]:
    """The category-constrained scopes that each grant part of ``scope``; none for other scopes.

    Only an unconstrained scope on one catalogued type that reads or searches has any; each keeps
    its level and permissions (v1 words become v2 letters, which search constraints need).
    """
    if not isinstance(scope, ResourceScope) or scope.query:
        return ()
    if scope.resource_type not in CATEGORIES or not scope.permissions & frozenset("rs"):
        return ()
    letters = "".join(letter for letter in PERMISSION_LETTERS if letter in scope.permissions)
    prefix = f"{scope.level}/{scope.resource_type}.{letters}?category="
    return tuple(parse_scope(prefix + token) for token in CATEGORIES[scope.resource_type])
