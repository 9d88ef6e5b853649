/**
 * The HTTP layer, part 2 (settings section Security): trusted X-Forwarded-For /
 * X-Forwarded-Proto / Forwarded headers and the PROXY protocol (v1, v2, auto), seen by a
 * Node listener (`req.socket`), a fetch handler (`request.ip`, the URL scheme) and the
 * access log (`%(h)s`). Clients connect from 127.0.0.1 (trusted by default) or 127.0.0.2
 * (not trusted; Linux routes all of 127/8 to lo). Real clients: node's http and http2,
 * and raw TCP sockets for PROXY headers.
 *
 * Part 1 (TLS, HTTP/2) is http-layer.test.ts; part 3 (limits, timeouts, default headers,
 * access log, request hooks) is http-layer-limits.test.ts.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import path from 'node:path';
import { before, describe, test } from 'node:test';
import tls from 'node:tls';
import { scratchDir, Tsgun } from '../helpers.js';
import {
  body,
  fileLines,
  get,
  GET_CLOSE,
  HTTP_FIXTURES,
  makePki,
  rawBody,
  rawExchange,
  serve,
  stopped,
  tlsArgs as tlsArgsFor,
  type Pki,
} from './http-layer.shared.js';

let pki: Pki;

/** `--certfile/--keyfile` for the test server certificate. */
function tlsArgs(): string[] {
  return tlsArgsFor(pki);
}

// ---- PROXY protocol ------------------------------------------------------------------------

/** A PROXY protocol v2 header, built by hand: PROXY command, TCP over IPv6, from 16-bit words. */
function proxyV2Inet6(src: readonly number[], srcPort: number, dstPort: number): Buffer {
  const header = Buffer.alloc(16 + 36);
  Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]).copy(header, 0);
  header[12] = 0x21; // version 2, command PROXY
  header[13] = 0x21; // AF_INET6, STREAM
  header.writeUInt16BE(36, 14);
  src.forEach((word, i) => header.writeUInt16BE(word, 16 + 2 * i));
  header.writeUInt16BE(1, 32 + 14); // destination ::1
  header.writeUInt16BE(srcPort, 48);
  header.writeUInt16BE(dstPort, 50);
  return header;
}

/** A PROXY protocol v2 header, built by hand: PROXY command, TCP over IPv4. */
function proxyV2(src: string, dst: string, srcPort: number, dstPort: number): Buffer {
  const header = Buffer.alloc(16 + 12);
  Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]).copy(header, 0);
  header[12] = 0x21; // version 2, command PROXY
  header[13] = 0x11; // AF_INET, STREAM
  header.writeUInt16BE(12, 14); // address block length
  Buffer.from(src.split('.').map(Number)).copy(header, 16);
  Buffer.from(dst.split('.').map(Number)).copy(header, 20);
  header.writeUInt16BE(srcPort, 24);
  header.writeUInt16BE(dstPort, 26);
  return header;
}

/**
 * Over TLS: a PROXY header in clear on a fresh TCP connection, then a TLS handshake and
 * one request; resolves with the response. `pauseMs` between the header and the
 * handshake keeps them in separate reads on the server; 0 lets them share one.
 */
function proxiedTls(port: number, header: string, path: string, pauseMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const raw = net.connect({ host: '127.0.0.1', port }, () => {
      raw.write(header);
      setTimeout(() => {
        const secure = tls.connect({ socket: raw, ca: pki.ca, servername: 'localhost' }, () =>
          secure.end(GET_CLOSE.replace('/who', path)),
        );
        let data = '';
        secure.setEncoding('utf8');
        secure.on('data', (c: string) => (data += c));
        secure.on('end', () => {
          clearTimeout(timer);
          resolve(data);
        });
        secure.on('error', reject);
      }, pauseMs);
    });
    const timer = setTimeout(() => {
      raw.destroy();
      reject(new Error(`no response within 3 s over TLS after a PROXY header (pause ${pauseMs} ms)`));
    }, 3000 + pauseMs);
    raw.once('error', reject);
  });
}

