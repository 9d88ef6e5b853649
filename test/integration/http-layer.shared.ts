/**
 * Shared by the HTTP-layer tests (http-layer*.test.ts): a tsgun started on the fixtures
 * in test/fixtures/http/, a request helper that speaks HTTP or HTTPS from a chosen local
 * address, a raw TCP exchange for bytes no HTTP client would send (PROXY headers,
 * oversized heads), and a test PKI made with openssl.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createPrivateKey } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import type { TLSSocket } from 'node:tls';
import { FIXTURES, readIfExists, scratchDir, Tsgun, waitFor } from '../helpers.js';

export const HTTP_FIXTURES = path.join(FIXTURES, 'http');

/** A tsgun serving a fixture from test/fixtures/http/, ready, with its first URL. */
export async function serve(
  args: readonly string[],
  env: NodeJS.ProcessEnv = {},
): Promise<{ t: Tsgun; url: string; port: number }> {
  const t = new Tsgun(['-b', '127.0.0.1:0', ...args], { cwd: HTTP_FIXTURES, env });
  try {
    const url = await t.ready(1);
    return { t, url, port: Number(new URL(url).port) };
  } catch (err) {
    t.kill();
    throw err;
  }
}

export interface Got {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
  /** The body parsed as JSON (the fixtures answer JSON); null if it is not. */
  json: Record<string, unknown> | null;
  /** The server certificate's serial number (hex, as Node reports it), for HTTPS. */
  serial: string | null;
}

export interface GetOptions {
  path?: string;
  method?: string;
  headers?: Record<string, string>;
  localAddress?: string;
  agent?: http.Agent | false;
  /** TLS: trusted CA, client certificate and key. */
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  maxVersion?: 'TLSv1.2' | 'TLSv1.3';
  timeoutMs?: number;
}

