/**
 * The HTTP layer, part 3 (settings section HTTP, the access log, request hooks): request
 * size limits (414, 431), slow clients and --headers-timeout / --request-timeout,
 * --limit-concurrency and
 * --worker-connections, default response headers and --root-path, every access log atom
 * and the json format, pre_request / post_request from a .ts config. Real clients: raw TCP
 * sockets for what an HTTP client would not send, node's http client otherwise.
 *
 * Part 1 (TLS, HTTP/2) is http-layer.test.ts; part 2 (forwarded headers, PROXY protocol)
 * is http-layer-proxy.test.ts.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import path from 'node:path';
import { describe, test } from 'node:test';
import { childPidsSync, RawHttp, request, scratchDir, sleep } from '../helpers.js';
import { fileLines, get, HTTP_FIXTURES, rawExchange, serve, stopped } from './http-layer.shared.js';

/** A request head with `lines` as its header fields (Host included by the caller). */
function head(target: string, fields: readonly string[]): string {
  return `GET ${target} HTTP/1.1\r\n${fields.map((f) => `${f}\r\n`).join('')}Connection: close\r\n\r\n`;
}

/** `n` header fields in all, Host and Connection included. */
function manyFields(n: number): string[] {
  return ['Host: localhost', ...Array.from({ length: n - 2 }, (_, i) => `X-Field-${i}: ${i}`)];
}

// ---- slow clients --------------------------------------------------------------------------

interface SlowClients {
  /** Milliseconds from connect to close, per client; null while open. */
  closedAfter: Array<number | null>;
  /** What each client received. */
  received: string[];
  stop(): void;
}

/**
 * `n` clients that send a request line and then one header byte per second, never
 * finishing the head (slowloris). Resolves once every client is connected.
 */
async function slowClients(port: number, n: number): Promise<SlowClients> {
  const sockets: net.Socket[] = [];
  const closedAfter: Array<number | null> = new Array<number | null>(n).fill(null);
  const received: string[] = new Array<string>(n).fill('');
  await Promise.all(
    Array.from(
      { length: n },
      (_, i) =>
        new Promise<void>((resolve, reject) => {
          const socket = net.connect({ host: '127.0.0.1', port });
          sockets.push(socket);
          let opened = 0;
          socket.once('connect', () => {
            opened = Date.now();
            socket.write(`GET /slow-${i} HTTP/1.1\r\nHost: localhost\r\nX-Slow: `);
            resolve();
          });
          socket.on('data', (c: Buffer) => (received[i] += c.toString('latin1')));
          socket.on('error', (err) => {
            if (!opened) reject(err);
          });
          socket.on('close', () => (closedAfter[i] = Date.now() - opened));
        }),
    ),
  );
  const drip = setInterval(() => {
    for (const s of sockets) if (!s.destroyed && s.writable) s.write('a');
  }, 1000);
  return {
    closedAfter,
    received,
    stop: () => {
      clearInterval(drip);
      for (const s of sockets) s.destroy();
    },
  };
}

/** A normal request on a fresh connection; returns its status and how long it took. */
async function timed(url: string): Promise<{ status: number; ms: number }> {
  const t0 = Date.now();
  const r = await request(url, { timeoutMs: 10_000 });
  return { status: r.status, ms: Date.now() - t0 };
}

// ---- access log ----------------------------------------------------------------------------

const EVERY_ATOM =
  '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(m)s %(U)s %(q)s %(H)s %(s)s %(B)s %(b)s "%(f)s" "%(a)s" %(T)s %(M)s %(D)s %(L)s %(p)s %({x-req}i)s %({x-res}o)s %({TSGUN_T}e)s';
