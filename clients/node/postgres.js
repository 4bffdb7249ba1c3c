// postgres.js: every query a request sends runs inside its boundary.
//
// One line at start-up:
//
//   const sql = boundaryPostgres.wrap(postgres(url, options));
//
// Inside `boundary.request(token, fn)`, a tagged query or `sql.unsafe(...)` runs in a
// transaction of its own that enters first, and `sql.begin(tx => ...)` enters before the
// callback; queries on `tx` are inside that boundary. Outside a request the queries run as they
// are and protected tables fail closed (42501). `sql.reserve()` connections and cursors need
// `sql.begin`. Behind pgbouncer < 1.21 create the client with `prepare: false`.
import { BoundaryUsageError, ENTER_SQL, currentToken } from './index.js';

const isTemplate = (first) => Array.isArray(first) && Array.isArray(first.raw);

async function entered(tx, token) {
  await tx.unsafe(ENTER_SQL, [token]);
  return tx;
}

/** Wraps a postgres.js `sql` instance; returns the wrapped one (use it instead). */
export function wrap(sql) {
  if (typeof sql !== 'function' || typeof sql.begin !== 'function') {
    throw new BoundaryUsageError('wrap() takes the sql function postgres(...) returned');
  }
  const begin = (...args) => {
    const token = currentToken();
    const fn = args.pop();
    if (typeof fn !== 'function') throw new BoundaryUsageError('sql.begin needs a callback');
    if (token === undefined) return sql.begin(...args, fn);
    return sql.begin(...args, async (tx) => fn(await entered(tx, token)));
  };
  const unsafe = (...args) => {
    const token = currentToken();
    if (token === undefined) return sql.unsafe(...args);
    return sql.begin(async (tx) => (await entered(tx, token)).unsafe(...args));
  };
  return new Proxy(sql, {
    apply(target, self, args) {
      const token = currentToken();
      // sql(identifier) and sql(values) build fragments for a query; only templates run.
      if (token === undefined || !isTemplate(args[0])) return Reflect.apply(target, self, args);
      return sql.begin(async (tx) => (await entered(tx, token))(...args));
    },
    get(target, property, receiver) {
      if (property === 'begin') return begin;
      if (property === 'unsafe') return unsafe;
      return Reflect.get(target, property, receiver);
    },
  });
}
