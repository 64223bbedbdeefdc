"""Introspection's cache of live token state on PostgreSQL, and its NOTIFY invalidation.

A second app instance on the same database stands for another server process: it warms its
cache, this instance changes something, and the other must stop answering from its cache as
soon as PostgreSQL has delivered the notification. That delivery is asynchronous (PostgreSQL
signals the listening backends at commit; each then writes to its client), so the tests poll
for it, with the age limit set far beyond the polling so only the notification can explain the
change of answer.
"""

from __future__ import annotations

import select
import time
from dataclasses import dataclass

import jwt
import pytest
from sqlalchemy import text

from authserver import rawdb
from authserver.accounts import service as accounts
from authserver.clients import service as clients
from authserver.extensions import db
from authserver.keys import service as keys
from authserver.tenancy import service as tenants
from authserver.tokens import revocation
from authserver.tokens import service as tokens
from authserver.tokens.statecache import TokenStateCache
from tests.fixtures.database import backend
from tests.oauth.conftest import fhir_base
from tests.oauth.conftest import introspection_endpoint
from tests.oauth.conftest import resigned

pytestmark = pytest.mark.skipif(
    backend() != "postgresql", reason="the cache listens to PostgreSQL NOTIFY"
)


NEVER = 3600.0  # an age limit no test reaches
DELIVERY = 2.0  # seconds a notification may take to arrive on a busy two-core test machine


def becomes_inactive(instance, gateway, token) -> bool:
    """Whether ``instance`` answers inactive for ``token`` within :data:`DELIVERY` seconds."""
    deadline = time.monotonic() + DELIVERY
    while active(instance, gateway, token):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True


def becomes_refused(instance, caller, token) -> bool:
    """Whether ``instance`` refuses ``caller`` (401) within :data:`DELIVERY` seconds."""
    deadline = time.monotonic() + DELIVERY
    while caller.introspect(instance.test_client(), token).status_code != 401:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True


class Reads:
    """Counts the state queries an instance sends to the database."""

    def __init__(self, app, monkeypatch) -> None:
        self.count = 0
        connections = rawdb.connections(app)
        run = connections.run

        def counted(work):
            self.count += 1
            return run(work)

        monkeypatch.setattr(connections, "run", counted)


@pytest.fixture
def other(make_app):
    """Another server process's view of the same database."""
    return make_app(AUTHSERVER_INTROSPECTION_CACHE_SECONDS=NEVER)


@pytest.fixture
def gateway(tenant, make_gateway):
    return make_gateway(tenant)


def active(instance, gateway, token) -> bool:
    response = gateway.introspect(instance.test_client(), token)
    assert response.status_code == 200
    return response.json["active"]


def warm(instance, gateway, token, monkeypatch) -> Reads:
    """Introspect until ``instance`` answers from its cache, and return its read counter."""
    assert active(instance, gateway, token)  # the full path: the tenant becomes known
    reads = Reads(instance, monkeypatch)
    assert active(instance, gateway, token)  # the fast path reads and keeps the row
    assert active(instance, gateway, token)
    assert reads.count == 1, "the third introspection should not have read the database"
    return reads


def test_a_live_token_is_answered_from_the_cache(other, gateway, tenant, issue, monkeypatch):
    issued = issue(tenant)

    reads = warm(other, gateway, issued.access_token, monkeypatch)

    for _ in range(5):
        assert active(other, gateway, issued.access_token)
    assert reads.count == 1


def test_the_cache_still_checks_the_callers_secret(other, gateway, tenant, issue, monkeypatch):
    issued = issue(tenant)
    warm(other, gateway, issued.access_token, monkeypatch)
    wrong = type(gateway)(gateway.tenant_slug, gateway.client_id, "not-the-secret")

    response = wrong.introspect(other.test_client(), issued.access_token)

    assert response.status_code == 401


# -- a change made by this very process counts here at once ----------------------------------


@pytest.fixture
def notifications_held_back(app, monkeypatch):
    """This app's listener hears nothing more: only what the process knows itself can empty its
    cache, as in the moment between a commit here and its NOTIFY arriving back."""
    cache = app.extensions["authserver.fastpath"]["reader"].cache
    assert cache._drain()  # listening, so the cache is trusted
    monkeypatch.setattr(cache, "_drain", lambda: True)
    return cache


