"""``authserver client ...``"""

from __future__ import annotations

import json

import click
from click.core import ParameterSource
from flask.cli import with_appcontext

from authserver.cli.common import ACTOR
from authserver.cli.common import Commands
from authserver.cli.common import emit
from authserver.cli.common import nothing_changed
from authserver.cli.common import service_command
from authserver.cli.common import tenant_named
from authserver.clients import service
from authserver.clients.models import APP
from authserver.clients.models import RESOURCE_SERVER
from authserver.errors import ValidationError


@click.group(cls=Commands)
def client() -> None:
    """Register apps (OAuth clients) and resource servers."""


@client.command("create")
@click.argument("tenant")
@click.option("--name", required=True)
@click.option("--redirect-uri", "redirect_uris", multiple=True, help="Exact redirect URI (repeat).")
@click.option("--public", "public", is_flag=True, help="Public app: no secret, PKCE only.")
@click.option("--secret", "secret", is_flag=True, help="Confidential app with a client secret.")
@click.option("--jwks-uri", help="Confidential app authenticating with private_key_jwt.")
@click.option(
    "--jwks-file",
    type=click.File("r", encoding="utf-8"),  # RFC 8259 §8.1: JSON exchanged is UTF-8
    help="Like --jwks-uri, with the JWK Set inline.",
)
@click.option(
    "--auth-method",
    type=click.Choice(["client_secret_basic", "client_secret_post"]),
    default="client_secret_basic",
    show_default=True,
    help="How a --secret client or a resource server sends its secret.",
)
@click.option(
    "--scope", "scopes", multiple=True, help="A scope the client may be granted (repeat)."
)
@click.option("--grant-type", "grant_types", multiple=True, help="A grant type (repeat).")
@click.option(
    "--resource-server", is_flag=True, help="A resource server (FHIR gateway) credential."
)
@click.option(
    "--may-launch",
    is_flag=True,
    help="A resource server that may also start EHR launches (POST /launch): the EHR's.",
)
@click.option(
    "--service-account",
    metavar="USERNAME",
    help="Backend client: act for this user of TENANT, within its role ceiling.",
)
@with_appcontext
@service_command
def create(
    tenant: str,
    name: str,
    redirect_uris: tuple[str, ...],
    public: bool,
    secret: bool,
    jwks_uri: str | None,
    jwks_file: click.utils.LazyFile | None,
    auth_method: str,
    scopes: tuple[str, ...],
    grant_types: tuple[str, ...],
    resource_server: bool,
    may_launch: bool,
    service_account: str | None,
) -> None:
    """Register a client at TENANT; prints its client_id, and its secret this once."""
    if may_launch and not resource_server:
        raise ValidationError(f"--may-launch goes with --resource-server: {service.APP_LAUNCHES}")
    chosen = [
        flag
        for flag, given in (
            ("--public", public),
            ("--secret", secret),
            ("--jwks-uri", jwks_uri),
            ("--jwks-file", jwks_file),
        )
        if given
    ]
    if len(chosen) > 1:
        raise ValidationError(
            f"choose one of --public, --secret, --jwks-uri, --jwks-file, not {chosen}"
        )
    if not chosen and not resource_server:
        raise ValidationError("choose one of --public, --secret, --jwks-uri, --jwks-file")
    _check_auth_method_given_alone(chosen)
    registration = service.register(
        tenant_named(tenant),
        name=name,
        kind=RESOURCE_SERVER if resource_server else APP,
        auth_method=_auth_method(public, jwks_uri, jwks_file, auth_method),
        redirect_uris=list(redirect_uris),
        scopes=list(scopes),
        grant_types=list(grant_types),
        jwks=_read_jwks(jwks_file),
        jwks_uri=jwks_uri,
        service_account=service_account,
        may_launch=may_launch,
        actor=ACTOR,
    )
    emit(service.describe(registration.client, registration.client_secret))


def _check_auth_method_given_alone(chosen: list[str]) -> None:
    # --auth-method picks how a secret is sent; with no secret it would be dropped unsaid.
    given = click.get_current_context().get_parameter_source("auth_method")
    others = [flag for flag in chosen if flag != "--secret"]
    if given is not ParameterSource.DEFAULT and others:
        raise ValidationError(
            f"--auth-method conflicts with {others[0]}: it says how a --secret client "
            "or a resource server sends its secret"
        )


def _auth_method(public: bool, jwks_uri: str | None, jwks_file: object, secret_method: str) -> str:
    if public:
        return "none"
    if jwks_uri or jwks_file:
        return "private_key_jwt"
    return secret_method


def _read_jwks(jwks_file: click.utils.LazyFile | None) -> object:
    if jwks_file is None:
        return None
    try:
        return json.load(jwks_file)
    except json.JSONDecodeError as error:
        raise ValidationError(
            f"--jwks-file is not JSON: {error.msg} at line {error.lineno}"
        ) from None
    except UnicodeDecodeError:
        raise ValidationError("--jwks-file is not UTF-8 text: give the JWK Set as JSON") from None
    except RecursionError:
        raise ValidationError("--jwks-file is not a JWK Set: its JSON nests too deeply") from None


