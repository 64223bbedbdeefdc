"""``authserver client create --resource-server --may-launch`` and ``client set-launch``: which
resource servers may start EHR launches."""

import pytest
from sqlalchemy import func
from sqlalchemy import select

from authserver.audit.models import AuditRecord
from authserver.clients import service
from authserver.clients.models import APP
from authserver.clients.models import Client
from authserver.errors import ValidationError
from authserver.extensions import db
from tests.fixtures.commands import refused
from tests.fixtures.commands import run
from tests.fixtures.commands import unchanged


def create_resource_server(cli, *flags):
    return run(cli, "client", "create", "clinic-a", "--name", "EHR", "--resource-server", *flags)


def may_launch(client_id):
    db.session.expire_all()
    return db.session.scalar(select(Client.may_launch).where(Client.client_id == client_id))


def records(event):
    db.session.expire_all()
    query = select(AuditRecord).where(AuditRecord.event == event).order_by(AuditRecord.id)
    return db.session.scalars(query).all()


def count(model):
    db.session.expire_all()
    return db.session.scalar(select(func.count()).select_from(model))


def test_a_resource_server_may_launch_only_when_registered_for_it(cli, tenant):
    ehr = create_resource_server(cli, "--may-launch")
    gateway = create_resource_server(cli)

    assert ehr["may_launch"] is True and may_launch(ehr["client_id"]) is True
    assert gateway["may_launch"] is False and may_launch(gateway["client_id"]) is False
    listed = {row["client_id"]: row["may_launch"] for row in run(cli, "client", "list", "clinic-a")}
    assert listed == {ehr["client_id"]: True, gateway["client_id"]: False}
    created = {record.subject: record.details for record in records("client:created")}
    assert created[ehr["client_id"]] == {"kind": "resource_server", "may_launch": True}
    assert created[gateway["client_id"]] == {"kind": "resource_server", "may_launch": False}


def test_an_app_is_shown_without_the_right(cli, tenant):
    shown = run(
        cli, "client", "create", "clinic-a", "--name", "App", "--secret",
        "--redirect-uri", "https://app.test/cb",
    )  # fmt: skip

    assert "may_launch" not in shown  # an app never launches: there is no right to show


@pytest.mark.parametrize(
    "kind", [[], ["--public"], ["--secret"]], ids=["alone", "public", "secret"]
)
def test_may_launch_without_resource_server_is_one_line(cli, tenant, kind):
    clients, events = count(Client), count(AuditRecord)

    line = refused(cli, "client", "create", "clinic-a", "--name", "App", "--may-launch", *kind)

    assert line == (
        "Error: --may-launch goes with --resource-server: only a resource server (an EHR) "
        "starts launches, never an app"
    )
    assert (count(Client), count(AuditRecord)) == (clients, events)


def test_the_service_refuses_an_app_that_would_launch(tenant):
    with pytest.raises(ValidationError, match="only a resource server"):
        service.register(tenant, name="App", auth_method="client_secret_basic", kind=APP,
                         redirect_uris=["https://app.test/cb"], may_launch=True)  # fmt: skip
    db.session.rollback()
    assert count(Client) == 0


def test_set_launch_grants_and_withdraws_the_right_and_audits_each(cli, tenant):
    client_id = create_resource_server(cli)["client_id"]

    granted = run(cli, "client", "set-launch", "clinic-a", client_id, "--may-launch")
    assert granted["may_launch"] is True and may_launch(client_id) is True
    withdrawn = run(cli, "client", "set-launch", "clinic-a", client_id, "--may-not-launch")
    assert withdrawn["may_launch"] is False and may_launch(client_id) is False

    [grant] = records("client:launch-granted")
    [withdrawal] = records("client:launch-withdrawn")
    assert (grant.actor, grant.subject, grant.details) == ("cli", client_id, {})
    assert (withdrawal.actor, withdrawal.subject) == ("cli", client_id)
    assert withdrawal.details == {"launches_ended": 0}


@pytest.mark.parametrize(
    ("registered", "asked", "said"),
    [([], "--may-not-launch", "may not"), (["--may-launch"], "--may-launch", "may")],
)
def test_set_launch_asked_for_what_holds_changes_and_audits_nothing(
    cli, tenant, registered, asked, said
):
    client_id = create_resource_server(cli, *registered)["client_id"]
    events = count(AuditRecord)

    shown, line = unchanged(cli, "client", "set-launch", "clinic-a", client_id, asked)

    assert line == (
        f"Client {client_id} of tenant clinic-a {said} start launches already; nothing changed."
    )
    assert shown["may_launch"] is (said == "may")
    assert count(AuditRecord) == events


def test_set_launch_of_an_app_is_one_line_and_changes_nothing(cli, tenant, make_client):
    app = make_client(tenant).client
    events = count(AuditRecord)

    line = refused(cli, "client", "set-launch", "clinic-a", app.client_id, "--may-launch")

    assert line == (
        f"Error: client {app.client_id!r} is an app: only a resource server (an EHR) starts "
        "launches, never an app"
    )
    assert may_launch(app.client_id) is False
    assert count(AuditRecord) == events


def test_set_launch_of_an_unknown_client_is_one_line(cli, tenant):
    line = refused(cli, "client", "set-launch", "clinic-a", "rs_nobody", "--may-launch")

    assert line == "Error: no client 'rs_nobody' at tenant 'clinic-a'"


def test_set_launch_of_another_tenants_resource_server_is_unknown(
    cli, tenant, other_tenant, make_client
):
    theirs = make_client(other_tenant, kind="resource_server", auth_method="client_secret_basic")
    client_id = theirs.client.client_id

    line = refused(cli, "client", "set-launch", "clinic-a", client_id, "--may-launch")

    assert line == f"Error: no client {client_id!r} at tenant 'clinic-a'"
    assert may_launch(client_id) is False


def test_set_launch_without_a_flag_is_one_line(cli, tenant):
    client_id = create_resource_server(cli)["client_id"]

    line = refused(cli, "client", "set-launch", "clinic-a", client_id)

    assert line == "Error: nothing to change: give --may-launch or --may-not-launch"
