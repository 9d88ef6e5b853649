/**
 * The access-log format compiler, fed real `IncomingMessage`/`ServerResponse` objects
 * from real requests to a local server.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { getSetting } from '../../src/config/settings.js';
import { compileFormat, createAccessLog, jsonEntry, type AccessEntry } from '../../src/worker/accesslog.js';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'tsgun-accesslog-'));
// createAccessLog installs the response byte counting that %(b)s and %(B)s read.
const log = createAccessLog(path.join(tmp, 'access.log'), 'json');

type Handler = (req: IncomingMessage, res: ServerResponse) => void;
let handler: Handler = (_req, res) => res.end();
let seen: Promise<{ req: IncomingMessage; res: ServerResponse }> | null = null;
let resolveSeen: ((v: { req: IncomingMessage; res: ServerResponse }) => void) | null = null;
const server = http.createServer((req, res) => {
  res.once('close', () => resolveSeen?.({ req, res }));
  handler(req, res);
});
// The http worker reads the peer address as a connection arrives, so it is still known
// when the access-log line is written after the socket has closed; do the same here.
server.on('connection', (socket) => void socket.remoteAddress);
let port = 0;

before(async () => {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
});
after(() => {
  server.close();
  log.flush();
  rmSync(tmp, { recursive: true, force: true });
});

/** Send one request; resolve with the server side's req and res once the response is done. */
async function exchange(
  h: Handler,
  opts: { method?: string; path?: string; headers?: Record<string, string> } = {},
): Promise<{ req: IncomingMessage; res: ServerResponse }> {
  handler = h;
  seen = new Promise((resolve) => (resolveSeen = resolve));
  await new Promise<void>((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        method: opts.method ?? 'GET',
        path: opts.path ?? '/',
        headers: opts.headers,
        agent: false,
      },
      (res) => {
        res.resume();
        res.on('end', resolve);
      },
    );
    req.on('error', reject);
    req.end();
  });
  return seen;
}

/** 20 Nov 2026, 23:28:21.250 local time, and the same as Gunicorn prints it. */
const STARTED = new Date(2026, 10, 20, 23, 28, 21, 250).getTime();
function clf(ms: number): string {
  const d = new Date(ms);
  const off = -d.getTimezoneOffset();
  const pad = (n: number): string => String(n).padStart(2, '0');
  const tz = `${off >= 0 ? '+' : '-'}${pad(Math.floor(Math.abs(off) / 60))}${pad(Math.abs(off) % 60)}`;
  return `[${pad(d.getDate())}/Nov/2026:${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())} ${tz}]`;
}

function entry(x: { req: IncomingMessage; res: ServerResponse }, micros = 2_500_000, startedAt = STARTED): AccessEntry {
  return { ...x, micros, startedAt };
}

const render = (format: string, e: AccessEntry): string => compileFormat(format)(e);

test('every request atom', async () => {
  const x = await exchange((_req, res) => res.end('hello world'), {
    path: '/shop/items?page=2&q=a%20b',
    headers: {
      'user-agent': 'probe/1.0',
      referer: 'http://ref.example/from',
      authorization: `Basic ${Buffer.from('alice:s3cret').toString('base64')}`,
    },
  });
  const e = entry(x);
  assert.equal(render('%(h)s', e), '127.0.0.1');
  assert.equal(render('%(l)s', e), '-');
  assert.equal(render('%(u)s', e), 'alice');
  assert.equal(render('%(t)s', e), clf(STARTED));
  assert.equal(render('%(r)s', e), 'GET /shop/items?page=2&q=a%20b HTTP/1.1');
  assert.equal(render('%(m)s', e), 'GET');
  assert.equal(render('%(U)s', e), '/shop/items');
  assert.equal(render('%(q)s', e), 'page=2&q=a%20b');
  assert.equal(render('%(H)s', e), 'HTTP/1.1');
  assert.equal(render('%(f)s', e), 'http://ref.example/from');
  assert.equal(render('%(a)s', e), 'probe/1.0');
  assert.equal(render('%(p)s', e), `<${process.pid}>`);
});

test('response atoms: status and body bytes', async () => {
  const x = await exchange((_req, res) => {
    res.statusCode = 201;
    res.write('héllo ');
    res.write(Buffer.from('wörld'));
    res.end('!', 'utf8');
  });
  const e = entry(x);
  assert.equal(render('%(s)s', e), '201');
  const bytes = Buffer.byteLength('héllo wörld!');
  assert.equal(render('%(B)s', e), String(bytes));
  assert.equal(render('%(b)s', e), String(bytes));
});

