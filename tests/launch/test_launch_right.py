"""Who may ``POST /launch``: a resource server registered to start launches, and nothing else.

The FHIR gateway (introspects every request) and the EHR (starts launches) are different
systems with different credentials: a leaked gateway secret must not mint launch contexts for
any patient of the tenant.
"""

from __future__ import annotations

import logging

import requests
from sqlalchemy import select
from sqlalchemy import update

from authserver.audit.models import AuditRecord
from authserver.clients.models import Client
from authserver.extensions import db
from authserver.launch import service as launches
from authserver.launch.models import Launch
from tests.fixtures.accounts import login
from tests.fixtures.commands import refused
from tests.fixtures.commands import run
from tests.fixtures.tokens import basic
from tests.oauth.conftest import authorization_params
from tests.oauth.conftest import authorize
from tests.oauth.conftest import new_verifier
from tests.oauth.conftest import redirect_params

NOT_REGISTERED = "This credential is not registered to start launches."
VERIFIER = new_verifier()


def resource_server(make_client, tenant, *, may_launch=False, name="FHIR gateway"):
    return make_client(
        tenant,
        name=name,
        kind="resource_server",
        auth_method="client_secret_basic",
        may_launch=may_launch,
    )


def post_launch(client, slug, credential, app_client_id, patient="pt-1"):
    return client.post(
        f"/t/{slug}/launch",
        json={"patient": patient, "client_id": app_client_id},
        headers=basic(credential.client.client_id, credential.client_secret),
    )


def launches_at(tenant):
    return len(db.session.scalars(Launch.for_tenant(tenant)).all())


def events(name):
    db.session.expire_all()
    return db.session.scalars(select(AuditRecord).where(AuditRecord.event == name)).all()


def assert_not_registered(response):
    assert response.status_code == 403, response.get_data(as_text=True)
    assert response.json == {"error": "unauthorized_client", "error_description": NOT_REGISTERED}


def test_a_resource_server_not_registered_to_launch_is_refused_and_nothing_is_stored(
    client, clinic, make_client, caplog
):
    gateway = resource_server(make_client, clinic.tenant)

    with caplog.at_level(logging.INFO, logger="authserver.launch.views"):
        response = post_launch(client, clinic.slug, gateway, clinic.public_app.client_id)

    assert_not_registered(response)
    assert launches_at(clinic.tenant) == 0
    assert events("launch:created") == []
    logged = caplog.text
    assert gateway.client.client_id in logged and gateway.client_secret not in logged


def test_a_resource_server_registered_to_launch_starts_one(client, clinic, make_client):
    ehr = resource_server(make_client, clinic.tenant, may_launch=True, name="EHR")

    response = post_launch(client, clinic.slug, ehr, clinic.public_app.client_id)

    assert response.status_code == 201, response.json
    assert launches_at(clinic.tenant) == 1


def test_every_resource_server_still_introspects(client, clinic, make_client, issue):
    token = issue(clinic.tenant).access_token
    gateway = resource_server(make_client, clinic.tenant)
    ehr = resource_server(make_client, clinic.tenant, may_launch=True, name="EHR")

    for caller in (gateway, ehr):
        answer = client.post(
            "/t/clinic-a/introspect",
            data={"token": token},
            headers=basic(caller.client.client_id, caller.client_secret),
        )
        assert answer.status_code == 200 and answer.json["active"] is True


def test_an_app_is_refused_whatever_its_row_says(client, clinic):
    """Only a resource server's registration holds the right: an app never launches."""
    app = clinic.confidential_app
    db.session.execute(update(Client).where(Client.id == app.id).values(may_launch=True))
    db.session.commit()

    response = client.post(
        "/t/clinic-a/launch",
        json={"patient": "pt-1", "client_id": clinic.public_app.client_id},
        headers=basic(app.client_id, clinic.secret),
    )

    assert response.status_code == 403
    assert response.json == {
        "error": "unauthorized_client",
        "error_description": "Only an EHR may launch.",
    }
    assert launches_at(clinic.tenant) == 0


def test_granting_and_withdrawing_the_right_answers_the_next_launch_of_a_running_server(
    live_server, cli, clinic, make_client
):
    """The endpoint reads the client's row on each request: a server started before the change
    (another instance, say) answers by the new registration, with no restart."""
    server = live_server()
    gateway = resource_server(make_client, clinic.tenant)
    client_id = gateway.client.client_id

    def launch():
        return requests.post(
            f"{server.url}/t/clinic-a/launch",
            json={"patient": "pt-1", "client_id": clinic.public_app.client_id},
            auth=(client_id, gateway.client_secret),
            timeout=10,
        )

    assert launch().status_code == 403
    run(cli, "client", "set-launch", "clinic-a", client_id, "--may-launch")
    started = launch()
    assert started.status_code == 201, started.text
    run(cli, "client", "set-launch", "clinic-a", client_id, "--may-not-launch")
    withdrawn = launch()
    assert withdrawn.status_code == 403
    assert withdrawn.json()["error_description"] == NOT_REGISTERED


def test_withdrawing_the_right_ends_the_launches_it_started(client, cli, clinic, make_client):
    """As deleting the credential does: whoever stopped trusting it to launch stops trusting a
    launch it started that no app has used yet."""
    ehr = resource_server(make_client, clinic.tenant, may_launch=True, name="EHR")
    started = post_launch(client, clinic.slug, ehr, clinic.public_app.client_id)
    assert started.status_code == 201, started.json
    kept_id, _ = launches.create_launch(
        clinic.tenant, patient="pt-1", client_id=clinic.public_app.client_id, actor="cli"
    )
    db.session.commit()

    run(cli, "client", "set-launch", "clinic-a", ehr.client.client_id, "--may-not-launch")

    login(client, clinic.slug, "doc")
    ended = authorize_with(client, clinic, started.json["launch"])
    assert ended["error"] == "invalid_request" and "code" not in ended
    assert "code" in authorize_with(client, clinic, kept_id)
    [withdrawn] = events("client:launch-withdrawn")
    assert (withdrawn.actor, withdrawn.subject) == ("cli", ehr.client.client_id)
    assert withdrawn.details == {"launches_ended": 1}


def authorize_with(client, clinic, launch_id):
    params = authorization_params(
        clinic, verifier=VERIFIER, scope="launch openid user/*.rs", launch=launch_id
    )
    return redirect_params(authorize(client, clinic, params))


def test_a_right_granted_at_one_tenant_is_none_at_another(
    client, cli, clinic, other_clinic, make_client
):
    """Tenant A's EHR may launch at A only; tenant B's resource server of the same name is B's
    own registration, without the right, and A's right cannot be changed from B."""
    ehr_a = resource_server(make_client, clinic.tenant, may_launch=True, name="EHR")
    ehr_b = resource_server(make_client, other_clinic.tenant, name="EHR")
    app_b = other_clinic.public_app.client_id

    foreign = post_launch(client, "clinic-b", ehr_a, app_b)
    assert foreign.status_code == 401 and foreign.json["error"] == "invalid_client"
    assert_not_registered(post_launch(client, "clinic-b", ehr_b, app_b))
    line = refused(cli, "client", "set-launch", "clinic-b", ehr_a.client.client_id, "--may-launch")
    assert "no client" in line
    assert post_launch(client, "clinic-a", ehr_b, clinic.public_app.client_id).status_code == 401

    assert launches_at(other_clinic.tenant) == 0
    assert post_launch(client, "clinic-a", ehr_a, clinic.public_app.client_id).status_code == 201
