/**
 * Real-time apps (issue 17): WebSocket libraries attached to the app's server, upgraded
 * connections out of the HTTP timeouts, close frames and app shutdown on every drain, and
 * apps that listen() by themselves. Every app runs under `bin/tsgun -w 2` with real clients.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { test } from 'node:test';
import { io as ioClient } from 'socket.io-client';
import WebSocket from 'ws';
import {
  childPidsSync,
  FIXTURES,
  freePort,
  readIfExists,
  request,
  runTsgun,
  scratchDir,
  sleep,
  Tsgun,
} from '../helpers.js';
import { makePki, tlsArgs } from './http-layer.shared.js';

const DIR = path.join(FIXTURES, 'realtime');

async function serve(
  t: { after(fn: () => unknown): void },
  app: string,
  extra: string[] = [],
  env: NodeJS.ProcessEnv = {},
): Promise<{ tsgun: Tsgun; url: string; ws: string }> {
  const tsgun = new Tsgun(['-w', '2', '-b', '127.0.0.1:0', '--chdir', DIR, ...extra, app], { env });
  t.after(() => tsgun.stop());
  const url = await tsgun.ready(2);
  return { tsgun, url, ws: url.replace(/^http/, 'ws') };
}

interface Client {
  ws: WebSocket;
  closed: Promise<{ code: number; reason: string; at: number }>;
  errors: Error[];
  echo(text: string): Promise<string>;
}

async function connect(url: string): Promise<Client> {
  const ws = new WebSocket(url);
  const errors: Error[] = [];
  ws.on('error', (err) => errors.push(err));
  const closed = new Promise<{ code: number; reason: string; at: number }>((resolve) =>
    ws.once('close', (code, reason) => resolve({ code, reason: String(reason), at: Date.now() })),
  );
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('unexpected-response', (_req, res) => reject(new Error(`unexpected response ${res.statusCode}`)));
    ws.once('error', reject);
  });
  const echo = (text: string): Promise<string> =>
    new Promise((resolve) => {
      ws.once('message', (data) => resolve(String(data)));
      ws.send(text);
    });
  return { ws, closed, errors, echo };
}

/** Open `n` WebSockets, as separate connections, until both workers hold some (each echo names its worker's pid). */
async function spread(
  url: string,
  n: number,
): Promise<{ clients: Array<Client & { pid: string }>; pids: Set<string> }> {
  const clients: Array<Client & { pid: string }> = [];
  const pids = new Set<string>();
  for (let i = 0; (i < n || pids.size < 2) && i < 60; i++) {
    const c = await connect(url);
    const pid = (await c.echo('who')).split(':')[0]!;
    pids.add(pid);
    clients.push({ ...c, pid });
  }
  return { clients, pids };
}

test('ws attached through the factory context echoes, and a plain app answers an upgrade with 426', async (t) => {
  const { ws, url } = await serve(t, 'ws-factory:create()');
  const c = await connect(ws);
  assert.match(await c.echo('hello'), /^\d+:hello$/);
  assert.match((await request(url)).body, /^pid \d+$/);
  c.ws.close();

  const plain = await serve(t, `${path.join(FIXTURES, 'express-app.ts')}:app`);
  await assert.rejects(connect(plain.ws), /unexpected response 426/);
});

test('a WebSocket outlives every HTTP timeout, with traffic and in silence, and receives no stray bytes', async (t) => {
  const timeouts = [
    '--keep-alive',
    '1',
    '--headers-timeout',
    '1',
    '--request-timeout',
    '2',
    '--timeout',
    '2',
    '--idle-connection-timeout',
    '1',
  ];
  const { ws } = await serve(t, 'ws-factory:create()', timeouts);
  const busy = await connect(ws);
  const silent = await connect(ws);
  await silent.echo('first');
  const socket = (silent.ws as unknown as { _socket: net.Socket })._socket;
  const before = socket.bytesRead;
  const until = Date.now() + 5000;
  while (Date.now() < until) {
    assert.match(await busy.echo('tick'), /:tick$/);
    await sleep(250);
  }
  assert.equal(socket.bytesRead, before, 'the silent WebSocket received bytes it did not ask for');
  for (const c of [busy, silent]) {
    assert.equal(c.ws.readyState, WebSocket.OPEN);
    assert.deepEqual(c.errors, []);
    assert.match(await c.echo('still'), /:still$/);
  }
});

test('upgrades are not requests: max_requests and limit_concurrency ignore open WebSockets', async (t) => {
  const { tsgun, ws, url } = await serve(t, 'ws-factory:create()', ['--max-requests', '3', '--limit-concurrency', '1']);
  const { clients } = await spread(ws, 6);
  for (const c of clients) assert.match(await c.echo('x'), /:x$/);
  assert.equal((await request(url)).status, 200, 'open WebSockets counted as requests in flight');
  await sleep(1000);
  assert.equal(tsgun.grep(/Autorestarting worker/).length, 0, 'upgrades counted toward max_requests');
  for (const c of clients) assert.equal(c.ws.readyState, WebSocket.OPEN);
  for (const c of clients) c.ws.close();
});