test('an empty body is 0 for %(B)s and - for %(b)s', async () => {
  const e = entry(
    await exchange((_req, res) => {
      res.statusCode = 204;
      res.end();
    }),
  );
  assert.equal(render('%(s)s %(B)s %(b)s', e), '204 0 -');
  const dropped = entry(
    await exchange((_req, res) => {
      res.writeHead(204);
      res.end('a body a 204 cannot carry');
    }),
  );
  assert.equal(render('%(s)s %(B)s %(b)s', dropped), '204 0 -');
  const notModified = entry(
    await exchange((_req, res) => {
      res.statusCode = 304;
      res.write('dropped');
      res.end();
    }),
  );
  assert.equal(render('%(s)s %(B)s %(b)s', notModified), '304 0 -');
});

test('a write after end() sends nothing and counts nothing', async () => {
  const e = entry(
    await exchange((_req, res) => {
      res.on('error', () => {});
      res.end('ok');
      res.write('late', () => {});
    }),
  );
  assert.equal(render('%(B)s', e), '2');
});

test('a HEAD response counts no body bytes, as none are sent', async () => {
  const e = entry(await exchange((_req, res) => res.end('a body that HEAD does not send'), { method: 'HEAD' }));
  assert.equal(render('%(r)s %(B)s %(b)s', e), 'HEAD / HTTP/1.1 0 -');
});

test('time atoms: T seconds, M milliseconds, D microseconds, L decimal seconds', async () => {
  const x = await exchange((_req, res) => res.end());
  assert.equal(render('%(T)s %(M)s %(D)s %(L)s', entry(x, 2_500_400)), '2 2500 2500400 2.500400');
  assert.equal(render('%(T)s %(M)s %(D)s %(L)s', entry(x, 1234.6)), '0 1 1235 0.001235');
  assert.equal(render('%(T)s %(M)s %(D)s %(L)s', entry(x, 0)), '0 0 0 0.000000');
});

test('the date is day-padded and follows startedAt', async () => {
  const x = await exchange((_req, res) => res.end());
  const early = new Date(2026, 10, 5, 7, 8, 9).getTime();
  assert.equal(render('%(t)s', entry(x, 0, early)), clf(early));
  assert.match(render('%(t)s', entry(x, 0, early)), /^\[05\/Nov\/2026:07:08:09 [+-]\d{4}\]$/);
  assert.equal(render('%(t)s', entry(x, 0, STARTED)), clf(STARTED));
});

test('missing request facts are -', async () => {
  const e = entry(await exchange((_req, res) => res.end(), { path: '/' }));
  assert.equal(render('%(u)s|%(f)s|%(q)s|%({x-missing}i)s|%({x-missing}o)s', e), '-|-||-|-');
  const bearer = entry(await exchange((_req, res) => res.end(), { headers: { authorization: 'Bearer abc' } }));
  assert.equal(render('%(u)s', bearer), '-');
  const noColon = entry(
    await exchange((_req, res) => res.end(), {
      headers: { authorization: `Basic ${Buffer.from('justuser').toString('base64')}` },
    }),
  );
  assert.equal(render('%(u)s', noColon), '-');
});

test('{header}i, {header}o and {VAR}e', async () => {
  process.env.TSGUN_ACCESS_TEST = 'from-env';
  const e = entry(
    await exchange(
      (_req, res) => {
        res.setHeader('Content-Type', 'text/plain');
        res.setHeader('Set-Cookie', ['a=1', 'b=2']);
        res.setHeader('X-Count', 3);
        res.end('x');
      },
      { headers: { 'X-Request-Id': 'req-42' } },
    ),
  );
  assert.equal(render('%({X-Request-Id}i)s', e), 'req-42');
  assert.equal(render('%({x-request-id}i)s', e), 'req-42');
  assert.equal(render('%({Content-Type}o)s', e), 'text/plain');
  assert.equal(render('%({set-cookie}o)s', e), 'a=1, b=2');
  assert.equal(render('%({X-Count}o)s', e), '3');
  assert.equal(render('%({TSGUN_ACCESS_TEST}e)s', e), 'from-env');
  assert.equal(render('%({tsgun_access_test}e)s', e), '-', 'environment names are case-sensitive');
  assert.equal(render('%({TSGUN_NOT_SET_ANYWHERE}e)s', e), '-');
  delete process.env.TSGUN_ACCESS_TEST;
});

