/**
 * The arbiter: owns the sockets and the pool of workers. Signal handlers and child events
 * only enqueue; one loop (`tick`) dispatches signals, reaps exited workers, kills stuck
 * ones and brings the pool to its target. It orchestrates; the decisions are made in the
 * modules beside it (docs/master.md): pool.ts (what to start and retire), liveness.ts,
 * balance.ts, stats.ts, boot.ts, reexec.ts (USR2).
 *
 * Every replacement (reload, TTOU, max-requests) goes through one mechanism: the worker is
 * marked outgoing, a replacement is spawned, and an outgoing worker is retired (drained)
 * only while the ready workers of the current generation cover the target without it.
 */
import type { ChildProcess } from 'node:child_process';
import type { Socket } from 'node:net';
import { closeSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { resolveModule, parseAppSpec } from '../config/appspec.js';
import type { ResolvedConfig } from '../config/resolve.js';
import type { Settings } from '../config/settings.js';
import { describeError, isTsgunError, TsgunError } from '../errors.js';
import type { HookName, Hooks, ServerInfo, WorkerInfo, WorkerState } from '../hooks.js';
import type { TlsMaterial } from '../worker/tls.js';
import watchdogPipe from '../worker/watchdog-pipe.cjs';
import {
  BOOT_ENV,
  isWorkerMessage,
  WorkerExit,
  workerStdio,
  type MasterMessage,
  type Privileges,
  type WorkerMessage,
  type WorkerStats,
} from '../ipc.js';
import { createLogger, type LogTarget } from '../log.js';
import { BALANCE_GATHER_MS, shedOrders } from './balance.js';
import { bootRecord, workerEnv, workerOutput } from './boot.js';
import { warmsCompileCache } from './compile-cache.js';
import { ControlServer, controlSocketPath, type ControlTarget } from './control.js';
import { guardProcess, RateLimitedWarning } from './guard.js';
import type { MetricsServer } from './metrics.js';
import { late, stuck } from './liveness.js';
import { Pidfile } from './pidfile.js';
import { sampleUsage } from './usage.js';
import { Reloader } from './reloader.js';
import {
  afterExit,
  defaultBatch,
  goalGeneration,
  HEALTHY_AFTER_MS,
  plan,
  type GenerationStatus,
  type PoolPlan,
  type RecycleReason,
  type SlotBackoff,
  type StopReason,
} from './pool.js';
import { realProcessOps, type ProcessOps } from './process-ops.js';
import { parentPid, PARENT_ENV, Reexec } from './reexec.js';
import {
  adoptActivated,
  bindAll,
  closeAll,
  inheritedSockets,
  INHERITED_ENV,
  REUSE_PORT_SUPPORTED,
  type BoundSocket,
} from './sockets.js';
import { emptyStats, foldStats, restartReason } from './stats.js';
import { activatedSockets, monotonicUsec, Notifier } from './systemd.js';
import type { ArbiterSnapshot, CommandResult, RestartReason } from './snapshot.js';

const WORKER_ENTRY = fileURLToPath(new URL('../worker/main.js', import.meta.url));

/** Signals the master obeys. */
const SIGNALS = [
  'SIGTERM',
  'SIGINT',
  'SIGQUIT',
  'SIGHUP',
  'SIGTTIN',
  'SIGTTOU',
  'SIGUSR1',
  'SIGUSR2',
  'SIGWINCH',
] as const;
type MasterSignal = (typeof SIGNALS)[number];

/** How long a quick stop waits for workers before killing them. */
const QUICK_STOP_MS = 2000;
/** How long after graceful_timeout a draining worker, which closes its last connections then, is given to exit. */
const KILL_GRACE_MS = 2000;

interface Worker {
  id: number;
  pid: number;
  generation: number;
  /** Its place in the pool, which holds its crash backoff (see pool.ts). */
  slot: number;
  state: WorkerState;
  child: ChildProcess;
  spawnedAt: number;
  readyAt: number | null;
  lastBeat: number;
  stats: WorkerStats;
  /** From the last usage sample. */
  cpu: number;
  rss: number;
  /** The watchdog pipe (see worker/watchdog-thread.cts). */
  watchdog: Socket | null;
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  /** Set when the worker is to be replaced (it keeps serving until its replacement is ready). */
  outgoing: RecycleReason | null;
  /** Why it is being stopped, once the master asked it to stop. */
  stopReason: StopReason | null;
  bootError: Extract<WorkerMessage, { t: 'boot-error' }> | null;
  killTimer: NodeJS.Timeout | null;
  /** When it was last asked to shed connections (balance_connections), and its request count then. */
  shedAt: number;
  shedAtRequests: number;
  shedCount: number;
}

/** What a generation's workers are started with: kept to top the pool up from it if a newer one fails. */
interface GenerationConfig {
  settings: Settings;
  configFile: string | null;
  privileges: Privileges | null;
  tls: TlsMaterial | null;
  env: NodeJS.ProcessEnv;
  sockets: BoundSocket[];
}

/** A reload in progress: towards the newest generation, since the first of the reloads it superseded. */
interface Reload {
  generation: number;
  startedAt: number;
}

export interface ArbiterOptions {
  resolved: ResolvedConfig;
  app: string;
  logs: LogTarget;
  version: string;
  /** Re-read the config (HUP): same command line, same environment, config file as it is now. */
  reresolve: () => Promise<ResolvedConfig>;
  /** The command line and directory tsgun was started with, for a USR2 upgrade; null where there is none (run()). */
  argv: readonly string[] | null;
  cwd: string;
  ops?: ProcessOps;
  /** Called once, when the first generation is ready (when READY=1 goes to systemd). */
  onReady?: () => void;
}

type StopMode = 'graceful' | 'quick';

export class Arbiter implements ControlTarget {
  private settings: Settings;
  private configFile: string | null;
  private privileges: Privileges | null;
  private tls: TlsMaterial | null;
  private env: NodeJS.ProcessEnv;
  private logs: LogTarget;
  private readonly ops: ProcessOps;
  private readonly workers = new Map<number, Worker>();
  private readonly signalQueue: MasterSignal[] = [];
  private readonly exited: Array<{ worker: Worker; code: number | null; signal: NodeJS.Signals | null }> = [];
  private sockets: BoundSocket[] = [];
  private retiredSockets: BoundSocket[] = [];
  private pidfile: Pidfile | null = null;
  private control: ControlServer | null = null;
  private metrics: MetricsServer | null = null;
  private reloader: Reloader | null = null;
  private balanceTimer: NodeJS.Timeout | null = null;
  private notifier: Notifier | null = null;
  private watchdogUsec: number | null = null;
  private readyNotified = false;
  /** The generation new workers get: the newest, or the newest that booted if the newest failed. */
  private generation = 1;
  /** The newest generation requested. */
  private newest = 1;
  private readonly generations = new Map<number, GenerationStatus>();
  private readonly configs = new Map<number, GenerationConfig>();
  private slots: ReadonlyMap<number, SlotBackoff> = new Map();
  private pool: PoolPlan | null = null;
  /** Target number of workers: `workers`, changed by TTIN/TTOU/WINCH. */
  private numWorkers: number;
  private lastId = 0;
  private everReady = false;
  private reload: Reload | null = null;
  private reloadQueued = false;
  private readonly reexec: Reexec;
  private stopping: StopMode | null = null;
  private failure: TsgunError | null = null;
  private scheduled = false;
  private ticking = false;
  private again = false;
  private housekeeping: NodeJS.Timeout | null = null;
  private sampler: NodeJS.Timeout | null = null;
  private readonly sampleWarning = new RateLimitedWarning(() => this.log);
  private unguard: (() => void) | null = null;
  private readonly startedAt = Date.now();
  private readonly retired: WorkerStats = emptyStats();
  /** Keys of the workers' notices already logged: each is logged once. */
  private readonly noticed = new Set<string>();
  private readonly restarts: Partial<Record<RestartReason, number>> = {};
  /** Callers waiting for the reload in progress (any superseded one's too), and for the one queued before the first start. */
  private reloadWaiters: Array<(r: CommandResult) => void> = [];
  private queuedReloadWaiters: Array<(r: CommandResult) => void> = [];
  private scaleWaiters: Array<{ target: number; deadline: number; done: (r: CommandResult) => void }> = [];
  private finished!: (code: number) => void;
  private failed!: (err: unknown) => void;
  /** The view master-side hooks get. */
  private readonly server: ServerInfo;

  constructor(private readonly opts: ArbiterOptions) {
    this.settings = opts.resolved.settings;
    this.configFile = opts.resolved.configFile;
    this.privileges = opts.resolved.privileges ?? null;
    this.tls = opts.resolved.tls ?? null;
    this.env = workerEnv(opts.resolved);
    this.logs = opts.logs;
    this.ops = opts.ops ?? realProcessOps;
    this.numWorkers = this.settings.workers;
    this.generations.set(1, this.newGeneration());
    this.reexec = new Reexec({
      ops: this.ops,
      log: () => this.log,
      argv: opts.argv,
      cwd: opts.cwd,
      parent: parentPid(process.env),
    });
    const arbiter = this;
    this.server = {
      pid: process.pid,
      app: opts.app,
      get settings() {
        return arbiter.settings;
      },
      get log() {
        return arbiter.log;
      },
      get generation() {
        return arbiter.generation;
      },
      workers: () => [...this.workers.values()].map((w) => this.info(w)),
    };
  }

  private get log(): LogTarget['logger'] {
    return this.logs.logger;
  }

  private get procName(): string {
    return this.settings.proc_name ?? this.opts.app;
  }

  /** A socket's address as clients use it: https:// when TLS is on. */
  private publicLabel(s: BoundSocket): string {
    return this.settings.certfile ? s.label.replace(/^http:/, 'https:') : s.label;
  }

  private info(w: Worker): WorkerInfo {
    return {
      id: w.id,
      pid: w.pid,
      generation: w.generation,
      state: w.state,
      spawnedAt: w.spawnedAt,
      exitCode: w.exitCode,
      signal: w.signal,
    };
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
    ({ notifier: this.notifier, watchdogUsec: this.watchdogUsec } = Notifier.fromEnv(process.env, this.log));
    const activated = activatedSockets(process.env);
    const inherited = inheritedSockets(process.env);
    delete process.env[INHERITED_ENV];
    delete process.env[PARENT_ENV];
    if (process.pid === 1)
      this.log.warn(
        'tsgun is PID 1: orphaned processes of the app will not be reaped; run the container with an init (docker run --init, tini)',
      );
    try {
      if (this.settings.pidfile) {
        this.pidfile = new Pidfile(this.settings.pidfile);
        this.pidfile.create();
      }
      if (activated.length > 0) {
        this.sockets = adoptActivated(activated);
        this.log.info(`Using ${activated.length} socket(s) passed by systemd; bind is ignored`);
      } else {
        if (this.settings.reuse_port && !REUSE_PORT_SUPPORTED)
          this.log.warn(
            `reuse_port needs Node >= 22.12 (this is ${process.version}); all workers share one socket instead`,
          );
        this.sockets = await bindAll(this.settings.bind, {
          log: this.log,
          reuse: inherited,
          reusePort: this.settings.reuse_port,
          owner: this.privileges,
        });
      }
      await this.startControl();
      if (this.settings.metrics_bind)
        this.metrics = await (
          await import('./metrics.js')
        ).MetricsServer.start(
          this.settings.metrics_bind,
          () => this.snapshot(),
          () => this.log,
        );
      await this.watchFiles();
    } catch (err) {
      this.metrics?.close();
      closeAll(this.sockets, { unlink: this.reexec.parent === null });
      closeAll(
        inherited.filter((s) => !this.sockets.includes(s)),
        { unlink: false },
      );
      this.control?.close();
      this.pidfile?.unlink();
      throw err;
    }
    closeAll(
      inherited.filter((s) => !this.sockets.includes(s)),
      { unlink: false },
    );
    for (const s of this.sockets) this.log.info(`Listening at: ${this.publicLabel(s)} (${process.pid})`);
    if (this.control) this.log.info(`Control socket: ${this.control.path}`);
    if (this.metrics) this.log.info(`Metrics at: ${this.metrics.label}`);
    this.log.info(`Using worker: ${this.settings.worker_class}`);
    // As Uvicorn does, for someone who started tsgun by hand in a terminal.
    if (process.stdin.isTTY && process.stderr.isTTY) this.log.info('Press Ctrl+C to quit');
    this.unguard = guardProcess(() => this.log);
    for (const sig of SIGNALS) process.on(sig, this.onSignal);
    await this.hook('when_ready', this.server);
    await this.hook('nworkers_changed', this.server, this.numWorkers, null);
    if (this.watchdogUsec) this.notifier?.startWatchdog(this.watchdogUsec);
    this.housekeeping = setInterval(() => this.wake(), 500);
    const sample = (): Promise<void> =>
      this.sample().catch((err: unknown) =>
        this.sampleWarning.warn(`cannot sample worker usage: ${describeError(err)}`),
      );
    this.sampler = setInterval(sample, this.settings.stats_interval * 1000);
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
        while (this.commands.length > 0) await this.commands.shift()!();
        await this.reap();
        if (!this.stopping) {
          this.murderStuck();
          await this.manageWorkers();
          await this.checkReload();
          if (this.reloadQueued && !this.reload && this.everReady) await this.afterReload();
          this.checkScale();
          this.checkReady();
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
    if (this.stopping && sig !== 'SIGINT' && sig !== 'SIGQUIT') return;
    switch (sig) {
      case 'SIGTERM':
        return this.stop('graceful');
      case 'SIGINT':
      case 'SIGQUIT':
        return this.stop('quick');
      case 'SIGHUP':
        return this.startReload();
      case 'SIGTTIN':
        return this.setNumWorkers(this.numWorkers + 1);
      case 'SIGTTOU':
        if (this.numWorkers <= 1) {
          this.log.info('TTOU ignored: already at one worker');
          return;
        }
        return this.setNumWorkers(this.numWorkers - 1);
      case 'SIGWINCH':
        this.log.info(
          'Stopping all workers gracefully; the master keeps its sockets (HUP or TTIN starts workers again)',
        );
        return this.setNumWorkers(0);
      case 'SIGUSR1':
        this.logs.reopen();
        for (const w of this.workers.values()) this.ops.kill(w.pid, 'SIGUSR1');
        return;
      case 'SIGUSR2':
        return this.upgrade();
    }
  }

  private async setNumWorkers(n: number): Promise<void> {
    const old = this.numWorkers;
    if (n === old) return;
    this.numWorkers = n;
    void this.notifier?.notify({ STATUS: this.statusLine() });
    await this.hook('nworkers_changed', this.server, n, old);
  }

  private statusLine(): string {
    return `${this.numWorkers} workers, generation ${this.generation}${this.reload ? ', reloading' : ''}`;
  }

  /**
   * READY=1 once the first generation is serving (systemd's Type=notify). A USR2 successor
   * also names itself the main process, so that systemd follows it when the old master exits.
   */
  private checkReady(): void {
    if (this.readyNotified || this.numWorkers === 0) return;
    const ready = this.live().filter((w) => w.state === 'ready' && w.generation === this.generation).length;
    if (ready < this.numWorkers) return;
    this.readyNotified = true;
    this.log.info(`Ready: ${ready} workers serving`);
    this.opts.onReady?.();
    void this.notifier?.notify({
      ...(this.reexec.parent !== null ? { MAINPID: process.pid } : {}),
      READY: 1,
      STATUS: this.statusLine(),
    });
  }

  // ---- workers -------------------------------------------------------------------------

  private live(): Worker[] {
    return [...this.workers.values()].filter((w) => w.state === 'booting' || w.state === 'ready');
  }

  /** Bring the pool to its target as the pool plan says (src/master/pool.ts). */
  private async manageWorkers(): Promise<void> {
    const live = this.live();
    const batch = this.settings.reload_batch || defaultBatch(this.numWorkers);
    const workers = live.map((w) => ({
      id: w.id,
      generation: w.generation,
      slot: w.slot,
      state: w.state as 'booting' | 'ready',
      recycle: w.outgoing,
    }));
    const now = Date.now();
    const p = plan({
      now,
      target: this.numWorkers,
      newest: this.newest,
      batch,
      generations: this.generations,
      workers,
      slots: this.slots,
    });
    this.pool = p;
    for (const r of p.retire)
      this.retire(
        live.find((w) => w.id === r.id)!,
        r.reason,
        r.graceful,
      );
    for (const { slot } of p.start) {
      if (this.stopping) return;
      await this.spawnWorker(slot);
    }
    if (p.wakeAt !== null) setTimeout(() => this.wake(), p.wakeAt - now).unref();
  }

  private async spawnWorker(slot: number): Promise<void> {
    const id = ++this.lastId;
    const pending: WorkerInfo = {
      id,
      pid: 0,
      generation: this.generation,
      state: 'booting',
      spawnedAt: Date.now(),
      exitCode: null,
      signal: null,
    };
    await this.hook('pre_fork', this.server, pending);
    const tls = this.tls;
    const output = workerOutput(this.settings, this.log);
    const { stdio, fds } = workerStdio(
      this.sockets.map((s) => s.fd),
      tls !== null,
      output,
    );
    // The title argument is not read: it reserves room for process.title, which Linux can only
    // write over the space of the original command line.
    const child = this.ops.spawn(
      process.execPath,
      [...process.execArgv, WORKER_ENTRY, `tsgun: worker [${this.procName}]`],
      {
        stdio,
        env: {
          ...this.env,
          [BOOT_ENV]: JSON.stringify(
            bootRecord({
              id,
              generation: this.generation,
              app: this.opts.app,
              settings: this.settings,
              configFile: this.configFile,
              privileges: this.privileges,
              sockets: this.sockets,
              fds,
            }),
          ),
        },
        cwd: this.settings.chdir ?? undefined,
      },
    );
    if (typeof output === 'number') closeSync(output);
    const tlsPipe = fds.tls !== null ? (child.stdio?.[fds.tls] as Socket | undefined) : undefined;
    tlsPipe?.on('error', () => {}).end(JSON.stringify(tls));
    const now = Date.now();
    const w: Worker = {
      id,
      pid: child.pid ?? 0,
      generation: this.generation,
      slot,
      state: 'booting',
      child,
      spawnedAt: now,
      readyAt: null,
      lastBeat: now,
      stats: emptyStats(),
      cpu: 0,
      rss: 0,
      watchdog: (child.stdio?.[fds.watchdog] as Socket | undefined) ?? null,
      exitCode: null,
      signal: null,
      outgoing: null,
      stopReason: null,
      bootError: null,
      killTimer: null,
      shedAt: 0,
      shedAtRequests: 0,
      shedCount: 0,
    };
    if (!child.pid) {
      // spawn failed (EAGAIN, ENOMEM); the 'error' event says why and 'exit' may never come.
      child.once('error', (err) => this.log.error({ err }, `cannot spawn a worker: ${err.message}`));
      this.slots = afterExit(this.slots, { slot, expected: false, readyForMs: null, requests: 0 }, Date.now());
      return;
    }
    this.workers.set(w.pid, w);
    w.watchdog?.on('error', () => {});
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
        w.lastBeat = w.readyAt = Date.now();
        this.everReady = true;
        this.generations.get(w.generation)!.booted = true;
        this.wake();
        break;
      case 'beat':
        w.lastBeat = Date.now();
        w.stats = m.stats;
        // Workers report a burst within CONNECTIONS_CHECK_MS of each other: judge them together.
        if (this.settings.balance_connections)
          this.balanceTimer ??= setTimeout(() => this.balance(), BALANCE_GATHER_MS).unref();
        break;
      case 'retire':
        if (w.state === 'ready' && !w.outgoing) {
          w.outgoing = m.reason;
          this.wake();
        }
        break;
      case 'boot-error':
        w.bootError = m;
        break;
      case 'failing': {
        if (w.state !== 'ready') return;
        // The worker drains by itself. One that served nothing yet may be a crash loop: its exit
        // counts as a crash, with backoff. Any other is retired, which starts its replacement now.
        const young = w.stats.requests === 0 && Date.now() - w.readyAt! < HEALTHY_AFTER_MS;
        const next = young
          ? 'it served no request yet: it is restarted when it exits, as a crash'
          : 'replacing it while it finishes its requests';
        this.log.warn(`Worker (pid:${w.pid}) failed (${m.reason}); ${next}`);
        if (young) return;
        this.retire(w, 'app error', true);
        this.wake();
        break;
      }
      case 'notice':
        if (!this.noticed.has(m.key)) this.log.info(m.message);
        this.noticed.add(m.key);
        break;
    }
  }

  /** balance_connections (balance.ts): runs BALANCE_GATHER_MS after a worker report. */
  private balance(): void {
    this.balanceTimer = null;
    if (!this.settings.balance_connections || this.stopping) return;
    const now = Date.now();
    for (const { worker: w, count, held, total } of shedOrders(this.live(), this.generation, now)) {
      [w.shedAt, w.shedAtRequests, w.shedCount] = [now, w.stats.requests, count];
      this.log.debug(
        `Worker (pid:${w.pid}) holds ${held} of ${total} connections; closing ${count} after their current response`,
      );
      w.child.send({ t: 'shed', count } satisfies MasterMessage, () => {});
    }
  }

  private countRestart(w: Worker, expected: boolean): void {
    const bootError = w.bootError !== null;
    const reason = restartReason({ expected, why: w.outgoing ?? w.stopReason, bootError, exitCode: w.exitCode });
    if (reason) this.restarts[reason] = (this.restarts[reason] ?? 0) + 1;
  }

  private async reap(): Promise<void> {
    while (this.exited.length > 0) {
      const { worker: w, code, signal } = this.exited.shift()!;
      if (w.killTimer) clearTimeout(w.killTimer);
      const wasReady = w.state === 'ready' || (w.state === 'draining' && w.stopReason !== null);
      w.state = 'exited';
      w.exitCode = code;
      w.signal = signal;
      this.workers.delete(w.pid);
      foldStats(this.retired, w.stats);
      const how = signal ? `was sent ${signal}` : `exited with code ${code}`;
      const bootTimeout = w.stopReason === 'boot-timeout';
      const expected = (w.stopReason !== null && !bootTimeout) || this.stopping !== null;
      const bootFailure =
        !expected &&
        (bootTimeout || (!wasReady && (code === WorkerExit.APP_LOAD_ERROR || code === WorkerExit.BOOT_ERROR)));
      const bootMessage = bootTimeout
        ? `a worker did not boot within boot_timeout (${this.settings.boot_timeout} s); if the app is just slow to start, raise --boot-timeout`
        : (w.bootError?.message ?? `worker ${w.pid} failed to boot (exit code ${code})`);
      // A boot failure is reported once, by whoever acts on it (first start, reload, backoff).
      if (expected || bootFailure) this.log.info(`Worker (pid:${w.pid}) ${how}`);
      else this.log.error(`Worker (pid:${w.pid}) ${how}`);
      await this.hook('child_exit', this.server, this.info(w));
      if (w.stopReason !== 'shutdown') this.countRestart(w, expected);
      if (expected) continue;

      if (bootFailure && !this.everReady) {
        // A worker that cannot boot at first start halts the master, once.
        const kind = code === WorkerExit.APP_LOAD_ERROR ? 'TSGUN_ERR_APP_LOAD' : 'TSGUN_ERR_WORKER_BOOT';
        this.failure ??= new TsgunError(kind, bootMessage);
        this.stop('quick');
        continue;
      }
      const now = Date.now();
      this.slots = afterExit(
        this.slots,
        {
          slot: w.slot,
          expected: false,
          readyForMs: w.readyAt === null ? null : now - w.readyAt,
          requests: w.stats.requests,
        },
        now,
      );
      const status = this.generations.get(w.generation)!;
      // A reload fails with its first worker that cannot boot; a top-up that cannot boot only backs off.
      if (w.readyAt === null && this.reload?.generation === w.generation && !status.failed) {
        status.failed = true;
        await this.generationFailed(bootMessage);
        continue;
      }
      const backoff = this.slots.get(w.slot);
      if (backoff) {
        const delay = backoff.notBefore - now;
        this.log.warn(
          `Restarting the worker in ${delay / 1000} s (attempt ${backoff.crashes}${bootFailure ? `, boot failed: ${bootMessage}` : ''})`,
        );
      }
    }
  }

  /**
   * Kill workers that are stuck (liveness.ts); the log line says where the worker's JavaScript was
   * blocked. Late ones get their watchdog thread ready to take that stack.
   */
  private murderStuck(): void {
    const now = Date.now();
    for (const w of this.workers.values()) {
      const why = stuck(w, this.settings, now);
      if (why) this.abort(w, why.reason, why.message);
      else if (late(w, this.settings, now)) watchdogPipe.warmUp(w.watchdog);
    }
  }

  /** Ask the watchdog for the stuck worker's stack (briefly), log it, and kill the worker. */
  private abort(w: Worker, reason: 'timeout' | 'boot-timeout', message: string): void {
    w.stopReason = reason;
    w.state = 'draining';
    const kill = (frames: string[]): void => {
      if (w.exitCode !== null || w.signal !== null) return;
      const where = frames.length ? `; blocked at:\n    ${frames.slice(0, 20).join('\n    ')}` : '; no stack available';
      this.log.error({ stack: frames }, `${message}${where}`);
      this.ops.kill(w.pid, 'SIGKILL');
    };
    watchdogPipe.requestStack(w.watchdog, kill);
  }

  /** Sample every worker's CPU and memory; replace any worker over `max_worker_memory`. */
  private async sample(): Promise<void> {
    const pids = [...this.workers.keys()];
    if (pids.length === 0) return;
    const usage = await sampleUsage(pids);
    const limit = this.settings.max_worker_memory;
    for (const [pid, u] of usage) {
      const w = this.workers.get(pid);
      if (!w) continue;
      w.cpu = u.cpu;
      w.rss = u.memory;
      if (limit !== null && u.memory > limit && w.state === 'ready' && !w.outgoing) {
        const mb = (n: number): string => `${(n / 1024 / 1024).toFixed(1)} MiB`;
        this.log.warn(
          `Worker (pid:${w.pid}) uses ${mb(u.memory)}, over max_worker_memory (${mb(limit)}); replacing it`,
        );
        w.outgoing = 'memory';
        this.wake();
      }
    }
  }

  /** Ask a worker to stop (drain if graceful); kill it if it is still there after the grace period. */
  private retire(w: Worker, reason: StopReason, graceful: boolean): void {
    if (w.state === 'exited') return;
    // A draining worker closes what is left at graceful_timeout and exits by itself: the kill is for one that cannot.
    const afterMs = graceful ? this.settings.graceful_timeout * 1000 + KILL_GRACE_MS : QUICK_STOP_MS;
    if (w.stopReason === null) this.log.info(`Retiring worker (pid:${w.pid}, generation ${w.generation}): ${reason}`);
    w.stopReason ??= reason;
    w.state = 'draining';
    // Its WebSockets are told whether to come back (1012) or that the server goes away (1001).
    if (graceful && w.child.connected)
      w.child.send({ t: 'stop', replaced: reason !== 'shutdown' } satisfies MasterMessage, () => {});
    this.ops.kill(w.pid, graceful ? 'SIGTERM' : 'SIGQUIT');
    if (!graceful && w.killTimer) {
      clearTimeout(w.killTimer);
      w.killTimer = null;
    }
    w.killTimer ??= setTimeout(() => {
      if (w.state === 'exited') return;
      this.log.warn(`Worker (pid:${w.pid}) did not stop within ${afterMs / 1000} s; killing it`);
      this.ops.kill(w.pid, 'SIGKILL');
    }, afterMs);
  }

  // ---- reload (HUP) --------------------------------------------------------------------

  /**
   * Start a new generation. One requested during a reload supersedes it (the newest wins):
   * what serves keeps serving until the newest generation is ready (see docs/reload.md).
   */
  private async startReload(waiter?: (r: CommandResult) => void): Promise<void> {
    if (!this.everReady) {
      this.reloadQueued = true;
      if (waiter) this.queuedReloadWaiters.push(waiter);
      this.log.info('Reload will start once the first workers are ready');
      return;
    }
    // systemd (Type=notify-reload) waits for RELOADING=1 and then READY=1, success or not.
    void this.notifier?.notify({
      RELOADING: 1,
      MONOTONIC_USEC: monotonicUsec(),
      STATUS: `reloading: generation ${this.newest + 1}`,
    });
    let resolved: ResolvedConfig;
    let sockets: BoundSocket[];
    try {
      resolved = await this.opts.reresolve();
      const appDir = this.appDir(resolved.settings);
      if (resolved.settings.reload) Reloader.dirs(resolved.settings, appDir);
      // Sockets systemd passed stay the sockets: bind is ignored, as at start.
      const activated = this.sockets.length > 0 && this.sockets.every((s) => s.systemd !== undefined);
      sockets = activated
        ? this.sockets
        : await bindAll(resolved.settings.bind, {
            log: this.log,
            reuse: this.sockets,
            attempts: 1,
            reusePort: resolved.settings.reuse_port,
            owner: resolved.privileges,
          });
    } catch (err) {
      const why = isTsgunError(err) ? err.message : describeError(err);
      this.log.error(`Error: reload failed: ${why}; the current workers keep serving`);
      waiter?.({ ok: false, message: `reload failed: ${why}; the current workers keep serving` });
      void this.notifier?.notify({ READY: 1, STATUS: `reload failed; ${this.statusLine()}` });
      return;
    }
    if (waiter) this.reloadWaiters.push(waiter);
    const previous = this.sockets;
    this.configs.set(this.generation, this.currentConfig());
    this.applySettings(resolved);
    for (const s of sockets)
      if (!previous.includes(s)) this.log.info(`Listening at: ${this.publicLabel(s)} (${process.pid})`);
    this.retiredSockets.push(...previous.filter((s) => !sockets.includes(s) && !this.retiredSockets.includes(s)));
    this.sockets = sockets;
    const superseded = this.reload?.generation;
    this.generation = ++this.newest;
    this.generations.set(this.newest, this.newGeneration());
    this.configs.set(this.newest, this.currentConfig());
    this.reload = { generation: this.newest, startedAt: this.reload?.startedAt ?? Date.now() };
    // A new generation is new code: the old code's crash loop says nothing about it.
    this.slots = new Map();
    if (superseded)
      this.log.info(`Generation ${superseded} is superseded by generation ${this.generation}: the newest reload wins`);
    this.log.info(`Reloading: starting generation ${this.generation} (${this.numWorkers} workers)`);
    await this.hook('on_reload', this.server);
  }

  /** A generation started with the current settings: one worker boots first if it compiles into a shared cache. */
  private newGeneration(): GenerationStatus {
    return { booted: false, failed: false, warmsCache: warmsCompileCache(this.opts.app, this.settings, this.env) };
  }

  private currentConfig(): GenerationConfig {
    return {
      settings: this.settings,
      configFile: this.configFile,
      privileges: this.privileges,
      tls: this.tls,
      env: this.env,
      sockets: this.sockets,
    };
  }

  /**
   * The control socket. A configured path that cannot be used stops tsgun; the default one
   * (a read-only or odd temp dir) only costs `tsgun status` and friends, with a warning.
   */
  private async startControl(): Promise<void> {
    const configured = this.settings.control_socket !== null;
    const path = controlSocketPath(this.settings, process.pid);
    try {
      this.control = await ControlServer.start(path, this, this.log, !configured && !this.settings.pidfile);
    } catch (err) {
      if (configured) throw err;
      this.log.warn(
        `No control socket (${isTsgunError(err) ? err.message : describeError(err)}); tsgun status/reload/scale/stop need --control-socket PATH in a writable directory`,
      );
    }
  }

  private appDir(settings: Settings): string {
    return path.dirname(resolveModule(parseAppSpec(this.opts.app).module, settings.chdir ?? process.cwd()));
  }

  /**
   * Start, restart or stop the `--reload` file watcher to match the settings. A new watcher
   * starts before the old one closes, so a failure leaves the old one watching.
   */
  private async watchFiles(previous?: Settings): Promise<void> {
    const keys = [
      'reload',
      'reload_dirs',
      'reload_include',
      'reload_exclude',
      'reload_delay',
      'reload_extra_files',
      'chdir',
    ] as const;
    if (previous && keys.every((k) => JSON.stringify(previous[k]) === JSON.stringify(this.settings[k]))) return;
    const next = this.settings.reload
      ? await Reloader.start({
          settings: this.settings,
          appDir: this.appDir(this.settings),
          log: this.log,
          onChange: (files) => {
            this.log.info(`Detected change in ${files}; reloading`);
            this.enqueue(() => this.startReload());
          },
        })
      : null;
    await this.reloader?.close();
    this.reloader = next;
  }

  /** Take a reloaded config: new settings, logs reopened, worker count kept unless `workers` changed. */
  private applySettings(resolved: ResolvedConfig): void {
    const old = this.settings;
    this.settings = resolved.settings;
    this.configFile = resolved.configFile;
    this.privileges = resolved.privileges ?? null;
    this.tls = resolved.tls ?? null;
    this.env = workerEnv(resolved);
    if (
      old.loglevel !== this.settings.loglevel ||
      old.log_format !== this.settings.log_format ||
      old.errorlog !== this.settings.errorlog
    ) {
      this.logs.flush();
      this.logs = createLogger(this.settings, { role: 'master' });
    } else {
      this.logs.reopen();
    }
    if (this.settings.workers !== old.workers || this.numWorkers === 0) {
      const before = this.numWorkers;
      this.numWorkers = this.settings.workers;
      void this.hook('nworkers_changed', this.server, this.numWorkers, before);
    }
    if (this.settings.pidfile !== old.pidfile) {
      this.pidfile?.unlink();
      this.pidfile = this.settings.pidfile ? new Pidfile(this.settings.pidfile) : null;
      try {
        this.pidfile?.create();
      } catch (err) {
        this.log.error(`Error: ${(err as Error).message}`);
      }
    }
    process.title = `tsgun: master [${this.procName}]`;
    this.watchFiles(old).catch((err: unknown) =>
      this.log.error(`Error: ${isTsgunError(err) ? err.message : describeError(err)}`),
    );
  }

  /**
   * The reload's generation failed to boot. Every ready worker stays; the pool is topped up from
   * the newest generation that did boot, with its settings and sockets.
   */
  private async generationFailed(why: string): Promise<void> {
    const goal = goalGeneration(this.newest, this.generations);
    const keeps = goal === this.newest ? `the workers ready so far keep serving` : `generation ${goal} keeps serving`;
    this.log.error(`Error: reload failed: ${why}; ${keeps}`);
    this.settleReload({ ok: false, message: `reload failed: ${why}; ${keeps}` });
    this.reload = null;
    const config = this.configs.get(goal);
    if (goal !== this.generation && config) {
      closeAll(this.sockets.filter((s) => !config.sockets.includes(s)));
      this.retiredSockets = this.retiredSockets.filter((s) => !config.sockets.includes(s));
      const failed = this.settings;
      ({
        settings: this.settings,
        configFile: this.configFile,
        privileges: this.privileges,
        tls: this.tls,
        env: this.env,
        sockets: this.sockets,
      } = config);
      await this.watchFiles(failed).catch((err: unknown) =>
        this.log.error(`Error: ${isTsgunError(err) ? err.message : describeError(err)}`),
      );
      this.generation = goal;
    }
    void this.notifier?.notify({ READY: 1, STATUS: `reload failed; ${this.statusLine()}` });
    await this.afterReload();
  }

  /** Is the reload done: the pool converged on the newest generation? */
  private async checkReload(): Promise<void> {
    if (!this.pool?.converged || this.pool.goal !== this.newest) return;
    for (const g of this.configs.keys()) if (g !== this.newest) this.configs.delete(g);
    if (!this.reload) return;
    const took = ((Date.now() - this.reload.startedAt) / 1000).toFixed(2);
    const count = this.live().length;
    this.log.info(`Reload complete: generation ${this.generation} ready (${count} workers, ${took} s)`);
    this.settleReload({
      ok: true,
      message: `reloaded: generation ${this.generation} ready with ${count} workers in ${took} s`,
    });
    this.reload = null;
    void this.notifier?.notify({ READY: 1, STATUS: this.statusLine() });
    await this.afterReload();
  }

  private settleReload(result: CommandResult): void {
    for (const done of this.reloadWaiters.splice(0)) done(result);
  }

  private async afterReload(): Promise<void> {
    closeAll(this.retiredSockets);
    this.retiredSockets = [];
    if (this.reloadQueued) {
      this.reloadQueued = false;
      this.reloadWaiters = this.queuedReloadWaiters.splice(0);
      await this.startReload();
    }
  }

  // ---- control (tsgun status / reload / scale / stop) ----------------------------------

  /** Reload as HUP does; resolves when the new generation is ready, or says why not. */
  requestReload(): Promise<CommandResult> {
    return new Promise((resolve) => this.enqueue(() => this.startReload(resolve)));
  }

  /** Set the number of workers; resolves once that many are ready and the surplus has left. */
  requestScale(n: number): Promise<CommandResult> {
    return new Promise((resolve) => {
      this.enqueue(async () => {
        const wait = (this.settings.boot_timeout || 30) + (this.settings.graceful_timeout || 30);
        this.scaleWaiters.push({ target: n, deadline: Date.now() + wait * 1000, done: resolve });
        await this.setNumWorkers(n);
      });
    });
  }

  /** Stop as TERM (graceful) or INT (quick) does. */
  requestStop(quick: boolean): void {
    this.enqueue(async () => this.stop(quick ? 'quick' : 'graceful'));
  }

  private readonly commands: Array<() => Promise<void>> = [];

  private enqueue(command: () => Promise<void>): void {
    this.commands.push(command);
    this.wake();
  }

  private checkScale(): void {
    if (this.scaleWaiters.length === 0) return;
    const live = this.live();
    const ready = live.filter((w) => w.state === 'ready' && w.generation === this.generation && !w.outgoing).length;
    const leaving = [...this.workers.values()].some((w) => w.state === 'draining' && w.stopReason === 'scale down');
    const now = Date.now();
    this.scaleWaiters = this.scaleWaiters.filter((waiter) => {
      if (waiter.target !== this.numWorkers) {
        waiter.done({
          ok: false,
          message: `the worker count was changed to ${this.numWorkers} by another command before ${waiter.target} was reached`,
        });
      } else if (ready === waiter.target && !leaving && live.length === waiter.target) {
        waiter.done({ ok: true, message: `scaled to ${waiter.target} workers` });
      } else if (now > waiter.deadline) {
        waiter.done({ ok: false, message: `${ready} of ${waiter.target} workers ready so far; check the error log` });
      } else {
        return true;
      }
      return false;
    });
  }

  snapshot(): ArbiterSnapshot {
    const usage = process.cpuUsage();
    const elapsed = (Date.now() - this.startedAt) * 1000;
    return {
      pid: process.pid,
      app: this.opts.app,
      version: this.opts.version,
      startedAt: this.startedAt,
      generation: this.generation,
      target: this.numWorkers,
      reloading: this.reload !== null,
      cpu: elapsed > 0 ? ((usage.user + usage.system) / elapsed) * 100 : 0,
      rss: process.memoryUsage.rss(),
      sockets: this.sockets.map((s) => this.publicLabel(s)),
      workers: [...this.workers.values()]
        .sort((a, b) => a.id - b.id)
        .map((w) => ({
          id: w.id,
          pid: w.pid,
          generation: w.generation,
          state: w.state,
          spawnedAt: w.spawnedAt,
          readyAt: w.readyAt,
          stats: w.stats,
          cpu: w.cpu,
          rss: w.rss,
        })),
      retired: this.retired,
      restarts: { ...this.restarts },
    };
  }

  // ---- upgrade (USR2) ------------------------------------------------------------------

  private async upgrade(): Promise<void> {
    const refused = this.reexec.refusal();
    if (refused) {
      this.log.warn(refused);
      return;
    }
    await this.hook('pre_exec', this.server);
    this.reexec.start(
      { sockets: this.sockets, notifySocket: this.notifier?.socket ?? null, watchdogUsec: this.watchdogUsec },
      this.pidfile,
    );
  }

  // ---- stopping ------------------------------------------------------------------------

  private stop(mode: StopMode): void {
    if (this.stopping === 'quick' || this.stopping === mode) return;
    // After USR2 the service is the successor's: this master leaving is not the service stopping.
    if (!this.stopping && !this.reexec.successorRunning())
      void this.notifier?.notify({ STOPPING: 1, STATUS: 'stopping' });
    this.stopping = mode;
    if (this.housekeeping) clearInterval(this.housekeeping);
    for (const w of this.workers.values()) this.retire(w, 'shutdown', mode === 'graceful');
    // Workers stop accepting now; once the master lets go too, new connections are refused
    // at once instead of waiting in the backlog for a reset at exit.
    this.closeSockets();
    this.wake();
  }

  private closeSockets(): void {
    // Unix socket files are shared with a USR2 successor or predecessor: only the last master removes them.
    closeAll([...this.sockets, ...this.retiredSockets], { unlink: !this.reexec.sharesSockets() });
    this.sockets = [];
    this.retiredSockets = [];
  }

  private async finish(): Promise<void> {
    for (const sig of SIGNALS) process.off(sig, this.onSignal);
    if (this.housekeeping) clearInterval(this.housekeeping);
    if (this.sampler) clearInterval(this.sampler);
    for (const waiter of this.scaleWaiters.splice(0)) waiter.done({ ok: false, message: 'tsgun is stopping' });
    this.settleReload({ ok: false, message: 'tsgun is stopping' });
    for (const done of this.queuedReloadWaiters.splice(0)) done({ ok: false, message: 'tsgun is stopping' });
    this.closeSockets();
    this.control?.close();
    this.metrics?.close();
    await this.reloader?.close();
    await this.notifier?.close();
    this.pidfile?.unlink();
    this.log.info('Shutting down: Master');
    await this.hook('on_exit', this.server);
    this.unguard?.();
    if (this.failure) this.failed(this.failure);
    else this.finished(0);
  }
}
