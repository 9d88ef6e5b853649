/**
 * The connection table (src/worker/connections.ts) on a real in-process http.Server with an
 * 'upgrade' listener, as a WebSocket library attaches one: at the limit, an idle keep-alive
 * connection makes room, an upgraded connection and a request in flight never do.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { after, test } from 'node:test';
import pino from 'pino';
import { ConnectionTable, kUpgraded } from '../../src/worker/connections.js';

const table = new ConnectionTable(2, 0, pino({ level: 'silent' }));
const server = http.createServer((req, res) => {
  table.used(req.socket);
  setTimeout(() => res.end('ok'), req.url === '/slow' ? 800 : 0);
});
server.on('connection', (raw: net.Socket) => table.admit(raw, false, false));
server.on('upgrade', (_req, socket: net.Socket & { [kUpgraded]?: boolean }) => {
  socket[kUpgraded] = true;
  socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n');
  socket.on('data', (d) => socket.write(d));
});
after(() => server.close());

interface Conn {
  socket: net.Socket;
  /** Write, then wait for the next data (or for the close: ''). */
  send(text: string): Promise<string>;
  closed: boolean;
}

async function connect(): Promise<Conn> {
  if (!server.listening) await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const socket = net.connect({ host: '127.0.0.1', port: (server.address() as AddressInfo).port });
  await new Promise((resolve) => socket.once('connect', resolve));
  const conn: Conn = {
    socket,
    closed: false,
    send: (text) =>
      new Promise((resolve) => {
        const done = (d: Buffer | string): void => {
          socket.off('data', onData);
          socket.off('close', onClose);
          resolve(String(d));
        };
        const onData = (d: Buffer): void => done(d);
        const onClose = (): void => done('');
        socket.once('data', onData);
        socket.once('close', onClose);
        socket.write(text);
      }),
  };
  socket.on('error', () => {});
  socket.once('close', () => (conn.closed = true));
  after(() => socket.destroy());
  return conn;
}

const GET = (path: string): string => `GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`;

test('at the limit: the idle keep-alive connection makes room, the upgraded one never does', async () => {
  const upgraded = await connect();
  assert.match(
    await upgraded.send('GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n'),
    /^HTTP\/1\.1 101/,
  );
  const idle = await connect();
  assert.match(await idle.send(GET('/')), /^HTTP\/1\.1 200/);

  const third = await connect();
  assert.match(await third.send(GET('/')), /^HTTP\/1\.1 200/, 'the third connection is served');
  assert.equal(idle.closed, true, 'the idle keep-alive connection made room');
  assert.equal(await upgraded.send('still here'), 'still here', 'the upgraded connection is kept');

  // The upgraded connection and a request in flight: nothing to close, the new one is refused.
  const slow = third.send(GET('/slow'));
  await new Promise((r) => setTimeout(r, 100));
  const fourth = await connect();
  assert.equal(await fourth.send(GET('/')), '', 'refused');
  assert.match(await slow, /^HTTP\/1\.1 200/, 'the request in flight finished');
  assert.equal(await upgraded.send('and still'), 'and still');
});

test('at the limit, the least recently used idle connection makes room: a request makes a connection recent again', async () => {
  const lru = new ConnectionTable(3, 0, pino({ level: 'silent' }));
  const own = http.createServer((req, res) => {
    lru.used(req.socket);
    res.end('ok');
  });
  own.on('connection', (raw: net.Socket) => lru.admit(raw, false, false));
  await new Promise<void>((resolve) => own.listen(0, '127.0.0.1', resolve));
  after(() => own.close());
  const port = (own.address() as AddressInfo).port;
  const open = async (): Promise<net.Socket> => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.on('error', () => {});
    after(() => s.destroy());
    await new Promise((resolve) => s.once('connect', resolve));
    return s;
  };
  const get = (s: net.Socket): Promise<string> =>
    new Promise((resolve) => {
      s.once('data', (d) => resolve(String(d)));
      s.write(GET('/'));
    });
  const [a, b, c] = [await open(), await open(), await open()];
  for (const s of [a, b, c]) assert.match(await get(s), /^HTTP\/1\.1 200/);
  // a was accepted first, but used last: b is now the least recently used.
  assert.match(await get(a), /^HTTP\/1\.1 200/);
  const d = await open();
  assert.match(await get(d), /^HTTP\/1\.1 200/, 'the fourth connection is served');
  await new Promise((r) => setTimeout(r, 50));
  // socket.closed: the stream has emitted 'close'.
  assert.deepEqual([a.closed, b.closed, c.closed], [false, true, false], 'b made room, a and c are kept');
});
