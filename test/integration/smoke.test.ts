import assert from 'node:assert/strict';
import { test } from 'node:test';
import { request, Tsgun } from '../helpers.js';

test('serves an express app with 2 workers and stops on TERM', async () => {
  const t = new Tsgun(['-w', '2', '-b', '127.0.0.1:0', 'express-app:app']);
  const url = await t.ready(2);
  const reply = await request(url);
  assert.equal(reply.status, 200);
  assert.match(reply.body, /^express \d+$/);
  assert.equal((await t.workerPids()).length, 2);
  const { code } = await t.stop();
  assert.equal(code, 0);
});
