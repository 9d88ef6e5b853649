/**
 * The watchdog pipe protocol (src/worker/watchdog-pipe.cts): the master's end against the
 * thread's end over in-memory streams. The real thread, pausing a blocked worker, is in
 * test/integration/liveness.test.ts.
 */
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';
import watchdogPipe from '../../src/worker/watchdog-pipe.cjs';

/** Two ends of a pipe: what one writes, the other reads. */
function pipePair() {
  const toThread = new PassThrough();
  const toMaster = new PassThrough();
  const end = (send: PassThrough, receive: PassThrough) => ({
    destroyed: false,
    write: (data: string) => send.write(data),
    on: (event: 'data', fn: (chunk: Buffer | string) => void) => receive.on(event, fn),
    off: (event: 'data', fn: (chunk: Buffer | string) => void) => receive.off(event, fn),
  });
  return { master: end(toThread, toMaster), thread: end(toMaster, toThread), toMaster, toThread };
}

const ask = (
  pipe: Parameters<typeof watchdogPipe.requestStack>[0],
  timing = { ackMs: 100, captureMs: 2000 },
): Promise<string[]> => new Promise((resolve) => watchdogPipe.requestStack(pipe, resolve, timing));

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

test('the stack the thread takes reaches the master, even when taking it outlasts the wait for an acknowledgement', async () => {
  const { master, thread } = pipePair();
  watchdogPipe.serveStackRequests(thread, async () => {
    await delay(300);
    return ['at spin (file:///app/main.js:3:9)', 'at handler (file:///app/main.js:10:3)'];
  });
  assert.deepEqual(await ask(master), ['at spin (file:///app/main.js:3:9)', 'at handler (file:///app/main.js:10:3)']);
});

test('a thread that does not acknowledge, or acknowledges and sends nothing, leaves the master with no frames', async () => {
  const silent = pipePair();
  assert.deepEqual(await ask(silent.master), []);

  const stalls = pipePair();
  watchdogPipe.serveStackRequests(stalls.thread, () => new Promise(() => {}));
  assert.deepEqual(await ask(stalls.master, { ackMs: 50, captureMs: 150 }), []);
});

test('a capture that fails answers with no frames, and the error', async () => {
  const { master, thread, toMaster } = pipePair();
  const replies: string[] = [];
  toMaster.on('data', (c: Buffer) => replies.push(c.toString()));
  watchdogPipe.serveStackRequests(thread, () => Promise.reject(new Error('not paused')));
  assert.deepEqual(await ask(master), []);
  assert.deepEqual(
    replies
      .join('')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l)),
    [{ ack: true }, { frames: [], error: 'Error: not paused' }],
  );
});

test('replies split anywhere, inside a multi-byte character too, are read whole; an unreadable reply ends the wait', async () => {
  const { master, toMaster, toThread } = pipePair();
  const requests: string[] = [];
  toThread.on('data', (c: Buffer) => requests.push(c.toString()));
  const frames = ask(master);
  const reply = Buffer.from('{"ack":true}\n{"frames":["at café (file:///app/é.js:1:1)"]}\n');
  for (const byte of reply) toMaster.write(Buffer.from([byte]));
  assert.deepEqual(await frames, ['at café (file:///app/é.js:1:1)']);
  assert.deepEqual(requests, ['stack\n']);

  const garbled = pipePair();
  const none = ask(garbled.master, { ackMs: 60_000, captureMs: 60_000 });
  garbled.toMaster.write('Debugger listening on ws://...\n');
  assert.deepEqual(await none, []);
});

test('no pipe (liveness checks off, or the worker closed it): no frames, at once', () => {
  let frames: string[] | null = null;
  watchdogPipe.requestStack(null, (f) => (frames = f));
  assert.deepEqual(frames, []);
});

test('warm requests reach the thread unanswered, between stack requests, however the stream splits them', async () => {
  const { master, thread, toMaster, toThread } = pipePair();
  let warmed = 0;
  const replies: string[] = [];
  toMaster.on('data', (c: Buffer) => replies.push(c.toString()));
  watchdogPipe.serveStackRequests(
    thread,
    async () => ['at f (file:///a.js:1:1)'],
    () => warmed++,
  );
  watchdogPipe.warmUp(master);
  toThread.write('wa');
  toThread.write('rm\n');
  await delay(10);
  assert.equal(warmed, 2);
  assert.deepEqual(replies, [], 'a warm request has no answer');
  assert.deepEqual(await ask(master), ['at f (file:///a.js:1:1)']);
  watchdogPipe.warmUp(null);
  watchdogPipe.warmUp({ ...master, destroyed: true });
  await delay(10);
  assert.equal(warmed, 2, 'no pipe, or a closed one: nothing is written');
});
