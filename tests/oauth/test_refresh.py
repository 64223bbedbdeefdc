"""Refresh (SMART-REQUIREMENTS §1.5, §3.1 item 3): rotation, narrowing, reuse detection."""

from __future__ import annotations

import base64
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

import jwt
import pytest
from flask import current_app
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy import text
from sqlalchemy import update

from authserver.accounts import service as accounts
from authserver.accounts.models import User
from authserver.audit.models import AuditRecord
from authserver.clients.models import Client
from authserver.extensions import db
from authserver.models import utcnow
from authserver.tenancy.models import Tenant
from authserver.tokens import revocation
from authserver.tokens import service as tokens
from authserver.tokens.models import IssuedToken
from tests.fixtures.accounts import login
from tests.fixtures.database import backend as backend_name
from tests.fixtures.live import Browser
from tests.oauth.conftest import PATIENT_SCOPE
from tests.oauth.conftest import Clinic
from tests.oauth.conftest import app_session
from tests.oauth.conftest import exchange
from tests.oauth.conftest import get_code
from tests.oauth.conftest import new_verifier
from tests.oauth.conftest import verify_with_jwks

VERIFIER = new_verifier()


@pytest.fixture
def signed_in(client, clinic):
    login(client, clinic.slug, "pat")
    return client


def tokens_for(client, clinic, scope=PATIENT_SCOPE, app=None, **extra):
    code = get_code(client, clinic, VERIFIER, app, scope=scope)
    response = exchange(client, clinic, code, VERIFIER, app, **extra)
    assert response.status_code == 200, response.json
    return response.json


def refresh(client, clinic, refresh_token, app=None, headers=None, **extra):
    data = {
        "grant_type": "refresh_token",
        "refresh_token": refresh_token,
        "client_id": (app or clinic.public_app).client_id,
    }
    data.update(extra)
    return client.post(
        f"/t/{clinic.slug}/token",
        data={k: v for k, v in data.items() if v is not None},
        headers=headers or {},
    )


def assert_error(response, status, code):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.json["error"] == code
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Pragma"] == "no-cache"


# --- Full flow with Authlib's client at two tenants ------------------------------------------


def test_refresh_chain_with_authlib_client_at_two_tenants(live_server, clinic, other_clinic):
    server = live_server()
    for current in (clinic, other_clinic):
        session = app_session(server, current)
        verifier = new_verifier()
        url, _ = session.create_authorization_url(
            server.authorize_url(current.slug),
            code_verifier=verifier,
            aud=server.fhir_base(current.slug),
        )
        location = Browser("pat").authorize(url)
        first = session.fetch_token(
            server.token_url(current.slug), authorization_response=location, code_verifier=verifier
        )
        second = session.refresh_token(server.token_url(current.slug))
        third = session.refresh_token(server.token_url(current.slug), scope=second["scope"])
        for token in (second, third):
            assert token["scope"] == PATIENT_SCOPE
            assert token["patient"] == f"p-{current.slug}"
            assert token["refresh_token"] != first["refresh_token"]
            claims = verify_with_jwks(
                token["access_token"],
                server.jwks(current.slug),
                audience=server.fhir_base(current.slug),
            )
            assert claims["patient"] == f"p-{current.slug}"
            assert claims["iss"] == server.issuer(current.slug)
        assert third["refresh_token"] != second["refresh_token"]


# --- REF-01..04, 09, 10 ----------------------------------------------------------------------


def test_refresh_without_scope_keeps_scope_and_context(signed_in, clinic):
    first = tokens_for(signed_in, clinic)
    response = refresh(signed_in, clinic, first["refresh_token"])
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Pragma"] == "no-cache"
    body = response.json
    assert body["scope"] == PATIENT_SCOPE
    assert isinstance(body["expires_in"], int)
    assert body["patient"] == "p-clinic-a"
    assert body["refresh_token"] != first["refresh_token"]
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["patient"] == "p-clinic-a" and claims["fhirUser"].endswith("/Patient/p-clinic-a")


def test_refresh_narrowed_without_fhir_user_no_longer_discloses_it(signed_in, clinic, make_gateway):
    first = tokens_for(signed_in, clinic)
    narrower = "launch/patient offline_access patient/Observation.rs"
    body = refresh(signed_in, clinic, first["refresh_token"], scope=narrower).json
    assert body["scope"] == narrower
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert "fhirUser" not in claims and claims["patient"] == "p-clinic-a"
    answer = make_gateway(clinic.tenant).introspect(signed_in, body["access_token"]).json
    assert answer["active"] is True and "fhirUser" not in answer


