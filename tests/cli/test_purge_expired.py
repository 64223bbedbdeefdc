"""``authserver purge-expired``: an operator forgets every expired row at once (or from cron)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy import text
from sqlalchemy import update

from authserver import upkeep
from authserver.extensions import db
from authserver.models import utcnow
from authserver.tokens.models import IssuedToken
from tests.fixtures.commands import refused
from tests.fixtures.commands import run

NOTHING = {
    "issued_tokens": 0,
    "authorization_codes": 0,
    "launches": 0,
    "used_client_assertions": 0,
    "login_sessions": 0,
}


def age(client_id: str, seconds: int) -> None:
    """Make ``client_id``'s tokens expired ``seconds`` ago."""
    expired_at = utcnow() - timedelta(seconds=seconds)
    db.session.execute(
        update(IssuedToken)
        .where(IssuedToken.client_id == client_id)
        .values(issued_at=expired_at - timedelta(hours=1), expires_at=expired_at)
    )
    db.session.commit()


def test_it_deletes_what_expired_before_the_retention_and_says_how_much(
    cli, tenant, other_tenant, issue
):
    live, recent, old, other_old = (
        issue(tenant),
        issue(tenant),
        issue(tenant),
        issue(other_tenant),
    )
    age(recent.client_id, 3600 - 60)  # still within the hour it is kept
    age(old.client_id, 3600 + 60)
    age(other_old.client_id, 3600 + 60)

    answer = run(cli, "purge-expired")

    assert answer == {"retention_seconds": 3600, "deleted": NOTHING | {"issued_tokens": 4}}
    left = db.session.scalars(select(IssuedToken.client_id).distinct()).all()
    assert sorted(left) == sorted([live.client_id, recent.client_id])
    assert run(cli, "purge-expired")["deleted"] == NOTHING


def test_a_database_failure_is_one_line_that_says_to_run_it_again(cli, tenant, issue, monkeypatch):
    issued = issue(tenant)
    age(issued.client_id, 3600 + 60)
    monkeypatch.setattr(upkeep, "_batch", lambda *_: text("DELETE FROM no_such_table"))

    line = refused(cli, "purge-expired")

    assert line.startswith("Error: purging stopped: the database refused (")
    assert line.endswith("run it again")
    assert "no_such_table" not in line
