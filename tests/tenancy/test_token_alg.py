"""A tenant may sign access tokens with ES256; id_tokens stay RS256.

Verifiers cache the JWKS for ``PUBLIC_DOCUMENT_MAX_AGE`` seconds, so an algorithm the tenant has
no signer for is switched to the way ``keys rotate`` switches keys: its new key is staged in the
JWKS first and signs only once it has been there that long (or at once with ``now``).
"""

from __future__ import annotations

import json
import re
from datetime import timedelta

import jwt
import pytest
from sqlalchemy import func
from sqlalchemy import select

from authserver.audit.models import AuditRecord
from authserver.errors import ValidationError
from authserver.extensions import db
from authserver.keys import service as keys
from authserver.tenancy import service
from authserver.web import PUBLIC_DOCUMENT_MAX_AGE
from tests.fixtures.assertions import token_form
from tests.fixtures.commands import refused
from tests.fixtures.commands import run
from tests.fixtures.commands import unchanged
from tests.fixtures.keys import age_key


def token_url(slug):
    return f"https://auth.example.test/t/{slug}/token"


def served_jwks(client, slug="clinic-a"):
    response = client.get(f"/t/{slug}/.well-known/jwks.json")
    assert response.status_code == 200
    return response.json


def access_token(client, backend, slug="clinic-a"):
    """An access token from the tenant's token endpoint, as a Backend Services client gets it."""
    response = client.post(f"/t/{slug}/token", data=token_form(backend.assertion(token_url(slug))))
    assert response.status_code == 200, response.json
    return response.json["access_token"]


def verified_header(client, token, slug="clinic-a"):
    """The token's header, once it verified against the JWKS served now, as a gateway checks it."""
    header = jwt.get_unverified_header(token)
    key = jwt.PyJWKSet.from_dict(served_jwks(client, slug))[header["kid"]]
    jwt.decode(token, key.key, algorithms=[header["alg"]], options={"verify_aud": False})
    return header


def stored_keys(tenant):
    """The tenant's keys as (alg, kid, status), oldest first."""
    db.session.expire_all()
    return [(key.alg, key.kid, key.status) for key in keys.list_keys(tenant)]


def signer(tenant, alg="RS256"):
    """The kid of the tenant's active ``alg`` key."""
    (kid,) = [
        kid for key_alg, kid, status in stored_keys(tenant) if (key_alg, status) == (alg, "active")
    ]
    return kid


def current_alg(tenant):
    db.session.expire_all()
    return tenant.access_token_alg


def tenant_events(tenant, after):
    """The tenant's audit records after record ``after``, as (event, subject, details)."""
    db.session.expire_all()
    query = (
        select(AuditRecord)
        .where(AuditRecord.tenant_id == tenant.id, AuditRecord.id > after)
        .order_by(AuditRecord.id)
    )
    return [(record.event, record.subject, record.details) for record in db.session.scalars(query)]


def last_audit_id():
    return db.session.scalar(select(func.max(AuditRecord.id))) or 0


@pytest.fixture
def backend(tenant, make_backend_client):
    return make_backend_client(tenant)


def stage_es256(tenant):
    change = service.set_access_token_alg(tenant, "ES256")
    db.session.commit()
    return change.staged_key.kid


# --- The service ------------------------------------------------------------------------------


def test_a_new_alg_is_staged_in_the_jwks_while_tokens_keep_the_old_alg(client, tenant, backend):
    rs256 = signer(tenant)

    change = service.set_access_token_alg(tenant, "ES256")
    db.session.commit()

    assert current_alg(tenant) == "RS256"
    header = verified_header(client, access_token(client, backend))
    assert (header["alg"], header["kid"]) == ("RS256", rs256)
    (staged,) = [
        kid for alg, kid, status in stored_keys(tenant) if (alg, status) == ("ES256", "next")
    ]
    assert staged in [key["kid"] for key in served_jwks(client)["keys"]]
    assert change.staged_key.kid == staged
    switch_after = change.staged_key.created_at + timedelta(seconds=PUBLIC_DOCUMENT_MAX_AGE)
    assert change.switch_after == switch_after


def test_a_second_call_before_the_wait_is_refused_and_switches_nothing(client, tenant, backend):
    staged = stage_es256(tenant)
    age_key(tenant, staged, PUBLIC_DOCUMENT_MAX_AGE - 60)
    before = stored_keys(tenant)

    with pytest.raises(ValidationError) as refusal:
        service.set_access_token_alg(tenant, "ES256")
    db.session.rollback()

    message = str(refusal.value)
    assert f"ES256 key {staged!r} was staged" in message
    assert "access tokens stay RS256" in message
    assert 55 <= int(re.search(r"run set-token-alg again in (\d+) s", message)[1]) <= 60
    assert "--now" in message
    assert stored_keys(tenant) == before
    assert current_alg(tenant) == "RS256"
    assert jwt.get_unverified_header(access_token(client, backend))["alg"] == "RS256"