def test_a_narrowed_refresh_narrows_the_access_token_only(signed_in, clinic, make_gateway):
    # RFC 6749 §6: "the refresh token scope MUST be identical to that of the refresh token
    # included by the client in the request"; its context stays whole with it.
    gateway = make_gateway(clinic.tenant)
    first = tokens_for(signed_in, clinic)
    presented = gateway.introspect(signed_in, first["refresh_token"]).json
    narrower = "launch/patient offline_access patient/Observation.rs"

    body = refresh(signed_in, clinic, first["refresh_token"], scope=narrower).json

    assert body["scope"] == narrower
    assert gateway.introspect(signed_in, body["access_token"]).json["scope"] == narrower
    kept = gateway.introspect(signed_in, body["refresh_token"]).json
    assert kept["active"] is True and kept["scope"] == PATIENT_SCOPE == presented["scope"]
    assert kept["fhirUser"] == presented["fhirUser"] and kept["patient"] == "p-clinic-a"
    record = tokens.find_refresh_token(clinic.tenant, body["refresh_token"])
    spent = tokens.find_refresh_token(clinic.tenant, first["refresh_token"])
    assert (record.scope, record.context) == (spent.scope, spent.context)


def test_a_grant_without_fhir_user_keeps_it_off_its_refresh_tokens(signed_in, clinic, make_gateway):
    gateway = make_gateway(clinic.tenant)
    first = tokens_for(signed_in, clinic, scope="launch/patient openid offline_access patient/*.rs")
    issued = [first["refresh_token"]]
    answers = [gateway.introspect(signed_in, first["refresh_token"]).json]
    second = refresh(signed_in, clinic, first["refresh_token"], scope="patient/*.rs").json
    issued.append(second["refresh_token"])
    answers.append(gateway.introspect(signed_in, second["refresh_token"]).json)

    for token, answer in zip(issued, answers, strict=True):
        assert answer["active"] is True and "fhirUser" not in answer
        assert "fhirUser" not in tokens.find_refresh_token(clinic.tenant, token).context


@pytest.mark.parametrize("again", [None, PATIENT_SCOPE], ids=["without-scope", "whole-scope"])
def test_a_refresh_after_a_narrowed_one_gets_the_whole_grant_back(signed_in, clinic, again):
    # REF-01's "original" is what the user granted at authorization, not the last response.
    first = tokens_for(signed_in, clinic)
    narrowed = refresh(signed_in, clinic, first["refresh_token"], scope="patient/Patient.r").json
    assert narrowed["scope"] == "patient/Patient.r"

    response = refresh(signed_in, clinic, narrowed["refresh_token"], scope=again)

    assert response.status_code == 200, response.json
    body = response.json
    assert body["scope"] == first["scope"] == PATIENT_SCOPE
    assert body["patient"] == "p-clinic-a"
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["scope"] == PATIENT_SCOPE
    # The context kept whole: fhirUser comes back with its scope.
    assert claims["fhirUser"].endswith("/Patient/p-clinic-a")


def test_refresh_with_the_whole_granted_scope(signed_in, clinic):
    first = tokens_for(signed_in, clinic)
    response = refresh(signed_in, clinic, first["refresh_token"], scope=first["scope"])
    assert response.status_code == 200
    assert response.json["scope"] == first["scope"]


def test_refresh_with_a_narrower_scope(signed_in, clinic):
    first = tokens_for(signed_in, clinic)
    narrower = "offline_access patient/Observation.r"
    response = refresh(signed_in, clinic, first["refresh_token"], scope=narrower)
    assert response.status_code == 200
    assert response.json["scope"] == narrower
    assert response.json["refresh_token"]


def test_refresh_with_a_wider_scope_is_invalid_scope(signed_in, clinic):
    first = tokens_for(signed_in, clinic)
    wider = PATIENT_SCOPE + " patient/*.cruds"
    assert_error(
        refresh(signed_in, clinic, first["refresh_token"], scope=wider), 400, "invalid_scope"
    )


