/**
 * Connections that hold a worker without using it (issue 18, findings 6, 7 and 9): silent
 * connections and idle keep-alive ones at the worker_connections limit, the first-byte and
 * PROXY header deadlines, accept failures for lack of file descriptors; and HTTP strictness
 * with a truthful access log (duplicate Host, requests tsgun rejects, failed body framing).
 * Real clients: raw TCP sockets, many at once, and node's http client.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { FIXTURES, scratchDir, sleep, Tsgun, waitFor } from '../helpers.js';
import { fileLines, rawExchange } from './http-layer.shared.js';

const CONNS_FIXTURES = path.join(FIXTURES, 'conns');
const PROXY_V1 = 'PROXY TCP4 10.9.8.7 127.0.0.1 40000 80\r\n';

/** tsgun serving test/fixtures/conns/app.ts, ready, stopped after the test; `started` runs as soon as the master is spawned. */
async function serve(
  t: TestContext,
  args: readonly string[],
  workers = 1,
  started?: (tsgun: Tsgun) => void,
): Promise<{ tsgun: Tsgun; port: number }> {
  const tsgun = new Tsgun(['-b', '127.0.0.1:0', '-w', String(workers), ...args, 'app:default'], {
    cwd: CONNS_FIXTURES,
  });
  t.after(() => tsgun.kill());
  started?.(tsgun);
  const url = await tsgun.ready(workers);
  return { tsgun, port: Number(new URL(url).port) };
}

interface Held {
  sockets: net.Socket[];
  /** How many of them the server has closed. */
  closed(): number;
}

/**
 * Open `n` connections (100 at a time) and keep them; `send` is written on each once it is
 * connected, and with `reply` each waits for the first response bytes. Destroyed after the test.
 */
async function hold(t: TestContext, port: number, n: number, send = '', reply = false): Promise<Held> {
  const sockets: net.Socket[] = [];
  let closed = 0;
  t.after(() => {
    for (const s of sockets) s.destroy();
  });
  for (let i = 0; i < n; i += 100) {
    await Promise.all(
      Array.from(
        { length: Math.min(100, n - i) },
        () =>
          new Promise<void>((resolve) => {
            const s = net.connect({ host: '127.0.0.1', port });
            sockets.push(s);
            s.on('error', () => resolve());
            s.once('close', () => {
              closed++;
              resolve();
            });
            s.once('connect', () => {
              if (send) s.write(send);
              if (!reply) resolve();
            });
            if (reply) s.once('data', () => resolve());
          }),
      ),
    );
  }
  return { sockets, closed: () => closed };
}

/** `n` requests of a normal client, one after another, each on a new connection: how many got 200. */
async function client(port: number, n: number, prefix = ''): Promise<number> {
  let ok = 0;
  for (let i = 0; i < n; i++) {
    const got = await rawExchange(
      port,
      `${prefix}GET /normal-${i} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`,
      { timeoutMs: 5000 },
    ).catch(() => null);
    if (got?.status === 200) ok++;
  }
  return ok;
}

describe('connections: no lockout by silent or idle connections', { concurrency: 1 }, () => {
  test('2,000 silent connections against -w 2: a new client still gets 99 % of its requests through', async (t) => {
    const { port } = await serve(t, [], 2);
    await hold(t, port, 2000);
    await sleep(500);
    const ok = await client(port, 100);
    assert.ok(ok >= 99, `${ok} of 100 requests succeeded`);
  });

  test('the same with --proxy-protocol v1 (the client sends a PROXY v1 header first)', async (t) => {
    const { port } = await serve(t, ['--proxy-protocol', 'v1'], 2);
    await hold(t, port, 2000);
    await sleep(500);
    const ok = await client(port, 100, PROXY_V1);
    assert.ok(ok >= 99, `${ok} of 100 requests succeeded`);
  });

  test('2,400 idle keep-alive connections (more than the 2 × 1000 slots of -w 2) do not lock out a new client', async (t) => {
    const { port } = await serve(t, ['--keep-alive', '60'], 2);
    await hold(t, port, 2400, 'GET /first HTTP/1.1\r\nHost: localhost\r\n\r\n', true);
    const ok = await client(port, 100);
    assert.ok(ok >= 99, `${ok} of 100 requests succeeded`);
  });

  test('--idle-connection-timeout 1: connections that send nothing are closed; a request in time is served', async (t) => {
    const { port } = await serve(t, ['--idle-connection-timeout', '1']);
    const silent = await hold(t, port, 20);
    const started = Date.now();
    await waitFor(() => silent.closed() === 20, 'the 20 silent connections closed', 8000);
    assert.ok(Date.now() - started < 8000);
    const late = await rawExchange(port, '', { timeoutMs: 200 });
    assert.equal(late.closed, false, 'a new connection is not closed at once');
    assert.equal(await client(port, 1), 1);
  });

  test('--proxy-protocol-timeout 1: a connection that sends only `PROX` is closed', async (t) => {
    const { port } = await serve(t, [
      '--proxy-protocol',
      'v1',
      '--proxy-protocol-timeout',
      '1',
      '--idle-connection-timeout',
      '0',
    ]);
    const partial = await rawExchange(port, 'PROX', { timeoutMs: 8000 });
    assert.equal(partial.closed, true, `closed after ${partial.ms} ms`);
    assert.equal(partial.data, '');
    assert.equal(await client(port, 1, PROXY_V1), 1, 'a whole PROXY header is still accepted');
  });

  test('out of file descriptors (ulimit -n 128): one warning, idle connections make room, a new client is served', async (t) => {
    // The master is still loading when its limit is lowered; its workers inherit it.
    const { tsgun, port } = await serve(t, [], 1, (m) =>
      execFileSync('prlimit', ['--pid', String(m.pid), '--nofile=128:128']),
    );
    const [worker] = await tsgun.workerPids();
    await hold(t, port, 300);
    await tsgun.waitForLine(/file descriptors/, 10_000);
    assert.equal(await client(port, 5), 5, 'served while the silent connections are held');
    assert.deepEqual(await tsgun.workerPids(), [worker], 'the same worker');
    assert.equal(tsgun.grep(/file descriptors/).length, 1, `one warning (rate-limited): ${tsgun.stderr}`);
  });
});

