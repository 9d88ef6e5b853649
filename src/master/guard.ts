/**
 * The master survives its own bookkeeping (DESIGN.md, "Trust"): supervision is the one
 * thing that must not stop. Its side servers (metrics, control) shed connections they
 * cannot afford, and a process-wide guard logs an error no task caught instead of exiting.
 */
import type net from 'node:net';
import { describeError } from '../errors.js';
import type { Logger } from '../log.js';

/** Most connections one side server holds: the rest of the descriptors are for workers, pipes and /proc. */
export const SIDE_SERVER_CONNECTIONS = 64;

/** How often a repeated warning may be logged again. */
const WARN_EVERY_MS = 60_000;

/** A warning that is logged at most once per WARN_EVERY_MS, with a count of the ones held back. */
export class RateLimitedWarning {
  private last = -Infinity;
  private held = 0;

  constructor(private readonly log: () => Logger) {}

  warn(message: string, err?: unknown): void {
    const now = Date.now();
    if (now - this.last < WARN_EVERY_MS) {
      this.held++;
      return;
    }
    const since = this.held > 0 ? ` (${this.held} more since the last warning)` : '';
    this.last = now;
    this.held = 0;
    this.log().warn(err === undefined ? {} : { err }, `${message}${since}`);
  }
}

/**
 * Cap a side server's connections and keep it listening through accept failures: Node closes
 * a connection over `maxConnections` at once, and an accept that fails for lack of
 * descriptors (EMFILE, ENFILE) is an 'error' on the server, fatal if nobody listens.
 */
export function shedOverload(server: net.Server, what: string, log: () => Logger): void {
  const warning = new RateLimitedWarning(log);
  server.maxConnections = SIDE_SERVER_CONNECTIONS;
  server.on('drop', () => warning.warn(`${what}: over ${SIDE_SERVER_CONNECTIONS} connections; dropping new ones`));
  server.on('error', (err: NodeJS.ErrnoException) => {
    const why = err.code === 'EMFILE' || err.code === 'ENFILE' ? 'out of file descriptors' : describeError(err);
    warning.warn(`${what}: cannot accept a connection (${why}); dropping it`, err);
  });
}

/**
 * Log, with its stack, an error that escaped every task of the master, and carry on.
 * Returns the function that removes the guard (when the master is done).
 */
export function guardProcess(log: () => Logger): () => void {
  const onError = (err: unknown, kind: string): void => {
    try {
      log().error({ err }, `${kind} in the master: ${describeError(err)}; it keeps supervising`);
    } catch {
      // Logging itself failed (no descriptors left): nothing better to do than go on.
    }
  };
  const onException = (err: Error): void => onError(err, 'uncaught exception');
  const onRejection = (reason: unknown): void => onError(reason, 'unhandled rejection');
  process.on('uncaughtException', onException);
  process.on('unhandledRejection', onRejection);
  return () => {
    process.off('uncaughtException', onException);
    process.off('unhandledRejection', onRejection);
  };
}