def test_refresh_with_a_malformed_scope_is_invalid_scope(signed_in, clinic):
    first = tokens_for(signed_in, clinic)
    bad = "patient/Observation.x"
    assert_error(
        refresh(signed_in, clinic, first["refresh_token"], scope=bad), 400, "invalid_scope"
    )


def test_failed_refresh_does_not_spend_the_token(signed_in, clinic):
    first = tokens_for(signed_in, clinic)
    refresh(signed_in, clinic, first["refresh_token"], scope="patient/*.cruds")
    assert refresh(signed_in, clinic, first["refresh_token"]).status_code == 200


def test_a_refresh_narrowed_without_offline_access_still_gets_an_offline_refresh_token(
    signed_in, clinic
):
    # The refresh token's scope, which keeps offline_access, decides; not the access token's.
    first = tokens_for(signed_in, clinic)
    body = refresh(signed_in, clinic, first["refresh_token"], scope="patient/Patient.rs").json
    assert body["scope"] == "patient/Patient.rs"

    record = tokens.find_refresh_token(clinic.tenant, body["refresh_token"])
    assert record.scope == PATIENT_SCOPE
    lifetime = timedelta(seconds=clinic.tenant.refresh_token_lifetime)
    assert record.expires_at >= utcnow() + lifetime - timedelta(minutes=1)
    # Offline: it outlives the login session, as an online_access token would not.
    accounts.end_session(
        clinic.tenant, db.session.get(accounts.LoginSession, record.login_session_id)
    )
    db.session.commit()
    assert refresh(signed_in, clinic, body["refresh_token"]).json["scope"] == PATIENT_SCOPE


def test_a_refresh_narrowed_without_online_access_keeps_an_online_refresh_token(signed_in, clinic):
    first = tokens_for(signed_in, clinic, scope="launch/patient online_access patient/*.rs")
    body = refresh(signed_in, clinic, first["refresh_token"], scope="patient/Patient.rs").json

    record = tokens.find_refresh_token(clinic.tenant, body["refresh_token"])
    assert record.scope == "launch/patient online_access patient/*.rs"
    login_row = db.session.get(accounts.LoginSession, record.login_session_id)
    assert record.expires_at <= login_row.expires_at + timedelta(seconds=1)
    accounts.end_session(clinic.tenant, login_row)
    db.session.commit()
    assert_error(refresh(signed_in, clinic, body["refresh_token"]), 400, "invalid_grant")


def test_a_refresh_narrowed_to_no_patient_scope_keeps_the_launch_context(
    signed_in, clinic, make_gateway
):
    # The patient says where the app was launched, not what it may read (SMART 2.2 "Launch
    # context arrives with your access_token"); the response, the token and introspection
    # agree (INT-02).
    first = tokens_for(signed_in, clinic)
    body = refresh(signed_in, clinic, first["refresh_token"], scope="openid offline_access").json

    assert body["scope"] == "openid offline_access"
    assert body["patient"] == "p-clinic-a"
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["patient"] == "p-clinic-a"
    answer = make_gateway(clinic.tenant).introspect(signed_in, body["access_token"]).json
    assert answer["patient"] == "p-clinic-a"


# --- INT-05: a refresh replaces the access tokens of its family -------------------------------


def test_a_refresh_makes_the_replaced_access_token_inactive(signed_in, clinic, make_gateway):
    gateway = make_gateway(clinic.tenant)
    first = tokens_for(signed_in, clinic)
    elsewhere = tokens_for(signed_in, clinic)  # another authorization of the same user and app
    assert gateway.introspect(signed_in, first["access_token"]).json["active"] is True

    second = refresh(signed_in, clinic, first["refresh_token"]).json

    assert gateway.introspect(signed_in, first["access_token"]).json == {"active": False}
    assert gateway.introspect(signed_in, second["access_token"]).json["active"] is True
    assert gateway.introspect(signed_in, elsewhere["access_token"]).json["active"] is True
    third = refresh(signed_in, clinic, second["refresh_token"]).json
    assert gateway.introspect(signed_in, second["access_token"]).json == {"active": False}
    assert gateway.introspect(signed_in, third["access_token"]).json["active"] is True


def test_a_refused_refresh_leaves_the_access_token_active(signed_in, clinic, make_gateway):
    gateway = make_gateway(clinic.tenant)
    first = tokens_for(signed_in, clinic)

    wider = PATIENT_SCOPE + " patient/*.cruds"
    assert_error(
        refresh(signed_in, clinic, first["refresh_token"], scope=wider), 400, "invalid_scope"
    )

    assert gateway.introspect(signed_in, first["access_token"]).json["active"] is True


