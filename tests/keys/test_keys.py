"""A tenant's signing keys as a relying party sees them (the JWKS) and as they rest in the DB."""

import base64
import re
from contextlib import contextmanager

import jwt
import pytest
from sqlalchemy import event
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from authserver.audit.models import AuditRecord
from authserver.errors import NotFound
from authserver.errors import ValidationError
from authserver.extensions import db
from authserver.keys import crypto
from authserver.keys import service
from authserver.keys.crypto import KeyDecryptionError
from authserver.keys.models import SigningKey
from authserver.tenancy.models import Tenant
from authserver.web import PUBLIC_DOCUMENT_MAX_AGE
from tests.fixtures.commands import refused
from tests.fixtures.commands import run
from tests.fixtures.commands import unchanged
from tests.fixtures.keys import age_key

PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi"}
OTHER_KEK = base64.b64encode(b"x" * 32).decode()


def served_jwks(client, slug="clinic-a"):
    response = client.get(f"/t/{slug}/.well-known/jwks.json")
    assert response.status_code == 200
    return response.json


def served_kids(client, slug="clinic-a"):
    return [key["kid"] for key in served_jwks(client, slug)["keys"]]


def verify(client, token, slug="clinic-a"):
    """Verify ``token`` as a relying party would: against the JWKS served now, key by ``kid``.

    :raises KeyError: when the JWKS no longer holds the token's key.
    """
    key_set = jwt.PyJWKSet.from_dict(served_jwks(client, slug))
    header = jwt.get_unverified_header(token)
    key = key_set[header["kid"]]
    return jwt.decode(token, key.key, algorithms=[header["alg"]], issuer=issuer(slug))


def issuer(slug="clinic-a"):
    return f"https://auth.example.test/t/{slug}"


def sign(tenant, alg="RS256"):
    return service.sign(tenant, {"iss": issuer(tenant.slug), "sub": "someone"}, alg=alg)


def stored_keys(tenant):
    db.session.expire_all()
    return [key.describe() for key in db.session.scalars(SigningKey.for_tenant(tenant))]


# --- The JWKS ---------------------------------------------------------------------------------


def test_a_new_tenant_publishes_one_rs256_signing_key(client, tenant):
    (key,) = served_jwks(client)["keys"]

    assert key["kty"] == "RSA"
    assert key["alg"] == "RS256"
    assert key["use"] == "sig"
    assert key["kid"]
    modulus = int.from_bytes(base64.urlsafe_b64decode(key["n"] + "=" * (-len(key["n"]) % 4)))
    assert modulus.bit_length() >= 2048
    assert not PRIVATE_MEMBERS & set(key)
    assert jwt.PyJWK(key).key_type == "RSA"


def test_posting_to_the_jwks_is_not_allowed_and_says_what_is(client, tenant):
    response = client.post("/t/clinic-a/.well-known/jwks.json")

    assert response.status_code == 405
    assert response.json["error"] == "method_not_allowed"
    assert "GET" in response.allow  # RFC 9110 §15.5.6: a 405 names the allowed methods
    assert "POST" not in response.allow


def test_a_token_signed_by_the_tenant_verifies_against_its_jwks(client, tenant):
    token = sign(tenant)

    assert jwt.get_unverified_header(token)["kid"] == served_kids(client)[0]
    assert verify(client, token)["sub"] == "someone"


def test_the_private_key_is_encrypted_at_rest(app, tenant):
    key = db.session.scalar(SigningKey.for_tenant(tenant))

    assert b"-----BEGIN" not in key.private_key_ciphertext
    assert b"PRIVATE KEY" not in key.private_key_ciphertext
    opened = crypto.decrypt_private_key(
        key.private_key_ciphertext,
        app.config["AUTHSERVER_KEY_ENCRYPTION_KEYS"],
        key.associated_data,
    )
    assert opened.public_key().public_numbers().n == int.from_bytes(
        base64.urlsafe_b64decode(key.public_jwk["n"] + "=" * (-len(key.public_jwk["n"]) % 4))
    )


