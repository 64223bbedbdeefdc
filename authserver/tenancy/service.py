"""Every change to tenants: creation with roles and a first key, suspension, branding."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import select

from authserver import validation
from authserver.accounts import service as accounts
from authserver.audit import service as audit
from authserver.audit.events import AuditEvent
from authserver.errors import Conflict
from authserver.errors import NotFound
from authserver.errors import ValidationError
from authserver.extensions import db
from authserver.extensions import flush_or_conflict
from authserver.keys import service as keys
from authserver.keys.crypto import SUPPORTED_ALGORITHMS
from authserver.keys.models import SigningKey
from authserver.outcomes import Outcome
from authserver.tenancy.models import ACTIVE
from authserver.tenancy.models import SUSPENDED
from authserver.tenancy.models import Tenant
from authserver.tenancy.urls import INTROSPECTION_PATH
from authserver.tenancy.urls import JWKS_PATH
from authserver.tenancy.urls import LOGIN_PATH
from authserver.tenancy.urls import OPENID_CONFIGURATION_PATH
from authserver.tenancy.urls import SLUG
from authserver.tenancy.urls import SMART_CONFIGURATION_PATH
from authserver.tenancy.urls import TenantURLs
from authserver.tenancy.urls import token_length
from authserver.tokens.limits import ASSUMED_URL_LENGTH
from authserver.web import PUBLIC_DOCUMENT_MAX_AGE

# Path segments the deployment may want for itself one day, or that read as something else.
RESERVED_SLUGS = frozenset(
    {
        "admin",
        "api",
        "static",
        "assets",
        "auth",
        "oauth",
        "oauth2",
        "login",
        "logout",
        "health",
        "healthz",
        "readyz",
        "metrics",
        "well-known",
        "www",
        "system",
        "root",
        "default",
        "tenant",
        "tenants",
        "null",
        "none",
        "undefined",
        "fhir",
        "jwks",
        "token",
        "authorize",
    }
)


def validate_slug(slug: str) -> str:
    """Refuse slugs that are malformed or reserved.

    :raises ValidationError: unless 3-63 lowercase letters, digits and inner hyphens.
    """
    if not SLUG.fullmatch(slug or ""):
        raise ValidationError(
            f"invalid tenant slug {slug!r}: use 3 to 63 lowercase letters, digits and hyphens, "
            "starting and ending with a letter or digit"
        )
    if slug in RESERVED_SLUGS:
        raise ValidationError(f"tenant slug {slug!r} is reserved; choose another")
    return slug


def create_tenant(
    slug: str, display_name: str, *, fhir_base_url: str | None = None, actor: str | None = None
) -> Tenant:
    """Create a tenant with the clinical role list and its first RS256 signing key.

    :raises ValidationError: for a bad slug, name or FHIR base URL, or one longer than an
        access token can carry (:func:`validate_fhir_base_url`).
    :raises Conflict: when the slug is taken.
    """
    validate_slug(slug)
    name = validation.text(display_name, "display name", max_length=200)
    if fhir_base_url is not None:
        fhir_base_url = validate_fhir_base_url(fhir_base_url)
    tenant = Tenant(slug=slug, display_name=name, fhir_base_url_override=fhir_base_url)
    _check_fhir_base_not_introspection(tenant)
    if db.session.scalar(select(Tenant.id).where(Tenant.slug == slug)) is not None:
        raise Conflict(f"tenant {slug!r} already exists")
    db.session.add(tenant)
    flush_or_conflict(f"tenant {slug!r} already exists")  # made elsewhere since the check above
    audit.record(tenant, AuditEvent.TENANT_CREATED, actor=actor, subject=slug)
    accounts.create_default_roles(tenant)
    keys.create_key(tenant, "RS256", actor=actor)
    return tenant


def validate_fhir_base_url(url: str) -> str:
    """A tenant's FHIR base URL, without a trailing ``/``: the ``aud`` of every access token.

    :raises ValidationError: unless an absolute https URL (http for loopback) without a query,
        taking at most :data:`ASSUMED_URL_LENGTH` characters in a token, as the token size
        arithmetic counts it (:mod:`authserver.tokens.limits`).
    """
    # A base: {base}/Patient/1 and {base}/.well-known/... are built by appending a path.
    url = validation.web_url(url.rstrip("/"), "FHIR base URL", allow_query=False)
    length = token_length(url)
    if length > ASSUMED_URL_LENGTH:
        raise ValidationError(
            f"the FHIR base URL takes {length} characters as a token writes it, more than the "
            f"{ASSUMED_URL_LENGTH} an access token has for its aud"
        )
    return url


def _check_fhir_base_not_introspection(tenant: Tenant) -> None:
    # The introspection endpoint is the aud of resource servers' introspect tokens, and only of
    # theirs (tokens/introspection.py): as the FHIR base, it would make every other token inactive.
    tenant_urls = urls(tenant)
    if tenant_urls.fhir_base_url == tenant_urls.url(INTROSPECTION_PATH):
        raise ValidationError(
            "the FHIR base URL must not be the tenant's own introspection endpoint"
        )


def get_tenant(slug: str) -> Tenant:
    """:raises NotFound: when no tenant has ``slug``."""
    tenant = db.session.scalar(select(Tenant).where(Tenant.slug == slug))
    if tenant is None:
        raise NotFound(f"no tenant {slug!r}")
    return tenant


def list_tenants() -> list[Tenant]:
    return list(db.session.scalars(select(Tenant).order_by(Tenant.slug)))


def suspend(tenant: Tenant, *, actor: str | None = None) -> Outcome[Tenant]:
    """Make every endpoint of ``tenant`` refuse service; a suspended tenant is left as is."""
    return _set_status(tenant, SUSPENDED, AuditEvent.TENANT_SUSPENDED, actor)


def activate(tenant: Tenant, *, actor: str | None = None) -> Outcome[Tenant]:
    """Serve ``tenant`` again; an active tenant is left as is."""
    return _set_status(tenant, ACTIVE, AuditEvent.TENANT_ACTIVATED, actor)


def _set_status(
    tenant: Tenant, status: str, event: AuditEvent, actor: str | None
) -> Outcome[Tenant]:
    # Only a change is audited: the log says when the status changed, not who asked again.
    if tenant.status == status:
        return Outcome(tenant, changed=False)
    tenant.status = status
    db.session.flush()
    audit.record(tenant, event, actor=actor, subject=tenant.slug)
    return Outcome(tenant, changed=True)


def brand(
    tenant: Tenant,
    *,
    display_name: str | None = None,
    logo_url: str | None = None,
    primary_color: str | None = None,
    support_contact: str | None = None,
    actor: str | None = None,
) -> Tenant:
    """Change the branding fields given; an empty string clears an optional one.

    Everything is validated before anything changes, so a bad field changes nothing.

    :raises ValidationError: for a bad field, or none given (nothing would change).
    """
    given = (display_name, logo_url, primary_color, support_contact)
    if all(value is None for value in given):
        raise ValidationError(
            "nothing to change: give --display-name, --logo-url, --primary-color or "
            "--support-contact"
        )
    changes: dict[str, Any] = {}
    if display_name is not None:
        changes["display_name"] = validation.text(display_name, "display name", max_length=200)
    if logo_url is not None:
        # Shown on every login page, which is https: an http logo is mixed content.
        changes["logo_url"] = (
            validation.web_url(logo_url, "logo URL", allow_loopback_http=False)
            if logo_url
            else None
        )
    if primary_color is not None:
        changes["primary_color"] = validation.color(primary_color) if primary_color else None
    if support_contact is not None:
        changes["support_contact"] = validation.text(
            support_contact, "support contact", max_length=200, required=False
        )
    for name, value in changes.items():
        setattr(tenant, name, value)
    db.session.flush()
    audit.record(
        tenant, AuditEvent.TENANT_BRANDED, actor=actor, subject=tenant.slug, fields=sorted(changes)
    )
    return tenant


def set_patient_search_url(tenant: Tenant, url: str, *, actor: str | None = None) -> Tenant:
    """Point the standalone-launch patient picker at ``url`` (a FHIR ``Patient`` search
    endpoint); an empty string restores the default ``{fhir_base}/Patient``.

    :raises ValidationError: for anything but an absolute https URL (http for loopback).
    """
    tenant.patient_search_url = validation.web_url(url, "patient search URL") if url else None
    db.session.flush()
    audit.record(tenant, AuditEvent.TENANT_PATIENT_SEARCH_SET, actor=actor, subject=tenant.slug)
    return tenant


@dataclass(frozen=True)
class AccessTokenAlgChange(Outcome[Tenant]):
    """What :func:`set_access_token_alg` did to the tenant (``row``): switched its access tokens
    to ``alg`` (``staged_key`` is None), staged ``staged_key`` in the JWKS and switched nothing,
    or nothing at all (``changed`` is False: it signs them with ``alg`` already)."""

    alg: str
    staged_key: SigningKey | None = None

    @property
    def switch_after(self) -> datetime:
        """When the staged key will have been in the JWKS as long as verifiers may cache it.

        :raises ValueError: when nothing was staged (the switch is made).
        """
        if self.staged_key is None:
            raise ValueError(f"access tokens switched to {self.alg}; nothing is staged")
        return self.staged_key.created_at + timedelta(seconds=PUBLIC_DOCUMENT_MAX_AGE)


def set_access_token_alg(
    tenant: Tenant, alg: str, *, now: bool = False, actor: str | None = None
) -> AccessTokenAlgChange:
    """Sign the tenant's access tokens with ``alg`` (RS256 or ES256) once verifiers can know
    its key.

    An ``alg`` the tenant has a signer for switches at once. Otherwise this works like
    :func:`keys.service.rotate`: the first call stages a key (in the JWKS, signing nothing) and
    switches nothing; a call once the key has been in the JWKS for ``PUBLIC_DOCUMENT_MAX_AGE``
    seconds, as long as verifiers may cache it, makes it the signer and switches. ``now``
    switches at once (a new tenant, the demo, an emergency) with the staged key or a new one;
    verifiers holding an older JWKS refuse its tokens until they fetch it again.

    ES256 signs about twenty times faster than RS256; id_tokens stay RS256 whatever this says,
    as SMART requires.

    The ``alg`` in use already, with no switch to another one staged, changes nothing, with or
    without ``now``, and nothing is audited.

    :raises ValidationError: for an algorithm we do not sign with; for the one in use already
        while a switch to another is staged (the operator may mean to cancel it: that takes
        ``keys retire``); without ``now``, when the staged key has not been in the JWKS long
        enough. Nothing changes.
    :raises Conflict: when another command staged or promoted an ``alg`` key at the same time.
    """
    if alg not in SUPPORTED_ALGORITHMS:
        raise ValidationError(f"unsupported algorithm {alg!r}; use one of RS256, ES256")
    if alg == tenant.access_token_alg:
        _check_no_switch_staged(tenant)
        return AccessTokenAlgChange(tenant, changed=False, alg=alg)
    if alg in keys.active_algorithms(tenant):
        return _switch_access_token_alg(tenant, alg, at_once=False, actor=actor)
    staged = keys.staged_key(tenant, alg)
    if not now:
        if staged is None:
            return _stage_access_token_alg(tenant, alg, actor)
        keys.check_may_sign(
            staged, retry=f"access tokens stay {tenant.access_token_alg}: run set-token-alg"
        )
    keys.activate_first(tenant, alg, at_once=now, actor=actor)
    return _switch_access_token_alg(tenant, alg, at_once=now, actor=actor)


def _check_no_switch_staged(tenant: Tenant) -> None:
    """Refuse to answer "nothing to do" for the access-token alg in use while a switch to
    another one is staged (:func:`_stage_access_token_alg`): its key is in the JWKS, and the
    next ``set-token-alg`` of that alg would switch.

    :raises ValidationError: naming the staged key to retire to cancel the switch.
    """
    signing = keys.active_algorithms(tenant)
    for alg in sorted(set(SUPPORTED_ALGORITHMS) - set(signing)):
        staged = keys.staged_key(tenant, alg)
        if staged is not None:
            raise ValidationError(
                f"tenant {tenant.slug!r} signs its access tokens with "
                f"{tenant.access_token_alg} already, and a switch to {alg} is staged: retire "
                f"its key to cancel it (keys retire {tenant.slug} {staged.kid})"
            )


def _stage_access_token_alg(tenant: Tenant, alg: str, actor: str | None) -> AccessTokenAlgChange:
    key = keys.stage_first(tenant, alg, actor=actor)
    change = AccessTokenAlgChange(tenant, changed=True, alg=alg, staged_key=key)
    audit.record(
        tenant,
        AuditEvent.TENANT_TOKEN_ALG_STAGED,
        actor=actor,
        subject=tenant.slug,
        alg=alg,
        kid=key.kid,
        access_token_alg=tenant.access_token_alg,
        switch_after=change.switch_after.isoformat(),
    )
    return change


def _switch_access_token_alg(
    tenant: Tenant, alg: str, *, at_once: bool, actor: str | None
) -> AccessTokenAlgChange:
    previous_alg = tenant.access_token_alg
    tenant.access_token_alg = alg
    db.session.flush()
    audit.record(
        tenant,
        AuditEvent.TENANT_TOKEN_ALG_SET,
        actor=actor,
        subject=tenant.slug,
        alg=alg,
        previous_alg=previous_alg,
        at_once=at_once,
    )
    return AccessTokenAlgChange(tenant, changed=True, alg=alg)


def urls(tenant: Tenant) -> TenantURLs:
    return TenantURLs.of(tenant, current_app.config["AUTHSERVER_PUBLIC_URL"])


def describe(tenant: Tenant) -> dict[str, Any]:
    """The tenant's identity and URLs, as the CLI prints them."""
    tenant_urls = urls(tenant)
    return {
        "slug": tenant.slug,
        "display_name": tenant.display_name,
        "status": tenant.status,
        "issuer": tenant_urls.issuer,
        "fhir_base_url": tenant_urls.fhir_base_url,
        "openid_configuration": tenant_urls.url(OPENID_CONFIGURATION_PATH),
        "smart_configuration": tenant_urls.url(SMART_CONFIGURATION_PATH),
        "jwks_uri": tenant_urls.url(JWKS_PATH),
        "login_url": tenant_urls.url(LOGIN_PATH),
        "access_token_alg": tenant.access_token_alg,
    }