describe('HTTP strictness and the access log', { concurrency: 1 }, () => {
  test('two Host headers: 400', async (t) => {
    const { port } = await serve(t, []);
    const got = await rawExchange(
      port,
      'GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\nConnection: close\r\n\r\n',
    );
    assert.equal(got.status, 400, got.data);
  });

  test('rejected requests are logged with the status sent: 400 (bad request line, two Hosts, bad body framing), 408, 414, 431, 503', async (t) => {
    const log = path.join(scratchDir(), 'access.log');
    const limits = [
      '--limit-concurrency',
      '1',
      '--limit-request-field-size',
      '100',
      '--limit-request-line',
      '100',
      '--headers-timeout',
      '1',
    ];
    const { port } = await serve(t, ['--access-logfile', log, ...limits]);
    const bad = await rawExchange(port, 'BAD LINE\r\n\r\n');
    assert.equal(bad.status, 400);
    const hosts = await rawExchange(port, 'GET /hosts HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n');
    assert.equal(hosts.status, 400);
    const big = await rawExchange(
      port,
      `GET /big HTTP/1.1\r\nHost: a\r\nX-Big: ${'x'.repeat(200)}\r\nConnection: close\r\n\r\n`,
    );
    assert.equal(big.status, 431);
    const long = await rawExchange(port, `GET /${'u'.repeat(200)} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n`);
    assert.equal(long.status, 414);
    const partial = await rawExchange(port, 'GET /partial HTTP/1.1\r\nHost: a\r\n', { timeoutMs: 8000 });
    assert.equal(partial.status, 408);
    const framing = await rawExchange(
      port,
      'POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n',
    );
    assert.equal(framing.status, 400);
    const slow = rawExchange(port, 'GET /slow?ms=1500 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
    await sleep(300);
    const busy = await rawExchange(port, 'GET /busy HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
    assert.equal(busy.status, 503);
    assert.equal((await slow).status, 200);

    const lines = await fileLines(log, 8);
    const find = (re: RegExp): string | undefined => lines.find((l) => re.test(l));
    assert.ok(find(/^127\.0\.0\.1 .* "BAD LINE" 400 /), lines.join('\n'));
    assert.ok(find(/"GET \/hosts HTTP\/1\.1" 400 /), lines.join('\n'));
    assert.ok(find(/"GET \/big HTTP\/1\.1" 431 /), lines.join('\n'));
    assert.ok(find(/"GET \/u{200} HTTP\/1\.1" 414 /), lines.join('\n'));
    // A timeout leaves no bytes to show: the request line is `-`.
    assert.ok(find(/"-" 408 /), lines.join('\n'));
    assert.ok(find(/"POST \/upload HTTP\/1\.1" 400 /), lines.join('\n'));
    assert.ok(find(/"GET \/busy HTTP\/1\.1" 503 /), lines.join('\n'));
    assert.ok(find(/"GET \/slow\?ms=1500 HTTP\/1\.1" 200 /), lines.join('\n'));
  });

  test('a bad chunk size after the app read part of the body: the client gets 400, and so does the log', async (t) => {
    const log = path.join(scratchDir(), 'access.log');
    const { port } = await serve(t, ['--access-logfile', log]);
    const got = await new Promise<number>((resolve, reject) => {
      const req = http.request({
        host: '127.0.0.1',
        port,
        method: 'POST',
        path: '/chunks',
        agent: false,
        headers: { 'transfer-encoding': 'chunked' },
      });
      req.on('response', (res) => resolve(res.statusCode!));
      req.on('error', reject);
      req.write('hello');
      // Past the chunk the app has read: a chunk size that is not hex.
      setTimeout(() => req.socket!.write('zz\r\nbad\r\n'), 200);
    });
    assert.equal(got, 400);
    const [line] = await fileLines(log, 1);
    assert.match(line!, /"POST \/chunks HTTP\/1\.1" 400 /);
  });
});
