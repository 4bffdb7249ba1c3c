// Client side of the agent_boundary PostgreSQL extension for Node.js.
//
// Trusted request code says which boundary token the request runs under; the driver helpers
// (`agent-boundary/pg`, `agent-boundary/postgres`) put it on every transaction that request's
// code runs, with `SELECT boundary.enter($1)` as the transaction's first statement:
//
//   await boundary.request(token, () => agent.invoke(question));
//
// The token lives in an AsyncLocalStorage: every promise, callback and timer started inside
// `request` sees it, concurrent requests never see each other's.
import { AsyncLocalStorage } from 'node:async_hooks';
import { createHmac } from 'node:crypto';

/** The statement every helper runs first in a transaction. */
export const ENTER_SQL = 'SELECT boundary.enter($1) IS NOT NULL';

/** Makes a stray enter outside a transaction block an error (25P01) on a connection. */
export const STRICT_SQL = 'SET agent_boundary.enter_requires_transaction_block = on';

/** A helper was used in a way that would lose the boundary. */
export class BoundaryUsageError extends Error {
  constructor(message) {
    super(message);
    this.name = 'BoundaryUsageError';
  }
}

const store = new AsyncLocalStorage();

/** Runs `fn` as one request under `token` (a signed boundary token) and returns its result. */
export function request(token, fn) {
  if (typeof token !== 'string' || token === '') {
    throw new BoundaryUsageError('request() needs the boundary token as a non-empty string');
  }
  return store.run(token, fn);
}

/** The boundary token of the running request, or undefined outside one. */
export function currentToken() {
  return store.getStore();
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/**
 * The HMAC secret as bytes from what `boundary.generate_signing_key` returned (base64 text),
 * or a Buffer as is. Signing with the base64 text itself is the classic mistake: every token
 * would be refused.
 */
export function signingSecret(secret) {
  if (Buffer.isBuffer(secret)) return secret;
  if (typeof secret !== 'string' || secret === '' || !BASE64.test(secret)) {
    throw new BoundaryUsageError(
      'the secret is not base64; pass what boundary.generate_signing_key returned, or a Buffer',
    );
  }
  return Buffer.from(secret, 'base64');
}

const base64url = (value) => Buffer.from(value).toString('base64url');

/**
 * A boundary token (HS256 JWT) for one request, signed with the key `kid`.
 * `claims` needs tenant_id, workspace_id, user_id and role, and may add trace_id, run_id,
 * tool_ids, datasource_ids and the rest; `ttlSeconds` sets exp (default 300).
 */
export function mintToken(secret, kid, claims, { ttlSeconds = 300 } = {}) {
  for (const name of ['tenant_id', 'workspace_id', 'user_id', 'role']) {
    if (typeof claims?.[name] !== 'string' || claims[name] === '') {
      throw new BoundaryUsageError(`mintToken needs claims.${name} as a non-empty string`);
    }
  }
  const now = Math.floor(Date.now() / 1000);
  const header = base64url(JSON.stringify({ alg: 'HS256', typ: 'JWT', kid }));
  const payload = base64url(
    JSON.stringify({ aud: 'agent_boundary', iat: now, exp: now + Math.trunc(ttlSeconds), ...claims }),
  );
  const signature = createHmac('sha256', signingSecret(secret)).update(`${header}.${payload}`).digest('base64url');
  return `${header}.${payload}.${signature}`;
}