def test_a_revocation_committed_here_counts_here_before_its_notification(
    app, gateway, tenant, issue, monkeypatch, notifications_held_back
):
    issued = issue(tenant)
    warm(app, gateway, issued.access_token, monkeypatch)

    revoke_access(tenant, issued.access_token)  # outside a request: every tenant is forgotten
    db.session.commit()

    assert not active(app, gateway, issued.access_token)


def test_a_refresh_here_ends_the_old_token_here_before_its_notification(
    app, gateway, tenant, make_client, make_user, monkeypatch, notifications_held_back
):
    smart_app = make_client(tenant).client
    user = make_user(tenant, roles=["physician"])
    authorization = tokens.Authorization(
        tenant=tenant,
        client=smart_app,
        scope="launch/patient patient/Observation.rs offline_access",
        user=user,
        context={"patient": "123"},
    )
    access_token = tokens.issue_access_token(authorization)["access_token"]
    refresh_token = tokens.issue_refresh_token(authorization)
    db.session.commit()
    warm(app, gateway, access_token, monkeypatch)

    refreshed = app.test_client().post(
        f"/t/{tenant.slug}/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": smart_app.client_id,
        },
    )

    assert refreshed.status_code == 200, refreshed.json
    assert not active(app, gateway, access_token)  # the request's tenant was forgotten
    assert active(app, gateway, refreshed.json["access_token"])


def test_the_cache_still_checks_expiry(other, gateway, tenant, issue, monkeypatch):
    issued = issue(tenant, expires_in=2)
    warm(other, gateway, issued.access_token, monkeypatch)
    expires_at = jwt.decode(issued.access_token, options={"verify_signature": False})["exp"]

    time.sleep(max(0.0, expires_at - time.time()) + 0.1)

    assert not active(other, gateway, issued.access_token)


def jti(token: str) -> str:
    return jwt.decode(token, options={"verify_signature": False})["jti"]


def revoke_access(tenant, token: str) -> None:
    revocation.revoke_token(tenant, kind="access", jti=jti(token), grant_id="")


def test_inactive_answers_are_not_kept(other, gateway, tenant, issue, monkeypatch):
    issued = issue(tenant)
    revoke_access(tenant, issued.access_token)
    db.session.commit()
    assert not active(other, gateway, issued.access_token)
    reads = Reads(other, monkeypatch)

    for _ in range(3):
        assert not active(other, gateway, issued.access_token)

    assert reads.count == 3


# -- a change made on this instance empties the other's cache ---------------------------------


def revoke_it(tenant, issued, gateway):
    revoke_access(tenant, issued.access_token)


def disable_the_user(tenant, issued, gateway):
    user = db.session.get(accounts.User, issued.user_id)
    user.status = "disabled"  # the status alone, without revoking: a plain UPDATE of users


def delete_the_app(tenant, issued, gateway):
    clients.delete(tenant, issued.client_id)


def retire_the_key(tenant, issued, gateway):
    retire_the_key_of(tenant, issued.access_token)


def retire_the_key_of(tenant, token):
    keys.rotate(tenant, now=True)
    keys.retire(tenant, jwt.get_unverified_header(token)["kid"])


def suspend_the_tenant(tenant, issued, gateway):
    tenants.suspend(tenant)


def move_the_fhir_base(tenant, issued, gateway):
    tenant.fhir_base_url_override = "https://elsewhere.example.test/fhir"


def delete_the_token_row(tenant, issued, gateway):
    db.session.execute(
        text("DELETE FROM issued_tokens WHERE jti = :jti"), {"jti": jti(issued.access_token)}
    )


CHANGES = [
    revoke_it,
    disable_the_user,
    delete_the_app,
    retire_the_key,
    suspend_the_tenant,
    move_the_fhir_base,
    delete_the_token_row,
]


@pytest.mark.parametrize("change", CHANGES, ids=[change.__name__ for change in CHANGES])
def test_a_change_here_is_seen_there(other, gateway, tenant, issue, monkeypatch, change):
    issued = issue(tenant)
    warm(other, gateway, issued.access_token, monkeypatch)

    change(tenant, issued, gateway)
    db.session.commit()

    assert becomes_inactive(other, gateway, issued.access_token)