test('HUP: every WebSocket gets 1012 before graceful_timeout, the app closes, worker_exit runs, a reconnect reaches the new generation', async (t) => {
  const dir = scratchDir();
  const { tsgun, ws } = await serve(
    t,
    'ws-factory:create()',
    ['--graceful-timeout', '5', '-c', path.join(DIR, 'hooks.conf.ts')],
    { RT_DIR: dir },
  );
  const { clients, pids } = await spread(ws, 4);
  tsgun.signal('SIGHUP');
  for (const c of clients) {
    const close = await c.closed;
    assert.equal(close.code, 1012);
    assert.equal(close.reason, 'service restart');
    const drainedAt = await retiredAt(tsgun, c.pid);
    assert.ok(
      close.at - drainedAt < 5000,
      `closed ${close.at - drainedAt} ms after its worker began to drain, graceful_timeout is 5 s`,
    );
  }
  const fresh = await connect(ws);
  const pid = (await fresh.echo('again')).split(':')[0]!;
  assert.ok(!pids.has(pid), `reconnect served by old worker ${pid}`);
  fresh.ws.close();
  for (const old of pids) {
    assert.equal(await workerExitPid(tsgun, dir, old), old, 'worker_exit ran in the worker, with its pid');
    assert.ok(existsSync(path.join(dir, `close-${old}`)), `the app's 300 ms close() of ${old} ran to completion`);
  }
});

test('TERM: every WebSocket gets 1001, the app closes, the master exits 0', async (t) => {
  const dir = scratchDir();
  const { tsgun, ws } = await serve(
    t,
    'ws-factory:create()',
    ['--graceful-timeout', '5', '-c', path.join(DIR, 'hooks.conf.ts')],
    { RT_DIR: dir },
  );
  const { clients, pids } = await spread(ws, 4);
  tsgun.signal('SIGTERM');
  for (const close of await Promise.all(clients.map((c) => c.closed)))
    assert.deepEqual([close.code, close.reason], [1001, 'going away']);
  assert.deepEqual(await tsgun.exited, { code: 0, signal: null });
  for (const old of pids) {
    assert.ok(existsSync(path.join(dir, `close-${old}`)), `close() of ${old}`);
    assert.equal(readFileSync(path.join(dir, `exit-${old}`), 'utf8'), old);
  }
  assert.equal(tsgun.grep(/did not stop within/).length, 0, 'no worker was killed');
});

test('TTOU: the WebSockets of the worker that leaves get 1012, those of the one that stays are left open', async (t) => {
  const { tsgun, ws } = await serve(t, 'ws-factory:create()', ['--graceful-timeout', '5']);
  const { clients } = await spread(ws, 4);
  tsgun.signal('SIGTTOU');
  const line = await tsgun.waitForLine(/^Retiring worker \(pid:\d+,/);
  const leaving = /pid:(\d+)/.exec(line.msg!)![1]!;
  for (const c of clients.filter((c) => c.pid === leaving)) assert.equal((await c.closed).code, 1012);
  for (const c of clients.filter((c) => c.pid !== leaving)) assert.match(await c.echo('stay'), /:stay$/);
  for (const c of clients) c.ws.close();
});

/** When the master began to retire worker `pid` (its log line's time). */
/**
 * What the worker_exit hook of worker `pid` wrote (hooks.conf.ts: the pid of the process it ran
 * in), once it has: its writeFileSync creates the file before it writes, so a file that exists
 * may still be empty.
 */
async function workerExitPid(tsgun: Tsgun, dir: string, pid: string): Promise<string> {
  const file = path.join(dir, `exit-${pid}`);
  await tsgun.until(() => readIfExists(file) !== '', `worker_exit of ${pid}`);
  return readIfExists(file);
}

async function retiredAt(tsgun: Tsgun, pid: string): Promise<number> {
  const line = await tsgun.waitForLine(new RegExp(`^Retiring worker \\(pid:${pid},`));
  return (line as { time?: number }).time!;
}

/** An SSE stream: how it ended (cleanly, or reset), when, what arrived, and from which worker. */
function sse(url: string, query: string): Promise<{ body: string; clean: boolean; at: number; pid: string }> {
  return new Promise((resolve) => {
    let body = '';
    const done = (clean: boolean): void =>
      resolve({ body, clean, at: Date.now(), pid: /^: pid (\d+)/.exec(body)?.[1] ?? '' });
    const req = http.get(`${url}/sse?${query}`, { agent: false }, (res) => {
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => done(true));
      res.on('aborted', () => done(false));
      res.on('error', () => done(false));
    });
    req.on('error', () => done(false));
  });
}

