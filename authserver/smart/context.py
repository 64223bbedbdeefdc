"""Launch context: what rides along with a token (SMART 2.2 "Launch context arrives with your
access_token"). Pure: no Flask, no database.
"""

from __future__ import annotations

import json
import re
from typing import Any

from authserver.smart.scopes import LaunchScope
from authserver.smart.scopes import ScopeSet
from authserver.tokens.limits import MAX_FHIR_CONTEXT_LENGTH
from authserver.tokens.limits import MAX_INTENT_LENGTH
from authserver.validation import json_depth
from authserver.validation import json_strings
from authserver.validation import storable

# Token-response members that carry launch context (SMART 2.2 §2.4 of our requirements).
RESPONSE_MEMBERS = (
    "patient",
    "encounter",
    "fhirContext",
    "need_patient_banner",
    "smart_style_url",
    "intent",
)
FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_REFERENCE = re.compile(r"[A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64}")
_RESOURCE_TYPE = re.compile(r"[A-Z][A-Za-z]+")
# Context types with a token-response member of their own, not a fhirContext item (TOK-11).
OWN_MEMBER_TYPES = ("patient", "encounter")
MAX_FHIR_CONTEXT_ITEMS = 20
# The array, an item, its identifier, and a FHIR Identifier's own nesting (type.coding[n],
# assigner.identifier...) with room to spare. Deeper JSON is no FHIR context, and every app and
# gateway that parses the token would have to walk it.
MAX_FHIR_CONTEXT_DEPTH = 10


def token_response_members(context: dict[str, Any]) -> dict[str, Any]:
    """The launch-context members of a token response; ``False`` banners are kept (g10 wants
    the key in every EHR launch)."""
    return {name: context[name] for name in RESPONSE_MEMBERS if context.get(name) is not None}


def granted_context(context: dict[str, Any], scope: ScopeSet) -> dict[str, Any]:
    """``context`` as tokens granted ``scope`` may carry it: ``fhirUser`` only with the
    ``fhirUser`` scope (SMART 2.2 "Scopes for requesting identity data"; OIDC-05), as in the ID
    token, so that an app that did not ask for it, or a user who unticked it, does not disclose it.
    """
    if scope.has("fhirUser"):
        return dict(context)
    return {name: value for name, value in context.items() if name != "fhirUser"}


def served_scope(scope: ScopeSet, context: dict[str, Any]) -> ScopeSet:
    """``scope`` less the ``launch/<type>`` scopes ``context`` holds nothing for (TOK-09,
    SCOPE-09): granted, they would promise the app context that is not there."""
    return ScopeSet(
        granted
        for granted in scope
        if not isinstance(granted, LaunchScope) or holds_context_for(context, granted)
    )


def holds_context_for(context: dict[str, Any], scope: LaunchScope) -> bool:
    """Whether ``context`` holds what the launch scope ``scope`` asks for.

    ``launch`` asks for nothing. ``launch/patient`` and ``launch/encounter`` are answered by
    their own members (TOK-09), and, asked with a ``?role=``, also by a ``fhirContext`` item of
    their type (which has a role other than ``launch`` there, TOK-11). Any other
    ``launch/<type>`` is answered by a ``fhirContext`` item of that type, whatever its role
    (SCOPE-09: an unsupported role "SHOULD still yield context for the type"). The IG writes the
    type "all lowercase" (``launch/imagingstudy`` asks for ImagingStudy), so types match so.
    """
    if scope.context_type is None:
        return True
    wanted = scope.context_type.lower()
    if wanted in OWN_MEMBER_TYPES:
        if context.get(wanted) is not None:
            return True
        if scope.role is None:
            return False
    items = context.get("fhirContext") or ()
    return any((fhir_context_type(item) or "").lower() == wanted for item in items)


def fhir_context_type(item: dict[str, Any]) -> str | None:
    """The resource type of a ``fhirContext`` item: its ``type``, or its reference's type; None
    for a ``canonical`` or ``identifier`` without a ``type``."""
    reference = item.get("reference")
    return item.get("type") or (reference.partition("/")[0] if reference else None)


def fhir_user_url(fhir_base_url: str, fhir_user: str | None) -> str | None:
    """``Practitioner/7`` as an absolute URL under the FHIR base (OIDC-05)."""
    return f"{fhir_base_url.rstrip('/')}/{fhir_user}" if fhir_user else None


def own_patient_id(fhir_user: str | None) -> str | None:
    """The Patient id of a patient user's ``fhirUser`` (``Patient/123`` -> ``123``)."""
    resource_type, _, resource_id = (fhir_user or "").partition("/")
    return resource_id if resource_type == "Patient" and resource_id else None


