/**
 * The watchdog thread of a worker process. A worker whose event loop is blocked (a
 * runaway regex, `while (true) {}`) cannot answer anything itself; this thread can. When
 * the master asks over the watchdog pipe, it pauses the main thread through the
 * inspector (dispatched by V8 interrupts, so it works in a busy loop), reads the
 * JavaScript stack, runs the worker_abort hook in the paused context, and replies. And
 * when the master is gone while the main thread is blocked, it ends the process: a blocked
 * worker would otherwise outlive its master, keeping the port and the CPU.
 *
 * It has no timer of its own while the worker is healthy, so it never wakes up: it waits on the
 * pipe, for the master's `warm` (the worker is late), `stack` (it is stuck), or end (the master
 * is gone). Only then does it watch the main thread's pulse, until it recovers. Polling it four
 * times a second cost every worker about 1.5 ms of CPU a second idle, and more under load.
 *
 * CommonJS, not ESM: a thread started on an ES module sets up the ESM loader first, which
 * costs every worker about 7 ms more CPU at boot (median of 21 starts, process.cpuUsage()).
 *
 * The protocol on the pipe, and the master's end of it, are in watchdog-pipe.cts.
 */
import fs = require('node:fs');
import inspector = require('node:inspector');
import net = require('node:net');
import timers = require('node:timers/promises');
import threads = require('node:worker_threads');
import sourceMaps = require('./source-map.cjs');
import watchdogPipe = require('./watchdog-pipe.cjs');

interface CallFrame {
  functionName: string;
  url: string;
  location: { scriptId: string; lineNumber: number; columnNumber: number };
  callFrameId: string;
}

const sleep = timers.setTimeout;
type ScriptMap = NonNullable<ReturnType<typeof sourceMaps.ScriptMap.of>>;
type Position = NonNullable<ReturnType<ScriptMap['original']>>;
interface WatchdogData {
  /** The watchdog pipe. */
  fd: number;
  pulse: SharedArrayBuffer;
  pulseMs: number;
  masterPid: number;
  /** Where the worker's error log goes (null: stderr), for the one line this thread writes. */
  errorLog: { file: string | null; pretty: boolean; worker: number };
}
const { fd, pulse: shared, pulseMs, masterPid, errorLog } = threads.workerData as WatchdogData;
/** [0]: when the main thread's event loop last ran (ms since the epoch). */
const pulse = new Float64Array(shared);
/** How long the main thread has not run; a few missed pulses mean it is blocked. */
const silentMs = (): number => Date.now() - pulse[0]!;
const blocked = (): boolean => silentMs() > 4 * pulseMs;
/**
 * How long the main thread of a worker whose master is gone may stay silent before this thread
 * kills the process: long enough for a request's legitimate synchronous work, short enough
 * that the port is free within two seconds.
 */
const ORPHAN_BLOCKED_MS = 1500;
const session = new inspector.Session();
// Call frames name their script by id; Debugger.enable announces every script's URL.
const scriptUrls = new Map<string, string>();
session.on('Debugger.scriptParsed', (m) => {
  const { scriptId, url } = m.params as { scriptId: string; url: string };
  scriptUrls.set(scriptId, url);
});
/**
 * Debugger.enable announces every script the process has loaded, which takes from a few
 * hundred ms to seconds in a large app on a busy machine. So the debugger is enabled ahead
 * of time, once the master says the worker is late (half way to its timeout) and its main
 * thread is indeed blocked, and switched off again if it recovers: a healthy worker pays nothing, and a process that exits with a session
 * attached prints "Waiting for the debugger to disconnect...".
 */
let connected = false;
let enabled: Promise<void> | null = null;
let capturing = false;

function enable(): Promise<void> {
  if (!connected) {
    session.connectToMainThread();
    connected = true;
  }
  enabled ??= post('Debugger.enable').then(() => undefined);
  return enabled;
}

async function disable(): Promise<void> {
  const was = enabled;
  enabled = null;
  await was?.catch(() => {});
  await post('Debugger.disable').catch(() => {});
  session.disconnect();
  connected = false;
}

/** One error line in the worker's error log, written without pino (which lives on the blocked thread). */
function logError(msg: string): void {
  const line = errorLog.pretty
    ? `[${new Date().toISOString()}] [${process.pid}] [ERROR] ${msg}\n`
    : `${JSON.stringify({ level: 'error', time: Date.now(), pid: process.pid, role: 'worker', worker: errorLog.worker, msg })}\n`;
  try {
    if (errorLog.file) fs.appendFileSync(errorLog.file, line);
    else fs.writeSync(2, line);
  } catch {
    // Nowhere to say it; the exit still happens.
  }
}

/** The master gone (this process was reparented) and the main thread blocked: nothing else can end it. */
function checkOrphaned(): void {
  // Silence first: it is a memory read, the parent a system call.
  if (silentMs() < ORPHAN_BLOCKED_MS || process.ppid === masterPid) return;
  const silent = (silentMs() / 1000).toFixed(1);
  logError(
    `The master (pid ${masterPid}) is gone and this worker's event loop has been blocked for ${silent} s; killing it`,
  );
  process.kill(process.pid, 'SIGKILL');
}

