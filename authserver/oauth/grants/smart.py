"""SMART App Launch checks on an authorization request, as an extension of the code grant.

Authlib checks ``client_id``, ``redirect_uri``, ``response_type`` and the scope; these hooks then
check what SMART adds: ``aud`` names this tenant's FHIR base (AUTHZ-08/09/10), SMART parameters
appear once (AUTHZ-18), and an EHR launch has its launch (AUTHZ-20, EHR-02).
"""

from __future__ import annotations

from typing import Any

from authlib.oauth2.rfc6749 import InvalidRequestError

from authserver.launch import service as launches
from authserver.tenancy import service as tenants
from authserver.tenancy.resolution import current_tenant

SINGLE_PARAMETERS = (
    "aud",
    "code_challenge",
    "code_challenge_method",
    "launch",
    "max_age",
    "nonce",
    "prompt",
)
MAX_NONCE_LENGTH = 255


class SmartAuthorizationRequest:
    """An extension: ``register_grant(AuthorizationCodeGrant, [SmartAuthorizationRequest()])``."""

    # The launch context this extension puts into token responses.
    CAPABILITIES = (
        "context-standalone-patient",
        "launch-ehr",
        "context-ehr-patient",
        "context-ehr-encounter",
        "context-banner",
        "context-style",
    )

    def __call__(self, grant: Any) -> None:
        grant.register_hook("after_validate_authorization_request_payload", self.validate)

    def validate(self, grant: Any, redirect_uri: str) -> None:
        payload = grant.request.payload
        for name in SINGLE_PARAMETERS:
            if len(payload.datalist.get(name, [])) > 1:
                raise InvalidRequestError(f"Multiple '{name}' in request.")
        validate_audience(payload.data.get("aud"))
        if len(payload.data.get("nonce") or "") > MAX_NONCE_LENGTH:
            raise InvalidRequestError(f"'nonce' is longer than {MAX_NONCE_LENGTH} characters.")
        launch_id = payload.data.get("launch")
        if grant.request.requested_scope.has("launch") and not launch_id:
            raise InvalidRequestError("The 'launch' scope needs the 'launch' parameter.")
        if launch_id:
            grant.request.launch = launches.resolve(current_tenant(), launch_id, grant.client)
            if grant.request.launch is None:
                raise InvalidRequestError("Unknown, expired or used 'launch'.")


def validate_audience(aud: str | None) -> None:
    """``aud`` must be this tenant's FHIR base URL; a trailing ``/`` is tolerated (AUTHZ-10).

    :raises InvalidRequestError: when missing or naming another server (no code is issued).
    """
    if not aud:
        raise InvalidRequestError("Missing 'aud': send the FHIR base URL of this server.")
    if aud.rstrip("/") != tenants.urls(current_tenant()).fhir_base_url.rstrip("/"):
        raise InvalidRequestError("Invalid 'aud': it is not the FHIR base URL of this server.")
