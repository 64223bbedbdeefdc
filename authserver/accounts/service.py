"""Every change to accounts: roles, users, passwords and login sessions."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from typing import Any

from flask import current_app

from authserver import security
from authserver.accounts.models import ACTIVE
from authserver.accounts.models import DISABLED
from authserver.accounts.models import LoginSession
from authserver.accounts.models import Role
from authserver.accounts.models import User
from authserver.accounts.passwords import passwords
from authserver.accounts.roles import DEFAULT_CEILINGS
from authserver.accounts.roles import DEFAULT_ROLES
from authserver.accounts.roles import PATIENT_ROLE
from authserver.accounts.usernames import normalize_username
from authserver.accounts.usernames import unknown_username_subject
from authserver.audit import service as audit
from authserver.audit.events import AuditEvent
from authserver.errors import Conflict
from authserver.errors import NotFound
from authserver.errors import ValidationError
from authserver.extensions import db
from authserver.extensions import flush_or_conflict
from authserver.models import utcnow
from authserver.outcomes import Outcome
from authserver.smart import scopes
from authserver.tenancy.models import Tenant
from authserver.tokens import revocation
from authserver.tokens.limits import scope_too_long

USERNAME = re.compile(r"[a-z0-9][a-z0-9._@+-]{0,149}")
FHIR_USER = re.compile(
    r"(Practitioner|PractitionerRole|Patient|RelatedPerson|Person)/[A-Za-z0-9.-]{1,64}"
)
MIN_PASSWORD_LENGTH = 8
# Hashing megabytes of "password" is a denial of service, not a login.
MAX_PASSWORD_LENGTH = 1024
SESSION_TOKEN_PREFIX = "asls"


def create_default_roles(tenant: Tenant) -> list[Role]:
    """The clinical roles, each with its minimum-necessary default ceiling (:mod:`roles`)."""
    roles = [
        Role(
            tenant_id=tenant.id,
            name=name,
            description=description,
            scope_ceiling=" ".join(DEFAULT_CEILINGS.get(name, [])),
        )
        for name, description in DEFAULT_ROLES.items()
    ]
    db.session.add_all(roles)
    db.session.flush()
    return roles


def list_roles(tenant: Tenant) -> list[Role]:
    return list(db.session.scalars(Role.for_tenant(tenant).order_by(Role.name)))


def get_role(tenant: Tenant, name: str) -> Role:
    """:raises NotFound: when ``tenant`` has no role ``name``."""
    role = db.session.scalar(Role.for_tenant(tenant).where(Role.name == name))
    if role is None:
        raise NotFound(f"no role {name!r} at tenant {tenant.slug!r}")
    return role


def parse_ceiling(scope_list: list[str]) -> scopes.ScopeSet:
    """A role ceiling: SMART ``patient/`` or ``user/`` resource scopes, parsed strictly.

    :raises ValidationError: for a malformed scope, one that is not a user-facing resource
        scope (identity, launch and refresh scopes are bounded elsewhere; ``system/`` scopes
        belong to backend clients, never to a person's role), or more than fit in an access
        token together (:data:`MAX_TOKEN_SCOPE_LENGTH` characters): narrowing a request for
        ``patient/*.rs`` spells it out as the ceiling's scopes, and the token granting them all
        would be refused, as a client registration's would (``clients.metadata.scopes``).
    """
    if not scope_list:
        raise ValidationError("a ceiling needs at least one scope")
    try:
        ceiling = scopes.parse_scopes(" ".join(scope_list), strict=True)
    except scopes.InvalidScope as error:
        raise ValidationError(str(error)) from None
    for scope in ceiling:
        if not isinstance(scope, scopes.ResourceScope) or scope.level == "system":
            raise ValidationError(
                f"{scope.text!r} cannot be in a role ceiling: use patient/ or user/ resource "
                "scopes, e.g. user/Observation.rs"
            )
    too_long = scope_too_long(str(ceiling), "the ceiling's scopes")
    if too_long:
        raise ValidationError(f"{too_long}: set fewer or broader scopes")
    return ceiling


def set_role_ceiling(
    tenant: Tenant, name: str, scope_list: list[str], *, actor: str | None = None
) -> Role:
    """Replace the ceiling of role ``name``. Access tokens already issued keep their scope until
    they expire; every refresh from now on mints only what the new ceiling allows, and the
    refresh token it returns no more than that (``oauth/grants/refresh_token.py``).

    :raises NotFound: for a role the tenant does not have.
    :raises ValidationError: for a scope :func:`parse_ceiling` refuses, or a scope of the
        patient role that is not a ``patient/`` scope (it would reach other patients).
    """
    role = get_role(tenant, name)
    ceiling = parse_ceiling(scope_list)
    if name == PATIENT_ROLE and any(scope.level != "patient" for scope in ceiling):
        raise ValidationError(
            "the patient role reaches the patient's own record only: use patient/ scopes, "
            "e.g. patient/*.rs"
        )
    before, role.scope_ceiling = role.scope_ceiling, str(ceiling)
    db.session.flush()
    audit.record(
        tenant,
        AuditEvent.ROLE_CEILING_CHANGED,
        actor=actor,
        subject=name,
        before=before,
        after=role.scope_ceiling,
    )
    return role


def role_ceiling(user: User) -> scopes.ScopeSet:
    """What ``user``'s roles together let them grant: the union of their ceilings.

    A patient's login is pinned to their own record, which only ``patient/`` scopes respect:
    for a holder of the patient role nothing else counts, whatever other role a row written
    around :func:`create_user` gave them.
    """
    ceiling = scopes.union(*(scopes.parse_scopes(role.scope_ceiling) for role in user.roles))
    if PATIENT_ROLE in user.role_names:
        return scopes.ScopeSet(
            scope for scope in ceiling.resource_scopes if scope.level == "patient"
        )
    return ceiling


def describe_role(role: Role) -> dict[str, Any]:
    return {
        "name": role.name,
        "description": role.description,
        "scope_ceiling": role.scope_ceiling.split(),
    }


def find_roles(tenant: Tenant, names: list[str]) -> list[Role]:
    """This tenant's roles called ``names``: a set one login may hold.

    :raises ValidationError: for none given, a name the tenant does not have, or the patient
        role beside another (a patient signs in to their own record only: a staff member who is
        also a patient here has two logins).
    """
    if not names:
        raise ValidationError("at least one role is required")
    if PATIENT_ROLE in names and len(set(names)) > 1:
        raise ValidationError(
            f"the {PATIENT_ROLE} role cannot be combined with other roles: a patient's login "
            "reaches their own record only; give the person a separate staff login"
        )
    roles = {role.name: role for role in list_roles(tenant)}
    unknown = sorted(set(names) - set(roles))
    if unknown:
        raise ValidationError(
            f"unknown role {', '.join(unknown)}; "
            f"this tenant's roles are: {', '.join(sorted(roles))}"
        )
    return [roles[name] for name in dict.fromkeys(names)]


def validate_password(password: str) -> str:
    """:raises ValidationError: when too short, too long or blank."""
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValidationError(f"password is longer than {MAX_PASSWORD_LENGTH} characters")
    if len(password.strip()) < MIN_PASSWORD_LENGTH:
        raise ValidationError(f"password must have at least {MIN_PASSWORD_LENGTH} characters")
    return password


def create_user(
    tenant: Tenant,
    username: str,
    password: str,
    roles: list[str],
    *,
    fhir_user: str | None = None,
    actor: str | None = None,
) -> User:
    """Create an account at ``tenant``. Everything is checked before anything is written.

    :raises ValidationError: bad username, password, fhirUser or unknown role.
    :raises Conflict: when the username is taken in this tenant.
    """
    username = normalize_username(username)
    if not USERNAME.fullmatch(username):
        raise ValidationError(
            "invalid username: use 1 to 150 letters, digits and . _ @ + -, starting with a letter "
            "or digit"
        )
    if fhir_user is not None and not FHIR_USER.fullmatch(fhir_user):
        raise ValidationError(
            f"invalid fhirUser {fhir_user!r}: use Practitioner/ID, PractitionerRole/ID, "
            "Patient/ID, RelatedPerson/ID or Person/ID"
        )
    validate_password(password)
    role_rows = find_roles(tenant, roles)
    if find_user(tenant, username) is not None:
        raise Conflict(f"user {username!r} already exists at tenant {tenant.slug!r}")
    user = User(
        tenant_id=tenant.id,
        username=username,
        subject=new_subject(),
        password_hash=passwords().hash(password),
        fhir_user=fhir_user,
        roles=role_rows,
    )
    db.session.add(user)
    # Made elsewhere since the check above (another instance, another command).
    flush_or_conflict(f"user {username!r} already exists at tenant {tenant.slug!r}")
    audit.record(tenant, AuditEvent.USER_CREATED, actor=actor, subject=username, roles=roles)
    return user


def new_subject() -> str:
    """A fresh ``sub`` for a new user: random, so it tells nothing of the user or of others."""
    return str(uuid.uuid4())


def find_user(tenant: Tenant, username: str) -> User | None:
    query = User.for_tenant(tenant).where(User.username == normalize_username(username))
    return db.session.scalar(query)


def get_user(tenant: Tenant, username: str) -> User:
    """:raises NotFound: when ``tenant`` has no such user."""
    user = find_user(tenant, username)
    if user is None:
        raise NotFound(f"no user {normalize_username(username)!r} at tenant {tenant.slug!r}")
    return user


def set_roles(
    tenant: Tenant, user: User, names: list[str], *, actor: str | None = None
) -> Outcome[User]:
    """Give ``user`` exactly the roles ``names``. Access tokens already issued keep their scope
    until they expire; every refresh from now on mints only what the new roles allow
    (``oauth/grants/refresh_token.py``), as after :func:`set_role_ceiling`.

    A user who holds exactly these roles already is left as is, and nothing is audited.

    :raises ValidationError: for a set :func:`find_roles` refuses.
    """
    roles = find_roles(tenant, names)
    if {role.id for role in roles} == {role.id for role in user.roles}:
        return Outcome(user, changed=False)
    before, user.roles = user.role_names, roles
    db.session.flush()
    db.session.expire(user, ["roles"])  # read back in the order every listing shows
    audit.record(
        tenant,
        AuditEvent.USER_ROLES_CHANGED,
        actor=actor,
        subject=user.username,
        before=before,
        after=user.role_names,
    )
    return Outcome(user, changed=True)


def set_password(tenant: Tenant, user: User, password: str, *, actor: str | None = None) -> int:
    """Give ``user`` a new password and end their live login sessions: a reset after a
    suspected compromise signs every browser out. Their OAuth tokens stay (``authserver token
    revoke --user`` ends them), except ``online_access`` refresh tokens, which end with their
    login as at a sign-out. The audit record names the user and counts the sessions ended,
    never the password.

    :returns: how many login sessions ended.
    :raises ValidationError: for a password :func:`validate_password` refuses.
    """
    validate_password(password)
    user.password_hash = passwords().hash(password)
    ended = _end_login_sessions(tenant, user)
    db.session.flush()
    audit.record(
        tenant,
        AuditEvent.USER_PASSWORD_CHANGED,
        actor=actor,
        subject=user.username,
        sessions_ended=ended,
    )
    return ended


def set_status(
    tenant: Tenant, user: User, active: bool, *, actor: str | None = None
) -> Outcome[User]:
    """Enable or disable a user; disabling ends their login sessions and tokens at once.

    A user who already has that status is left as is, and nothing is audited again.
    """
    status = ACTIVE if active else DISABLED
    if user.status == status:
        return Outcome(user, changed=False)
    user.status = status
    if not active:
        revocation.revoke_for_user(tenant, user, actor=actor)
        _end_login_sessions(tenant, user)
    db.session.flush()
    event = AuditEvent.USER_ENABLED if active else AuditEvent.USER_DISABLED
    audit.record(tenant, event, actor=actor, subject=user.username)
    return Outcome(user, changed=True)


def _end_login_sessions(tenant: Tenant, user: User) -> int:
    """End ``user``'s live login sessions at ``tenant``; returns how many."""
    now = utcnow()
    live = LoginSession.for_tenant(tenant).where(
        LoginSession.user_id == user.id,
        LoginSession.ended_at.is_(None),
        LoginSession.expires_at > now,
    )
    logins = db.session.scalars(live).all()
    for login in logins:
        login.ended_at = now
    return len(logins)


def authenticate(tenant: Tenant, username: str, password: str) -> User | None:
    """The active user of ``tenant`` with this password, or ``None``.

    Unknown, disabled and wrong-password cases cost the same and look the same to the caller.
    """
    if len(password) > MAX_PASSWORD_LENGTH:
        password = ""
    user = find_user(tenant, username)
    hasher = passwords()
    valid = hasher.verify(user.password_hash if user else None, password)
    if not (valid and user is not None and user.is_active):
        # For the operator only: the person signing in sees one message whatever the reason.
        reason = "unknown user" if user is None else "wrong password" if not valid else "disabled"
        subject = user.username if user else unknown_username_subject(tenant, username)
        audit.record(tenant, AuditEvent.LOGIN_FAILED, subject=subject, reason=reason)
        return None
    if hasher.needs_rehash(user.password_hash):
        user.password_hash = hasher.hash(password)
        audit.record(tenant, AuditEvent.USER_PASSWORD_REHASHED, subject=user.username)
    audit.record(tenant, AuditEvent.LOGIN_SUCCEEDED, subject=user.username)
    return user


def start_session(tenant: Tenant, user: User) -> tuple[str, LoginSession]:
    """A new login session; returns the raw cookie token (shown once) and its row."""
    token = security.new_token(SESSION_TOKEN_PREFIX)
    lifetime = timedelta(seconds=current_app.config["AUTHSERVER_LOGIN_SESSION_LIFETIME"])
    login = LoginSession(
        tenant_id=tenant.id,
        user_id=user.id,
        token_digest=security.digest(token),
        expires_at=utcnow() + lifetime,
    )
    db.session.add(login)
    db.session.flush()
    return token, login


def find_session(tenant: Tenant, token: str | None) -> LoginSession | None:
    """The live session of ``tenant`` that ``token`` names; a token of another tenant is none."""
    if not token:
        return None
    query = LoginSession.for_tenant(tenant).where(
        LoginSession.token_digest == security.digest(token),
        LoginSession.ended_at.is_(None),
        LoginSession.expires_at > utcnow(),
    )
    login = db.session.scalar(query)
    if login is None or not login.user.is_active:
        return None
    return login


def end_session(tenant: Tenant, login: LoginSession) -> None:
    login.ended_at = utcnow()
    db.session.flush()
    audit.record(tenant, AuditEvent.LOGOUT, subject=login.user.username)


def describe_user(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "subject": user.subject,
        "username": user.username,
        "roles": user.role_names,
        "fhir_user": user.fhir_user,
        "status": user.status,
    }


def all_users(tenant: Tenant) -> list[User]:
    return list(db.session.scalars(User.for_tenant(tenant).order_by(User.username)))