# --- REF-06, 07, 08, 11 and rotation reuse ---------------------------------------------------


def test_unknown_refresh_token_is_invalid_grant(signed_in, clinic):
    assert_error(
        refresh(signed_in, clinic, "3f2504e0-4f89-11d3-9a0c-0305e82c3301"), 400, "invalid_grant"
    )


@pytest.mark.parametrize("form", [{"refresh_token": ""}, {}], ids=["empty", "missing"])
def test_a_refresh_without_a_refresh_token_is_invalid_request(signed_in, clinic, form):
    # RFC 6749 §3.2: a parameter sent empty is one not sent; §5.2: missing is invalid_request.
    tokens_for(signed_in, clinic)
    data = {"grant_type": "refresh_token", "client_id": clinic.public_app.client_id, **form}
    assert_error(signed_in.post(f"/t/{clinic.slug}/token", data=data), 400, "invalid_request")


def test_refresh_token_of_another_client_is_invalid_grant(signed_in, clinic, make_client):
    first = tokens_for(signed_in, clinic)
    other = make_client(clinic.tenant).client
    assert_error(refresh(signed_in, clinic, first["refresh_token"], other), 400, "invalid_grant")


def test_confidential_client_refreshing_without_credentials_is_invalid_client(signed_in, clinic):
    app = clinic.confidential_app
    raw = f"{app.client_id}:{clinic.secret}".encode()
    headers = {"Authorization": "Basic " + base64.b64encode(raw).decode()}
    code = get_code(signed_in, clinic, VERIFIER, app)
    first = signed_in.post(
        "/t/clinic-a/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": "https://app.example.test/callback",
            "code_verifier": VERIFIER,
        },
        headers=headers,
    ).json
    # REF-08, RFC 6749 §5.2: 400 without a challenge, as the client tried no Authorization header.
    refused = refresh(signed_in, clinic, first["refresh_token"], app)
    assert_error(refused, 400, "invalid_client")
    assert "WWW-Authenticate" not in refused.headers
    ok = refresh(signed_in, clinic, first["refresh_token"], app, headers=headers, client_id=None)
    assert ok.status_code == 200


def test_a_secret_and_an_assertion_in_one_body_are_invalid_request(signed_in, clinic, make_client):
    # RFC 6749 §2.3: one authentication method per request, the body's as well as a header's.
    registration = make_client(
        clinic.tenant,
        name="Form-post app",
        auth_method="client_secret_post",
        redirect_uris=["https://app.example.test/callback"],
    )
    app = registration.client
    first = tokens_for(signed_in, clinic, app=app, client_secret=registration.client_secret)
    both = {
        "client_secret": registration.client_secret,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": "e30.e30.AAAA",
    }

    assert_error(
        refresh(signed_in, clinic, first["refresh_token"], app, **both), 400, "invalid_request"
    )
    alone = refresh(
        signed_in, clinic, first["refresh_token"], app, client_secret=both["client_secret"]
    )
    assert alone.status_code == 200, alone.json  # the refused request did not spend the token


def test_reuse_of_a_rotated_refresh_token_revokes_the_family(signed_in, clinic, make_gateway):
    gateway = make_gateway(clinic.tenant)
    first = tokens_for(signed_in, clinic)
    second = refresh(signed_in, clinic, first["refresh_token"]).json
    assert_error(refresh(signed_in, clinic, first["refresh_token"]), 400, "invalid_grant")
    # the newest tokens of the family are revoked too
    assert_error(refresh(signed_in, clinic, second["refresh_token"]), 400, "invalid_grant")
    for issued in (first, second):
        for token in (issued["access_token"], issued["refresh_token"]):
            assert gateway.introspect(signed_in, token).json == {"active": False}
    db.session.expire_all()
    family = db.session.scalars(IssuedToken.for_tenant(clinic.tenant).order_by(IssuedToken.id))
    # Every row is revoked but the spent refresh token, which stays spent and is not rewritten.
    assert [(row.used_at is None, row.revoked_at is None) for row in family] == [
        (True, False),  # the first access token, replaced by the refresh
        (False, True),  # the first refresh token, spent by the refresh
        (True, False),  # the new pair, revoked when the spent token came back
        (True, False),
    ]
    reuses = (
        AuditRecord.for_tenant(clinic.tenant)
        .where(AuditRecord.event == "refresh-token:reused")
        .order_by(AuditRecord.id)
    )
    assert [record.details["revoked"] for record in db.session.scalars(reuses)] == [2]
    # Presented once more, it is refused and recorded again, with nothing left to revoke.
    assert_error(refresh(signed_in, clinic, first["refresh_token"]), 400, "invalid_grant")
    assert [record.details["revoked"] for record in db.session.scalars(reuses)] == [2, 0]


