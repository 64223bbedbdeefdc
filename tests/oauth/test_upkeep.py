"""Forgetting expired rows (authserver/upkeep.py): what a flow leaves behind goes once it has
expired and its retention has passed, at every tenant, and nothing live goes with it."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from flask import current_app
from sqlalchemy import delete
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import text
from sqlalchemy import update

from authserver import upkeep
from authserver.accounts.models import LoginSession
from authserver.audit.models import AuditRecord
from authserver.clients import service as clients
from authserver.clients.models import UsedAssertion
from authserver.extensions import db
from authserver.launch import service as launches
from authserver.launch.models import Launch
from authserver.models import utcnow
from authserver.oauth.models import AuthorizationCode
from authserver.tokens.models import ACCESS
from authserver.tokens.models import REFRESH
from authserver.tokens.models import IssuedToken
from tests.fixtures.accounts import login
from tests.fixtures.database import backend
from tests.oauth.conftest import exchange
from tests.oauth.conftest import get_code
from tests.oauth.conftest import new_verifier
from tests.tokens.test_statecache import DELIVERY
from tests.tokens.test_statecache import NEVER
from tests.tokens.test_statecache import active
from tests.tokens.test_statecache import becomes_inactive
from tests.tokens.test_statecache import warm

VERIFIER = new_verifier()
SECOND = timedelta(seconds=1)
TABLES = (IssuedToken, AuthorizationCode, Launch, LoginSession)


def count(model, tenant, *conditions) -> int:
    query = select(func.count()).select_from(model).where(model.tenant_id == tenant.id)
    return db.session.scalar(query.where(*conditions))


def rows(tenant) -> dict[str, int]:
    return {model.__tablename__: count(model, tenant) for model in TABLES}


def retention() -> timedelta:
    return timedelta(seconds=current_app.config["AUTHSERVER_EXPIRED_ROW_RETENTION"])


def purge(now) -> dict[str, int]:
    forgotten = upkeep.purge_expired(now)
    db.session.expire_all()
    return forgotten


def expiry(model, tenant, *conditions):
    query = select(func.max(model.expires_at)).where(model.tenant_id == tenant.id, *conditions)
    return db.session.scalar(query)


def sign_in_and_launch(app, clinic) -> dict:
    """A patient's login, an EHR launch, a code and its tokens at ``clinic``."""
    browser = app.test_client()
    login(browser, clinic.slug, "pat")
    launches.create_launch(
        clinic.tenant, patient="p-1", client_id=clinic.public_app.client_id, actor="test"
    )
    db.session.commit()
    code = get_code(browser, clinic, VERIFIER)
    response = exchange(browser, clinic, code, VERIFIER)
    assert response.status_code == 200, response.json
    return response.json


@pytest.fixture
def flows(app, clinic, other_clinic):
    """The same flow at two tenants."""
    return {clinic.slug: sign_in_and_launch(app, clinic)} | {
        other_clinic.slug: sign_in_and_launch(app, other_clinic)
    }


def test_nothing_is_forgotten_before_it_expires(flows, clinic, other_clinic):
    before = rows(clinic.tenant), rows(other_clinic.tenant)

    assert set(purge(utcnow()).values()) == {0}

    assert (rows(clinic.tenant), rows(other_clinic.tenant)) == before
    assert rows(clinic.tenant) == {
        "issued_tokens": 2,
        "authorization_codes": 1,
        "launches": 1,
        "login_sessions": 1,
    }


def test_an_expired_token_is_kept_for_the_retention_then_forgotten_at_every_tenant(
    flows, clinic, other_clinic
):
    access_expiry = expiry(IssuedToken, clinic.tenant, IssuedToken.kind == ACCESS)

    purge(access_expiry + retention() - SECOND)
    assert count(IssuedToken, clinic.tenant, IssuedToken.kind == ACCESS) == 1

    forgotten = purge(access_expiry + retention() + SECOND)

    # Both tenants' access tokens were issued within the second: both are gone.
    assert forgotten["issued_tokens"] == 2
    for tenant in (clinic.tenant, other_clinic.tenant):
        assert count(IssuedToken, tenant, IssuedToken.kind == ACCESS) == 0
        assert count(IssuedToken, tenant, IssuedToken.kind == REFRESH) == 1
        assert count(LoginSession, tenant) == 1


def test_once_everything_expired_a_flow_leaves_nothing_but_its_audit_records(
    flows, clinic, other_clinic
):
    audited = db.session.scalar(select(func.count()).select_from(AuditRecord))
    latest = max(expiry(model, clinic.tenant) for model in TABLES)

    forgotten = purge(latest + retention() + SECOND)

    assert forgotten == {
        "issued_tokens": 4,
        "authorization_codes": 2,
        "launches": 2,
        "used_client_assertions": 0,
        "login_sessions": 2,
    }
    assert set(rows(clinic.tenant).values()) == set(rows(other_clinic.tenant).values()) == {0}
    assert db.session.scalar(select(func.count()).select_from(AuditRecord)) == audited