def fhir_id(value: Any, name: str) -> str:
    """A FHIR logical id (FHIR R4 §2.1.0.8: ``[A-Za-z0-9\\-\\.]{1,64}``).

    :raises ValueError: otherwise.
    """
    if not isinstance(value, str) or not FHIR_ID.fullmatch(value):
        raise ValueError(f"{name} must be a FHIR id (1-64 letters, digits, - and .)")
    return value


def fhir_context(items: Any) -> list[dict[str, Any]]:
    """Validate a SMART 2.2 ``fhirContext`` array (TOK-11, IG-scopes #fhircontext-exp).

    Each item is an object with at least one of ``reference`` (relative ``Type/id``),
    ``canonical`` (string) or ``identifier`` (object); ``type`` is a resource type; ``role`` is an
    absolute URI and never ``""``. Patient and Encounter appear only with a role other than
    ``launch`` (they have their own ``patient`` / ``encounter`` members).

    :raises ValueError: with the first problem found.
    """
    if not isinstance(items, list):
        raise ValueError("fhirContext must be a JSON array of objects")
    if len(items) > MAX_FHIR_CONTEXT_ITEMS:
        raise ValueError(f"fhirContext may hold at most {MAX_FHIR_CONTEXT_ITEMS} items")
    if json_depth(items) > MAX_FHIR_CONTEXT_DEPTH:
        raise ValueError(f"fhirContext may nest at most {MAX_FHIR_CONTEXT_DEPTH} levels deep")
    checked = [_context_item(item, index) for index, item in enumerate(items)]
    text = json.dumps(checked)
    if not all(map(storable, json_strings(checked))):
        raise ValueError("fhirContext must not hold a NUL character or a lone surrogate")
    if len(text) > MAX_FHIR_CONTEXT_LENGTH:
        # It rides in every access token, with the scope (tokens/limits.py).
        raise ValueError(f"fhirContext may be at most {MAX_FHIR_CONTEXT_LENGTH} characters of JSON")
    return checked


def intent(value: str | None) -> str | None:
    """An EHR launch's ``intent``, if the token's JSON writes it in at most
    :data:`MAX_INTENT_LENGTH` characters (a non-ASCII character as a 6-character escape, two of
    them outside the BMP).

    :raises ValueError: otherwise.
    """
    if value is not None and len(json.dumps(value)) - len('""') > MAX_INTENT_LENGTH:
        raise ValueError(
            f"intent may take at most {MAX_INTENT_LENGTH} characters in the access token, "
            "where each non-ASCII character takes 6 or 12"
        )
    return value


def _context_item(item: Any, index: int) -> dict[str, Any]:
    where = f"fhirContext[{index}]"
    if not isinstance(item, dict) or not item:
        raise ValueError(f"{where} must be an object")
    unknown = set(item) - {"reference", "canonical", "identifier", "type", "role"}
    if unknown:
        raise ValueError(f"{where} has unknown members: {', '.join(sorted(unknown))}")
    if not {"reference", "canonical", "identifier"} & set(item):
        raise ValueError(f"{where} needs a reference, canonical or identifier")
    reference = item.get("reference")
    if "reference" in item and not (isinstance(reference, str) and _REFERENCE.fullmatch(reference)):
        raise ValueError(f"{where}.reference must be a relative reference such as Observation/1")
    if "canonical" in item and not (isinstance(item["canonical"], str) and item["canonical"]):
        raise ValueError(f"{where}.canonical must be a non-empty string")
    if "identifier" in item and not isinstance(item["identifier"], dict):
        raise ValueError(f"{where}.identifier must be an object")
    if "type" in item and not (
        isinstance(item["type"], str) and _RESOURCE_TYPE.fullmatch(item["type"])
    ):
        raise ValueError(f"{where}.type must be a FHIR resource type")
    role = item.get("role", "launch")
    if not isinstance(role, str) or not role or (role != "launch" and ":" not in role):
        raise ValueError(f"{where}.role must be an absolute URI (and never empty)")
    referenced_type = (reference or "").partition("/")[0]
    if reference and "type" in item and item["type"] != referenced_type:
        raise ValueError(
            f"{where}.type is {item['type']} but the reference is to {referenced_type}"
        )
    resource_type = fhir_context_type(item)
    if resource_type in ("Patient", "Encounter") and role == "launch":
        raise ValueError(
            f"{where}: {resource_type} goes in --patient/--encounter, or needs a role other than "
            "launch"
        )
    return dict(item)
