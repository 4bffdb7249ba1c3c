"""Client side of the agent_boundary PostgreSQL extension.

Trusted request code says which boundary token the request runs under; the adapters put it on
every transaction that request's code (or a framework it calls) runs, with
``SELECT boundary.enter(token)`` as the transaction's first statement:

    with agent_boundary.request(token):      # a plain with, in async code too
        framework.invoke(...)                # every transaction enters the token's boundary

The token lives in a ``ContextVar``: each thread and each asyncio task sees its own, and
``asyncio.to_thread`` carries it along. Plain thread pools do not copy context; wrap the
callable with ``agent_boundary.bind(fn)`` before submitting it.

Adapters: ``agent_boundary.psycopg`` (psycopg 3 and psycopg_pool), ``agent_boundary.sqlalchemy``
(sync and async engines), ``agent_boundary.asyncpg``. Tokens: ``agent_boundary.mint_token``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import contextvars
import functools
import time
from typing import Any, Callable, Iterator, Mapping, Optional, TypeVar

__all__ = [
    "BoundaryUsageError",
    "bind",
    "current_token",
    "mint_token",
    "request",
    "ENTER_SQL",
]

#: The statement every adapter runs first in a transaction (``%s``/``$1`` placeholders differ
#: per driver; see each adapter).
ENTER_SQL = "SELECT boundary.enter(%s) IS NOT NULL"

_token: contextvars.ContextVar[Optional[str]] = contextvars.ContextVar("agent_boundary_token", default=None)

T = TypeVar("T")


class BoundaryUsageError(RuntimeError):
    """The adapter was used in a way that would lose the boundary (say, autocommit)."""


def current_token() -> Optional[str]:
    """The boundary token of the running request, or None outside one."""
    return _token.get()


@contextlib.contextmanager
def request(token: str) -> Iterator[str]:
    """Runs the block as one request under ``token`` (a signed boundary token)."""
    if not isinstance(token, str) or not token:
        raise BoundaryUsageError("request() needs the boundary token as a non-empty string")
    reset = _token.set(token)
    try:
        yield token
    finally:
        _token.reset(reset)


def bind(fn: Callable[..., T]) -> Callable[..., T]:
    """``fn`` to run in another thread with this request's token (and other context)."""
    context = contextvars.copy_context()

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> T:
        return context.run(fn, *args, **kwargs)

    return run


def signing_secret(secret: str | bytes) -> bytes:
    """The HMAC secret as bytes from what ``boundary.generate_signing_key`` returned (base64).

    Signing with the base64 text itself is the classic mistake: every token would be refused.
    """
    if isinstance(secret, bytes):
        return secret
    try:
        return base64.b64decode(secret, validate=True)
    except (binascii.Error, ValueError) as e:
        raise BoundaryUsageError(
            "the secret is not base64; pass what boundary.generate_signing_key returned, or bytes"
        ) from e


def mint_token(
    secret: str | bytes,
    kid: str,
    *,
    tenant_id: str,
    workspace_id: str,
    user_id: str,
    role: str,
    ttl_seconds: int = 300,
    claims: Optional[Mapping[str, Any]] = None,
) -> str:
    """A boundary token (HS256 JWT) for one request, signed with the key ``kid``.

    ``secret`` is the base64 text ``boundary.generate_signing_key`` returned (decoded here) or
    the raw bytes. ``claims`` adds trace_id, run_id, tool_ids, datasource_ids and the rest.
    Needs PyJWT (``pip install agent-boundary[jwt]``).
    """
    import jwt  # PyJWT

    now = int(time.time())
    payload = {
        "tenant_id": tenant_id,
        "workspace_id": workspace_id,
        "user_id": user_id,
        "role": role,
        "aud": "agent_boundary",
        "iat": now,
        "exp": now + int(ttl_seconds),
    }
    payload.update(claims or {})
    return jwt.encode(payload, signing_secret(secret), algorithm="HS256", headers={"kid": kid})
