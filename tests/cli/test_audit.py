"""``authserver audit list``: an operator reads one tenant's audit log, and only that one."""

import logging

import pytest

from authserver.accounts import service as accounts
from authserver.audit import service
from authserver.audit.events import AuditEvent
from authserver.extensions import db
from tests.fixtures.accounts import login
from tests.fixtures.commands import refused
from tests.fixtures.commands import run


def audit_list(cli, *args):
    return run(cli, "audit", "list", *args)


def failed_logins(tenant, *usernames):
    for username in usernames:
        assert accounts.authenticate(tenant, username, "not the password") is None
    db.session.commit()


def test_the_log_lists_what_happened_oldest_first(cli, tenant, make_user):
    run(cli, "role", "set-ceiling", "clinic-a", "billing", "user/Coverage.rs")
    make_user(tenant, "alice")
    failed_logins(tenant, "alice")

    records = audit_list(cli, "clinic-a")

    events = [(record["event"], record["subject"]) for record in records]
    assert events[0] == ("tenant:created", "clinic-a")
    assert events[-3:] == [
        ("role:ceiling-changed", "billing"),
        ("user:created", "alice"),
        ("login:failed", "alice"),
    ]
    assert records[-3]["actor"] == "cli"
    assert records[-3]["details"]["after"] == "user/Coverage.rs"
    assert records[-1]["details"] == {"reason": "wrong password"}
    assert [record["at"] for record in records] == sorted(record["at"] for record in records)


def test_filters_and_limit_keep_the_newest(cli, tenant, make_user):
    make_user(tenant, "alice")
    make_user(tenant, "bob")
    failed_logins(tenant, "alice", "bob", "alice", "alice")

    alice = audit_list(cli, "clinic-a", "--event", "login:failed", "--subject", "alice")
    newest_two = audit_list(cli, "clinic-a", "--event", "login:failed", "--limit", "2")

    assert [record["subject"] for record in alice] == ["alice", "alice", "alice"]
    assert [record["subject"] for record in newest_two] == ["alice", "alice"]
    assert len(audit_list(cli, "clinic-a", "--limit", "1")) == 1


def test_another_tenants_records_are_never_listed(cli, tenant, other_tenant, make_user):
    make_user(other_tenant, "mallory")
    failed_logins(other_tenant, "mallory")

    records = audit_list(cli, "clinic-a")

    assert [record["event"] for record in records] == ["tenant:created", "key:created"]
    assert audit_list(cli, "clinic-a", "--subject", "mallory") == []
    assert [r["subject"] for r in audit_list(cli, "clinic-b", "--event", "login:failed")] == [
        "mallory"
    ]


def test_an_unknown_tenant_is_refused_in_one_line(cli, tenant):
    assert "no-such-clinic" in refused(cli, "audit", "list", "no-such-clinic")


def test_an_unknown_event_or_a_bad_limit_is_refused(cli, tenant):
    for args in (["--event", "login:maybe"], ["--limit", "0"], ["--limit", "1001"]):
        assert "Invalid value" in refused(cli, "audit", "list", "clinic-a", *args)


def test_a_username_typed_at_the_login_page_cannot_forge_a_line_of_the_log(
    client, tenant, make_user, caplog
):
    make_user(tenant, "alice")
    forged = "alice\nlogin:succeeded tenant=clinic-a actor=None subject=admin"
    caplog.set_level(logging.INFO, logger="authserver.audit")

    login(client, "clinic-a", forged, "not the password")

    lines = [line for record in caplog.records for line in record.getMessage().splitlines()]
    assert [line.split()[0] for line in lines] == ["login:failed"]
    assert not any(line.startswith("login:succeeded") for line in caplog.text.splitlines())
    # Nobody has that name: the record and its line hold a digest, not what was typed.
    (record,) = service.recent(tenant, limit=1, event=AuditEvent.LOGIN_FAILED)
    assert record.subject.startswith("unknown-user:")
    assert "subject=admin" not in caplog.text


