/**
 * Bind addresses (DESIGN.md, "Bind addresses"): every form, bound by a real master and
 * served by real workers; the `Listening at:` line must show the real address.
 */
import assert from 'node:assert/strict';
import { existsSync, lstatSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { describe, test } from 'node:test';
import { alive, request, runTsgun, scratchDir, sleep, Tsgun } from '../helpers.js';

const APP = 'express-app:app';

/** Can this machine listen on ::1? */
async function hasIPv6Loopback(): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen(0, '::1', () => server.close(() => resolve(true)));
  });
}

/** The port of a `Listening at: http://HOST:PORT` address; asserts it is a real one. */
function portOf(url: string): number {
  const port = Number(new URL(url).port);
  assert.ok(Number.isInteger(port) && port > 0, `no real port in ${url}`);
  return port;
}

async function expectExpress(url: string, opts: { socketPath?: string } = {}): Promise<number> {
  const reply = await request(url, opts);
  assert.equal(reply.status, 200, reply.body);
  const m = /^express (\d+)$/.exec(reply.body);
  assert.ok(m, `unexpected body ${JSON.stringify(reply.body)}`);
  return Number(m[1]);
}

async function stopClean(t: Tsgun): Promise<void> {
  const { code } = await t.stop();
  assert.equal(code, 0, `tsgun exited with ${code}\n${t.stderr}`);
}

/** The master's own log lines saying where it listens (one per socket). */
function listeningLines(t: Tsgun): string[] {
  return t.grep(/^Listening at: /).map((l) => l.msg!);
}

