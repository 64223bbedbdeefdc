"""What a SMART Backend Services client may be granted. Pure: no Flask, no database.

SMART Backend Services (BS-05): the grant is the requested ``system/`` scopes narrowed by what
the client was pre-authorised for, never more; a request without ``scope`` gets all of those.
"""

from __future__ import annotations

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


def backend_grant(requested: str | None, allowed: str) -> ScopeSet:
    """The scopes to grant for ``requested`` (None or empty: the client's ``system/`` scopes).

    :raises InvalidScope: for a malformed requested scope.
    """
    ceiling = backend_ceiling(allowed)
    if not requested:
        return ScopeSet(ceiling.resource_scopes)
    return narrow(parse_scopes(requested, strict=True), ceiling)


def _serves_backend(scope: Scope) -> bool:
    if isinstance(scope, ResourceScope):
        return scope.level == "system"
    return isinstance(scope, NamedScope) and scope.kind == "extension"
