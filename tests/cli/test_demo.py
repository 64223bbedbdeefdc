"""``authserver demo``: one command to a working server with two demo clinics."""

import json
import logging
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from sqlalchemy import func
from sqlalchemy import select

from authserver.accounts.models import User
from authserver.audit import service as audit
from authserver.audit.events import AuditEvent
from authserver.clients import service as clients
from authserver.clients.models import Client
from authserver.extensions import db
from authserver.tenancy.models import Tenant
from tests.fixtures.accounts import login
from tests.fixtures.database import FAST_ARGON2
from tests.fixtures.tokens import basic
from tests.pg import free_port

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEMO_TENANTS = {"demo-clinic", "demo-hospital"}


@pytest.fixture(autouse=True)
def keep_logging():
    """The demo runs the migrations, whose logging set-up would outlive the command's streams."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def development_app(make_app, make_database_url):
    """A development app on a database of its own, still empty: the demo migrates it itself."""
    app = make_app(AUTHSERVER_ENV="development", AUTHSERVER_DATABASE_URL=make_database_url("demo"))
    with app.app_context():
        yield app
        db.session.remove()


def run_demo(app):
    result = app.test_cli_runner().invoke(args=["demo", "--no-serve"])
    assert result.exit_code == 0, result.output
    return {tenant["slug"]: tenant for tenant in json.loads(result.stdout)}


def count(model):
    db.session.expire_all()
    return db.session.scalar(select(func.count()).select_from(model))


def test_demo_creates_two_clinics_with_staff_a_patient_and_an_app(development_app):
    shown = run_demo(development_app)

    assert set(shown) == DEMO_TENANTS
    assert {row.slug for row in db.session.scalars(select(Tenant))} == DEMO_TENANTS
    clinic = shown["demo-clinic"]
    assert clinic["display_name"] == "Riverside Family Clinic"
    roles = {role for user in clinic["users"] for role in user["roles"]}
    assert {"physician", "nurse", "front-desk", "patient"} <= roles
    assert clinic["app"]["token_endpoint_auth_method"] == "none"
    assert clinic["app"]["redirect_uris"]
    assert {"openid", "launch/patient", "patient/*.rs"} <= set(clinic["app"]["scope"].split())
    assert clinic["resource_server"]["client_secret"].startswith("ascs_")
    assert clinic["resource_server"]["scope"] == "introspect"  # its token, as client list says
    doctor = next(user for user in clinic["users"] if "physician" in user["roles"])
    browser = development_app.test_client()
    assert login(browser, "demo-clinic", doctor["username"], doctor["password"]).status_code == 303


def test_running_the_demo_twice_creates_nothing_twice(development_app):
    first = run_demo(development_app)
    users, registered, tenants = count(User), count(Client), count(Tenant)

    second = run_demo(development_app)

    assert (count(User), count(Client), count(Tenant)) == (users, registered, tenants)
    for slug in DEMO_TENANTS:
        assert second[slug]["app"]["client_id"] == first[slug]["app"]["client_id"]
        assert [u["id"] for u in second[slug]["users"]] == [u["id"] for u in first[slug]["users"]]


def test_a_demo_run_that_resets_the_demo_passwords_audits_each_change(development_app):
    run_demo(development_app)

    shown = run_demo(development_app)

    for slug in DEMO_TENANTS:
        tenant = db.session.scalar(select(Tenant).where(Tenant.slug == slug))
        changes = audit.recent(tenant, limit=100, event=AuditEvent.USER_PASSWORD_CHANGED)
        assert sorted((record.subject, record.actor) for record in changes) == sorted(
            (user["username"], "demo") for user in shown[slug]["users"]
        )


def test_each_demo_run_gives_the_gateway_a_fresh_secret(development_app):
    old = run_demo(development_app)["demo-clinic"]["resource_server"]

    new = run_demo(development_app)["demo-clinic"]["resource_server"]

    assert new["client_id"] == old["client_id"]
    assert new["client_secret"] != old["client_secret"]
    tenant = db.session.scalar(select(Tenant).where(Tenant.slug == "demo-clinic"))
    gateway = clients.find_client(tenant, new["client_id"])
    assert gateway.check_client_secret(new["client_secret"])
    assert not gateway.check_client_secret(old["client_secret"])


def test_the_demo_ehr_starts_launches_and_its_gateway_does_not(development_app):
    """``POST /launch`` as the README describes it works with the demo's EHR credential; the
    gateway's, which introspects, starts none."""
    clinic = run_demo(development_app)["demo-clinic"]
    server = development_app.test_client()
    body = {"patient": "demo-patient-1", "client_id": clinic["app"]["client_id"]}

    def launch(credential):
        headers = basic(credential["client_id"], credential["client_secret"])
        return server.post("/t/demo-clinic/launch", json=body, headers=headers)

    assert (clinic["ehr"]["may_launch"], clinic["resource_server"]["may_launch"]) == (True, False)
    started = launch(clinic["ehr"])
    assert started.status_code == 201, started.json
    assert started.json["patient"] == "demo-patient-1"
    refused = launch(clinic["resource_server"])
    assert refused.status_code == 403 and refused.json["error"] == "unauthorized_client"


def test_the_demo_refuses_to_run_in_production(app):
    result = app.test_cli_runner().invoke(args=["demo", "--no-serve"])

    assert result.exit_code != 0
    assert "AUTHSERVER_ENV=development" in result.stderr
    assert count(Tenant) == 0
    assert count(User) == 0


def authserver_script():
    sibling = Path(sys.executable).parent / "authserver"
    if sibling.exists():
        return str(sibling)
    found = shutil.which("authserver")
    assert found, "the authserver script is not installed (pip install -e .)"
    return found


def http_get(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - our own server
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@pytest.mark.slow
def test_authserver_demo_serves_the_demo_clinic_login_page(tmp_path):
    port = free_port()
    environment = {
        name: value for name, value in os.environ.items() if not name.startswith("AUTHSERVER_")
    }
    environment.update(
        {
            "AUTHSERVER_ENV": "development",
            "AUTHSERVER_INSTANCE_PATH": str(tmp_path / "instance"),
            "AUTHSERVER_DATABASE_URL": f"sqlite:///{tmp_path / 'demo.sqlite'}",
            **{name: str(value) for name, value in FAST_ARGON2.items()},
        }
    )
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen(
        [authserver_script(), "demo", "--port", str(port)],
        cwd=PROJECT_ROOT,
        env=environment,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, (tmp_path / "server.log").read_text()
            try:
                if http_get(f"{base}/healthz")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "server.log").read_text()
            time.sleep(0.2)

        status, page = http_get(f"{base}/t/demo-clinic/login")

        assert status == 200
        assert "Riverside Family Clinic" in page
        assert http_get(f"{base}/t/demo-clinic/.well-known/smart-configuration")[0] == 200
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
