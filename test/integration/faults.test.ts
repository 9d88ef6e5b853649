/**
 * Faults (issue 18, findings 5 and 8; DESIGN.md "Draining without failed requests",
 * "Processes"), with real processes, signals and HTTP: a request that throws or rejects
 * gets a 500 and harms nothing else; an error outside any request, or process.exit() from
 * the app, drains the worker (its other requests finish) while a new one replaces it,
 * without restart backoff; a worker follows its master, finishing its requests when its
 * loop is free and killed by its watchdog thread when it is blocked, so the port is freed.
 *
 * The app is test/fixtures/faults/app.ts. Each fault is sent while 20 slow requests
 * (1.5 s each) are in flight on the same worker (-w 1).
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import {
  alive,
  FIXTURES,
  hit,
  readIfExists,
  type Reply,
  request,
  scratchDir,
  sleep,
  Tsgun,
  waitFor,
} from '../helpers.js';

const APP = 'faults/app:app';
const SLOW = 20;

/** A worker orphaned by a failed test must not spin on. */
function reap(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // Gone, as it should be.
  }
}

/** Start SLOW requests to `/slow` and give them time to reach the worker. */
async function slowRequests(url: string): Promise<Array<Promise<Reply | Error>>> {
  const pending = Array.from({ length: SLOW }, () => request(url, { path: '/slow' }).catch((err: Error) => err));
  await sleep(400);
  return pending;
}

/** Every slow request was answered 200 by worker `pid`. */
async function allServed(pending: Array<Promise<Reply | Error>>, pid: number): Promise<void> {
  const replies = await Promise.all(pending);
  const failed = replies.filter((r) => r instanceof Error || r.status !== 200 || r.body !== `slow ${pid}`);
  const why = failed.map((r) => (r instanceof Error ? r.message : `${r.status} ${r.body}`));
  assert.deepEqual(why, [], `all ${SLOW} slow requests answered by worker ${pid}`);
}

/** tsgun with its log in a file (--error-logfile): the url and metrics url once a worker is ready. */
async function startLogged(
  file: string,
  extra: string[] = [],
  app = APP,
): Promise<{ t: Tsgun; url: string; metrics: string }> {
  const t = new Tsgun([
    '-w',
    '1',
    '-b',
    '127.0.0.1:0',
    '--metrics-bind',
    '127.0.0.1:0',
    '--error-logfile',
    file,
    ...extra,
    app,
  ]);
  const text = await waitFor(
    () => {
      const s = readIfExists(file);
      return s.includes('Booting worker with pid') ? s : null;
    },
    'a Booting line in the error log',
    30_000,
  );
  const url = /"msg":"Listening at: (http:\/\/[^ ]+) \(/.exec(text)![1]!;
  const metrics = /"msg":"Metrics at: (http:\/\/[^"]+)"/.exec(text)![1]!;
  return { t, url, metrics };
}

/** The value of `tsgun_app_errors_total` for one worker, from /metrics. */
async function appErrors(metrics: string, worker: number): Promise<number> {
  const body = (await request(metrics)).body;
  return Number(new RegExp(`^tsgun_app_errors_total\\{worker="${worker}"\\} (\\d+)$`, 'm').exec(body)?.[1] ?? NaN);
}