@client.command("list")
@click.argument("tenant")
@with_appcontext
@service_command
def list_(tenant: str) -> None:
    """List TENANT's clients."""
    emit(
        [
            {**service.describe(row), "status": row.status}
            for row in service.list_clients(tenant_named(tenant))
        ]
    )


@client.command("delete")
@click.argument("tenant")
@click.argument("client_id")
@with_appcontext
@service_command
def delete(tenant: str, client_id: str) -> None:
    """Delete CLIENT_ID at TENANT: it can no longer authenticate."""
    emit(service.describe(service.delete(tenant_named(tenant), client_id, actor=ACTOR)))


@client.command("reset-secret")
@click.argument("tenant")
@click.argument("client_id")
@with_appcontext
@service_command
def reset_secret(tenant: str, client_id: str) -> None:
    """Give CLIENT_ID a new secret, printed this once; the old one stops working."""
    registration = service.reset_secret(tenant_named(tenant), client_id, actor=ACTOR)
    emit(service.describe(registration.client, registration.client_secret))


@client.command("set-scopes")
@click.argument("tenant")
@click.argument("client_id")
@click.option(
    "--scope", "scopes", multiple=True, help="A scope the client may be granted (repeat)."
)
@with_appcontext
@service_command
def set_scopes(tenant: str, client_id: str, scopes: tuple[str, ...]) -> None:
    """Replace the scopes CLIENT_ID of TENANT may be granted; each refresh applies them."""
    outcome = service.set_scopes(tenant_named(tenant), client_id, list(scopes), actor=ACTOR)
    if not outcome.changed:
        nothing_changed(f"Client {client_id} of tenant {tenant} has those scopes already")
    emit(service.describe(outcome.row))


@client.command("set-policy")
@click.argument("tenant")
@click.argument("client_id")
@click.option("--trusted/--not-trusted", default=None, help="Skip the consent page for this app.")
@click.option(
    "--legacy-smart-v1/--no-legacy-smart-v1",
    default=None,
    help="Let this confidential app omit PKCE (SMART v1).",
)
@with_appcontext
@service_command
def set_policy(
    tenant: str, client_id: str, trusted: bool | None, legacy_smart_v1: bool | None
) -> None:
    """Change how TENANT's authorization endpoint treats app CLIENT_ID."""
    outcome = service.set_policy(
        tenant_named(tenant),
        client_id,
        trusted=trusted,
        legacy_smart_v1=legacy_smart_v1,
        actor=ACTOR,
    )
    if not outcome.changed:
        nothing_changed(f"Client {client_id} of tenant {tenant} has that policy already")
    app = outcome.row
    emit({**service.describe(app), "trusted": app.trusted, "legacy_smart_v1": app.legacy_smart_v1})


@client.command("set-launch")
@click.argument("tenant")
@click.argument("client_id")
@click.option(
    "--may-launch/--may-not-launch",
    default=None,
    help="Let this resource server start EHR launches, or stop it (its unused launches end).",
)
@with_appcontext
@service_command
def set_launch(tenant: str, client_id: str, may_launch: bool | None) -> None:
    """Let resource server CLIENT_ID of TENANT start EHR launches (POST /launch), or stop it."""
    if may_launch is None:
        raise ValidationError("nothing to change: give --may-launch or --may-not-launch")
    outcome = service.set_launch(tenant_named(tenant), client_id, may_launch, actor=ACTOR)
    if not outcome.changed:
        may = "may" if may_launch else "may not"
        nothing_changed(f"Client {client_id} of tenant {tenant} {may} start launches already")
    emit(service.describe(outcome.row))


@client.command("link-service-account")
@click.argument("tenant")
@click.argument("client_id")
@click.argument("username")
@with_appcontext
@service_command
def link_service_account(tenant: str, client_id: str, username: str) -> None:
    """Let backend client CLIENT_ID act for USERNAME of TENANT, within USERNAME's role ceiling."""
    outcome = service.set_service_account(tenant_named(tenant), client_id, username, actor=ACTOR)
    linked = outcome.row
    if not outcome.changed:
        account = linked.service_account.username
        nothing_changed(f"Client {client_id} of tenant {tenant} acts for {account} already")
    emit(service.describe(linked))


@client.command("unlink-service-account")
@click.argument("tenant")
@click.argument("client_id")
@with_appcontext
@service_command
def unlink_service_account(tenant: str, client_id: str) -> None:
    """Stop CLIENT_ID of TENANT acting for a service account; its registration alone bounds it."""
    outcome = service.set_service_account(tenant_named(tenant), client_id, None, actor=ACTOR)
    if not outcome.changed:
        nothing_changed(f"Client {client_id} of tenant {tenant} acts for no service account")
    emit(service.describe(outcome.row))
