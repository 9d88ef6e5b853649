/**
 * App shapes and the fetch adapter, each served by a real tsgun master with two workers:
 * real frameworks, real sockets, real HTTP.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { after, before, describe, test, type TestContext } from 'node:test';
import { describePids, request, Tsgun, workerPidsByTitle } from '../helpers.js';

interface Served {
  t: Tsgun;
  url: string;
  workers: number[];
}

/** Start tsgun with two workers on an ephemeral port and wait for both to be ready. */
async function serve(args: readonly string[]): Promise<Served> {
  const t = new Tsgun(['-w', '2', '-b', '127.0.0.1:0', ...args]);
  try {
    const url = await t.ready(2);
    const workers = workerPidsByTitle(t.pid);
    assert.equal(
      workers.length,
      2,
      `expected 2 workers, found ${describePids(await t.workerPids())}\n--- stderr ---\n${t.stderr}`,
    );
    return { t, url, workers };
  } catch (err) {
    await t.stop();
    throw err;
  }
}

/** Serve `args`, run `body`, then stop, expecting a clean exit; the master is killed after the test if `body` fails. */
async function withServer(
  ctx: TestContext,
  args: readonly string[],
  body: (s: Served) => Promise<void>,
): Promise<void> {
  const s = await serve(args);
  ctx.after(() => s.t.kill());
  await body(s);
  const { code } = await s.t.stop();
  assert.equal(code, 0, `tsgun exited with ${code}\n${s.t.stderr}`);
}

/** GET `path` and check the body is `<label> <pid>` from one of the workers. */
async function expectWorkerReply(s: Served, path: string, label: RegExp): Promise<string> {
  const reply = await request(s.url, { path });
  assert.equal(reply.status, 200, reply.body);
  const m = new RegExp(`^${label.source} (\\d+)$`).exec(reply.body);
  assert.ok(m, `unexpected body ${JSON.stringify(reply.body)}`);
  assert.ok(
    s.workers.includes(Number(m[m.length - 1])),
    `pid in ${JSON.stringify(reply.body)} is not a worker of this master (${s.workers.join(', ')})`,
  );
  return reply.body;
}

interface RawReply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  /** ms from the request's start to the first body chunk, and to the end. */
  firstChunkMs: number | null;
  endMs: number;
  localPort: number;
}

/** An HTTP request whose body may be streamed in chunks, with the reply body as bytes. */
function send(
  url: string,
  opts: { method?: string; path?: string; headers?: Record<string, string>; chunks?: Buffer[] } = {},
): Promise<RawReply> {
  const u = new URL(url);
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        hostname: u.hostname,
        port: u.port,
        path: opts.path ?? '/',
        method: opts.method ?? 'GET',
        headers: opts.headers,
        agent: false,
        timeout: 20_000,
      },
      (res) => {
        const parts: Buffer[] = [];
        let firstChunkMs: number | null = null;
        const localPort = res.socket.localPort!;
        res.on('data', (c: Buffer) => {
          firstChunkMs ??= Date.now() - started;
          parts.push(c);
        });
        res.on('end', () =>
          resolve({
            status: res.statusCode!,
            headers: res.headers,
            body: Buffer.concat(parts),
            firstChunkMs,
            endMs: Date.now() - started,
            localPort,
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`request to ${url} timed out`)));
    req.on('error', reject);
    if (!opts.chunks) {
      req.end();
      return;
    }
    // Write the body in pieces, honouring backpressure, so it arrives as a stream.
    const chunks = [...opts.chunks];
    const pump = (): void => {
      while (chunks.length > 0) {
        if (!req.write(chunks.shift()!)) {
          req.once('drain', pump);
          return;
        }
      }
      req.end();
    };
    pump();
  });
}

/** A raw HTTP/1.1 exchange on a plain TCP socket: everything the server sends until it closes. */
function rawExchange(url: string, text: string): Promise<string> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const sock = net.connect(Number(u.port), u.hostname, () => sock.end(text));
    let data = '';
    sock.setEncoding('latin1');
    sock.setTimeout(15_000, () => sock.destroy(new Error('raw exchange timed out')));
    sock.on('data', (c: string) => (data += c));
    sock.on('close', () => resolve(data));
    sock.on('error', reject);
  });
}