def test_a_subject_holding_a_line_break_is_logged_escaped_on_one_line(tenant, caplog):
    # Services validate what becomes a subject; the log line does not rely on it (CWE-117).
    caplog.set_level(logging.INFO, logger="authserver.audit")

    service.record(tenant, AuditEvent.LAUNCH_CREATED, subject="p1\nlogin:succeeded subject=x")

    (line,) = caplog.text.splitlines()
    assert line.endswith("subject='p1\\nlogin:succeeded subject=x'")


def test_a_user_is_found_however_the_operator_types_the_name(cli, tenant, make_user):
    make_user(tenant, "Dr.Smith")
    failed_logins(tenant, "dr.smith", "DR.SMITH")

    records = audit_list(cli, "clinic-a", "--subject", "Dr.Smith")

    assert [(record["event"], record["subject"]) for record in records] == [
        ("user:created", "dr.smith"),
        ("login:failed", "dr.smith"),
        ("login:failed", "dr.smith"),
    ]
    assert audit_list(cli, "clinic-a", "--subject", " dr.SMITH ") == records


def test_failed_logins_at_a_name_nobody_has_are_found_by_that_name(cli, tenant, make_user):
    make_user(tenant, "alice")
    failed_logins(tenant, "Mallory", "mallory", "trudy", "alice")

    records = audit_list(cli, "clinic-a", "--subject", "MALLORY")

    assert [record["event"] for record in records] == ["login:failed", "login:failed"]
    assert records[0]["subject"].startswith("unknown-user:")
    assert "mallory" not in str(records).lower()
    assert audit_list(cli, "clinic-a", "--subject", records[0]["subject"]) == records


def test_client_ids_and_kids_still_match_exactly(cli, tenant, make_client, make_user):
    client_id = make_client(tenant).client.client_id
    (kid,) = [record["subject"] for record in audit_list(cli, "clinic-a", "--event", "key:created")]
    # A username that is the client id in lower case is someone else.
    make_user(tenant, client_id.lower())

    assert [r["event"] for r in audit_list(cli, "clinic-a", "--subject", client_id)] == [
        "client:created",
        "user:created",
    ]
    for typed in (client_id.lower(), client_id.upper()):
        events = [r["event"] for r in audit_list(cli, "clinic-a", "--subject", typed)]
        assert events == ["user:created"]
    assert len(audit_list(cli, "clinic-a", "--subject", kid)) == 1
    for typed in (kid.lower(), kid.upper()):
        assert audit_list(cli, "clinic-a", "--subject", typed) == []


@pytest.mark.parametrize(
    "command",
    [
        ["token", "revoke", "--tenant", "clinic-a", "--user", "Dr.Smith"],
        ["user", "disable", "clinic-a", "DR.SMITH"],  # which revokes the user's tokens too
    ],
    ids=["token-revoke", "user-disable"],
)
def test_a_revocation_of_a_users_tokens_is_found_by_the_username(cli, tenant, make_user, command):
    make_user(tenant, "Dr.Smith")
    run(cli, *command)

    records = audit_list(cli, "clinic-a", "--subject", "dr.SMITH", "--event", "token:revoked")

    assert [(record["subject"], record["details"]["of"]) for record in records] == [
        ("dr.smith", "user")
    ]


def test_a_revocation_of_a_clients_tokens_is_found_by_the_client_id(cli, tenant, make_client):
    client_id = make_client(tenant).client.client_id
    run(cli, "token", "revoke", "--tenant", "clinic-a", "--client", client_id)
    run(cli, "client", "delete", "clinic-a", client_id)  # which revokes its tokens too

    records = audit_list(cli, "clinic-a", "--subject", client_id)

    assert [(record["event"], record["details"].get("of")) for record in records] == [
        ("client:created", None),
        ("token:revoked", "client"),
        ("token:revoked", "client"),
        ("client:deleted", None),
    ]
