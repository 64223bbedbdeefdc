"""Revocation (RFC 7009) by the client itself, by the services and by the CLI."""

from __future__ import annotations

import json
from datetime import timedelta

import jwt
import pytest
from sqlalchemy import select
from sqlalchemy import update

from authserver.accounts import service as accounts
from authserver.audit.models import AuditRecord
from authserver.clients import service as clients
from authserver.extensions import db
from authserver.keys import service as keys
from authserver.models import utcnow
from authserver.tenancy import service as tenants
from authserver.tokens import revocation
from authserver.tokens import service as tokens
from authserver.tokens.models import IssuedToken
from tests.fixtures.accounts import login
from tests.fixtures.assertions import ASSERTION_TYPE
from tests.fixtures.tokens import basic
from tests.oauth.conftest import REDIRECT_URI
from tests.oauth.conftest import get_code
from tests.oauth.test_refresh import refresh
from tests.oauth.test_refresh import tokens_for


@pytest.fixture
def gateway(tenant, make_gateway):
    return make_gateway(tenant)


@pytest.fixture
def public_app(tenant, make_client):
    return make_client(tenant).client


def revoke(client, token, client_id, slug="clinic-a", **form):
    return client.post(f"/t/{slug}/revoke", data={"token": token, "client_id": client_id, **form})


def active(client, gateway, token) -> bool:
    return gateway.introspect(client, token).json["active"]


def test_revoking_an_access_token_makes_it_inactive_at_once(
    client, tenant, gateway, public_app, issue
):
    issued = issue(tenant, client=public_app)

    response = revoke(client, issued.access_token, public_app.client_id)

    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert not active(client, gateway, issued.access_token)
    # RFC 7009 §2.1: an access token goes alone; its refresh token stays usable.
    assert active(client, gateway, issued.refresh_token)


def test_revoking_a_refresh_token_revokes_its_family(client, tenant, gateway, public_app, issue):
    issued = issue(tenant, client=public_app)
    other = issue(tenant, client=public_app)

    response = revoke(
        client, issued.refresh_token, public_app.client_id, token_type_hint="refresh_token"
    )

    assert response.status_code == 200
    assert not active(client, gateway, issued.refresh_token)
    assert not active(client, gateway, issued.access_token)
    assert active(client, gateway, other.access_token)


def test_a_confidential_app_revokes_with_its_secret(client, tenant, gateway, make_client, issue):
    registration = make_client(
        tenant,
        auth_method="client_secret_basic",
        redirect_uris=["https://app.example.test/cb"],
    )
    issued = issue(tenant, client=registration.client)

    response = client.post(
        "/t/clinic-a/revoke",
        data={"token": issued.access_token},
        headers=basic(registration.client.client_id, registration.client_secret),
    )

    assert response.status_code == 200
    assert not active(client, gateway, issued.access_token)


def test_a_confidential_app_with_a_wrong_secret_is_401(client, tenant, gateway, make_client, issue):
    registration = make_client(
        tenant,
        auth_method="client_secret_basic",
        redirect_uris=["https://app.example.test/cb"],
    )
    issued = issue(tenant, client=registration.client)

    response = client.post(
        "/t/clinic-a/revoke",
        data={"token": issued.access_token},
        headers=basic(registration.client.client_id, "ascs_wrong"),
    )

    assert response.status_code == 401
    assert response.json["error"] == "invalid_client"
    assert active(client, gateway, issued.access_token)


def test_a_confidential_app_without_credentials_is_401(client, tenant, gateway, make_client, issue):
    """REV-06: a confidential client that names itself but does not authenticate is
    ``401 invalid_client`` (RFC 7009 §2.1, RFC 6749 §5.2), and its token stays active."""
    registration = make_client(
        tenant,
        auth_method="client_secret_basic",
        redirect_uris=["https://app.example.test/cb"],
    )
    issued = issue(tenant, client=registration.client)

    response = revoke(client, issued.access_token, registration.client.client_id)

    assert response.status_code == 401
    assert response.json["error"] == "invalid_client"
    assert active(client, gateway, issued.access_token)


def test_a_refresh_token_revoked_by_its_app_refreshes_no_more(client, clinic, make_gateway):
    """REV-04 (g10 9.3.03, with Basic authentication): once the app revokes its refresh token
    at the revocation endpoint, refreshing with it is ``400 invalid_grant``, and the access
    token of the same grant is inactive too."""
    app = clinic.confidential_app
    credentials = basic(app.client_id, clinic.secret)
    login(client, clinic.slug, "pat")
    verifier = "v" * 43
    code = get_code(client, clinic, verifier, app)
    granted = client.post(
        "/t/clinic-a/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
        },
        headers=credentials,
    ).json

    revoked = client.post(
        "/t/clinic-a/revoke",
        data={"token": granted["refresh_token"], "token_type_hint": "refresh_token"},
        headers=credentials,
    )
    refreshed = client.post(
        "/t/clinic-a/token",
        data={"grant_type": "refresh_token", "refresh_token": granted["refresh_token"]},
        headers=credentials,
    )

    assert revoked.status_code == 200
    assert refreshed.status_code == 400 and refreshed.json["error"] == "invalid_grant"
    gateway = make_gateway(clinic.tenant)
    assert gateway.introspect(client, granted["access_token"]).json == {"active": False}


