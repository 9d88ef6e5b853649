/**
 * The watchdog thread of a worker process. A worker whose event loop is blocked (a
 * runaway regex, `while (true) {}`) cannot answer anything itself; this thread can. When
 * the master asks over the watchdog pipe, it pauses the main thread through the
 * inspector (dispatched by V8 interrupts, so it works in a busy loop), reads the
 * JavaScript stack, runs the worker_abort hook in the paused context, and replies. And
 * when the master is gone while the main thread is blocked, it ends the process: a blocked
 * worker would otherwise outlive its master, keeping the port and the CPU.
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
import watchdogPipe = require('./watchdog-pipe.cjs');

interface CallFrame {
  functionName: string;
  url: string;
  location: { scriptId: string; lineNumber: number; columnNumber: number };
  callFrameId: string;
}

const sleep = timers.setTimeout;
interface WatchdogData {
  /** The watchdog pipe; null without liveness checks (timeout and boot_timeout 0). */
  fd: number | null;
  pulse: SharedArrayBuffer;
  pulseMs: number;
  warmAfterMs: number;
  bootWarmAfterMs: number;
  masterPid: number;
  /** Where the worker's error log goes (null: stderr), for the one line this thread writes. */
  errorLog: { file: string | null; pretty: boolean; worker: number };
}
const { fd, pulse: shared, pulseMs, warmAfterMs, bootWarmAfterMs, masterPid, errorLog } = threads.workerData as WatchdogData;
/** [0]: when the main thread's event loop last ran (ms since the epoch); [1]: 1 once the worker is ready. */
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
 * of time, once the main thread has been silent for half of `timeout`, and switched off again
 * if it recovers: a healthy worker pays nothing, and a process that exits with a session
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
  logError(`The master (pid ${masterPid}) is gone and this worker's event loop has been blocked for ${silent} s; killing it`);
  process.kill(process.pid, 'SIGKILL');
}

/**
 * With a watchdog pipe: enable the debugger once the main thread has been silent for half of
 * `timeout` (while booting, of `boot_timeout`), and switch it off when it recovers.
 */
function warmDebugger(): void {
  if (capturing) return;
  const silent = silentMs();
  // While booting, the main thread may block for as long as boot_timeout allows.
  const warmAfter = pulse[1] === 1 ? warmAfterMs : bootWarmAfterMs;
  if (silent > warmAfter && !enabled) void enable().catch(() => {});
  else if (silent <= warmAfter && enabled) void disable();
}

// One timer for both checks, at the pulse's period: the thread wakes 4 times a second, not 14.
setInterval(fd === null ? checkOrphaned : () => (checkOrphaned(), warmDebugger()), pulseMs);

if (fd !== null) serveStacks(fd);

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
    await post('Debugger.evaluateOnCallFrame', { callFrameId: top.callFrameId, expression: 'globalThis[Symbol.for("tsgun.abort")]?.()', timeout: 1000 }).catch(() => {});
  }
  return frames.map((f) => {
    const url = scriptUrls.get(f.location.scriptId) || f.url || '<unknown>';
    return `at ${f.functionName || '<anonymous>'} (${url}:${f.location.lineNumber + 1}:${f.location.columnNumber + 1})`;
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

/** Answer the master's stack requests on the watchdog pipe (the debugger is enabled ahead of time by warmDebugger()). */
function serveStacks(pipeFd: number): void {
  const pipe = new net.Socket({ fd: pipeFd, readable: true, writable: true });
  watchdogPipe.serveStackRequests(pipe, answer);
  // The pipe closing means the master is gone; the thread's master check and the main thread act on that.
  pipe.on('error', () => {});
}
