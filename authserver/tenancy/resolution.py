"""The tenant comes from the URL path ``/t/{slug}/...`` and only from there.

Every tenant view lives on a blueprint nested in :func:`tenant_blueprint`, whose URL
processor loads the tenant before the view runs. An unknown slug is a 404 and never falls
back to another tenant.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from typing import Any
from typing import TypeVar

from flask import Blueprint
from flask import current_app
from flask import g
from flask import request
from flask import url_for
from sqlalchemy import bindparam
from sqlalchemy import select
from werkzeug.exceptions import HTTPException
from werkzeug.exceptions import MethodNotAllowed

from authserver.errors import NotFound
from authserver.errors import ServiceError
from authserver.extensions import db
from authserver.tenancy.models import Tenant
from authserver.tenancy.urls import SLUG

View = TypeVar("View", bound=Callable[..., Any])
# Built once: every tenant request runs it, and building a statement costs more than running it.
_TENANT_BY_SLUG = select(Tenant).where(Tenant.slug == bindparam("slug"))


class TenantNotFound(NotFound):
    pass


class TenantSuspended(ServiceError):
    status = 403
    code = "tenant_suspended"


def page(view: View) -> View:
    """Mark ``view`` as a browser page: its errors render as HTML, not JSON."""
    view.is_page = True  # type: ignore[attr-defined]
    return view


def serves_suspended(view: View) -> View:
    """Mark ``view`` as answering for a suspended tenant itself (e.g. with ``active: false``)."""
    view.serves_suspended = True  # type: ignore[attr-defined]
    return view


def current_view_has(flag: str) -> bool:
    """Whether this request's view is marked with ``flag``; for a method its path does not
    allow (a 405), whether every view its path has is, so that it answers as they would."""
    views = [current_app.view_functions.get(endpoint) for endpoint, _ in _routes()]
    return bool(views) and all(getattr(view, flag, False) for view in views)


def _routes() -> list[tuple[str, dict[str, Any]]]:
    """``(endpoint, URL values)`` of the rule this request was routed to or, when routing refused
    only its method, of the rule for each method its path allows."""
    if request.endpoint is not None:
        return [(request.endpoint, request.view_args or {})]
    refused = request.routing_exception
    if not isinstance(refused, MethodNotAllowed):
        return []
    adapter = current_app.create_url_adapter(request)
    routes = []
    for method in refused.valid_methods or ():
        try:
            routes.append(adapter.match(method=method))  # type: ignore[union-attr]
        except HTTPException:
            continue
    return routes


def load_tenant_of_refused_method() -> None:
    """For a 405, which routing answers before any tenant is loaded, load the tenant the path
    names, so that the error page is that tenant's page. The 405 stays the answer: an unknown
    tenant is no tenant, and a suspended one is loaded all the same, as its 403 page is."""
    routes = _routes()
    if not isinstance(request.routing_exception, MethodNotAllowed) or "tenant" in g or not routes:
        return
    _, values = routes[0]
    with suppress(ServiceError):
        load_tenant_by_slug(values.get("tenant_slug"))


def tenant_blueprint(*children: Blueprint) -> Blueprint:
    """The ``/t/<tenant_slug>`` blueprint holding ``children``; one is made for each app."""
    parent = Blueprint("tenant", __name__, url_prefix="/t/<tenant_slug>")
    parent.url_value_preprocessor(load_tenant)
    parent.url_defaults(add_tenant_slug)
    for child in children:
        parent.register_blueprint(child)
    return parent


def load_tenant(endpoint: str | None, values: dict[str, Any] | None) -> None:
    load_tenant_by_slug((values or {}).pop("tenant_slug", None))


def load_tenant_by_slug(slug: str | None) -> None:
    """Make the tenant called ``slug`` this request's tenant.

    :raises TenantNotFound: when there is none; never another tenant instead.
    :raises TenantSuspended: when it is suspended and the view does not serve suspended tenants.
    """
    # Anything not shaped like a slug names no tenant, and is never sent to the database.
    well_formed = slug is not None and SLUG.fullmatch(slug) is not None
    tenant = db.session.scalar(_TENANT_BY_SLUG, {"slug": slug}) if well_formed else None
    if tenant is None:
        raise TenantNotFound(f"no tenant {slug!r} here")
    g.tenant = tenant
    if not tenant.is_active and not current_view_has("serves_suspended"):
        raise TenantSuspended(f"{tenant.display_name} is suspended and cannot serve requests")


def add_tenant_slug(endpoint: str, values: dict[str, Any]) -> None:
    if "tenant_slug" not in values and "tenant" in g:
        values["tenant_slug"] = g.tenant.slug


def current_tenant() -> Tenant:
    """The tenant of this request, as resolved from its URL.

    :raises RuntimeError: outside a tenant URL: a bug, never a fallback.
    """
    tenant = g.get("tenant")
    if tenant is None:
        raise RuntimeError("no tenant in this request; tenant views live under /t/<slug>/")
    return tenant


def public_url_for(endpoint: str, **values: Any) -> str:
    """Absolute URL of ``endpoint`` under the deployment's public URL, never the request's host."""
    path = url_for(endpoint, **values)[len(request.script_root) :]
    return current_app.config["AUTHSERVER_PUBLIC_URL"] + path