describe('app shapes, each served by two workers', () => {
  test('Express: a Node request listener (req, res)', async (ctx) => {
    await withServer(ctx, ['express-app:app'], async (s) => {
      await expectWorkerReply(s, '/', /express/);
      const slow = await request(s.url, { path: '/slow?ms=50' });
      assert.match(slow.body, /^slow \d+$/);
    });
  });

  test('Koa: served through app.callback(), middleware included', async (ctx) => {
    await withServer(ctx, ['koa-app:app'], async (s) => {
      await expectWorkerReply(s, '/', /koa/);
      const reply = await request(s.url, { path: '/x/y?q=1' });
      assert.equal(reply.body, 'koa path /x/y q=1');
      assert.equal(reply.headers['x-koa-middleware'], 'ran');
    });
  });

  test('Fastify: routes and a plugin, served after ready()', async (ctx) => {
    await withServer(ctx, ['fastify-app:app'], async (s) => {
      await expectWorkerReply(s, '/', /fastify/);
      // The plugin's route is registered 200 ms into boot: it exists only if tsgun awaited ready().
      const plugin = await request(s.url, { path: '/plugin/hello' });
      assert.equal(plugin.status, 200, plugin.body);
      const body = JSON.parse(plugin.body) as { greeting: string; pid: number };
      assert.equal(body.greeting, 'hello from a plugin');
      assert.ok(s.workers.includes(body.pid));
      assert.match(plugin.headers['content-type'] ?? '', /^application\/json/);
      assert.equal((await request(s.url, { path: '/nope' })).status, 404);
    });
  });

  test('Hono: an app object with fetch(); env.incoming.socket gives the client address', async (ctx) => {
    await withServer(ctx, ['hono-app:app'], async (s) => {
      await expectWorkerReply(s, '/', /hono/);
      const params = await request(s.url, { path: '/users/42?sort=desc' });
      assert.deepEqual(JSON.parse(params.body), { id: '42', sort: 'desc' });
      const reply = await send(s.url, { path: '/client' });
      const client = JSON.parse(reply.body.toString()) as { remoteAddress: string; remotePort: number };
      assert.equal(client.remoteAddress, '127.0.0.1');
      // The port the worker saw is the very socket this client used.
      assert.equal(client.remotePort, reply.localPort);
    });
  });

  test('a bare fetch handler function (request) => Response, as the default export', async (ctx) => {
    await withServer(ctx, ['fetch-app'], async (s) => {
      await expectWorkerReply(s, '/', /fetch/);
    });
  });

  test('a factory called as MODULE:create()', async (ctx) => {
    await withServer(ctx, ['factory-app:create()'], async (s) => {
      await expectWorkerReply(s, '/', /factory sync/);
    });
  });

  test('an async factory with --factory is awaited', async (ctx) => {
    const before = Date.now();
    await withServer(ctx, ['--factory', 'factory-app:createAsync'], async (s) => {
      const reply = await request(s.url);
      const m = /^factory async (\d+) (\d+)$/.exec(reply.body);
      assert.ok(m, `unexpected body ${JSON.stringify(reply.body)}`);
      const [, pid, bootedAt] = m;
      assert.ok(s.workers.includes(Number(pid)));
      assert.ok(Number(bootedAt) >= before, `factory ran at ${bootedAt}, before the test started (${before})`);
    });
  });

  test('a dotted attribute, mod:server.handler', async (ctx) => {
    await withServer(ctx, ['nested-app:server.handler'], async (s) => {
      const reply = await request(s.url, { path: '/deep/path' });
      assert.match(reply.body, /^nested \/deep\/path \d+$/);
    });
  });

  test('MODULE alone serves the default export', async (ctx) => {
    await withServer(ctx, ['default-app'], async (s) => {
      const reply = await request(s.url, { path: '/abc' });
      assert.match(reply.body, /^default \/abc \d+$/);
    });
  });

  test('--interface node serves a listener that auto-detection would take for a fetch handler', async (ctx) => {
    await withServer(ctx, ['--interface', 'node', 'interface-app:restListener'], async (s) => {
      const reply = await request(s.url, { method: 'POST', body: 'x' });
      assert.equal(reply.status, 200);
      assert.match(reply.body, /^node listener POST \d+$/);
    });
  });

  test('--interface fetch serves a two-parameter fetch handler', async (ctx) => {
    await withServer(ctx, ['--interface', 'fetch', 'interface-app:fetchWithEnv'], async (s) => {
      const reply = await request(s.url, { method: 'PUT', body: 'x' });
      assert.equal(reply.status, 200);
      assert.match(reply.body, /^fetch handler PUT 1\.1 \d+$/);
    });
  });

  test('a plain JavaScript ES module (.mjs)', async (ctx) => {
    await withServer(ctx, ['js-app.mjs:app'], async (s) => {
      await expectWorkerReply(s, '/', /mjs/);
    });
  });

  test('a plain CommonJS module (.cjs) with a fetch handler on module.exports', async (ctx) => {
    await withServer(ctx, ['js-app.cjs:app'], async (s) => {
      const reply = await request(s.url, { path: '/p' });
      assert.match(reply.body, /^cjs \/p \d+$/);
    });
  });

  test('MODULE resolves to MODULE/index.ts', async (ctx) => {
    await withServer(ctx, ['dir-app:app'], async (s) => {
      await expectWorkerReply(s, '/', /dir index/);
    });
  });
});

