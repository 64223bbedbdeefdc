"""Accounts as an operator creates them with ``authserver user create``."""

import json
import logging

import pytest
from argon2 import PasswordHasher
from argon2.exceptions import VerifyMismatchError
from sqlalchemy import delete
from sqlalchemy import event
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from authserver.accounts import service
from authserver.accounts.models import Role
from authserver.accounts.models import User
from authserver.audit import service as audit_service
from authserver.audit.events import AuditEvent
from authserver.audit.models import AuditRecord
from authserver.errors import ValidationError
from authserver.extensions import db
from tests.fixtures.accounts import login
from tests.fixtures.commands import refused
from tests.fixtures.commands import run
from tests.fixtures.commands import unchanged

PASSWORD = "a sturdy passphrase"
CLINICAL_ROLES = {
    "physician",
    "nurse-practitioner",
    "nurse",
    "medical-assistant",
    "care-coordinator",
    "front-desk",
    "billing",
    "clinic-admin",
    "patient",
}


def create_user(cli, *args, password=PASSWORD):
    return run(cli, "user", "create", *args, "--password-stdin", input=password + "\n")


def stored_users():
    db.session.expire_all()
    return [
        (user.tenant_id, user.username, user.password_hash, user.fhir_user, tuple(user.role_names))
        for user in db.session.scalars(select(User).order_by(User.id))
    ]


def audit_count():
    return db.session.scalar(select(func.count()).select_from(AuditRecord))


def test_create_prints_the_new_account_and_not_its_password(cli, tenant):
    result = cli.invoke(
        args=[
            "user",
            "create",
            "clinic-a",
            "Dr.Smith",
            "--role",
            "physician",
            "--role",
            "clinic-admin",
            "--fhir-user",
            "Practitioner/abc-123",
            "--password-stdin",
        ],
        input=PASSWORD + "\n",
    )

    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output
    created = run(cli, "user", "list", "clinic-a")[0]
    assert created["username"] == "dr.smith"
    assert created["roles"] == ["clinic-admin", "physician"]
    assert created["fhir_user"] == "Practitioner/abc-123"
    assert isinstance(created["id"], int)
    assert PASSWORD not in str(run(cli, "user", "list", "clinic-a"))


def test_create_output_has_id_subject_username_roles_and_fhir_user(cli, tenant):
    created = create_user(cli, "clinic-a", "pat", "--role", "patient", "--fhir-user", "Patient/p1")

    assert created == {
        "id": created["id"],
        "subject": service.find_user(tenant, "pat").subject,
        "username": "pat",
        "roles": ["patient"],
        "fhir_user": "Patient/p1",
        "status": "active",
    }


def test_the_password_is_stored_as_an_argon2id_hash(cli, tenant):
    create_user(cli, "clinic-a", "alice", "--role", "nurse")

    user = service.find_user(tenant, "alice")

    assert user.password_hash.startswith("$argon2id$")
    assert PASSWORD not in user.password_hash
    assert PasswordHasher().verify(user.password_hash, PASSWORD)


def test_the_same_username_in_two_tenants_is_two_users_with_their_own_passwords(
    cli, tenant, other_tenant
):
    at_a = create_user(cli, "clinic-a", "alice", "--role", "nurse", password="password of A")
    at_b = create_user(cli, "clinic-b", "alice", "--role", "billing", password="password of B")

    assert at_a["id"] != at_b["id"]
    alice_a = service.find_user(tenant, "alice")
    alice_b = service.find_user(other_tenant, "alice")
    assert alice_a.role_names == ["nurse"]
    assert alice_b.role_names == ["billing"]
    assert service.authenticate(tenant, "alice", "password of A") == alice_a
    assert service.authenticate(tenant, "alice", "password of B") is None
    assert service.authenticate(other_tenant, "alice", "password of B") == alice_b
    with pytest.raises(VerifyMismatchError):
        PasswordHasher().verify(alice_b.password_hash, "password of A")


def test_a_subject_names_one_user_of_its_tenant(tenant, other_tenant, make_user):
    """``(tenant_id, subject)`` is unique: a tenant's apps key their accounts on ``sub``, so two
    users of one tenant never share one; another tenant's user may hold the same value."""
    alice, bob = make_user(tenant, "alice"), make_user(tenant, "bob")
    carol = make_user(other_tenant, "carol")
    carol.subject = alice.subject
    db.session.commit()
    bob_subject = bob.subject

    bob.subject = alice.subject
    with pytest.raises(IntegrityError):
        db.session.commit()
    db.session.rollback()

    assert service.find_user(tenant, "bob").subject == bob_subject
    assert service.find_user(other_tenant, "carol").subject == alice.subject


