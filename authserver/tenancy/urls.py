"""A tenant's public URLs. Every URL a client sees is built here from the public URL."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from authserver.tokens.limits import ASSUMED_URL_LENGTH

if TYPE_CHECKING:  # the type name only: config.py reads the bounds below before any model
    from authserver.tenancy.models import Tenant

# What a tenant may be called: the only path segment that can name one.
SLUG = re.compile(r"[a-z0-9](?:[a-z0-9-]{1,61})[a-z0-9]")
MAX_SLUG_LENGTH = 63
# A tenant's issuer is {public URL}/t/{slug}, its default FHIR base URL {issuer}/fhir.
TENANT_PATH = "/t/"
DEFAULT_FHIR_PATH = "/fhir"
# The longest public URL whose every tenant's issuer and default FHIR base URL stay within the
# ASSUMED_URL_LENGTH the token size arithmetic counts for each (authserver/tokens/limits.py).
MAX_PUBLIC_URL_LENGTH = (
    ASSUMED_URL_LENGTH - len(TENANT_PATH) - MAX_SLUG_LENGTH - len(DEFAULT_FHIR_PATH)
)
OPENID_CONFIGURATION_PATH = "/.well-known/openid-configuration"
SMART_CONFIGURATION_PATH = "/.well-known/smart-configuration"
JWKS_PATH = "/.well-known/jwks.json"
LOGIN_PATH = "/login"
TOKEN_PATH = "/token"
# Also the audience of a resource server's introspect token (tokens/service.py audience).
INTROSPECTION_PATH = "/introspect"


@dataclass(frozen=True)
class TenantURLs:
    """The base URLs of one tenant under one deployment's public URL."""

    public_url: str
    slug: str
    fhir_base_override: str | None = None

    @classmethod
    def of(cls, tenant: Tenant, public_url: str) -> TenantURLs:
        return cls(public_url.rstrip("/"), tenant.slug, tenant.fhir_base_url_override)

    @property
    def issuer(self) -> str:
        return f"{self.public_url}{TENANT_PATH}{self.slug}"

    @property
    def default_fhir_base_url(self) -> str:
        return f"{self.issuer}{DEFAULT_FHIR_PATH}"

    @property
    def fhir_base_url(self) -> str:
        return self.fhir_base_override or self.default_fhir_base_url

    def url(self, path: str) -> str:
        """Absolute URL of ``path`` (starting with ``/``) under the issuer."""
        return f"{self.issuer}{path}"


def token_length(url: str) -> int:
    """The characters ``url`` takes in a token's JSON, where a non-ASCII character is a
    6-character escape (two of them outside the BMP), as :data:`ASSUMED_URL_LENGTH` counts."""
    return len(json.dumps(url)) - len('""')
