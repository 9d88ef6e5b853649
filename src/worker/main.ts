/**
 * Worker process entry. Steps: read the boot record, watch the master, run post_fork,
 * load the app, start the worker class on the inherited sockets, run post_worker_init,
 * report ready, watch for the app's faults, beat.
 */
import type { IncomingMessage } from 'node:http';
import { createRequire } from 'node:module';
import { Socket } from 'node:net';
import { Worker as Thread } from 'node:worker_threads';
import { lookupAttr, parseAppSpec, resolveModule } from '../config/appspec.js';
import { loadConfigFile } from '../config/files.js';
import { describeError, isTsgunError, TsgunError } from '../errors.js';
import type { Hooks, HookName, ServerInfo, WorkerSelf } from '../hooks.js';
import { BOOT_ENV, WorkerExit, type MasterMessage, type WorkerBoot, type WorkerMessage } from '../ipc.js';
import { createLogger, type LogTarget } from '../log.js';
import type { AccessLog } from './accesslog.js';
import { importModule, loadApp, type LoadedApp } from './app.js';
import { createServer, HttpWorker } from './http.js';
import type { TsgunWorker, TsgunWorkerClass, WorkerContext } from './interface.js';
import { instrument, rejections, RequestStats } from './requests.js';
import { tlsOptions, type TlsMaterial } from './tls.js';

const boot = JSON.parse(process.env[BOOT_ENV] ?? 'null') as WorkerBoot | null;
if (!boot) {
  process.stderr.write(
    'Error: this is the tsgun worker entry point, started by the tsgun master; run `tsgun APP` instead\n',
  );
  process.exit(2);
}
delete process.env[BOOT_ENV];

const { settings } = boot;
process.title = `tsgun: worker [${settings.proc_name ?? boot.app}]`;
const logs: LogTarget = createLogger(settings, { role: 'worker', worker: boot.id });
const log = logs.logger;

const self: WorkerSelf = { id: boot.id, pid: process.pid, generation: boot.generation, app: boot.app, settings, log };
/** The master, as worker-side hooks that take a server (post_fork, worker_exit) see it. */
const master: ServerInfo = {
  pid: boot.masterPid,
  app: boot.app,
  settings,
  log,
  generation: boot.generation,
  workers: () => [],
};
const hooks: Partial<Hooks> = {};
let accessLog: AccessLog | null = null;
let worker: TsgunWorker | null = null;
let appClose: LoadedApp['close'] = null;
const stats = new RequestStats();
let stopping = false;
/** Set by the master's stop message: this worker is being replaced, not stopped with the server. */
let replaced = false;
/** After this many requests the worker asks to be replaced (max_requests plus jitter). */
const quota =
  settings.max_requests > 0
    ? settings.max_requests + Math.floor(Math.random() * (settings.max_requests_jitter + 1))
    : 0;

/**
 * The watchdog thread answers the master's "where are you stuck?" even when this thread is
 * blocked; it also runs worker_abort through the symbol below, in the paused main thread;
 * and it ends this process when the master is gone and this thread is blocked, which no
 * handler here could do. So it runs even without liveness checks (timeout and boot_timeout
 * 0): the watchdog pipe is there to close when the master goes. It starts before the app loads, so that a worker stuck while
 * booting (boot_timeout) has its stack logged too, and so that its own start (a second V8
 * isolate, ~40 ms of CPU) overlaps the boot rather than the worker's first requests: started
 * at ready, it cost about 10 % of the throughput during reloads and doubled their p99
 * (bench/reload.mjs).
 */
function startWatchdog(): void {
  pulse[0] = Date.now();
  // The thread reads silence from this pulse (tick()): a blocked loop stops it, an idle one does not.
  const toStderr = settings.errorlog === '-';
  const pretty =
    settings.log_format === 'pretty' || (settings.log_format === 'auto' && toStderr && process.stderr.isTTY === true);
  const errorLog = { file: toStderr ? null : settings.errorlog, pretty, worker: boot!.id };
  const { watchdogFd: fd, masterPid } = boot!;
  const workerData = { fd, pulse: pulse.buffer, pulseMs: PULSE_MS, masterPid, errorLog };
  new Thread(new URL('./watchdog-thread.cjs', import.meta.url), { workerData }).unref();
  (globalThis as Record<symbol, unknown>)[Symbol.for('tsgun.abort')] = () => hooks.worker_abort?.(self);
}