@pytest.mark.parametrize("token", ["invalid_token_value", "asrt_unknown", "", "ä" * 10])
def test_an_unknown_token_answers_200(client, tenant, public_app, token):
    response = revoke(client, token, public_app.client_id)

    assert response.status_code == 200


def test_a_revocation_assertion_is_good_once(client, tenant, make_backend_client):
    # private_key_jwt at revocation spends the jti even when nothing was revoked (RFC 7523 §3).
    backend = make_backend_client(tenant)
    form = {
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": backend.assertion("https://auth.example.test/t/clinic-a/revoke"),
    }

    first = client.post("/t/clinic-a/revoke", data={"token": "not-a-token-of-ours", **form})
    replayed = client.post("/t/clinic-a/revoke", data={"token": "not-a-token-of-ours", **form})

    assert first.status_code == 200, first.json
    assert replayed.status_code in (400, 401), replayed.json
    assert replayed.json["error"] == "invalid_client"
    assert "used before" in replayed.json["error_description"]


def test_a_missing_token_is_invalid_request(client, tenant, public_app):
    response = client.post("/t/clinic-a/revoke", data={"client_id": public_app.client_id})

    assert response.status_code == 400
    assert response.json["error"] == "invalid_request"


def test_a_client_cannot_revoke_another_clients_token(
    client, tenant, gateway, public_app, make_client, issue
):
    issued = issue(tenant, client=public_app)
    intruder = make_client(tenant).client

    response = revoke(client, issued.access_token, intruder.client_id)

    assert response.status_code == 400
    assert response.json["error"] == "invalid_grant"
    assert active(client, gateway, issued.access_token)


def test_revoking_at_another_tenant_changes_nothing(
    client, tenant, other_tenant, gateway, public_app, make_client, issue
):
    issued = issue(tenant, client=public_app)
    foreign_app = make_client(other_tenant).client

    response = revoke(client, issued.access_token, foreign_app.client_id, slug="clinic-b")

    assert response.status_code == 200
    assert active(client, gateway, issued.access_token)


def test_revocation_is_audited_without_the_token(client, tenant, public_app, issue):
    issued = issue(tenant, client=public_app)
    revoke(client, issued.access_token, public_app.client_id)

    record = db.session.scalar(
        AuditRecord.for_tenant(tenant).where(AuditRecord.event == "token:revoked")
    )
    assert record is not None and record.actor == public_app.client_id
    assert issued.access_token not in json.dumps(record.details) + (record.subject or "")


def test_revoke_preflight_allows_browser_apps(client, tenant):
    response = client.options("/t/clinic-a/revoke", headers={"Origin": "https://app.example"})

    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == "*"


# -- the services revoke what they end -------------------------------------------------------


def test_disabling_a_user_revokes_their_tokens(client, tenant, gateway, issue, make_user):
    user = make_user(tenant, "dr.leaving")
    issued = issue(tenant, user=user)
    kept = issue(tenant)

    accounts.set_status(tenant, user, False)
    db.session.commit()
    accounts.set_status(tenant, user, True)
    db.session.commit()

    # Enabling the user again does not bring the revoked tokens back.
    assert not active(client, gateway, issued.access_token)
    assert not active(client, gateway, issued.refresh_token)
    assert active(client, gateway, kept.access_token)


def test_a_token_whose_context_jsonb_cannot_hold_is_still_revoked(
    client, tenant, gateway, public_app, make_user
):
    # Stored before launch contexts were checked: a \u0000 escape, which PostgreSQL's json
    # keeps but jsonb refuses (the state NOTIFY trigger once converted the whole row to jsonb).
    user = make_user(tenant, roles=["physician"])
    authorization = tokens.Authorization(
        tenant=tenant,
        client=public_app,
        scope="launch user/*.rs",
        user=user,
        context={"patient": "p1", "fhirContext": [{"canonical": "urn:x\x00y"}]},
    )
    token = tokens.issue_access_token(authorization)["access_token"]
    db.session.commit()
    assert active(client, gateway, token)

    accounts.set_status(tenant, user, False)  # revokes every token of the user
    db.session.commit()

    assert not active(client, gateway, token)


def test_deleting_a_client_revokes_its_tokens(client, tenant, gateway, public_app, issue):
    issued = issue(tenant, client=public_app)
    kept = issue(tenant)

    clients.delete(tenant, public_app.client_id)
    db.session.commit()

    assert not active(client, gateway, issued.access_token)
    assert active(client, gateway, kept.access_token)


# -- authserver token revoke -----------------------------------------------------------------


def test_cli_revokes_every_token_of_a_user(cli, client, tenant, gateway, issue, make_user):
    user = make_user(tenant, "dr.cli")
    issued = issue(tenant, user=user)
    kept = issue(tenant)

    result = cli.invoke(args=["token", "revoke", "--tenant", "clinic-a", "--user", "dr.cli"])

    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"tenant": "clinic-a", "user": "dr.cli", "revoked": 2}
    assert not active(client, gateway, issued.access_token)
    assert active(client, gateway, kept.access_token)


