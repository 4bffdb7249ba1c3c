// postgres.js through the helper against a real server, the same contract as test/pg.test.js.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, test } from 'node:test';
import postgres from 'postgres';
import { request } from '../index.js';
import * as boundaryPostgres from '../postgres.js';
import { ADMIN_DSN, APP_DSN, DENTAL_NOTES, DESIGN_NOTES, NO_BOUNDARY, dental, design } from './support.js';

const sql = boundaryPostgres.wrap(postgres(APP_DSN, { max: 2, onnotice: () => {} }));
const admin = postgres(ADMIN_DSN, { max: 1, onnotice: () => {} });
after(() => Promise.all([sql.end(), admin.end()]));

const notes = async () => (await sql`SELECT body FROM notes ORDER BY body`).map((row) => row.body);

test('tagged queries in a request see only their tenant; outside one they fail closed', async () => {
  assert.deepEqual(await request(dental(), notes), DENTAL_NOTES);
  assert.deepEqual(await request(design(), notes), DESIGN_NOTES);
  await assert.rejects(notes(), (error) => error.code === '42501' && NO_BOUNDARY.test(error.message));
  assert.deepEqual(
    (await request(design(), () => sql.unsafe('SELECT body FROM notes ORDER BY body'))).map((r) => r.body),
    DESIGN_NOTES,
  );
});

test('sql.begin enters before the callback, and inserts land in the tenant', async () => {
  const marker = `postgresjs-${randomUUID()}`;
  await request(dental(), () =>
    sql.begin(async (tx) => {
      await tx`INSERT INTO notes ${sql({ body: marker })}`;
      const [{ n }] = await tx`SELECT count(*)::int AS n FROM notes WHERE body = ${marker}`;
      assert.equal(n, 1);
    }),
  );
  const rows = await admin`SELECT tenant_id FROM notes WHERE body = ${marker}`;
  assert.deepEqual(rows.map((r) => r.tenant_id), ['northstar-dental']);
  assert.deepEqual(await request(design(), async () => sql`SELECT 1 FROM notes WHERE body = ${marker}`).then((r) => r.length), 0);
  await admin`DELETE FROM notes WHERE body = ${marker}`;
});

test('concurrent requests never see each other’s rows', async () => {
  const runs = Array.from({ length: 24 }, (_, i) => (i % 2 ? ['design', design()] : ['dental', dental()]));
  const seen = await Promise.all(runs.map(([name, t]) => request(t, async () => [name, await notes()])));
  for (const [name, rows] of seen) assert.deepEqual(rows, name === 'dental' ? DENTAL_NOTES : DESIGN_NOTES);
});

test('a refused token rejects the query with the server’s reason', async () => {
  const forged = `${dental().slice(0, -4)}AAAA`;
  await assert.rejects(request(forged, notes), (error) => {
    assert.equal(error.code, '28000');
    assert.match(error.message, /signature does not verify/);
    return true;
  });
  assert.deepEqual(await request(dental(), notes), DENTAL_NOTES);
});