describe('the fetch adapter', () => {
  let s: Served;
  before(async () => {
    s = await serve(['fetch-app:default']);
  });
  after(async () => {
    const { code } = await s.t.stop();
    assert.equal(code, 0);
  });

  test('method, URL with query, and headers reach the handler', async () => {
    const reply = await send(s.url, {
      method: 'PATCH',
      path: '/echo?a=1&b=two%20words&a=3',
      headers: { 'x-test': 'abc', 'x-multi': 'one', accept: 'application/json' },
    });
    assert.equal(reply.status, 200);
    const seen = JSON.parse(reply.body.toString()) as {
      method: string;
      url: string;
      headers: Record<string, string>;
      pid: number;
    };
    assert.equal(seen.method, 'PATCH');
    const port = new URL(s.url).port;
    assert.equal(seen.url, `http://127.0.0.1:${port}/echo?a=1&b=two%20words&a=3`);
    assert.deepEqual(new URL(seen.url).searchParams.getAll('a'), ['1', '3']);
    assert.equal(seen.headers['x-test'], 'abc');
    assert.equal(seen.headers['x-multi'], 'one');
    assert.equal(seen.headers.accept, 'application/json');
    assert.equal(seen.headers.host, `127.0.0.1:${port}`);
    assert.ok(s.workers.includes(seen.pid));
  });

  test('request.ip is the client address', async () => {
    const reply = await send(s.url, { path: '/echo' });
    assert.equal((JSON.parse(reply.body.toString()) as { ip: string }).ip, '127.0.0.1');
  });

  test('a streamed 1 MB POST body arrives whole (hashed by the handler)', async () => {
    const data = randomBytes(1024 * 1024);
    const chunks = Array.from({ length: 64 }, (_, i) => data.subarray(i * 16384, (i + 1) * 16384));
    const reply = await send(s.url, { method: 'POST', path: '/hash', chunks });
    assert.equal(reply.status, 200, reply.body.toString());
    const seen = JSON.parse(reply.body.toString()) as { bytes: number; chunks: number; sha256: string };
    assert.equal(seen.bytes, data.length);
    assert.equal(seen.sha256, createHash('sha256').update(data).digest('hex'));
  });

  test('a streamed 1 MB POST body is echoed back byte for byte', async () => {
    const data = randomBytes(1024 * 1024);
    const chunks = Array.from({ length: 16 }, (_, i) => data.subarray(i * 65536, (i + 1) * 65536));
    const reply = await send(s.url, { method: 'POST', path: '/upload-echo', chunks });
    assert.equal(reply.status, 200);
    assert.equal(reply.body.length, data.length);
    assert.equal(
      createHash('sha256').update(reply.body).digest('hex'),
      createHash('sha256').update(data).digest('hex'),
    );
  });

  test('text(), json() and arrayBuffer() read the whole body once; an ArrayBuffer body goes back whole', async () => {
    const text = await send(s.url, {
      method: 'POST',
      path: '/read?as=text',
      chunks: [Buffer.from('héllo, '), Buffer.from('world')],
    });
    assert.deepEqual(JSON.parse(text.body.toString()), { body: 'héllo, world', bodyUsed: true, again: 'TypeError' });
    const json = await send(s.url, {
      method: 'POST',
      path: '/read?as=json',
      chunks: [Buffer.from('{"a":[1,'), Buffer.from('2]}')],
    });
    assert.deepEqual(JSON.parse(json.body.toString()), { body: { a: [1, 2] }, bodyUsed: true, again: 'TypeError' });
    const bytes = await send(s.url, {
      method: 'POST',
      path: '/read?as=arrayBuffer',
      chunks: [Buffer.from([0, 1, 254, 255])],
    });
    assert.equal((JSON.parse(bytes.body.toString()) as { body: string }).body, '0001feff');
    const empty = await send(s.url, { path: '/read?as=text' });
    assert.deepEqual(
      JSON.parse(empty.body.toString()),
      { body: '', bodyUsed: false, again: 'read again' },
      'a GET has no body to use up',
    );
    const data = randomBytes(300 * 1024);
    const echoed = await send(s.url, {
      method: 'POST',
      path: '/bytes-echo',
      chunks: [data.subarray(0, 100_000), data.subarray(100_000)],
    });
    assert.equal(echoed.status, 200);
    assert.equal(echoed.headers['content-length'], String(data.length));
    assert.ok(echoed.body.equals(data), 'the ArrayBuffer body came back byte for byte');
  });

  test('a streamed response reaches the client chunk by chunk', async () => {
    const reply = await send(s.url, { path: '/stream?ms=1500' });
    assert.equal(reply.status, 200);
    assert.equal(reply.body.toString(), 'first chunk\nsecond chunk\n');
    assert.equal(reply.headers['transfer-encoding'], 'chunked');
    assert.ok(reply.firstChunkMs !== null);
    // The second chunk comes 1.5 s after the first; a buffered body would arrive all at once.
    assert.ok(
      reply.endMs - reply.firstChunkMs >= 1000,
      `first chunk at ${reply.firstChunkMs} ms, end at ${reply.endMs} ms: the response was buffered`,
    );
  });

  test('two Set-Cookie headers stay two headers', async () => {
    const reply = await send(s.url, { path: '/cookies' });
    assert.equal(reply.status, 200);
    assert.deepEqual(reply.headers['set-cookie'], ['a=1; Path=/; HttpOnly', 'b=2; Path=/; Max-Age=60']);
    assert.equal(reply.body.toString(), 'two cookies');
  });

  test('204 and 304 carry no body and no Content-Length', async () => {
    for (const status of [204, 304]) {
      const raw = await rawExchange(
        s.url,
        `GET /no-body?status=${status} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n`,
      );
      const end = raw.indexOf('\r\n\r\n');
      assert.ok(end > 0, `no header block in ${JSON.stringify(raw)}`);
      assert.match(raw, new RegExp(`^HTTP/1\\.1 ${status} `));
      assert.match(raw.slice(0, end), /\r\nx-route: no-body/i);
      assert.doesNotMatch(raw.slice(0, end), /content-length|transfer-encoding/i);
      assert.equal(raw.slice(end + 4), '', `a ${status} response carried a body`);
    }
  });

  test('HEAD gets the headers and no body', async () => {
    const raw = await rawExchange(s.url, 'HEAD /text HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n');
    const end = raw.indexOf('\r\n\r\n');
    assert.ok(end > 0, `no header block in ${JSON.stringify(raw)}`);
    assert.match(raw, /^HTTP\/1\.1 200 /);
    assert.match(raw.slice(0, end), /\r\nx-route: text/i);
    assert.equal(raw.slice(end + 4), '', 'HEAD response carried a body');
    // GET on the same route does carry it.
    const get = await rawExchange(s.url, 'GET /text HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n');
    assert.match(get, /a body that HEAD must not send/);
  });

  test('a handler that throws gives 500 and the workers keep serving', async () => {
    const linesBefore = s.t.lines.length;
    for (let i = 0; i < 4; i++) {
      const thrown = await send(s.url, { path: '/throw' });
      assert.equal(thrown.status, 500);
      assert.equal(thrown.body.toString(), 'Internal Server Error');
      const rejected = await send(s.url, { path: '/reject' });
      assert.equal(rejected.status, 500);
    }
    await s.t.waitForLine(/fixture: thrown on purpose/, 5000, linesBefore);
    await s.t.waitForLine(/fixture: rejected on purpose/, 5000, linesBefore);
    for (let i = 0; i < 6; i++) {
      const ok = await request(s.url);
      assert.equal(ok.status, 200);
      assert.ok(s.workers.includes(Number(/^fetch (\d+)$/.exec(ok.body)?.[1])), ok.body);
    }
    assert.deepEqual(workerPidsByTitle(s.t.pid), s.workers, 'a worker was replaced after a handler error');
    assert.equal(s.t.grep(/^Worker \(pid:\d+\)/).length, 0, 'a worker exited');
  });
});