test('{header}o also finds headers given to writeHead(), as an object or a flat list', async () => {
  const obj = entry(
    await exchange((_req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/json', 'X-Count': 3 });
      res.end('{}');
    }),
  );
  assert.equal(render('%({content-type}o)s|%({X-Count}o)s|%({x-missing}o)s', obj), 'application/json|3|-');
  const flat = entry(
    await exchange((_req, res) => {
      res.writeHead(200, ['Set-Cookie', 'a=1', 'X-Type', 'x', 'set-cookie', 'b=2']);
      res.end();
    }),
  );
  assert.equal(render('%({set-cookie}o)s|%({x-type}o)s|%({x}o)s', flat), 'a=1, b=2|x|-');
});

test('literal text is kept; unknown atoms are -', async () => {
  const e = entry(await exchange((_req, res) => res.end('ok')));
  assert.equal(render('100% [%(zz)s] %(s)s%(s)s %s %(s) done', e), '100% [-] 200200 %s %(s) done');
  assert.equal(render('', e), '');
  assert.equal(render('plain', e), 'plain');
});

test('the client is whatever the socket reports, as proxy handling presents a forwarded one', async () => {
  const x = await exchange((_req, res) => res.end());
  Object.defineProperty(x.req.socket, 'remoteAddress', { value: '203.0.113.9', configurable: true });
  assert.equal(render('%(h)s', entry(x)), '203.0.113.9');
  assert.equal(JSON.parse(jsonEntry(entry(x))).remote_addr, '203.0.113.9');
});

test("the default format is Gunicorn's combined log line", async () => {
  const format = getSetting('access_log_format').default as string;
  const e = entry(
    await exchange((_req, res) => res.end('four'), { path: '/a?b=c', headers: { 'user-agent': 'curl/8' } }),
  );
  assert.equal(compileFormat(format)(e), `127.0.0.1 - - ${clf(STARTED)} "GET /a?b=c HTTP/1.1" 200 4 "-" "curl/8"`);
});

test('jsonEntry: the same facts as one JSON object', async () => {
  const e = entry(
    await exchange(
      (_req, res) => {
        res.statusCode = 404;
        res.end('not here');
      },
      {
        path: '/x/y?z=1',
        headers: {
          referer: 'http://r.example/',
          'user-agent': 'ua/2',
          authorization: `Basic ${Buffer.from('bob:pw').toString('base64')}`,
        },
      },
    ),
    1_234_567,
  );
  assert.deepEqual(JSON.parse(jsonEntry(e)), {
    time: new Date(STARTED).toISOString(),
    remote_addr: '127.0.0.1',
    user: 'bob',
    method: 'GET',
    path: '/x/y',
    query: 'z=1',
    protocol: 'HTTP/1.1',
    status: 404,
    bytes: 8,
    referer: 'http://r.example/',
    user_agent: 'ua/2',
    duration_ms: 1234.567,
    pid: process.pid,
  });
  const bare = JSON.parse(jsonEntry(entry(await exchange((_req, res) => res.end()))));
  assert.equal(bare.referer, null);
  assert.equal(bare.user_agent, null);
  assert.equal(bare.user, '-');
  assert.equal(bare.query, '');
});

async function linesOf(file: string, n: number): Promise<string[]> {
  for (let i = 0; i < 250; i++) {
    let text = '';
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      // Not created yet.
    }
    const lines = text.split('\n').filter(Boolean);
    if (lines.length >= n) return lines;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`${file} never got ${n} lines`);
}

test('createAccessLog writes one line per entry and reopens after a rename', async () => {
  const file = path.join(tmp, 'sub', 'a.log');
  const access = createAccessLog(file, '%(m)s %(U)s %(s)s');
  const x = await exchange((_req, res) => res.end(), { path: '/one' });
  access.write(entry(x));
  access.write(entry(x));
  access.flush();
  assert.deepEqual(await linesOf(file, 2), ['GET /one 200', 'GET /one 200']);
  renameSync(file, `${file}.1`);
  access.reopen();
  access.write(entry(await exchange((_req, res) => res.end(), { path: '/two' })));
  assert.deepEqual(await linesOf(file, 1), ['GET /two 200']);
  assert.deepEqual(await linesOf(`${file}.1`, 2), ['GET /one 200', 'GET /one 200']);
});