def test_a_new_gateway_secret_is_seen_there(other, gateway, tenant, issue, monkeypatch):
    issued = issue(tenant)
    warm(other, gateway, issued.access_token, monkeypatch)

    renewed = clients.reset_secret(tenant, gateway.client_id)
    db.session.commit()

    assert becomes_refused(other, gateway, issued.access_token), "the old secret still works there"
    fresh = type(gateway)(gateway.tenant_slug, gateway.client_id, renewed.client_secret)
    assert fresh.introspect(other.test_client(), issued.access_token).json["active"]


@dataclass(frozen=True)
class BearerGateway:
    """The gateway calling with its ``introspect`` token instead of its secret (INT-06)."""

    tenant_slug: str
    bearer: str

    def introspect(self, client, token):
        return client.post(
            f"/t/{self.tenant_slug}/introspect",
            data={"token": token},
            headers={"Authorization": f"Bearer {self.bearer}"},
        )


def bearer_of(instance, gateway) -> BearerGateway:
    response = instance.test_client().post(
        f"/t/{gateway.tenant_slug}/token",
        data={"grant_type": "client_credentials", "scope": "introspect"},
        headers=gateway.headers,
    )
    assert response.status_code == 200, response.json
    return BearerGateway(gateway.tenant_slug, response.json["access_token"])


def revoke_the_bearer(tenant, bearer, gateway):
    revoke_access(tenant, bearer.bearer)


def delete_the_gateway(tenant, bearer, gateway):
    clients.delete(tenant, gateway.client_id)


def retire_the_bearers_key(tenant, bearer, gateway):
    retire_the_key_of(tenant, bearer.bearer)


CALLER_CHANGES = [
    revoke_the_bearer,
    delete_the_gateway,
    retire_the_bearers_key,
    suspend_the_tenant,
]


@pytest.mark.parametrize("change", CALLER_CHANGES, ids=[c.__name__ for c in CALLER_CHANGES])
def test_a_change_to_the_bearer_caller_is_seen_there(
    other, gateway, tenant, issue, monkeypatch, change
):
    """The caller's own token is kept with the row too, and dropped with it."""
    issued = issue(tenant)
    bearer = bearer_of(other, gateway)
    warm(other, bearer, issued.access_token, monkeypatch)

    change(tenant, bearer, gateway)
    db.session.commit()

    assert becomes_refused(other, bearer, issued.access_token), "the bearer still works there"


# -- a kept row does not decide a token's audience -----------------------------------------------


@pytest.fixture(params=["clinic-a", "clinic-b"])
def home(request, tenant, other_tenant):
    """Each of two tenants in turn, so nothing depends on which came first."""
    return tenant if request.param == "clinic-a" else other_tenant


def test_a_kept_bearer_row_does_not_pass_its_twin_for_the_fhir_base(
    other, home, make_gateway, issue, monkeypatch
):
    """The caller's row is kept by its token's jti. A twin of that token re-signed with the
    FHIR base as ``aud`` has the same jti and is refused on that very row: a caller's claims
    are checked on every request."""
    issued = issue(home)
    bearer = bearer_of(other, make_gateway(home))
    reads = warm(other, bearer, issued.access_token, monkeypatch)
    twin = BearerGateway(home.slug, resigned(home, bearer.bearer, aud=fhir_base(home.slug)))

    response = twin.introspect(other.test_client(), issued.access_token)

    assert response.status_code == 401
    assert response.json["error"] == "invalid_token"
    assert reads.count == 1  # refused on the kept row, which stays kept for the real token
    assert active(other, bearer, issued.access_token)
    assert reads.count == 1


def test_a_kept_token_row_does_not_make_its_twin_for_the_introspection_endpoint_active(
    other, home, make_gateway, issue, monkeypatch
):
    """An app's token re-signed with the introspection endpoint as ``aud`` shares the kept row
    of the real token (the same jti) and still answers inactive."""
    gateway = make_gateway(home)
    issued = issue(home)
    reads = warm(other, gateway, issued.access_token, monkeypatch)
    endpoint = introspection_endpoint(other.test_client(), home.slug)
    twin = resigned(home, issued.access_token, aud=endpoint)

    assert not active(other, gateway, twin)
    # One read of the caller alone (the twin's signature is checked only after), then the kept row.
    assert reads.count == 2
    assert active(other, gateway, issued.access_token)