def test_a_stored_rsa_key_is_opened_without_testing_its_primes_again(app, tenant, monkeypatch):
    """OpenSSL's RSA consistency check costs about 45 ms a key, which each worker would pay for
    each tenant it signs for (thousands after a restart); the GCM tag already proves the PEM is
    the key the server generated, for this tenant and kid."""
    loaded = []
    load = crypto.serialization.load_pem_private_key

    def spy(pem, password, **options):
        loaded.append(options)
        return load(pem, password, **options)

    monkeypatch.setattr(crypto.serialization, "load_pem_private_key", spy)
    key = db.session.scalar(SigningKey.for_tenant(tenant))
    keks = app.config["AUTHSERVER_KEY_ENCRYPTION_KEYS"]

    opened = crypto.decrypt_private_key(key.private_key_ciphertext, keks, key.associated_data)

    assert loaded == [{"unsafe_skip_rsa_key_validation": True}]
    token = jwt.encode({"sub": "someone"}, opened, algorithm="RS256")
    assert jwt.decode(token, jwt.PyJWK(key.public_jwk).key, algorithms=["RS256"])


def test_another_kek_cannot_open_the_private_key(tenant, make_app):
    other = make_app(AUTHSERVER_KEY_ENCRYPTION_KEY=OTHER_KEK)
    with other.app_context():
        same_tenant = db.session.scalar(select(Tenant).where(Tenant.slug == "clinic-a"))
        with pytest.raises(KeyDecryptionError):
            sign(same_tenant)


def test_a_kek_rotation_keeps_old_keys_readable(tenant, make_app, app):
    old_kek = app.config["AUTHSERVER_KEY_ENCRYPTION_KEY"]
    rotated = make_app(AUTHSERVER_KEY_ENCRYPTION_KEY=f"{OTHER_KEK},{old_kek}")
    with rotated.app_context():
        same_tenant = db.session.scalar(select(Tenant).where(Tenant.slug == "clinic-a"))
        assert sign(same_tenant)


def test_a_ciphertext_copied_to_another_tenants_row_does_not_decrypt(app, tenant, other_tenant):
    stolen = db.session.scalar(SigningKey.for_tenant(tenant)).private_key_ciphertext
    victim = db.session.scalar(SigningKey.for_tenant(other_tenant))
    victim.private_key_ciphertext = stolen
    db.session.commit()

    with pytest.raises(KeyDecryptionError):
        sign(other_tenant)
    with pytest.raises(KeyDecryptionError):
        crypto.decrypt_private_key(
            stolen, app.config["AUTHSERVER_KEY_ENCRYPTION_KEYS"], victim.associated_data
        )


# --- Staging and rotation ---------------------------------------------------------------------


def header_kid(token):
    return jwt.get_unverified_header(token)["kid"]


def statuses(cli, slug="clinic-a"):
    """The tenant's keys as ``keys list`` shows them: (kid, status), oldest first."""
    return [(key["kid"], key["status"]) for key in run(cli, "keys", "list", slug)]


def key_events(tenant, after):
    """The tenant's key:* audit records written after record ``after``, as (event, actor,
    subject, details)."""
    db.session.expire_all()
    query = (
        select(AuditRecord)
        .where(
            AuditRecord.tenant_id == tenant.id,
            AuditRecord.event.like("key:%"),
            AuditRecord.id > after,
        )
        .order_by(AuditRecord.id)
    )
    return [
        (record.event, record.actor, record.subject, record.details)
        for record in db.session.scalars(query)
    ]


def last_audit_id():
    return db.session.scalar(select(func.max(AuditRecord.id)))


def test_a_staged_key_is_in_the_jwks_before_it_signs(cli, client, tenant):
    (signer,) = served_kids(client)

    staged = run(cli, "keys", "stage", "clinic-a")

    assert staged["status"] == "next" and staged["alg"] == "RS256"
    assert served_kids(client) == [signer, staged["kid"]]
    (published,) = [key for key in served_jwks(client)["keys"] if key["kid"] == staged["kid"]]
    assert published["use"] == "sig" and not PRIVATE_MEMBERS & set(published)
    token = sign(tenant)
    assert header_kid(token) == signer
    assert verify(client, token)["sub"] == "someone"