function send(msg: WorkerMessage): Promise<void> {
  return new Promise((resolve) => {
    if (!process.connected) return resolve();
    process.send!(msg, undefined, {}, () => resolve());
  });
}

/** Node's process.exit, for tsgun's own exits: once the worker is ready, the app's calls go through guardedExit. */
const realExit: (code: number) => never = process.exit.bind(process);

function exit(code: number): never {
  accessLog?.flush();
  logs.flush();
  realExit(code);
}

/**
 * Stop: drain the worker class and, alongside, run the app's shutdown (both bounded by
 * graceful_timeout), then worker_exit, then exit. The exit waits for all three: the master
 * kills a worker only a grace after graceful_timeout.
 */
async function stop(graceful: boolean, why: string): Promise<void> {
  if (stopping) {
    if (!graceful) exit(WorkerExit.OK);
    return;
  }
  stopping = true;
  log.debug(`Worker stopping (${why})`);
  const deadline = Date.now() + settings.graceful_timeout * 1000;
  let closed = (): void => {};
  const appClosed = new Promise<void>((resolve) => (closed = resolve));
  // The worker stops accepting first (synchronously), then the app is told.
  const drained = worker?.stop(graceful, { replaced, deadline, appClosed });
  if (graceful) await closeApp(deadline);
  closed();
  await drained;
  try {
    await hooks.worker_exit?.(master, self);
  } catch (err) {
    log.error({ err }, 'worker_exit hook failed');
  }
  await beat();
  exit(WorkerExit.OK);
}

/** The app's own shutdown (its `close` export, Fastify's close()), awaited until the deadline. */
async function closeApp(deadline: number): Promise<void> {
  if (!appClose) return;
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>(
    (resolve) => (timer = setTimeout(() => resolve('late'), Math.max(0, deadline - Date.now()))),
  );
  try {
    if ((await Promise.race([appClose(), late])) === 'late')
      log.warn(`The app's close() did not finish within graceful_timeout (${settings.graceful_timeout} s)`);
  } catch (err) {
    log.error({ err }, `The app's close() failed: ${describeError(err)}`);
  } finally {
    clearTimeout(timer);
  }
}

let drainDeadline: NodeJS.Timeout | null = null;

/**
 * Stop accepting, let in-flight requests finish and exit, within graceful_timeout: a master
 * bounds a drain it asked for with its kill timer, but this drain may have no master left.
 */
function drainAndExit(why: string): void {
  drainDeadline ??= setTimeout(
    () => {
      log.warn(`Worker still had requests in flight after graceful_timeout (${settings.graceful_timeout} s); exiting`);
      exit(WorkerExit.OK);
      // stop() ends what is left at graceful_timeout itself; this is the backstop behind it.
    },
    settings.graceful_timeout * 1000 + 1500,
  );
  void stop(true, why);
}

// A worker whose master is gone drains and exits: the IPC channel closes the moment the
// master dies, however it died. The ppid check (in tick()) covers a channel that somehow
// stays open. A worker too blocked to see either is ended by its watchdog thread.
process.on('disconnect', () => drainAndExit('master gone'));

process.on('message', (m: MasterMessage) => {
  if (m?.t === 'shed' && !stopping) worker?.shed?.(m.count);
  if (m?.t === 'stop') replaced = m.replaced;
});

// The master sends its stop message just before SIGTERM: one turn of the loop lets it land first.
process.on('SIGTERM', () => void setImmediate(() => void stop(true, 'SIGTERM')));
for (const sig of ['SIGINT', 'SIGQUIT'] as const) {
  process.on(sig, () => {
    void (async () => {
      try {
        await hooks.worker_int?.(self);
      } catch (err) {
        log.error({ err }, 'worker_int hook failed');
      }
      await stop(false, sig);
    })();
  });
}
process.on('SIGUSR1', () => {
  logs.reopen();
  accessLog?.reopen();
});
// Signals meant for the master may reach the whole process group; none of them should stop a worker.
for (const sig of ['SIGHUP', 'SIGUSR2', 'SIGTTIN', 'SIGTTOU', 'SIGWINCH'] as const) process.on(sig, () => {});

async function loadHooks(): Promise<void> {
  if (!boot!.configFile || boot!.hooks.length === 0) return;
  const raw = await loadConfigFile(boot!.configFile);
  for (const name of boot!.hooks) {
    if (typeof raw[name] === 'function') (hooks as Record<HookName, unknown>)[name] = raw[name];
  }
}

