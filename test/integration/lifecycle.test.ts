/**
 * The process lifecycle with real processes and signals: worker replacement, graceful
 * and quick stops, a master killed outright, the pidfile, process titles, the process
 * tree, and the log files (access log, error log, USR1 reopen).
 */
import assert from 'node:assert/strict';
import { renameSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { test } from 'node:test';
import {
  alive,
  bootedPids,
  childPidsSync,
  ppid,
  RawHttp,
  readIfExists,
  type Reply,
  request,
  scratchDir,
  sleep,
  titleOf,
  Tsgun,
  waitFor,
} from '../helpers.js';

const APP = 'express-app:app';

/**
 * A config whose pre_request hook logs each request as the worker starts it, so a test
 * can send a signal knowing the request is in a worker's hands, however busy the machine.
 */
function announcingConfig(): string {
  const file = path.join(scratchDir(), 'announce.conf.mjs');
  writeFileSync(
    file,
    'export default { pre_request: (worker, req) => worker.log.info(`request started: ${req.url}`) };\n',
  );
  return file;
}

function assertAllGone(pids: readonly number[], what: string): void {
  const left = pids.filter(alive);
  assert.deepEqual(left, [], `${what}: still alive: ${left.join(', ')}`);
}

test('a worker killed with SIGKILL is replaced while the others keep serving', async (ctx) => {
  const t = new Tsgun(['-w', '2', '-b', '127.0.0.1:0', APP]);
  ctx.after(() => t.kill());
  const url = await t.ready(2);
  const before = await t.workerPids();
  assert.equal(before.length, 2);
  const victim = before[0]!;
  process.kill(victim, 'SIGKILL');
  await waitFor(() => !alive(victim), `worker ${victim} to die`);

  // Requests during the gap, until a replacement has booted and the count is back to 2.
  const replies: Reply[] = [];
  const deadline = Date.now() + 30_000;
  let replaced: number[] | null = null;
  while (!replaced) {
    replies.push(await request(url));
    const now = childPidsSync(t.pid);
    if (now.length === 2 && !now.includes(victim) && bootedPids(t).length >= 3) replaced = now;
    else if (Date.now() > deadline) assert.fail(`no replacement worker within 30 s (children ${now}):\n${t.stderr}`);
    else await sleep(10);
  }
  for (const r of replies) assert.equal(r.status, 200);
  const fresh = replaced.filter((p) => !before.includes(p));
  assert.equal(fresh.length, 1, `one new worker pid (before ${before}, now ${replaced})`);
  assert.ok(bootedPids(t).includes(fresh[0]!), 'the new worker logged Booting');
  assert.equal(
    t.grep(new RegExp(`Worker \\(pid:${victim}\\) was sent SIGKILL`)).length,
    1,
    'the master logged the death',
  );
  assert.equal((await request(url)).status, 200);
  assert.equal((await t.stop()).code, 0);
});

test('TERM lets a slow in-flight request finish, then the master exits 0 and no worker is left', async (ctx) => {
  const t = new Tsgun(['-w', '1', '-b', '127.0.0.1:0', '-c', announcingConfig(), APP]);
  ctx.after(() => t.kill());
  const url = await t.ready(1);
  const workers = await t.workerPids();
  const started = Date.now();
  const slow = request(url, { path: '/slow?ms=2000' });
  await t.waitForLine(/^request started: \/slow/);
  t.signal('SIGTERM');
  const reply = await slow;
  assert.equal(reply.status, 200);
  assert.match(reply.body, /^slow \d+$/);
  assert.ok(Date.now() - started >= 1900, 'the response came after the handler finished');
  const { code, signal } = await t.exited;
  assert.equal(signal, null);
  assert.equal(code, 0);
  assertAllGone(workers, 'workers after TERM');
  assert.ok(t.grep(/^Shutting down: Master/).length === 1);
});

test('TERM closes an idle keep-alive connection cleanly and answers an in-flight one with connection: close', async (ctx) => {
  const t = new Tsgun(['-w', '1', '-b', '127.0.0.1:0', '-c', announcingConfig(), APP]);
  ctx.after(() => t.kill());
  const url = await t.ready(1);
  const idle = await RawHttp.connect(url);
  const busy = await RawHttp.connect(url);
  const first = await idle.request('/');
  assert.equal(first.status, 200);
  assert.notEqual(first.headers.connection, 'close', 'keep-alive is on before the stop');
  // A first request proves a worker holds the busy connection before the slow one is sent.
  assert.equal((await busy.request('/')).status, 200);
  const inFlight = busy.request('/slow?ms=1500');
  await t.waitForLine(/^request started: \/slow/);
  t.signal('SIGTERM');

  const reply = await inFlight;
  assert.equal(reply.status, 200);
  assert.match(reply.body, /^slow \d+$/);
  assert.equal(reply.headers.connection, 'close', 'the in-flight response announces the close');
  await Promise.all([idle.closed, busy.closed]);
  assert.equal(idle.error, null, `idle connection error: ${idle.error?.message}`);
  assert.equal(busy.error, null, `busy connection error: ${busy.error?.message}`);
  assert.ok(idle.ended, 'the server ended the idle connection (FIN, not a reset)');
  assert.ok(busy.ended, 'the server ended the busy connection after its response');
  assert.equal((await t.exited).code, 0);
});

for (const sig of ['SIGINT', 'SIGQUIT'] as const) {
  test(`${sig} stops at once with status 0, even with a slow request in flight`, async (ctx) => {
    const t = new Tsgun(['-w', '1', '-b', '127.0.0.1:0', '--graceful-timeout', '30', '-c', announcingConfig(), APP]);
    ctx.after(() => t.kill());
    const url = await t.ready(1);
    const workers = await t.workerPids();
    const slow = request(url, { path: '/slow?ms=20000' }).catch((err: Error) => err);
    await t.waitForLine(/^request started: \/slow/);
    const sent = Date.now();
    t.signal(sig);
    const { code, signal } = await t.exited;
    const took = Date.now() - sent;
    assert.equal(signal, null);
    assert.equal(code, 0);
    assert.ok(took < 5000, `${sig} took ${took} ms; graceful_timeout is 30 s`);
    assert.ok((await slow) instanceof Error, 'the slow request was cut off, not waited for');
    assertAllGone(workers, `workers after ${sig}`);
  });
}

test('workers exit by themselves within ~1.5 s when the master is killed with SIGKILL', async (ctx) => {
  const t = new Tsgun(['-w', '2', '-b', '127.0.0.1:0', APP]);
  ctx.after(() => t.kill());
  await t.ready(2);
  const workers = await t.workerPids();
  assert.equal(workers.length, 2);
  t.signal('SIGKILL');
  await t.exited;
  const killedAt = Date.now();
  await waitFor(() => workers.every((p) => !alive(p)), 'workers to exit', 1500).catch(() => undefined);
  assertAllGone(workers, `workers ${Date.now() - killedAt} ms after the master was killed`);
});

test('the pidfile holds the master pid while running and is removed at exit', async (ctx) => {
  const dir = scratchDir();
  const pidfile = path.join(dir, 'run', 'tsgun.pid');
  const t = new Tsgun(['-p', pidfile, '-b', '127.0.0.1:0', APP]);
  ctx.after(() => t.kill());
  await t.ready(1);
  assert.equal(readIfExists(pidfile), `${t.pid}\n`);
  assert.equal((await t.stop()).code, 0);
  assert.equal(readIfExists(pidfile), '', 'pidfile removed');
});

test('process titles name the app, workers are direct children of the master', async (ctx) => {
  const t = new Tsgun(['-w', '2', '-b', '127.0.0.1:0', APP]);
  ctx.after(() => t.kill());
  await t.ready(2);
  assert.equal(titleOf(t.pid), `tsgun: master [${APP}]`);
  const children = await t.workerPids();
  assert.deepEqual(
    children,
    [...bootedPids(t)].sort((a, b) => a - b),
    `the master's children are exactly the booted workers; children: ${children.map((p) => `${p} ${titleOf(p)}`).join('; ')}\n${t.stderr}`,
  );
  for (const pid of children) {
    assert.equal(ppid(pid), t.pid);
    assert.equal(titleOf(pid), `tsgun: worker [${APP}]`);
  }
  assert.equal((await t.stop()).code, 0);
});

test('-n NAME changes the process titles', async (ctx) => {
  const t = new Tsgun(['-n', 'shop', '-b', '127.0.0.1:0', APP]);
  ctx.after(() => t.kill());
  await t.ready(1);
  assert.equal(titleOf(t.pid), 'tsgun: master [shop]');
  const [worker] = await t.workerPids();
  assert.equal(titleOf(worker!), 'tsgun: worker [shop]');
  assert.equal((await t.stop()).code, 0);
});

test('a long -n NAME is not truncated in worker titles', async (ctx) => {
  const name = 'a-rather-long-service-name-for-title-testing';
  const t = new Tsgun(['-n', name, '-b', '127.0.0.1:0', APP]);
  ctx.after(() => t.stop());
  ctx.after(() => t.kill());
  await t.ready(1);
  assert.equal(titleOf(t.pid), `tsgun: master [${name}]`);
  const [worker] = await t.workerPids();
  assert.equal(titleOf(worker!), `tsgun: worker [${name}]`);
});

const ACCESS_LINE =
  /^127\.0\.0\.1 - - \[\d{2}\/[A-Z][a-z]{2}\/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}\] "GET \/\?n=(\d+) HTTP\/1\.1" 200 (\d+) "([^"]*)" "([^"]*)"$/;

test('--access-logfile gets one Gunicorn-format line per request', async (ctx) => {
  const dir = scratchDir();
  const file = path.join(dir, 'logs', 'access.log');
  const t = new Tsgun(['-b', '127.0.0.1:0', '--access-logfile', file, APP]);
  ctx.after(() => t.kill());
  const url = await t.ready(1);
  const bodies: string[] = [];
  for (let n = 0; n < 6; n++) {
    const r = await request(url, {
      path: `/?n=${n}`,
      headers: { 'user-agent': `probe/${n}`, referer: `http://ref.example/${n}` },
    });
    assert.equal(r.status, 200);
    bodies.push(r.body);
  }
  await waitFor(() => readIfExists(file).split('\n').filter(Boolean).length >= 6, '6 access log lines');
  await sleep(200);
  const lines = readIfExists(file).split('\n').filter(Boolean);
  assert.equal(lines.length, 6, `exactly one line per request:\n${lines.join('\n')}`);
  const seen = new Set<number>();
  for (const line of lines) {
    const m = ACCESS_LINE.exec(line);
    assert.ok(m, `not a Gunicorn access line: ${line}`);
    const n = Number(m[1]);
    assert.equal(m[2], String(Buffer.byteLength(bodies[n]!)), 'body bytes');
    assert.equal(m[3], `http://ref.example/${n}`);
    assert.equal(m[4], `probe/${n}`);
    seen.add(n);
  }
  assert.equal(seen.size, 6);
  assert.equal((await t.stop()).code, 0);
});

test('an aborted request is logged with its client address', async (ctx) => {
  const dir = scratchDir();
  const file = path.join(dir, 'access.log');
  const t = new Tsgun(['-b', '127.0.0.1:0', '--access-logfile', file, APP]);
  ctx.after(() => t.kill());
  const url = await t.ready(1);
  const u = new URL(url);
  const aborted = http.get({ host: u.hostname, port: u.port, path: '/slow?ms=300', agent: false });
  aborted.on('error', () => {});
  await sleep(100);
  aborted.destroy();
  const line = await waitFor(
    () =>
      readIfExists(file)
        .split('\n')
        .find((l) => l.includes('/slow')),
    "the aborted request's line",
  );
  assert.match(line, /^127\.0\.0\.1 - - \[/, line);
  assert.equal((await t.stop()).code, 0);
});

test('--error-logfile receives the log instead of stderr', async (ctx) => {
  const dir = scratchDir();
  const file = path.join(dir, 'error.log');
  const t = new Tsgun(['-b', '127.0.0.1:0', '--error-logfile', file, APP]);
  ctx.after(() => t.kill());
  const booted = await waitFor(
    () => {
      const text = readIfExists(file);
      return text.includes('Booting worker with pid') ? text : null;
    },
    'a Booting line in the error log',
    30_000,
  );
  const url = /"msg":"Listening at: (http:\/\/[^ ]+) \(/.exec(booted)?.[1];
  assert.ok(url, 'the Listening at: line is in the file');
  assert.equal((await request(url)).status, 200);
  assert.equal((await t.stop()).code, 0);
  const lines = readIfExists(file)
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { msg: string; role: string });
  assert.ok(lines.some((l) => l.msg.startsWith('Starting tsgun') && l.role === 'master'));
  assert.ok(lines.some((l) => l.msg.startsWith('Booting worker') && l.role === 'worker'));
  assert.ok(lines.some((l) => l.msg === 'Shutting down: Master'));
  assert.equal(t.stderr, '', 'nothing on stderr');
});

test('USR1 after logrotate renamed the logs makes master and workers write new files at the old paths', async (ctx) => {
  const dir = scratchDir();
  const access = path.join(dir, 'access.log');
  const errors = path.join(dir, 'error.log');
  const t = new Tsgun([
    '-w',
    '2',
    '-b',
    '127.0.0.1:0',
    '--access-logfile',
    access,
    '--access-logformat',
    '%(p)s %(r)s',
    '--error-logfile',
    errors,
    APP,
  ]);
  ctx.after(() => t.kill());
  const text = await waitFor(
    () => {
      const s = readIfExists(errors);
      return (s.match(/Booting worker with pid/g) ?? []).length >= 2 ? s : null;
    },
    'two workers booted',
    30_000,
  );
  const url = /"msg":"Listening at: (http:\/\/[^ ]+) \(/.exec(text)![1]!;
  const workers = childPidsSync(t.pid);
  assert.equal(workers.length, 2);
  for (let i = 0; i < 4; i++) await request(url, { path: `/?before=${i}` });
  await waitFor(() => readIfExists(access).split('\n').filter(Boolean).length >= 4, 'the first access lines');
  renameSync(access, `${access}.1`);
  renameSync(errors, `${errors}.1`);
  t.signal('SIGUSR1');

  // Requests until both workers have written to a new file at the old path.
  const writers = (): Set<string> =>
    new Set([...readIfExists(access).matchAll(/^<(\d+)> GET \/\?after=/gm)].map((m) => m[1]!));
  for (let n = 0; writers().size < 2; n++) {
    assert.ok(n < 400, `both workers should reopen the access log; new file:\n${readIfExists(access)}`);
    await request(url, { path: `/?after=${n}` });
    await sleep(20);
  }
  assert.deepEqual(
    [...writers()].map(Number).sort((a, b) => a - b),
    workers,
  );
  const fresh = readIfExists(access).split('\n').filter(Boolean);
  assert.ok(
    fresh.every((l) => l.includes('?after=')),
    `only post-USR1 requests in the new file:\n${fresh.join('\n')}`,
  );
  const old = readIfExists(`${access}.1`).split('\n').filter(Boolean);
  assert.equal(old.filter((l) => l.includes('?before=')).length, 4, 'the rotated file keeps the old lines');

  assert.equal((await t.stop()).code, 0);
  assert.match(readIfExists(errors), /Shutting down: Master/, 'the master writes to the new error log after USR1');
  assert.match(readIfExists(`${errors}.1`), /Starting tsgun/);
  assert.doesNotMatch(readIfExists(`${errors}.1`), /Shutting down: Master/);
});
