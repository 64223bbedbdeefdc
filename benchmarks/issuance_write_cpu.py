#!/usr/bin/env python3
"""PostgreSQL's CPU per client_credentials write: authserver's, the floor's, and alternatives.

``token_issuance.py`` shows that authserver's write costs more than the floor's minimal one;
this says how much of PostgreSQL's own CPU each candidate statement takes, on one connection,
read from the backend process's ``/proc`` counters (Linux), so the cost of a design can be
weighed before it is built:

- ``floor (two minimal tables)``: the floor's statement (``issuance_floor.MINIMAL_RECORD``);
- ``authserver (jti + token row)``: the token fast path's statement, as it runs;
- ``jti record only, with the guard``: what a design without a token row would still write
  (the assertion's jti, only if the tenant, client and key rows are still the ones read);
- ``jti record only, no guard``: the same without the three-row version check;
- ``one insert, one text key``: the least a durable replay check can cost.

Run from the repository root: ``python benchmarks/issuance_write_cpu.py [--statements 10000]``.
Needs the PostgreSQL server binaries (a throwaway cluster is started).
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg
import token_issuance

import issuance_floor
from common import ThrowawayPostgres
from common import authserver_environment
from common import environment
from common import free_port
from common import machine_size


def statements(fastpath: ModuleType) -> dict[str, str]:
    """Each candidate write, with ``:name`` parameters."""
    minimal = issuance_floor.MINIMAL_RECORD.decode()
    for number, name in enumerate(("assertion_jti", "expires", "jti", "scope", "expires"), 1):
        minimal = minimal.replace(f"${number}", f":{name}")
    return {
        "floor (two minimal tables)": minimal,
        "authserver (jti + token row)": fastpath.RECORD_POSTGRESQL,
        "jti record only, with the guard": fastpath.from_posix_seconds(
            fastpath.USE_ASSERTION.format(guard=fastpath.STILL_CURRENT)
        ),
        "jti record only, no guard": fastpath.from_posix_seconds(
            fastpath.USE_ASSERTION.format(guard="SELECT CAST(:tenant_id AS INTEGER) AS id")
        ),
        "one insert, one text key": "INSERT INTO floor_used_assertions (jti, expires_at)"
        " VALUES (:assertion_jti, to_timestamp(:expires)) ON CONFLICT DO NOTHING RETURNING 1",
    }


def backend_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--statements", type=int, default=10_000, help="per candidate and round")
    parser.add_argument("--rounds", type=int, default=2)
    options = parser.parse_args()
    print(machine_size())
    with tempfile.TemporaryDirectory(prefix="authserver-bench-") as tmp:
        cluster = ThrowawayPostgres().start()
        try:
            database = cluster.create_database("bench")
            env = authserver_environment(database, Path(tmp), free_port())
            with environment(env):
                clients, _, _ = token_issuance.prepare_authserver()
                issuance_floor.create_minimal_tables(database)
                measure(database, clients["ES256"], options)
        finally:
            cluster.stop()


def measure(database: str, client_id: str, options: argparse.Namespace) -> None:
    from authserver import create_app  # after common made the repository importable
    from authserver.oauth import fastpath

    app = create_app()
    with app.app_context():
        entry = app.extensions[fastpath.EXTENSION].load("bench-es256", client_id)
    if entry is None:
        raise SystemExit("the bench client is not a private_key_jwt backend client")
    named = re.compile(r"(?<!:):(\w+)")  # :name, not the second colon of a :: cast
    candidates = {
        label: named.sub(r"%(\1)s", statement) for label, statement in statements(fastpath).items()
    }
    with psycopg.connect(issuance_floor.libpq_dsn(database), autocommit=True) as connection:
        pid = connection.execute("SELECT pg_backend_pid()").fetchone()[0]
        print(f"\n{'write':34} {'backend CPU µs':>15} {'wall µs':>9}  (one connection)")
        for _ in range(options.rounds):
            for label, statement in candidates.items():
                cpu, wall = run(connection, pid, statement, entry, options.statements)
                print(f"{label:34} {cpu:15.0f} {wall:9.0f}", flush=True)


def run(
    connection: psycopg.Connection, pid: int, statement: str, entry: Any, count: int
) -> tuple[float, float]:
    """Backend CPU and wall time per statement, in µs; every one must write its row."""
    now = int(time.time())
    cpu_before, wall_before = backend_cpu_seconds(pid), time.perf_counter()
    for _ in range(count):
        values = entry.record_values(
            assertion_jti=secrets.token_urlsafe(16),
            assertion_expires_at=now + 300,
            now=now,
            jti=secrets.token_urlsafe(16),
            scope=token_issuance.SCOPE,
            expires_at=now + 300,
        )
        values["expires"] = now + 300
        if len(connection.execute(statement, values, prepare=True).fetchall()) != 1:
            raise SystemExit(f"a write was refused: {statement}")
    cpu = backend_cpu_seconds(pid) - cpu_before
    return 1e6 * cpu / count, 1e6 * (time.perf_counter() - wall_before) / count


if __name__ == "__main__":
    main()
