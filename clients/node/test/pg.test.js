// node-postgres through the helper against a real server: two lookalike tenants, the same
// queries, each sees and writes only its own rows; no request, no rows; a pooled connection
// carries nothing over; a refused token is the server's error, not a hang.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, test } from 'node:test';
import pg from 'pg';
import { request } from '../index.js';
import * as boundaryPg from '../pg.js';
import { ADMIN_DSN, APP_DSN, DENTAL_NOTES, DESIGN_NOTES, NOTES, NO_BOUNDARY, dental, design, token } from './support.js';

const pool = boundaryPg.wrap(new pg.Pool({ connectionString: APP_DSN, max: 2 }));
const admin = new pg.Pool({ connectionString: ADMIN_DSN, max: 1 });
after(() => Promise.all([pool.end(), admin.end()]));

const bodies = (result) => result.rows.map((row) => row.body);

async function tenantOf(body) {
  const { rows } = await admin.query('SELECT tenant_id FROM notes WHERE body = $1', [body]);
  return rows.map((row) => row.tenant_id);
}

test('pool.query in a request sees only its tenant; outside one it fails closed', async () => {
  assert.deepEqual(bodies(await request(dental(), () => pool.query(NOTES))), DENTAL_NOTES);
  assert.deepEqual(bodies(await request(design(), () => pool.query(NOTES))), DESIGN_NOTES);
  await assert.rejects(pool.query(NOTES), (error) => error.code === '42501' && NO_BOUNDARY.test(error.message));
});

test('callback-style queries enter too', async () => {
  const rows = await request(
    dental(),
    () => new Promise((resolve, reject) => pool.query(NOTES, (error, result) => (error ? reject(error) : resolve(result)))),
  );
  assert.deepEqual(bodies(rows), DENTAL_NOTES);
});

test('the application’s own transaction enters once, and its inserts land in its tenant', async () => {
  const marker = `pg-${randomUUID()}`;
  const client = await pool.connect();
  try {
    await request(design(), async () => {
      await client.query('BEGIN');
      await client.query('INSERT INTO notes (body) VALUES ($1)', [marker]);
      const { rows } = await client.query("SELECT count(*)::int AS n FROM notes WHERE body LIKE 'pg-%'");
      assert.ok(rows[0].n >= 1);
      await client.query('COMMIT');
    });
    // The same client, next request, another tenant: the earlier boundary is gone with its block.
    await request(dental(), async () => {
      assert.deepEqual(bodies(await client.query('SELECT body FROM notes WHERE body = $1', [marker])), []);
    });
    await assert.rejects(client.query(NOTES), (error) => error.code === '42501');
  } finally {
    client.release();
  }
  assert.deepEqual(await tenantOf(marker), ['northstar-design']);
  await admin.query('DELETE FROM notes WHERE body = $1', [marker]);
});

test('statements queued without awaiting keep their order and their boundary', async () => {
  const client = await pool.connect();
  try {
    const results = await request(dental(), () =>
      Promise.all([client.query('BEGIN'), client.query(NOTES), client.query(NOTES), client.query('COMMIT')]),
    );
    assert.deepEqual(bodies(results[1]), DENTAL_NOTES);
    assert.deepEqual(bodies(results[2]), DENTAL_NOTES);
  } finally {
    client.release();
  }
});

test('concurrent requests on a small pool never see each other’s rows', async () => {
  const runs = Array.from({ length: 24 }, (_, i) => (i % 2 ? ['design', design()] : ['dental', dental()]));
  const seen = await Promise.all(runs.map(([name, t]) => request(t, async () => [name, bodies(await pool.query(NOTES))])));
  for (const [name, rows] of seen) assert.deepEqual(rows, name === 'dental' ? DENTAL_NOTES : DESIGN_NOTES);
});

test('a refused token rejects the statement with the server’s reason, and the pool goes on', async () => {
  const forged = `${dental().slice(0, -4)}AAAA`;
  await assert.rejects(request(forged, () => pool.query(NOTES)), (error) => {
    assert.equal(error.code, '28000');
    assert.match(error.message, /agent boundary token refused: signature does not verify/);
    return true;
  });
  const base64Text = token('northstar-dental', { secret: Buffer.from(process.env.AGENT_BOUNDARY_SECRET) });
  await assert.rejects(request(base64Text, () => pool.query(NOTES)), (error) => {
    assert.equal(error.code, '28000');
    assert.match(error.hint, /base64-decode what generate_signing_key returned/);
    return true;
  });
  assert.deepEqual(bodies(await request(dental(), () => pool.query(NOTES))), DENTAL_NOTES);
});

test('connections refuse a stray enter outside a block, and tool ids bind as numbers', async () => {
  const { rows } = await pool.query('SHOW agent_boundary.enter_requires_transaction_block');
  assert.equal(rows[0]['agent_boundary.enter_requires_transaction_block'], 'on');
  const [{ id: ownId }] = (await admin.query("SELECT id::int AS id FROM notes WHERE tenant_id = 'northstar-dental' LIMIT 1")).rows;
  const [{ id: otherId }] = (await admin.query("SELECT id::int AS id FROM notes WHERE tenant_id = 'northstar-design' LIMIT 1")).rows;
  for (const statement of ["SELECT boundary.assert_in('notes', $1) AS id", "SELECT boundary.assert_in('notes', $1::int) AS id"]) {
    await request(dental(), async () => {
      assert.deepEqual((await pool.query(statement, [ownId])).rows, [{ id: String(ownId) }]);
      await assert.rejects(pool.query(statement, [otherId]), (error) => {
        assert.equal(error.code, '42501');
        assert.match(error.message, /is outside current boundary/);
        return true;
      });
    });
  }
});
