/**
 * A WebSocket through a real nginx configured as README.md and docs/deploy.md say (see
 * nginx.shared.ts), to an app that brings its own `http.Server` with a `ws`
 * WebSocketServer attached: the upgrade reaches the app, which sees nginx's view of the
 * client, and messages echo both ways. Skipped where nginx is not installed.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { describe, test } from 'node:test';
import WebSocket from 'ws';
import { DOCS, docNginx, NEEDS_NGINX, startNginx, startTsgun } from './nginx.shared.js';

/** The next message on `ws` as text, or a failure after `ms`. */
function nextMessage(ws: WebSocket, ms = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no WebSocket message within ${ms} ms`)), ms);
    ws.once('message', (data: Buffer) => {
      clearTimeout(timer);
      resolve(data.toString('utf8'));
    });
  });
}

describe('WebSockets behind nginx, as the docs configure it', { concurrency: 1 }, () => {
  for (const doc of DOCS) {
    test(
      `${doc}: a WebSocket through nginx reaches the app's ws server, echoes, and closes cleanly`,
      { skip: NEEDS_NGINX },
      async (t) => {
        const { sock } = await startTsgun(t, doc, [], 'ws-server');
        const nginx = await startNginx(t, (port) => docNginx(doc, sock, port));

        const ws = new WebSocket(`ws://127.0.0.1:${nginx.port}/echo`, {
          headers: { 'x-forwarded-for': '6.6.6.6' },
          handshakeTimeout: 5000,
        });
        t.after(() => ws.terminate());
        const greeting = nextMessage(ws);
        const [opened] = await Promise.race([
          once(ws, 'open'),
          once(ws, 'unexpected-response').then(([, res]) =>
            Promise.reject(new Error(`upgrade answered ${(res as { statusCode: number }).statusCode}`)),
          ),
        ]);
        assert.equal(opened, undefined);
        assert.deepEqual(
          JSON.parse(await greeting),
          { remote: '127.0.0.1', url: '/echo' },
          "the upgrade request carries nginx's view of the client",
        );

        for (const text of ['hello', 'x'.repeat(70_000)]) {
          const echoed = nextMessage(ws);
          ws.send(text);
          assert.equal(await echoed, text);
        }
        const closed = once(ws, 'close');
        ws.close(1000, 'done');
        const [code] = (await closed) as [number, Buffer];
        assert.equal(code, 1000);
      },
    );
  }
});
