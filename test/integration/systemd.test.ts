/**
 * systemd integration (DESIGN.md, "systemd"), against real peers: the notifications arrive
 * on a real AF_UNIX datagram socket (test/fixtures/systemd/notify_receiver.py, standing in
 * for systemd's NOTIFY_SOCKET) through the real systemd-notify tool; socket activation uses
 * systemd's own systemd-socket-activate; privileges, umask and the environment are checked
 * on the real processes through /proc. Times from the receiver (`wall`, epoch seconds) and
 * from log lines (`time`, epoch ms) read the same clock, CLOCK_REALTIME, on this machine.
 *
 * The app is test/fixtures/systemd/app.ts: `/` answers `VERSION PID`, `/info` answers JSON
 * with what the worker sees (pid, uid, gid, environment).
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import {
  alive,
  appDir,
  BIN,
  bootedPids,
  childPidsSync,
  exitedWithOutput,
  FIXTURES,
  freePort,
  info,
  type LogLine,
  request,
  runTsgun,
  scratchDir,
  sleep,
  Tsgun,
  waitFor,
  workerPidsByTitle,
} from '../helpers.js';

const DIR = path.join(FIXTURES, 'systemd');
const APP_FILE = path.join(DIR, 'app.ts');
const RECEIVER = path.join(DIR, 'notify_receiver.py');
const SOCKET_ACTIVATE = '/usr/bin/systemd-socket-activate';
const APP = 'app:app';
/** The variables systemd sets for a service; tsgun must not pass them on to workers. */
const SYSTEMD_VARS = ['NOTIFY_SOCKET', 'WATCHDOG_USEC', 'WATCHDOG_PID', 'LISTEN_FDS', 'LISTEN_PID', 'LISTEN_FDNAMES'];
/** No inherited systemd variables unless a test sets them. */
const NO_SYSTEMD = {
  NOTIFY_SOCKET: '',
  WATCHDOG_USEC: '',
  WATCHDOG_PID: '',
  LISTEN_FDS: '',
  LISTEN_PID: '',
  LISTEN_FDNAMES: '',
};

const IS_ROOT = process.getuid?.() === 0;
const NEEDS_ROOT = IS_ROOT ? false : 'needs root (run the suite as root to check user/group switching)';
const HAS_NOTIFY = spawnSync('systemd-notify', ['--version'], { stdio: 'ignore' }).status === 0;
const NEEDS_NOTIFY = HAS_NOTIFY ? false : 'needs systemd-notify (the systemd package)';
const NEEDS_ACTIVATE = existsSync(SOCKET_ACTIVATE) ? false : `needs ${SOCKET_ACTIVATE} (the systemd package)`;

// ---- the notification socket -----------------------------------------------------------

interface Notification {
  /** Position in the receiver's list (BARRIER=1 datagrams left out). */
  index: number;
  /** CLOCK_MONOTONIC seconds at receipt. */
  t: number;
  /** Epoch seconds at receipt. */
  wall: number;
  /** The sender's pid as the kernel reported it (what systemd's NotifyAccess= checks). */
  pid: number | null;
  msg: string;
  fields: Record<string, string>;
}

const receivers = new Set<ChildProcess>();

/** notify_receiver.py on a socket address, with what it received so far. */
class Receiver {
  readonly messages: Notification[] = [];
  private readonly proc: ChildProcess;
  private readonly waiters: Array<() => void> = [];
  private output = '';
  private started = false;

