"""The token endpoint's Backend Services fast path (authserver/oauth/fastpath.py).

It keeps tenant, client and signing-key rows per process, so each test checks that a change
made elsewhere (here: through the services, beside the app's cache, as another instance would)
takes effect on the very next request, and that the fast path, not the full one, answered the
everyday request.
"""

from __future__ import annotations

import json
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from urllib.parse import urlencode

import jwt
import pytest
from sqlalchemy import text
from werkzeug.datastructures import MultiDict

from authserver import upkeep
from authserver.clients import service as clients
from authserver.clients.models import UsedAssertion
from authserver.extensions import db
from authserver.keys import service as keys
from authserver.oauth import fastpath
from authserver.tenancy import service as tenants
from authserver.tokens import service as tokens
from authserver.web import PUBLIC_DOCUMENT_MAX_AGE
from tests.fixtures.assertions import assertion_claims
from tests.fixtures.assertions import jwks_of
from tests.fixtures.assertions import make_client_key
from tests.fixtures.assertions import token_form
from tests.fixtures.database import backend as backend_name
from tests.fixtures.keys import age_key
from tests.fixtures.tokens import basic

TOKEN_PATH = "/t/clinic-a/token"
TOKEN_URL = "https://auth.example.test/t/clinic-a/token"
FHIR_BASE = "https://auth.example.test/t/clinic-a/fhir"


@pytest.fixture
def answers(monkeypatch):
    """The fast path's answers: a token response, or None when it passed the request on.

    A request it does not even consider (not its kind) adds nothing; tests clear the list.
    """
    seen = []

    def spy(slug, params):
        seen.append(original(slug, params))
        return seen[-1]

    original = fastpath.issue
    monkeypatch.setattr(fastpath, "issue", spy)
    return seen


@pytest.fixture
def backend(tenant, make_backend_client):
    return make_backend_client(tenant)


def post(client, assertion, scope="system/Patient.rs", **extra):
    return client.post(TOKEN_PATH, data={**token_form(assertion, scope), **extra})


def signer_kid(token):
    return jwt.get_unverified_header(token)["kid"]


def test_everyday_request_is_answered_by_the_fast_path_and_recorded(
    client, tenant, backend, answers
):
    post(client, backend.assertion(TOKEN_URL))  # the first one fills the process's entry
    assertion = backend.assertion(TOKEN_URL)
    response = post(client, assertion)
    assert response.status_code == 200, response.json
    assert answers[-1] is not None
    body = response.json
    assert list(body) == ["access_token", "token_type", "expires_in", "scope"]
    assert body["token_type"] == "Bearer" and body["scope"] == "system/Patient.rs"
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Pragma"] == "no-cache"
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    header = jwt.get_unverified_header(body["access_token"])
    assert header["typ"] == "at+jwt"
    jwk = next(k for k in keys.jwks(tenant)["keys"] if k["kid"] == header["kid"])
    claims = jwt.decode(
        body["access_token"], jwt.PyJWK(jwk).key, algorithms=[header["alg"]], audience=FHIR_BASE
    )
    assert claims["sub"] == claims["client_id"] == backend.client_id
    assert claims["tenant"] == "clinic-a" and claims["exp"] - claims["iat"] <= 300
    record = tokens.find_by_jti(tenant, claims["jti"])
    assert record is not None and record.kind == "access" and record.user_id is None
    assert record.client_id == backend.client_id and record.scope == "system/Patient.rs"
    assert record.context == {}
    assert record.expires_at.timestamp() == claims["exp"]
    used = db.session.scalars(db.select(UsedAssertion.jti)).all()
    assert jwt.decode(assertion, options={"verify_signature": False})["jti"] in used


def test_a_worker_keeps_the_clients_of_ten_thousand_tenants(app, client, backend, answers):
    """Each backend client is read once per process, and stays: a worker serving the 10,000
    clinics the platform is sized for, each with its client, drops none of them."""
    entries = app.extensions[fastpath.EXTENSION].entries
    entries.clear()
    others = {(f"clinic-{number:05d}", f"app_{number}"): object() for number in range(9_999)}
    entries.update(others)  # stand-ins for the entries of other tenants' clients

    assert post(client, backend.assertion(TOKEN_URL)).status_code == 200

    assert answers[-1] is not None
    assert ("clinic-a", backend.client_id) in entries
    assert others.keys() <= entries.keys()