/** How long after a new connection a worker compares its connection count with the one before it (balance_connections). */
const CONNECTIONS_CHECK_MS = 100;

/**
 * Shared with the watchdog thread: [0] when this thread's event loop last ran (every
 * PULSE_MS).
 */
const pulse = new Float64Array(new SharedArrayBuffer(8));
const PULSE_MS = 250;
/** The heartbeat's period: four per `timeout`, at most a second. */
const BEAT_MS = settings.timeout > 0 ? Math.min(1000, (settings.timeout * 1000) / 4) : 1000;
/** How often the worker checks that its parent is still its master. */
const PPID_MS = 500;

/**
 * One timer for everything a worker does periodically, so that an idle worker wakes up
 * TICK_MS apart and no more often: the pulse, the ppid check and, once ready, the heartbeat
 * (each on every nth tick, never later than its own period). Separate timers woke the loop
 * 17 times a second (pulse 4, ppid 2, heartbeat 1, connection count 10).
 */
const TICK_MS = Math.min(PULSE_MS, BEAT_MS);
const BEAT_TICKS = Math.max(1, Math.floor(BEAT_MS / TICK_MS));
const PPID_TICKS = Math.max(1, Math.floor(PPID_MS / TICK_MS));
let ticks = 0;
/** The heartbeat starts once the worker is ready. */
let beating = false;

function tick(): void {
  pulse[0] = Date.now();
  ticks++;
  if (ticks % PPID_TICKS === 0 && process.ppid !== boot!.masterPid) drainAndExit('master gone');
  if (beating && ticks % BEAT_TICKS === 0) void beat();
}
const ticker = setInterval(tick, TICK_MS).unref();

function beat(): Promise<void> {
  return send({ t: 'beat', stats: stats.snapshot(worker?.connections() ?? 0, worker?.upgraded?.() ?? 0) });
}

async function loadWorkerClass(): Promise<TsgunWorkerClass> {
  if (settings.worker_class === 'http' || settings.worker_class === 'http2') return HttpWorker;
  const spec = parseAppSpec(settings.worker_class);
  try {
    const file = resolveModule(spec.module, settings.chdir ?? process.cwd(), {
      label: 'worker class module',
      fix: 'check --worker-class',
    });
    const cls = lookupAttr(await importModule(file, `worker class module ${file}`), spec, file);
    if (
      typeof cls !== 'function' ||
      typeof (cls as { prototype?: { start?: unknown } }).prototype?.start !== 'function'
    ) {
      throw new Error(`${settings.worker_class} is not a class with start() and stop() methods`);
    }
    return cls as TsgunWorkerClass;
  } catch (err) {
    throw new TsgunError(
      'TSGUN_ERR_WORKER_CLASS',
      `worker class ${settings.worker_class}: ${isTsgunError(err) ? err.message : describeError(err)}`,
      { cause: err },
    );
  }
}

/**
 * Switch to `group` and `user` (after the log files are open, before the app loads), as
 * Gunicorn's workers do: supplementary groups first, then the group, then the user.
 */
function dropPrivileges(): void {
  const p = boot!.privileges;
  if (!p || (p.uid === process.getuid!() && p.gid === process.getgid!())) return;
  try {
    const posix = process as unknown as { initgroups(user: string, extraGroup: number): void };
    if (process.getuid!() === 0) {
      if (p.initgroups) posix.initgroups(p.initgroups, p.gid);
      else process.setgroups!([p.gid]);
    }
    process.setgid!(p.gid);
    process.setuid!(p.uid);
  } catch (err) {
    throw new TsgunError(
      'TSGUN_ERR_WORKER_BOOT',
      `cannot switch the worker to uid ${p.uid} gid ${p.gid}: ${(err as NodeJS.ErrnoException).code ?? describeError(err)}`,
    );
  }
}

