/**
 * Integration test helpers: start `bin/tsgun` as a real process, read its log lines,
 * send real HTTP requests, read process facts from /proc, and hold a raw HTTP/1.1
 * keep-alive connection byte by byte. Nothing here mocks a process or a socket.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
export const BIN = path.join(ROOT, 'bin', 'tsgun');
export const FIXTURES = path.join(ROOT, 'test', 'fixtures');

export interface LogLine {
  level?: string;
  msg?: string;
  pid?: number;
  role?: string;
  /** pino's timestamp, ms since the epoch. */
  time?: number;
  raw: string;
}

export class Tsgun {
  readonly proc: ChildProcess;
  readonly lines: LogLine[] = [];
  stdout = '';
  stderr = '';
  private readonly waiters: Array<() => void> = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Exited, with its output read. */
  private finished = false;

  constructor(
    args: readonly string[],
    opts: { cwd?: string; env?: NodeJS.ProcessEnv; stdio?: Array<'pipe' | 'ignore' | number> } = {},
  ) {
    const stdio = opts.stdio ?? ['ignore', 'pipe', 'pipe'];
    this.proc = spawn(process.execPath, [BIN, ...args], {
      cwd: opts.cwd ?? FIXTURES,
      env: { ...process.env, TSGUN_CMD_ARGS: '', PORT: '', WEB_CONCURRENCY: '', ...opts.env },
      stdio: stdio as never,
    });
    let partial = '';
    this.proc.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      this.stderr += chunk;
      partial += chunk;
      const parts = partial.split('\n');
      partial = parts.pop()!;
      for (const raw of parts) {
        let parsed: LogLine = { raw };
        try {
          parsed = { ...(JSON.parse(raw) as object), raw };
        } catch {
          // Not a JSON log line (an Error: line, a stack).
        }
        this.lines.push(parsed);
      }
      this.notify();
    });
    this.proc.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      this.stdout += chunk;
      this.notify();
    });
    this.exited = exitedWithOutput(this.proc);
    void this.exited.then(() => {
      this.finished = true;
      this.notify();
    });
    live.add(this);
  }

  get pid(): number {
    return this.proc.pid!;
  }

  private notify(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  /** Wait until `check` returns a value (re-checked on every new output), or fail after `ms`. */
  async until<T>(check: () => T | undefined | null | false, what: string, ms = 20_000): Promise<T> {
    const deadline = Date.now() + ms;
    for (;;) {
      const v = check();
      if (v) return v;
      if (this.finished) {
        throw new Error(
          `tsgun exited (${this.proc.exitCode ?? this.proc.signalCode}) before ${what}\n--- stderr ---\n${this.stderr}`,
        );
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}\n--- stderr ---\n${this.stderr}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 200));
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Lines whose message matches. */
  grep(re: RegExp): LogLine[] {
    return this.lines.filter((l) => re.test(l.msg ?? l.raw));
  }

  /** Wait for a log line matching `re`, counting from `after` lines already seen. */
  waitForLine(re: RegExp, ms = 20_000, after = 0): Promise<LogLine> {
    return this.until(
      () => this.lines.slice(after).find((l) => re.test(l.msg ?? l.raw)),
      `a log line matching ${re}`,
      ms,
    );
  }

  /** The `Listening at:` addresses, once `count` of them have been logged. */
  async listening(count = 1): Promise<string[]> {
    return this.until(() => {
      const urls = this.grep(/^Listening at: /).map((l) => /^Listening at: (\S+)/.exec(l.msg!)![1]!);
      return urls.length >= count ? urls : null;
    }, `${count} Listening at: line(s)`);
  }

  /** Wait for `count` workers to report ready; returns the url of the first socket. */
  async ready(workers = 1, sockets = 1): Promise<string> {
    const [url] = await this.listening(sockets);
    await this.until(() => this.grep(/^Booting worker with pid/).length >= workers, `${workers} worker(s) booted`);
    return url!;
  }

  /** Pids of the master's direct children. */
  async workerPids(): Promise<number[]> {
    return childPids(this.pid);
  }

  signal(sig: NodeJS.Signals): void {
    this.proc.kill(sig);
  }

  async stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill('SIGTERM');
    const timer = setTimeout(() => this.kill(), 15_000);
    const result = await this.exited;
    clearTimeout(timer);
    live.delete(this);
    return result;
  }

  /** SIGKILL the master and its workers. */
  kill(): void {
    for (const pid of childPidsSync(this.pid)) tryKill(pid, 'SIGKILL');
    tryKill(this.pid, 'SIGKILL');
  }
}