def test_rotating_before_the_jwks_cache_lifetime_is_refused_and_changes_nothing(
    cli, client, tenant
):
    (signer,) = served_kids(client)
    staged = run(cli, "keys", "stage", "clinic-a")["kid"]
    age_key(tenant, staged, PUBLIC_DOCUMENT_MAX_AGE - 60)
    before, jwks_before = stored_keys(tenant), served_kids(client)

    message = refused(cli, "keys", "rotate", "clinic-a")

    assert f"RS256 key {staged!r} was staged" in message
    assert 240 <= int(re.search(r"was staged (\d+) s ago", message)[1]) <= 245
    assert f"verifiers may cache the JWKS for {PUBLIC_DOCUMENT_MAX_AGE} s" in message
    assert 55 <= int(re.search(r"rotate again in (\d+) s", message)[1]) <= 60
    assert "--now" in message
    assert stored_keys(tenant) == before
    assert served_kids(client) == jwks_before
    assert header_kid(sign(tenant)) == signer


def test_rotating_without_a_staged_key_is_refused_and_says_to_stage_one(cli, client, tenant):
    before = stored_keys(tenant)

    message = refused(cli, "keys", "rotate", "clinic-a")

    assert "tenant 'clinic-a' has no staged RS256 key: stage one (keys stage)" in message
    assert "--now" in message
    assert stored_keys(tenant) == before


def test_rotation_after_the_cache_lifetime_signs_with_the_staged_key_and_stages_the_next(
    cli, client, tenant
):
    (old_kid,) = served_kids(client)
    old_token = sign(tenant)
    staged = run(cli, "keys", "stage", "clinic-a")["kid"]
    age_key(tenant, staged, PUBLIC_DOCUMENT_MAX_AGE)

    rotated = run(cli, "keys", "rotate", "clinic-a")

    assert rotated["kid"] == staged and rotated["status"] == "active"
    (successor,) = [kid for kid, status in statuses(cli) if status == "next"]
    assert statuses(cli) == [(old_kid, "published"), (staged, "active"), (successor, "next")]
    assert served_kids(client) == [staged, successor, old_kid]
    new_token = sign(tenant)
    assert header_kid(new_token) == staged
    assert verify(client, new_token)["sub"] == "someone"
    assert verify(client, old_token)["sub"] == "someone"
    # The successor was staged just now: the next rotation waits for it in turn.
    assert "rotate again in" in refused(cli, "keys", "rotate", "clinic-a")


def test_rotate_now_without_a_staged_key_switches_at_once_and_stages_the_next(cli, client, tenant):
    (old_kid,) = served_kids(client)
    old_token = sign(tenant)

    rotated = run(cli, "keys", "rotate", "clinic-a", "--now")

    new_kid = rotated["kid"]
    assert new_kid != old_kid and rotated["status"] == "active"
    (successor,) = [kid for kid, status in statuses(cli) if status == "next"]
    assert statuses(cli) == [(old_kid, "published"), (new_kid, "active"), (successor, "next")]
    assert served_kids(client) == [new_kid, successor, old_kid]
    assert header_kid(sign(tenant)) == new_kid
    assert verify(client, sign(tenant))["sub"] == "someone"
    assert verify(client, old_token)["sub"] == "someone"


def test_rotate_now_promotes_a_young_staged_key_instead_of_making_another(cli, client, tenant):
    (old_kid,) = served_kids(client)
    staged = run(cli, "keys", "stage", "clinic-a")["kid"]

    rotated = run(cli, "keys", "rotate", "clinic-a", "--now")

    assert rotated["kid"] == staged
    (successor,) = [kid for kid, status in statuses(cli) if status == "next"]
    assert statuses(cli) == [(old_kid, "published"), (staged, "active"), (successor, "next")]
    assert header_kid(sign(tenant)) == staged