def test_a_revocation_committed_while_a_refresh_runs_is_not_undone(
    signed_in, clinic, make_gateway, monkeypatch
):
    gateway = make_gateway(clinic.tenant)
    first = tokens_for(signed_in, clinic)
    find = tokens.find_refresh_token

    def read_then_revoked_elsewhere(tenant, token):
        row = find(tenant, token)  # read live; another instance revokes it before the claim
        with db.engine.begin() as connection:
            connection.execute(
                update(IssuedToken)
                .where(IssuedToken.grant_id == row.grant_id)
                .values(revoked_at=utcnow())
            )
        return row

    monkeypatch.setattr(tokens, "find_refresh_token", read_then_revoked_elsewhere)
    response = refresh(signed_in, clinic, first["refresh_token"])

    assert_error(response, 400, "invalid_grant")
    db.session.expire_all()
    family = db.session.scalars(IssuedToken.for_tenant(clinic.tenant)).all()
    assert len(family) == 2 and all(row.revoked_at is not None for row in family)
    assert gateway.introspect(signed_in, first["access_token"]).json == {"active": False}
    # Not mistaken for a reused refresh token: it was revoked, not presented twice.
    events = db.session.scalars(select(AuditRecord.event)).all()
    assert "refresh-token:reused" not in events


@pytest.mark.skipif(backend_name() != "postgresql", reason="row locks are PostgreSQL's")
def test_a_refresh_waits_for_a_revocation_of_its_family_instead_of_deadlocking(signed_in, clinic):
    first = tokens_for(signed_in, clinic)
    refresh_row = tokens.find_refresh_token(clinic.tenant, first["refresh_token"])
    family = IssuedToken.grant_id == refresh_row.grant_id
    access_id = db.session.scalar(
        select(IssuedToken.id).where(family, IssuedToken.kind == "access")
    )
    db.session.commit()
    answers = []

    with db.engine.connect() as revoking:  # another instance revoking the family, row by row
        revoking.execute(
            update(IssuedToken).where(IssuedToken.id == access_id).values(revoked_at=utcnow())
        )
        app = current_app._get_current_object()

        def refresh_elsewhere():
            with app.app_context():
                answers.append(refresh(signed_in, clinic, first["refresh_token"]))

        refreshing = threading.Thread(target=refresh_elsewhere)
        refreshing.start()
        wait_for_a_backend_waiting_on_a_lock()
        # The refresh waits for the access token's row: it must not hold the refresh token's.
        revoking.execute(
            update(IssuedToken).where(IssuedToken.id == refresh_row.id).values(revoked_at=utcnow())
        )
        revoking.commit()
        refreshing.join(timeout=10)

    assert_error(answers[0], 400, "invalid_grant")
    db.session.expire_all()
    rows = db.session.scalars(IssuedToken.for_tenant(clinic.tenant)).all()
    assert len(rows) == 2 and all(row.revoked_at is not None for row in rows)


@pytest.mark.skipif(backend_name() != "postgresql", reason="row locks are PostgreSQL's")
def test_a_refresh_neither_locks_nor_waits_for_the_spent_tokens_of_its_family(signed_in, clinic):
    """A family keeps its spent refresh tokens until they expire (a reuse revokes the family);
    a refresh locks only the live rows, so it does not wait for whoever holds a spent one (the
    purge deleting the expired ones) or write a lock into each at every refresh."""
    first = tokens_for(signed_in, clinic)
    second = refresh(signed_in, clinic, first["refresh_token"]).json
    spent_id = tokens.find_refresh_token(clinic.tenant, first["refresh_token"]).id
    db.session.commit()
    answers = []
    app = current_app._get_current_object()

    def refresh_elsewhere():
        with app.app_context():
            answers.append(refresh(signed_in, clinic, second["refresh_token"]))

    with db.engine.connect() as holding:
        holding.execute(select(IssuedToken.id).where(IssuedToken.id == spent_id).with_for_update())
        refreshing = threading.Thread(target=refresh_elsewhere)
        refreshing.start()
        refreshing.join(timeout=5)
        waited = refreshing.is_alive()
        holding.rollback()
    refreshing.join(timeout=10)

    assert not waited, "the refresh waited for the lock on a spent refresh token"
    assert answers[0].status_code == 200, answers[0].json
    # And a reuse of the spent one still revokes the family.
    assert_error(refresh(signed_in, clinic, first["refresh_token"]), 400, "invalid_grant")
    assert_error(refresh(signed_in, clinic, answers[0].json["refresh_token"]), 400, "invalid_grant")


