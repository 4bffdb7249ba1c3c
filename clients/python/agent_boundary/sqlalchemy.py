"""SQLAlchemy 2 (sync and asyncio engines): every transaction enters the request's boundary.

One line at start-up::

    agent_boundary.sqlalchemy.install(engine)     # an Engine or an AsyncEngine

Each transaction's ``begin`` runs ``SELECT boundary.enter(token)`` first when a request is
running (see ``agent_boundary.request``). An engine or connection in AUTOCOMMIT would lose the
boundary after that statement, so it is refused (``BoundaryUsageError``). Use
``create_engine(..., hide_parameters=True)``: SQLAlchemy otherwise prints bound parameters,
the token among them, in its error messages.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, text

from . import BoundaryUsageError, current_token

_ENTER = text("SELECT boundary.enter(:token) IS NOT NULL")


def _autocommit(conn: Any) -> bool:
    if conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
        return True
    return bool(getattr(conn.connection.dbapi_connection, "autocommit", False))


def _enter(conn: Any) -> None:
    token = current_token()
    if token is None:
        return
    if _autocommit(conn):
        raise BoundaryUsageError(
            "an AUTOCOMMIT connection would lose the agent boundary after its first statement; "
            "use a transactional connection (the default isolation level)"
        )
    conn.execute(_ENTER, {"token": token})


def install(engine: Any) -> Any:
    """Hooks ``engine`` (sync or async) and returns it."""
    sync_engine = getattr(engine, "sync_engine", engine)
    if not event.contains(sync_engine, "begin", _enter):
        event.listen(sync_engine, "begin", _enter)
        event.listen(sync_engine, "connect", _strict)
    return engine


def _strict(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("SET agent_boundary.enter_requires_transaction_block = on")
    finally:
        cursor.close()
    if not getattr(dbapi_connection, "autocommit", False):
        dbapi_connection.commit()