/** Watch the pulse while the debugger is on, to switch it off when the main thread recovers. */
let recovery: NodeJS.Timeout | null = null;

/**
 * The master says the worker is late (liveness.ts, late()): enable the debugger if the main
 * thread is blocked (a slow boot may be waiting on I/O instead, its pulse still beating), and
 * switch it off when the main thread runs again.
 */
function warmDebugger(): void {
  if (capturing || enabled || !blocked()) return;
  void enable().catch(() => {});
  recovery ??= setInterval(() => {
    if (capturing || blocked()) return;
    clearInterval(recovery!);
    recovery = null;
    if (enabled) void disable();
  }, pulseMs);
}

/** The master is gone (its end of the pipe closed): watch for a main thread too blocked to see it. */
let orphanWatch: NodeJS.Timeout | null = null;
function masterGone(): void {
  orphanWatch ??= setInterval(checkOrphaned, pulseMs);
}

serveStacks(fd);

function post<T>(method: string, params?: object): Promise<T> {
  return new Promise((resolve, reject) => {
    session.post(method, params ?? {}, (err, result) => (err ? reject(err) : resolve(result as T)));
  });
}

async function captureStack(): Promise<string[]> {
  capturing = true;
  const paused = new Promise<CallFrame[]>((resolve) => {
    session.once('Debugger.paused', (m) => resolve((m.params as { callFrames: CallFrame[] }).callFrames));
  });
  await enable();
  await post('Debugger.pause');
  const frames = await paused;
  const top = frames[0];
  if (top) {
    // worker_abort runs here, on the main thread, while it is paused in its busy loop.
    await post('Debugger.evaluateOnCallFrame', {
      callFrameId: top.callFrameId,
      expression: 'globalThis[Symbol.for("tsgun.abort")]?.()',
      timeout: 1000,
    }).catch(() => {});
  }
  return describe(frames);
}

/** How long a capture may spend reading source maps before it reports the positions V8 gave. */
const MAP_BUDGET_MS = 1000;

/**
 * Each frame as `at fn (file:line:col)`, its position mapped through its script's source map
 * where it has one (a TypeScript app compiled by tsx, a built app with .map files), read while
 * the main thread is paused: the scripts of the frames only, each once.
 */
async function describe(frames: CallFrame[]): Promise<string[]> {
  const located = frames.map((f) => ({
    name: f.functionName || '<anonymous>',
    scriptId: f.location.scriptId,
    /** Where V8 says the frame is: what is shown when no map says otherwise. */
    at: {
      url: scriptUrls.get(f.location.scriptId) || f.url || '<unknown>',
      lineNumber: f.location.lineNumber,
      columnNumber: f.location.columnNumber,
    } satisfies Position,
  }));
  const maps = new Map<string, Promise<ScriptMap | null>>();
  const mapOf = ({ scriptId, at }: (typeof located)[number]): Promise<ScriptMap | null> => {
    if (at.url.startsWith('node:') || at.url === '<unknown>') return Promise.resolve(null);
    let map = maps.get(scriptId);
    if (!map) {
      map = post<{ scriptSource: string }>('Debugger.getScriptSource', { scriptId }).then(
        (r) => sourceMaps.ScriptMap.of(at.url, r.scriptSource),
        () => null,
      );
      maps.set(scriptId, map);
    }
    return map;
  };
  const mapAll = Promise.all(
    located.map(async (f) => (await mapOf(f))?.original(f.at.lineNumber, f.at.columnNumber) ?? f.at),
  );
  const budget = new AbortController();
  const positions = await Promise.race([
    mapAll,
    sleep(MAP_BUDGET_MS, null, { signal: budget.signal }).catch(() => null),
  ]);
  budget.abort();
  return located.map((f, i) => {
    const p = positions?.[i] ?? f.at;
    return `at ${f.name} (${p.url}:${p.lineNumber + 1}:${p.columnNumber + 1})`;
  });
}

/**
 * An event loop that still runs is waiting (a slow boot awaiting a timer or the network), not
 * blocked: there is no JavaScript stack to show, and pausing would wait for its next event.
 * A loop silent for less than the blocked threshold may be either, so the answer waits (at
 * most that threshold, 1 s) for its next pulse or for the silence to become a block.
 */
async function answer(): Promise<string[]> {
  const last = pulse[0];
  while (!blocked()) {
    if (pulse[0] !== last) return [];
    await sleep(pulseMs / 5);
  }
  return captureStack();
}

/**
 * Answer the master's stack and warm requests on the watchdog pipe, and learn from its end that
 * the master is gone.
 */
function serveStacks(pipeFd: number): void {
  const pipe = new net.Socket({ fd: pipeFd, readable: true, writable: true });
  watchdogPipe.serveStackRequests(pipe, answer, warmDebugger);
  pipe.on('close', masterGone);
  pipe.on('error', () => {});
}