async function waitForAsync(check: () => Promise<boolean>, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

function waitFor(check: () => boolean, what: string, ms = 10_000): Promise<void> {
  return waitForAsync(async () => check(), what, ms);
}

/** A server handle bound to 127.0.0.1 but not listening, the way a supervisor would hand one over. */
interface BoundHandle {
  fd: number;
  getsockname(out: { address?: string; port?: number }): number;
  close(): void;
}

function bindHandle(): BoundHandle {
  const create = (
    net as unknown as {
      _createServerHandle: (
        address: string,
        port: number,
        addressType: number,
        fd?: number,
        flags?: number,
      ) => BoundHandle | number;
    }
  )._createServerHandle;
  const handle = create('127.0.0.1', 0, 4, undefined, 0);
  if (typeof handle === 'number') throw new Error(`cannot bind a test socket: error ${handle}`);
  return handle;
}

describe('bind addresses', () => {
  test('127.0.0.1:0 binds an ephemeral port and logs it', async (ctx) => {
    const t = new Tsgun(['-w', '2', '-b', '127.0.0.1:0', APP]);
    ctx.after(() => t.kill());
    const url = await t.ready(2);
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+$/);
    const port = portOf(url);
    assert.notEqual(port, 8000);
    const lines = listeningLines(t);
    assert.equal(lines.length, 1);
    assert.equal(lines[0], `Listening at: http://127.0.0.1:${port} (${t.pid})`);
    const pid = await expectExpress(url);
    assert.ok((await t.workerPids()).includes(pid));
    await stopClean(t);
  });

  test('[::1]:0 binds IPv6 loopback', async (ctx) => {
    if (!(await hasIPv6Loopback())) {
      ctx.skip('this machine cannot listen on ::1');
      return;
    }
    const t = new Tsgun(['-b', '[::1]:0', APP]);
    ctx.after(() => t.kill());
    const url = await t.ready(1);
    assert.match(url, /^http:\/\/\[::1\]:\d+$/);
    portOf(url);
    await expectExpress(url);
    await stopClean(t);
  });

  test('tcp://127.0.0.1:0', async (ctx) => {
    const t = new Tsgun(['-b', 'tcp://127.0.0.1:0', APP]);
    ctx.after(() => t.kill());
    const url = await t.ready(1);
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+$/);
    portOf(url);
    await expectExpress(url);
    await stopClean(t);
  });

  test(':0 binds all interfaces', async (ctx) => {
    const t = new Tsgun(['-b', ':0', APP]);
    ctx.after(() => t.kill());
    const url = await t.ready(1);
    assert.match(url, /^http:\/\/0\.0\.0\.0:\d+$/);
    const port = portOf(url);
    await expectExpress(`http://127.0.0.1:${port}`);
    await stopClean(t);
  });

  test('unix:PATH serves over the socket, which is removed at exit', async (ctx) => {
    const sock = path.join(scratchDir(), 'app.sock');
    const t = new Tsgun(['-w', '2', '-b', `unix:${sock}`, APP]);
    ctx.after(() => t.kill());
    await t.ready(2);
    assert.deepEqual(listeningLines(t), [`Listening at: unix:${sock} (${t.pid})`]);
    assert.ok(lstatSync(sock).isSocket());
    const pid = await expectExpress('http://localhost/', { socketPath: sock });
    assert.ok((await t.workerPids()).includes(pid));
    await stopClean(t);
    assert.equal(existsSync(sock), false, 'the socket file outlived the master');
  });

  test('unix:PATH replaces a stale socket file left by a killed master', async (ctx) => {
    const sock = path.join(scratchDir(), 'stale.sock');
    const first = new Tsgun(['-b', `unix:${sock}`, APP]);
    ctx.after(() => first.stop());
    await first.ready(1);
    // Master first, so it cannot start a replacement for a worker killed under it.
    const workers = await first.workerPids();
    process.kill(first.pid, 'SIGKILL');
    await first.exited;
    for (const pid of workers) process.kill(pid, 'SIGKILL');
    await waitFor(() => workers.every((pid) => !alive(pid)), 'the killed workers to be gone');
    assert.ok(lstatSync(sock).isSocket(), 'SIGKILL should leave the socket file behind');
    // A killed worker's pid turns zombie before its other threads have exited and closed
    // its files, so the socket may be listening a moment longer: wait until it refuses.
    await waitForAsync(async () => {
      try {
        await request('http://localhost/', { socketPath: sock, timeoutMs: 2000 });
        return false;
      } catch (err) {
        return (err as NodeJS.ErrnoException).code === 'ECONNREFUSED';
      }
    }, 'the stale socket to refuse connections');

    const t = new Tsgun(['-b', `unix:${sock}`, APP]);
    ctx.after(() => t.kill());
    await t.ready(1);
    await expectExpress('http://localhost/', { socketPath: sock });
    await stopClean(t);
    assert.equal(existsSync(sock), false);
  });

  test('unix:PATH that a live master is serving is an error, and the live master keeps it', async (ctx) => {
    const sock = path.join(scratchDir(), 'live.sock');
    const t = new Tsgun(['-b', `unix:${sock}`, APP]);
    ctx.after(() => t.kill());
    await t.ready(1);
    const ino = lstatSync(sock).ino;
    const r = await runTsgun(['-b', `unix:${sock}`, APP]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /^Error: .*another server is accepting on/m);
    assert.doesNotMatch(r.stderr, /Booting worker/);
    assert.equal(lstatSync(sock).ino, ino, 'the live socket file was replaced');
    await expectExpress('http://localhost/', { socketPath: sock });
    await stopClean(t);
  });

  test('unix:PATH naming a regular file is an error, and the file is left alone', async () => {
    const file = path.join(scratchDir(), 'not-a-socket');
    writeFileSync(file, 'keep me\n');
    const r = await runTsgun(['-w', '2', '-b', `unix:${file}`, APP]);
    assert.equal(r.code, 1, r.stderr);
    const errors = r.stderr.split('\n').filter((l) => l.startsWith('Error:'));
    assert.equal(errors.length, 1, r.stderr);
    assert.match(errors[0]!, /not a socket/);
    assert.ok(errors[0]!.includes(file), errors[0]);
    assert.doesNotMatch(r.stderr, /Booting worker|Listening at/);
    assert.equal(readFileSync(file, 'utf8'), 'keep me\n');
  });

  test('fd://3 serves a socket handed over by the parent process', async (ctx) => {
    // The test process binds 127.0.0.1:0 without listening (net._createServerHandle, as
    // Node's cluster primary does) and passes the fd to tsgun as its stdio slot 3.
    const handle = bindHandle();
    ctx.after(() => handle.close());
    const out: { address?: string; port?: number } = {};
    assert.equal(handle.getsockname(out), 0);
    const t = new Tsgun(['-w', '2', '-b', 'fd://3', APP], { stdio: ['ignore', 'pipe', 'pipe', handle.fd] });
    ctx.after(() => t.kill());
    const url = await t.ready(2);
    assert.equal(url, `http://127.0.0.1:${out.port}`);
    const pid = await expectExpress(url);
    assert.ok((await t.workerPids()).includes(pid));
    await stopClean(t);
  });

  test('several -b at once: one Listening line each, all served', async (ctx) => {
    const sock = path.join(scratchDir(), 'multi.sock');
    const binds = ['127.0.0.1:0', `unix:${sock}`, 'tcp://127.0.0.1:0'];
    const t = new Tsgun(['-w', '2', ...binds.flatMap((b) => ['-b', b]), APP]);
    ctx.after(() => t.kill());
    const urls = await t.listening(3);
    await t.ready(2, 3);
    assert.equal(listeningLines(t).length, 3);
    assert.match(urls[0]!, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(urls[1], `unix:${sock}`);
    assert.match(urls[2]!, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.notEqual(portOf(urls[0]!), portOf(urls[2]!));
    const workers = await t.workerPids();
    for (const url of [urls[0]!, urls[2]!]) assert.ok(workers.includes(await expectExpress(url)));
    assert.ok(workers.includes(await expectExpress('http://localhost/', { socketPath: sock })));
    await stopClean(t);
    assert.equal(existsSync(sock), false);
  });
});
