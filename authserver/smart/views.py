"""The tenant's discovery documents, also under its default FHIR base.

SMART 2.2 conformance §using-well-known.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from flask import Response

from authserver.oauth.server import authorization_server
from authserver.smart import discovery
from authserver.smart import style
from authserver.tenancy import service as tenants
from authserver.tenancy.resolution import current_tenant
from authserver.tenancy.resolution import public_url_for
from authserver.tenancy.urls import OPENID_CONFIGURATION_PATH
from authserver.tenancy.urls import SMART_CONFIGURATION_PATH
from authserver.web import public_json

bp = Blueprint("discovery", __name__)


def _inputs() -> tuple[Any, str, dict[str, str]]:
    server = authorization_server()
    issuer = tenants.urls(current_tenant()).issuer
    return server, issuer, discovery.endpoint_members(server, public_url_for)


@bp.get(SMART_CONFIGURATION_PATH)
@bp.get("/fhir" + SMART_CONFIGURATION_PATH)
def smart_configuration() -> Response:
    # JSON whatever the Accept header says (SMART 2.2: "SHALL be JSON, regardless of Accept").
    return public_json(discovery.smart_configuration(*_inputs()))


@bp.get(OPENID_CONFIGURATION_PATH)
def openid_configuration() -> Response:
    return public_json(discovery.openid_configuration(*_inputs()))


@bp.get("/smart-style.json")
def smart_style() -> Response:
    """``smart_style_url`` of EHR launches (TOK-10: answers GET with JSON)."""
    return public_json(style.style_document(current_tenant().primary_color))
