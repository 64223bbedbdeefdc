"""``authserver tenant ...``"""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from authserver.cli.common import ACTOR
from authserver.cli.common import Commands
from authserver.cli.common import emit
from authserver.cli.common import nothing_changed
from authserver.cli.common import service_command
from authserver.cli.common import tenant_named
from authserver.tenancy import service
from authserver.web import PUBLIC_DOCUMENT_MAX_AGE


@click.group(cls=Commands)
def tenant() -> None:
    """Create and manage tenants (clinics)."""


@tenant.command("create")
@click.argument("slug")
@click.option("--name", required=True, help="Display name, e.g. 'Riverside Family Clinic'.")
@click.option("--fhir-base-url", help="FHIR base URL apps send as aud (default {issuer}/fhir).")
@with_appcontext
@service_command
def create(slug: str, name: str, fhir_base_url: str | None) -> None:
    """Create tenant SLUG with its roles and first signing key."""
    created = service.create_tenant(slug, name, fhir_base_url=fhir_base_url, actor=ACTOR)
    emit(service.describe(created))


@tenant.command("list")
@with_appcontext
def list_() -> None:
    """List tenants."""
    emit([service.describe(row) for row in service.list_tenants()])


@tenant.command("suspend")
@click.argument("slug")
@with_appcontext
@service_command
def suspend(slug: str) -> None:
    """Suspend SLUG: its endpoints refuse service until it is activated."""
    outcome = service.suspend(tenant_named(slug), actor=ACTOR)
    if not outcome.changed:
        nothing_changed(f"Tenant {slug} is already suspended")
    emit(service.describe(outcome.row))


@tenant.command("activate")
@click.argument("slug")
@with_appcontext
@service_command
def activate(slug: str) -> None:
    """Serve SLUG again."""
    outcome = service.activate(tenant_named(slug), actor=ACTOR)
    if not outcome.changed:
        nothing_changed(f"Tenant {slug} is already active")
    emit(service.describe(outcome.row))


@tenant.command("brand")
@click.argument("slug")
@click.option("--display-name")
@click.option("--logo-url", help="https URL of the logo ('' clears it).")
@click.option("--primary-color", help="#rrggbb ('' clears it).")
@click.option("--support-contact", help="Shown on the login page ('' clears it).")
@with_appcontext
@service_command
def brand(slug: str, **fields: str | None) -> None:
    """Change SLUG's branding."""
    branded = service.brand(tenant_named(slug), actor=ACTOR, **fields)
    emit(
        {
            **service.describe(branded),
            "logo_url": branded.logo_url,
            "primary_color": branded.primary_color,
            "support_contact": branded.support_contact,
        }
    )


@tenant.command("set-patient-search")
@click.argument("slug")
@click.argument("url")
@with_appcontext
@service_command
def set_patient_search(slug: str, url: str) -> None:
    """Make URL (a FHIR Patient search endpoint) SLUG's patient picker; '' for the default."""
    from authserver.launch import patients

    changed = service.set_patient_search_url(tenant_named(slug), url, actor=ACTOR)
    emit({**service.describe(changed), "patient_search_url": patients.search_url(changed)})


@tenant.command("set-token-alg")
@click.argument("slug")
@click.argument("alg")
@click.option(
    "--now",
    is_flag=True,
    help="Switch at once (a new tenant, an emergency), before every verifier's cached JWKS "
    "holds the new key.",
)
@with_appcontext
@service_command
def set_token_alg(slug: str, alg: str, now: bool) -> None:
    """Sign SLUG's access tokens with ALG, RS256 or ES256 (id_tokens stay RS256).

    When SLUG has no ALG signing key yet, this takes two runs, like `keys stage` and `keys
    rotate`: the first publishes a new key in the JWKS and switches nothing; the second, once
    the key has been there as long as verifiers may cache the JWKS (the first says when),
    switches. With --now the first run switches. With the ALG SLUG signs its access tokens with
    already, nothing changes.
    """
    change = service.set_access_token_alg(tenant_named(slug), alg, now=now, actor=ACTOR)
    described = service.describe(change.row)
    if change.staged_key is None:
        if not change.changed:
            nothing_changed(f"Tenant {slug} signs its access tokens with {alg} already")
        emit(described)
        return
    switch_after = change.switch_after.isoformat()
    emit(
        {
            **described,
            "staged_access_token_alg": alg,
            "staged_key": change.staged_key.describe(),
            "switch_after": switch_after,
        }
    )
    click.echo(
        f"Nothing switched yet: access tokens stay {described['access_token_alg']} while "
        f"{alg} key {change.staged_key.kid!r} is published in the JWKS. Verifiers may cache the "
        f"JWKS for {PUBLIC_DOCUMENT_MAX_AGE} s: run `authserver tenant set-token-alg {slug} "
        f"{alg}` again after {switch_after} to switch, or with --now to switch at once.",
        err=True,
    )