def wait_for_a_backend_waiting_on_a_lock():
    waiting = text(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE wait_event_type = 'Lock' AND datname = current_database()"
    )
    deadline = time.monotonic() + 5
    # Its own connection, each read in its own transaction (a fresh pg_stat_activity).
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as watcher:
        while not watcher.scalar(waiting):
            assert time.monotonic() < deadline, "the refresh never waited for the revocation"
            time.sleep(0.01)


# --- A revocation that waits for a refresh of a family it revokes (PostgreSQL) --------------


@dataclass
class Race:
    """What another process needs to revoke the family of ``first``; rows by id, read again
    through that thread's own database session."""

    client: FlaskClient
    clinic: Clinic
    tenant_id: int
    user_id: int
    app_pk: int
    code: str
    first: dict

    def tenant(self) -> Tenant:
        return db.session.get(Tenant, self.tenant_id)


def revoke_the_users_tokens(race):  # `authserver token revoke --user`, a disabled user
    revocation.revoke_for_user(race.tenant(), db.session.get(User, race.user_id))
    db.session.commit()


def revoke_the_clients_tokens(race):  # `authserver token revoke --client`, a deleted client
    revocation.revoke_for_client(race.tenant(), db.session.get(Client, race.app_pk))
    db.session.commit()


def revoke_the_refresh_token(race):  # RFC 7009: the app revokes the refresh token it holds
    response = race.client.post(
        f"/t/{race.clinic.slug}/revoke",
        data={"token": race.first["refresh_token"], "client_id": race.clinic.public_app.client_id},
    )
    assert response.status_code == 200


def present_the_code_again(race):  # RFC 6749 §4.1.2: a replayed code revokes its family
    assert_error(exchange(race.client, race.clinic, race.code, VERIFIER), 400, "invalid_grant")


class HeldRefresh:
    """A refresh in another thread, held after it wrote its new tokens and before it commits,
    with every row of its family locked; or another token request, ``send``, held the same way
    (a code exchange, holding its claimed code)."""

    def __init__(self, monkeypatch, client, clinic, refresh_token, send=None):
        self.written, self.release = threading.Event(), threading.Event()
        self.answers, self.pid = [], None
        issue = tokens.issue_refresh_token

        def issue_then_hold(*args, **kwargs):
            token = issue(*args, **kwargs)
            self.pid = db.session.scalar(text("SELECT pg_backend_pid()"))
            self.written.set()
            assert self.release.wait(10), "the test never released the refresh"
            return token

        monkeypatch.setattr(tokens, "issue_refresh_token", issue_then_hold)
        app = current_app._get_current_object()

        def run():
            with app.app_context():
                self.answers.append(send() if send else refresh(client, clinic, refresh_token))

        self.thread = threading.Thread(target=run)
        self.thread.start()
        assert self.written.wait(10), "the refresh never wrote its tokens"

    def commit(self):
        self.release.set()
        self.thread.join(timeout=10)
        return self.answers[0]


class InThread:
    """``work(race)`` in another thread with an app context of its own, as another process."""

    def __init__(self, work, race):
        self.errors = []
        app = current_app._get_current_object()

        def run():
            with app.app_context():
                try:
                    work(race)
                except Exception as error:  # an assertion, a deadlock: the test shows it
                    self.errors.append(error)

        self.thread = threading.Thread(target=run)
        self.thread.start()

    def join(self):
        self.thread.join(timeout=10)
        assert not self.thread.is_alive(), "still running"
        assert not self.errors, self.errors


