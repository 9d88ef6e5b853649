/** balance_connections' decisions (src/master/balance.ts): who sheds how many connections. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BALANCE_EVERY_MS, shedOrders, type BalancedWorker } from '../../src/master/balance.js';
import { emptyStats } from '../../src/master/stats.js';

function worker(connections: number, over: Partial<BalancedWorker> = {}): BalancedWorker & { name: string } {
  return {
    name: `w${connections}`,
    state: 'ready',
    generation: 1,
    outgoing: null,
    stats: { ...emptyStats(), connections, requests: 1000 },
    child: { connected: true },
    shedAt: 0,
    shedAtRequests: 0,
    shedCount: 0,
    ...over,
  };
}

const NOW = 100_000;

test('a worker holding over 10 % more than its share is asked to close the surplus', () => {
  const orders = shedOrders([worker(90), worker(10)], 1, NOW);
  assert.deepEqual(
    orders.map((o) => [o.worker.name, o.count, o.held, o.total]),
    [['w90', 40, 90, 100]],
  );
  assert.deepEqual(shedOrders([worker(54), worker(46)], 1, NOW), [], 'within 10 % of the share: left alone');
});

test('nothing moves while the pool is changing: a booting, an outgoing or an older-generation worker', () => {
  assert.deepEqual(shedOrders([worker(90), worker(10, { state: 'booting' })], 1, NOW), []);
  assert.deepEqual(shedOrders([worker(90), worker(10, { outgoing: 'max-requests' })], 1, NOW), []);
  assert.deepEqual(shedOrders([worker(90), worker(10)], 2, NOW), []);
  assert.deepEqual(shedOrders([worker(90)], 1, NOW), [], 'one worker has nowhere to send them');
});

test('a worker is asked again only after BALANCE_EVERY_MS and after serving as many requests as it was asked to close', () => {
  const recent = worker(90, { shedAt: NOW - BALANCE_EVERY_MS + 1 });
  assert.deepEqual(shedOrders([recent, worker(10)], 1, NOW), []);
  const idle = worker(90, { shedAt: NOW - 10_000, shedAtRequests: 990, shedCount: 40 });
  assert.deepEqual(shedOrders([idle, worker(10)], 1, NOW), [], 'served 10 requests since being asked to close 40');
  const acted = worker(90, { shedAt: NOW - 10_000, shedAtRequests: 960, shedCount: 40 });
  assert.equal(shedOrders([acted, worker(10)], 1, NOW).length, 1);
  assert.deepEqual(
    shedOrders([worker(90, { child: { connected: false } }), worker(10)], 1, NOW),
    [],
    'no channel to send the order on',
  );
});
