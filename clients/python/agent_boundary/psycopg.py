"""psycopg 3 (and psycopg_pool): every transaction a request opens enters its boundary first.

One line at start-up, for a connection or a pool::

    conn = psycopg.connect(dsn, connection_class=agent_boundary.psycopg.Connection)  # or .connect(dsn)
    pool = ConnectionPool(dsn, connection_class=agent_boundary.psycopg.Connection)
    pool = AsyncConnectionPool(dsn, connection_class=agent_boundary.psycopg.AsyncConnection)

Inside ``with agent_boundary.request(token):`` the first statement of each transaction is
preceded by ``SELECT boundary.enter(token)``; on an autocommit connection (LangGraph's
checkpointers require one) each statement outside an explicit transaction block gets a block of
its own that enters first, so the boundary is never lost to autocommit. Outside a request
nothing is entered and protected tables fail closed (42501). A refused token raises the
server's error (28000 or 42501, with its reason) from the statement that needed it.
"""

from __future__ import annotations

import contextlib
from typing import Any, AsyncIterator, Iterator, Optional

import psycopg
from psycopg.pq import TransactionStatus

from . import current_token

ENTER = "SELECT boundary.enter(%s) IS NOT NULL"
# Makes a stray enter outside a block an error on these connections (see docs/drivers.md).
STRICT = "SET agent_boundary.enter_requires_transaction_block = on"


def _needs_enter(conn: Any, token: str) -> bool:
    # A new transaction (idle now), or one this token has not entered yet.
    return conn.info.transaction_status == TransactionStatus.IDLE or conn._boundary_entered != token


class Cursor(psycopg.Cursor):
    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> "Cursor":
        token = current_token()
        conn = self.connection
        if token is None or not isinstance(conn, Connection):
            return super().execute(query, params, **kwargs)
        if conn.autocommit and conn.info.transaction_status == TransactionStatus.IDLE:
            with conn.transaction():
                super().execute(ENTER, (token,))
                conn._boundary_entered = token
                return super().execute(query, params, **kwargs)
        if _needs_enter(conn, token):
            super().execute(ENTER, (token,))
            conn._boundary_entered = token
        return super().execute(query, params, **kwargs)

    def executemany(self, query: Any, params_seq: Any, **kwargs: Any) -> None:
        token = current_token()
        conn = self.connection
        if token is None or not isinstance(conn, Connection):
            return super().executemany(query, params_seq, **kwargs)
        if conn.autocommit and conn.info.transaction_status == TransactionStatus.IDLE:
            with conn.transaction():
                super().execute(ENTER, (token,))
                conn._boundary_entered = token
                return super().executemany(query, params_seq, **kwargs)
        if _needs_enter(conn, token):
            super().execute(ENTER, (token,))
            conn._boundary_entered = token
        return super().executemany(query, params_seq, **kwargs)


class Connection(psycopg.Connection):
    """A psycopg connection whose transactions enter the running request's boundary."""

    _boundary_entered: Optional[str] = None

    @classmethod
    def connect(cls, *args: Any, **kwargs: Any) -> "Connection":
        kwargs.setdefault("cursor_factory", Cursor)
        conn = super().connect(*args, **kwargs)
        conn.cursor_factory = Cursor
        _set_strict(conn)
        return conn

    def _forget(self) -> None:
        if self.info.transaction_status == TransactionStatus.IDLE:
            self._boundary_entered = None

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self._forget()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self._forget()

    @contextlib.contextmanager
    def transaction(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        try:
            with super().transaction(*args, **kwargs) as tx:
                yield tx
        finally:
            self._forget()


def _set_strict(conn: Any) -> None:
    with psycopg.Cursor(conn) as cur:
        cur.execute(STRICT)
    if not conn.autocommit:
        psycopg.Connection.commit(conn)


def connect(conninfo: str = "", **kwargs: Any) -> Connection:
    """``psycopg.connect`` for a connection whose transactions enter the request's boundary."""
    return Connection.connect(conninfo, **kwargs)


class AsyncCursor(psycopg.AsyncCursor):
    async def execute(self, query: Any, params: Any = None, **kwargs: Any) -> "AsyncCursor":
        token = current_token()
        conn = self.connection
        if token is None or not isinstance(conn, AsyncConnection):
            return await super().execute(query, params, **kwargs)
        if conn.autocommit and conn.info.transaction_status == TransactionStatus.IDLE:
            async with conn.transaction():
                await super().execute(ENTER, (token,))
                conn._boundary_entered = token
                return await super().execute(query, params, **kwargs)
        if _needs_enter(conn, token):
            await super().execute(ENTER, (token,))
            conn._boundary_entered = token
        return await super().execute(query, params, **kwargs)

    async def executemany(self, query: Any, params_seq: Any, **kwargs: Any) -> None:
        token = current_token()
        conn = self.connection
        if token is None or not isinstance(conn, AsyncConnection):
            return await super().executemany(query, params_seq, **kwargs)
        if conn.autocommit and conn.info.transaction_status == TransactionStatus.IDLE:
            async with conn.transaction():
                await super().execute(ENTER, (token,))
                conn._boundary_entered = token
                return await super().executemany(query, params_seq, **kwargs)
        if _needs_enter(conn, token):
            await super().execute(ENTER, (token,))
            conn._boundary_entered = token
        return await super().executemany(query, params_seq, **kwargs)


class AsyncConnection(psycopg.AsyncConnection):
    """The asyncio twin of :class:`Connection`."""

    _boundary_entered: Optional[str] = None

    @classmethod
    async def connect(cls, *args: Any, **kwargs: Any) -> "AsyncConnection":
        kwargs.setdefault("cursor_factory", AsyncCursor)
        conn = await super().connect(*args, **kwargs)
        conn.cursor_factory = AsyncCursor
        async with psycopg.AsyncCursor(conn) as cur:
            await cur.execute(STRICT)
        if not conn.autocommit:
            await psycopg.AsyncConnection.commit(conn)
        return conn

    def _forget(self) -> None:
        if self.info.transaction_status == TransactionStatus.IDLE:
            self._boundary_entered = None

    async def commit(self) -> None:
        try:
            await super().commit()
        finally:
            self._forget()

    async def rollback(self) -> None:
        try:
            await super().rollback()
        finally:
            self._forget()

    @contextlib.asynccontextmanager
    async def transaction(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        try:
            async with super().transaction(*args, **kwargs) as tx:
                yield tx
        finally:
            self._forget()
