"""The audit vocabulary: ``subject:action`` names, never free text."""

from __future__ import annotations

from enum import StrEnum


class AuditEvent(StrEnum):
    TENANT_CREATED = "tenant:created"
    TENANT_SUSPENDED = "tenant:suspended"
    TENANT_ACTIVATED = "tenant:activated"
    TENANT_BRANDED = "tenant:branded"
    TENANT_PATIENT_SEARCH_SET = "tenant:patient-search-set"
    TENANT_TOKEN_ALG_STAGED = "tenant:token-alg-staged"
    TENANT_TOKEN_ALG_SET = "tenant:token-alg-set"
    KEY_CREATED = "key:created"
    KEY_STAGED = "key:staged"
    KEY_ROTATED = "key:rotated"
    KEY_RETIRED = "key:retired"
    USER_CREATED = "user:created"
    USER_DISABLED = "user:disabled"
    USER_ENABLED = "user:enabled"
    USER_ROLES_CHANGED = "user:roles-changed"
    USER_PASSWORD_CHANGED = "user:password-changed"
    USER_PASSWORD_REHASHED = "user:password-rehashed"
    LOGIN_SUCCEEDED = "login:succeeded"
    LOGIN_FAILED = "login:failed"
    LOGOUT = "login:ended"
    CLIENT_CREATED = "client:created"
    CLIENT_DELETED = "client:deleted"
    CLIENT_SECRET_RESET = "client:secret-reset"
    TOKEN_REVOKED = "token:revoked"
    ROLE_CEILING_CHANGED = "role:ceiling-changed"
    CLIENT_POLICY_CHANGED = "client:policy-changed"
    CLIENT_SCOPES_CHANGED = "client:scopes-changed"
    CODE_ISSUED = "code:issued"
    CODE_REPLAYED = "code:replayed"
    AUTHORIZATION_DENIED = "authorization:denied"
    REFRESH_TOKEN_REUSED = "refresh-token:reused"
    REFRESH_SCOPE_NARROWED = "refresh-token:scope-narrowed"
    REFRESH_CHAIN_ENDED = "refresh-token:chain-ended"
    LAUNCH_CREATED = "launch:created"
    CLIENT_SERVICE_ACCOUNT_LINKED = "client:service-account-linked"
    CLIENT_SERVICE_ACCOUNT_UNLINKED = "client:service-account-unlinked"
    CLIENT_LAUNCH_GRANTED = "client:launch-granted"
    CLIENT_LAUNCH_WITHDRAWN = "client:launch-withdrawn"
    SERVICE_ACCOUNT_TOKEN_ISSUED = "service-account:token-issued"


# Events whose subject is a username (stored normalised, as accounts keep it); every other
# subject is an id, client id, kid, slug or role name, matched exactly.
USERNAME_EVENTS = frozenset(
    {
        AuditEvent.USER_CREATED,
        AuditEvent.USER_DISABLED,
        AuditEvent.USER_ENABLED,
        AuditEvent.USER_ROLES_CHANGED,
        AuditEvent.USER_PASSWORD_CHANGED,
        AuditEvent.USER_PASSWORD_REHASHED,
        AuditEvent.LOGIN_SUCCEEDED,
        AuditEvent.LOGIN_FAILED,
        AuditEvent.LOGOUT,
        AuditEvent.TOKEN_REVOKED,  # of one user; a token, family or client is named by its id
        AuditEvent.SERVICE_ACCOUNT_TOKEN_ISSUED,
    }
)
