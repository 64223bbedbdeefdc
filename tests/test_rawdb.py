"""The hot paths' raw connections: statements prepared and run through libpq (PostgreSQL)."""

from __future__ import annotations

import pytest
from psycopg import DatabaseError

from authserver import rawdb
from authserver.rawdb import Prepared
from tests.fixtures.database import backend

on_postgresql = pytest.mark.skipif(
    backend() != "postgresql", reason="statements run through libpq on PostgreSQL only"
)


def test_named_parameters_become_numbered_once_each():
    prepared = Prepared.of("pair", "SELECT :a, CAST(:b AS int), :a::text")

    assert prepared.sql == b"SELECT $1, CAST($2 AS int), $1::text"
    assert prepared.keys == ["a", "b"]
    assert prepared.name == b"authserver_pair"


@on_postgresql
def test_a_prepared_statement_runs_on_every_connection_with_text_in_and_out(app):
    connections = rawdb.connections(app)
    connections.prepare("echo", "SELECT CAST(:number AS int) + 1, :word, CAST(:missing AS text)")
    first = connections.connect()  # a connection the statement was never prepared on
    connections.idle.append(first)

    rows = connections.execute("echo", {"number": 41, "word": "tenant", "missing": None})

    assert rows == [("42", "tenant", None)]
    assert connections.idle == [first]  # it was used, and given back
    second = connections.connect()
    connections.idle.append(second)
    assert connections.execute("echo", {"number": 1, "word": "b", "missing": "c"}) == [
        ("2", "b", "c")
    ]


@on_postgresql
def test_a_failing_statement_raises_and_its_connection_is_not_reused(app):
    connections = rawdb.connections(app)
    connections.prepare("divide", "SELECT 1 / CAST(:by AS int)")
    connection = connections.connect()
    connections.idle.append(connection)

    with pytest.raises(DatabaseError, match="division by zero"):
        connections.execute("divide", {"by": 0})

    assert connection.closed and connection not in connections.idle
    assert connections.execute("divide", {"by": 1}) == [("1",)]