def test_a_change_at_another_tenant_keeps_this_tenants_rows(
    other, gateway, tenant, other_tenant, issue, monkeypatch
):
    issued = issue(tenant)
    elsewhere = issue(other_tenant)
    reads = warm(other, gateway, issued.access_token, monkeypatch)

    cache = other.extensions["authserver.fastpath"]["reader"].cache
    revoke_access(other_tenant, elsewhere.access_token)
    db.session.commit()
    wait_for_notification(cache, other_tenant.id)

    assert active(other, gateway, issued.access_token)
    assert reads.count == 1


def test_a_new_token_elsewhere_does_not_empty_the_cache(other, gateway, tenant, issue, monkeypatch):
    issued = issue(tenant)
    reads = warm(other, gateway, issued.access_token, monkeypatch)

    issue(tenant)  # an INSERT changes no answer already given

    assert active(other, gateway, issued.access_token)
    assert reads.count == 1


# -- when the listener cannot be trusted ------------------------------------------------------


def listener_pids() -> list[int]:
    rows = db.session.execute(
        text("SELECT pid FROM pg_stat_activity WHERE query = 'LISTEN authserver_token_state'")
    )
    pids = [pid for (pid,) in rows]
    db.session.commit()  # pg_stat_activity is read once per transaction
    return pids


def terminate_listener(instance) -> None:
    """End the instance's listening connection from the server side, as a restart would."""
    listener = instance.extensions["authserver.fastpath"]["reader"].cache.listener
    (pid,) = listener_pids()
    db.session.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    db.session.commit()
    # The server's goodbye reaches the socket a moment after the backend left pg_stat_activity.
    assert select.select([listener.pgconn.socket], [], [], DELIVERY)[0]


def test_a_lost_listener_is_noticed_and_the_database_read(
    other, gateway, tenant, issue, monkeypatch
):
    issued = issue(tenant)
    warm(other, gateway, issued.access_token, monkeypatch)
    terminate_listener(other)

    revoke_access(tenant, issued.access_token)  # its NOTIFY reaches nobody over there
    db.session.commit()

    assert becomes_inactive(other, gateway, issued.access_token)


def test_it_listens_again_after_losing_the_listener(other, gateway, tenant, issue, monkeypatch):
    issued = issue(tenant)
    warm(other, gateway, issued.access_token, monkeypatch)
    cache = other.extensions["authserver.fastpath"]["reader"].cache
    lost = cache.listener
    terminate_listener(other)
    deadline = time.monotonic() + DELIVERY
    while cache.listener is lost:  # until a request notices (answering from the database)
        assert active(other, gateway, issued.access_token)
        assert time.monotonic() < deadline, "the lost listener went unnoticed"

    assert active(other, gateway, issued.access_token)  # listens again, keeps the row

    assert len(listener_pids()) == 1
    revoke_access(tenant, issued.access_token)
    db.session.commit()
    assert becomes_inactive(other, gateway, issued.access_token)


def test_rows_are_not_kept_longer_than_the_age_limit(make_app, tenant):
    instance = make_app(AUTHSERVER_INTROSPECTION_CACHE_SECONDS=0.2)
    cache = instance.extensions["authserver.fastpath"]["reader"].cache
    row, generation = cache.lookup(tenant.id, ("k",))
    cache.store(tenant.id, ("k",), ("row",), generation)
    assert cache.lookup(tenant.id, ("k",))[0] == ("row",)

    time.sleep(0.3)

    assert cache.lookup(tenant.id, ("k",))[0] is None


def test_a_read_that_raced_a_notification_is_not_kept(other, tenant):
    cache: TokenStateCache = other.extensions["authserver.fastpath"]["reader"].cache
    row, generation = cache.lookup(tenant.id, ("k",))  # starts listening
    assert row is None

    # Between this read and its store, another instance suspends the tenant and notifies.
    tenants.suspend(tenant)
    db.session.commit()
    wait_for_notification(cache, tenant.id)
    cache.store(tenant.id, ("k",), ("stale",), generation)

    assert cache.lookup(tenant.id, ("k",))[0] is None


def wait_for_notification(cache: TokenStateCache, tenant_id: int) -> None:
    before = cache.generation
    deadline = time.monotonic() + 5
    while cache.generation == before and time.monotonic() < deadline:
        cache.lookup(tenant_id, ("poll",))
        time.sleep(0.005)
    assert cache.generation != before, "no notification within 5 s"


def test_no_cache_when_turned_off(make_app):
    instance = make_app(AUTHSERVER_INTROSPECTION_CACHE_SECONDS=0)

    assert instance.extensions["authserver.fastpath"]["reader"].cache is None
