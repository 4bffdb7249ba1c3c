// node-postgres (`pg`): every statement a request sends runs inside its boundary.
//
// One line at start-up, for a pool or a single client:
//
//   const pool = boundaryPg.wrap(new pg.Pool(config));
//
// Inside `boundary.request(token, fn)`, a statement sent outside a transaction block gets a
// block of its own (BEGIN; enter; the statement; COMMIT), and the first statement after the
// application's own BEGIN is preceded by `SELECT boundary.enter($1)`. Outside a request nothing
// is entered and protected tables fail closed (42501). A refused token rejects the statement
// that needed it with the server's error (28000 or 42501, with its reason and hint).
import { BoundaryUsageError, ENTER_SQL, STRICT_SQL, currentToken } from './index.js';
import { transactionEffect } from './statements.js';

const STATE = Symbol('agent_boundary');

const swallow = () => {};

/** Wraps a `pg.Pool` (its future clients) or a `pg.Client`; returns it. */
export function wrap(poolOrClient) {
  if (typeof poolOrClient?.on !== 'function' || typeof poolOrClient?.query !== 'function') {
    throw new BoundaryUsageError('wrap() takes a pg.Pool or a pg.Client');
  }
  if (typeof poolOrClient.totalCount === 'number') {
    poolOrClient.on('connect', (client) => instrument(client));
    instrumentPoolQuery(poolOrClient);
  } else {
    instrument(poolOrClient);
  }
  return poolOrClient;
}

// pg-pool runs a queued `pool.query` from the releasing caller's callback, so the statement would
// read that caller's request (another tenant's token). Awaiting the client here keeps our own.
function instrumentPoolQuery(pool) {
  const original = pool.query.bind(pool);
  pool.query = function query(config, values, callback) {
    if (typeof config?.submit === 'function') return original(config, values, callback);
    if (typeof values === 'function') {
      callback = values;
      values = undefined;
    }
    const result = queryOnACheckedOutClient(pool, config, values);
    if (callback) {
      result.then((res) => callback(null, res), (err) => callback(err));
      return undefined;
    }
    return result;
  };
}

async function queryOnACheckedOutClient(pool, config, values) {
  const client = await pool.connect();
  try {
    const result = await client.query(config, values);
    client.release();
    return result;
  } catch (error) {
    // As pg-pool's own query does: a client whose statement failed is not reused.
    client.release(error);
    throw error;
  }
}

function instrument(client) {
  if (client[STATE]) return client;
  const send = client.query.bind(client);
  // Tracked in the order statements are sent: whether the next one runs in the application's
  // block, and which token that block entered.
  const state = { send, inBlock: false, entered: undefined };
  client[STATE] = state;
  send(STRICT_SQL).catch(swallow);
  client.query = function query(config, values, callback) {
    if (typeof values === 'function') {
      callback = values;
      values = undefined;
    }
    const text = typeof config === 'string' ? config : config?.text;
    const token = currentToken();
    const effect = transactionEffect(text ?? '');
    if (effect !== null) {
      state.inBlock = effect === 'begin';
      state.entered = undefined;
      return send(config, values, callback);
    }
    if (token === undefined) return send(config, values, callback);
    if (typeof config?.submit === 'function') {
      // A cursor or stream: queued after the enter, so it runs inside the boundary.
      if (!state.inBlock) {
        throw new BoundaryUsageError('open a transaction (BEGIN) before a cursor or stream in a request');
      }
      if (state.entered !== token) {
        send(ENTER_SQL, [token]).catch(swallow);
        state.entered = token;
      }
      return send(config, values);
    }
    const result = state.inBlock ? inBlock(state, token, config, values) : ownBlock(state, token, config, values);
    if (callback) {
      result.then((res) => callback(null, res), (err) => callback(err));
      return undefined;
    }
    return result;
  };
  return client;
}

// Every statement is queued at once, so nothing another caller sends can come in between.
function inBlock(state, token, config, values) {
  if (state.entered === token) return state.send(config, values);
  state.entered = token;
  const entered = state.send(ENTER_SQL, [token]);
  const run = state.send(config, values);
  return firstErrorOr([entered, run], 1);
}

function ownBlock(state, token, config, values) {
  const begun = state.send('BEGIN');
  const entered = state.send(ENTER_SQL, [token]);
  const run = state.send(config, values);
  // After a failed statement COMMIT rolls the block back (and reports no error).
  const committed = state.send('COMMIT');
  return firstErrorOr([begun, entered, run, committed], 2);
}

/** The result of `steps[wanted]` (the application's statement) once all have run, or the first
 * error: a token's refusal rather than the "transaction is aborted" that follows it. */
async function firstErrorOr(steps, wanted) {
  const outcomes = await Promise.allSettled(steps);
  const failed = outcomes.find((o) => o.status === 'rejected');
  if (failed) throw failed.reason;
  return outcomes[wanted].value;
}

/**
 * Runs `fn(client)` in one transaction that enters the request's boundary first, on a client
 * checked out of `pool` (released after) or on the given client; COMMIT on success, ROLLBACK on
 * error. Needs a request.
 */
export async function transaction(poolOrClient, fn) {
  if (currentToken() === undefined) {
    throw new BoundaryUsageError('transaction() runs inside boundary.request(token, ...)');
  }
  const pooled = typeof poolOrClient.totalCount === 'number';
  const client = pooled ? await poolOrClient.connect() : poolOrClient;
  instrument(client);
  try {
    await client.query('BEGIN');
    try {
      const result = await fn(client);
      await client.query('COMMIT');
      return result;
    } catch (error) {
      await client.query('ROLLBACK').catch(swallow);
      throw error;
    }
  } finally {
    if (pooled) client.release();
  }
}