test('HUP: an SSE stream shorter than graceful_timeout finishes, a longer one ends cleanly at the deadline; close() and worker_exit run', async (t) => {
  const dir = scratchDir();
  const { tsgun, url } = await serve(t, 'sse-app', ['--graceful-timeout', '6', '-c', path.join(DIR, 'hooks.conf.ts')], {
    RT_DIR: dir,
  });
  // The short stream ends 1.5 s after its worker starts to drain, however long the new generation takes to boot.
  const short = sse(url, 'after-close=1500');
  const long = sse(url, 'ms=60000');
  await sleep(300);
  tsgun.signal('SIGHUP');
  const s = await short;
  assert.ok(s.clean, 'the short stream was cut');
  assert.match(s.body, /data: end/);
  assert.ok(
    (await retiredAt(tsgun, s.pid)) < s.at,
    'the short stream ended before its worker began to drain: nothing was tested',
  );
  const l = await long;
  const tookMs = l.at - (await retiredAt(tsgun, l.pid));
  assert.ok(l.clean, 'the long stream was reset, not ended');
  assert.doesNotMatch(l.body, /data: end/);
  assert.ok(
    tookMs >= 5000 && tookMs < 8000,
    `the long stream ended ${tookMs} ms after its worker began to drain (graceful_timeout 6 s)`,
  );
  for (const pid of new Set([s.pid, l.pid])) {
    assert.equal(await workerExitPid(tsgun, dir, pid), pid, 'worker_exit ran in the worker, with its pid');
    assert.ok(existsSync(path.join(dir, `close-${pid}`)), `the app's 300 ms close() of ${pid} ran to completion`);
  }
});

test('Socket.IO (websocket transport) echoes through 2 workers, reconnects to the new generation on HUP, and its polling caveat is logged once', async (t) => {
  const { tsgun, url } = await serve(t, 'socketio-app:create()', ['--graceful-timeout', '5']);
  const socket = ioClient(url, { transports: ['websocket'], reconnectionDelay: 100, reconnectionDelayMax: 500 });
  t.after(() => socket.close());
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('connect_error', reject);
  });
  const echo = (): Promise<string> => new Promise<string>((resolve) => socket.emit('echo', 'hi', resolve));
  const first = await echo();
  assert.match(first, /^\d+:hi$/);
  assert.match((await request(url)).body, /^socket\.io app \d+$/);
  await tsgun.waitForLine(/Socket\.IO with several workers/);
  assert.equal(tsgun.grep(/Socket\.IO with several workers/).length, 1);

  const old = new Set(childPidsSync(tsgun.pid).map(String));
  const reconnect = (): Promise<void> =>
    new Promise<void>((resolve) => socket.once('disconnect', () => socket.once('connect', () => resolve())));
  let reconnected = reconnect();
  tsgun.signal('SIGHUP');
  // Old workers leave one by one: a client may land on the other old worker first, and be sent on again.
  let pid = '';
  for (let hops = 0; hops < old.size && (pid === '' || old.has(pid)); hops++) {
    await reconnected;
    reconnected = reconnect();
    pid = (await echo()).split(':')[0]!;
  }
  assert.ok(!old.has(pid), `the client still reaches old worker ${pid}`);
});

test('@fastify/websocket echoes; Fastify onClose runs to completion on HUP and on TERM', async (t) => {
  const dir = scratchDir();
  const { tsgun, ws } = await serve(t, 'fastify-ws:app', ['--graceful-timeout', '5'], { RT_DIR: dir });
  const c = await connect(`${ws}/ws`);
  assert.equal(await c.echo('hi'), 'fastify:hi');
  const first = await tsgun.workerPids();
  tsgun.signal('SIGHUP');
  for (const pid of first)
    await tsgun.until(() => existsSync(path.join(dir, `fastify-${pid}`)), `onClose of ${pid} on HUP`);
  await c.closed;
  await tsgun.until(() => tsgun.grep(/^Booting worker with pid/).length >= 4, 'the new generation');
  const second = await tsgun.until(() => {
    const pids = childPidsSync(tsgun.pid);
    return pids.every((p) => !first.includes(p)) && pids.length === 2 && pids;
  }, 'the old generation gone');
  const again = await connect(`${ws}/ws`);
  assert.equal(await again.echo('back'), 'fastify:back');
  tsgun.signal('SIGTERM');
  assert.equal((await tsgun.exited).code, 0);
  for (const pid of second) assert.ok(existsSync(path.join(dir, `fastify-${pid}`)), `onClose of ${pid} on TERM`);
});

