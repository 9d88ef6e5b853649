/** The master's counters (src/master/stats.ts): totals that survive workers, and restart reasons. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { WorkerExit } from '../../src/ipc.js';
import { emptyStats, foldStats, restartReason } from '../../src/master/stats.js';

test('the totals of exited workers add up every counter, histogram buckets included', () => {
  const total = emptyStats();
  foldStats(total, {
    ...emptyStats(),
    requests: 3,
    durationSum: 0.5,
    appErrors: 1,
    status: [0, 2, 0, 1, 0],
    buckets: [1, 2],
  });
  foldStats(total, { ...emptyStats(), requests: 4, durationSum: 1, status: [0, 4, 0, 0, 0], buckets: [0, 1, 3] });
  assert.deepEqual(total, {
    ...emptyStats(),
    requests: 7,
    durationSum: 1.5,
    appErrors: 1,
    status: [0, 6, 0, 1, 0],
    buckets: [1, 3, 3],
  });
});

test('a worker the master stopped counts under why it was stopped; a shutdown counts as no restart', () => {
  const stopped = { expected: true, bootError: false, exitCode: 0 };
  assert.equal(restartReason({ ...stopped, why: 'max-requests' }), 'max-requests');
  assert.equal(restartReason({ ...stopped, why: 'scale down' }), 'scale');
  assert.equal(restartReason({ ...stopped, why: 'app error' }), 'app-error');
  assert.equal(restartReason({ ...stopped, why: 'shutdown' }), undefined);
  assert.equal(restartReason({ ...stopped, why: null }), undefined, 'stopped while the master stops');
});

test('a worker that died by itself is a crash, or a boot failure when it says so or exits with a boot exit code', () => {
  const died = { expected: false, why: null };
  assert.equal(restartReason({ ...died, bootError: false, exitCode: 1 }), 'crash');
  assert.equal(restartReason({ ...died, bootError: false, exitCode: null }), 'crash');
  assert.equal(restartReason({ ...died, bootError: true, exitCode: 1 }), 'boot-failure');
  assert.equal(restartReason({ ...died, bootError: false, exitCode: WorkerExit.APP_LOAD_ERROR }), 'boot-failure');
  assert.equal(restartReason({ ...died, bootError: false, exitCode: WorkerExit.BOOT_ERROR }), 'boot-failure');
});
