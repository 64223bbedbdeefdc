"""A tenant's public URLs. Every URL a client sees is built here from the public URL."""

from __future__ import annotations

import re
from dataclasses import dataclass

from authserver.tenancy.models import Tenant

# What a tenant may be called: the only path segment that can name one.
SLUG = re.compile(r"[a-z0-9](?:[a-z0-9-]{1,61})[a-z0-9]")
OPENID_CONFIGURATION_PATH = "/.well-known/openid-configuration"
SMART_CONFIGURATION_PATH = "/.well-known/smart-configuration"
JWKS_PATH = "/.well-known/jwks.json"
LOGIN_PATH = "/login"
TOKEN_PATH = "/token"


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
        return f"{self.public_url}/t/{self.slug}"

    @property
    def default_fhir_base_url(self) -> str:
        return f"{self.issuer}/fhir"

    @property
    def fhir_base_url(self) -> str:
        return self.fhir_base_override or self.default_fhir_base_url

    def url(self, path: str) -> str:
        """Absolute URL of ``path`` (starting with ``/``) under the issuer."""
        return f"{self.issuer}{path}"