const EVERY_ATOM_LINE =
  /^(?<h>\S+) (?<l>\S+) (?<u>\S+) (?<t>\[[^\]]+\]) "(?<r>[^"]*)" (?<m>\S+) (?<U>\S+) (?<q>\S*) (?<H>\S+) (?<s>\d{3}) (?<B>\d+) (?<b>\S+) "(?<f>[^"]*)" "(?<a>[^"]*)" (?<T>\d+) (?<M>\d+) (?<D>\d+) (?<L>\d+\.\d{6}) (?<p>\S+) (?<xreq>\S+) (?<xres>\S+) (?<env>\S+)$/;

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** `[20/Nov/2026:23:28:21 +0000]` to epoch ms. */
function parseClfDate(text: string): number {
  const m = /^\[(\d{2})\/(\w{3})\/(\d{4}):(\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2})\]$/.exec(text);
  assert.ok(m, `a CLF date, got ${text}`);
  const [, d, mon, y, hh, mm, ss, sign, oh, om] = m;
  const utc = Date.UTC(Number(y), MONTHS.indexOf(mon!), Number(d), Number(hh), Number(mm), Number(ss));
  const offset = (Number(oh) * 60 + Number(om)) * 60_000 * (sign === '+' ? 1 : -1);
  return utc - offset;
}

const BASIC_ALICE = `Basic ${Buffer.from('alice:s3cret').toString('base64')}`;

// ---- tests -----------------------------------------------------------------------------------