test('a throw or a rejection while handling a request is a 500 for that request alone; the stack is in the error log and counted', async (ctx) => {
  const log = path.join(scratchDir(), 'error.log');
  const { t, url, metrics } = await startLogged(log);
  ctx.after(() => t.kill());
  const pid = await hit(url);

  const pending = await slowRequests(url);
  const thrown = await request(url, { path: '/throw' });
  assert.equal(thrown.status, 500, thrown.body);
  assert.equal(thrown.body, 'Internal Server Error');
  const rejected = await request(url, { path: '/reject' });
  assert.equal(rejected.status, 500, rejected.body);
  // Too late for a 500: the connection is cut, so the client cannot take the partial body for a whole one.
  await assert.rejects(request(url, { path: '/throw-after-head' }), /aborted|socket hang up|ECONNRESET/);
  await allServed(pending, pid);
  assert.equal(await hit(url), pid, 'the same worker serves the next request');
  assert.ok(alive(pid));

  const text = readIfExists(log);
  assert.match(text, /"msg":"Error handling request GET \/throw: route threw"/);
  assert.match(text, /at throwsInRoute \(/, 'the stack of the throw is in the error log');
  assert.match(text, /at rejectsInRoute \(/, 'the stack of the rejection is in the error log');
  assert.doesNotMatch(t.stderr, /throwsInRoute|rejectsInRoute/, 'nothing on raw stderr');
  await waitFor(
    async () => (await appErrors(metrics, 1)) === 3,
    'tsgun_app_errors_total{worker="1"} 3 in /metrics',
    10_000,
  );
  assert.equal((await t.stop()).code, 0);
});

test('a fetch handler that throws or rejects: a 500, its stack in the error log, counted in /metrics', async (ctx) => {
  const log = path.join(scratchDir(), 'error.log');
  const { t, url, metrics } = await startLogged(log, [], 'faults/fetch-app');
  ctx.after(() => t.kill());
  const pid = await hit(url);
  for (const p of ['/throw', '/reject']) assert.equal((await request(url, { path: p })).status, 500);
  assert.equal(await hit(url), pid);
  assert.match(readIfExists(log), /at fetchThrows \(/);
  await waitFor(
    async () => (await appErrors(metrics, 1)) === 2,
    'tsgun_app_errors_total{worker="1"} 2 in /metrics',
    10_000,
  );
  assert.equal((await t.stop()).code, 0);
});

for (const fault of [
  {
    path: '/timer-throw',
    what: 'an uncaught exception from a timer',
    status: 200,
    fn: 'throwsFromTimer',
    line: /"msg":"Uncaught exception in the app: timer threw; draining this worker/,
  },
  {
    path: '/orphan-reject',
    what: 'an unhandled rejection',
    status: 200,
    fn: 'rejectsUnawaited',
    line: /"msg":"Unhandled rejection in the app: nobody awaited this; draining this worker/,
  },
  {
    path: '/exit',
    what: 'process.exit(1) in a request',
    status: 500,
    fn: 'exitsInRoute',
    line: /"msg":"The app called process\.exit\(1\); draining this worker/,
  },
]) {
  test(`${fault.what} drains the worker: its 20 slow requests finish, a new worker replaces it at once, without backoff`, async (ctx) => {
    const log = path.join(scratchDir(), 'error.log');
    const { t, url } = await startLogged(log);
    ctx.after(() => t.kill());
    const pid = await hit(url);

    const pending = await slowRequests(url);
    const reply = await request(url, { path: fault.path });
    assert.equal(reply.status, fault.status, reply.body);
    // The replacement is started as soon as the worker reports its fault, not when it exits.
    const afterFault = (): string => readIfExists(log).split(fault.line)[1] ?? '';
    const replaced = await waitFor(
      () => /"msg":"Booting worker with pid: (\d+)"/.exec(afterFault())?.[1],
      'a replacement worker',
      30_000,
    );
    await allServed(pending, pid);
    const exited = new RegExp(`"msg":"Worker \\(pid:${pid}\\) exited with code 0"`);
    await waitFor(() => exited.test(readIfExists(log)), `the failed worker ${pid} to exit`, 10_000);
    assert.ok(!alive(pid));
    assert.equal(await hit(url), Number(replaced));

    const text = readIfExists(log);
    assert.match(text, fault.line);
    assert.match(text, new RegExp(`at (Timeout\\.)?${fault.fn} \\(`), 'the stack is in the error log');
    assert.doesNotMatch(text, /Restarting the worker in/, 'no restart backoff');
    assert.doesNotMatch(t.stderr, new RegExp(fault.fn), 'nothing on raw stderr');
    assert.equal((await t.stop()).code, 0);
  });
}

test('workers SIGKILLed from outside after serving requests are replaced without backoff', async (ctx) => {
  const t = new Tsgun(['-w', '1', '-b', '127.0.0.1:0', APP], { cwd: FIXTURES });
  ctx.after(() => t.kill());
  const url = await t.ready();
  for (let i = 0; i < 4; i++) {
    const pid = await hit(url);
    await hit(url);
    // The request count reaches the master with the next heartbeat (every second).
    await sleep(1500);
    const booted = t.grep(/^Booting worker with pid/).length;
    process.kill(pid, 'SIGKILL');
    await t.until(() => t.grep(/^Booting worker with pid/).length > booted, 'the replacement');
    assert.notEqual(await hit(url), pid);
  }
  assert.deepEqual(
    t.grep(/^Restarting the worker in/).map((l) => l.msg),
    [],
    'no restart backoff',
  );
  assert.equal((await t.stop()).code, 0);
});

test('a worker whose master is SIGKILLed finishes its in-flight requests, then exits', async (ctx) => {
  const t = new Tsgun(['-w', '1', '-b', '127.0.0.1:0', APP], { cwd: FIXTURES });
  ctx.after(() => t.kill());
  const url = await t.ready();
  const pid = await hit(url);
  ctx.after(() => reap(pid));
  const pending = await slowRequests(url);
  process.kill(t.pid, 'SIGKILL');
  await allServed(pending, pid);
  await waitFor(() => !alive(pid), 'the worker to exit', 5_000);
});

for (const flags of [[], ['--timeout', '0', '--boot-timeout', '0']]) {
  const name =
    'a worker spinning in while (true) when its master is SIGKILLed is gone within 3 s, and a new tsgun binds the port';
  test(`${name}${flags.length ? ` (${flags.join(' ')})` : ''}`, async (ctx) => {
    const log = path.join(scratchDir(), 'error.log');
    const { t, url } = await startLogged(log, flags);
    ctx.after(() => t.kill());
    const pid = await hit(url);
    ctx.after(() => reap(pid));
    void request(url, { path: '/spin', timeoutMs: 60_000 }).catch(() => {});
    await sleep(1000);

    const killedAt = Date.now();
    process.kill(t.pid, 'SIGKILL');
    let goneAt = 0;
    await waitFor(() => !alive(pid) && (goneAt = Date.now()), `the spinning worker ${pid} to exit`, 10_000);
    ctx.diagnostic(`worker gone ${goneAt - killedAt} ms after its master`);
    assert.ok(goneAt - killedAt <= 3000, `worker gone ${goneAt - killedAt} ms after the master was killed`);
    const watchdogLine = new RegExp(
      `"pid":${pid},"role":"worker","worker":1,"msg":"The master \\(pid ${t.pid}\\) is gone and this worker's event loop`,
    );
    await waitFor(() => watchdogLine.test(readIfExists(log)), 'the watchdog thread to log why it killed the worker');

    const again = new Tsgun(['-w', '1', '-b', new URL(url).host, APP], { cwd: FIXTURES });
    ctx.after(() => again.kill());
    assert.equal(await again.ready(), url);
    assert.notEqual(await hit(url), pid);
    assert.equal((await again.stop()).code, 0);
  });
}

test('workers that fail outside any request before serving one are restarted with backoff, as a crash loop', async (ctx) => {
  const t = new Tsgun(['-w', '1', '-b', '127.0.0.1:0', 'faults/boom-at-start:app'], { cwd: FIXTURES });
  ctx.after(() => t.kill());
  await t.ready();
  const restarts = await t.until(
    () => {
      const found = t.grep(/^Restarting the worker in /);
      return found.length >= 3 ? found : null;
    },
    'three restarts with backoff',
    60_000,
  );
  const delays = restarts.map((l) => Number(/in ([\d.]+) s/.exec(l.msg!)![1]));
  assert.deepEqual(delays.slice(0, 3), [0.1, 0.2, 0.4], 'each delay doubles the last');
  assert.ok(t.grep(/^Uncaught exception in the app: boom at start; draining this worker/).length >= 3);
  assert.equal((await t.stop()).code, 0);
});