def test_cli_revokes_every_token_of_a_client(cli, client, tenant, gateway, public_app, issue):
    issued = issue(tenant, client=public_app)
    kept = issue(tenant)

    result = cli.invoke(
        args=["token", "revoke", "--tenant", "clinic-a", "--client", public_app.client_id]
    )

    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["revoked"] == 2
    assert not active(client, gateway, issued.refresh_token)
    assert active(client, gateway, kept.access_token)


@pytest.mark.parametrize("option", ["--user", "--client"])
def test_cli_revokes_and_reports_only_the_live_tokens(cli, client, clinic, make_gateway, option):
    """Spent refresh tokens and expired tokens answer inactive already: `token revoke` leaves
    their rows as they are, and neither its output nor its audit record counts them."""
    login(client, clinic.slug, "pat")
    tokens_for(client, clinic)  # an older authorization, expired since, by every instance's clock
    expired = utcnow() - revocation.INSTANCE_CLOCK_SKEW - timedelta(seconds=1)
    db.session.execute(
        update(IssuedToken)
        .where(IssuedToken.tenant_id == clinic.tenant.id)
        .values(expires_at=expired)
    )
    db.session.commit()
    newest = tokens_for(client, clinic)
    for _ in range(2):  # two spent refresh tokens, two replaced access tokens
        newest = refresh(client, clinic, newest["refresh_token"]).json
    before = token_rows(clinic.tenant)
    target = {"--user": "pat", "--client": clinic.public_app.client_id}[option]

    result = cli.invoke(args=["token", "revoke", "--tenant", clinic.slug, option, target])

    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["revoked"] == 2  # the live pair
    record = db.session.scalars(
        select(AuditRecord).where(AuditRecord.event == "token:revoked")
    ).one()
    assert record.details["count"] == 2
    of = option.removeprefix("--")
    assert (record.subject, record.details["of"], record.actor) == (target, of, "cli")
    after = token_rows(clinic.tenant)
    changed = {row_id for row_id in before if after[row_id] != before[row_id]}
    assert len(before) == 8 and len(changed) == 2
    assert all(after[row_id][1] is not None for row_id in changed)  # revoked_at
    gateway = make_gateway(clinic.tenant)
    for token in (newest["access_token"], newest["refresh_token"]):
        assert not active(client, gateway, token)


def token_rows(tenant) -> dict:
    """Each token row's id and what a revocation may change: ``used_at``, ``revoked_at``."""
    db.session.expire_all()
    rows = db.session.scalars(IssuedToken.for_tenant(tenant))
    return {row.id: (row.used_at, row.revoked_at) for row in rows}


@pytest.mark.parametrize(
    "args",
    [[], ["--user", "a", "--client", "b"]],
    ids=["neither", "both"],
)
def test_cli_needs_exactly_one_of_user_or_client(cli, tenant, args):
    result = cli.invoke(args=["token", "revoke", "--tenant", "clinic-a", *args])

    assert result.exit_code == 1
    assert "exactly one of --user or --client" in result.output


def test_cli_refuses_a_user_of_another_tenant(cli, tenant, other_tenant, make_user):
    make_user(other_tenant, "dr.elsewhere")

    result = cli.invoke(args=["token", "revoke", "--tenant", "clinic-a", "--user", "dr.elsewhere"])

    assert result.exit_code == 1
    assert "no user 'dr.elsewhere' at tenant 'clinic-a'" in result.output


# -- two instances on one database -----------------------------------------------------------


@pytest.fixture
def second_instance(make_app):
    """Another app made by create_app on the same database: another server process's view."""
    return make_app()


def test_a_token_revoked_on_one_instance_is_inactive_on_the_other(
    client, tenant, gateway, public_app, issue, second_instance
):
    issued = issue(tenant, client=public_app)
    other = second_instance.test_client()
    assert active(other, gateway, issued.access_token)  # the other instance has it cached

    assert revoke(client, issued.access_token, public_app.client_id).status_code == 200

    assert not active(other, gateway, issued.access_token)


def test_a_key_retired_on_one_instance_stops_verifying_on_the_other(
    client, tenant, gateway, issue, second_instance
):
    issued = issue(tenant)
    old_kid = jwt.get_unverified_header(issued.access_token)["kid"]
    keys.rotate(tenant, now=True)
    db.session.commit()
    other = second_instance.test_client()
    assert active(other, gateway, issued.access_token)  # key and token cached over there

    keys.retire(tenant, old_kid)
    db.session.commit()

    assert not active(other, gateway, issued.access_token)


def test_a_tenant_suspended_on_one_instance_is_inactive_on_the_other(
    client, tenant, gateway, issue, second_instance
):
    issued = issue(tenant)
    other = second_instance.test_client()
    assert active(other, gateway, issued.access_token)

    tenants.suspend(tenant)
    db.session.commit()

    assert not active(other, gateway, issued.access_token)