  private constructor(readonly address: string) {
    this.proc = spawn('python3', [RECEIVER, address], { stdio: ['ignore', 'pipe', 'pipe'] });
    receivers.add(this.proc);
    let partial = '';
    this.proc.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      partial += chunk;
      const parts = partial.split('\n');
      partial = parts.pop()!;
      for (const raw of parts) {
        const line = JSON.parse(raw) as { ready?: boolean; t: number; wall: number; pid: number | null; msg: string };
        if (line.ready) this.started = true;
        else if (line.msg !== 'BARRIER=1') {
          const fields = Object.fromEntries(
            line.msg
              .split('\n')
              .filter(Boolean)
              .map((f) => [f.slice(0, f.indexOf('=')), f.slice(f.indexOf('=') + 1)]),
          );
          this.messages.push({
            index: this.messages.length,
            t: line.t,
            wall: line.wall,
            pid: line.pid,
            msg: line.msg,
            fields,
          });
        }
      }
      this.wakeAll();
    });
    this.proc.stderr!.setEncoding('utf8').on('data', (chunk: string) => (this.output += chunk));
    this.proc.once('exit', () => this.wakeAll());
  }

  /** Start a receiver and wait until its socket is bound. */
  static async start(address: string): Promise<Receiver> {
    const r = new Receiver(address);
    await r.until(() => r.started, 'the receiver to bind', 0, 15_000);
    return r;
  }

  private wakeAll(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  /** Wait until `check` is true (re-checked on every datagram). */
  private async until(check: () => boolean, what: string, _from: number, ms: number): Promise<void> {
    const deadline = Date.now() + ms;
    while (!check()) {
      if (this.proc.exitCode !== null) throw new Error(`the notify receiver exited before ${what}: ${this.output}`);
      const left = deadline - Date.now();
      if (left <= 0)
        throw new Error(`timed out waiting for ${what}; received: ${JSON.stringify(this.messages.map((m) => m.msg))}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 200));
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** The first notification from index `from` on that has `field` (with `value`, if given). */
  find(field: string, value?: string, from = 0): Notification | undefined {
    return this.messages
      .slice(from)
      .find((m) => m.fields[field] !== undefined && (value === undefined || m.fields[field] === value));
  }

  /** All notifications from index `from` on that have `field`. */
  all(field: string, from = 0): Notification[] {
    return this.messages.slice(from).filter((m) => m.fields[field] !== undefined);
  }

  /** Wait for a notification with `field` (=`value`), from index `from` on. */
  async next(field: string, value?: string, from = 0, ms = 30_000): Promise<Notification> {
    await this.until(
      () => this.find(field, value, from) !== undefined,
      `${field}${value === undefined ? '' : `=${value}`}`,
      from,
      ms,
    );
    return this.find(field, value, from)!;
  }

  stop(): void {
    this.proc.kill('SIGKILL');
    receivers.delete(this.proc);
  }
}

// ---- processes that are not `node bin/tsgun` ------------------------------------------

/**
 * A command that becomes or runs tsgun (systemd-socket-activate execs it in its own pid;
 * unshare forks it as PID 1 of a new namespace), with stderr parsed into log lines as the
 * Tsgun helper does.
 */
class Launched {
  readonly proc: ChildProcess;
  readonly lines: LogLine[] = [];
  stderr = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Exited, with its output read. */
  private finished = false;
  private readonly waiters: Array<() => void> = [];

  constructor(file: string, args: readonly string[], opts: { cwd: string; env?: NodeJS.ProcessEnv }) {
    const env: NodeJS.ProcessEnv = { ...process.env, TSGUN_CMD_ARGS: '', PORT: '', WEB_CONCURRENCY: '', ...opts.env };
    // Unset, not empty: systemd-socket-activate rejects an empty LISTEN_FDS.
    for (const name of SYSTEMD_VARS) delete env[name];
    this.proc = spawn(file, args, { cwd: opts.cwd, env, stdio: ['ignore', 'ignore', 'pipe'] });
    launched.add(this.proc.pid!);
    let partial = '';
    this.proc.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      this.stderr += chunk;
      partial += chunk;
      const parts = partial.split('\n');
      partial = parts.pop()!;
      for (const raw of parts) {
        let parsed: LogLine = { raw };
        try {
          parsed = { ...(JSON.parse(raw) as object), raw };
        } catch {
          // systemd-socket-activate's own lines, Error: lines.
        }
        this.lines.push(parsed);
      }
      for (const w of this.waiters.splice(0)) w();
    });
    this.exited = exitedWithOutput(this.proc);
    void this.exited.then(() => {
      this.finished = true;
      for (const w of this.waiters.splice(0)) w();
    });
  }

  get pid(): number {
    return this.proc.pid!;
  }

  grep(re: RegExp): LogLine[] {
    return this.lines.filter((l) => re.test(l.msg ?? l.raw));
  }

  async waitForLine(re: RegExp, ms = 30_000, after = 0): Promise<LogLine> {
    const deadline = Date.now() + ms;
    for (;;) {
      const found = this.lines.slice(after).find((l) => re.test(l.msg ?? l.raw));
      if (found) return found;
      if (this.finished)
        throw new Error(`${this.proc.spawnfile} exited before a line matching ${re}\n--- stderr ---\n${this.stderr}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for a line matching ${re}\n--- stderr ---\n${this.stderr}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 200));
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** TERM, then SIGKILL the whole tree if it lingers. */
  async stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill('SIGTERM');
    const timer = setTimeout(() => killTree(this.pid), 15_000);
    const result = await this.exited;
    clearTimeout(timer);
    launched.delete(this.pid);
    return result;
  }
}

/**
 * systemd-socket-activate listening on `listen` as the fd named `web`, running `tsgun -w 1` with
 * binds it must ignore; stopped after the test. It passes only the variables named with -E (and
 * LISTEN_*), and execs tsgun in its own pid once a connection is waiting.
 */
function socketActivate(ctx: TestContext, listen: string, ignoredBinds: readonly string[]): Launched {
  const binds = ignoredBinds.flatMap((b) => ['-b', b]);
  const ssa = new Launched(
    SOCKET_ACTIVATE,
    ['-l', listen, '--fdname=web', '-E', 'PATH', BIN, '-w', '1', ...binds, APP],
    {
      cwd: DIR,
    },
  );
  ctx.after(() => ssa.stop());
  return ssa;
}