/**
 * A child's exit status once its output has been read. 'exit' can come before the last of
 * stdout and stderr is read; 'close' comes after that, but waits for every holder of the
 * pipes, and workers that outlive their master hold them too: so 'close', or 2 s after 'exit'.
 */
export function exitedWithOutput(proc: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  return new Promise((resolve) =>
    proc.once('exit', (code, signal) => {
      const done = (): void => {
        clearTimeout(timer);
        resolve({ code, signal });
      };
      const timer = setTimeout(done, 2000);
      proc.once('close', done);
    }),
  );
}

const live = new Set<Tsgun>();
process.on('exit', () => {
  for (const t of live) t.kill();
});
// The test runner stops a file that overruns its timeout with SIGTERM, which skips 'exit'
// handlers: without this, the masters it started would be left running.
for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
  process.once(sig, () => process.exit(sig === 'SIGINT' ? 130 : 143));
}

function tryKill(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // Gone already.
  }
}

/** The state letter and parent pid of `pid`, from /proc/PID/stat; null once it is gone. */
export function procStat(pid: number | string): { state: string; ppid: number } | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name, in parentheses, may itself hold spaces and parentheses.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { state: fields[0]!, ppid: Number(fields[1]) };
  } catch {
    return null;
  }
}

/** Every pid in /proc but this process's own. */
function allPids(): number[] {
  return readdirSync('/proc')
    .filter((e) => /^\d+$/.test(e))
    .map(Number)
    .filter((pid) => pid !== process.pid);
}

/** Direct children of `pid` that are not zombies, from /proc. */
export function childPidsSync(pid: number): number[] {
  return allPids()
    .filter((p) => {
      const stat = procStat(p);
      return stat?.ppid === pid && stat.state !== 'Z';
    })
    .sort((a, b) => a - b);
}

export async function childPids(pid: number): Promise<number[]> {
  return childPidsSync(pid);
}

/** Is this pid a live (non-zombie) process? */
export function alive(pid: number): boolean {
  const stat = procStat(pid);
  return stat !== null && stat.state !== 'Z';
}

/** The parent pid of `pid`. */
export function ppid(pid: number): number {
  const stat = procStat(pid);
  if (!stat) throw new Error(`process ${pid} is gone`);
  return stat.ppid;
}

/**
 * Live processes whose environment holds `marker` (for example `TSGUN_TEST_MARK=abc`).
 * Children inherit the environment, so this finds every descendant of a tsgun started
 * with the marker, even after the master is gone and they were reparented.
 */
export function processesWithEnv(marker: string): number[] {
  return allPids().filter((pid) => {
    try {
      return alive(pid) && readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').includes(marker);
    } catch {
      return false; // Exited while we looked, or not ours to read.
    }
  });
}

export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** One HTTP request on a fresh connection (no keep-alive pooling between calls). */
export function request(
  url: string,
  opts: {
    method?: string;
    headers?: Record<string, string>;
    body?: string | Buffer;
    socketPath?: string;
    path?: string;
    timeoutMs?: number;
  } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const target = opts.socketPath
      ? { socketPath: opts.socketPath, path: opts.path ?? '/' }
      : (() => {
          const u = new URL(url);
          return {
            hostname: u.hostname.replace(/^\[|\]$/g, ''),
            port: u.port,
            path: opts.path ?? `${u.pathname}${u.search}`,
          };
        })();
    const req = http.request(
      {
        ...target,
        method: opts.method ?? 'GET',
        headers: opts.headers,
        agent: false,
        timeout: opts.timeoutMs ?? 15_000,
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`request to ${url} timed out`)));
    req.on('error', reject);
    req.end(opts.body);
  });
}

/** What an app's `/info` route says about the worker that served the request (test/fixtures/systemd/app.ts). */
export interface Info {
  version?: string;
  pid: number;
  uid: number;
  gid: number;
  env: Record<string, string>;
}

