"""What an authorization may grant: the request narrowed by every policy ceiling. Pure.

SMART App Launch 2.2 leaves the granted set to the server ("the scope ... may differ from the
request"); ours is ``requested ∩ client's registered scopes ∩ union of the user's role ceilings
∩ what the user approved``.  Role ceilings bound FHIR data only (resource scopes); identity,
launch and refresh scopes are bounded by the client's registration and the user's consent.
Extension scopes (``__x``, absolute URIs: SCOPE-11) carry a resource server's own permissions,
which no role ceiling describes, so only a registration that names them grants them.
"""

from __future__ import annotations

from authserver.smart.scopes import NamedScope
from authserver.smart.scopes import Scope
from authserver.smart.scopes import ScopeSet
from authserver.smart.scopes import narrow


def grantable(requested: ScopeSet, client_allowed: ScopeSet, role_ceiling: ScopeSet) -> ScopeSet:
    """The most the user could approve: ``requested ∩ client_allowed ∩ role_ceiling``.

    :param client_allowed: the client's registered scopes; an empty registration leaves the
        client's SMART and OpenID scopes to the role ceilings and the user's consent, and
        grants no extension scope. A registration none of whose scopes parse (stored before
        registration checked them) restricts the client to nothing, never to everything.
    :param role_ceiling: the union of the user's role ceilings (resource scopes).
    """
    if len(client_allowed) or client_allowed.dropped:
        requested = narrow(requested, client_allowed)
    else:
        requested = ScopeSet(scope for scope in requested if not _is_extension(scope))
    named = ScopeSet(scope for scope in requested if isinstance(scope, NamedScope))
    resource_ceiling = ScopeSet(
        scope for scope in role_ceiling if not isinstance(scope, NamedScope)
    )
    return narrow(requested, ScopeSet([*resource_ceiling, *named]))


def _is_extension(scope: Scope) -> bool:
    return isinstance(scope, NamedScope) and scope.kind == "extension"


def granted(grantable_scopes: ScopeSet, approved: ScopeSet) -> ScopeSet:
    """What the user approved of what could be granted (SCOPE-08: down-scoping is reflected)."""
    return narrow(grantable_scopes, approved)
