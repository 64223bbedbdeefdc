"""The tenant's JWKS."""

from __future__ import annotations

from flask import Blueprint
from flask import Response

from authserver.keys import service
from authserver.tenancy.resolution import current_tenant
from authserver.tenancy.urls import JWKS_PATH
from authserver.web import public_json

bp = Blueprint("keys", __name__)


@bp.get(JWKS_PATH)
def jwks() -> Response:
    return public_json(service.jwks(current_tenant()))
