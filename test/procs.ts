/**
 * More integration helpers: process facts from /proc, polling, and a raw HTTP/1.1
 * keep-alive connection whose requests and close the test controls byte by byte.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';

/** The process title, as `ps` shows it: /proc/PID/cmdline with NULs as spaces. */
export function cmdline(pid: number): string {
  return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0+$/, '').replace(/\0/g, ' ').trim();
}

/** The parent pid of `pid`, from /proc/PID/stat. */
export function ppid(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
}

/**
 * Live processes whose environment holds `marker` (for example `TSGUN_TEST_MARK=abc`).
 * Children inherit the environment, so this finds every descendant of a tsgun started
 * with the marker, even after the master is gone and they were reparented.
 */
export function processesWithEnv(marker: string): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      if (stat.slice(stat.lastIndexOf(')') + 2)[0] === 'Z') continue;
      if (readFileSync(`/proc/${entry}/environ`, 'utf8').split('\0').includes(marker)) found.push(Number(entry));
    } catch {
      // Exited while we looked, or not ours to read.
    }
  }
  return found;
}

type Maybe<T> = T | undefined | null | false;

/** Poll `check` (which may be async) every 20 ms until it returns a truthy value; throw after `ms`. */
export async function waitFor<T>(check: () => Maybe<T> | Promise<Maybe<T>>, what: string, ms = 10_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The contents of a file, or '' while it does not exist. */
export function readIfExists(file: string): string {
  return existsSync(file) ? readFileSync(file, 'utf8') : '';
}

export interface RawReply {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/**
 * One keep-alive HTTP/1.1 connection. Responses must carry `content-length` (Express's
 * `res.send` does). Records whether the socket saw an error and when the server closed it.
 */
export class RawHttp {
  readonly socket: net.Socket;
  private buf = '';
  private waiting: (() => void) | null = null;
  error: Error | null = null;
  ended = false;
  readonly closed: Promise<void>;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      this.buf += chunk;
      this.waiting?.();
    });
    socket.on('error', (err) => {
      this.error = err;
      this.waiting?.();
    });
    socket.on('end', () => {
      this.ended = true;
      this.waiting?.();
    });
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
  }

  static connect(url: string): Promise<RawHttp> {
    const u = new URL(url);
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: u.hostname, port: Number(u.port) });
      socket.once('connect', () => resolve(new RawHttp(socket)));
      socket.once('error', reject);
    });
  }

  /** Send one request and wait for its whole response. */
  async request(path: string): Promise<RawReply> {
    this.socket.write(`GET ${path} HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n`);
    for (;;) {
      const reply = this.take();
      if (reply) return reply;
      if (this.error) throw this.error;
      if (this.ended) throw new Error(`connection closed before the response to ${path} (got ${JSON.stringify(this.buf)})`);
      await new Promise<void>((resolve) => (this.waiting = resolve));
      this.waiting = null;
    }
  }

  private take(): RawReply | null {
    const end = this.buf.indexOf('\r\n\r\n');
    if (end < 0) return null;
    const [statusLine, ...lines] = this.buf.slice(0, end).split('\r\n');
    const headers: Record<string, string> = {};
    for (const line of lines) {
      const colon = line.indexOf(':');
      headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
    const length = Number(headers['content-length'] ?? NaN);
    if (!Number.isInteger(length)) throw new Error(`response without content-length: ${statusLine}`);
    // Bodies in these tests are ASCII, so string length is byte length.
    if (this.buf.length < end + 4 + length) return null;
    const body = this.buf.slice(end + 4, end + 4 + length);
    this.buf = this.buf.slice(end + 4 + length);
    return { status: Number(statusLine!.split(' ')[1]), headers, body };
  }
}
