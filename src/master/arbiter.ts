/**
 * The arbiter: owns the sockets and the pool of workers. Signal handlers and child events
 * only enqueue; one loop (`tick`) dispatches signals, reaps exited workers, kills stuck
 * ones and tops up the pool.
 */
import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { ResolvedConfig } from '../config/resolve.js';
import type { Settings } from '../config/settings.js';
import { describeError, TsgunError } from '../errors.js';
import { WORKER_HOOKS, type HookName, type Hooks, type ServerInfo, type WorkerInfo, type WorkerState } from '../hooks.js';
import { BOOT_ENV, isWorkerMessage, WorkerExit, type WorkerBoot, type WorkerMessage } from '../ipc.js';
import type { LogTarget } from '../log.js';
import { Pidfile } from './pidfile.js';
import { bindAll, closeAll, type BoundSocket } from './sockets.js';
import { realProcessOps, type ProcessOps } from './process-ops.js';

const WORKER_ENTRY = fileURLToPath(new URL('../worker/main.js', import.meta.url));

/** Signals the master obeys. */
const SIGNALS = ['SIGTERM', 'SIGINT', 'SIGQUIT', 'SIGHUP', 'SIGTTIN', 'SIGTTOU', 'SIGUSR1', 'SIGUSR2', 'SIGWINCH'] as const;
type MasterSignal = (typeof SIGNALS)[number];

/** How long a quick stop waits for workers before killing them. */
const QUICK_STOP_MS = 2000;
/** Restart backoff after a worker dies young: doubles from the first step up to the cap. */
const BACKOFF_FIRST_MS = 100;
const BACKOFF_CAP_MS = 30_000;
/** A worker that lived this long was not crash-looping. */
const HEALTHY_AFTER_MS = 10_000;

interface Worker {
  id: number;
  pid: number;
  generation: number;
  state: WorkerState;
  child: ChildProcess;
  spawnedAt: number;
  lastBeat: number;
  requests: number;
  connections: number;
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  /** Why it is being stopped, when the master asked it to stop. */
  stopReason: string | null;
  bootError: Extract<WorkerMessage, { t: 'boot-error' }> | null;
  killTimer: NodeJS.Timeout | null;
}

export interface ArbiterOptions {
  resolved: ResolvedConfig;
  app: string;
  logs: LogTarget;
  version: string;
  ops?: ProcessOps;
}

type StopMode = 'graceful' | 'quick';

export class Arbiter {
  private readonly settings: Settings;
  private readonly log;
  private readonly ops: ProcessOps;
  private readonly workers = new Map<number, Worker>();
  private readonly signalQueue: MasterSignal[] = [];
  private readonly exited: Array<{ worker: Worker; code: number | null; signal: NodeJS.Signals | null }> = [];
  private sockets: BoundSocket[] = [];
  private pidfile: Pidfile | null = null;
  private generation = 1;
  private numWorkers: number;
  private lastId = 0;
  private everReady = false;
  private stopping: StopMode | null = null;
  private failure: TsgunError | null = null;
  private crashes = 0;
  private spawnNotBefore = 0;
  private scheduled = false;
  private ticking = false;
  private again = false;
  private housekeeping: NodeJS.Timeout | null = null;
  private finished!: (code: number) => void;
  private failed!: (err: unknown) => void;

  /** The view master-side hooks get. */
  private readonly server: ServerInfo;

  constructor(private readonly opts: ArbiterOptions) {
    this.settings = opts.resolved.settings;
    this.log = opts.logs.logger;
    this.ops = opts.ops ?? realProcessOps;
    this.numWorkers = this.settings.workers;
    const arbiter = this;
    this.server = {
      pid: process.pid,
      app: opts.app,
      settings: this.settings,
      log: this.log,
      get generation() {
        return arbiter.generation;
      },
      workers: () => [...this.workers.values()].map((w) => this.info(w)),
    };
  }

  private get procName(): string {
    return this.settings.proc_name ?? this.opts.app;
  }


  private info(w: Worker): WorkerInfo {
    return { id: w.id, pid: w.pid, generation: w.generation, state: w.state, spawnedAt: w.spawnedAt, exitCode: w.exitCode, signal: w.signal };
  }

  private async hook<K extends HookName>(name: K, ...args: Parameters<Hooks[K]>): Promise<void> {
    const fn = this.settings[name] as ((...a: Parameters<Hooks[K]>) => unknown) | null;
    if (!fn) return;
    try {
      await fn(...args);
    } catch (err) {
      this.log.error({ err }, `${name} hook failed: ${describeError(err)}`);
    }
  }

