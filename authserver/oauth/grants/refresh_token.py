"""The refresh-token grant (RFC 6749 §6; SMART 2.2 #step-7-refresh) on Authlib's.

``offline_access`` refresh tokens live the tenant's refresh lifetime; ``online_access`` ones live
no longer than the login session they came from and die with it. Every refresh rotates the token;
presenting a rotated one again revokes its whole family (RFC 9700 §4.14.2).

A refresh may ask for less than was granted (REF-03): that narrows the access token, never the
family. The new refresh token holds the scope and launch context of the one presented, unchanged
("the refresh token scope MUST be identical", RFC 6749 §6): a later refresh without ``scope``
gets the whole grant again (REF-01: the scope the user granted at authorization), and that
scope, not the narrower request, decides whether a refresh token is due and how long it lives.

A refresh applies the tenant's policy as it is now, not as it was at login: the access token it
mints is narrowed again by the user's current role ceilings and the client's current
registration, as the authorization endpoint narrows a request (:func:`consent.grantable_scope`),
and what was dropped is audited (``refresh-token:scope-narrowed``). The refresh token still holds
the family's scope, so once an admin widens the policy again a refresh gets back what it allows
then, and never more; a policy that no longer allows the family's ``offline_access`` ends the
chain, audited as ``refresh-token:chain-ended``. A user who holds no role at the tenant any
more, like a disabled one, refreshes nothing.

The launch context (``patient``, ``encounter``, ...) is the family's and comes with every access
token, however narrow: it says where the app was launched, not what it may read (SMART 2.2
"Launch context arrives with your access_token"). Only ``fhirUser`` follows its scope
(:func:`granted_context`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from authlib.oauth2.rfc6749 import InvalidRequestError
from authlib.oauth2.rfc6749 import InvalidScopeError
from authlib.oauth2.rfc6749 import grants

from authserver.accounts.models import LoginSession
from authserver.accounts.models import User
from authserver.audit import service as audit
from authserver.audit.events import AuditEvent
from authserver.extensions import db
from authserver.models import utcnow
from authserver.oauth import consent
from authserver.oauth import service
from authserver.oauth.grants.client_auth import CLIENT_AUTH_METHODS
from authserver.oauth.grants.client_auth import TokenRequestChecks
from authserver.oauth.tokens import check_granted_scope
from authserver.oauth.tokens import check_requested_scope
from authserver.oauth.tokens import token_request
from authserver.smart.context import granted_context
from authserver.smart.context import token_response_members
from authserver.smart.scopes import REFRESH_SCOPES
from authserver.smart.scopes import ScopeSet
from authserver.smart.scopes import parse_scopes
from authserver.tenancy.models import Tenant
from authserver.tenancy.resolution import current_tenant
from authserver.tokens.models import IssuedToken


def refresh_lifetime(tenant: Tenant, scope: ScopeSet, login_session_id: int | None) -> int | None:
    """Seconds a refresh token for ``scope`` may live, or None when none is due (TOK-12)."""
    if scope.has("offline_access"):
        return tenant.refresh_token_lifetime
    if scope.has("online_access"):
        remaining = _session_remaining(tenant, login_session_id)
        return min(remaining, tenant.refresh_token_lifetime) if remaining else None
    return None


class ContinuesFamily:
    """Mixed into a grant that redeems a member of a token family (a code, a refresh token):
    the tokens it issues join that family, with its launch context and login session, and a
    refresh token comes with them only when one is due (TOK-12)."""

    request: Any

    def redeemed(self) -> Any:
        """What this request redeems: an authorization code or a refresh token's record."""
        raise NotImplementedError

    def generate_token(
        self,
        user: Any = None,
        scope: str | None = None,
        grant_type: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
        *,
        refreshable: ScopeSet | None = None,
    ) -> dict[str, Any]:
        """Authlib's, with ``refreshable``: what of the family's scope a refresh token may be
        issued for now, which decides whether one is due and how long it lives; the granted
        ``scope`` when left out, as when a family starts."""
        source = self.redeemed()
        granted = parse_scopes(scope or "")
        extras = token_request()
        # A refresh may narrow the scope: fhirUser leaves the context with the fhirUser scope.
        extras.context = granted_context(source.context, granted)
        extras.grant_id = source.grant_id
        extras.login_session_id = source.login_session_id
        # The refresh token holds what was redeemed, however narrow the access token (RFC 6749
        # §6): its scope, and its context whole, for a later refresh of that scope to get back.
        extras.refresh_scope = source.scope
        extras.refresh_context = source.context
        extras.refresh_token_lifetime = refresh_lifetime(
            current_tenant(),
            granted if refreshable is None else refreshable,
            source.login_session_id,
        )
        due = extras.refresh_token_lifetime is not None
        return super().generate_token(  # type: ignore[misc]
            user, scope, grant_type, expires_in, due and include_refresh_token
        )


def _session_remaining(tenant: Tenant, login_session_id: int | None) -> int:
    """Whole seconds the login session has left; 0 when it has ended or belongs elsewhere."""
    login = db.session.get(LoginSession, login_session_id) if login_session_id else None
    if login is None or login.tenant_id != tenant.id or login.ended_at is not None:
        return 0
    return max(0, int((login.expires_at - utcnow()).total_seconds()))


@dataclass
class RefreshCredential:
    """An issued refresh token, shaped as Authlib's grant expects (``TokenMixin`` subset)."""

    record: IssuedToken

    def check_client(self, client: Any) -> bool:
        return self.record.client_pk == client.id

    def get_scope(self) -> str:
        return self.record.scope