def test_staging_and_rotation_are_audited_with_the_old_and_new_kid(cli, client, tenant):
    (old_kid,) = served_kids(client)
    after = last_audit_id()
    staged = run(cli, "keys", "stage", "clinic-a")["kid"]
    age_key(tenant, staged, PUBLIC_DOCUMENT_MAX_AGE)
    run(cli, "keys", "rotate", "clinic-a")
    successor = run(cli, "keys", "list", "clinic-a")[-1]["kid"]
    forced = run(cli, "keys", "rotate", "clinic-a", "--now")["kid"]
    (last,) = [kid for kid, status in statuses(cli) if status == "next"]

    rotation = {"alg": "RS256", "previous_kid": old_kid, "at_once": False}
    forced_rotation = {"alg": "RS256", "previous_kid": staged, "at_once": True}
    assert forced == successor
    assert key_events(tenant, after) == [
        ("key:staged", "cli", staged, {"alg": "RS256"}),
        ("key:rotated", "cli", staged, rotation),
        ("key:staged", "cli", successor, {"alg": "RS256"}),
        ("key:rotated", "cli", successor, forced_rotation),
        ("key:staged", "cli", last, {"alg": "RS256"}),
    ]


def test_a_rotation_without_a_staged_key_is_audited_with_the_old_and_new_kid(cli, client, tenant):
    (old_kid,) = served_kids(client)
    after = last_audit_id()

    new_kid = run(cli, "keys", "rotate", "clinic-a", "--now")["kid"]

    (successor,) = [kid for kid, status in statuses(cli) if status == "next"]
    rotation = {"alg": "RS256", "previous_kid": old_kid, "at_once": True}
    assert key_events(tenant, after) == [
        ("key:rotated", "cli", new_kid, rotation),
        ("key:staged", "cli", successor, {"alg": "RS256"}),
    ]


def test_staging_twice_is_refused_and_changes_nothing(cli, client, tenant):
    staged = run(cli, "keys", "stage", "clinic-a")["kid"]
    before = stored_keys(tenant)

    message = refused(cli, "keys", "stage", "clinic-a")

    assert f"RS256 key {staged!r} is staged already" in message
    assert stored_keys(tenant) == before


def test_staging_for_an_alg_without_an_active_key_is_refused(cli, client, tenant):
    before = stored_keys(tenant)

    message = refused(cli, "keys", "stage", "clinic-a", "--alg", "ES256")

    assert "tenant 'clinic-a' has no active ES256 key for a staged key to succeed" in message
    assert stored_keys(tenant) == before


def test_each_alg_has_its_own_staged_key(cli, client, tenant):
    run(cli, "keys", "rotate", "clinic-a", "--alg", "ES256", "--now")
    staged_rs256 = run(cli, "keys", "stage", "clinic-a")

    assert staged_rs256["alg"] == "RS256" and staged_rs256["status"] == "next"
    assert sorted(key["alg"] for key in run(cli, "keys", "list", "clinic-a")) == [
        "ES256",
        "ES256",
        "RS256",
        "RS256",
    ]


def test_a_staging_racing_another_is_a_conflict_and_one_key_stays_staged(cli, tenant, monkeypatch):
    run(cli, "keys", "stage", "clinic-a")
    before = stored_keys(tenant)
    # This staging looked for a staged key before another one committed its own.
    monkeypatch.setattr(service, "staged_key", lambda tenant, alg: None)

    line = refused(cli, "keys", "stage", "clinic-a")

    assert "another RS256 key was staged for tenant 'clinic-a' at the same time" in line
    assert stored_keys(tenant) == before


def test_a_staged_key_can_be_retired_and_leaves_the_jwks(cli, client, tenant):
    (signer,) = served_kids(client)
    staged = run(cli, "keys", "stage", "clinic-a")["kid"]

    retired = run(cli, "keys", "retire", "clinic-a", staged)

    assert retired["status"] == "retired"
    assert served_kids(client) == [signer]
    assert "no staged RS256 key" in refused(cli, "keys", "rotate", "clinic-a")
    assert run(cli, "keys", "stage", "clinic-a")["status"] == "next"