def test_a_call_after_the_wait_makes_the_staged_key_sign_access_tokens(client, tenant, backend):
    rs256 = signer(tenant)
    staged = stage_es256(tenant)
    age_key(tenant, staged, PUBLIC_DOCUMENT_MAX_AGE)

    change = service.set_access_token_alg(tenant, "ES256")
    db.session.commit()

    assert change.staged_key is None
    assert current_alg(tenant) == "ES256"
    assert stored_keys(tenant) == [("RS256", rs256, "active"), ("ES256", staged, "active")]
    header = verified_header(client, access_token(client, backend))
    assert (header["alg"], header["kid"]) == ("ES256", staged)


def test_now_switches_at_once_to_a_new_key(client, tenant, backend):
    service.set_access_token_alg(tenant, "ES256", now=True)
    db.session.commit()

    assert current_alg(tenant) == "ES256"
    es256 = signer(tenant, "ES256")
    header = verified_header(client, access_token(client, backend))
    assert (header["alg"], header["kid"]) == ("ES256", es256)


def test_now_makes_a_young_staged_key_sign_instead_of_making_another(client, tenant, backend):
    staged = stage_es256(tenant)

    service.set_access_token_alg(tenant, "ES256", now=True)
    db.session.commit()

    assert [kid for alg, kid, _ in stored_keys(tenant) if alg == "ES256"] == [staged]
    header = verified_header(client, access_token(client, backend))
    assert (header["alg"], header["kid"]) == ("ES256", staged)


def test_an_alg_with_a_signer_switches_at_once_both_ways(client, tenant, backend):
    es256 = keys.rotate(tenant, "ES256", now=True).kid
    db.session.commit()
    before = stored_keys(tenant)

    assert service.set_access_token_alg(tenant, "ES256").staged_key is None
    db.session.commit()
    assert jwt.get_unverified_header(access_token(client, backend))["kid"] == es256
    assert service.set_access_token_alg(tenant, "RS256").staged_key is None
    db.session.commit()

    assert current_alg(tenant) == "RS256"
    assert stored_keys(tenant) == before
    assert jwt.get_unverified_header(access_token(client, backend))["alg"] == "RS256"


def test_setting_the_alg_in_use_changes_and_audits_nothing(tenant):
    service.set_access_token_alg(tenant, "ES256", now=True)
    db.session.commit()
    before, after = stored_keys(tenant), last_audit_id()

    for now in (False, True):
        change = service.set_access_token_alg(tenant, "ES256", now=now)
        assert (change.row, change.changed, change.staged_key) == (tenant, False, None)

    db.session.commit()
    assert current_alg(tenant) == "ES256"
    assert stored_keys(tenant) == before
    assert tenant_events(tenant, after) == []


def test_a_staged_successor_of_the_signer_in_use_is_no_switch_to_cancel(tenant):
    keys.stage(tenant, "RS256")  # the next RS256 key of a rotation: access tokens stay RS256
    db.session.commit()
    before, after = stored_keys(tenant), last_audit_id()

    change = service.set_access_token_alg(tenant, "RS256")

    assert not change.changed
    assert stored_keys(tenant) == before
    assert tenant_events(tenant, after) == []


def staged_switch_refusal(staged):
    return (
        "tenant 'clinic-a' signs its access tokens with RS256 already, and a switch to ES256 is "
        f"staged: retire its key to cancel it (keys retire clinic-a {staged})"
    )


def test_the_alg_in_use_while_a_switch_to_another_is_staged_is_refused_naming_its_key(tenant):
    # The operator may mean to call the switch off: saying "already" would leave it staged,
    # one set-token-alg away.
    staged = stage_es256(tenant)
    before, after = stored_keys(tenant), last_audit_id()

    for now in (False, True):
        with pytest.raises(ValidationError) as refusal:
            service.set_access_token_alg(tenant, "RS256", now=now)
        assert str(refusal.value) == staged_switch_refusal(staged)

    db.session.rollback()
    assert current_alg(tenant) == "RS256"
    assert stored_keys(tenant) == before
    assert tenant_events(tenant, after) == []
    keys.retire(tenant, staged)
    assert not service.set_access_token_alg(tenant, "RS256").changed


