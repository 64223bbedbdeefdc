"""Raw DB-API connections for the two hot paths (introspection, backend token issuance).

They run a prepared statement or two per request, where SQLAlchemy's pool checkout, ORM session
and statement compilation would cost more than the query. Connections are autocommit, so every
read sees what any instance committed before it and no transaction is left open between
requests; idle ones wait in a small LIFO list, whatever threads the server runs.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from typing import TypeVar

from flask import Flask
from sqlalchemy.engine import Engine

Result = TypeVar("Result")
EXTENSION = "authserver.raw_connections"


class RawConnections:
    MAX_IDLE = 16

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sqlite = engine.dialect.name == "sqlite"
        self.idle: list[Any] = []
        self.closers: list[Callable[[], None]] = []  # others' connections made by connect()

    def sql(self, statement: str) -> str:
        """``statement`` with ``:name`` parameters in this driver's style (psycopg: %(name)s)."""
        return statement if self.sqlite else re.sub(r":(\w+)", r"%(\1)s", statement)

    def run(self, work: Callable[[Any], Result]) -> Result:
        """Call ``work(cursor)`` on an idle connection (or a new one) and give it back after."""
        try:
            connection = self.idle.pop()  # list.pop and append are atomic: no lock needed
        except IndexError:
            connection = self.connect()
        try:
            cursor = connection.cursor()
            result = work(cursor)
            cursor.close()
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
