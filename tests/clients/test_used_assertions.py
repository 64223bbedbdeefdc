"""The used-assertion records: one per (tenant, client, jti), isolated per tenant, purged."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import text

from authserver import upkeep
from authserver.clients import service
from authserver.clients.models import UsedAssertion
from authserver.extensions import db
from authserver.models import utcnow


def later(seconds=300):
    return utcnow() + timedelta(seconds=seconds)


def test_a_jti_is_used_once(tenant):
    assert service.use_assertion(tenant, "app_x", "jti-1", later()) is True
    assert service.use_assertion(tenant, "app_x", "jti-1", later()) is False


def test_the_same_jti_of_another_client_is_its_own(tenant):
    assert service.use_assertion(tenant, "app_x", "jti-1", later())
    assert service.use_assertion(tenant, "app_y", "jti-1", later())


def test_a_jti_used_at_one_tenant_is_unknown_at_another(tenant, other_tenant):
    assert service.use_assertion(tenant, "app_x", "jti-1", later())
    assert service.use_assertion(other_tenant, "app_x", "jti-1", later())
    rows = db.session.scalars(UsedAssertion.for_tenant(other_tenant)).all()
    assert [(row.client_id, row.jti) for row in rows] == [("app_x", "jti-1")]
    # The other tenant's record did not replace or change this tenant's.
    assert db.session.scalars(UsedAssertion.for_tenant(tenant)).one().tenant_id == tenant.id


def test_an_expired_record_does_not_block_a_new_assertion(tenant):
    assert service.use_assertion(tenant, "app_x", "jti-1", utcnow() - timedelta(seconds=1))
    assert service.use_assertion(tenant, "app_x", "jti-1", later())
    assert service.use_assertion(tenant, "app_x", "jti-1", later()) is False


def test_purge_forgets_only_expired_records(tenant, other_tenant, monkeypatch):
    # use_assertion purges by itself one time in PURGE_ONE_IN, at random: not during set-up.
    monkeypatch.setattr(upkeep.secrets, "randbelow", lambda _: 1)
    service.use_assertion(tenant, "app_x", "old", utcnow() - timedelta(seconds=1))
    service.use_assertion(other_tenant, "app_x", "old", utcnow() - timedelta(seconds=1))
    service.use_assertion(tenant, "app_x", "live", later())
    assert upkeep.purge_expired()["used_client_assertions"] == 2
    remaining = db.session.scalars(select(UsedAssertion.jti)).all()
    assert remaining == ["live"]
    assert db.session.scalar(select(func.count()).select_from(UsedAssertion)) == 1


def test_a_failing_purge_leaves_the_record_and_the_answer_standing(tenant, monkeypatch, caplog):
    monkeypatch.setattr(upkeep.secrets, "randbelow", lambda _: 0)  # this use purges
    monkeypatch.setattr(upkeep, "_batch", lambda *_: text("DELETE FROM no_such_table"))

    assert service.use_assertion(tenant, "app_x", "jti-1", later()) is True

    assert "purging expired rows failed" in caplog.text
    assert service.use_assertion(tenant, "app_x", "jti-1", later()) is False  # still recorded
