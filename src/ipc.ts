/**
 * The master–worker contract: how a worker is started, the messages on its IPC channel,
 * and the exit codes it reserves.
 */
import type { StdioOptions } from 'node:child_process';
import type { Settings } from './config/settings.js';
import type { HookName } from './hooks.js';

/** Exit codes a worker reserves so the master can tell "cannot boot" from "crashed". */
export const WorkerExit = {
  OK: 0,
  /** The worker failed to boot (worker class, hooks, listening). */
  BOOT_ERROR: 3,
  /** The app failed to load (module, attribute, shape, a throw at import). */
  APP_LOAD_ERROR: 4,
} as const;

/** A listening socket handed to workers at stdio slot `fd`. */
export interface SocketInfo {
  fd: number;
  /** `http://127.0.0.1:8000` or `unix:/path`. */
  label: string;
  /** With reuse_port: listen on a socket of the worker's own at this address instead of `fd`. */
  reusePort?: { host: string; port: number };
}

/** The ids a worker switches to (`user`, `group`), resolved by the master. */
export interface Privileges {
  uid: number;
  gid: number;
  /** The user name for initgroups(); null when the uid has no passwd entry. */
  initgroups: string | null;
}

/** Everything a worker needs to start, passed in the `TSGUN_WORKER` environment variable. */
export interface WorkerBoot {
  id: number;
  generation: number;
  masterPid: number;
  app: string;
  /** Settings without their functions (hooks); `hooks` names the worker-side hooks to import. */
  settings: Settings;
  configFile: string | null;
  hooks: HookName[];
  sockets: SocketInfo[];
  privileges: Privileges | null;
  /**
   * The stdio slot of the watchdog pipe (see worker/watchdog-thread.cts): the master's stack
   * requests, and, by closing, the news that the master is gone.
   */
  watchdogFd: number;
  /** With TLS: the stdio slot of a pipe on which the master writes the `TlsMaterial` as JSON, then closes it. */
  tlsFd: number | null;
}

export const BOOT_ENV = 'TSGUN_WORKER';

/** The stdio slots of a worker's pipes; the worker finds them in its `WorkerBoot`. */
export interface WorkerFds {
  sockets: number[];
  watchdog: number;
  tls: number | null;
}

/**
 * A worker's stdio: the standard streams, the listening sockets from slot 3, the IPC channel,
 * then the watchdog pipe, and the TLS pipe when it is used.
 */
export function workerStdio(
  socketFds: readonly number[],
  tls: boolean,
  output: 'inherit' | number = 'inherit',
): { stdio: StdioOptions; fds: WorkerFds } {
  const sockets = socketFds.map((_, i) => 3 + i);
  let next = 3 + socketFds.length + 1;
  const fds = { sockets, watchdog: next++, tls: tls ? next++ : null };
  const pipes = ['pipe' as const, ...(tls ? ['pipe' as const] : [])];
  return { stdio: ['ignore', output, output, ...socketFds, 'ipc', ...pipes], fds };
}

export type WorkerMessage =
  | { t: 'ready' }
  | { t: 'boot-error'; kind: 'app-load' | 'boot'; message: string }
  /** The worker wants to be replaced (it has served max_requests); it keeps serving until told to stop. */
  | { t: 'retire'; reason: 'max-requests' }
  /**
   * The app failed outside any request (an uncaught exception, an unhandled rejection, its own
   * process.exit()): the worker has stopped accepting and drains; start its replacement now.
   */
  | { t: 'failing'; reason: string }
  /** Sent from the worker's event loop; its absence for `timeout` seconds means it is stuck. */
  | { t: 'beat'; stats: WorkerStats }
  /** Something the master logs once per `key` (every worker of a generation finds the same). */
  | { t: 'notice'; key: string; message: string };

/** Upper bounds (seconds) of the request duration histogram; a last bucket takes the rest. */
export const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** Counters a worker reports with each heartbeat; all totals since the worker started. */
export interface WorkerStats {
  requests: number;
  /** Open HTTP connections; upgraded ones (WebSockets) are counted apart. */
  connections: number;
  /** Open upgraded connections (WebSockets and other `Upgrade:` protocols). */
  upgraded: number;
  inflight: number;
  /** Responses by status class: 1xx, 2xx, 3xx, 4xx, 5xx (only with metrics on). */
  status: number[];
  /** Requests per duration bucket, not cumulative; one more than DURATION_BUCKETS. */
  buckets: number[];
  durationSum: number;
  /** Errors the app threw or rejected with, in requests (each answered 500 or cut) and outside them. */
  appErrors: number;
}

/**
 * From the master: close this many keep-alive connections after their current response
 * (balance_connections); or, sent just before SIGTERM, why the worker stops: `replaced`
 * when others serve on (WebSockets get close code 1012, else 1001).
 */
export type MasterMessage = { t: 'shed'; count: number } | { t: 'stop'; replaced: boolean };

export function isWorkerMessage(m: unknown): m is WorkerMessage {
  return typeof m === 'object' && m !== null && typeof (m as { t?: unknown }).t === 'string';
}