// ---- tests -------------------------------------------------------------------------------

describe('HTTP layer: forwarded headers and the PROXY protocol', { concurrency: 2 }, () => {
  before(async () => {
    pki = await makePki();
  });

  test('X-Forwarded-For / -Proto: trusted from 127.0.0.1 (default), walked from the right, ignored from 127.0.0.2; Forwarded ignored; Node listener', async (ctx) => {
    const log = path.join(scratchDir(), 'access.log');
    const { t, url } = await serve(['--access-logfile', log, '--access-logformat', '%(h)s %(U)s', 'node-app']);
    ctx.after(() => t.kill());
    // As nginx's $proxy_add_x_forwarded_for writes it: what the client sent, then the peer nginx saw.
    const xff = { 'x-forwarded-for': '6.6.6.6, 203.0.113.9' };
    const trusted = body(await get(`${url}/xff-trusted`, { headers: xff, localAddress: '127.0.0.1' }));
    assert.equal(
      trusted.remote,
      '203.0.113.9',
      'the last X-Forwarded-For address that is not trusted is the client, not the spoofed first one',
    );
    assert.equal(trusted.encrypted, false);
    const chain = body(
      await get(`${url}/xff-chain`, { headers: { 'x-forwarded-for': '6.6.6.6, 203.0.113.9, 127.0.0.1, ::1' } }),
    );
    assert.equal(chain.remote, '203.0.113.9', 'trusted proxies on the right are skipped');
    const proto = body(await get(`${url}/xfp`, { headers: { 'x-forwarded-proto': 'https' } }));
    assert.equal(proto.encrypted, true, 'X-Forwarded-Proto https marks the socket encrypted');
    assert.equal(proto.remote, '127.0.0.1');
    const rfc = body(
      await get(`${url}/forwarded`, { headers: { forwarded: 'for=198.51.100.17;proto=https, for=10.1.1.1' } }),
    );
    assert.equal(rfc.remote, '127.0.0.1', 'Forwarded is ignored unless --forwarded-headers forwarded');
    assert.equal(rfc.encrypted, false);
    const untrusted = body(
      await get(`${url}/xff-untrusted`, {
        headers: { ...xff, 'x-forwarded-proto': 'https' },
        localAddress: '127.0.0.2',
      }),
    );
    assert.equal(untrusted.remote, '127.0.0.2', 'X-Forwarded-For from an untrusted peer is ignored');
    assert.equal(untrusted.encrypted, false);

    // Per request, not per connection: the next request on the same connection without the header is the proxy itself.
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    ctx.after(() => agent.destroy());
    assert.equal(body(await get(`${url}/ka1`, { agent, headers: xff })).remote, '203.0.113.9');
    assert.equal(body(await get(`${url}/ka2`, { agent })).remote, '127.0.0.1');
    agent.destroy();

    const lines = await fileLines(log, 7);
    assert.deepEqual(lines, [
      '203.0.113.9 /xff-trusted',
      '203.0.113.9 /xff-chain',
      '127.0.0.1 /xfp',
      '127.0.0.1 /forwarded',
      '127.0.0.2 /xff-untrusted',
      '203.0.113.9 /ka1',
      '127.0.0.1 /ka2',
    ]);
    await stopped(t);
  });

  test('X-Forwarded-For / -Proto with a fetch handler: request.ip and the URL scheme', async (ctx) => {
    const log = path.join(scratchDir(), 'access.log');
    const { t, url } = await serve(['--access-logfile', log, '--access-logformat', '%(h)s %(U)s', 'fetch-app']);
    ctx.after(() => t.kill());
    const port = new URL(url).port;
    const trusted = body(
      await get(`${url}/a`, { headers: { 'x-forwarded-for': '6.6.6.6, 203.0.113.9', 'x-forwarded-proto': 'https' } }),
    );
    assert.equal(trusted.ip, '203.0.113.9');
    assert.equal(trusted.url, `https://127.0.0.1:${port}/a`);
    const rfc = body(await get(`${url}/b`, { headers: { forwarded: 'for="198.51.100.17:4711";proto=https' } }));
    assert.equal(rfc.ip, '127.0.0.1', 'Forwarded is ignored by default');
    assert.equal(rfc.scheme, 'http');
    const plain = body(await get(`${url}/c`));
    assert.equal(plain.ip, '127.0.0.1');
    assert.equal(plain.scheme, 'http');
    const untrusted = body(
      await get(`${url}/d`, {
        headers: { 'x-forwarded-for': '203.0.113.9', 'x-forwarded-proto': 'https' },
        localAddress: '127.0.0.2',
      }),
    );
    assert.equal(untrusted.ip, '127.0.0.2');
    assert.equal(untrusted.scheme, 'http');
    assert.deepEqual(await fileLines(log, 4), ['203.0.113.9 /a', '127.0.0.1 /b', '127.0.0.1 /c', '127.0.0.2 /d']);
    await stopped(t);
  });

  test('--forwarded-headers forwarded: RFC 7239 Forwarded walked from the right, X-Forwarded-* ignored; fetch handler and Node listener', async (ctx) => {
    const log = path.join(scratchDir(), 'access.log');
    const family = ['--forwarded-headers', 'forwarded', '--access-logformat', '%(h)s %(U)s'];
    const [fetchApp, nodeApp] = await Promise.all([
      serve([...family, '--access-logfile', log, 'fetch-app']),
      serve([...family, 'node-app']),
    ]);
    ctx.after(() => fetchApp.t.kill());
    ctx.after(() => nodeApp.t.kill());
    const rfc = body(
      await get(`${fetchApp.url}/b`, {
        headers: { forwarded: 'for=7.7.7.7;proto=http, for="198.51.100.17:4711";proto=https' },
      }),
    );
    assert.equal(rfc.ip, '198.51.100.17');
    assert.equal(rfc.scheme, 'https');
    // RFC 7239: an IPv6 node is bracketed and quoted, with or without a port.
    for (const node of ['"[2001:db8:cafe::17]:4711"', '"[2001:db8:cafe::17]"']) {
      assert.equal(
        body(await get(`${fetchApp.url}/v6`, { headers: { forwarded: `for=${node}, for=127.0.0.1` } })).ip,
        '2001:db8:cafe::17',
        node,
      );
    }
    const hidden = body(
      await get(`${fetchApp.url}/hidden`, { headers: { forwarded: 'for=7.7.7.7, for=_hidden;proto=https' } }),
    );
    assert.equal(hidden.ip, '127.0.0.1', 'an obfuscated client: the peer is kept');
    assert.equal(hidden.scheme, 'https');
    const xff = body(
      await get(`${fetchApp.url}/xff`, { headers: { 'x-forwarded-for': '203.0.113.9', 'x-forwarded-proto': 'https' } }),
    );
    assert.equal(xff.ip, '127.0.0.1', 'X-Forwarded-For is ignored with --forwarded-headers forwarded');
    assert.equal(xff.scheme, 'http');
    const node = body(
      await get(`${nodeApp.url}/node`, { headers: { forwarded: 'for=7.7.7.7, for=198.51.100.18;proto=https' } }),
    );
    assert.equal(node.remote, '198.51.100.18');
    assert.equal(node.encrypted, true);
    assert.deepEqual(await fileLines(log, 5), [
      '198.51.100.17 /b',
      '2001:db8:cafe::17 /v6',
      '2001:db8:cafe::17 /v6',
      '127.0.0.1 /hidden',
      '127.0.0.1 /xff',
    ]);
    await Promise.all([stopped(fetchApp.t), stopped(nodeApp.t)]);
  });

  test("over a unix socket kept alive, a request that forwards no client address shows none, not the previous request's client", async (ctx) => {
    const dir = scratchDir();
    const [sock, log] = [path.join(dir, 'tsgun.sock'), path.join(dir, 'access.log')];
    const t = new Tsgun(
      [
        '-b',
        `unix:${sock}`,
        '--forwarded-allow-ips',
        'unix',
        '--access-logfile',
        log,
        '--access-logformat',
        '%(h)s %(U)s',
        'node-app',
      ],
      { cwd: HTTP_FIXTURES },
    );
    ctx.after(() => t.kill());
    await t.ready(1);
    // One connection for every request, as nginx reuses its upstream connections for many clients.
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    ctx.after(() => agent.destroy());
    const remoteOf = async (urlPath: string, headers: Record<string, string> = {}): Promise<unknown> =>
      new Promise((resolve, reject) => {
        http
          .get({ socketPath: sock, path: urlPath, agent, headers }, (res) => {
            let data = '';
            res.setEncoding('utf8').on('data', (c: string) => (data += c));
            res.on('end', () => resolve((JSON.parse(data) as { remote: unknown }).remote));
          })
          .on('error', reject);
      });
    assert.equal(await remoteOf('/first', { 'x-forwarded-for': '203.0.113.9' }), '203.0.113.9');
    assert.equal(await remoteOf('/none'), null, 'no forwarding header: the unix socket peer, which has no address');
    assert.equal(await remoteOf('/second', { 'x-forwarded-for': '198.51.100.4' }), '198.51.100.4');
    // nginx listening on a unix socket itself forwards `unix:` as the client.
    assert.equal(
      await remoteOf('/unknown', { 'x-forwarded-for': 'unix:' }),
      null,
      'a forwarded client that is not an address',
    );
    agent.destroy();
    assert.deepEqual(await fileLines(log, 4), ['203.0.113.9 /first', '- /none', '198.51.100.4 /second', '- /unknown']);
    await stopped(t);
  });

  test("--forwarded-allow-ips '*' trusts 127.0.0.2; FORWARDED_ALLOW_IPS with a CIDR trusts only that range", async (ctx) => {
    const [star, cidr] = await Promise.all([
      serve(['--forwarded-allow-ips', '*', 'fetch-app']),
      serve(['node-app'], { FORWARDED_ALLOW_IPS: '127.0.0.2/32' }),
    ]);
    ctx.after(() => star.t.kill());
    ctx.after(() => cidr.t.kill());
    const headers = { 'x-forwarded-for': '192.0.2.44', 'x-forwarded-proto': 'https' };
    const s = body(await get(`${star.url}/`, { headers, localAddress: '127.0.0.2' }));
    assert.equal(s.ip, '192.0.2.44');
    assert.equal(s.scheme, 'https');
    const fromTwo = body(await get(`${cidr.url}/`, { headers, localAddress: '127.0.0.2' }));
    assert.equal(fromTwo.remote, '192.0.2.44');
    assert.equal(fromTwo.encrypted, true);
    const fromOne = body(await get(`${cidr.url}/`, { headers, localAddress: '127.0.0.1' }));
    assert.equal(fromOne.remote, '127.0.0.1', 'the env list replaced the default: 127.0.0.1 is no longer trusted');
    assert.equal(fromOne.encrypted, false);
    await Promise.all([stopped(star.t), stopped(cidr.t)]);
  });

  test('PROXY protocol auto: v1 and v2 from an allowed peer set the client; a header from another peer closes the connection', async (ctx) => {
    const log = path.join(scratchDir(), 'access.log');
    const { t, port } = await serve([
      '--proxy-protocol',
      'auto',
      '--proxy-allow-from',
      '127.0.0.1',
      '--access-logfile',
      log,
      '--access-logformat',
      '%(h)s %(U)s',
      'node-app',
    ]);
    ctx.after(() => t.kill());
    const v1 = await rawExchange(
      port,
      `PROXY TCP4 203.0.113.7 127.0.0.1 51000 ${port}\r\n${GET_CLOSE.replace('/who', '/v1')}`,
    );
    assert.equal(rawBody(v1.data).remote, '203.0.113.7');
    const v2 = await rawExchange(
      port,
      Buffer.concat([
        proxyV2('198.51.100.23', '127.0.0.1', 51001, port),
        Buffer.from(GET_CLOSE.replace('/who', '/v2')),
      ]),
    );
    assert.equal(rawBody(v2.data).remote, '198.51.100.23');
    const v6 = await rawExchange(
      port,
      `PROXY TCP6 2001:db8::5 ::1 51002 ${port}\r\n${GET_CLOSE.replace('/who', '/v6')}`,
    );
    assert.equal(rawBody(v6.data).remote, '2001:db8::5');
    const v2six = await rawExchange(
      port,
      Buffer.concat([
        proxyV2Inet6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 6], 51005, port),
        Buffer.from(GET_CLOSE.replace('/who', '/v2six')),
      ]),
    );
    assert.equal(
      rawBody(v2six.data).remote,
      '2001:db8::6',
      'an IPv6 address from a v2 header, written as Node writes peers',
    );
    const none = await rawExchange(port, GET_CLOSE.replace('/who', '/none'));
    assert.equal(rawBody(none.data).remote, '127.0.0.1', 'auto: no header is fine');

    for (const header of [
      `PROXY TCP4 203.0.113.66 127.0.0.1 51003 ${port}\r\n`,
      proxyV2('203.0.113.66', '127.0.0.1', 51004, port),
    ]) {
      const spoof = await rawExchange(port, Buffer.concat([Buffer.from(header), Buffer.from(GET_CLOSE)]), {
        localAddress: '127.0.0.2',
      });
      assert.equal(spoof.closed, true, 'a PROXY header from a disallowed peer closes the connection');
      assert.equal(spoof.data, '', 'without a response');
    }
    const plainFromOther = await rawExchange(port, GET_CLOSE.replace('/who', '/other'), { localAddress: '127.0.0.2' });
    assert.equal(
      rawBody(plainFromOther.data).remote,
      '127.0.0.2',
      'a disallowed peer without a header is served as itself',
    );
    const garbage = await rawExchange(port, `PROXY TCP4 not-an-ip 127.0.0.1 1 2\r\n${GET_CLOSE}`);
    assert.equal(garbage.data, '', 'a malformed PROXY line gets no response');
    assert.equal(garbage.closed, true);

    assert.deepEqual(await fileLines(log, 6), [
      '203.0.113.7 /v1',
      '198.51.100.23 /v2',
      '2001:db8::5 /v6',
      '2001:db8::6 /v2six',
      '127.0.0.1 /none',
      '127.0.0.2 /other',
    ]);
    await stopped(t);
  });

  test('PROXY protocol v1 / v2: the header is required from allowed peers, and must be that version', async (ctx) => {
    const [v1, v2] = await Promise.all([
      serve(['--proxy-protocol', 'v1', '--proxy-allow-from', '127.0.0.1', 'node-app']),
      serve(['--proxy-protocol', 'v2', 'node-app']),
    ]);
    ctx.after(() => v1.t.kill());
    ctx.after(() => v2.t.kill());
    const ok1 = await rawExchange(v1.port, `PROXY TCP4 203.0.113.8 127.0.0.1 52000 ${v1.port}\r\n${GET_CLOSE}`);
    assert.equal(rawBody(ok1.data).remote, '203.0.113.8');
    const missing = await rawExchange(v1.port, GET_CLOSE);
    assert.equal(missing.closed, true, 'v1: an allowed peer without a header is rejected');
    assert.equal(missing.data, '');
    const wrongVersion = await rawExchange(
      v1.port,
      Buffer.concat([proxyV2('203.0.113.8', '127.0.0.1', 52001, v1.port), Buffer.from(GET_CLOSE)]),
    );
    assert.equal(wrongVersion.data, '', 'v1: a v2 header is rejected');
    assert.equal(wrongVersion.closed, true);
    const other = await rawExchange(v1.port, GET_CLOSE, { localAddress: '127.0.0.2' });
    assert.equal(rawBody(other.data).remote, '127.0.0.2', 'v1: a peer that is not allowed is served without a header');

    const ok2 = await rawExchange(
      v2.port,
      Buffer.concat([proxyV2('198.51.100.99', '127.0.0.1', 52002, v2.port), Buffer.from(GET_CLOSE)]),
    );
    assert.equal(rawBody(ok2.data).remote, '198.51.100.99');
    const missing2 = await rawExchange(v2.port, GET_CLOSE);
    assert.equal(missing2.data, '', 'v2: an allowed peer without a header is rejected');
    assert.equal(missing2.closed, true);
    const v1on2 = await rawExchange(v2.port, `PROXY TCP4 203.0.113.8 127.0.0.1 52003 ${v2.port}\r\n${GET_CLOSE}`);
    assert.equal(v1on2.data, '', 'v2: a v1 header is rejected');
    assert.equal(v1on2.closed, true);
    await Promise.all([stopped(v1.t), stopped(v2.t)]);
  });

  test('PROXY protocol with TLS: the app and the access log see the client from the PROXY header', async (ctx) => {
    const log = path.join(scratchDir(), 'access.log');
    const { t, port } = await serve([
      '--proxy-protocol',
      'v1',
      ...tlsArgs(),
      '--access-logfile',
      log,
      '--access-logformat',
      '%(h)s %(U)s',
      'node-app',
    ]);
    ctx.after(() => t.kill());
    const reply = await proxiedTls(port, `PROXY TCP4 203.0.113.7 127.0.0.1 53000 ${port}\r\n`, '/tls-proxied', 200);
    const seen = rawBody(reply);
    assert.equal(seen.encrypted, true);
    assert.equal(seen.remote, '203.0.113.7', 'req.socket.remoteAddress is the client from the PROXY header');
    assert.deepEqual(await fileLines(log, 1), ['203.0.113.7 /tls-proxied']);
    await stopped(t);
  });

  test('PROXY protocol with TLS: a ClientHello sent right behind the PROXY header is not lost', async (ctx) => {
    const { t, port } = await serve(['--proxy-protocol', 'v1', ...tlsArgs(), 'node-app']);
    ctx.after(() => t.kill());
    const outcomes = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        proxiedTls(port, `PROXY TCP4 203.0.113.7 127.0.0.1 ${54000 + i} ${port}\r\n`, `/together-${i}`, 0).then(
          (reply) => (reply.startsWith('HTTP/1.1 200') ? 'ok' : `unexpected ${JSON.stringify(reply.slice(0, 40))}`),
          (err: Error) => err.message,
        ),
      ),
    );
    assert.deepEqual(
      outcomes.filter((o) => o !== 'ok'),
      [],
      `10 connections: ${outcomes.join('; ')}`,
    );
    await stopped(t);
  });

  test('HTTP/2: X-Forwarded-For from a trusted peer reaches a fetch handler (request.ip) and the access log', async (ctx) => {
    const log = path.join(scratchDir(), 'access.log');
    const { t, url } = await serve([
      '-k',
      'http2',
      ...tlsArgs(),
      '--access-logfile',
      log,
      '--access-logformat',
      '%(h)s %(H)s %(U)s',
      'fetch-app',
    ]);
    ctx.after(() => t.kill());
    const session = http2.connect(url, { ca: pki.ca });
    ctx.after(() => session.close());
    const reply = await new Promise<string>((resolve, reject) => {
      const stream = session.request({ ':path': '/h2-forwarded', 'x-forwarded-for': '203.0.113.9' });
      let data = '';
      stream.setEncoding('utf8');
      stream.on('data', (c: string) => (data += c));
      stream.on('end', () => resolve(data));
      stream.on('error', reject);
      stream.end();
    });
    assert.equal((JSON.parse(reply) as { ip: string }).ip, '203.0.113.9', 'request.ip is the forwarded client');
    session.close();
    // The same request over HTTP/1.1 on the same server, for comparison.
    assert.equal(
      body(await get(`${url}/h1-forwarded`, { ca: pki.ca, headers: { 'x-forwarded-for': '203.0.113.9' } })).ip,
      '203.0.113.9',
    );
    const lines = await fileLines(log, 2);
    assert.ok(lines.includes('203.0.113.9 HTTP/2.0 /h2-forwarded'), lines.join(' | '));
    await stopped(t);
  });
});
