"""A per-process cache of live token state for introspection, emptied by PostgreSQL NOTIFY.

Introspection's fast path (:mod:`authserver.tokens.fastpath`) reads one row per request: the
tenant, the caller's credential and the token's revocation, client, user and signing-key state.
On PostgreSQL that read is a network round trip and most of the request's cost, and the answer
is the same until one of those rows changes. Triggers on those tables (migration
``introspection_state_notify``) send ``NOTIFY authserver_token_state, '<tenant id>'`` in the
transaction that changes them, so every instance hears of a change when it commits.

Each worker process keeps one listening connection. Before every cache read it drains that
connection without waiting (one non-blocking ``recv``), and a notification for a tenant drops
everything cached for it. Only rows of live tokens whose caller checked out are kept; every
other answer is read afresh. The cache is used only while the listener is connected: if it
cannot listen (a pooler that does not pass LISTEN through, a dropped connection) the cache is
emptied and every request reads the database, as on SQLite.

Each row is also kept no longer than ``AUTHSERVER_INTROSPECTION_CACHE_SECONDS``, which bounds
what a listener connection that died without a word (a network partition) could get wrong.
The window in which another instance can still answer from its cache is the time PostgreSQL
takes to signal the listening backends and for them to write to their sockets after the commit,
well under a millisecond on one host: RFC 7009 §2 allows for such a propagation delay ("some
servers know about the invalidation while others do not"), and asks that it be small.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
import time
from collections.abc import Callable
from typing import Any

from psycopg.pq import ConnStatus

CHANNEL = "authserver_token_state"
EVERY_TENANT = "*"  # the payload of a TRUNCATE

log = logging.getLogger(__name__)

Row = tuple[Any, ...]
Key = tuple[str, ...]


class TokenStateCache:
    """Rows of :data:`authserver.tokens.fastpath.STATE_QUERY` by tenant id and request key."""

    MAX_ROWS = 200_000  # about 60 MB at most; emptied whole when full
    RETRY_SECONDS = 30.0  # between attempts to listen again
    MAX_READS = 8  # reads per drain before a flood of notifications makes it give up once

    def __init__(self, connect: Callable[[], Any], max_age: float) -> None:
        self.connect = connect
        self.max_age = max_age
        self.lock = threading.Lock()
        self.listener: Any = None
        self.readable = select.poll()  # the listener's socket, once there is one
        self.pid = 0
        self.retry_at = 0.0
        self.rows: dict[int, dict[Key, tuple[Row, float]]] = {}  # row, monotonic time kept
        self.size = 0
        self.generation = 0  # moves on every drop, so a read that raced a drop is not stored

    def lookup(self, tenant_id: int, key: Key) -> tuple[Row | None, int | None]:
        """The cached row for ``key`` (or None), and the generation to pass to :meth:`store`.

        The generation is None when the cache cannot be trusted now (no listener): do not store.
        """
        with self.lock:
            if not self._drain():
                return None, None
            kept = self.rows.get(tenant_id, {}).get(key)
            if kept is None or time.monotonic() - kept[1] > self.max_age:
                return None, self.generation
            return kept[0], self.generation

    def store(self, tenant_id: int, key: Key, row: Row, generation: int | None) -> None:
        """Keep ``row``, read after :meth:`lookup` returned ``generation``, if nothing was dropped
        since (a change committed during the read would otherwise be missed)."""
        with self.lock:
            if generation is None or generation != self.generation:
                return
            if self.size >= self.MAX_ROWS:
                self._drop_all()
            tenant_rows = self.rows.setdefault(tenant_id, {})
            if key not in tenant_rows:
                self.size += 1
            tenant_rows[key] = (row, time.monotonic())

    def forget(self, tenants: set[str]) -> None:
        """Drop the rows of ``tenants`` (ids as text, or ``"*"`` for all): this process changed
        their state and committed (:mod:`authserver.tokens.localchanges`), so nothing it kept
        of them may answer again, whether or not their NOTIFY has arrived yet."""
        with self.lock:
            for tenant in tenants:
                self._drop(tenant)

    def close(self) -> None:
        with self.lock:
            self._drop_all()
            self._close_listener()

    # -- listening ----------------------------------------------------------------------------

    def _drain(self) -> bool:
        """Apply every notification already received; False if there is no working listener."""
        if self.listener is None or self.pid != os.getpid():
            return self._listen()
        pgconn = self.listener.pgconn
        try:
            # Never blocks (libpq's socket is non-blocking). Read until nothing is left, so a
            # server's goodbye is seen together with the end of the connection after it.
            for _ in range(self.MAX_READS):
                pgconn.consume_input()
                if not self.readable.poll(0):
                    caught_up = True
                    break
            else:
                caught_up = False  # a flood: apply what came, trust nothing this time
            if pgconn.status != ConnStatus.OK:
                raise ConnectionError("listener connection is not OK")
            while (notify := pgconn.notifies()) is not None:
                self._drop(notify.extra.decode())
        except Exception:  # noqa: BLE001 - a lost listener means: stop trusting the cache
            log.warning("introspection cache: listener lost; reading the database until back")
            self._drop_all()
            self._close_listener()
            return False
        return caught_up

    def _listen(self) -> bool:
        if self.pid != os.getpid():
            self.listener = None  # a forked parent's connection is not ours to use or close
        self._drop_all()  # whatever happened while nobody listened is unknown
        if time.monotonic() < self.retry_at:
            return False
        try:
            listener = self.connect()
            listener.execute(f"LISTEN {CHANNEL}")
        except Exception:  # noqa: BLE001
            log.warning("introspection cache: cannot LISTEN; reading the database for a while")
            self.retry_at = time.monotonic() + self.RETRY_SECONDS
            return False
        self.listener, self.pid = listener, os.getpid()
        self.readable = select.poll()
        self.readable.register(listener.pgconn.socket, select.POLLIN)
        return True

    def _close_listener(self) -> None:
        if self.listener is not None and self.pid == os.getpid():
            with contextlib.suppress(Exception):  # closing a broken connection
                self.listener.close()
        self.listener = None

    def _drop(self, payload: str) -> None:
        if payload == EVERY_TENANT or not payload.isdigit():
            self._drop_all()
            return
        self.generation += 1
        self.size -= len(self.rows.pop(int(payload), {}))

    def _drop_all(self) -> None:
        self.generation += 1
        self.rows.clear()
        self.size = 0
