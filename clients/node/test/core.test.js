import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BoundaryUsageError, currentToken, mintToken, request, signingSecret } from '../index.js';
import { transactionEffect } from '../statements.js';
import { KID, SECRET } from './support.js';

test('a request carries its token through awaits and timers, and no further', async () => {
  const seen = await Promise.all(
    ['a', 'b', 'c'].map((t) =>
      request(t, async () => {
        await new Promise((resolve) => setTimeout(resolve, 5));
        return currentToken();
      }),
    ),
  );
  assert.deepEqual(seen, ['a', 'b', 'c']);
  assert.equal(currentToken(), undefined);
});

test('bad input to request and mintToken is refused before it reaches the server', () => {
  assert.throws(() => request('', () => {}), BoundaryUsageError);
  assert.throws(() => request(undefined, () => {}), BoundaryUsageError);
  assert.throws(() => signingSecret('not base64!'), /the secret is not base64/);
  assert.throws(() => mintToken(SECRET, KID, { tenant_id: 't', workspace_id: 'w', user_id: 'u' }), /claims\.role/);
  assert.throws(
    () => mintToken(SECRET, KID, { tenant_id: 't\u0000', workspace_id: 'w', user_id: 'u', role: 7 }),
    /claims\.role/,
  );
});

test('a minted token is an HS256 JWT over the decoded secret, with its kid and audience', () => {
  const jwt = mintToken(SECRET, KID, { tenant_id: 't', workspace_id: 'w', user_id: 'u', role: 'admin', trace_id: 'x' });
  const [header, payload] = jwt.split('.').slice(0, 2).map((part) => JSON.parse(Buffer.from(part, 'base64url')));
  assert.deepEqual(header, { alg: 'HS256', typ: 'JWT', kid: KID });
  assert.equal(payload.aud, 'agent_boundary');
  assert.equal(payload.trace_id, 'x');
  assert.equal(payload.exp - payload.iat, 300);
});

test('statements are classified by what they do to the transaction block', () => {
  const cases = {
    BEGIN: 'begin',
    '  /* c */ -- x\n begin isolation level serializable': 'begin',
    'START TRANSACTION READ ONLY': 'begin',
    'commit': 'end',
    'END': 'end',
    'ABORT': 'end',
    'ROLLBACK': 'end',
    "PREPARE TRANSACTION 'x'": 'end',
    'ROLLBACK TO SAVEPOINT a': null,
    "COMMIT PREPARED 'x'": null,
    'SAVEPOINT a': null,
    'SELECT 1': null,
    'PREPARE q AS SELECT 1': null,
    'beginning': null,
  };
  for (const [text, effect] of Object.entries(cases)) assert.equal(transactionEffect(text), effect, text);
});