def test_each_tenant_starts_with_the_nine_clinical_roles(tenant, other_tenant):
    for clinic in (tenant, other_tenant):
        roles = service.list_roles(clinic)
        assert {role.name for role in roles} == CLINICAL_ROLES
        assert len(roles) == 9
        assert {role.tenant_id for role in roles} == {clinic.id}


# --- Refused input: non-zero exit, one line, nothing stored ----------------------------------


def assert_refused_and_nothing_stored(cli, *args, password=PASSWORD):
    before, audited = stored_users(), audit_count()

    message = refused(cli, "user", "create", "--password-stdin", *args, input=password + "\n")

    assert stored_users() == before
    assert audit_count() == audited
    if len(password.strip()) >= 4:
        assert password not in message
    return message


def test_an_unknown_role_is_refused_naming_the_tenants_roles(cli, tenant):
    message = assert_refused_and_nothing_stored(
        cli, "clinic-a", "alice", "--role", "nurse", "--role", "surgeon"
    )

    assert "unknown role surgeon" in message
    for role in CLINICAL_ROLES:
        assert role in message


def test_the_patient_role_beside_a_staff_role_is_refused_on_the_command_line(cli, tenant):
    message = assert_refused_and_nothing_stored(
        cli, "clinic-a", "alice", "--role", "patient", "--role", "physician"
    )

    assert "patient role cannot be combined with other roles" in message
    assert "separate staff login" in message


def test_a_duplicate_username_in_one_tenant_is_refused(cli, tenant):
    create_user(cli, "clinic-a", "alice", "--role", "nurse")

    message = assert_refused_and_nothing_stored(
        cli, "clinic-a", "Alice", "--role", "physician", password="a different password"
    )

    assert "user 'alice' already exists at tenant 'clinic-a'" in message
    assert service.authenticate(tenant, "alice", PASSWORD) is not None


def test_a_user_created_elsewhere_meanwhile_is_a_conflict_not_a_crash(cli, tenant):
    # Another instance creates the same username between this command's check and its insert.
    def create_it_elsewhere(session, context, instances):
        with db.engine.begin() as connection:
            connection.execute(
                User.__table__.insert().values(
                    tenant_id=tenant.id,
                    username="alice",
                    subject=service.new_subject(),
                    password_hash="made elsewhere",
                )
            )

    event.listen(db.session, "before_flush", create_it_elsewhere, once=True)
    audited = audit_count()
    try:
        message = refused(
            cli,
            "user",
            "create",
            "clinic-a",
            "alice",
            "--role",
            "nurse",
            "--password-stdin",
            input=PASSWORD + "\n",
        )
    finally:
        if event.contains(db.session, "before_flush", create_it_elsewhere):
            event.remove(db.session, "before_flush", create_it_elsewhere)

    assert "user 'alice' already exists at tenant 'clinic-a'" in message
    assert [user[1:3] for user in stored_users()] == [("alice", "made elsewhere")]
    assert audit_count() == audited


def test_a_role_removed_elsewhere_meanwhile_is_not_reported_as_a_taken_username(tenant):
    # Not a unique key taken elsewhere: flush_or_conflict must not call it "already exists".
    def remove_the_role_elsewhere(session, context, instances):
        with db.engine.begin() as connection:
            connection.execute(
                delete(Role.__table__).where(Role.tenant_id == tenant.id, Role.name == "nurse")
            )

    event.listen(db.session, "before_flush", remove_the_role_elsewhere, once=True)
    try:
        with pytest.raises(IntegrityError):
            service.create_user(tenant, "alice", PASSWORD, ["nurse"])
    finally:
        if event.contains(db.session, "before_flush", remove_the_role_elsewhere):
            event.remove(db.session, "before_flush", remove_the_role_elsewhere)

    assert stored_users() == []


@pytest.mark.parametrize(
    "fhir_user", ["Observation/1", "Patient/", "Patient", "patient/1", "Patient/1/_history/2"]
)
def test_a_bad_fhir_user_is_refused(cli, tenant, fhir_user):
    message = assert_refused_and_nothing_stored(
        cli, "clinic-a", "alice", "--role", "patient", "--fhir-user", fhir_user
    )

    assert f"invalid fhirUser '{fhir_user}'" in message


@pytest.mark.parametrize("password", ["short", "1234567", "        ", ""])
def test_a_password_that_is_too_short_is_refused(cli, tenant, password):
    message = assert_refused_and_nothing_stored(
        cli, "clinic-a", "alice", "--role", "nurse", password=password
    )

    assert "password must have at least 8 characters" in message


def test_a_password_that_is_too_long_is_refused(cli, tenant):
    message = assert_refused_and_nothing_stored(
        cli, "clinic-a", "alice", "--role", "nurse", password="p" * 1025
    )

    assert "password is longer than 1024 characters" in message