/** One request with node's http or https client (by the URL's scheme). */
export function get(url: string, opts: GetOptions = {}): Promise<Got> {
  const u = new URL(url);
  const secure = u.protocol === 'https:';
  const client = secure ? https : http;
  return new Promise((resolve, reject) => {
    const req = client.request(
      {
        hostname: u.hostname,
        port: u.port,
        path: opts.path ?? `${u.pathname}${u.search}`,
        method: opts.method ?? 'GET',
        headers: opts.headers,
        agent: opts.agent ?? false,
        localAddress: opts.localAddress,
        timeout: opts.timeoutMs ?? 15_000,
        ...(secure ? { ca: opts.ca, cert: opts.cert, key: opts.key, maxVersion: opts.maxVersion } : {}),
      },
      (res) => {
        const serial = secure ? ((res.socket as TLSSocket).getPeerCertificate().serialNumber ?? null) : null;
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => {
          let json: Record<string, unknown> | null = null;
          try {
            json = JSON.parse(body) as Record<string, unknown>;
          } catch {
            // Not JSON: an error page.
          }
          resolve({ status: res.statusCode!, headers: res.headers, body, json, serial });
        });
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`request to ${url} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

export interface RawResult {
  /** Everything the server sent, as latin1. */
  data: string;
  /** The status of the first response, or null when the server sent none. */
  status: number | null;
  /** The connection ended (FIN, reset or error) before the timeout. */
  closed: boolean;
  /** The socket error, if any (ECONNRESET, ...). */
  error: string | null;
  /** Milliseconds from connect to close (or to the timeout). */
  ms: number;
}

/**
 * Connect, write `bytes`, and collect what comes back until the server closes the
 * connection or `timeoutMs` passes (the socket is then destroyed by us).
 */
export function rawExchange(
  port: number,
  bytes: Buffer | string,
  opts: { localAddress?: string; timeoutMs?: number } = {},
): Promise<RawResult> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let error: string | null = null;
    let started = 0;
    const socket = net.connect({ host: '127.0.0.1', port, localAddress: opts.localAddress });
    const timer = setTimeout(() => finish(false), opts.timeoutMs ?? 5000);
    const finish = (closed: boolean): void => {
      clearTimeout(timer);
      socket.destroy();
      const data = Buffer.concat(chunks).toString('latin1');
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(data);
      resolve({ data, status: m ? Number(m[1]) : null, closed, error, ms: Date.now() - started });
    };
    socket.once('connect', () => {
      started = Date.now();
      socket.write(bytes);
    });
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (!started) {
        clearTimeout(timer);
        reject(err);
        return;
      }
      error = err.code ?? err.message;
    });
    socket.on('close', () => finish(true));
  });
}

/** Run a command to completion; resolves with its stdout (rejects with stderr on failure). */
export function run(cmd: string, args: readonly string[], opts: { cwd?: string } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { cwd: opts.cwd, timeout: 20_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(' ')} failed: ${err.message}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

/** Wait until `file` holds at least `n` lines; returns them (access logs are written asynchronously). */
export async function fileLines(file: string, n: number, ms = 10_000): Promise<string[]> {
  return waitFor(
    () => {
      const lines = readIfExists(file).split('\n').filter(Boolean);
      return lines.length >= n ? lines : null;
    },
    `${n} line(s) in ${file}`,
    ms,
  );
}

// ---- certificates ------------------------------------------------------------------------

export interface Pki {
  dir: string;
  /** PEM paths. */
  caFile: string;
  serverCert: string;
  serverKey: string;
  ca: Buffer;
  clientCert: Buffer;
  clientKey: Buffer;
  /** A second server certificate (serial 1002, CN server-two) for the renewal test. */
  renewedCert: string;
  renewedKey: string;
  /** The server key encrypted with KEY_PASSWORD. */
  encryptedKey: string;
  /**
   * The server key encrypted with KEY_PASSWORD such that the password WRONG_PASSWORD passes
   * the decryption's padding check (about one encryption in 256 does), so OpenSSL reports a
   * decoding failure rather than "bad decrypt".
   */
  unluckyKey: string;
}

export const WRONG_PASSWORD = 'wrong';

export const KEY_PASSWORD = 'correct horse';

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

/** A key and a certificate signed by the test CA: `NAME.key`, `NAME.pem`. */
async function issue(dir: string, name: string, subject: string, serial: string, extensions: string): Promise<void> {
  const ext = path.join(dir, `${name}.ext`);
  writeFileSync(ext, extensions);
  await run('openssl', ['req', ...EC, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', subject], { cwd: dir });
  await run(
    'openssl',
    [
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      'ca.pem',
      '-CAkey',
      'ca.key',
      '-set_serial',
      serial,
      '-days',
      '2',
      '-out',
      `${name}.pem`,
      '-extfile',
      ext,
    ],
    { cwd: dir },
  );
}

/** A CA, a server certificate for 127.0.0.1 and localhost, a client certificate, a renewal. */
export async function makePki(): Promise<Pki> {
  const dir = scratchDir('tsgun-pki-');
  await run(
    'openssl',
    ['req', '-x509', ...EC, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=tsgun test CA'],
    { cwd: dir },
  );
  const server = 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n';
  await Promise.all([
    issue(dir, 'server', '/CN=server-one', '0x1001', server),
    issue(dir, 'renewed', '/CN=server-two', '0x1002', server),
    issue(dir, 'client', '/CN=test-client', '0x2001', 'basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n'),
  ]);
  await run(
    'openssl',
    ['pkey', '-in', 'server.key', '-aes256', '-passout', `pass:${KEY_PASSWORD}`, '-out', 'server-encrypted.key'],
    { cwd: dir },
  );
  const at = (f: string): string => path.join(dir, f);
  writeFileSync(at('server-unlucky.key'), unluckyEncryption(readFileSync(at('server.key'))));
  return {
    dir,
    caFile: at('ca.pem'),
    serverCert: at('server.pem'),
    serverKey: at('server.key'),
    ca: readFileSync(at('ca.pem')),
    clientCert: readFileSync(at('client.pem')),
    clientKey: readFileSync(at('client.key')),
    renewedCert: at('renewed.pem'),
    renewedKey: at('renewed.key'),
    encryptedKey: at('server-encrypted.key'),
    unluckyKey: at('server-unlucky.key'),
  };
}

function unluckyEncryption(pem: Buffer): string {
  const key = createPrivateKey(pem);
  for (let i = 0; i < 10_000; i++) {
    const encrypted = key.export({
      type: 'pkcs8',
      format: 'pem',
      cipher: 'aes-256-cbc',
      passphrase: KEY_PASSWORD,
    }) as string;
    try {
      createPrivateKey({ key: encrypted, format: 'pem', passphrase: WRONG_PASSWORD });
    } catch (err) {
      if (!/bad decrypt/.test((err as Error).message)) return encrypted;
    }
  }
  throw new Error('no encryption of the server key let the wrong password through the padding check in 10,000 tries');
}

/** `--certfile/--keyfile` for the test server certificate. */
export function tlsArgs(pki: Pki): string[] {
  return ['--certfile', pki.serverCert, '--keyfile', pki.serverKey];
}

// ---- small checks ----------------------------------------------------------------------------

/** The JSON body of a fixture's answer (both fixtures answer JSON). */
export function body(got: Got): Record<string, unknown> {
  assert.ok(got.json, `a JSON body, got ${got.status} ${JSON.stringify(got.body)}`);
  return got.json;
}

/** TERM and a clean exit. */
export async function stopped(t: Tsgun): Promise<void> {
  assert.equal((await t.stop()).code, 0, `clean stop\n${t.stderr}`);
}

export const GET_CLOSE = 'GET /who HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n';

/** The JSON body of a raw HTTP/1.1 response (the fixtures answer JSON). */
export function rawBody(data: string): Record<string, unknown> {
  const split = data.indexOf('\r\n\r\n');
  assert.ok(split > 0 && data.startsWith('HTTP/1.1 200'), `a 200 response, got ${JSON.stringify(data)}`);
  return JSON.parse(data.slice(split + 4)) as Record<string, unknown>;
}
