/**
 * The HTTP layer, part 1 (settings section TLS, the http2 worker class): HTTPS with
 * certificates made by openssl at test time, client certificates, the ssl_context hook, an
 * encrypted key, ciphers, a renewed certificate picked up by HUP, bad certificate files,
 * HTTP/2 with HTTP/1.1 on the same port. Real clients only: node's https, tls and http2
 * modules, and curl.
 *
 * Part 2 (forwarded headers, PROXY protocol) is http-layer-proxy.test.ts; part 3 (limits,
 * timeouts, default headers, access log, request hooks) is http-layer-limits.test.ts.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { copyFileSync, renameSync } from 'node:fs';
import http2 from 'node:http2';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import { before, describe, test } from 'node:test';
import tls from 'node:tls';
import { alive, childPidsSync, processesWithEnv, runTsgun, scratchDir, waitFor } from '../helpers.js';
import {
  body,
  fileLines,
  get,
  HTTP_FIXTURES,
  KEY_PASSWORD,
  makePki,
  run,
  serve,
  stopped,
  tlsArgs as tlsArgsFor,
  type Pki,
  WRONG_PASSWORD,
} from './http-layer.shared.js';

let pki: Pki;

/** `--certfile/--keyfile` for the test server certificate. */
function tlsArgs(): string[] {
  return tlsArgsFor(pki);
}

/** The certificate a fresh TLS connection is shown: serial and subject CN. */
function peerCert(port: number): Promise<{ serial: string; cn: string }> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, ca: pki.ca, ALPNProtocols: ['http/1.1'] }, () => {
      const cert = socket.getPeerCertificate();
      socket.destroy();
      resolve({ serial: cert.serialNumber, cn: String(cert.subject.CN) });
    });
    socket.once('error', reject);
  });
}

/** A TLS 1.2 handshake offering only `ciphers`; resolves with the cipher agreed, rejects if there is none. */
function tls12With(port: number, ciphers: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, ca: pki.ca, maxVersion: 'TLSv1.2', ciphers }, () => {
      const { name } = socket.getCipher();
      socket.destroy();
      resolve(name);
    });
    socket.once('error', reject);
  });
}

/** An https request that must fail at the TLS level; resolves with the error code and message. */
async function tlsRefused(url: string, opts: Parameters<typeof get>[1]): Promise<string> {
  try {
    const got = await get(url, opts);
    assert.fail(`expected a TLS error, got ${got.status} ${got.body}`);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.name === 'AssertionError') throw err;
    return `${e.code ?? ''} ${e.message}`;
  }
}

/** curl trusting the test CA; the response head and body. */
async function curl(args: readonly string[]): Promise<{ head: string; body: string }> {
  const out = await run('curl', ['-sS', '-i', '--max-time', '10', '--cacert', pki.caFile, ...args]);
  const split = out.indexOf('\r\n\r\n');
  return { head: out.slice(0, split), body: out.slice(split + 4) };
}

interface H2Reply {
  status: number;
  body: string;
}

/** `n` concurrent GETs as streams of one HTTP/2 session. */
async function h2Streams(
  url: string,
  paths: readonly string[],
): Promise<{ replies: H2Reply[]; alpn: string | false | undefined }> {
  const session = http2.connect(url, { ca: pki.ca });
  try {
    await new Promise<void>((resolve, reject) => {
      session.once('connect', () => resolve());
      session.once('error', reject);
    });
    const one = (p: string): Promise<H2Reply> =>
      new Promise((resolve, reject) => {
        const stream = session.request({ ':path': p });
        let status = 0;
        let body = '';
        stream.setEncoding('utf8');
        stream.on('response', (headers) => (status = Number(headers[':status'])));
        stream.on('data', (c: string) => (body += c));
        stream.on('end', () => resolve({ status, body }));
        stream.on('error', reject);
        stream.end();
      });
    const replies = await Promise.all(paths.map(one));
    return { replies, alpn: session.alpnProtocol };
  } finally {
    session.close();
  }
}

