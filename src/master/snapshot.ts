/**
 * The master's state as others read it: `tsgun status` (control server and client) and the
 * metrics endpoint. The arbiter builds a snapshot; nothing here depends on the arbiter.
 */
import type { WorkerState } from '../hooks.js';
import type { WorkerStats } from '../ipc.js';

/** Why workers were replaced, for metrics. */
export type RestartReason =
  'crash' | 'app-error' | 'timeout' | 'boot-timeout' | 'memory' | 'max-requests' | 'reload' | 'scale' | 'boot-failure';

/** A worker as `tsgun status` and the metrics see it. */
export interface WorkerSnapshot {
  id: number;
  pid: number;
  generation: number;
  state: WorkerState;
  spawnedAt: number;
  readyAt: number | null;
  stats: WorkerStats;
  cpu: number;
  rss: number;
}

/** The master and its pool as `tsgun status` and the metrics see them. */
export interface ArbiterSnapshot {
  pid: number;
  app: string;
  version: string;
  startedAt: number;
  generation: number;
  target: number;
  reloading: boolean;
  cpu: number;
  rss: number;
  sockets: string[];
  workers: WorkerSnapshot[];
  /** Totals of workers that have exited, so counters stay monotonic. */
  retired: WorkerStats;
  restarts: Partial<Record<RestartReason, number>>;
}

/** The answer to a control command (reload, scale). */
export interface CommandResult {
  ok: boolean;
  message: string;
}