def test_a_client_beyond_the_bound_drops_only_the_entry_kept_longest(app, client, backend, answers):
    entries = app.extensions[fastpath.EXTENSION].entries
    entries.clear()
    others = [(f"clinic-{number:05d}", f"app_{number}") for number in range(fastpath.MAX_ENTRIES)]
    entries.update(dict.fromkeys(others, object()))

    assert post(client, backend.assertion(TOKEN_URL)).status_code == 200

    assert answers[-1] is not None
    assert ("clinic-a", backend.client_id) in entries
    assert len(entries) == fastpath.MAX_ENTRIES
    assert others[0] not in entries
    assert set(others[1:]) <= entries.keys()


def test_replayed_assertion_is_refused_after_a_fast_path_success(client, backend, answers):
    post(client, backend.assertion(TOKEN_URL))
    assertion = backend.assertion(TOKEN_URL)
    assert post(client, assertion).status_code == 200
    assert answers[-1] is not None
    answers.clear()
    response = post(client, assertion)
    assert response.status_code == 400
    assert response.json["error"] == "invalid_client"
    assert "used before" in response.json["error_description"]
    assert answers == [None]


def test_client_deleted_elsewhere_is_refused_at_once(client, tenant, backend, answers):
    assert post(client, backend.assertion(TOKEN_URL)).status_code == 200
    clients.delete(tenant, backend.client_id)
    db.session.commit()
    answers.clear()
    response = post(client, backend.assertion(TOKEN_URL))
    assert response.status_code == 400
    assert response.json["error"] == "invalid_client"
    assert answers == [None]


def test_tenant_suspended_elsewhere_is_refused_at_once(client, tenant, backend, answers):
    assert post(client, backend.assertion(TOKEN_URL)).status_code == 200
    tenants.suspend(tenant)
    db.session.commit()
    answers.clear()
    response = post(client, backend.assertion(TOKEN_URL))
    assert response.status_code == 403
    assert answers == [None]


def test_client_key_removed_elsewhere_stops_verifying_at_once(client, tenant, backend, answers):
    assert post(client, backend.assertion(TOKEN_URL)).status_code == 200
    new_key = make_client_key()
    clients.get_client(tenant, backend.client_id).jwks = jwks_of(new_key)
    db.session.commit()
    response = post(client, backend.assertion(TOKEN_URL))
    assert response.status_code == 400
    assert response.json["error"] == "invalid_client"
    good = post(client, backend.assertion(TOKEN_URL, key=new_key))
    assert good.status_code == 200, good.json


def test_allowed_scopes_narrowed_elsewhere_apply_at_once(client, tenant, backend, answers):
    assert post(client, backend.assertion(TOKEN_URL)).status_code == 200
    clients.get_client(tenant, backend.client_id).allowed_scope = "system/Observation.rs"
    db.session.commit()
    response = post(client, backend.assertion(TOKEN_URL), scope="system/Patient.rs")
    assert response.status_code == 400
    assert response.json["error"] == "invalid_scope"


def test_signing_key_rotated_elsewhere_signs_the_next_token(client, tenant, backend, answers):
    first = post(client, backend.assertion(TOKEN_URL)).json["access_token"]
    rotated = keys.rotate(tenant, tenant.access_token_alg, now=True)
    db.session.commit()
    second = post(client, backend.assertion(TOKEN_URL)).json["access_token"]
    assert signer_kid(first) != signer_kid(second) == rotated.kid
    third = post(client, backend.assertion(TOKEN_URL))
    assert signer_kid(third.json["access_token"]) == rotated.kid
    assert answers[-1] is not None


def test_staged_key_promoted_elsewhere_signs_the_next_token(client, tenant, backend, answers):
    alg = tenant.access_token_alg
    first = post(client, backend.assertion(TOKEN_URL)).json["access_token"]
    staged = keys.stage(tenant, alg)
    db.session.commit()
    # Staged, the key signs nothing: the fast path keeps answering with the signer it read.
    answers.clear()
    while_staged = post(client, backend.assertion(TOKEN_URL)).json["access_token"]
    assert signer_kid(while_staged) == signer_kid(first)
    assert answers[-1] is not None
    age_key(tenant, staged.kid, PUBLIC_DOCUMENT_MAX_AGE)
    keys.rotate(tenant, alg)
    db.session.commit()
    second = post(client, backend.assertion(TOKEN_URL)).json["access_token"]
    assert signer_kid(second) == staged.kid
    third = post(client, backend.assertion(TOKEN_URL))
    assert signer_kid(third.json["access_token"]) == staged.kid
    assert answers[-1] is not None