test('@hono/node-ws echoes through the factory context', async (t) => {
  const { ws, url } = await serve(t, 'hono-ws:create()');
  const c = await connect(`${ws}/ws`);
  assert.equal(await c.echo('hi'), 'hono:hi');
  assert.match((await request(url)).body, /^hono \d+$/);
  c.ws.close();
});

test('an exported http.Server with a ws server attached is served with upgrades', async (t) => {
  const { ws, url } = await serve(t, 'ws-server');
  const c = await connect(ws);
  assert.equal(await c.echo('hi'), 'server:hi');
  assert.match((await request(url)).body, /^server \d+$/);
  c.ws.close();
});

test('over TLS (wss): echo, and TERM sends 1001 through the TLS stream', async (t) => {
  const pki = await makePki();
  const { tsgun, ws } = await serve(t, 'ws-factory:create()', tlsArgs(pki));
  assert.match(ws, /^wss:/);
  const socket = new WebSocket(ws, { ca: pki.ca });
  const closed = new Promise<number>((resolve) => socket.once('close', (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    socket.once('open', () => resolve());
    socket.once('error', reject);
  });
  const reply = await new Promise<string>((resolve) => {
    socket.once('message', (data) => resolve(String(data)));
    socket.send('secure');
  });
  assert.match(reply, /^\d+:secure$/);
  tsgun.signal('SIGTERM');
  assert.equal(await closed, 1001);
  assert.equal((await tsgun.exited).code, 0);
});

test('an exported plain http.Server with certfile set stops tsgun with one Error: line (exit 4)', async () => {
  const pki = await makePki();
  const run = await runTsgun(['-w', '2', '-b', '127.0.0.1:0', '--chdir', DIR, ...tlsArgs(pki), 'ws-server']);
  assert.equal(run.code, 4);
  const errors = run.stderr.split('\n').filter((l) => l.startsWith('Error:'));
  assert.equal(errors.length, 1, run.stderr);
  assert.match(errors[0]!, /brings its own plain http\.Server but certfile\/keyfile are set/);
});

test("an app that calls app.listen(PORT) is served on tsgun's bind by 2 workers, and nothing listens on PORT", async (t) => {
  const port = await freePort();
  const { tsgun, url, ws } = await serve(t, 'listen-app', [], { RT_PORT: String(port) });
  const pids = new Set<string>();
  for (let i = 0; i < 200 && pids.size < 2; i++) pids.add((await request(url)).body.replace(/^listen /, ''));
  assert.equal(pids.size, 2, 'both workers serve the adopted server');
  const c = await connect(ws);
  assert.equal(await c.echo('hi'), 'listen:hi');
  c.ws.close();
  await assert.rejects(request(`http://127.0.0.1:${port}/`), /ECONNREFUSED/);
  assert.equal(tsgun.grep(/called listen\(\) on its own server/).length, 1);
  const tsgunPort = new URL(url).port;
  await tsgun.until(
    () => tsgun.stdout.split('\n').filter((l) => l === `app says: listening on ${tsgunPort}`).length === 2,
    "the app's listen callback, with tsgun's port",
  );
});

test('upgraded connections are counted apart: a tsgun status column and a /metrics gauge', async (t) => {
  const pidfile = path.join(scratchDir(), 'tsgun.pid');
  const { tsgun, ws, url } = await serve(t, 'ws-factory:create()', ['-p', pidfile, '--metrics-bind', '127.0.0.1:0']);
  const { clients } = await spread(ws, 3);
  const metricsUrl = /^Metrics at: (\S+)$/.exec((await tsgun.waitForLine(/^Metrics at: /)).msg!)![1]!;
  const upgraded = (text: string): number =>
    [...text.matchAll(/^tsgun_upgraded_connections\{worker="\d+"\} (\d+)$/gm)].reduce((n, m) => n + Number(m[1]), 0);
  let metrics = '';
  for (
    const deadline = Date.now() + 10_000;
    upgraded(metrics) !== clients.length && Date.now() < deadline;
    await sleep(300)
  )
    metrics = (await request(metricsUrl)).body;
  assert.equal(upgraded(metrics), clients.length, metrics);
  const status = await runTsgun(['status', '--json', '-p', pidfile]);
  const json = JSON.parse(status.stdout) as { workers: Array<{ stats: { upgraded: number; connections: number } }> };
  assert.equal(
    json.workers.reduce((n, w) => n + w.stats.upgraded, 0),
    clients.length,
  );
  assert.equal(
    json.workers.reduce((n, w) => n + w.stats.connections, 0),
    0,
    'WebSockets are not HTTP connections',
  );
  const table = (await runTsgun(['status', '-p', pidfile])).stdout;
  assert.match(table, /\bUPGRADED\b/);
  await request(url);
  for (const c of clients) c.ws.close();
});
