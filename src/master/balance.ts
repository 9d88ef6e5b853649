/**
 * balance_connections. Workers accept from one shared socket, and the kernel gives a burst
 * of new connections to whichever worker wakes first; keep-alive clients then stay where
 * they landed. A worker holding more than its share of the open connections (by over 10 %)
 * is asked to close the surplus after their current responses; those clients reconnect,
 * most likely to a less busy worker.
 */
import type { WorkerState } from '../hooks.js';
import type { WorkerStats } from '../ipc.js';

/** At most one shed order per worker in this long, so each acts on a fresh count. */
export const BALANCE_EVERY_MS = 500;
/** How long the master gathers worker reports before comparing them. */
export const BALANCE_GATHER_MS = 150;

/** A serving worker as the balance sees it, with its last shed order. */
export interface BalancedWorker {
  state: WorkerState;
  generation: number;
  /** To be replaced (max-requests, memory). */
  outgoing: unknown;
  stats: WorkerStats;
  /** Its process, whose IPC channel carries the order. */
  child: { readonly connected: boolean };
  /** When it was last asked to shed connections, its request count then, and how many. */
  shedAt: number;
  shedAtRequests: number;
  shedCount: number;
}

/** Which workers to ask to close how many connections, given the live workers and the generation serving. */
export function shedOrders<W extends BalancedWorker>(
  serving: readonly W[],
  generation: number,
  now: number,
): Array<{ worker: W; count: number; held: number; total: number }> {
  // While workers are being replaced (reload, TTIN/TTOU, max-requests) the pool is about to
  // change: a booting worker takes its share once ready, and an outgoing worker's clients
  // reconnect when it drains. Moving connections now would only move them twice.
  if (serving.length < 2 || serving.some((w) => w.state === 'booting' || w.outgoing || w.generation !== generation))
    return [];
  const total = serving.reduce((n, w) => n + w.stats.connections, 0);
  const share = Math.ceil(total / serving.length);
  const orders = [];
  for (const w of serving) {
    const held = w.stats.connections;
    if (held <= share * 1.1 || now - w.shedAt < BALANCE_EVERY_MS || !w.child.connected) continue;
    // Connections close after a response: idle ones cannot be moved, so ask again only once
    // the worker has served enough requests to have acted on the last request.
    if (w.stats.requests - w.shedAtRequests < w.shedCount) continue;
    orders.push({ worker: w, count: held - share, held, total });
  }
  return orders;
}
