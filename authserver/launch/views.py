"""``POST /t/{slug}/launch``: an EHR (a resource server registered to launch) starts an app
launch."""

from __future__ import annotations

import logging

from authlib.oauth2 import OAuth2Error
from flask import Blueprint
from flask import Response
from flask import jsonify
from flask import request

from authserver.clients.models import RESOURCE_SERVER
from authserver.clients.models import Client
from authserver.errors import ValidationError
from authserver.extensions import csrf
from authserver.extensions import db
from authserver.launch import service
from authserver.oauth.server import authorization_server
from authserver.tenancy.resolution import current_tenant
from authserver.web import NO_STORE

log = logging.getLogger(__name__)

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
        return _refused(ehr, "Only an EHR may launch.")
    if not ehr.may_launch:
        # A FHIR gateway's credential: it may introspect, but its secret starts no launch.
        return _refused(ehr, "This credential is not registered to start launches.")
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


def _refused(caller: Client, description: str) -> tuple[Response, int]:
    """403 ``unauthorized_client``: a credential that checked out, without the right to launch.

    Logged by client id, and not audited, like an app's credential refused at introspection:
    the refusal changes nothing (the refusals that are audited, a replayed code or refresh
    token, revoke what was issued).
    """
    log.info("refused a launch to client %s: %s", caller.client_id, description)
    return jsonify(error="unauthorized_client", error_description=description), 403