  /** Start, serve until stopped, and resolve with the exit status. */
  async run(): Promise<number> {
    const done = new Promise<number>((resolve, reject) => {
      this.finished = resolve;
      this.failed = reject;
    });
    process.title = `tsgun: master [${this.procName}]`;
    this.log.info(`Starting tsgun ${this.opts.version}`);
    await this.hook('on_starting', this.server);
    try {
      if (this.settings.pidfile) {
        this.pidfile = new Pidfile(this.settings.pidfile);
        this.pidfile.create();
      }
      this.sockets = await bindAll(this.settings.bind, { log: this.log });
    } catch (err) {
      this.pidfile?.unlink();
      throw err;
    }
    for (const s of this.sockets) this.log.info(`Listening at: ${s.label} (${process.pid})`);
    this.log.info(`Using worker: ${this.settings.worker_class}`);
    for (const sig of SIGNALS) process.on(sig, this.onSignal);
    await this.hook('when_ready', this.server);
    await this.hook('nworkers_changed', this.server, this.numWorkers, null);
    this.housekeeping = setInterval(() => this.wake(), 500);
    this.wake();
    return done;
  }

  // Signal handler: only queue the signal and wake the loop.
  private readonly onSignal = (sig: NodeJS.Signals): void => {
    this.signalQueue.push(sig as MasterSignal);
    this.wake();
  };

