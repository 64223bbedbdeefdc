"""Bytes that are not UTF-8 on the command line or on standard input are refused in one line.

Python hands a command-line byte that is not UTF-8 (``$'\\xff'``, or what a Latin-1 terminal makes
of ``Clínica``) to the command as a lone surrogate (PEP 383), which no database can hold: each of
these commands once stopped with a UnicodeEncodeError traceback instead of its ``Error:`` line.
"""

from __future__ import annotations

import pytest
from sqlalchemy import func
from sqlalchemy import select

from authserver.accounts import service as accounts
from authserver.audit.models import AuditRecord
from authserver.clients.models import Client
from authserver.extensions import db
from authserver.keys.models import SigningKey
from authserver.launch.models import Launch
from authserver.tenancy.models import Tenant
from tests.fixtures.accounts import DUMMY_PASSWORD
from tests.fixtures.commands import refused
from tests.fixtures.commands import run

BYTE = "\udcff"  # what `authserver ... $'\xff'` hands the command
LATIN_1 = "Cl\udcednica"  # Clínica, typed in a Latin-1 terminal


def stored() -> tuple[int, ...]:
    """How many rows of each kind a refused command might have written, audit records included."""
    kinds = (AuditRecord, Tenant, Client, Launch, accounts.User)
    counts = tuple(db.session.scalar(select(func.count()).select_from(kind)) for kind in kinds)
    retired = db.session.scalar(select(func.count()).where(SigningKey.status == "retired"))
    return (*counts, retired)


@pytest.fixture
def app_client_id(tenant, make_client):
    return make_client(tenant).client.client_id


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["tenant", "suspend", BYTE], "SLUG"),
        (["tenant", "create", "new-clinic", "--name", LATIN_1], "--name"),
        (["tenant", "brand", "clinic-a", "--display-name", LATIN_1], "--display-name"),
        (["user", "disable", "clinic-a", BYTE], "USERNAME"),
        (["user", "set-roles", "clinic-a", BYTE, "--role", "nurse"], "USERNAME"),
        (
            ["client", "create", "clinic-a", "--name", LATIN_1, "--jwks-uri", "https://a.test/"],
            "--name",
        ),
        (["client", "delete", "clinic-a", BYTE], "CLIENT_ID"),
        (["client", "reset-secret", "clinic-a", BYTE], "CLIENT_ID"),
        (["keys", "list", BYTE], "TENANT"),
        (["keys", "retire", "clinic-a", BYTE], "KID"),
        (["launch", "create", "clinic-a", "--patient", "p1", "--client", BYTE], "--client"),
        (
            [
                "launch",
                "create",
                "clinic-a",
                "--patient",
                "p1",
                "--client",
                "{app}",
                "--intent",
                BYTE,
            ],
            "--intent",
        ),
        (["role", "set-ceiling", "clinic-a", BYTE, "user/*.rs"], "ROLE"),
        (["audit", "list", "clinic-a", "--subject", "caf\udce9"], "--subject"),
        (["token", "revoke", "--tenant", "clinic-a", "--user", BYTE], "--user"),
        (["token", "revoke", "--tenant", "clinic-a", "--client", BYTE], "--client"),
    ],
)
def test_an_argument_that_is_not_utf8_is_refused_in_one_line(
    cli, tenant, app_client_id, args, named
):
    args = [arg.replace("{app}", app_client_id) for arg in args]
    before = stored()

    line = refused(cli, *args)

    assert line == f"Error: {named} is not valid UTF-8 text"
    assert stored() == before


@pytest.mark.parametrize(
    "command",
    [
        ["user", "create", "clinic-a", "rosa", "--role", "nurse", "--password-stdin"],
        ["user", "set-password", "clinic-a", "alice", "--password-stdin"],
    ],
    ids=["create", "set-password"],
)
def test_a_password_on_stdin_that_is_not_utf8_is_refused_in_one_line(
    cli, tenant, make_user, command
):
    make_user(tenant, "alice", roles=["nurse"])
    before = stored()

    line = refused(cli, *command, input=b"Pa\xdfwort-in-Latin-1\n")

    assert line == "Error: the password on standard input is not UTF-8 text"
    assert stored() == before
    assert accounts.authenticate(tenant, "alice", DUMMY_PASSWORD) is not None


def test_a_utf8_password_on_stdin_is_taken_as_written(cli, tenant):
    password = "Paßwort für Clínica"

    run(
        cli,
        *["user", "create", "clinic-a", "rosa", "--role", "nurse", "--password-stdin"],
        input=(password + "\r\n").encode(),
    )

    assert accounts.authenticate(tenant, "rosa", password).username == "rosa"
