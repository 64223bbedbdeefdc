"""The standalone-launch patient picker: a FHIR ``Patient?name=`` search at the tenant FHIR server.

The search authenticates with a short-lived system token the server mints for itself for that
tenant (signed with the tenant's key, ``aud`` its FHIR base, ``scope system/Patient.rs``). The
search URL is tenant configuration (``tenant.patient_search_url``, default ``{fhir_base}/Patient``).
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any

import requests

from authserver.smart.context import FHIR_ID
from authserver.tenancy import service as tenants
from authserver.tenancy.models import Tenant
from authserver.tokens.claims import AccessTokenSubject
from authserver.tokens.claims import access_token_claims
from authserver.tokens.service import TokenTooLong
from authserver.tokens.service import sign_access_token

log = logging.getLogger(__name__)

SEARCH_SCOPE = "system/Patient.rs"
SEARCH_TOKEN_LIFETIME = 60
SEARCH_TIMEOUT = 5
MAX_RESULTS = 20
MAX_QUERY_LENGTH = 100
UNAVAILABLE = "The patient search is unavailable right now; try again later."


class PatientSearchFailed(Exception):
    """The FHIR server could not be searched; ``str()`` is safe to show."""


@dataclass(frozen=True)
class PatientChoice:
    id: str
    label: str


def search_url(tenant: Tenant) -> str:
    return tenant.patient_search_url or f"{tenants.urls(tenant).fhir_base_url}/Patient"


def search(tenant: Tenant, name: str) -> list[PatientChoice]:
    """Patients of ``tenant``'s FHIR server whose name matches ``name``.

    :raises PatientSearchFailed: when the server is unreachable or answers no Bundle.
    """
    params = {"name": name[:MAX_QUERY_LENGTH], "_count": str(MAX_RESULTS)}
    try:
        headers = {
            "Authorization": f"Bearer {server_token(tenant)}",
            "Accept": "application/fhir+json",
        }
        response = requests.get(
            search_url(tenant), params=params, headers=headers, timeout=SEARCH_TIMEOUT
        )
        response.raise_for_status()
        bundle = response.json()
    except (requests.RequestException, ValueError, TokenTooLong) as error:
        log.warning("patient search failed for tenant %s: %s", tenant.slug, type(error).__name__)
        raise PatientSearchFailed(UNAVAILABLE) from None
    return patients_in(bundle)


def server_token(tenant: Tenant) -> str:
    """A system access token the server mints for itself (RFC 9068), good for one minute.

    :raises TokenTooLong: for a tenant whose URLs alone make it too long for a header.
    """
    urls = tenants.urls(tenant)
    claims = access_token_claims(
        AccessTokenSubject(
            issuer=urls.issuer,
            audience=urls.fhir_base_url,
            tenant=tenant.slug,
            client_id=urls.issuer,
            scope=SEARCH_SCOPE,
            jti=secrets.token_urlsafe(16),
            issued_at=int(time.time()),
            expires_in=SEARCH_TOKEN_LIFETIME,
            subject=urls.issuer,
        )
    )
    return sign_access_token(tenant, claims)


def patients_in(bundle: Any) -> list[PatientChoice]:
    """The Patients of a FHIR searchset Bundle, labelled for a person to choose from. Pure."""
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise PatientSearchFailed(UNAVAILABLE)
    entries = bundle.get("entry") or []
    if not isinstance(entries, list):
        raise PatientSearchFailed(UNAVAILABLE)
    choices = []
    for entry in entries:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict) or resource.get("resourceType") != "Patient":
            continue
        if isinstance(resource.get("id"), str) and FHIR_ID.fullmatch(resource["id"]):
            choices.append(PatientChoice(resource["id"], _label(resource)))
    return choices[:MAX_RESULTS]


def _label(patient: dict[str, Any]) -> str:
    # The server's answer is not ours to trust: a shape we do not expect (another FHIR
    # version's, where family is a list) labels the patient by id instead of failing the page.
    names = patient.get("name")
    first = names[0] if isinstance(names, list) and names else None
    name = first if isinstance(first, dict) else {}
    parts = (_words(name.get("family")), _words(name.get("given")))
    text = _words(name.get("text")) or ", ".join(part for part in parts if part)
    born = patient.get("birthDate")
    label = text or f"Patient {patient['id']}"
    return f"{label} (born {born})" if isinstance(born, str) else label


def _words(value: Any) -> str:
    """The strings of ``value`` (a string, or a list of them) joined by spaces."""
    parts = value if isinstance(value, list) else [value]
    return " ".join(part for part in parts if isinstance(part, str))