/** GET `/info` (over a unix socket with `socketPath`): the serving worker's pid, ids and environment. */
export async function info(url: string, opts: { socketPath?: string } = {}): Promise<Info> {
  const reply = await request(url, { ...opts, path: '/info' });
  assert.equal(reply.status, 200, reply.body);
  return JSON.parse(reply.body) as Info;
}

/** One request on a fresh connection to `/` of an app that answers `ok PID`: the pid that served it. */
export async function hit(url: string): Promise<number> {
  const reply = await request(url);
  assert.equal(reply.status, 200, reply.body);
  const m = /^ok (\d+)$/.exec(reply.body);
  assert.ok(m, `unexpected body ${JSON.stringify(reply.body)}`);
  return Number(m[1]);
}

/** A scratch directory removed when the process exits. */
export function scratchDir(prefix = 'tsgun-test-'): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Run tsgun to completion (for commands expected to exit by themselves). */
export async function runTsgun(
  args: readonly string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<{ code: number | null; stdout: string; stderr: string; pid: number }> {
  const t = new Tsgun(args, opts);
  const timer = setTimeout(() => t.kill(), opts.timeoutMs ?? 30_000);
  const { code } = await t.exited;
  clearTimeout(timer);
  live.delete(t);
  return { code, stdout: t.stdout, stderr: t.stderr, pid: t.pid };
}

/**
 * The master's children that are tsgun workers, known by their process title (or, in
 * their first milliseconds, by the worker entry script). Unlike `workerPids()`, this
 * leaves out any other child the master may have for a moment.
 */
export function workerPidsByTitle(masterPid: number): number[] {
  return childPidsSync(masterPid).filter((pid) => {
    const title = titleOf(pid);
    return title.startsWith('tsgun: worker [') || /[/\\]worker[/\\]main\.js( |$)/.test(title);
  });
}

/** A process's command line with NULs as spaces, or '' once it is gone. */
export function titleOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0+/g, ' ').trim();
  } catch {
    return '';
  }
}

/** Wait until `pid` has exactly `n` workers, unchanged for 300 ms; returns them. */
export async function settle(pid: number, n: number, what: string, ms = 30_000): Promise<number[]> {
  let last: number[] = [];
  let since = Date.now();
  try {
    return await waitFor(
      () => {
        const now = workerPidsByTitle(pid);
        if (now.join() !== last.join()) [last, since] = [now, Date.now()];
        return now.length === n && Date.now() - since >= 300 ? now : null;
      },
      `${what}: ${n} worker(s)`,
      ms,
    );
  } catch (err) {
    throw new Error(
      `${(err as Error).message}; workers now: [${last.join(', ')}], children: [${childPidsSync(pid)
        .map((c) => `${c} ${titleOf(c)}`)
        .join('; ')}]`,
    );
  }
}

/** The log lines from index `after` on whose message matches. */
export function linesSince(t: Tsgun, after: number, re: RegExp): LogLine[] {
  return t.lines.slice(after).filter((l) => re.test(l.msg ?? l.raw));
}

/** Pids of the workers that logged `Booting worker with pid: N`, from line `after` on. */
export function bootedPids(t: Tsgun, after = 0): number[] {
  return linesSince(t, after, /^Booting worker with pid: \d+$/).map((l) => Number(/pid: (\d+)/.exec(l.msg!)![1]));
}

/** A scratch directory holding a copy of a fixture: one file, or a directory's contents. */
export function appDir(fixture: string): string {
  const dir = scratchDir('tsgun-app-');
  cpSync(fixture, statSync(fixture).isDirectory() ? dir : path.join(dir, path.basename(fixture)), { recursive: true });
  return dir;
}

/** A free TCP port on 127.0.0.1: bound to port 0, then released (free when asked, not reserved). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as net.AddressInfo;
      probe.close(() => resolve(port));
    });
  });
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
      if (this.ended)
        throw new Error(`connection closed before the response to ${path} (got ${JSON.stringify(this.buf)})`);
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

/** Pids with their command lines, for failure messages. */
export function describePids(pids: number[]): string {
  return pids
    .map((pid) => {
      try {
        return `${pid} (${readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ').trim()})`;
      } catch {
        return `${pid} (gone)`;
      }
    })
    .join(', ');
}