const launched = new Set<number>();
/** Masters started by USR2: not children of this process, so no helper knows them. */
const successors = new Set<number>();
process.on('exit', () => {
  for (const r of receivers) r.kill('SIGKILL');
  for (const pid of [...launched, ...successors]) killTree(pid);
});

function tryKill(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // Gone already.
  }
}

/** SIGKILL `pid` and every descendant. */
function killTree(pid: number): void {
  for (const child of childPidsSync(pid)) killTree(child);
  tryKill(pid, 'SIGKILL');
}

/** Stop a master that is not our child: TERM, then SIGKILL it and its workers if it lingers. */
async function stopDetached(pid: number): Promise<void> {
  if (alive(pid)) {
    tryKill(pid, 'SIGTERM');
    try {
      await waitFor(() => !alive(pid), `master ${pid} to exit`, 15_000);
    } catch {
      killTree(pid);
    }
  }
  successors.delete(pid);
}

// ---- small helpers ---------------------------------------------------------------------

interface Answer {
  version: string;
  pid: number;
}

/** One request on a fresh connection; it must be a 200 from the app's `/`. */
async function hit(url: string, opts: { socketPath?: string; timeoutMs?: number } = {}): Promise<Answer> {
  const reply = await request(url, opts);
  assert.equal(reply.status, 200, reply.body);
  const m = /^(\S+) (\d+)$/.exec(reply.body);
  assert.ok(m, `unexpected body ${JSON.stringify(reply.body)}`);
  return { version: m[1]!, pid: Number(m[2]) };
}

function setVersion(dir: string, version: string, suffix = ''): void {
  const source = readFileSync(APP_FILE, 'utf8');
  const rewritten = source.replace("const VERSION = 'v1';", `const VERSION = '${version}';`);
  assert.ok(rewritten.includes(`const VERSION = '${version}';`), 'the fixture still declares VERSION');
  writeFileSync(path.join(dir, 'app.ts'), rewritten + suffix);
}

/** Epoch ms of a log line (pino's `time`). */
function timeOf(line: LogLine): number {
  return (line as LogLine & { time: number }).time;
}

/** The environment a process was started with, from /proc/PID/environ. */
function environOf(pid: number): Record<string, string> {
  const entries = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').filter(Boolean);
  return Object.fromEntries(entries.map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)]));
}

/** Does a TCP connect to `port` succeed? */
function connects(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.connect({ host: '127.0.0.1', port });
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
}

function randomName(): string {
  return `${process.pid}-${Math.random().toString(36).slice(2, 10)}`;
}

// ---- the tests -------------------------------------------------------------------------

