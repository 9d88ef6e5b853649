/**
 * The workers' counters as the master keeps them: the totals of workers that have exited (so
 * the counters `tsgun status` and the metrics show never go down), and why workers were
 * replaced.
 */
import { WorkerExit, type WorkerStats } from '../ipc.js';
import type { StopReason } from './pool.js';
import type { RestartReason } from './snapshot.js';

export function emptyStats(): WorkerStats {
  return {
    requests: 0,
    connections: 0,
    upgraded: 0,
    inflight: 0,
    status: [0, 0, 0, 0, 0],
    buckets: [],
    durationSum: 0,
    appErrors: 0,
  };
}

/** Add an exited worker's last report to the totals of exited workers. */
export function foldStats(into: WorkerStats, s: WorkerStats): void {
  into.requests += s.requests;
  into.durationSum += s.durationSum;
  into.appErrors += s.appErrors;
  s.status.forEach((n, i) => (into.status[i] = (into.status[i] ?? 0) + n));
  s.buckets.forEach((n, i) => (into.buckets[i] = (into.buckets[i] ?? 0) + n));
}

const STOP_RESTARTS: Partial<Record<StopReason, RestartReason>> = {
  timeout: 'timeout',
  'boot-timeout': 'boot-timeout',
  memory: 'memory',
  'max-requests': 'max-requests',
  reload: 'reload',
  'scale down': 'scale',
  'app error': 'app-error',
};

/** How an exited worker ended, as far as the restart counters care. */
export interface WorkerEnding {
  /** The master stopped it (or is stopping), rather than it dying by itself. */
  expected: boolean;
  /** Why it was to be replaced or was stopped: its recycle reason first, then its stop reason. */
  why: StopReason | null;
  /** It reported a boot error, or exited with a boot exit code. */
  bootError: boolean;
  exitCode: number | null;
}

/** Which restart counter an exited worker adds to; none for a stop that replaces nothing (shutdown). */
export function restartReason(end: WorkerEnding): RestartReason | undefined {
  if (end.expected) return STOP_RESTARTS[end.why ?? 'shutdown'];
  const boot = end.bootError || end.exitCode === WorkerExit.APP_LOAD_ERROR || end.exitCode === WorkerExit.BOOT_ERROR;
  return boot ? 'boot-failure' : 'crash';
}