def test_the_jwks_lists_signers_then_staged_keys_then_published_ones(cli, client, tenant):
    run(cli, "keys", "rotate", "clinic-a", "--alg", "ES256", "--now")
    run(cli, "keys", "rotate", "clinic-a", "--now")
    status = dict(statuses(cli))

    served = [
        (status[kid], key["alg"])
        for kid, key in zip(served_kids(client), served_jwks(client)["keys"], strict=True)
    ]

    assert served == [
        ("active", "RS256"),
        ("active", "ES256"),
        ("next", "RS256"),
        ("next", "ES256"),
        ("published", "RS256"),
    ]


# --- Retirement -------------------------------------------------------------------------------


def test_a_retired_key_leaves_the_jwks_and_its_tokens_stop_verifying(cli, client, tenant):
    (old_kid,) = served_kids(client)
    old_token = sign(tenant)
    run(cli, "keys", "rotate", "clinic-a", "--now")

    retired = run(cli, "keys", "retire", "clinic-a", old_kid)

    assert retired["status"] == "retired"
    assert retired["retired_at"]
    assert old_kid not in served_kids(client)
    with pytest.raises(KeyError):
        verify(client, old_token)
    assert verify(client, sign(tenant))["sub"] == "someone"


def test_retiring_the_active_key_is_refused_and_changes_nothing(cli, client, tenant):
    (active_kid,) = served_kids(client)
    before = stored_keys(tenant)

    message = refused(cli, "keys", "retire", "clinic-a", active_kid)

    assert "is the active signer; rotate before retiring it" in message
    assert stored_keys(tenant) == before
    assert served_kids(client) == [active_kid]


def test_retiring_an_unknown_kid_is_refused_and_changes_nothing(cli, tenant):
    run(cli, "keys", "rotate", "clinic-a", "--now")
    before = stored_keys(tenant)

    message = refused(cli, "keys", "retire", "clinic-a", "no-such-kid")

    assert "tenant 'clinic-a' has no key 'no-such-kid'" in message
    assert stored_keys(tenant) == before


def test_retiring_a_retired_key_again_changes_and_audits_nothing_and_says_so(cli, client, tenant):
    (old_kid,) = served_kids(client)
    run(cli, "keys", "rotate", "clinic-a", "--now")
    retired = run(cli, "keys", "retire", "clinic-a", old_kid)
    before, after = stored_keys(tenant), last_audit_id()

    shown, line = unchanged(cli, "keys", "retire", "clinic-a", old_kid)

    assert line == f"Key {old_kid} of tenant clinic-a is already retired; nothing changed."
    assert shown == retired  # as it is, retired when it first was
    assert stored_keys(tenant) == before
    assert last_audit_id() == after
    assert old_kid not in served_kids(client)


def test_the_service_retires_a_key_once(tenant):
    old_kid = service.list_keys(tenant)[0].kid
    service.rotate(tenant, now=True)
    after = last_audit_id()

    first = service.retire(tenant, old_kid, actor="ops")
    again = service.retire(tenant, old_kid, actor="ops")

    assert (first.changed, again.changed) == (True, False)
    assert again.row is first.row and again.row.status == "retired"
    assert key_events(tenant, after) == [("key:retired", "ops", old_kid, {})]


def test_the_service_still_refuses_the_active_signer_and_an_unknown_kid(tenant):
    (signer,) = active_kids(tenant)

    with pytest.raises(ValidationError, match="is the active signer; rotate before retiring it"):
        service.retire(tenant, signer)
    with pytest.raises(NotFound, match="tenant 'clinic-a' has no key 'no-such-kid'"):
        service.retire(tenant, "no-such-kid")
    assert active_kids(tenant) == [signer]