  private wake(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      void this.tick();
    });
  }

  private async tick(): Promise<void> {
    if (this.ticking) {
      this.again = true;
      return;
    }
    this.ticking = true;
    try {
      do {
        this.again = false;
        while (this.signalQueue.length > 0) await this.dispatch(this.signalQueue.shift()!);
        await this.reap();
        if (!this.stopping) {
          this.murderStuck();
          await this.manageWorkers();
        }
      } while (this.again);
      if (this.stopping && this.workers.size === 0) await this.finish();
    } catch (err) {
      this.log.error({ err }, `master loop failed: ${describeError(err)}`);
      this.failure ??= new TsgunError('TSGUN_ERR_RUNTIME', `the master failed: ${describeError(err)}`, { cause: err });
      this.stop('quick');
    } finally {
      this.ticking = false;
    }
  }

  private async dispatch(sig: MasterSignal): Promise<void> {
    this.log.info(`Handling signal: ${sig.slice(3).toLowerCase()}`);
    switch (sig) {
      case 'SIGTERM':
        this.stop('graceful');
        break;
      case 'SIGINT':
      case 'SIGQUIT':
        this.stop('quick');
        break;
      case 'SIGUSR1':
        this.opts.logs.reopen();
        for (const w of this.workers.values()) this.ops.kill(w.pid, 'SIGUSR1');
        break;
      default:
        this.log.warn(`Ignoring ${sig}: not supported yet`);
    }
  }

  // ---- workers -------------------------------------------------------------------------

  private liveWorkers(): Worker[] {
    return [...this.workers.values()].filter((w) => w.state === 'booting' || w.state === 'ready');
  }

  private async manageWorkers(): Promise<void> {
    const live = this.liveWorkers().filter((w) => w.generation === this.generation);
    let missing = this.numWorkers - live.length;
    while (missing-- > 0 && !this.stopping) {
      const wait = this.spawnNotBefore - Date.now();
      if (wait > 0) {
        setTimeout(() => this.wake(), wait).unref();
        return;
      }
      await this.spawnWorker();
    }
  }

  private bootRecord(id: number): WorkerBoot {
    const settings = Object.fromEntries(Object.entries(this.settings).map(([k, v]) => [k, typeof v === 'function' ? null : v])) as Settings;
    const hooks = WORKER_HOOKS.filter((h) => typeof this.settings[h] === 'function');
    return {
      id,
      generation: this.generation,
      masterPid: process.pid,
      app: this.opts.app,
      settings,
      configFile: this.opts.resolved.configFile,
      hooks,
      sockets: this.sockets.map((s, i) => ({ fd: 3 + i, label: s.label })),
    };
  }

  private async spawnWorker(): Promise<void> {
    const id = ++this.lastId;
    const pending: WorkerInfo = { id, pid: 0, generation: this.generation, state: 'booting', spawnedAt: Date.now(), exitCode: null, signal: null };
    await this.hook('pre_fork', this.server, pending);
    const child = this.ops.spawn(process.execPath, [...process.execArgv, WORKER_ENTRY], {
      stdio: ['ignore', 'inherit', 'inherit', ...this.sockets.map((s) => s.fd), 'ipc'],
      env: { ...process.env, [BOOT_ENV]: JSON.stringify(this.bootRecord(id)) },
    });
    const now = Date.now();
    const w: Worker = {
      id,
      pid: child.pid ?? 0,
      generation: this.generation,
      state: 'booting',
      child,
      spawnedAt: now,
      lastBeat: now,
      requests: 0,
      connections: 0,
      exitCode: null,
      signal: null,
      stopReason: null,
      bootError: null,
      killTimer: null,
    };
    if (!child.pid) {
      // spawn failed (EAGAIN, ENOMEM); the 'error' event says why and 'exit' may never come.
      child.once('error', (err) => this.log.error({ err }, `cannot spawn a worker: ${err.message}`));
      this.crashes++;
      this.spawnNotBefore = Date.now() + this.backoffMs();
      return;
    }
    this.workers.set(w.pid, w);
    child.on('message', (m: unknown) => this.onMessage(w, m));
    child.once('exit', (code, signal) => {
      this.exited.push({ worker: w, code, signal });
      this.wake();
    });
    child.on('error', (err) => this.log.debug({ err }, `worker ${w.pid} channel error`));
  }

  private onMessage(w: Worker, m: unknown): void {
    if (!isWorkerMessage(m)) return;
    switch (m.t) {
      case 'ready':
        if (w.state !== 'booting') return;
        w.state = 'ready';
        w.lastBeat = Date.now();
        if (!this.everReady) this.everReady = true;
        this.wake();
        break;
      case 'beat':
        w.lastBeat = Date.now();
        w.requests = m.requests;
        w.connections = m.connections;
        break;
      case 'boot-error':
        w.bootError = m;
        break;
    }
  }

  private backoffMs(): number {
    return Math.min(BACKOFF_CAP_MS, BACKOFF_FIRST_MS * 2 ** Math.max(0, this.crashes - 1));
  }

  private async reap(): Promise<void> {
    while (this.exited.length > 0) {
      const { worker: w, code, signal } = this.exited.shift()!;
      if (w.killTimer) clearTimeout(w.killTimer);
      w.state = 'exited';
      w.exitCode = code;
      w.signal = signal;
      this.workers.delete(w.pid);
      const how = signal ? `was sent ${signal}` : `exited with code ${code}`;
      const expected = w.stopReason !== null || this.stopping !== null;
      if (expected) this.log.info(`Worker (pid:${w.pid}) ${how}`);
      else this.log.error(`Worker (pid:${w.pid}) ${how}${w.bootError ? `: ${w.bootError.message}` : ''}`);
      await this.hook('child_exit', this.server, this.info(w));
      await this.hook('worker_exit', this.server, this.info(w));

      const bootFailure = code === WorkerExit.APP_LOAD_ERROR || code === WorkerExit.BOOT_ERROR;
      if (!expected && bootFailure && !this.everReady) {
        // Gunicorn's rule: a worker that cannot boot at first start halts the master, once.
        const kind = code === WorkerExit.APP_LOAD_ERROR ? 'TSGUN_ERR_APP_LOAD' : 'TSGUN_ERR_WORKER_BOOT';
        this.failure ??= new TsgunError(kind, w.bootError?.message ?? `worker ${w.pid} failed to boot (exit code ${code})`);
        this.stop('quick');
        continue;
      }
      if (!expected) {
        const young = Date.now() - w.spawnedAt < HEALTHY_AFTER_MS;
        this.crashes = young ? this.crashes + 1 : 0;
        if (this.crashes > 0) {
          const delay = this.backoffMs();
          this.spawnNotBefore = Date.now() + delay;
          if (this.crashes > 1) this.log.warn(`Worker crashed ${this.crashes} times in a row; next start in ${delay / 1000} s`);
        }
      }
    }
  }

  /** Kill workers that have missed their heartbeat for `timeout` seconds. */
  private murderStuck(): void {
    if (this.settings.timeout <= 0) return;
    const limit = this.settings.timeout * 1000;
    const now = Date.now();
    for (const w of this.workers.values()) {
      if (w.state === 'exited' || w.state === 'draining' || now - w.lastBeat <= limit) continue;
      this.log.error(`WORKER TIMEOUT (pid:${w.pid})`);
      w.stopReason = 'timeout';
      w.state = 'draining';
      this.ops.kill(w.pid, 'SIGKILL');
    }
  }

  /** Ask a worker to stop; kill it if it is still there after `afterMs`. */
  private retire(w: Worker, reason: string, graceful: boolean, afterMs: number): void {
    if (w.state === 'exited') return;
    w.stopReason ??= reason;
    w.state = 'draining';
    this.ops.kill(w.pid, graceful ? 'SIGTERM' : 'SIGQUIT');
    w.killTimer ??= setTimeout(() => {
      if (w.state === 'exited') return;
      this.log.warn(`Worker (pid:${w.pid}) did not stop within ${afterMs / 1000} s; killing it`);
      this.ops.kill(w.pid, 'SIGKILL');
    }, afterMs);
  }

  // ---- stopping ------------------------------------------------------------------------

  private stop(mode: StopMode): void {
    if (this.stopping === 'quick' || this.stopping === mode) return;
    this.stopping = mode;
    const graceful = mode === 'graceful';
    if (this.housekeeping) clearInterval(this.housekeeping);
    for (const w of this.workers.values()) {
      if (!graceful && w.killTimer) {
        clearTimeout(w.killTimer);
        w.killTimer = null;
      }
      this.retire(w, 'shutdown', graceful, graceful ? this.settings.graceful_timeout * 1000 : QUICK_STOP_MS);
    }
    this.wake();
  }

  private async finish(): Promise<void> {
    for (const sig of SIGNALS) process.off(sig, this.onSignal);
    if (this.housekeeping) clearInterval(this.housekeeping);
    closeAll(this.sockets);
    this.pidfile?.unlink();
    this.log.info('Shutting down: Master');
    await this.hook('on_exit', this.server);
    if (this.failure) this.failed(this.failure);
    else this.finished(0);
  }
}