def test_a_staged_key_dated_ahead_by_another_clock_never_asks_for_a_negative_or_longer_wait(
    tenant,
):
    staged = stage_es256(tenant)
    age_key(tenant, staged, -3600)  # made by an instance whose clock runs an hour ahead

    with pytest.raises(ValidationError) as refusal:
        service.set_access_token_alg(tenant, "ES256")
    db.session.rollback()

    message = str(refusal.value)
    assert "was staged 0 s ago" in message
    assert f"run set-token-alg again in {PUBLIC_DOCUMENT_MAX_AGE} s" in message


def test_the_wait_is_never_negative_long_after_staging(tenant):
    staged = stage_es256(tenant)
    age_key(tenant, staged, 10 * PUBLIC_DOCUMENT_MAX_AGE)

    assert keys.seconds_until_it_may_sign(keys.staged_key(tenant, "ES256")) == 0
    service.set_access_token_alg(tenant, "ES256")
    assert current_alg(tenant) == "ES256"


def test_unknown_alg_is_refused_and_changes_nothing(tenant):
    before = stored_keys(tenant)
    with pytest.raises(ValidationError):
        service.set_access_token_alg(tenant, "HS256")
    assert tenant.access_token_alg == "RS256"
    assert stored_keys(tenant) == before


def test_staging_and_switching_are_audited_as_what_they_did(tenant):
    after = last_audit_id()
    staged = stage_es256(tenant)
    switch_after = (
        keys.staged_key(tenant, "ES256").created_at + timedelta(seconds=PUBLIC_DOCUMENT_MAX_AGE)
    ).isoformat()
    age_key(tenant, staged, PUBLIC_DOCUMENT_MAX_AGE)
    service.set_access_token_alg(tenant, "ES256", actor="ops")
    service.set_access_token_alg(tenant, "RS256", actor="ops")
    db.session.commit()

    staging = {
        "alg": "ES256",
        "kid": staged,
        "access_token_alg": "RS256",
        "switch_after": switch_after,
    }
    assert tenant_events(tenant, after) == [
        ("key:staged", staged, {"alg": "ES256"}),
        ("tenant:token-alg-staged", "clinic-a", staging),
        ("key:rotated", staged, {"alg": "ES256", "previous_kid": None, "at_once": False}),
        (
            "tenant:token-alg-set",
            "clinic-a",
            {"alg": "ES256", "previous_alg": "RS256", "at_once": False},
        ),
        (
            "tenant:token-alg-set",
            "clinic-a",
            {"alg": "RS256", "previous_alg": "ES256", "at_once": False},
        ),
    ]


def test_a_switch_with_now_is_audited_as_made_at_once(tenant):
    after = last_audit_id()

    service.set_access_token_alg(tenant, "ES256", now=True)
    db.session.commit()

    es256 = signer(tenant, "ES256")
    assert tenant_events(tenant, after) == [
        ("key:created", es256, {"alg": "ES256"}),
        (
            "tenant:token-alg-set",
            "clinic-a",
            {"alg": "ES256", "previous_alg": "RS256", "at_once": True},
        ),
    ]


def test_keys_rotate_can_promote_the_staged_key_and_the_switch_is_then_at_once(cli, tenant):
    staged = stage_es256(tenant)
    age_key(tenant, staged, PUBLIC_DOCUMENT_MAX_AGE)

    assert run(cli, "keys", "rotate", "clinic-a", "--alg", "ES256")["kid"] == staged
    assert current_alg(tenant) == "RS256"
    assert service.set_access_token_alg(tenant, "ES256").staged_key is None
    assert current_alg(tenant) == "ES256"


def test_a_first_key_is_not_staged_beside_a_signer_of_that_alg(tenant):
    with pytest.raises(ValidationError, match="signs with RS256 key .* already; rotate it"):
        keys.stage_first(tenant, "RS256")


# --- Isolation --------------------------------------------------------------------------------


def test_staging_and_switching_one_tenant_leaves_another_as_it_was(
    client, tenant, other_tenant, make_backend_client
):
    other_backend = make_backend_client(other_tenant)
    other_keys, other_jwks = stored_keys(other_tenant), served_jwks(client, "clinic-b")
    staged = stage_es256(tenant)
    age_key(tenant, staged, PUBLIC_DOCUMENT_MAX_AGE)
    service.set_access_token_alg(tenant, "ES256")
    db.session.commit()

    assert current_alg(other_tenant) == "RS256"
    assert stored_keys(other_tenant) == other_keys
    assert served_jwks(client, "clinic-b") == other_jwks
    header = verified_header(client, access_token(client, other_backend, "clinic-b"), "clinic-b")
    assert header["alg"] == "RS256"


