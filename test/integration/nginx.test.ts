/**
 * tsgun behind a real nginx, configured exactly as README.md and docs/deploy.md say (see
 * nginx.shared.ts): over a unix socket, with `--forwarded-allow-ips unix`. A client
 * cannot make the app or the access log see another address or scheme by sending
 * `X-Forwarded-For` (nginx appends to it) or `Forwarded` (nginx passes it through), and
 * nginx keeps reusing its connections to tsgun for plain requests.
 * Skipped where nginx is not installed.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, test } from 'node:test';
import { request, scratchDir } from '../helpers.js';
import { fileLines } from './http-layer.shared.js';
import { DOCS, docNginx, NEEDS_NGINX, type Nginx, startNginx, startTsgun } from './nginx.shared.js';

interface Seen {
  remote: string | null;
  encrypted: boolean;
  conn: number;
  xForwardedFor: string | null;
  xForwardedProto: string | null;
  forwarded: string | null;
}

/** One request through nginx, on a fresh client connection; what the app saw. */
async function via(nginx: Nginx, urlPath: string, headers: Record<string, string> = {}): Promise<Seen> {
  const reply = await request(`${nginx.url}${urlPath}`, { headers });
  assert.equal(reply.status, 200, `${urlPath}: ${reply.body}`);
  return JSON.parse(reply.body) as Seen;
}

describe('behind nginx, as the docs configure it', { concurrency: 1 }, () => {
  for (const doc of DOCS) {
    test(
      `${doc}: a client-sent X-Forwarded-For or Forwarded leaves the app and the access log seeing nginx's view (127.0.0.1, http)`,
      { skip: NEEDS_NGINX },
      async (t) => {
        const log = path.join(scratchDir(), 'access.log');
        const { sock } = await startTsgun(
          t,
          doc,
          ['--access-logfile', log, '--access-logformat', '%(h)s %(U)s'],
          'app',
        );
        const nginx = await startNginx(t, (port) => docNginx(doc, sock, port));

        const xff = await via(nginx, '/xff', { 'x-forwarded-for': '6.6.6.6' });
        assert.equal(xff.remote, '127.0.0.1', 'the address nginx appended, not the one the client sent');
        assert.equal(xff.encrypted, false);
        assert.equal(xff.xForwardedFor, '6.6.6.6, 127.0.0.1', 'the app gets the header as nginx sent it');

        const rfc = await via(nginx, '/forwarded', { forwarded: 'for=7.7.7.7;proto=https' });
        assert.equal(rfc.remote, '127.0.0.1', 'a Forwarded header nginx passed through is not read');
        assert.equal(rfc.encrypted, false);
        assert.equal(rfc.forwarded, 'for=7.7.7.7;proto=https', 'and reaches the app unchanged');

        const all = await via(nginx, '/all', {
          'x-forwarded-for': '6.6.6.6, 5.5.5.5',
          'x-forwarded-proto': 'https',
          forwarded: 'for=7.7.7.7;proto=https',
        });
        assert.equal(all.remote, '127.0.0.1');
        assert.equal(all.encrypted, false, "nginx replaced the client's X-Forwarded-Proto with its own scheme");
        assert.equal(all.xForwardedProto, 'http');

        assert.deepEqual(await fileLines(log, 3), ['127.0.0.1 /xff', '127.0.0.1 /forwarded', '127.0.0.1 /all']);
      },
    );

    test(
      `${doc}: plain requests reuse nginx's keep-alive connection to tsgun (the upgrade map sends no Connection: close)`,
      { skip: NEEDS_NGINX },
      async (t) => {
        const { sock } = await startTsgun(t, doc, [], 'app');
        const nginx = await startNginx(t, (port) => docNginx(doc, sock, port));
        const conns = [];
        for (let i = 0; i < 3; i++) conns.push((await via(nginx, `/ka${i}`)).conn);
        assert.deepEqual(conns, [1, 1, 1], 'three client connections to nginx, one connection from nginx to tsgun');
      },
    );
  }
});