def test_access_token_alg_changed_elsewhere_applies_at_once(client, tenant, backend, answers):
    first = post(client, backend.assertion(TOKEN_URL)).json["access_token"]
    assert jwt.get_unverified_header(first)["alg"] == "RS256"
    tenants.set_access_token_alg(tenant, "ES256", now=True)
    db.session.commit()
    second = post(client, backend.assertion(TOKEN_URL)).json["access_token"]
    assert jwt.get_unverified_header(second)["alg"] == "ES256"


def test_a_parameter_it_does_not_know_takes_the_full_path(client, backend, answers):
    post(client, backend.assertion(TOKEN_URL))
    answers.clear()
    post(client, backend.assertion(TOKEN_URL), client_secret="x")
    assert not any(answers)


def test_a_body_client_id_of_another_client_is_refused_by_the_full_path(client, backend, answers):
    post(client, backend.assertion(TOKEN_URL))
    answers.clear()
    response = post(client, backend.assertion(TOKEN_URL), client_id="someone-else")
    assert response.status_code == 400
    assert response.json["error"] == "invalid_client"
    assert not any(answers)


@pytest.mark.parametrize("query", ["client_id=someone-else", "scope=system/Observation.rs"])
def test_parameters_in_the_url_are_refused_by_the_full_path(client, backend, answers, query):
    # Authlib would read the URL's parameters before the body's: refused, never half-read.
    post(client, backend.assertion(TOKEN_URL))
    answers.clear()
    response = client.post(
        f"{TOKEN_PATH}?{query}", data=token_form(backend.assertion(TOKEN_URL), "system/Patient.rs")
    )
    assert response.status_code == 400
    assert response.json["error"] == "invalid_request"
    assert "body" in response.json["error_description"]
    assert not any(answers)


def test_a_repeated_scope_is_refused_by_the_full_path(client, backend, answers):
    form = [*token_form(backend.assertion(TOKEN_URL)).items(), ("scope", "system/Observation.rs")]
    response = client.post(TOKEN_PATH, data=MultiDict(form))
    assert response.status_code == 400
    assert response.json["error"] == "invalid_request"
    assert "scope" in response.json["error_description"]
    assert not any(answers)


def test_a_basic_header_beside_the_assertion_is_refused_by_the_full_path(client, backend, answers):
    response = client.post(
        TOKEN_PATH,
        data=token_form(backend.assertion(TOKEN_URL)),
        headers=basic(backend.client_id, "anything"),
    )
    assert response.status_code == 400
    assert response.json["error"] == "invalid_request"
    assert not any(answers)


def test_the_form_media_type_is_read_case_insensitively_on_both_paths(client, backend, answers):
    body = urlencode(token_form(backend.assertion(TOKEN_URL)))
    content_type = "Application/X-WWW-Form-Urlencoded"
    fast = client.post(TOKEN_PATH, data=body, content_type=content_type)
    assert fast.status_code == 200 and answers[-1] is not None
    answers.clear()
    # A parameter the fast path does not know (and Authlib ignores) sends it to the full path.
    body = urlencode({**token_form(backend.assertion(TOKEN_URL)), "note": "nightly export"})
    full = client.post(TOKEN_PATH, data=body, content_type=content_type)
    assert full.status_code == 200, full.json
    assert not any(answers)


def test_a_bad_signature_is_refused_by_the_full_path(client, backend, answers):
    post(client, backend.assertion(TOKEN_URL))
    answers.clear()
    response = post(client, backend.assertion(TOKEN_URL, key=make_client_key(kid=backend.key.kid)))
    assert response.status_code == 400
    assert response.json["error"] == "invalid_client"
    assert answers == [None]


@pytest.mark.parametrize("claim", ["sub", "jti"])
def test_a_lone_surrogate_in_the_assertion_is_refused_by_the_full_path(
    client, backend, answers, claim
):
    """JSON can spell one ("\\ud800"), which no database driver can encode: the fast path
    declines, and the full path refuses the client, recording nothing."""
    post(client, backend.assertion(TOKEN_URL))
    answers.clear()
    recorded = db.session.query(UsedAssertion).count()

    response = post(client, backend.assertion(TOKEN_URL, **{claim: "\ud800"}))

    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.json["error"] == "invalid_client"
    assert answers == [None]
    assert db.session.query(UsedAssertion).count() == recorded


def test_a_subject_no_database_can_hold_is_never_looked_up(app, client, backend, monkeypatch):
    """Declined before the database: the lookup would fail there and close a raw connection,
    which the next request would have to open again."""
    store = app.extensions[fastpath.EXTENSION]
    looked_up = []
    monkeypatch.setattr(store, "load", lambda *key: looked_up.append(key))

    response = post(client, backend.assertion(TOKEN_URL, sub="\ud800"))

    assert response.status_code == 400 and response.json["error"] == "invalid_client"
    assert looked_up == []