@pytest.mark.parametrize(
    "username", ["u" * 151, "", "-alice", "al ice", "alice/bob", "ålice"], ids=repr
)
def test_a_bad_username_is_refused(cli, tenant, username):
    message = assert_refused_and_nothing_stored(cli, "clinic-a", "--role", "nurse", "--", username)

    assert "invalid username" in message


def test_a_username_of_150_characters_is_accepted(cli, tenant):
    assert create_user(cli, "clinic-a", "u" * 150, "--role", "nurse")["username"] == "u" * 150


def test_a_user_without_a_role_is_refused(cli, tenant):
    before = stored_users()

    result = cli.invoke(
        args=["user", "create", "clinic-a", "alice", "--password-stdin"], input=PASSWORD + "\n"
    )

    assert result.exit_code != 0
    assert "Missing option '--role'" in result.stderr
    assert stored_users() == before


def test_a_user_at_an_unknown_tenant_is_refused(cli, tenant):
    message = assert_refused_and_nothing_stored(cli, "nope", "alice", "--role", "nurse")

    assert "no tenant 'nope'" in message


def test_disable_and_enable_print_the_user_and_audit_each_change(cli, tenant):
    create_user(cli, "clinic-a", "Rosa", "--role", "nurse")

    disabled = run(cli, "user", "disable", "clinic-a", "ROSA")
    enabled = run(cli, "user", "enable", "clinic-a", "rosa")

    assert (disabled["username"], disabled["status"]) == ("rosa", "disabled")
    assert (enabled["username"], enabled["status"]) == ("rosa", "active")
    records = audit_service.recent(tenant, limit=2)
    assert [(record.event, record.subject) for record in records] == [
        ("user:disabled", "rosa"),
        ("user:enabled", "rosa"),
    ]


@pytest.mark.parametrize(("command", "status"), [("disable", "disabled"), ("enable", "active")])
def test_a_status_the_user_already_has_is_said_and_not_audited_again(cli, tenant, command, status):
    create_user(cli, "clinic-a", "Rosa", "--role", "nurse")
    if command == "disable":
        run(cli, "user", "disable", "clinic-a", "rosa")
    audited, before = audit_count(), stored_users()

    shown, line = unchanged(cli, "user", command, "clinic-a", "ROSA")

    assert line == f"User rosa of tenant clinic-a is already {command}d; nothing changed."
    assert (shown["username"], shown["status"]) == ("rosa", status)
    assert (audit_count(), stored_users()) == (audited, before)


def test_disabling_an_unknown_user_is_refused(cli, tenant):
    audited = audit_count()

    assert "no user 'nobody' at tenant 'clinic-a'" in refused(
        cli, "user", "disable", "clinic-a", "Nobody"
    )
    assert audit_count() == audited


def test_a_password_change_is_audited_naming_the_user_and_who_changed_it(tenant, make_user, caplog):
    user = make_user(tenant, "rosa")
    caplog.set_level(logging.INFO, logger="authserver.audit")

    service.set_password(tenant, user, "a new sturdy passphrase", actor="cli")
    db.session.commit()

    (record,) = audit_service.recent(tenant, limit=1, event=AuditEvent.USER_PASSWORD_CHANGED)
    assert (record.subject, record.actor) == ("rosa", "cli")
    shown = str(record.describe()) + caplog.text
    assert "a new sturdy passphrase" not in shown
    assert user.password_hash not in shown
    assert "user:password-changed tenant=clinic-a actor=cli subject=rosa" in caplog.text
    assert service.authenticate(tenant, "rosa", "a new sturdy passphrase") == user


def test_a_refused_password_change_changes_nothing_and_is_not_audited(tenant, make_user):
    user = make_user(tenant, "rosa")
    audited, before = audit_count(), stored_users()

    with pytest.raises(ValidationError, match="at least 8 characters"):
        service.set_password(tenant, user, "short", actor="cli")
    db.session.rollback()

    assert (audit_count(), stored_users()) == (audited, before)


# --- user set-roles ---------------------------------------------------------------------------


def role_options(*roles):
    return [option for role in roles for option in ("--role", role)]


def test_set_roles_replaces_the_roles_prints_the_user_and_audits_before_and_after(cli, tenant):
    create_user(cli, "clinic-a", "Rosa", "--role", "physician", "--role", "clinic-admin")

    shown = run(
        cli, "user", "set-roles", "clinic-a", "ROSA", "--role", "nurse", "--role", "front-desk"
    )

    assert shown == run(cli, "user", "list", "clinic-a")[0]
    assert shown["roles"] == ["front-desk", "nurse"]
    assert service.find_user(tenant, "rosa").role_names == ["front-desk", "nurse"]
    (record,) = audit_service.recent(tenant, limit=1, subject="Rosa")
    assert (record.event, record.actor, record.subject) == ("user:roles-changed", "cli", "rosa")
    assert record.details == {
        "before": ["clinic-admin", "physician"],
        "after": ["front-desk", "nurse"],
    }