def test_retiring_another_tenants_kid_is_refused_and_changes_nothing(
    cli, client, tenant, other_tenant
):
    (other_old_kid,) = served_kids(client, "clinic-b")
    run(cli, "keys", "rotate", "clinic-b", "--now")
    run(cli, "keys", "rotate", "clinic-a", "--now")
    before = stored_keys(tenant), stored_keys(other_tenant)

    message = refused(cli, "keys", "retire", "clinic-a", other_old_kid)

    assert "tenant 'clinic-a' has no key" in message
    assert (stored_keys(tenant), stored_keys(other_tenant)) == before
    assert other_old_kid in served_kids(client, "clinic-b")


def active_kids(tenant):
    db.session.expire_all()
    query = select(SigningKey.kid).where(
        SigningKey.tenant_id == tenant.id, SigningKey.status == "active"
    )
    return list(db.session.scalars(query))


def test_a_rotation_racing_another_is_refused_and_one_signer_stays(cli, tenant, monkeypatch):
    signer = active_kids(tenant)
    # This rotation read the tenant's signers before another one committed its new key.
    monkeypatch.setattr(service, "_active", lambda tenant, alg: None)

    line = refused(cli, "keys", "rotate", "clinic-a", "--now")

    assert "at the same time" in line
    assert active_kids(tenant) == signer


@contextmanager
def elsewhere_before_its_first_key_write(change):
    """Run ``change(connection)`` in another transaction, committed just before the command's
    first UPDATE of a signing key: another operator's command that read the keys after this
    one did."""
    done = []

    def run_it(connection, cursor, statement, parameters, context, executemany):
        if done or not statement.lstrip().upper().startswith("UPDATE SIGNING_KEYS"):
            return
        done.append(True)
        with db.engine.begin() as elsewhere:
            change(elsewhere)

    event.listen(db.engine, "before_cursor_execute", run_it)
    try:
        yield
    finally:
        event.remove(db.engine, "before_cursor_execute", run_it)
    assert done, "the command wrote no key"


def set_status(connection, kid, status):
    connection.execute(
        update(SigningKey.__table__).where(SigningKey.kid == kid).values(status=status)
    )


def test_a_retirement_racing_a_rotation_to_that_key_is_refused_and_a_signer_stays(
    cli, client, tenant
):
    (signer,) = active_kids(tenant)
    staged = run(cli, "keys", "stage", "clinic-a")["kid"]

    def rotate_to_it(connection):
        set_status(connection, signer, "published")
        set_status(connection, staged, "active")

    with elsewhere_before_its_first_key_write(rotate_to_it):
        line = refused(cli, "keys", "retire", "clinic-a", staged)

    assert "at the same time" in line
    assert active_kids(tenant) == [staged]
    assert header_kid(sign(tenant)) == staged


def test_a_rotation_racing_the_retirement_of_its_staged_key_is_refused_and_the_signer_stays(
    cli, client, tenant
):
    (signer,) = active_kids(tenant)
    staged = run(cli, "keys", "stage", "clinic-a")["kid"]

    def retire_it(connection):
        set_status(connection, staged, "retired")

    with elsewhere_before_its_first_key_write(retire_it):
        line = refused(cli, "keys", "rotate", "clinic-a", "--now")

    assert "at the same time" in line
    assert active_kids(tenant) == [signer]
    assert (staged, "retired") in statuses(cli)
    assert staged not in served_kids(client)


def add_key(tenant, status):
    generated = crypto.generate("RS256")
    db.session.add(
        SigningKey(
            tenant_id=tenant.id,
            kid=generated.kid,
            alg="RS256",
            status=status,
            public_jwk=generated.public_jwk,
            private_key_ciphertext=b"x",
        )
    )


@pytest.mark.parametrize("status", ["active", "next"])
def test_the_database_refuses_a_second_active_or_next_key_for_one_alg(tenant, status):
    service.stage(tenant)
    db.session.commit()
    add_key(tenant, status)

    with pytest.raises(IntegrityError):
        db.session.flush()
    db.session.rollback()


