"""What a SMART Backend Services client may be granted. Pure: no Flask, no database.

SMART Backend Services (BS-05): the grant is the requested ``system/`` scopes narrowed by what
the client was pre-authorised for, never more; a request without ``scope`` gets all of those.
A client linked to a service-account user is narrowed again by that user's role ceiling, whose
``user/`` scopes are read at ``system/`` level (:func:`system_ceiling`).
"""

from __future__ import annotations

from dataclasses import replace

from authserver.smart.scopes import NamedScope
from authserver.smart.scopes import ResourceScope
from authserver.smart.scopes import Scope
from authserver.smart.scopes import ScopeSet
from authserver.smart.scopes import narrow
from authserver.smart.scopes import parse_scopes


def backend_ceiling(allowed: str) -> ScopeSet:
    """The client's registered scopes a backend token can carry: ``system/`` and extensions.

    ``patient/`` and ``user/`` scopes, launch and identity scopes need a user; they never pass.
    """
    return ScopeSet(scope for scope in parse_scopes(allowed) if _serves_backend(scope))


def backend_grant(requested: str, allowed: str, *role_ceilings: ScopeSet) -> ScopeSet:
    """The scopes to grant for ``requested`` (SMART Backend Services makes ``scope`` required:
    the caller refuses a request without one, BS-05).

    :param role_ceilings: the role ceiling of the service account the client is linked to, if
        any (:func:`authserver.accounts.service.role_ceiling`); each narrows the grant further,
        read by :func:`system_ceiling`. Extension scopes are bounded by the registration only,
        as role ceilings bound FHIR data (:mod:`authserver.smart.policy`).
    :raises InvalidScope: for a malformed requested scope.
    """
    granted = narrow(parse_scopes(requested, strict=True), backend_ceiling(allowed))
    for role_ceiling in role_ceilings:
        named = (scope for scope in granted if isinstance(scope, NamedScope))
        granted = narrow(granted, ScopeSet([*system_ceiling(role_ceiling), *named]))
    return granted


def system_ceiling(role_ceiling: ScopeSet) -> ScopeSet:
    """A person's role ceiling as it bounds a backend token acting for them.

    ``user/`` is what the person may reach across patients, so it is read at ``system/`` level
    (``user/Observation.rs`` bounds ``system/Observation.rs``); ``patient/`` access needs a
    patient in context, which a backend token never has, so it gives nothing.
    """
    return ScopeSet(
        replace(scope, level="system", text="system/" + scope.text.split("user/", 1)[1])
        for scope in role_ceiling.resource_scopes
        if scope.level == "user"
    )


def _serves_backend(scope: Scope) -> bool:
    if isinstance(scope, ResourceScope):
        return scope.level == "system"
    return isinstance(scope, NamedScope) and scope.kind == "extension"
