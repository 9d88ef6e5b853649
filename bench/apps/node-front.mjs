// bench/apps/node-http.mjs as a tsgun worker receives connections: one node:http server for the
// app, fed by a net.Server "front" on the socket (src/worker/http.ts), with tsgun's default
// server options. With NODE_LOADED=1 it also loads what a tsgun worker loads (its worker modules
// and pino) without using it. Against node-http.mjs in bench/paired.mjs (servers node-front,
// node-loaded), it splits what `tsgun -w 1` costs beyond a bare process into the front, the
// loaded code, and tsgun's own per-request work.
//   PORT=8000 [NODE_LOADED=1] node bench/apps/node-front.mjs
import http from 'node:http';
import net from 'node:net';
import app from './suite.mjs';

const LOADED = process.env.NODE_LOADED ?? '';
if (LOADED === '1' || LOADED === 'dist') {
  const dist = new URL('../../dist/', import.meta.url);
  for (const m of ['log.js', 'ipc.js', 'errors.js', 'peers.js', 'config/settings.js', 'config/appspec.js', 'worker/app.js', 'worker/http.js', 'worker/requests.js', 'worker/connections.js', 'worker/proxy.js']) await import(new URL(m, dist).href);
}
if (LOADED === '1' || LOADED === 'pino') {
  const { default: pino } = await import('pino');
  pino({ base: { role: 'worker' } }, pino.destination({ dest: 2, sync: true }));
}
// tsgun's defaults (keepalive 2 s, headers 60 s, request 300 s, a check every second).
const server = http.createServer({ keepAliveTimeout: 2000, headersTimeout: 60_000, requestTimeout: 300_000, connectionsCheckingInterval: 1000 }, app);
const front = net.createServer({ allowHalfOpen: true, noDelay: true }, (sock) => server.emit('connection', sock));
front.listen(Number(process.env.PORT ?? 8000), '127.0.0.1', () => server.emit('listening'));
process.on('SIGTERM', () => process.exit(0));