def test_set_roles_with_the_roles_held_already_is_said_and_not_audited(cli, tenant):
    create_user(cli, "clinic-a", "rosa", "--role", "nurse", "--role", "billing")
    audited, before = audit_count(), stored_users()

    again = role_options("nurse", "billing", "nurse")

    shown, line = unchanged(cli, "user", "set-roles", "clinic-a", "rosa", *again)

    assert line == (
        "User rosa of tenant clinic-a already has roles billing, nurse; nothing changed."
    )
    assert shown["roles"] == ["billing", "nurse"]
    assert (audit_count(), stored_users()) == (audited, before)


@pytest.mark.parametrize(
    ("roles", "message"),
    [
        (["nurse", "surgeon"], "unknown role surgeon"),
        (["patient", "physician"], "patient role cannot be combined with other roles"),
    ],
)
def test_set_roles_refuses_a_set_a_login_cannot_hold_and_changes_nothing(
    cli, tenant, roles, message
):
    create_user(cli, "clinic-a", "rosa", "--role", "nurse")
    audited, before = audit_count(), stored_users()
    options = role_options(*roles)

    assert message in refused(cli, "user", "set-roles", "clinic-a", "rosa", *options)
    assert (audit_count(), stored_users()) == (audited, before)


def test_set_roles_of_a_user_the_tenant_does_not_have_is_refused(cli, tenant, other_tenant):
    create_user(cli, "clinic-b", "rosa", "--role", "nurse")
    audited, before = audit_count(), stored_users()

    message = refused(cli, "user", "set-roles", "clinic-a", "rosa", "--role", "physician")

    assert message == "Error: no user 'rosa' at tenant 'clinic-a'"
    assert (audit_count(), stored_users()) == (audited, before)


# --- user set-password ------------------------------------------------------------------------

NEW_PASSWORD = "a new sturdy passphrase"


def test_set_password_signs_the_user_out_and_prints_the_user_not_the_password(cli, client, tenant):
    create_user(cli, "clinic-a", "rosa", "--role", "nurse")
    login(client, "clinic-a", "rosa", PASSWORD)
    assert client.get("/t/clinic-a/").status_code == 200

    result = cli.invoke(
        args=["user", "set-password", "clinic-a", "Rosa", "--password-stdin"],
        input=NEW_PASSWORD + "\n",
    )

    assert result.exit_code == 0, result.output
    assert NEW_PASSWORD not in result.output
    shown = json.loads(result.stdout)
    assert shown == {**run(cli, "user", "list", "clinic-a")[0], "sessions_ended": 1}
    assert client.get("/t/clinic-a/").status_code == 302
    assert service.authenticate(tenant, "rosa", PASSWORD) is None
    assert service.authenticate(tenant, "rosa", NEW_PASSWORD).username == "rosa"
    (record,) = audit_service.recent(tenant, limit=1, event=AuditEvent.USER_PASSWORD_CHANGED)
    assert (record.actor, record.subject, record.details) == ("cli", "rosa", {"sessions_ended": 1})


def test_set_password_says_how_to_revoke_the_tokens_too(cli, tenant):
    result = cli.invoke(args=["user", "set-password", "--help"])

    assert result.exit_code == 0
    assert "authserver token revoke --tenant TENANT --user USERNAME" in result.output


@pytest.mark.parametrize(
    ("slug", "username", "password", "message"),
    [
        ("clinic-a", "rosa", "short", "password must have at least 8 characters"),
        ("clinic-a", "rosa", "p" * 1025, "password is longer than 1024 characters"),
        ("clinic-a", "nobody", NEW_PASSWORD, "no user 'nobody' at tenant 'clinic-a'"),
        ("clinic-b", "rosa", NEW_PASSWORD, "no user 'rosa' at tenant 'clinic-b'"),
    ],
    ids=["too-short", "too-long", "unknown-user", "another-tenants-user"],
)
def test_set_password_refuses_in_one_line_and_changes_nothing(
    cli, client, tenant, other_tenant, slug, username, password, message
):
    create_user(cli, "clinic-a", "rosa", "--role", "nurse")
    login(client, "clinic-a", "rosa", PASSWORD)
    audited, before = audit_count(), stored_users()

    line = refused(
        cli, "user", "set-password", slug, username, "--password-stdin", input=password + "\n"
    )

    assert message in line
    assert password not in line
    assert (audit_count(), stored_users()) == (audited, before)
    assert client.get("/t/clinic-a/").status_code == 200
