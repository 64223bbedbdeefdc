"""Every command refuses a missing or malformed option as it refuses other bad input: one
``Error:`` line on stderr and exit status 1, not click's usage text (README: "bad input prints
one line")."""

from __future__ import annotations

import pytest

from tests.fixtures.commands import refused


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["tenant", "create", "riverside"], "--name"),
        (["user", "create", "clinic-a", "alice", "--password-stdin"], "--role"),
        (["client", "create", "clinic-a"], "--name"),
        (["token", "revoke", "--user", "alice"], "--tenant"),
        (["role", "set-ceiling", "clinic-a", "billing"], "SCOPES"),
        (["keys", "stage", "clinic-a", "--alg", "HS256"], "--alg"),
        (["audit", "list", "clinic-a", "--limit", "many"], "--limit"),
        (["launch", "create", "clinic-a"], "--patient"),
        (["tenant", "list", "--no-such-flag"], "--no-such-flag"),
        (["purge-expired", "--no-such-flag"], "--no-such-flag"),
        (["demo", "--port", "http"], "--port"),
    ],
)
def test_a_missing_or_malformed_option_is_one_line(cli, tenant, args, names):
    assert names in refused(cli, *args)
