"""``POST /t/{slug}/launch``: an EHR (a resource-server credential) starts an app launch."""

from __future__ import annotations

from authlib.oauth2 import OAuth2Error
from flask import Blueprint
from flask import Response
from flask import jsonify
from flask import request

from authserver.clients.models import RESOURCE_SERVER
from authserver.errors import ValidationError
from authserver.extensions import csrf
from authserver.extensions import db
from authserver.launch import service
from authserver.oauth.server import authorization_server
from authserver.tenancy.resolution import current_tenant
from authserver.web import NO_STORE

bp = Blueprint("launch", __name__)
# Called by a server with its own credentials, never from a browser session.
csrf.exempt(bp)


@bp.post("/launch")
def create() -> Response | tuple[Response, int]:
    server = authorization_server()
    oauth_request = server.create_oauth2_request(None)
    try:
        ehr = server.authenticate_client(oauth_request, ["client_secret_basic"], endpoint="launch")
    except OAuth2Error as error:
        return server.handle_error_response(oauth_request, error)
    if ehr.kind != RESOURCE_SERVER:
        response = jsonify(error="unauthorized_client", error_description="Only an EHR may launch.")
        return response, 403
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ValidationError("send the launch context as a JSON object")
    tenant = current_tenant()
    launch_id, row = service.create_launch(
        tenant,
        patient=body.get("patient"),
        encounter=body.get("encounter"),
        fhir_context=body.get("fhirContext"),
        intent=body.get("intent"),
        need_patient_banner=body.get("need_patient_banner", False),
        client_id=body.get("client_id"),
        actor=ehr.client_id,
    )
    db.session.commit()
    response = jsonify(service.describe(tenant, launch_id, row))
    response.headers.update(NO_STORE)
    return response, 201