async function main(): Promise<void> {
  startWatchdog();
  await loadHooks();
  await hooks.post_fork?.(
    { pid: boot!.masterPid, app: boot!.app, settings, log, generation: boot!.generation, workers: () => [] },
    self,
  );
  if (settings.accesslog)
    accessLog = (await import('./accesslog.js')).createAccessLog(settings.accesslog, settings.access_log_format);
  dropPrivileges();

  let tls = boot!.tlsFd !== null ? tlsOptions(settings, await readTlsMaterial(boot!.tlsFd)) : null;
  if (tls && hooks.ssl_context) tls = (await hooks.ssl_context(self, tls)) ?? tls;
  let app: LoadedApp;
  try {
    const server = await createServer(settings, tls);
    const loading = performance.now();
    log.info(`Loading app ${boot!.app}`);
    app = await loadApp(boot!.app, settings, {
      onError: (err) => requestFailed(err),
      lightResponse: true,
      server,
      address: boot!.sockets[0]?.label,
    });
    appClose = app.close;
    const compiled = app.typescript ? `; TypeScript compiled by ${app.typescript}` : '';
    log.info(
      `Loaded app ${boot!.app} (${app.shape}, from ${app.file}${compiled}) in ${((performance.now() - loading) / 1000).toFixed(2)} s`,
    );
    if (app.typescript?.startsWith('SWC'))
      void send({ t: 'notice', key: 'typescript', message: `TypeScript compiled by ${app.typescript}` });
    if (app.adopted === 'listen')
      void send({
        t: 'notice',
        key: 'adopted',
        message: `The app called listen() on its own server: tsgun serves that server on its binds instead, and nothing is bound to the app's port`,
      });
    if (settings.workers > 1 && usesSocketIo()) {
      void send({
        t: 'notice',
        key: 'socket.io',
        message:
          "Socket.IO with several workers: its long-polling transport needs every request of a session on one worker; use transports: ['websocket'], or a sticky proxy in front",
      });
    }
  } catch (err) {
    const message = isTsgunError(err) ? err.message : `app ${boot!.app} failed to load: ${describeError(err)}`;
    await send({ t: 'boot-error', kind: 'app-load', message });
    // The master reports the failure once; the full cause is here for --log-level debug.
    log.debug({ err: isTsgunError(err) ? err.cause : err }, message);
    exit(WorkerExit.APP_LOAD_ERROR);
  }

  const WorkerClass = await loadWorkerClass();
  const onQuota = (): void => {
    log.info(`Autorestarting worker after current request (served ${stats.requests}).`);
    void send({ t: 'retire', reason: 'max-requests' });
  };
  const detailed = settings.metrics_bind !== null;
  const wrapped = instrument(app.listener, stats, {
    self,
    log,
    hooks,
    accessLog,
    detailed,
    onQuota,
    quota,
    onError: requestFailed,
  });
  const recorded = rejections(stats, { accessLog, detailed });
  const watch = settings.balance_connections && WorkerClass === HttpWorker ? { connected } : {};
  const context: WorkerContext = {
    listener: wrapped,
    sockets: boot!.sockets,
    settings,
    log,
    tls,
    server: app.server,
    ...recorded,
    ...watch,
  };
  worker = new WorkerClass(context);
  await worker.start();
  await hooks.post_worker_init?.(self);
  if (stopping) return;
  await send({ t: 'ready' });
  // The boot may have kept the loop from pulsing for seconds: that silence is not the ready worker's.
  pulse[0] = Date.now();
  watchFaults();
  log.info(`Booting worker with pid: ${process.pid}`);

  beating = true;
  // Ready, the heartbeat keeps the worker's loop alive, as its own timer did.
  ticker.ref();
  if (settings.balance_connections && WorkerClass !== HttpWorker) watchConnections(worker);
}

/** The certificate and key as the master read them, from the pipe it wrote them to. */
function readTlsMaterial(fd: number): Promise<TlsMaterial> {
  return new Promise((resolve, reject) => {
    const pipe = new Socket({ fd, readable: true, writable: false });
    let text = '';
    pipe.setEncoding('utf8');
    pipe.on('data', (chunk: string) => (text += chunk));
    pipe.on('error', reject);
    pipe.on('end', () => {
      try {
        resolve(JSON.parse(text) as TlsMaterial);
      } catch {
        reject(new TsgunError('TSGUN_ERR_WORKER_BOOT', 'the master did not send the TLS certificate and key'));
      }
    });
  });
}

// ---- the app's faults -------------------------------------------------------------------

/** Marks the error guardedExit throws, so that it is reported once, by guardedExit. */
const kExitCall = Symbol('tsgun.exitCall');
let failing = false;
/** Set while Node hands an uncaught exception to its listeners, where a throw would crash the process. */
let dispatchingUncaught = false;

function isExitCall(err: unknown): boolean {
  return typeof err === 'object' && err !== null && kExitCall in err;
}