def test_another_tenants_staged_key_does_not_let_this_one_switch(tenant, other_tenant):
    staged = stage_es256(tenant)
    age_key(tenant, staged, PUBLIC_DOCUMENT_MAX_AGE)

    change = service.set_access_token_alg(other_tenant, "ES256")
    db.session.commit()

    assert change.staged_key is not None and change.staged_key.kid != staged
    assert current_alg(other_tenant) == "RS256"
    assert keys.staged_key(tenant, "ES256").kid == staged


# --- The command ------------------------------------------------------------------------------


def test_cli_stages_first_and_says_when_to_switch(cli, client, tenant):
    result = cli.invoke(args=["tenant", "set-token-alg", "clinic-a", "ES256"])

    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed["access_token_alg"] == "RS256"
    assert printed["staged_access_token_alg"] == "ES256"
    staged = printed["staged_key"]
    assert (staged["alg"], staged["status"]) == ("ES256", "next")
    assert staged["kid"] in [key["kid"] for key in served_jwks(client)["keys"]]
    assert printed["switch_after"] in result.stderr
    (note,) = result.stderr.strip().splitlines()
    assert note.startswith("Nothing switched yet: access tokens stay RS256")
    assert "set-token-alg clinic-a ES256` again after" in note and "--now" in note
    assert current_alg(tenant) == "RS256"


def test_cli_refuses_to_switch_before_the_wait_and_switches_after_it(cli, client, tenant, backend):
    staged = run(cli, "tenant", "set-token-alg", "clinic-a", "ES256")["staged_key"]["kid"]

    line = refused(cli, "tenant", "set-token-alg", "clinic-a", "ES256")
    assert "access tokens stay RS256: run set-token-alg again in" in line
    assert current_alg(tenant) == "RS256"

    age_key(tenant, staged, PUBLIC_DOCUMENT_MAX_AGE)
    switched = run(cli, "tenant", "set-token-alg", "clinic-a", "ES256")
    assert switched["access_token_alg"] == "ES256" and "staged_key" not in switched
    header = verified_header(client, access_token(client, backend))
    assert (header["alg"], header["kid"]) == ("ES256", staged)


def test_cli_now_switches_at_once(cli, client, tenant, backend):
    result = cli.invoke(args=["tenant", "set-token-alg", "clinic-a", "ES256", "--now"])

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["access_token_alg"] == "ES256"
    assert result.stderr == ""
    assert jwt.get_unverified_header(access_token(client, backend))["alg"] == "ES256"


def test_cli_says_the_alg_in_use_is_set_already_and_changes_nothing(cli, tenant):
    run(cli, "tenant", "set-token-alg", "clinic-a", "ES256", "--now")
    before, after = stored_keys(tenant), last_audit_id()

    for now in ([], ["--now"]):
        shown, line = unchanged(cli, "tenant", "set-token-alg", "clinic-a", "ES256", *now)
        assert line == (
            "Tenant clinic-a signs its access tokens with ES256 already; nothing changed."
        )
        assert shown["access_token_alg"] == "ES256" and "staged_key" not in shown

    assert stored_keys(tenant) == before
    assert tenant_events(tenant, after) == []


def test_cli_refuses_the_alg_in_use_while_a_switch_is_staged_and_says_how_to_cancel_it(cli, tenant):
    staged = run(cli, "tenant", "set-token-alg", "clinic-a", "ES256")["staged_key"]["kid"]
    before = stored_keys(tenant)

    line = refused(cli, "tenant", "set-token-alg", "clinic-a", "RS256")

    assert line == f"Error: {staged_switch_refusal(staged)}"
    assert stored_keys(tenant) == before
    run(cli, "keys", "retire", "clinic-a", staged)
    shown, _ = unchanged(cli, "tenant", "set-token-alg", "clinic-a", "RS256")
    assert shown["access_token_alg"] == "RS256"


def test_cli_refuses_an_unknown_alg_in_one_line_and_changes_nothing(cli, tenant):
    before = stored_keys(tenant)

    line = refused(cli, "tenant", "set-token-alg", "clinic-a", "HS256")

    assert line == "Error: unsupported algorithm 'HS256'; use one of RS256, ES256"
    assert stored_keys(tenant) == before
    assert current_alg(tenant) == "RS256"


def test_cli_refuses_an_unknown_tenant_in_one_line(cli, tenant):
    assert refused(cli, "tenant", "set-token-alg", "nope", "ES256") == "Error: no tenant 'nope'"