@pytest.mark.skipif(backend_name() != "postgresql", reason="row locks are PostgreSQL's")
@pytest.mark.parametrize(
    "revoke",
    [
        revoke_the_users_tokens,
        revoke_the_clients_tokens,
        revoke_the_refresh_token,
        present_the_code_again,
    ],
)
def test_a_revocation_ends_what_a_refresh_it_waited_for_issued(
    signed_in, clinic, make_gateway, monkeypatch, revoke
):
    gateway = make_gateway(clinic.tenant)
    code = get_code(signed_in, clinic, VERIFIER)
    first = exchange(signed_in, clinic, code, VERIFIER).json
    ids = {"tenant_id": clinic.tenant.id, "user_id": clinic.patient.id}
    race = Race(signed_in, clinic, app_pk=clinic.public_app.id, code=code, first=first, **ids)
    held = HeldRefresh(monkeypatch, signed_in, clinic, first["refresh_token"])

    revoking = InThread(revoke, race)
    wait_until_blocked_by(held.pid)  # the revocation waits for the refresh's family
    answer = held.commit()
    revoking.join()
    monkeypatch.undo()  # the refreshes below are not held

    assert answer.status_code == 200  # committed first: what it issued is revoked with the rest
    second = answer.json
    assert gateway.introspect(signed_in, second["access_token"]).json == {"active": False}
    assert gateway.introspect(signed_in, second["refresh_token"]).json == {"active": False}
    assert_error(refresh(signed_in, clinic, second["refresh_token"]), 400, "invalid_grant")
    db.session.expire_all()
    rows = db.session.scalars(IssuedToken.for_tenant(clinic.tenant).order_by(IssuedToken.id))
    # The access token the refresh replaced and the new pair are revoked; the refresh token it
    # spent is left as it is.
    assert [row.revoked_at is None for row in rows] == [False, True, False, False]
    revoked = db.session.scalar(
        AuditRecord.for_tenant(clinic.tenant).where(AuditRecord.event == "token:revoked")
    )
    assert revoked.details["count"] == 2  # the new pair


@pytest.mark.skipif(backend_name() != "postgresql", reason="row locks are PostgreSQL's")
@pytest.mark.parametrize("revoke", [revoke_the_users_tokens, revoke_the_clients_tokens])
def test_a_revocation_ends_what_a_code_exchange_it_waited_for_issued(
    signed_in, clinic, make_gateway, monkeypatch, revoke
):
    # The exchange has claimed its code and written its tokens when `token revoke` begins;
    # the revocation waits for it, and what it issued is revoked with the rest.
    gateway = make_gateway(clinic.tenant)
    code = get_code(signed_in, clinic, VERIFIER)
    ids = {"tenant_id": clinic.tenant.id, "user_id": clinic.patient.id}
    race = Race(signed_in, clinic, app_pk=clinic.public_app.id, code=code, first={}, **ids)
    held = HeldRefresh(
        monkeypatch,
        signed_in,
        clinic,
        None,
        send=lambda: exchange(signed_in, clinic, code, VERIFIER),
    )

    revoking = InThread(revoke, race)
    wait_until_blocked_by(held.pid)
    answer = held.commit()
    revoking.join()

    assert answer.status_code == 200  # committed first
    issued = answer.json
    assert gateway.introspect(signed_in, issued["access_token"]).json == {"active": False}
    assert gateway.introspect(signed_in, issued["refresh_token"]).json == {"active": False}
    db.session.expire_all()
    rows = db.session.scalars(IssuedToken.for_tenant(clinic.tenant)).all()
    assert len(rows) == 2 and all(row.revoked_at is not None for row in rows)


def wait_until_blocked_by(pid):
    """Until another backend waits for a lock that backend ``pid`` holds."""
    blocked = text(
        "SELECT count(*) FROM pg_stat_activity WHERE :pid = ANY(pg_blocking_pids(pid))"
    ).bindparams(pid=pid)
    deadline = time.monotonic() + 10
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as watcher:
        while not watcher.scalar(blocked):
            assert time.monotonic() < deadline, f"nothing waited for backend {pid}"
            time.sleep(0.01)


def test_revoked_refresh_token_is_invalid_grant(signed_in, clinic):
    first = tokens_for(signed_in, clinic)
    record = tokens.find_refresh_token(clinic.tenant, first["refresh_token"])
    revocation.revoke_family(clinic.tenant, record.grant_id)
    db.session.commit()
    assert_error(refresh(signed_in, clinic, first["refresh_token"]), 400, "invalid_grant")


