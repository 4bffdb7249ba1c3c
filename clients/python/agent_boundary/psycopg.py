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
from typing import Any, AsyncIterator, Awaitable, Callable, Iterator, Optional

import psycopg
from psycopg.pq import TransactionStatus

from . import ENTER_SQL as ENTER
from . import current_token

# Makes a stray enter outside a block an error on these connections (see docs/drivers.md).
STRICT = "SET agent_boundary.enter_requires_transaction_block = on"


def _needs_enter(conn: Any, token: str) -> bool:
    # A new transaction (idle now), or one this token has not entered yet.
    return conn.info.transaction_status == TransactionStatus.IDLE or conn._boundary_entered != token


class Cursor(psycopg.Cursor):
    def _entered(self, run: Callable[[], Any]) -> Any:
        """Runs ``run`` (one statement) inside the request's boundary, entering it first when
        this transaction has not, or in a block of its own on an autocommit connection."""
        token = current_token()
        conn = self.connection
        if token is None or not isinstance(conn, Connection):
            return run()
        if conn.autocommit and conn.info.transaction_status == TransactionStatus.IDLE:
            with conn.transaction():
                psycopg.Cursor.execute(self, ENTER, (token,))
                conn._boundary_entered = token
                return run()
        if _needs_enter(conn, token):
            psycopg.Cursor.execute(self, ENTER, (token,))
            conn._boundary_entered = token
        return run()

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> "Cursor":
        return self._entered(lambda: psycopg.Cursor.execute(self, query, params, **kwargs))

    def executemany(self, query: Any, params_seq: Any, **kwargs: Any) -> None:
        return self._entered(lambda: psycopg.Cursor.executemany(self, query, params_seq, **kwargs))


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
    async def _entered(self, run: Callable[[], Awaitable[Any]]) -> Any:
        """The asyncio twin of :meth:`Cursor._entered`."""
        token = current_token()
        conn = self.connection
        if token is None or not isinstance(conn, AsyncConnection):
            return await run()
        if conn.autocommit and conn.info.transaction_status == TransactionStatus.IDLE:
            async with conn.transaction():
                await psycopg.AsyncCursor.execute(self, ENTER, (token,))
                conn._boundary_entered = token
                return await run()
        if _needs_enter(conn, token):
            await psycopg.AsyncCursor.execute(self, ENTER, (token,))
            conn._boundary_entered = token
        return await run()

    async def execute(self, query: Any, params: Any = None, **kwargs: Any) -> "AsyncCursor":
        return await self._entered(lambda: psycopg.AsyncCursor.execute(self, query, params, **kwargs))

    async def executemany(self, query: Any, params_seq: Any, **kwargs: Any) -> None:
        return await self._entered(lambda: psycopg.AsyncCursor.executemany(self, query, params_seq, **kwargs))


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