// ---- tests -------------------------------------------------------------------------------

describe('HTTP layer: TLS and HTTP/2', { concurrency: 2 }, () => {
  before(async () => {
    pki = await makePki();
  });

  test('HTTPS: Listening at https://, node https client and curl --cacert', async (ctx) => {
    const { t, url } = await serve([...tlsArgs(), 'node-app']);
    ctx.after(() => t.kill());
    assert.match(url, /^https:\/\/127\.0\.0\.1:\d+$/);
    const got = await get(`${url}/hello`, { ca: pki.ca });
    assert.equal(got.status, 200);
    assert.equal(got.serial, '1001');
    const seen = body(got);
    assert.equal(seen.encrypted, true, 'the app sees an encrypted socket');
    assert.equal(seen.url, '/hello');

    const c = await curl([`${url}/from-curl`]);
    assert.match(c.head, /^HTTP\/1\.1 200/);
    assert.equal((JSON.parse(c.body) as { url: string }).url, '/from-curl');

    // Without the CA the certificate is not trusted: it really is our test certificate.
    assert.match(await tlsRefused(url, {}), /UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED|UNABLE_TO_GET_ISSUER/);
    await stopped(t);
  });

  test('client certificates: --cert-reqs required refuses a client without one; optional accepts both', async (ctx) => {
    const [req, opt] = await Promise.all([
      serve([...tlsArgs(), '--ca-certs', pki.caFile, '--cert-reqs', 'required', 'node-app']),
      serve([...tlsArgs(), '--ca-certs', pki.caFile, '--cert-reqs', 'optional', 'node-app']),
    ]);
    ctx.after(() => req.t.kill());
    ctx.after(() => opt.t.kill());
    // TLS 1.3: the server's refusal arrives as an alert after the client's handshake.
    const code = await tlsRefused(req.url, { ca: pki.ca });
    assert.match(code, /certificate required|handshake failure/i, `a TLS-level refusal, got ${code}`);
    await assert.rejects(curl([req.url]), /certificate required|handshake failure/i);
    const c = await curl([
      '--cert',
      path.join(pki.dir, 'client.pem'),
      '--key',
      path.join(pki.dir, 'client.key'),
      `${req.url}/curl-with-cert`,
    ]);
    assert.match(c.head, /^HTTP\/1\.1 200/);
    assert.equal((JSON.parse(c.body) as { clientCN: string }).clientCN, 'test-client');

    const withCert = body(await get(req.url, { ca: pki.ca, cert: pki.clientCert, key: pki.clientKey }));
    assert.equal(withCert.clientCN, 'test-client');
    assert.equal(withCert.authorized, true);

    const anonymous = await get(opt.url, { ca: pki.ca });
    assert.equal(anonymous.status, 200);
    assert.equal(body(anonymous).clientCN, null, 'no client certificate was presented');
    const named = body(await get(opt.url, { ca: pki.ca, cert: pki.clientCert, key: pki.clientKey }));
    assert.equal(named.clientCN, 'test-client');
    assert.equal(named.authorized, true);
    await Promise.all([stopped(req.t), stopped(opt.t)]);
  });

  test('ssl_context hook from a .ts config changes the TLS options in each worker', async (ctx) => {
    const hookLog = path.join(scratchDir(), 'hooks.log');
    const { t, url } = await serve(['-c', path.join(HTTP_FIXTURES, 'ssl.conf.ts'), ...tlsArgs(), 'node-app'], {
      HOOK_LOG: hookLog,
    });
    ctx.after(() => t.kill());
    // The hook sets minVersion TLSv1.3.
    assert.equal((await get(url, { ca: pki.ca })).status, 200);
    const code = await tlsRefused(url, { ca: pki.ca, maxVersion: 'TLSv1.2' });
    assert.match(code, /protocol version|unsupported protocol/i, code);
    const [entry] = (await fileLines(hookLog, 1)).map((l) => JSON.parse(l) as { workerPid: number; keys: string[] });
    assert.deepEqual(childPidsSync(t.pid), [entry!.workerPid], 'the hook ran in the worker');
    for (const key of ['cert', 'key']) assert.ok(entry!.keys.includes(key), `the hook got the ${key}`);
    await stopped(t);
  });

  test('an encrypted keyfile with --keyfile-password; --ciphers limits the TLS 1.2 ciphers', async (ctx) => {
    const cipher = 'ECDHE-ECDSA-AES128-GCM-SHA256';
    const { t, url, port } = await serve([
      '--certfile',
      pki.serverCert,
      '--keyfile',
      pki.encryptedKey,
      '--keyfile-password',
      KEY_PASSWORD,
      '--ciphers',
      cipher,
      'node-app',
    ]);
    ctx.after(() => t.kill());
    assert.equal((await get(url, { ca: pki.ca })).status, 200);
    assert.equal(await tls12With(port, `${cipher}:ECDHE-ECDSA-AES256-GCM-SHA384`), cipher);
    await assert.rejects(tls12With(port, 'ECDHE-ECDSA-AES256-GCM-SHA384'), /handshake failure|no shared cipher/i);
    await stopped(t);
  });

  test('renewed certificate: HUP makes new connections see it; a request in flight on an old connection completes', async (ctx) => {
    // tsgun reads copies that the test replaces, so the originals stay for the other tests.
    const dir = scratchDir('tsgun-renew-');
    const cert = path.join(dir, 'cert.pem');
    const key = path.join(dir, 'key.pem');
    copyFileSync(pki.serverCert, cert);
    copyFileSync(pki.serverKey, key);
    const { t, url, port } = await serve(['--certfile', cert, '--keyfile', key, 'node-app']);
    ctx.after(() => t.kill());
    assert.deepEqual(await peerCert(port), { serial: '1001', cn: 'server-one' });
    const old = childPidsSync(t.pid);
    const agent = new https.Agent({ keepAlive: true, maxSockets: 1, ca: pki.ca });
    ctx.after(() => agent.destroy());
    const first = await get(`${url}/warm`, { agent, ca: pki.ca });
    assert.equal(first.serial, '1001');
    // A slow request in flight on that same keep-alive connection while the reload runs.
    const inflight = get(`${url}/slow?ms=2500`, { agent, ca: pki.ca });
    await new Promise((r) => setTimeout(r, 300));

    // Replace both files (each by an atomic rename), then reload.
    copyFileSync(pki.renewedCert, `${cert}.new`);
    copyFileSync(pki.renewedKey, `${key}.new`);
    renameSync(`${key}.new`, key);
    renameSync(`${cert}.new`, cert);
    let mark = t.lines.length;
    t.signal('SIGHUP');
    await t.waitForLine(/^Reload complete/, 30_000, mark);

    const slow = await inflight;
    assert.equal(slow.status, 200, 'the in-flight request on the pre-HUP connection completed');
    assert.equal(slow.serial, '1001', 'on the old connection');
    assert.equal(body(slow).url, '/slow?ms=2500');
    agent.destroy();
    // A draining worker may still accept for a moment; once it is gone, only new workers answer.
    await waitFor(() => old.every((pid) => !alive(pid)), `old worker(s) ${old.join(', ')} to exit`, 15_000);
    assert.deepEqual(await peerCert(port), { serial: '1002', cn: 'server-two' });
    const fresh = await get(`${url}/after`, { ca: pki.ca });
    assert.equal(fresh.status, 200);
    assert.equal(fresh.serial, '1002');
    const c = await curl([`${url}/curl-after`]);
    assert.match(c.head, /^HTTP\/1\.1 200/);

    // A renewal gone wrong (the key of another certificate): the reload fails, the workers keep serving.
    const workers = childPidsSync(t.pid);
    copyFileSync(path.join(pki.dir, 'client.key'), key);
    mark = t.lines.length;
    t.signal('SIGHUP');
    const failed = await t.waitForLine(/reload failed/i, 20_000, mark);
    assert.match(failed.msg!, /does not belong to the certfile/);
    assert.deepEqual(childPidsSync(t.pid), workers, 'the workers were kept');
    assert.equal((await get(`${url}/still`, { ca: pki.ca })).serial, '1002');
    await stopped(t);
  });

  test('HUP: a connection accepted before the drain and still in its TLS handshake is served (as over plain HTTP)', async (ctx) => {
    // The connection stays silent until the new worker is up, which a loaded machine can make longer
    // than the default first-byte deadline (idle_connection_timeout).
    const patient = ['--idle-connection-timeout', '60', 'node-app'];
    const [secure, plain] = await Promise.all([serve([...tlsArgs(), ...patient]), serve(patient)]);
    ctx.after(() => secure.t.kill());
    ctx.after(() => plain.t.kill());
    const served = async (s: typeof secure): Promise<string> => {
      // Connected (accepted by the worker), nothing sent yet.
      const raw = net.connect({ host: '127.0.0.1', port: s.port });
      await new Promise<void>((resolve, reject) => {
        raw.once('connect', resolve);
        raw.once('error', reject);
      });
      const mark = s.t.lines.length;
      s.t.signal('SIGHUP');
      await s.t.waitForLine(/^Retiring worker/, 30_000, mark);
      // The client sends its request now, while the old worker drains.
      const socket = s === secure ? tls.connect({ socket: raw, ca: pki.ca, servername: 'localhost' }) : raw;
      return new Promise((resolve) => {
        let data = '';
        socket.setEncoding('utf8');
        socket.on('data', (c: string) => (data += c));
        socket.on('close', () => resolve(data || 'closed without a response'));
        socket.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
        socket.write('GET /during-drain HTTP/1.1\r\nHost: localhost\r\n\r\n');
      });
    };
    const [overTls, overHttp] = await Promise.all([served(secure), served(plain)]);
    assert.match(overHttp, /^HTTP\/1\.1 200 .*"url":"\/during-drain"/s, 'plain HTTP: served');
    assert.match(overTls, /^HTTP\/1\.1 200 .*"url":"\/during-drain"/s, 'TLS: served');
    await Promise.all([stopped(secure.t), stopped(plain.t)]);
  });

  test('bad certificate files: Error: line, exit 2, nothing left running', async () => {
    const mark = randomUUID();
    const cases: Array<{ args: string[]; message: RegExp }> = [
      { args: ['--certfile', path.join(pki.dir, 'missing.pem'), '--keyfile', pki.serverKey], message: /missing\.pem/ },
      {
        args: ['--certfile', pki.serverCert, '--keyfile', path.join(pki.dir, 'client.key')],
        message: /key values mismatch.*does not belong to the certfile/i,
      },
      { args: ['--certfile', pki.serverCert, '--keyfile', pki.encryptedKey], message: /encrypted.*--keyfile-password/ },
      {
        args: ['--certfile', pki.serverCert, '--keyfile', pki.encryptedKey, '--keyfile-password', WRONG_PASSWORD],
        message: /password is wrong/,
      },
      {
        args: ['--certfile', pki.serverCert, '--keyfile', pki.unluckyKey, '--keyfile-password', WRONG_PASSWORD],
        message: /password is wrong/,
      },
      { args: ['--certfile', pki.serverCert, '--keyfile', pki.serverCert], message: /keyfile is a PEM private key/ },
      { args: [...tlsArgs(), '--ciphers', 'NO-SUCH-CIPHER'], message: /NO-SUCH-CIPHER.*--ciphers/ },
      {
        args: [...tlsArgs(), '--ca-certs', path.join(pki.dir, 'no-ca.pem'), '--cert-reqs', 'required'],
        message: /no-ca\.pem/,
      },
      { args: [...tlsArgs(), '--cert-reqs', 'required'], message: /--ca-certs/ },
      { args: ['-k', 'http2'], message: /certfile/ },
    ];
    await Promise.all(
      cases.map(async ({ args, message }) => {
        const r = await runTsgun(['-b', '127.0.0.1:0', ...args, 'node-app'], {
          cwd: HTTP_FIXTURES,
          env: { TSGUN_TEST_MARK: mark },
        });
        const errors = r.stderr.split('\n').filter((l) => l.startsWith('Error:'));
        assert.equal(errors.length, 1, `one Error: line for ${args.join(' ')}; stderr:\n${r.stderr}`);
        assert.match(errors[0]!, message);
        assert.equal(r.code, 2, `exit 2 for ${args.join(' ')}; stderr:\n${r.stderr}`);
        assert.doesNotMatch(r.stderr, /Booting worker/, 'no worker was started');
        assert.deepEqual(childPidsSync(r.pid), []);
      }),
    );
    assert.deepEqual(processesWithEnv(`TSGUN_TEST_MARK=${mark}`), [], 'no process left running');
  });

  for (const app of ['node-app', 'fetch-app'] as const) {
    test(`HTTP/2 (-k http2) with ${app}: curl --http2, 3 concurrent streams, HTTP/1.1 on the same port`, async (ctx) => {
      const log = path.join(scratchDir(), 'access.log');
      const { t, url } = await serve([
        '-k',
        'http2',
        ...tlsArgs(),
        '--access-logfile',
        log,
        '--access-logformat',
        '%(h)s %(H)s %(U)s %(s)s %(B)s',
        app,
      ]);
      ctx.after(() => t.kill());
      const c = await curl(['--http2', `${url}/via-curl`]);
      assert.match(c.head, /^HTTP\/2 200/);
      const fromCurl = JSON.parse(c.body) as Record<string, unknown>;
      if (app === 'node-app') {
        assert.equal(fromCurl.httpVersion, '2.0');
        assert.equal(fromCurl.url, '/via-curl');
      } else {
        assert.equal(fromCurl.url, `${url}/via-curl`, 'the fetch handler sees an https URL with the :authority host');
      }

      const { replies, alpn } = await h2Streams(url, ['/s1?ms=300', '/s2?ms=300', '/s3?ms=300']);
      assert.equal(alpn, 'h2');
      assert.deepEqual(
        replies.map((r) => r.status),
        [200, 200, 200],
      );
      const paths = replies.map((r) => (JSON.parse(r.body) as { url: string }).url.replace(/^https:\/\/[^/]+/, ''));
      assert.deepEqual(paths, ['/s1?ms=300', '/s2?ms=300', '/s3?ms=300']);

      const h1 = await get(`${url}/h1`, { ca: pki.ca });
      assert.equal(h1.status, 200);
      const seen = body(h1);
      if (app === 'node-app') assert.equal(seen.httpVersion, '1.1');
      else assert.equal(seen.scheme, 'https');
      const c1 = await curl(['--http1.1', `${url}/h1-curl`]);
      assert.match(c1.head, /^HTTP\/1\.1 200/);

      // A response without a body is a clean HTTP/2 stream, and carries no Content-Length.
      const empty = await curl(['--http2', `${url}/empty?status=204`]);
      assert.match(empty.head, /^HTTP\/2 204/);
      assert.doesNotMatch(empty.head, /content-length/i);

      // The access log: HTTP/2 requests with their client and the body bytes sent.
      const lines = await fileLines(log, 7);
      const size = (p: string): number =>
        Buffer.byteLength(p === '/via-curl' ? c.body : replies[Number(p.slice(2)) - 1]!.body);
      for (const p of ['/via-curl', '/s1', '/s2', '/s3'])
        assert.ok(
          lines.includes(`127.0.0.1 HTTP/2.0 ${p} 200 ${size(p)}`),
          `${p} logged with its size: ${lines.join(' | ')}`,
        );
      assert.ok(lines.includes(`127.0.0.1 HTTP/1.1 /h1 200 ${Buffer.byteLength(h1.body)}`), lines.join(' | '));
      assert.ok(lines.includes('127.0.0.1 HTTP/2.0 /empty 204 0'), lines.join(' | '));
      await stopped(t);
    });
  }
});
