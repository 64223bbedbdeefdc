"""Raw DB-API connections for the two hot paths (introspection, backend token issuance).

They run a prepared statement or two per request, where SQLAlchemy's pool checkout, ORM session
and statement compilation would cost more than the query. Connections are autocommit, so every
read sees what any instance committed before it and no transaction is left open between
requests; idle ones wait in a small LIFO list, whatever threads the server runs.

On PostgreSQL a statement registered with :meth:`RawConnections.prepare` runs through libpq
itself (``psycopg.pq``, psycopg's documented libpq binding): parameters and results as text,
no cursor, adapters or result objects of psycopg's, which cost more than the round trip's own
client side.

Neither sqlite3 nor libpq logs a statement or its parameters (psycopg's own logger names only
the host and port it connects to), so these connections keep what the engine's
``hide_parameters`` and its quiet loggers keep out of the logs (``authserver/__init__.py``) out
of them too; the hot paths log a failure by its type alone (``authserver/hotpaths.py``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from collections.abc import Mapping
from typing import Any
from typing import TypeVar

from flask import Flask
from psycopg import DatabaseError
from psycopg import pq
from sqlalchemy.engine import Engine

Result = TypeVar("Result")
# A ``:name`` parameter of our statements (not the second colon of a ``::`` cast).
PARAMETER = re.compile(r"(?<!:):(\w+)")
EXTENSION = "authserver.raw_connections"
OK = (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK)


class RawConnections:
    MAX_IDLE = 16

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sqlite = engine.dialect.name == "sqlite"
        self.idle: list[Any] = []
        self.closers: list[Callable[[], None]] = []  # others' connections made by connect()
        self.prepared: dict[str, Prepared] = {}

    def sql(self, statement: str) -> str:
        """``statement`` with ``:name`` parameters in this driver's style (psycopg: %(name)s)."""
        return statement if self.sqlite else PARAMETER.sub(r"%(\1)s", statement)

    def prepare(self, name: str, statement: str) -> None:
        """PostgreSQL: make ``statement`` (``:name`` parameters) runnable by :meth:`execute`.

        ``statement`` is ours, never built from input; like :meth:`sql`, it must not hold
        ``:word`` inside a quoted literal.
        """
        self.prepared[name] = Prepared.of(name, statement)

    def execute(self, name: str, params: Mapping[str, object]) -> list[tuple[str | None, ...]]:
        """Run the prepared statement ``name`` with ``params`` (sent as their ``str``); its rows,
        every value as text. Prepared on each connection the first time it runs there."""
        prepared = self.prepared[name]
        values = [
            None if (value := params[key]) is None else str(value).encode() for key in prepared.keys
        ]
        return self._on_connection(lambda connection: prepared.execute(connection.pgconn, values))

    def run(self, work: Callable[[Any], Result]) -> Result:
        """Call ``work(cursor)`` on an idle connection (or a new one) and give it back after."""

        def on_cursor(connection: Any) -> Result:
            cursor = connection.cursor()
            result = work(cursor)
            cursor.close()
            return result

        return self._on_connection(on_cursor)

    def _on_connection(self, work: Callable[[Any], Result]) -> Result:
        try:
            connection = self.idle.pop()  # list.pop and append are atomic: no lock needed
        except IndexError:
            connection = self.connect()
        try:
            result = work(connection)
        except Exception:
            connection.close()  # a connection in doubt is not put back
            raise
        if len(self.idle) < self.MAX_IDLE:
            self.idle.append(connection)
        else:
            connection.close()
        return result

    def close(self) -> None:
        while self.idle:
            self.idle.pop().close()
        for close in self.closers:
            close()

    def connect(self) -> Any:
        """A new autocommit DB-API connection of the engine's settings, outside any pool."""
        pooled = self.engine.raw_connection()
        connection = pooled.driver_connection
        pooled.detach()  # ours from now on, outside the pool
        if self.sqlite:
            connection.isolation_level = None
        else:
            connection.autocommit = True
        return connection


def init_app(app: Flask, engine: Engine) -> RawConnections:
    app.extensions[EXTENSION] = RawConnections(engine)
    return app.extensions[EXTENSION]


def connections(app: Flask) -> RawConnections:
    return app.extensions[EXTENSION]


def close(app: Flask) -> None:
    """Close the idle connections and those of :attr:`RawConnections.closers` (tests and
    shutdown; workers otherwise keep them)."""
    connections(app).close()


class Prepared:
    """One statement as libpq prepares it: ``$n`` parameters, named once per connection."""

    UNKNOWN_STATEMENT = b"26000"  # invalid_sql_statement_name: not prepared on this connection

    def __init__(self, name: bytes, sql: bytes, keys: list[str]) -> None:
        self.name, self.sql, self.keys = name, sql, keys

    @classmethod
    def of(cls, name: str, statement: str) -> Prepared:
        keys: list[str] = []

        def number(match: re.Match[str]) -> str:
            if match.group(1) not in keys:
                keys.append(match.group(1))
            return f"${keys.index(match.group(1)) + 1}"

        sql = PARAMETER.sub(number, statement)
        return cls(f"authserver_{name}".encode(), sql.encode(), keys)

    def execute(self, pgconn: Any, values: list[bytes | None]) -> list[tuple[str | None, ...]]:
        result = pgconn.exec_prepared(self.name, values)
        if result.status not in OK:
            if result.error_field(pq.DiagnosticField.SQLSTATE) == self.UNKNOWN_STATEMENT:
                self._check(pgconn.prepare(self.name, self.sql))
                result = pgconn.exec_prepared(self.name, values)
            self._check(result)
        return [
            tuple(
                None if value is None else value.decode()
                for value in (result.get_value(row, column) for column in range(result.nfields))
            )
            for row in range(result.ntuples)
        ]

    @staticmethod
    def _check(result: Any) -> None:
        if result.status not in OK:
            message = (result.error_message or b"").decode(errors="replace").strip()
            raise DatabaseError(message or f"statement failed: {result.status.name}")