describe('systemd', { concurrency: 2 }, () => {
  // ---- notify: READY, RELOADING, STOPPING, MAINPID, WATCHDOG ---------------------------

  test(
    'READY=1 is sent once all 3 workers serve: HTTP was answered before it and is never refused after it',
    { skip: NEEDS_NOTIFY },
    async (ctx) => {
      const scratch = scratchDir('tsgun-sd-');
      const rx = await Receiver.start(path.join(scratch, 'notify'));
      // The worker that loads the app last takes 1.5 s longer: a READY sent for the first
      // worker, or for all but one, would come over a second too early.
      const env = {
        ...NO_SYSTEMD,
        NOTIFY_SOCKET: rx.address,
        STAGGER_DIR: scratch,
        STAGGER_SLOW_SLOT: '3',
        STAGGER_MS: '1500',
      };
      const t = new Tsgun(['-w', '3', '-b', '127.0.0.1:0', 'app:staggered()'], { cwd: DIR, env });
      ctx.after(() => t.stop());
      ctx.after(() => rx.stop());
      const [url] = await t.listening(1);
      // Poll from the moment the socket is bound. Connecting to a socket that no worker
      // listens on yet is refused; record when each attempt started and how it ended.
      const attempts: Array<{ start: number; ok: boolean; error?: string }> = [];
      let polling = true;
      const poller = (async () => {
        while (polling) {
          const start = Date.now();
          try {
            const reply = await request(url!, { timeoutMs: 10_000 });
            attempts.push({ start, ok: reply.status === 200 });
          } catch (err) {
            attempts.push({ start, ok: false, error: (err as NodeJS.ErrnoException).code ?? (err as Error).message });
            await sleep(5);
          }
        }
      })();
      const ready = await rx.next('READY', '1');
      await sleep(300);
      polling = false;
      await poller;
      await t.ready(3);
      const readyMs = ready.wall * 1000;

      assert.equal(ready.fields.STATUS, '3 workers, generation 1');
      assert.equal(ready.fields.MAINPID, undefined, 'the first master does not send MAINPID');
      assert.equal(rx.all('READY').length, 1, 'one READY=1');

      // Every worker had reported ready (it logs `Booting worker` right after) before
      // READY=1; the slack covers only the worker's own log write racing the datagram.
      const booted = t.grep(/^Booting worker with pid: /);
      assert.equal(booted.length, 3);
      const times = booted.map(timeOf).sort((a, b) => a - b);
      assert.ok(
        times[2]! - times[0]! >= 1000,
        `the slow worker booted over a second after the first (${times.map((x) => x - times[0]!)})`,
      );
      const SLACK_MS = 250;
      for (const line of booted)
        assert.ok(
          timeOf(line) <= readyMs + SLACK_MS,
          `${line.msg} at ${timeOf(line)}, READY=1 at ${readyMs.toFixed(0)}`,
        );
      const readyLine = t.grep(/^Ready: 3 workers serving$/);
      assert.equal(readyLine.length, 1);
      assert.ok(timeOf(readyLine[0]!) <= readyMs, 'the master logs Ready before it notifies');

      // HTTP: answered well before READY=1 (the fast workers), and never refused after it.
      const firstOk = attempts.find((a) => a.ok);
      assert.ok(firstOk, `some request succeeded: ${JSON.stringify(attempts.slice(-5))}`);
      assert.ok(
        firstOk.start < readyMs,
        `HTTP answered (request started ${firstOk.start}) before READY=1 (${readyMs.toFixed(0)})`,
      );
      const refusedAfter = attempts.filter((a) => !a.ok && a.start >= readyMs);
      assert.deepEqual(refusedAfter, [], 'no request started after READY=1 failed');
      assert.ok(
        attempts.some((a) => a.ok && a.start >= readyMs),
        'requests were made after READY=1',
      );
    },
  );

  test(
    'HUP: RELOADING=1 with MONOTONIC_USEC on CLOCK_MONOTONIC, then READY=1 when only the new code answers; a failed reload also ends in READY=1',
    { skip: NEEDS_NOTIFY },
    async (ctx) => {
      const dir = appDir(APP_FILE);
      const rx = await Receiver.start(path.join(dir, 'notify'));
      const t = new Tsgun(['-w', '2', '-b', '127.0.0.1:0', APP], {
        cwd: dir,
        env: { ...NO_SYSTEMD, NOTIFY_SOCKET: rx.address },
      });
      ctx.after(() => t.stop());
      ctx.after(() => rx.stop());
      const url = await t.ready(2);
      await rx.next('READY', '1');
      const oldPids = bootedPids(t);

      setVersion(dir, 'v2');
      const from = rx.messages.length;
      const mark = t.lines.length;
      t.signal('SIGHUP');
      const reloading = await rx.next('RELOADING', '1', from);
      const ready = await rx.next('READY', '1', reloading.index + 1, 45_000);
      // Straight after READY=1, as `systemctl reload` returns: only new workers answer.
      const answers: Answer[] = [];
      for (let i = 0; i < 20; i++) answers.push(await hit(url));
      await t.waitForLine(/^Reload complete: generation 2 ready/, 30_000, mark);
      const newPids = bootedPids(t, mark);
      assert.equal(newPids.length, 2);
      for (const a of answers) {
        assert.equal(a.version, 'v2', `answered ${a.version} by ${a.pid} after READY=1`);
        assert.ok(
          newPids.includes(a.pid) && !oldPids.includes(a.pid),
          `pid ${a.pid} is a new worker (${newPids}), not an old one (${oldPids})`,
        );
      }

      assert.equal(reloading.fields.STATUS, 'reloading: generation 2');
      assert.equal(ready.fields.STATUS, '2 workers, generation 2');
      assert.deepEqual(
        rx.messages.slice(from, ready.index).filter((m) => m !== reloading && m.fields.WATCHDOG === undefined),
        [],
        'nothing else between RELOADING=1 and READY=1',
      );
      for (const line of t.lines.slice(mark).filter((l) => /^Booting worker/.test(l.msg ?? ''))) {
        assert.ok(reloading.wall * 1000 <= timeOf(line), 'RELOADING=1 comes before the new generation boots');
      }

      // MONOTONIC_USEC is CLOCK_MONOTONIC in microseconds (python's time.monotonic() is the
      // same clock), read just before the message was sent.
      assert.match(reloading.fields.MONOTONIC_USEC ?? '', /^\d+$/);
      const sentAt = Number(reloading.fields.MONOTONIC_USEC) / 1e6;
      assert.ok(sentAt <= reloading.t + 0.001, `MONOTONIC_USEC ${sentAt} s is not after receipt at ${reloading.t} s`);
      assert.ok(reloading.t - sentAt < 3, `MONOTONIC_USEC ${sentAt} s is within 3 s of receipt at ${reloading.t} s`);

      // A reload whose app throws on import: READY=1 still ends the reload (systemd would
      // otherwise wait out its timeout), its STATUS says so, and the v2 workers keep serving.
      setVersion(dir, 'v3', "\nthrow new Error('broken on purpose');\n");
      const from2 = rx.messages.length;
      t.signal('SIGHUP');
      const reloading2 = await rx.next('RELOADING', '1', from2);
      const failed = await rx.next('READY', '1', reloading2.index + 1, 45_000);
      assert.equal(reloading2.fields.STATUS, 'reloading: generation 3');
      assert.equal(failed.fields.STATUS, 'reload failed; 2 workers, generation 2');
      for (let i = 0; i < 6; i++) {
        const a = await hit(url);
        assert.equal(a.version, 'v2');
        assert.ok(newPids.includes(a.pid));
      }
    },
  );

  test(
    'TERM: STOPPING=1 arrives at once, while a request is still in flight, and before the master exits',
    { skip: NEEDS_NOTIFY },
    async (ctx) => {
      const scratch = scratchDir('tsgun-sd-');
      const rx = await Receiver.start(path.join(scratch, 'notify'));
      const t = new Tsgun(['-w', '1', '-b', '127.0.0.1:0', APP], {
        cwd: DIR,
        env: { ...NO_SYSTEMD, NOTIFY_SOCKET: rx.address },
      });
      ctx.after(() => t.stop());
      ctx.after(() => rx.stop());
      const url = await t.ready(1);
      await rx.next('READY', '1');
      const slow = request(url, { path: '/slow?ms=2000' }).then((reply) => ({ reply, at: Date.now() }));
      await sleep(300);
      const termAt = Date.now();
      t.signal('SIGTERM');
      const stopping = await rx.next('STOPPING', '1');
      const { reply, at: repliedAt } = await slow;
      const { code } = await t.exited;
      const exitedAt = Date.now();

      assert.equal(code, 0);
      assert.equal(reply.status, 200, 'the in-flight request finished');
      assert.equal(stopping.fields.STATUS, 'stopping');
      assert.ok(stopping.wall * 1000 >= termAt - 5, 'STOPPING=1 is not sent before TERM');
      assert.ok(
        stopping.wall * 1000 < repliedAt,
        `STOPPING=1 (${(stopping.wall * 1000).toFixed(0)}) arrived while the request was in flight (answered ${repliedAt})`,
      );
      const shutdown = t.grep(/^Shutting down: Master$/);
      assert.equal(shutdown.length, 1);
      assert.ok(stopping.wall * 1000 <= timeOf(shutdown[0]!), 'STOPPING=1 arrived before the master shut down');
      assert.ok(stopping.wall * 1000 <= exitedAt);
      assert.equal(rx.all('STOPPING').length, 1, 'one STOPPING=1');
      assert.deepEqual(rx.all('READY', stopping.index), [], 'no READY=1 after STOPPING=1');
    },
  );

  test(
    'USR2: the new master sends MAINPID=<its pid> with READY=1; TERM to the old one then sends no STOPPING=1',
    { skip: NEEDS_NOTIFY },
    async (ctx) => {
      const scratch = scratchDir('tsgun-sd-');
      const rx = await Receiver.start(path.join(scratch, 'notify'));
      const t = new Tsgun(['-w', '1', '-b', '127.0.0.1:0', APP], {
        cwd: DIR,
        env: { ...NO_SYSTEMD, NOTIFY_SOCKET: rx.address },
      });
      ctx.after(() => t.stop());
      ctx.after(() => rx.stop());
      const url = await t.ready(1);
      const first = await rx.next('READY', '1');
      assert.equal(first.fields.MAINPID, undefined);

      const from = rx.messages.length;
      const mark = t.lines.length;
      t.signal('SIGUSR2');
      const upgrading = await t.waitForLine(/^Upgrading: started a new master \(pid \d+\)/, 10_000, mark);
      const successor = Number(/\(pid (\d+)\)/.exec(upgrading.msg!)![1]);
      successors.add(successor);
      ctx.after(() => stopDetached(successor));

      const handoff = await rx.next('MAINPID', undefined, from);
      assert.equal(handoff.fields.MAINPID, String(successor), 'MAINPID names the new master');
      assert.equal(handoff.fields.READY, '1', 'with READY=1 in the same message');
      assert.equal(handoff.fields.STATUS, '1 workers, generation 1');
      const successorReady = await t.waitForLine(/^Ready: 1 workers serving$/, 30_000, mark);
      assert.equal(successorReady.pid, successor);
      assert.ok(timeOf(successorReady) <= handoff.wall * 1000, "sent once the new master's workers are ready");
      assert.equal(rx.all('READY', from).length, 1, 'one READY=1 for the upgrade');

      // The old master leaves; the service (now the new master) is not stopping.
      const { code } = await t.stop();
      assert.equal(code, 0);
      await sleep(300);
      assert.deepEqual(rx.all('STOPPING', from), [], 'the old master sent no STOPPING=1');
      assert.ok(alive(successor));
      const workers = workerPidsByTitle(successor);
      for (let i = 0; i < 4; i++) assert.ok(workers.includes((await hit(url)).pid), 'the new master serves alone');

      // Stopping the new master is the service stopping.
      const before = rx.messages.length;
      await stopDetached(successor);
      await rx.next('STOPPING', '1', before, 5000);
    },
  );

  test(
    'WATCHDOG_USEC=1000000: WATCHDOG=1 about every 0.5 s, never a full second apart',
    { skip: NEEDS_NOTIFY },
    async (ctx) => {
      const scratch = scratchDir('tsgun-sd-');
      const rx = await Receiver.start(path.join(scratch, 'notify'));
      const t = new Tsgun(['-w', '1', '-b', '127.0.0.1:0', APP], {
        cwd: DIR,
        env: { ...NO_SYSTEMD, NOTIFY_SOCKET: rx.address, WATCHDOG_USEC: '1000000' },
      });
      ctx.after(() => t.stop());
      ctx.after(() => rx.stop());
      await t.waitForLine(/^systemd watchdog: pinging every 0\.50 s$/);
      const start = await rx.next('WATCHDOG', '1');
      const window = 3;
      await waitFor(() => rx.messages.at(-1)!.t >= start.t + window + 0.3, `${window} s of watchdog pings`, 15_000);
      const pings = rx.all('WATCHDOG', start.index).filter((m) => m.t <= start.t + window);
      // 0, 0.5, ... 3.0 s: 7 pings on time; a loaded machine may delay one or two.
      assert.ok(pings.length >= 5 && pings.length <= 8, `${pings.length} WATCHDOG=1 in ${window} s (expected about 7)`);
      const gaps = pings.slice(1).map((p, i) => p.t - pings[i]!.t);
      assert.ok(Math.max(...gaps) < 1, `no gap reaches WATCHDOG_USEC: ${gaps.map((g) => g.toFixed(2))}`);
      for (const p of pings) assert.equal(p.msg, 'WATCHDOG=1');
    },
  );

  test('an abstract NOTIFY_SOCKET (@name) gets READY=1, and STOPPING=1 on INT', { skip: NEEDS_NOTIFY }, async (ctx) => {
    const rx = await Receiver.start(`@tsgun-test-${randomName()}`);
    const t = new Tsgun(['-w', '1', '-b', '127.0.0.1:0', APP], {
      cwd: DIR,
      env: { ...NO_SYSTEMD, NOTIFY_SOCKET: rx.address },
    });
    ctx.after(() => t.stop());
    ctx.after(() => rx.stop());
    const url = await t.ready(1);
    const ready = await rx.next('READY', '1');
    assert.equal(ready.fields.STATUS, '1 workers, generation 1');
    assert.equal((await hit(url)).version, 'v1');
    t.signal('SIGINT');
    await rx.next('STOPPING', '1');
    assert.equal((await t.exited).code, 0);
    assert.deepEqual(t.grep(/systemd-notify|NOTIFY_SOCKET/), [], 'no warning about the notifier');
  });

  test(
    'workers and the app do not see NOTIFY_SOCKET or WATCHDOG_*; a WATCHDOG_PID naming another process gets no pings',
    { skip: NEEDS_NOTIFY },
    async (ctx) => {
      const scratch = scratchDir('tsgun-sd-');
      const rx = await Receiver.start(path.join(scratch, 'notify'));
      // WATCHDOG_PID=1: systemd's watchdog is meant for some other process, not tsgun.
      const env = { ...NO_SYSTEMD, NOTIFY_SOCKET: rx.address, WATCHDOG_USEC: '400000', WATCHDOG_PID: '1' };
      const t = new Tsgun(['-w', '2', '-b', '127.0.0.1:0', APP], { cwd: DIR, env });
      ctx.after(() => t.stop());
      ctx.after(() => rx.stop());
      const url = await t.ready(2);
      await rx.next('READY', '1');
      const seen = await info(url);
      assert.deepEqual(
        [seen.env.NOTIFY_SOCKET, seen.env.WATCHDOG_USEC, seen.env.WATCHDOG_PID],
        ['none', 'none', 'none'],
      );
      const workers = workerPidsByTitle(t.pid);
      assert.equal(workers.length, 2);
      for (const pid of workers) {
        const environ = environOf(pid);
        for (const name of SYSTEMD_VARS)
          assert.equal(environ[name], undefined, `worker ${pid} was started without ${name}`);
      }
      await sleep(1000);
      assert.deepEqual(rx.all('WATCHDOG'), [], 'no WATCHDOG=1 for a watchdog meant for pid 1');
      assert.deepEqual(t.grep(/^systemd watchdog/), []);
    },
  );

  test('NOTIFY_SOCKET set but no systemd-notify on PATH: one warning, and tsgun serves and stops as usual', async (ctx) => {
    const scratch = scratchDir('tsgun-sd-');
    const rx = await Receiver.start(path.join(scratch, 'notify'));
    // An empty directory as PATH: workers start from process.execPath, so only the notifier misses it.
    const t = new Tsgun(['-w', '1', '-b', '127.0.0.1:0', APP], {
      cwd: DIR,
      env: { ...NO_SYSTEMD, NOTIFY_SOCKET: rx.address, PATH: scratch },
    });
    ctx.after(() => t.stop());
    ctx.after(() => rx.stop());
    const url = await t.ready(1);
    await t.waitForLine(/^Ready: 1 workers serving$/);
    assert.equal((await hit(url)).version, 'v1');
    const { code } = await t.stop();
    assert.equal(code, 0);
    const warnings = t.grep(/systemd-notify/);
    assert.equal(warnings.length, 1, 'warned once, not for every message');
    assert.match(warnings[0]!.msg!, /^NOTIFY_SOCKET is set but systemd-notify cannot run \(ENOENT\)/);
    assert.deepEqual(rx.messages, []);
  });

  // ---- socket activation -----------------------------------------------------------------

  test(
    'systemd-socket-activate on TCP with --fdname=web: bind is ignored, and USR2 hands the socket on in LISTEN_FDS form',
    { skip: NEEDS_ACTIVATE },
    async (ctx) => {
      const scratch = scratchDir('tsgun-sd-');
      const port = await freePort();
      const ignoredPort = await freePort();
      const ignoredSock = path.join(scratch, 'ignored.sock');
      const url = `http://127.0.0.1:${port}`;
      const ssa = socketActivate(ctx, `127.0.0.1:${port}`, [`127.0.0.1:${ignoredPort}`, `unix:${ignoredSock}`]);
      await ssa.waitForLine(new RegExp(`^Listening on 127\\.0\\.0\\.1:${port} as 3\\.$`));
      assert.deepEqual(ssa.grep(/^Execing /), [], 'nothing is started before a connection');
      // This first request is what makes systemd-socket-activate start tsgun; it waits in
      // the socket's queue until a worker accepts it.
      const first = await hit(url, { timeoutMs: 30_000 });
      const master = ssa.pid;
      assert.equal(first.version, 'v1');
      assert.ok(workerPidsByTitle(master).includes(first.pid), "answered by a worker of the exec'd tsgun");

      const using = ssa.grep(/^Using \d+ socket\(s\) passed by systemd; bind is ignored$/);
      assert.equal(using.length, 1);
      assert.equal(using[0]!.msg, 'Using 1 socket(s) passed by systemd; bind is ignored');
      assert.equal(using[0]!.pid, master, "tsgun runs in systemd-socket-activate's pid");
      assert.deepEqual(
        ssa.grep(/^Listening at: /).map((l) => l.msg),
        [`Listening at: ${url} (${master})`],
      );
      assert.equal(await connects(ignoredPort), false, 'the --bind TCP address is not bound');
      assert.equal(existsSync(ignoredSock), false, 'the --bind unix socket is not created');
      for (const pid of workerPidsByTitle(master)) {
        const environ = environOf(pid);
        for (const name of SYSTEMD_VARS)
          assert.equal(environ[name], undefined, `worker ${pid} was started without ${name}`);
      }
      await ssa.waitForLine(/^Ready: 1 workers serving$/);

      // USR2: the new master gets the socket as systemd would pass it, LISTEN_PID its own pid.
      const mark = ssa.lines.length;
      ssa.proc.kill('SIGUSR2');
      const upgrading = await ssa.waitForLine(/^Upgrading: started a new master \(pid \d+\)/, 10_000, mark);
      const successor = Number(/\(pid (\d+)\)/.exec(upgrading.msg!)![1]);
      successors.add(successor);
      ctx.after(() => stopDetached(successor));
      const since = (): LogLine[] => ssa.lines.slice(mark).filter((l) => l.pid === successor);
      await ssa.waitForLine(/^Ready: 1 workers serving$/, 30_000, mark);
      // Read once it runs tsgun: a shell sets LISTEN_PID to its own pid, then execs it.
      const environ = environOf(successor);
      assert.deepEqual(
        [environ.LISTEN_PID, environ.LISTEN_FDS, environ.LISTEN_FDNAMES],
        [String(successor), '1', 'web'],
      );
      assert.ok(since().some((l) => l.msg === 'Using 1 socket(s) passed by systemd; bind is ignored'));
      assert.deepEqual(
        since()
          .filter((l) => /^Listening at: /.test(l.msg ?? ''))
          .map((l) => l.msg),
        [`Listening at: ${url} (${successor})`],
      );

      // TERM to the old master: the new one serves alone on the same port.
      assert.equal((await ssa.stop()).code, 0);
      const workers = workerPidsByTitle(successor);
      assert.equal(workers.length, 1);
      for (let i = 0; i < 6; i++) assert.ok(workers.includes((await hit(url)).pid), "the new master's workers answer");
      assert.equal(existsSync(ignoredSock), false);
    },
  );

  test(
    'systemd-socket-activate, then HUP: the new generation still serves the passed socket, and bind is still ignored',
    { skip: NEEDS_ACTIVATE },
    async (ctx) => {
      const port = await freePort();
      const ignoredPort = await freePort();
      const url = `http://127.0.0.1:${port}`;
      const ssa = socketActivate(ctx, `127.0.0.1:${port}`, [`127.0.0.1:${ignoredPort}`]);
      await ssa.waitForLine(/^Listening on .* as 3\.$/);
      await hit(url, { timeoutMs: 30_000 });
      await ssa.waitForLine(/^Ready: 1 workers serving$/);
      const mark = ssa.lines.length;
      ssa.proc.kill('SIGHUP');
      await ssa.waitForLine(/^Reload complete: generation 2 ready/, 30_000, mark);
      assert.deepEqual(
        ssa.lines
          .slice(mark)
          .filter((l) => /^Listening at: /.test(l.msg ?? ''))
          .map((l) => l.msg),
        [],
        'a reload binds nothing new',
      );
      assert.equal(
        await connects(ignoredPort),
        false,
        `the --bind address 127.0.0.1:${ignoredPort} is still not bound after HUP`,
      );
      // "Reload complete" comes once the old worker is told to drain; wait for it to be gone.
      await waitFor(() => workerPidsByTitle(ssa.pid).length === 1, 'the old worker to leave', 15_000);
      const [worker] = workerPidsByTitle(ssa.pid);
      assert.equal(
        (await hit(url, { timeoutMs: 5000 })).pid,
        worker,
        'the new generation answers on the systemd socket',
      );
    },
  );

  test(
    'systemd-socket-activate on a unix socket: served there, and the socket file is left in place at exit',
    { skip: NEEDS_ACTIVATE },
    async (ctx) => {
      const scratch = scratchDir('tsgun-sd-');
      const sock = path.join(scratch, 'web.sock');
      const ssa = socketActivate(ctx, sock, [`unix:${path.join(scratch, 'ignored.sock')}`]);
      await ssa.waitForLine(/^Listening on .* as 3\.$/);
      assert.ok(statSync(sock).isSocket());
      const first = await hit('http://localhost/', { socketPath: sock, timeoutMs: 30_000 });
      assert.ok(workerPidsByTitle(ssa.pid).includes(first.pid));
      assert.deepEqual(
        ssa.grep(/^Listening at: /).map((l) => l.msg),
        [`Listening at: unix:${sock} (${ssa.pid})`],
      );
      assert.equal(ssa.grep(/^Using 1 socket\(s\) passed by systemd; bind is ignored$/).length, 1);
      assert.equal(existsSync(path.join(scratch, 'ignored.sock')), false);
      assert.equal((await ssa.stop()).code, 0);
      assert.equal(ssa.grep(/^Shutting down: Master$/).length, 1);
      assert.ok(
        existsSync(sock) && statSync(sock).isSocket(),
        "the socket file is systemd's: tsgun does not remove it",
      );
    },
  );

  // ---- privileges, umask, environment -------------------------------------------------------

  // ---- containers --------------------------------------------------------------------------

  test('an unwritable TMPDIR (a read-only root filesystem) with no -p or --control-socket is one Error: line, not a crash report', async () => {
    const scratch = scratchDir('tsgun-sd-');
    // A regular file as TMPDIR: nothing can be created under it, for root too.
    const notADir = path.join(scratch, 'not-a-dir');
    writeFileSync(notADir, '');
    const sock = path.join(scratch, 'web.sock');
    const r = await runTsgun(['-w', '1', '-b', `unix:${sock}`, APP], {
      cwd: DIR,
      env: { ...NO_SYSTEMD, TMPDIR: notADir, XDG_RUNTIME_DIR: '' },
    });
    assert.notEqual(r.code, 0);
    const errors = r.stderr.split('\n').filter((l) => l.startsWith('Error:'));
    assert.equal(errors.length, 1, r.stderr);
    assert.doesNotMatch(r.stderr, /please report|^\s+at /m, 'a user-caused error, not a crash report with a stack');
    assert.equal(existsSync(sock), false, 'no socket file left behind');
  });

  test(
    'as PID 1 of a new pid namespace, tsgun warns that it will not reap orphans, serves, and stops on TERM',
    { skip: NEEDS_ROOT },
    async (ctx) => {
      if (spawnSync('unshare', ['--pid', '--fork', '--mount-proc', 'true'], { stdio: 'ignore' }).status !== 0) {
        ctx.skip('unshare --pid cannot run here');
        return;
      }
      const u = new Launched(
        'unshare',
        ['--pid', '--fork', '--mount-proc', process.execPath, BIN, '-w', '1', '-b', '127.0.0.1:0', APP],
        { cwd: DIR },
      );
      ctx.after(() => u.stop());
      const warning = await u.waitForLine(/^tsgun is PID 1: /);
      assert.equal(warning.pid, 1);
      assert.match(warning.msg!, /docker run --init|tini/);
      const listening = await u.waitForLine(/^Listening at: /);
      const url = /^Listening at: (\S+)/.exec(listening.msg!)![1]!;
      await u.waitForLine(/^Booting worker with pid: /);
      assert.equal((await hit(url)).version, 'v1');
      const [tsgun] = childPidsSync(u.pid);
      assert.ok(tsgun, 'unshare runs tsgun as its child');
      process.kill(tsgun, 'SIGTERM');
      const { code } = await u.exited;
      assert.equal(code, 0, 'tsgun as PID 1 handles TERM itself and exits 0');
      assert.equal(u.grep(/^Shutting down: Master$/).length, 1);
    },
  );
});
