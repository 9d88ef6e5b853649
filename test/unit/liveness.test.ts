/** When the master judges a worker stuck (src/master/liveness.ts). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { late, stuck } from '../../src/master/liveness.js';

const limits = { timeout: 30, boot_timeout: 60 };

test('a booting worker is stuck past boot_timeout, counted from its spawn; heartbeats do not count while it boots', () => {
  const w = { pid: 10, state: 'booting' as const, spawnedAt: 0, lastBeat: 59_000 };
  assert.equal(stuck(w, limits, 60_000), null);
  assert.deepEqual(stuck(w, limits, 60_001), {
    reason: 'boot-timeout',
    message: 'Worker (pid:10) did not boot within boot_timeout (60 s)',
  });
  assert.equal(stuck(w, { ...limits, boot_timeout: 0 }, 10_000_000), null, 'boot_timeout 0 waits forever');
});

test('a ready worker is stuck once silent past timeout, counted from its last heartbeat', () => {
  const w = { pid: 11, state: 'ready' as const, spawnedAt: 0, lastBeat: 100_000 };
  assert.equal(stuck(w, limits, 130_000), null);
  assert.deepEqual(stuck(w, limits, 131_500), {
    reason: 'timeout',
    message: 'WORKER TIMEOUT (pid:11): no heartbeat for 31.5 s (timeout 30 s)',
  });
  assert.equal(stuck(w, { ...limits, timeout: 0 }, 10_000_000), null, 'timeout 0 turns the check off');
});

test('a draining worker is never stuck: it is leaving, under its own kill timer', () => {
  assert.equal(stuck({ pid: 12, state: 'draining', spawnedAt: 0, lastBeat: 0 }, limits, 10_000_000), null);
});

test('a worker is late half way to stuck: its watchdog thread is told to get ready, and not before', () => {
  const booting = { state: 'booting' as const, spawnedAt: 0, lastBeat: 0 };
  assert.equal(late(booting, limits, 30_000), false);
  assert.equal(late(booting, limits, 30_001), true, 'half of boot_timeout (60 s)');
  assert.equal(late(booting, { ...limits, boot_timeout: 0 }, 10_000_000), false);
  const ready = { state: 'ready' as const, spawnedAt: 0, lastBeat: 100_000 };
  assert.equal(late(ready, limits, 115_000), false);
  assert.equal(late(ready, limits, 115_001), true, 'half of timeout (30 s) since the last heartbeat');
  assert.equal(late(ready, { ...limits, timeout: 0 }, 10_000_000), false);
  assert.equal(late({ ...ready, state: 'draining' }, limits, 10_000_000), false);
});
