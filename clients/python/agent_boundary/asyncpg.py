"""asyncpg: a transaction that enters the request's boundary first.

asyncpg has no hook on BEGIN, so the one line is where transactions start::

    async with agent_boundary.asyncpg.transaction(conn):     # instead of conn.transaction()
        rows = await conn.fetch("SELECT ... FROM protected_table")

and, at start-up, ``asyncpg.create_pool(dsn, server_settings=agent_boundary.asyncpg.SERVER_SETTINGS)``
so that a stray ``boundary.enter`` outside a transaction block is an error. Outside
``transaction()`` asyncpg runs each statement in autocommit, where a boundary would not last:
protected tables then fail closed (42501). A refused token raises the server's error
(``asyncpg.exceptions.InvalidAuthorizationSpecificationError``, 28000, or
``InsufficientPrivilegeError``, 42501) from ``transaction()``.
"""

from __future__ import annotations

import contextlib
from typing import Any, AsyncIterator

from . import BoundaryUsageError, current_token

SERVER_SETTINGS = {"agent_boundary.enter_requires_transaction_block": "on"}


@contextlib.asynccontextmanager
async def transaction(conn: Any, **kwargs: Any) -> AsyncIterator[Any]:
    """``conn.transaction(**kwargs)`` whose first statement enters the running request's boundary."""
    token = current_token()
    if token is None:
        raise BoundaryUsageError("no request is running: wrap the call in agent_boundary.request(token)")
    outermost = not conn.is_in_transaction()
    async with conn.transaction(**kwargs) as tx:
        if outermost:
            await conn.fetchval("SELECT boundary.enter($1) IS NOT NULL", token)
        yield tx
