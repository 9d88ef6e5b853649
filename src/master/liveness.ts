/**
 * When a worker is stuck: booting for longer than `boot_timeout`, or silent (no heartbeat from
 * its event loop) for longer than `timeout`. The arbiter asks the stuck worker's watchdog where
 * it is blocked (worker/watchdog-pipe.cts) and kills it.
 */
import type { Settings } from '../config/settings.js';
import type { WorkerState } from '../hooks.js';

export interface Stuck {
  reason: 'timeout' | 'boot-timeout';
  /** The log line, without where the worker was blocked. */
  message: string;
}

/** Why this worker is stuck at `now`, or null while it is not. */
export function stuck(
  w: { pid: number; state: WorkerState; spawnedAt: number; lastBeat: number },
  limits: Pick<Settings, 'timeout' | 'boot_timeout'>,
  now: number,
): Stuck | null {
  if (w.state === 'booting' && limits.boot_timeout > 0 && now - w.spawnedAt > limits.boot_timeout * 1000) {
    return {
      reason: 'boot-timeout',
      message: `Worker (pid:${w.pid}) did not boot within boot_timeout (${limits.boot_timeout} s)`,
    };
  }
  if (w.state === 'ready' && limits.timeout > 0 && now - w.lastBeat > limits.timeout * 1000) {
    const silent = ((now - w.lastBeat) / 1000).toFixed(1);
    return {
      reason: 'timeout',
      message: `WORKER TIMEOUT (pid:${w.pid}): no heartbeat for ${silent} s (timeout ${limits.timeout} s)`,
    };
  }
  return null;
}

/**
 * Is this worker half way to being stuck: booting for half of `boot_timeout`, or silent for half
 * of `timeout`? Its watchdog thread then gets ready to take the stack (watchdog-thread.cts), so
 * that a healthy worker's thread never wakes up to watch.
 */
export function late(
  w: { state: WorkerState; spawnedAt: number; lastBeat: number },
  limits: Pick<Settings, 'timeout' | 'boot_timeout'>,
  now: number,
): boolean {
  if (w.state === 'booting') return limits.boot_timeout > 0 && now - w.spawnedAt > limits.boot_timeout * 500;
  return w.state === 'ready' && limits.timeout > 0 && now - w.lastBeat > limits.timeout * 500;
}
