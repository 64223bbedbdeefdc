"""Discovery grows with what is registered: SMART 2.2 §metadata, checked like Inferno does."""

import re

from authserver.extensions import db
from authserver.launch import service as launches
from tests.fixtures.accounts import login
from tests.oauth.conftest import authorization_params
from tests.oauth.conftest import authorize
from tests.oauth.conftest import exchange
from tests.oauth.conftest import redirect_params

VERIFIER = "v" * 43


def test_smart_configuration_advertises_the_launch_endpoints(client, tenant):
    document = client.get("/t/clinic-a/.well-known/smart-configuration").json
    issuer = "https://auth.example.test/t/clinic-a"
    assert document["issuer"] == issuer
    assert document["authorization_endpoint"] == issuer + "/authorize"
    assert document["token_endpoint"] == issuer + "/token"
    assert document["grant_types_supported"][:2] == ["authorization_code", "refresh_token"]
    assert document["response_types_supported"] == ["code"]
    assert document["code_challenge_methods_supported"] == ["S256"]
    assert set(document["token_endpoint_auth_methods_supported"]) >= {
        "client_secret_basic",
        "client_secret_post",
    }
    # DISC-11: only the methods SMART names; public clients still work without "none" listed.
    assert set(document["token_endpoint_auth_methods_supported"]) <= {
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt",
    }
    assert set(document["capabilities"]) >= {
        "launch-standalone",
        "context-standalone-patient",
        "authorize-post",
        "client-public",
        "client-confidential-symmetric",
        "sso-openid-connect",
        "permission-v1",
        "permission-v2",
        "permission-patient",
        "permission-user",
        "permission-offline",
        "permission-online",
    }
    assert all(isinstance(capability, str) for capability in document["capabilities"])


def test_openid_configuration_matches(client, tenant):
    smart = client.get("/t/clinic-a/.well-known/smart-configuration").json
    openid = client.get("/t/clinic-a/.well-known/openid-configuration").json
    assert openid["issuer"] == smart["issuer"]
    assert openid["authorization_endpoint"] == smart["authorization_endpoint"]
    assert openid["token_endpoint"] == smart["token_endpoint"]
    assert openid["id_token_signing_alg_values_supported"] == ["RS256"]


def test_every_advertised_scope_of_the_code_grant_can_be_granted(app, client, clinic):
    """DISC-13: "The server SHALL support all scopes listed here": each scope of
    ``scopes_supported`` that an app launch asks for is granted (DISC-14's ``permission-user``
    and EHR-03's ``user/`` scopes included). A patient's scopes come back as asked; a
    clinician's ``user/*`` request comes back narrowed by the role ceiling to ``user/`` scopes
    of the same permissions. The ``system/`` scopes are the backend's
    (``test_every_advertised_system_scope_can_be_granted``)."""
    advertised = client.get("/t/clinic-a/.well-known/smart-configuration").json["scopes_supported"]
    patient, doctor = app.test_client(), app.test_client()
    login(patient, clinic.slug, "pat")
    login(doctor, clinic.slug, "doc")

    for scope in (scope for scope in advertised if not scope.startswith("system/")):
        if scope.startswith("user/"):
            granted = granted_scope(doctor, clinic, scope).split()
            letters = scope.rpartition(".")[2]
            assert granted, scope
            assert all(re.fullmatch(rf"user/[A-Za-z]+\.{re.escape(letters)}", g) for g in granted)
        elif scope == "launch":  # the EHR launch scope: granted with the EHR's launch
            launch_id, _ = launches.create_launch(
                clinic.tenant, patient="pt-1", client_id=clinic.public_app.client_id, actor="ehr"
            )
            db.session.commit()
            assert granted_scope(doctor, clinic, scope, launch=launch_id) == scope
        elif scope == "launch/encounter":  # an EHR launch's encounter (no standalone picker)
            launch_id, _ = launches.create_launch(
                clinic.tenant,
                patient="pt-1",
                encounter="enc-1",
                client_id=clinic.public_app.client_id,
                actor="ehr",
            )
            db.session.commit()
            asked = f"launch {scope}"
            assert granted_scope(doctor, clinic, asked, launch=launch_id) == asked
        else:
            assert granted_scope(patient, clinic, scope) == scope


def granted_scope(browser, clinic, scope: str, **extra: str) -> str:
    """The ``scope`` of the token response to an authorization of ``scope`` the user allows."""
    params = authorization_params(clinic, verifier=VERIFIER, scope=scope, **extra)
    code = redirect_params(authorize(browser, clinic, params))["code"]
    response = exchange(browser, clinic, code, VERIFIER)
    assert response.status_code == 200, (scope, response.json)
    return response.json["scope"]
