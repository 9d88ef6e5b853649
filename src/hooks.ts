/**
 * The objects server hooks receive. Master-side hooks get a `ServerInfo`; worker-side
 * hooks get the worker's own `WorkerSelf`. Both are plain views: hooks observe and
 * customise, they do not drive the arbiter.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TlsOptions } from 'node:tls';
import type { Logger } from 'pino';
import type { Settings } from './config/settings.js';

export type WorkerState = 'booting' | 'ready' | 'draining' | 'exited';

/** A worker as the master sees it. */
export interface WorkerInfo {
  /** Sequence number of the worker within this master, starting at 1. */
  readonly id: number;
  readonly pid: number;
  /** Incremented by every reload (HUP); the first workers are generation 1. */
  readonly generation: number;
  readonly state: WorkerState;
  /** Milliseconds since the epoch at spawn. */
  readonly spawnedAt: number;
  /** Set once the worker has exited. */
  readonly exitCode: number | null;
  readonly signal: NodeJS.Signals | null;
}

/** The master as master-side hooks see it. */
export interface ServerInfo {
  readonly pid: number;
  /** The APP argument, `MODULE:ATTR`. */
  readonly app: string;
  readonly settings: Readonly<Settings>;
  readonly log: Logger;
  readonly generation: number;
  workers(): WorkerInfo[];
}

/** A worker process as worker-side hooks see itself. */
export interface WorkerSelf {
  readonly id: number;
  readonly pid: number;
  readonly generation: number;
  readonly app: string;
  readonly settings: Readonly<Settings>;
  readonly log: Logger;
}

type MaybePromise<T> = T | Promise<T>;

export interface Hooks {
  /** Master, before anything is bound. */
  on_starting: (server: ServerInfo) => MaybePromise<void>;
  /** Master, when a HUP reload begins. */
  on_reload: (server: ServerInfo) => MaybePromise<void>;
  /** Master, once the sockets are bound, before the first workers are spawned. */
  when_ready: (server: ServerInfo) => MaybePromise<void>;
  /** Master, just before a worker is spawned. */
  pre_fork: (server: ServerInfo, worker: WorkerInfo) => MaybePromise<void>;
  /** Worker, first thing in the new process, before the app is loaded. */
  post_fork: (server: ServerInfo, worker: WorkerSelf) => MaybePromise<void>;
  /** Worker, after the app is loaded and before it reports ready. */
  post_worker_init: (worker: WorkerSelf) => MaybePromise<void>;
  /** Worker, on SIGINT or SIGQUIT, before it exits. */
  worker_int: (worker: WorkerSelf) => MaybePromise<void>;
  /** Worker, when the master aborts it for missing its heartbeat (if it can still run). */
  worker_abort: (worker: WorkerSelf) => MaybePromise<void>;
  /** Master, just before a new master is started for a USR2 upgrade. */
  pre_exec: (server: ServerInfo) => MaybePromise<void>;
  /** Worker, before a request is handed to the app. */
  pre_request: (worker: WorkerSelf, req: IncomingMessage) => void;
  /** Worker, after the response has been sent. */
  post_request: (worker: WorkerSelf, req: IncomingMessage, res: ServerResponse, durationMs: number) => void;
  /** Master, after a worker process has exited, for any reason. */
  child_exit: (server: ServerInfo, worker: WorkerInfo) => MaybePromise<void>;
  /** Worker, as it exits: after its connections are closed and the app's own shutdown has run. */
  worker_exit: (server: ServerInfo, worker: WorkerSelf) => MaybePromise<void>;
  /** Master, when the target number of workers changes. */
  nworkers_changed: (server: ServerInfo, newValue: number, oldValue: number | null) => MaybePromise<void>;
  /** Master, just before it exits. */
  on_exit: (server: ServerInfo) => MaybePromise<void>;
  /** Worker, with the TLS options before the server is created; returns the options to use. */
  ssl_context: (worker: WorkerSelf, options: TlsOptions) => MaybePromise<TlsOptions | void>;
}

export type HookName = keyof Hooks;

/** Hooks that run inside worker processes; workers import the config file for them. */
export const WORKER_HOOKS: readonly HookName[] = [
  'post_fork',
  'post_worker_init',
  'worker_int',
  'worker_abort',
  'pre_request',
  'post_request',
  'ssl_context',
  'worker_exit',
];