def test_expired_refresh_token_is_invalid_grant(signed_in, clinic):
    first = tokens_for(signed_in, clinic)
    db.session.execute(update(IssuedToken).values(expires_at=utcnow() - timedelta(seconds=1)))
    db.session.commit()
    assert_error(refresh(signed_in, clinic, first["refresh_token"]), 400, "invalid_grant")


def test_refresh_of_a_disabled_user_is_invalid_grant(signed_in, clinic):
    first = tokens_for(signed_in, clinic)
    accounts.set_status(clinic.tenant, clinic.patient, False)
    db.session.commit()
    assert_error(refresh(signed_in, clinic, first["refresh_token"]), 400, "invalid_grant")


def test_refresh_token_of_another_tenant_is_worthless(signed_in, clinic, other_clinic):
    first = tokens_for(signed_in, clinic)
    response = refresh(signed_in, other_clinic, first["refresh_token"], other_clinic.public_app)
    assert_error(response, 400, "invalid_grant")
    assert refresh(signed_in, clinic, first["refresh_token"]).status_code == 200


# --- online_access: tied to the login session (EHR-06) ---------------------------------------


def test_online_access_refresh_token_lives_with_the_login_session(signed_in, clinic):
    first = tokens_for(signed_in, clinic, scope="launch/patient online_access patient/*.rs")
    record = tokens.find_refresh_token(clinic.tenant, first["refresh_token"])
    login_row = db.session.get(accounts.LoginSession, record.login_session_id)
    assert record.expires_at <= login_row.expires_at + timedelta(seconds=1)
    second = refresh(signed_in, clinic, first["refresh_token"])
    assert second.status_code == 200
    accounts.end_session(clinic.tenant, login_row)
    db.session.commit()
    assert_error(refresh(signed_in, clinic, second.json["refresh_token"]), 400, "invalid_grant")


@pytest.mark.parametrize("session_end", ["signed out", "expired"])
def test_introspection_agrees_an_online_refresh_token_ends_with_its_session(
    signed_in, clinic, make_gateway, session_end
):
    gateway = make_gateway(clinic.tenant)
    online = tokens_for(signed_in, clinic, scope="launch/patient online_access patient/*.rs")
    offline = tokens_for(signed_in, clinic)
    assert gateway.introspect(signed_in, online["refresh_token"]).json["active"] is True
    record = tokens.find_refresh_token(clinic.tenant, online["refresh_token"])
    login_row = db.session.get(accounts.LoginSession, record.login_session_id)

    if session_end == "signed out":
        accounts.end_session(clinic.tenant, login_row)
    else:
        login_row.expires_at = utcnow() - timedelta(seconds=1)
    db.session.commit()

    assert gateway.introspect(signed_in, online["refresh_token"]).json == {"active": False}
    assert gateway.introspect(signed_in, offline["refresh_token"]).json["active"] is True


def test_a_password_reset_signs_the_user_out_and_leaves_their_other_tokens(
    signed_in, clinic, make_gateway
):
    """Only the login ends (and with it, by definition, online_access); the admin revokes the
    rest with ``authserver token revoke --user`` if the tokens are suspect too."""
    gateway = make_gateway(clinic.tenant)
    offline = tokens_for(signed_in, clinic)
    online = tokens_for(signed_in, clinic, scope="launch/patient online_access patient/*.rs")

    accounts.set_password(clinic.tenant, clinic.patient, "a new sturdy passphrase", actor="cli")
    db.session.commit()

    assert signed_in.get(f"/t/{clinic.slug}/").status_code == 302
    for body in (offline, online):
        assert gateway.introspect(signed_in, body["access_token"]).json["active"] is True
    assert gateway.introspect(signed_in, online["refresh_token"]).json == {"active": False}
    assert refresh(signed_in, clinic, offline["refresh_token"]).status_code == 200


def test_offline_access_outlives_the_login_session(signed_in, clinic):
    first = tokens_for(signed_in, clinic)
    record = tokens.find_refresh_token(clinic.tenant, first["refresh_token"])
    accounts.end_session(
        clinic.tenant, db.session.get(accounts.LoginSession, record.login_session_id)
    )
    db.session.commit()
    assert refresh(signed_in, clinic, first["refresh_token"]).status_code == 200
