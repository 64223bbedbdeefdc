"""``authserver client create --resource-server --may-launch``: which resource servers may start
EHR launches."""

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