describe('HTTP layer: limits, headers, access log, hooks', { concurrency: 2 }, () => {
  test('request limits: request line 414, header count and header size 431 (defaults and flags)', async (ctx) => {
    const [dflt, tight] = await Promise.all([
      serve(['node-app']),
      serve([
        '--limit-request-line',
        '64',
        '--limit-request-fields',
        '5',
        '--limit-request-field-size',
        '100',
        'node-app',
      ]),
    ]);
    ctx.after(() => dflt.t.kill());
    ctx.after(() => tight.t.kill());
    const port = dflt.port;
    // "GET " + target + " HTTP/1.1" is the request line: 4094 bytes is the default limit.
    const target = (lineLength: number): string => `/${'a'.repeat(lineLength - 'GET  HTTP/1.1'.length - 1)}`;
    const host = ['Host: localhost'];
    assert.equal((await rawExchange(port, head(target(5000), host))).status, 414, '5000-byte request line');
    assert.equal((await rawExchange(port, head(target(4095), host))).status, 414, '4095-byte request line');
    assert.equal((await rawExchange(port, head(target(4094), host))).status, 200, '4094-byte request line is allowed');

    assert.equal((await rawExchange(port, head('/', manyFields(101)))).status, 431, '101 header fields');
    assert.equal((await rawExchange(port, head('/', manyFields(100)))).status, 200, '100 header fields are allowed');

    assert.equal(
      (await rawExchange(port, head('/', [...host, `X-Big: ${'v'.repeat(9000)}`]))).status,
      431,
      'a 9000-byte header value',
    );
    // "X-Big: " + value: 8190 bytes is the default limit for a field.
    assert.equal(
      (await rawExchange(port, head('/', [...host, `X-Big: ${'v'.repeat(8190 - 7)}`]))).status,
      200,
      'an 8190-byte field is allowed',
    );
    const big = await rawExchange(port, head('/', [...host, `X-Big: ${'v'.repeat(8191 - 7)}`]));
    assert.equal(big.status, 431, 'an 8191-byte field');
    assert.match(big.data, /\r\nconnection: close\r\n/i, 'a limit answer closes the connection');

    const t2 = tight.port;
    assert.equal((await rawExchange(t2, head(target(64), host))).status, 200);
    assert.equal((await rawExchange(t2, head(target(65), host))).status, 414);
    assert.equal((await rawExchange(t2, head('/', manyFields(5)))).status, 200);
    assert.equal((await rawExchange(t2, head('/', manyFields(6)))).status, 431);
    assert.equal((await rawExchange(t2, head('/', [...host, `X-Big: ${'v'.repeat(100 - 7)}`]))).status, 200);
    assert.equal((await rawExchange(t2, head('/', [...host, `X-Big: ${'v'.repeat(101 - 7)}`]))).status, 431);
    await Promise.all([stopped(dflt.t), stopped(tight.t)]);
  });

  test('200 slowloris clients do not delay a normal request; they stay open under the default headers timeout', async (ctx) => {
    const { t, url } = await serve(['node-app']);
    ctx.after(() => t.kill());
    const slow = await slowClients(Number(new URL(url).port), 200);
    ctx.after(() => slow.stop());
    for (let i = 0; i < 3; i++) {
      const r = await timed(`${url}/normal`);
      assert.equal(r.status, 200);
      assert.ok(r.ms < 2000, `a normal request took ${r.ms} ms with 200 slow clients`);
      await sleep(1200);
    }
    const open = slow.closedAfter.filter((c) => c === null).length;
    assert.equal(open, 200, 'the slow clients are still connected (30 s headers timeout)');
    await stopped(t);
  });

  test('--headers-timeout 2 closes 200 slowloris clients after ~2-3 s (408 or close), normal requests still prompt', async (ctx) => {
    const { t, url } = await serve(['--headers-timeout', '2', 'node-app']);
    ctx.after(() => t.kill());
    const slow = await slowClients(Number(new URL(url).port), 200);
    ctx.after(() => slow.stop());
    const r = await timed(`${url}/normal`);
    assert.equal(r.status, 200);
    assert.ok(r.ms < 2000, `a normal request took ${r.ms} ms`);
    await t.until(() => slow.closedAfter.every((c) => c !== null), 'every slow client closed', 10_000);
    const times = slow.closedAfter as number[];
    const [min, max] = [Math.min(...times), Math.max(...times)];
    assert.ok(min >= 1500, `no slow client closed before the timeout (first after ${min} ms)`);
    assert.ok(max <= 4500, `every slow client closed within ~2-3 s (last after ${max} ms)`);
    for (const got of slow.received)
      assert.ok(
        got === '' || got.startsWith('HTTP/1.1 408'),
        `a 408 or nothing, got ${JSON.stringify(got.slice(0, 60))}`,
      );
    assert.ok((await timed(`${url}/after`)).ms < 2000);
    await stopped(t);
  });

  /** A POST with a 10-byte body, of which only `body` is sent. */
  const post = (body: string): string =>
    `POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\nConnection: close\r\n\r\n${body}`;

  test('--request-timeout 2 (with --headers-timeout 1) closes a client that sends its body too slowly (408), not one that is quick', async (ctx) => {
    const { t, port } = await serve(['--request-timeout', '2', '--headers-timeout', '1', 'node-app']);
    ctx.after(() => t.kill());
    const stalled = await rawExchange(port, post('abc'), { timeoutMs: 8000 });
    assert.equal(stalled.closed, true, 'closed by the server');
    assert.ok(stalled.ms >= 1500 && stalled.ms <= 5000, `after ~2-3 s (${stalled.ms} ms)`);
    assert.ok(
      stalled.data === '' || stalled.status === 408,
      `a 408 or nothing, got ${JSON.stringify(stalled.data.slice(0, 60))}`,
    );
    assert.equal((await rawExchange(port, post('0123456789'))).status, 200);
    await stopped(t);
  });

  test('--request-timeout 2 alone: the workers boot (the headers timeout cannot outlast the request timeout)', async (ctx) => {
    const { t, port } = await serve(['--request-timeout', '2', 'node-app']);
    ctx.after(() => t.kill());
    assert.equal((await rawExchange(port, post('0123456789'))).status, 200);
    const stalled = await rawExchange(port, post('abc'), { timeoutMs: 8000 });
    assert.equal(stalled.closed, true, 'closed by the server');
    assert.ok(stalled.ms <= 5000, `after ~2-3 s (${stalled.ms} ms)`);
    await stopped(t);
  });

  test('--limit-concurrency 2: 4 concurrent slow requests get 2 x 200 and 2 x 503', async (ctx) => {
    const { t, url } = await serve(['--limit-concurrency', '2', 'node-app']);
    ctx.after(() => t.kill());
    const replies = await Promise.all(Array.from({ length: 4 }, (_, i) => get(`${url}/slow?ms=1500&i=${i}`)));
    assert.deepEqual(replies.map((r) => r.status).sort(), [200, 200, 503, 503]);
    const busy = replies.find((r) => r.status === 503)!;
    assert.equal(busy.headers['retry-after'], '1');
    // Once the two finish, there is room again.
    assert.equal((await get(`${url}/again`)).status, 200);
    await stopped(t);
  });

  test('--worker-connections 2: a third connection closes the oldest idle one; with both busy, it is refused', async (ctx) => {
    const { t, url, port } = await serve(['--worker-connections', '2', '--keep-alive', '30', 'node-app']);
    ctx.after(() => t.kill());
    const held: RawHttp[] = [];
    ctx.after(() => {
      for (const c of held) c.socket.destroy();
    });
    for (let i = 0; i < 2; i++) {
      const c = await RawHttp.connect(url);
      held.push(c);
      assert.equal((await c.request(`/held-${i}`)).status, 200);
    }
    // Both idle keep-alive: the oldest makes room (as nginx reuses idle keep-alive connections).
    const third = await rawExchange(port, 'GET /third HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n', {
      timeoutMs: 3000,
    });
    assert.equal(third.status, 200, 'the third connection is served');
    await held[0]!.closed;
    assert.equal((await held[1]!.request('/held-again')).status, 200, 'the younger idle connection is kept');

    // Both busy (a request in flight on each): a new connection is refused.
    const busy = await RawHttp.connect(url);
    held.push(busy);
    const slow = [held[1]!.request('/slow-1?ms=2500'), busy.request('/slow-2?ms=2500')];
    await sleep(500);
    const refused = await rawExchange(port, 'GET /fourth HTTP/1.1\r\nHost: localhost\r\n\r\n', { timeoutMs: 3000 });
    assert.equal(refused.closed, true, 'the fourth connection was closed');
    assert.equal(refused.data, '', 'without a response');
    assert.deepEqual(
      (await Promise.all(slow)).map((r) => r.status),
      [200, 200],
      'the busy connections were not closed',
    );
    await stopped(t);
  });

  test('default headers: Server and Date by default, --no-server-header, --no-date-header, --header (the app wins), --root-path', async (ctx) => {
    const [plain, express, custom] = await Promise.all([
      serve(['--header', 'X-Frame-Options:DENY', 'node-app']),
      // Express gives each response a prototype of its own: the defaults must reach it too.
      serve(['--header', 'X-Frame-Options:DENY', '../express-app:app']),
      serve([
        '--no-server-header',
        '--no-date-header',
        '--header',
        'X-Frame-Options:DENY',
        '--header',
        'X-Team: web platform',
        '--root-path',
        '/api',
        'fetch-app',
      ]),
    ]);
    ctx.after(() => plain.t.kill());
    ctx.after(() => custom.t.kill());
    ctx.after(() => express.t.kill());
    const a = await get(`${plain.url}/`);
    assert.equal(a.headers.server, 'tsgun');
    assert.ok(a.headers.date && !Number.isNaN(Date.parse(a.headers.date)), `a Date header, got ${a.headers.date}`);
    assert.equal(a.headers['x-frame-options'], 'DENY');
    const own = await get(`${plain.url}/frame`);
    assert.equal(own.headers['x-frame-options'], 'SAMEORIGIN', "the app's own value wins");
    const e = await get(`${express.url}/`);
    assert.equal(e.status, 200);
    assert.equal(e.headers.server, 'tsgun', 'an Express response gets the Server header');
    assert.equal(e.headers['x-frame-options'], 'DENY', 'and the --header ones');
    const limited = await rawExchange(plain.port, head(`/${'a'.repeat(5000)}`, ['Host: localhost']));
    assert.equal(limited.status, 414);

    const b = await get(`${custom.url}/users/7?x=1`);
    assert.equal(b.status, 200);
    assert.equal(b.headers.server, undefined, '--no-server-header');
    assert.equal(b.headers.date, undefined, '--no-date-header');
    assert.equal(b.headers['x-frame-options'], 'DENY');
    assert.equal(b.headers['x-team'], 'web platform');
    const seen = b.json!;
    assert.equal(seen.pathname, '/api/users/7', 'the fetch handler sees the root path');
    assert.equal(seen.url, `${custom.url}/api/users/7?x=1`);
    const frame = await get(`${custom.url}/frame`);
    assert.equal(frame.headers['x-frame-options'], 'SAMEORIGIN', "the fetch handler's own value wins");
    await Promise.all([stopped(plain.t), stopped(custom.t), stopped(express.t)]);
  });

  test('access log: every Gunicorn atom', async (ctx) => {
    const log = path.join(scratchDir(), 'access.log');
    const { t, url } = await serve(['--access-logfile', log, '--access-logformat', EVERY_ATOM, 'node-app'], {
      TSGUN_T: 'env-value',
    });
    ctx.after(() => t.kill());
    const before = Date.now();
    const got = await get(`${url}/path/to?a=1&b=two&ms=1100`, {
      headers: {
        authorization: BASIC_ALICE,
        referer: 'http://ref.example/page',
        'user-agent': 'tsgun-test/1.0 (atoms)',
        'x-req': 'req-value',
      },
    });
    assert.equal(got.status, 200);
    const nobody = await get(`${url}/nobody?status=204`);
    assert.equal(nobody.status, 204);
    const lines = await fileLines(log, 2);
    assert.equal(lines.length, 2);
    const m = EVERY_ATOM_LINE.exec(lines[0]!);
    assert.ok(m?.groups, `the line matches the format: ${lines[0]}`);
    const g = m.groups;
    const worker = got.json!.pid as number;
    assert.equal(g.h, '127.0.0.1');
    assert.equal(g.l, '-');
    assert.equal(g.u, 'alice');
    const at = parseClfDate(g.t!);
    assert.ok(at >= Math.floor(before / 1000) * 1000 - 1000 && at <= Date.now(), `the request time ${g.t}`);
    assert.equal(g.r, 'GET /path/to?a=1&b=two&ms=1100 HTTP/1.1');
    assert.equal(g.m, 'GET');
    assert.equal(g.U, '/path/to');
    assert.equal(g.q, 'a=1&b=two&ms=1100');
    assert.equal(g.H, 'HTTP/1.1');
    assert.equal(g.s, '200');
    assert.equal(g.B, got.headers['content-length']);
    assert.equal(g.b, got.headers['content-length']);
    assert.equal(g.f, 'http://ref.example/page');
    assert.equal(g.a, 'tsgun-test/1.0 (atoms)');
    const micros = Number(g.D);
    assert.ok(micros >= 1_100_000 && micros < 10_000_000, `D is microseconds (${micros})`);
    assert.equal(Number(g.T), Math.floor(micros / 1e6), 'T is whole seconds');
    assert.ok(Math.abs(Number(g.M) - micros / 1000) <= 1, `M is milliseconds (${g.M})`);
    assert.ok(Math.abs(Number(g.L) - micros / 1e6) < 1e-5, `L is seconds with decimals (${g.L})`);
    assert.equal(g.p, `<${worker}>`);
    assert.deepEqual(childPidsSync(t.pid), [worker]);
    assert.equal(g.xreq, 'req-value');
    assert.equal(g.xres, 'res-value');
    assert.equal(g.env, 'env-value');

    const n = EVERY_ATOM_LINE.exec(lines[1]!);
    assert.ok(n?.groups, `the line matches the format: ${lines[1]}`);
    assert.equal(n.groups.u, '-');
    assert.equal(n.groups.s, '204');
    assert.equal(n.groups.B, '0', 'a 204 sends no body');
    assert.equal(n.groups.b, '-');
    assert.equal(n.groups.f, '-');
    assert.equal(n.groups.xreq, '-');
    await stopped(t);
  });

  test('access log: --access-logformat json, one object per line', async (ctx) => {
    const log = path.join(scratchDir(), 'access.log');
    const { t, url } = await serve(['--access-logfile', log, '--access-logformat', 'json', 'fetch-app']);
    ctx.after(() => t.kill());
    const before = Date.now();
    const got = await get(`${url}/items?q=1&ms=50`, {
      headers: { authorization: BASIC_ALICE, referer: 'http://ref.example/', 'user-agent': 'json-client/2' },
    });
    assert.equal(got.status, 200);
    const missing = await get(`${url}/gone?status=404`);
    assert.equal(missing.status, 404);
    const entries = (await fileLines(log, 2)).map((l) => JSON.parse(l) as Record<string, unknown>);
    const [e, f] = entries;
    assert.deepEqual(
      Object.keys(e!).sort(),
      [
        'bytes',
        'duration_ms',
        'method',
        'path',
        'pid',
        'protocol',
        'query',
        'referer',
        'remote_addr',
        'status',
        'time',
        'user',
        'user_agent',
      ].sort(),
    );
    const time = Date.parse(e!.time as string);
    assert.ok(time >= before - 1000 && time <= Date.now(), `time ${e!.time as string}`);
    assert.equal(e!.remote_addr, '127.0.0.1');
    assert.equal(e!.user, 'alice');
    assert.equal(e!.method, 'GET');
    assert.equal(e!.path, '/items');
    assert.equal(e!.query, 'q=1&ms=50');
    assert.equal(e!.protocol, 'HTTP/1.1');
    assert.equal(e!.status, 200);
    assert.equal(e!.bytes, Buffer.byteLength(got.body));
    assert.equal(e!.referer, 'http://ref.example/');
    assert.equal(e!.user_agent, 'json-client/2');
    assert.equal(typeof e!.duration_ms, 'number');
    assert.ok((e!.duration_ms as number) >= 50, `duration_ms ${e!.duration_ms as number}`);
    assert.equal(e!.pid, got.json!.pid);
    assert.equal(f!.status, 404);
    assert.equal(f!.path, '/gone');
    assert.equal(f!.user, '-');
    assert.equal(f!.referer, null);
    await stopped(t);
  });

  for (const app of ['node-app', 'fetch-app'] as const) {
    test(`pre_request / post_request hooks from a .ts config, ${app}`, async (ctx) => {
      const hookLog = path.join(scratchDir(), 'hooks.log');
      const { t, url } = await serve(['-c', path.join(HTTP_FIXTURES, 'hooks.conf.ts'), app], { HOOK_LOG: hookLog });
      ctx.after(() => t.kill());
      assert.equal((await get(`${url}/one?ms=30`)).status, 200);
      assert.equal((await get(`${url}/two?status=418`)).status, 418);
      const entries = (await fileLines(hookLog, 4)).map(
        (l) =>
          JSON.parse(l) as {
            hook: string;
            pid: number;
            workerPid: number;
            url: string;
            method?: string;
            status?: number;
            durationMs?: number;
          },
      );
      assert.deepEqual(
        entries.map((e) => `${e.hook} ${e.url}`),
        [
          'pre_request /one?ms=30',
          'post_request /one?ms=30',
          'pre_request /two?status=418',
          'post_request /two?status=418',
        ],
      );
      const workers = childPidsSync(t.pid);
      for (const e of entries) {
        assert.deepEqual([e.pid], workers, 'the hooks run in the worker');
        assert.equal(e.workerPid, e.pid, 'with the worker as their first argument');
      }
      const [, post1, , post2] = entries;
      assert.equal(post1!.status, 200);
      assert.equal(post2!.status, 418);
      for (const post of [post1!, post2!])
        assert.ok(typeof post.durationMs === 'number' && post.durationMs >= 0, `durationMs ${post.durationMs}`);
      assert.ok(post1!.durationMs! >= 30, `the slow request's duration covers its 30 ms (${post1!.durationMs})`);
      await stopped(t);
    });
  }
});
