"""``authserver demo``: a working server with demo clinics in one command."""

from __future__ import annotations

from typing import Any

import click
from flask import current_app
from flask.cli import with_appcontext
from flask_migrate import upgrade
from werkzeug.serving import run_simple

from authserver.accounts import service as accounts
from authserver.cli.common import OneLineErrors
from authserver.cli.common import emit
from authserver.clients import service as clients
from authserver.clients.models import APP
from authserver.clients.models import RESOURCE_SERVER
from authserver.clients.models import Client
from authserver.config import DEFAULTS
from authserver.extensions import db
from authserver.tenancy import service as tenants
from authserver.tenancy.models import Tenant

ACTOR = "demo"
DEMO_TENANTS = {
    "demo-clinic": ("Riverside Family Clinic", "#1f6feb"),
    "demo-hospital": ("Hillcrest Community Hospital", "#8250df"),
}
# username -> (roles, fhirUser). Demo passwords are "{username}-demo"; development only.
DEMO_USERS: dict[str, tuple[list[str], str | None]] = {
    "dr.smith": (["physician"], "Practitioner/demo-practitioner-1"),
    "nurse.jones": (["nurse"], "Practitioner/demo-practitioner-2"),
    "desk.lee": (["front-desk"], None),
    "billing.kim": (["billing"], None),
    "admin.patel": (["clinic-admin"], None),
    "pat.garcia": (["patient"], "Patient/demo-patient-1"),
}
DEMO_APP = "Demo SMART app"
# What the demo app may ask for; each user's role ceiling narrows it further.
DEMO_APP_SCOPES = [
    "openid",
    "fhirUser",
    "launch",
    "launch/patient",
    "offline_access",
    "patient/*.rs",
    "user/*.rs",
]
DEMO_APP_REDIRECT = "http://localhost:8000/callback"
# Two resource servers, as a deployment has: the gateway introspects, the EHR starts launches.
DEMO_GATEWAY = "Demo FHIR gateway"
DEMO_EHR = "Demo EHR"


@click.command("demo", cls=OneLineErrors)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--no-serve", is_flag=True, help="Set up the demo data and exit.")
@with_appcontext
def demo(host: str, port: int, no_serve: bool) -> None:
    """Create the demo clinics, users and apps (idempotently), print them, and serve."""
    if current_app.config["AUTHSERVER_ENV"] != "development":
        raise click.ClickException(
            "the demo uses known passwords: run it with AUTHSERVER_ENV=development"
        )
    if current_app.config["AUTHSERVER_PUBLIC_URL"] == DEFAULTS["AUTHSERVER_PUBLIC_URL"]:
        # Issuers and discovery must name the address this server is reachable at.
        current_app.config["AUTHSERVER_PUBLIC_URL"] = f"http://localhost:{port}"
    upgrade(directory=current_app.extensions["migrate"].directory)
    emit([_demo_tenant(slug, name, color) for slug, (name, color) in DEMO_TENANTS.items()])
    db.session.commit()
    if not no_serve:
        click.echo(
            f"Serving on http://{host}:{port}/t/demo-clinic/login (Ctrl+C to stop)", err=True
        )
        # Flask's app.run() refuses to run inside a CLI command; werkzeug's server is the same one.
        run_simple(host, port, current_app._get_current_object(), threaded=True)  # type: ignore[attr-defined]


def _demo_tenant(slug: str, name: str, color: str) -> dict[str, Any]:
    tenant = _get_or_create_tenant(slug, name)
    tenants.brand(tenant, primary_color=color, support_contact="help@example.org", actor=ACTOR)
    users = [_ensure_user(tenant, username, *spec) for username, spec in DEMO_USERS.items()]
    app = _ensure_client(
        tenant,
        DEMO_APP,
        APP,
        auth_method="none",
        redirect_uris=[DEMO_APP_REDIRECT],
        scopes=DEMO_APP_SCOPES,
    )
    return {
        **tenants.describe(tenant),
        "users": users,
        "app": clients.describe(app),
        "resource_server": _with_fresh_secret(tenant, DEMO_GATEWAY),
        "ehr": _with_fresh_secret(tenant, DEMO_EHR, may_launch=True),
    }


def _get_or_create_tenant(slug: str, name: str) -> Tenant:
    existing = db.session.scalar(db.select(Tenant).where(Tenant.slug == slug))
    return existing or tenants.create_tenant(slug, name, actor=ACTOR)


def _ensure_user(tenant: Tenant, username: str, roles: list[str], fhir_user: str | None) -> dict:
    password = f"{username}-demo"
    user = accounts.find_user(tenant, username)
    if user is None:
        user = accounts.create_user(
            tenant, username, password, roles, fhir_user=fhir_user, actor=ACTOR
        )
    else:
        accounts.set_password(tenant, user, password, actor=ACTOR)
    return {**accounts.describe_user(user), "password": password}


def _ensure_client(tenant: Tenant, name: str, kind: str, **metadata: Any) -> Client:
    for existing in clients.list_clients(tenant):
        if existing.name == name and existing.is_active:
            return existing
    return clients.register(tenant, name=name, kind=kind, actor=ACTOR, **metadata).client


def _with_fresh_secret(tenant: Tenant, name: str, **metadata: Any) -> dict[str, Any]:
    """The demo's resource server ``name``, registered if missing, with its secret.

    A secret is shown only when made, so each demo run gives the resource server a fresh one.
    """
    server = _ensure_client(
        tenant, name, RESOURCE_SERVER, auth_method="client_secret_basic", **metadata
    )
    registration = clients.reset_secret(tenant, server.client_id, actor=ACTOR)
    return clients.describe(registration.client, registration.client_secret)
