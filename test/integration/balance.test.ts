/**
 * balance_connections: keep-alive connections that all landed on one worker are spread
 * over the workers without a failed request. Twelve keep-alive connections are opened while
 * there is one worker; TTIN adds a second; the clients keep sending requests, reconnecting
 * only when a response said `Connection: close`. With balancing the connections end up split
 * between the two workers; with --no-balance-connections they all stay on the first.
 *
 * The app is test/fixtures/liveness/app.ts: `/` answers `ok PID`.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, test } from 'node:test';
import { FIXTURES, RawHttp, sleep, Tsgun, waitFor, workerPidsByTitle } from '../helpers.js';

const DIR = path.join(FIXTURES, 'liveness');
const CONNECTIONS = 12;

interface Client {
  conn: RawHttp;
  /** The worker that answered the last request on this connection. */
  pid: number;
}

/**
 * Send one request on every client's connection, in turn. A response that says
 * `Connection: close` is a complete response: that client opens a new connection for its
 * next request. Anything else (an error, a connection closed without saying so, a status
 * other than 200) fails the test. Returns how many connections were replaced.
 */
async function round(url: string, clients: Client[]): Promise<number> {
  let replaced = 0;
  for (const c of clients) {
    const reply = await c.conn.request('/');
    assert.equal(reply.status, 200, `request failed: ${reply.status} ${reply.body}`);
    c.pid = Number(/ok (\d+)$/.exec(reply.body)![1]);
    if (reply.headers.connection === 'close') {
      await c.conn.closed;
      c.conn = await RawHttp.connect(url);
      replaced++;
    }
  }
  return replaced;
}

/** Workers by pid → how many of the clients' connections each one holds now. */
function split(clients: Client[]): Map<number, number> {
  const by = new Map<number, number>();
  for (const c of clients) by.set(c.pid, (by.get(c.pid) ?? 0) + 1);
  return by;
}

async function startWithPiledUpConnections(
  extra: string[],
): Promise<{ t: Tsgun; url: string; clients: Client[]; first: number }> {
  const t = new Tsgun(['-w', '1', '-b', '127.0.0.1:0', '--log-level', 'debug', '--timeout', '4', ...extra, 'app:app'], {
    cwd: DIR,
  });
  const clients: Client[] = [];
  try {
    return await pileUp(t, clients);
  } catch (err) {
    for (const c of clients) c.conn.socket.destroy();
    t.proc.kill('SIGKILL');
    throw err;
  }
}

async function pileUp(
  t: Tsgun,
  clients: Client[],
): Promise<{ t: Tsgun; url: string; clients: Client[]; first: number }> {
  const [url] = await t.listening();
  await t.waitForLine(/^Ready: /);
  for (let i = 0; i < CONNECTIONS; i++) clients.push({ conn: await RawHttp.connect(url!), pid: 0 });
  await round(url!, clients);
  const [first] = workerPidsByTitle(t.pid);
  assert.deepEqual([...split(clients)], [[first, CONNECTIONS]], 'with one worker, it holds every connection');
  t.proc.kill('SIGTTIN');
  await waitFor(() => workerPidsByTitle(t.pid).length === 2, 'a second worker after TTIN', 20_000);
  await t.until(() => t.grep(/^Booting worker with pid: /).length === 2, 'the second worker ready');
  return { t, url: url!, clients, first: first! };
}

/** Close the test's connections, then TERM the master and wait for it to exit. */
async function stopWithClients(t: Tsgun, clients: Client[]): Promise<void> {
  for (const c of clients) c.conn.socket.destroy();
  t.proc.kill('SIGTERM');
  await t.exited;
}

describe('balance_connections', { concurrency: 2 }, () => {
  test('keep-alive connections piled on one worker are spread over the workers, closing only after complete responses', async (ctx) => {
    const { t, url, clients, first } = await startWithPiledUpConnections([]);
    ctx.after(() => stopWithClients(t, clients));
    let replaced = 0;
    const balanced = await waitFor(
      async () => {
        replaced += await round(url, clients);
        const by = split(clients);
        return by.size === 2 && Math.min(...by.values()) >= CONNECTIONS / 2 - 2 ? by : null;
      },
      'the connections split between both workers',
      20_000,
    );
    assert.ok(replaced >= 4, `connections were moved by Connection: close (${replaced})`);
    assert.ok((balanced.get(first) ?? 0) < CONNECTIONS, 'the first worker gave connections up');
    assert.ok(t.grep(/holds \d+ of \d+ connections; closing \d+/).length > 0, 'the master logged why');
  });

  test('--no-balance-connections leaves them where they landed', async (ctx) => {
    const { t, url, clients, first } = await startWithPiledUpConnections(['--no-balance-connections']);
    ctx.after(() => stopWithClients(t, clients));
    const until = Date.now() + 3000;
    let replaced = 0;
    while (Date.now() < until) {
      replaced += await round(url, clients);
      await sleep(20);
    }
    assert.equal(replaced, 0, 'no response said Connection: close');
    assert.deepEqual([...split(clients)], [[first, CONNECTIONS]]);
  });
});