@pytest.mark.parametrize("depth", [33, 2000])  # 2000: a body the fast path reads (9 kB)
def test_a_payload_nesting_too_deep_is_refused_by_the_full_path(client, backend, answers, depth):
    """Signed by the client itself, and refused all the same: no claim nests, and past about a
    thousand levels Python's parser gives up with a RecursionError."""
    post(client, backend.assertion(TOKEN_URL))
    answers.clear()
    claims = json.dumps(assertion_claims(backend.client_id, TOKEN_URL))
    payload = claims[:-1] + ', "note": ' + "[" * depth + "]" * depth + "}"
    headers = {"kid": backend.key.kid, "typ": "JWT"}
    assertion = jwt.PyJWS().encode(
        payload.encode(), backend.key.private_key, algorithm=backend.key.alg, headers=headers
    )

    response = post(client, assertion)

    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.json == {"error": "invalid_client", "error_description": "Invalid JWT payload."}
    assert answers == [None]


def test_a_row_rewritten_with_the_same_values_keeps_tokens_coming(client, backend, answers):
    assert post(client, backend.assertion(TOKEN_URL)).status_code == 200
    rewrite = "UPDATE clients SET allowed_scope = allowed_scope WHERE client_id = :client_id"
    db.session.execute(text(rewrite), {"client_id": backend.client_id})
    db.session.commit()

    # PostgreSQL sees a new row version (the entry is read again), SQLite the same values.
    assert post(client, backend.assertion(TOKEN_URL)).status_code == 200
    answers.clear()
    assert post(client, backend.assertion(TOKEN_URL)).status_code == 200
    assert answers[-1] is not None


def test_a_change_written_in_plain_sql_elsewhere_applies_at_once(client, backend, answers):
    assert post(client, backend.assertion(TOKEN_URL)).status_code == 200
    narrow = "UPDATE clients SET allowed_scope = :scope WHERE client_id = :client_id"
    db.session.execute(
        text(narrow), {"scope": "system/Observation.rs", "client_id": backend.client_id}
    )
    db.session.commit()

    response = post(client, backend.assertion(TOKEN_URL), scope="system/Patient.rs")

    assert response.status_code == 400
    assert response.json["error"] == "invalid_scope"


@pytest.mark.skipif(backend_name() != "postgresql", reason="row versions are PostgreSQL's")
def test_vacuum_freeze_keeps_the_fast_path_answering(client, backend, answers):
    """Freezing keeps a row's xmin (PostgreSQL reports the raw one), so no entry goes stale."""
    assert post(client, backend.assertion(TOKEN_URL)).status_code == 200
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM (FREEZE) tenants, clients, signing_keys"))
    answers.clear()

    assert post(client, backend.assertion(TOKEN_URL)).status_code == 200
    assert answers == [answers[0]] and answers[0] is not None


def test_the_purge_it_runs_now_and_then_forgets_only_expired_records(
    client, tenant, backend, answers, monkeypatch
):
    expired = UsedAssertion(
        tenant_id=tenant.id,
        client_id=backend.client_id,
        jti="expired-long-ago",
        expires_at=datetime.now(UTC) - timedelta(minutes=1),
    )
    db.session.add(expired)
    db.session.commit()
    assert post(client, backend.assertion(TOKEN_URL)).status_code == 200
    monkeypatch.setattr(upkeep.secrets, "randbelow", lambda _: 0)  # this request purges

    response = post(client, backend.assertion(TOKEN_URL))

    assert response.status_code == 200 and answers[-1] is not None
    db.session.expire_all()
    left = db.session.scalars(db.select(UsedAssertion.jti)).all()
    assert "expired-long-ago" not in left and len(left) == 2


def broken_purge_statement(*_):
    return db.text("DELETE FROM no_such")


def purge_failing_outside_the_database(*_):
    raise RuntimeError("not a database error")


@pytest.mark.parametrize("failure", [broken_purge_statement, purge_failing_outside_the_database])
def test_a_failing_purge_still_answers_with_the_token_it_recorded(
    app, client, backend, answers, monkeypatch, caplog, failure
):
    assert post(client, backend.assertion(TOKEN_URL)).status_code == 200
    monkeypatch.setattr(upkeep.secrets, "randbelow", lambda _: 0)  # this request purges
    monkeypatch.setattr(upkeep, "_batch", failure)

    response = post(client, backend.assertion(TOKEN_URL))

    assert response.status_code == 200, response.json
    assert answers[-1] is not None
    assert "purging expired rows failed" in caplog.text