def test_rotate_now_es256_adds_an_es256_signer_beside_the_rs256_one(cli, client, tenant):
    (rs256_kid,) = served_kids(client)

    rotated = run(cli, "keys", "rotate", "clinic-a", "--alg", "ES256", "--now")

    assert rotated["alg"] == "ES256" and rotated["status"] == "active"
    keys = {(key["alg"], key["kid"]): key for key in served_jwks(client)["keys"]}
    assert sorted(alg for alg, _ in keys) == ["ES256", "ES256", "RS256"]
    assert ("RS256", rs256_kid) in keys
    es256 = keys["ES256", rotated["kid"]]
    assert es256 == {**es256, "kty": "EC", "crv": "P-256", "use": "sig"}
    assert not PRIVATE_MEMBERS & set(es256)
    listed = {(key["alg"], key["status"]) for key in run(cli, "keys", "list", "clinic-a")}
    assert listed == {("RS256", "active"), ("ES256", "active"), ("ES256", "next")}
    assert header_kid(sign(tenant, "ES256")) == rotated["kid"]
    assert verify(client, sign(tenant, "ES256"))["sub"] == "someone"
    assert header_kid(sign(tenant)) == rs256_kid


@pytest.mark.parametrize("command", ["rotate", "stage"])
def test_an_unsupported_algorithm_is_refused(cli, tenant, command):
    before = stored_keys(tenant)

    result = cli.invoke(args=["keys", command, "clinic-a", "--alg", "HS256"])

    assert result.exit_code != 0
    assert "Invalid value for '--alg': 'HS256' is not one of" in result.stderr
    assert stored_keys(tenant) == before


def test_keys_list_shows_each_key_with_its_status_oldest_first(cli, client, tenant):
    (first_kid,) = served_kids(client)
    second_kid = run(cli, "keys", "rotate", "clinic-a", "--now")["kid"]
    third_kid = run(cli, "keys", "rotate", "clinic-a", "--now")["kid"]
    run(cli, "keys", "retire", "clinic-a", first_kid)

    listed = run(cli, "keys", "list", "clinic-a")

    assert [(key["kid"], key["status"]) for key in listed[:3]] == [
        (first_kid, "retired"),
        (second_kid, "published"),
        (third_kid, "active"),
    ]
    assert listed[3]["status"] == "next"
    assert all(key["alg"] == "RS256" and key["created_at"] for key in listed)
    assert all(not PRIVATE_MEMBERS & set(key) for key in listed)
    assert "private_key_ciphertext" not in str(listed)


def test_keys_list_of_an_unknown_tenant_is_refused(cli, tenant):
    assert "no tenant 'nope'" in refused(cli, "keys", "list", "nope")


# --- Isolation --------------------------------------------------------------------------------


def test_a_tenants_jwks_holds_none_of_another_tenants_keys(cli, client, tenant, other_tenant):
    run(cli, "keys", "rotate", "clinic-b", "--now")
    run(cli, "keys", "rotate", "clinic-b", "--alg", "ES256", "--now")

    own = set(served_kids(client, "clinic-a"))
    others = set(served_kids(client, "clinic-b"))

    assert len(own) == 1
    assert len(others) == 5
    assert not own & others


def test_a_token_of_one_tenant_does_not_verify_against_another_tenants_jwks(
    client, tenant, other_tenant
):
    token = sign(tenant)

    with pytest.raises(KeyError):
        verify(client, token, "clinic-b")


def test_a_kid_that_starts_with_a_dash_can_be_retired(cli, tenant, monkeypatch):
    """base64url thumbprints start with "-" one time in 64; the CLI must not read an option."""
    from authserver.keys import crypto

    real_generate = crypto.generate

    def dash_kid(alg):
        generated = real_generate(alg)
        kid = "-" + generated.kid[1:]
        return crypto.GeneratedKey(
            kid, alg, {**generated.public_jwk, "kid": kid}, generated.private_pem
        )

    monkeypatch.setattr(crypto, "generate", dash_kid)
    old_kid = run(cli, "keys", "rotate", "clinic-a", "--now")["kid"]
    run(cli, "keys", "rotate", "clinic-a", "--now")

    retired = run(cli, "keys", "retire", "clinic-a", old_kid)

    assert old_kid.startswith("-")
    assert retired["kid"] == old_kid and retired["status"] == "retired"
