/**
 * Integration test helpers: start `bin/tsgun` as a real process, read its log lines,
 * send real HTTP requests. Nothing here mocks a process or a socket.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { waitFor } from './procs.js';

export const ROOT = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
export const BIN = path.join(ROOT, 'bin', 'tsgun');
export const FIXTURES = path.join(ROOT, 'test', 'fixtures');

export interface LogLine {
  level?: string;
  msg?: string;
  pid?: number;
  role?: string;
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

  constructor(args: readonly string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; stdio?: Array<'pipe' | 'ignore' | number> } = {}) {
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
        throw new Error(`tsgun exited (${this.proc.exitCode ?? this.proc.signalCode}) before ${what}\n--- stderr ---\n${this.stderr}`);
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
    return this.until(() => this.lines.slice(after).find((l) => re.test(l.msg ?? l.raw)), `a log line matching ${re}`, ms);
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

/** Direct children of `pid`, from /proc. */
export function childPidsSync(pid: number): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[1]) === pid && fields[0] !== 'Z') out.push(Number(entry));
    } catch {
      // Exited while we looked.
    }
  }
  return out.sort((a, b) => a - b);
}

export async function childPids(pid: number): Promise<number[]> {
  return childPidsSync(pid);
}

/** Is this pid a live (non-zombie) process? */
export function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** One HTTP request on a fresh connection (no keep-alive pooling between calls). */
export function request(url: string, opts: { method?: string; headers?: Record<string, string>; body?: string | Buffer; socketPath?: string; path?: string; timeoutMs?: number } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const target = opts.socketPath ? { socketPath: opts.socketPath, path: opts.path ?? '/' } : (() => {
      const u = new URL(url);
      return { hostname: u.hostname.replace(/^\[|\]$/g, ''), port: u.port, path: opts.path ?? `${u.pathname}${u.search}` };
    })();
    const req = http.request({ ...target, method: opts.method ?? 'GET', headers: opts.headers, agent: false, timeout: opts.timeoutMs ?? 15_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`request to ${url} timed out`)));
    req.on('error', reject);
    req.end(opts.body);
  });
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
export async function runTsgun(args: readonly string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<{ code: number | null; stdout: string; stderr: string; pid: number }> {
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
    return await waitFor(() => {
      const now = workerPidsByTitle(pid);
      if (now.join() !== last.join()) [last, since] = [now, Date.now()];
      return now.length === n && Date.now() - since >= 300 ? now : null;
    }, `${what}: ${n} worker(s)`, ms);
  } catch (err) {
    throw new Error(`${(err as Error).message}; workers now: [${last.join(', ')}], children: [${childPidsSync(pid).map((c) => `${c} ${titleOf(c)}`).join('; ')}]`);
  }
}