class RefreshTokenGrant(ContinuesFamily, TokenRequestChecks, grants.RefreshTokenGrant):
    CAPABILITIES = ("permission-offline", "permission-online")
    TOKEN_ENDPOINT_AUTH_METHODS = CLIENT_AUTH_METHODS
    # Rotation: every refresh returns a new refresh token and spends the old one.
    INCLUDE_NEW_REFRESH_TOKEN = True

    def validate_token_request(self) -> None:
        """Authlib's checks, after RFC 6749 §6's required ``refresh_token``: left out or sent
        empty (§3.2) it is ``invalid_request`` (§5.2), where Authlib would call an empty one
        unknown (``invalid_grant``)."""
        if not self.request.form.get("refresh_token"):
            raise InvalidRequestError("Missing 'refresh_token'.")
        super().validate_token_request()

    def authenticate_refresh_token(self, refresh_token: str) -> RefreshCredential | None:
        tenant = current_tenant()
        record = service.redeem_refresh_token(tenant, refresh_token)
        if record is None:
            db.session.commit()  # a reuse's revocation of the family stands
            return None
        user = db.session.get(User, record.user_id) if record.user_id else None
        # Disabled, or without a role at this tenant: nobody who may grant anything now.
        if user is None or not user.is_active or not user.roles:
            return None
        # online_access: usable only while the login session it came from is alive (EHR-06).
        if refresh_lifetime(tenant, parse_scopes(record.scope), record.login_session_id) is None:
            return None
        return RefreshCredential(record)

    def authenticate_user(self, refresh_token: RefreshCredential) -> User | None:
        return db.session.get(User, refresh_token.record.user_id)

    def _validate_token_scope(self, token: RefreshCredential) -> None:
        """RFC 6749 §6: the scope "MUST NOT include any scope not originally granted"; in access
        terms, so ``patient/Observation.r`` narrows ``patient/Observation.rs`` (REF-02..04)."""
        scope = self.request.payload.scope
        if not scope:
            return
        check_requested_scope(scope)
        requested = parse_scopes(scope)
        if requested.dropped or not len(requested):
            raise InvalidScopeError("The scope is malformed.")
        if not parse_scopes(token.get_scope()).covers(requested):
            raise InvalidScopeError("The scope may only narrow what was granted.")

    def issue_token(self, user: User, refresh_token: RefreshCredential) -> dict[str, Any]:
        """An access token of the requested scope (the family's when none is asked for) as far
        as the tenant's policy grants it now, and a refresh token of the family's scope. RFC 6749
        §3.3 lets the server grant less than requested "based on the authorization server
        policy", saying so in the response's ``scope`` (§5.1).

        :raises InvalidScopeError: when the policy leaves nothing of it, as the authorization
            endpoint answers when nothing can be granted, or spells it out as more than an access
            token can carry (a widened role ceiling under a family's ``patient/*.rs``).
        """
        family = parse_scopes(refresh_token.get_scope())
        requested = self.request.payload.scope
        asked = parse_scopes(requested) if requested else family
        scope = consent.grantable_scope(asked, self.request.client, user)
        if not len(scope):
            raise InvalidScopeError("None of the requested scopes can be granted.")
        check_granted_scope(str(scope))
        self._audit_narrowing(user, refresh_token.record, asked, scope)
        # The family's scope as the policy allows it now, whatever the request narrowed:
        # scope=patient/Patient.rs keeps an offline_access family's refresh token coming; a
        # registration that no longer allows offline_access ends the chain.
        refreshable = (
            consent.grantable_scope(family, self.request.client, user) if requested else scope
        )
        self._audit_chain_end(user, refresh_token.record, family, refreshable, scope)
        return self.generate_token(
            user=user,
            scope=str(scope),
            include_refresh_token=self.INCLUDE_NEW_REFRESH_TOKEN,
            refreshable=refreshable,
        )

    @staticmethod
    def _audit_narrowing(
        user: User, record: IssuedToken, asked: ScopeSet, granted: ScopeSet
    ) -> None:
        """Record the scopes the policy no longer grants in full (``patient/*.rs`` when only
        ``patient/Observation.rs`` of it is left): an admin's change, taking effect."""
        dropped = [scope.text for scope in asked if not granted.covers(scope)]
        if dropped:
            _audit_policy(AuditEvent.REFRESH_SCOPE_NARROWED, user, record, dropped, granted)

    @staticmethod
    def _audit_chain_end(
        user: User, record: IssuedToken, family: ScopeSet, refreshable: ScopeSet, granted: ScopeSet
    ) -> None:
        """Record a refresh that gets no new refresh token because the policy no longer allows
        the family's ``offline_access`` or ``online_access``: the chain ends here, by an admin's
        change, and the app must send its user through authorization again."""
        held = [name for name in sorted(REFRESH_SCOPES) if family.has(name)]
        if held and not any(refreshable.has(name) for name in held):
            _audit_policy(AuditEvent.REFRESH_CHAIN_ENDED, user, record, held, granted)

    def redeemed(self) -> IssuedToken:
        return self.request.refresh_token.record

    def revoke_old_credential(self, refresh_token: RefreshCredential) -> None:
        """Nothing to do: :func:`service.redeem_refresh_token` spent it when it claimed it."""

    def create_token_response(self) -> tuple[int, dict[str, Any], list]:
        status, token, headers = super().create_token_response()
        token.update(token_response_members(self.request.refresh_token.record.context))  # REF-10
        return status, token, headers


def _audit_policy(
    event: AuditEvent, user: User, record: IssuedToken, dropped: list[str], granted: ScopeSet
) -> None:
    """Record what today's policy took from a refresh of ``record``'s family, under its client."""
    audit.record(
        current_tenant(),
        event,
        subject=record.client_id,
        user=user.username,
        grant_id=record.grant_id,
        dropped=dropped,
        scope=str(granted),
    )