/** The app threw or rejected while handling a request; that request got a 500 (or its connection was cut). */
function requestFailed(err: unknown, req?: IncomingMessage): void {
  if (isExitCall(err)) return;
  stats.appErrors++;
  log.error({ err }, `Error handling request${req ? ` ${req.method} ${req.url}` : ''}: ${describeError(err)}`);
}

/**
 * The app failed outside any request, or asked to exit: its state can no longer be trusted,
 * but its other requests may still finish. Tell the master (which starts the replacement at
 * once), then drain as a reload would.
 */
function appFailed(reason: string): void {
  if (failing || stopping) return;
  failing = true;
  // The beat first: the master judges from the request count whether this is a crash loop.
  void beat();
  void send({ t: 'failing', reason });
  drainAndExit(reason);
}

function onUncaught(err: unknown, what: 'uncaught exception' | 'unhandled rejection'): void {
  if (isExitCall(err)) return;
  // An app that listens for these itself has chosen what they mean (and may call process.exit).
  const exception = what === 'uncaught exception';
  const listeners: unknown[] = exception
    ? process.listeners('uncaughtException')
    : process.listeners('unhandledRejection');
  if (listeners.some((l) => l !== onException && l !== onRejection)) return;
  stats.appErrors++;
  const kind = exception ? 'Uncaught exception' : 'Unhandled rejection';
  log.error({ err }, `${kind} in the app: ${describeError(err)}; draining this worker (a new one replaces it)`);
  appFailed(what);
}

const onException = (err: Error): void => onUncaught(err, 'uncaught exception');
const onRejection = (reason: unknown): void => onUncaught(reason, 'unhandled rejection');

/**
 * process.exit() from the app drains the worker instead of cutting every request on it. It
 * throws, as nothing after process.exit() expects to run (a request that called it gets a
 * 500), except where the throw would crash the process: in an uncaughtException listener,
 * or once the worker is stopping.
 */
function guardedExit(code?: number | string | null): never {
  const err = Object.assign(new Error(`the app called process.exit(${code ?? ''})`), { [kExitCall]: true });
  const first = !failing && !stopping;
  if (first) {
    if (Number(code ?? process.exitCode ?? 0) !== 0) stats.appErrors++;
    log.error({ err }, `The app called process.exit(${code ?? ''}); draining this worker (a new one replaces it)`);
    appFailed('process.exit');
  }
  if (!first || dispatchingUncaught) return undefined as never;
  throw err;
}

function watchFaults(): void {
  process.on('uncaughtExceptionMonitor', () => {
    dispatchingUncaught = true;
    setImmediate(() => (dispatchingUncaught = false));
  });
  process.on('uncaughtException', onException);
  process.on('unhandledRejection', onRejection);
  process.exit = guardedExit;
}

/**
 * For balance_connections: tell the master soon (not only with the next heartbeat) when a
 * burst of connections has arrived, so that it can even them out within a fraction of a
 * second. tsgun's own worker class says when a connection arrives (`connected`): the count
 * is compared CONNECTIONS_CHECK_MS later with the one before it, and nothing runs while no
 * connection arrives. A worker class of the app's own is polled instead.
 */
let burstFrom: number | null = null;

function connected(): void {
  if (burstFrom !== null || !worker) return;
  burstFrom = worker.connections() - 1;
  setTimeout(() => {
    if (worker && worker.connections() > burstFrom! + 1) void beat();
    burstFrom = null;
  }, CONNECTIONS_CHECK_MS).unref();
}

function watchConnections(w: TsgunWorker): void {
  let reported = 0;
  setInterval(() => {
    const now = w.connections();
    if (now > reported + 1) void beat();
    reported = now;
  }, CONNECTIONS_CHECK_MS).unref();
}

/** Has the app loaded Socket.IO (a CommonJS package, in require's cache however it was imported)? */
function usesSocketIo(): boolean {
  const cache = createRequire(import.meta.url).cache;
  return Object.keys(cache).some((file) => /[\\/]node_modules[\\/]socket\.io[\\/]dist[\\/]index\.js$/.test(file));
}

main().catch(async (err: unknown) => {
  const message = isTsgunError(err) ? err.message : `worker failed to boot: ${describeError(err)}`;
  await send({ t: 'boot-error', kind: 'boot', message });
  log.debug({ err }, message);
  exit(WorkerExit.BOOT_ERROR);
});