def test_an_offline_refresh_token_outlives_its_forgotten_login(app, flows, clinic, make_gateway):
    """offline_access does not end with the login: forgetting the login session leaves the
    family's refresh token working (its reference to the session becomes NULL)."""
    session_forgotten_at = expiry(LoginSession, clinic.tenant) + retention() + SECOND
    refresh_expiry = expiry(IssuedToken, clinic.tenant, IssuedToken.kind == REFRESH)
    assert refresh_expiry > session_forgotten_at, "the test needs a refresh token living longer"

    assert purge(session_forgotten_at)["login_sessions"] == 2
    assert count(LoginSession, clinic.tenant) == 0

    response = app.test_client().post(
        f"/t/{clinic.slug}/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": flows[clinic.slug]["refresh_token"],
            "client_id": clinic.public_app.client_id,
        },
    )
    assert response.status_code == 200, response.json
    gateway = make_gateway(clinic.tenant)
    introspected = gateway.introspect(app.test_client(), response.json["access_token"]).json
    assert introspected["active"] and introspected["patient"] == flows[clinic.slug]["patient"]


def test_a_purge_goes_a_batch_at_a_time_oldest_first(tenant, monkeypatch):
    monkeypatch.setattr(upkeep.secrets, "randbelow", lambda _: 1)  # no purge while setting up
    monkeypatch.setattr(upkeep, "BATCH_SIZE", 2)
    for age in range(5, 0, -1):
        clients.use_assertion(tenant, "app_x", f"aged-{age}", utcnow() - age * SECOND)
    clients.use_assertion(tenant, "app_x", "live", utcnow() + 60 * SECOND)

    assert upkeep.purge_expired(batches=1)["used_client_assertions"] == 2
    left = db.session.scalars(select(UsedAssertion.jti).order_by(UsedAssertion.jti)).all()
    assert left == ["aged-1", "aged-2", "aged-3", "live"]

    assert upkeep.purge_expired()["used_client_assertions"] == 3
    assert db.session.scalars(select(UsedAssertion.jti)).all() == ["live"]


def test_the_token_endpoint_purges_now_and_then(app, clinic, issue, monkeypatch):
    """No scheduler: one token response in PURGE_ONE_IN forgets a batch of what is due."""
    old = issue(clinic.tenant)
    long_ago = utcnow() - retention() - 60 * SECOND
    db.session.execute(
        update(IssuedToken)
        .where(IssuedToken.tenant_id == clinic.tenant.id)
        .values(issued_at=long_ago - 3600 * SECOND, expires_at=long_ago)
    )
    db.session.commit()
    assert count(IssuedToken, clinic.tenant) == 2
    monkeypatch.setattr(upkeep.secrets, "randbelow", lambda _: 0)  # this response purges

    issued = sign_in_and_launch(app, clinic)

    db.session.expire_all()
    remaining = select(IssuedToken.client_id).where(IssuedToken.tenant_id == clinic.tenant.id)
    # The two just issued; not the old app's.
    assert db.session.scalars(remaining).all() == [clinic.public_app.client_id] * 2
    assert old.client_id != clinic.public_app.client_id and issued["access_token"]


def test_a_failing_purge_is_logged_and_the_token_still_issued(app, clinic, monkeypatch, caplog):
    monkeypatch.setattr(upkeep.secrets, "randbelow", lambda _: 0)  # this response purges
    monkeypatch.setattr(upkeep, "_batch", lambda *_: text("DELETE FROM no_such_table"))

    issued = sign_in_and_launch(app, clinic)

    assert issued["access_token"]
    assert "purging expired rows failed" in caplog.text
    assert "no_such_table" not in caplog.text


@pytest.mark.skipif(backend() != "postgresql", reason="the cache listens to PostgreSQL NOTIFY")
def test_forgetting_expired_tokens_keeps_every_instances_introspection_cache(
    make_app, tenant, issue, make_gateway, monkeypatch
):
    """Deleting an expired token changes no answer, so it tells no instance to drop its cache;
    deleting a live one still does."""
    other = make_app(AUTHSERVER_INTROSPECTION_CACHE_SECONDS=NEVER)
    gateway = make_gateway(tenant)
    live, expired = issue(tenant), issue(tenant)
    db.session.execute(
        update(IssuedToken)
        .where(IssuedToken.tenant_id == tenant.id, IssuedToken.client_id == expired.client_id)
        .values(expires_at=utcnow() - retention() - SECOND)
    )
    db.session.commit()
    reads = warm(other, gateway, live.access_token, monkeypatch)

    assert upkeep.purge_expired()["issued_tokens"] == 2
    time.sleep(DELIVERY / 4)  # a notification, had one been sent, arrives well within this

    assert active(other, gateway, live.access_token)
    assert reads.count == 1, "the other instance read the database again: its cache was dropped"
    db.session.execute(delete(IssuedToken).where(IssuedToken.client_id == live.client_id))
    db.session.commit()
    assert becomes_inactive(other, gateway, live.access_token)
