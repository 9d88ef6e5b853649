// bench/apps/node-http.mjs as a tsgun worker receives connections: one node:http server for the
// app, fed by a net.Server "front" on the socket (src/worker/http.ts), with tsgun's default
// server options. With NODE_LOADED=1 it also loads what a tsgun worker loads (its worker modules
// and pino) without using it; with pino or dist, one of the two; with emitters, nothing, but it
// sends objects of five other shapes through EventEmitter and Writable once at start. Against
// node-http.mjs in bench/paired.mjs (servers node-front, node-loaded), it splits what
// `tsgun -w 1` costs beyond a bare process into the front, the loaded code, and tsgun's own
// per-request work.
//   PORT=8000 [NODE_LOADED=1] node bench/apps/node-front.mjs
import http from 'node:http';
import net from 'node:net';
import app from './suite.mjs';

const LOADED = process.env.NODE_LOADED ?? '';
if (LOADED === '1' || LOADED === 'dist') {
  const dist = new URL('../../dist/', import.meta.url);
  for (const m of [
    'log.js',
    'ipc.js',
    'errors.js',
    'peers.js',
    'config/settings.js',
    'config/appspec.js',
    'worker/app.js',
    'worker/http.js',
    'worker/requests.js',
    'worker/connections.js',
    'worker/proxy.js',
  ])
    await import(new URL(m, dist).href);
}
if (LOADED === '1' || LOADED === 'pino') {
  const { default: pino } = await import('pino');
  pino({ base: { role: 'worker' } }, pino.destination({ dest: 2, sync: true }));
}
if (LOADED === 'emitters') {
  // No tsgun, no pino: objects of a few other shapes through EventEmitter and Writable, once.
  const { EventEmitter } = await import('node:events');
  const { Writable } = await import('node:stream');
  class A extends EventEmitter {
    constructor() {
      super();
      this.a = 1;
    }
  }
  class B extends EventEmitter {
    constructor() {
      super();
      this.b = 1;
      this.c = 2;
    }
  }
  class C extends EventEmitter {
    constructor() {
      super();
      this.fd = 1;
      this.buf = '';
      this.x = [];
    }
  }
  class D extends Writable {
    constructor() {
      super();
      this.d = 1;
    }
    _write(c, e, cb) {
      cb();
    }
  }
  class E extends Writable {
    constructor() {
      super({ objectMode: true });
      this.e1 = 1;
      this.e2 = 2;
    }
    _write(c, e, cb) {
      cb();
    }
  }
  for (let i = 0; i < 2000; i++) {
    for (const K of [A, B, C, D, E]) {
      const o = new K();
      o.on('x', () => {});
      o.once('y', () => {});
      o.emit('x', 1);
      o.emit('y');
      if (o instanceof Writable) o.end('abc');
    }
  }
}
// tsgun's defaults (keepalive 2 s, headers 60 s, request 300 s, a check every second).
const server = http.createServer(
  { keepAliveTimeout: 2000, headersTimeout: 60_000, requestTimeout: 300_000, connectionsCheckingInterval: 1000 },
  app,
);
const front = net.createServer({ allowHalfOpen: true, noDelay: true }, (sock) => server.emit('connection', sock));
front.listen(Number(process.env.PORT ?? 8000), '127.0.0.1', () => server.emit('listening'));
process.on('SIGTERM', () => process.exit(0));
