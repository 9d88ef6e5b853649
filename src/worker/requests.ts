/**
 * What a worker does around each request: count it (for max_requests, status and
 * metrics), run pre_request / post_request, write the access log. The plain path, with
 * none of these on, is one increment and a call.
 */
import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import type { Hooks, WorkerSelf } from '../hooks.js';
import { DURATION_BUCKETS, type WorkerStats } from '../ipc.js';
import type { Logger } from '../log.js';
import type { AccessLog } from './accesslog.js';

export interface InstrumentOptions {
  self: WorkerSelf;
  log: Logger;
  hooks: Partial<Pick<Hooks, 'pre_request' | 'post_request'>>;
  accessLog: AccessLog | null;
  /** Keep per-status and duration counts (for `metrics_bind`). */
  detailed: boolean;
  /** Called once, when the request count reaches max_requests (plus jitter). */
  onQuota: (() => void) | null;
  quota: number;
}

export class RequestStats {
  requests = 0;
  inflight = 0;
  readonly status = [0, 0, 0, 0, 0];
  readonly buckets = new Array<number>(DURATION_BUCKETS.length + 1).fill(0);
  durationSum = 0;

  snapshot(connections: number, upgraded: number): WorkerStats {
    return { requests: this.requests, connections, upgraded, inflight: this.inflight, status: [...this.status], buckets: [...this.buckets], durationSum: this.durationSum };
  }

  record(statusCode: number, seconds: number): void {
    const cls = Math.floor(statusCode / 100) - 1;
    if (cls >= 0 && cls < 5) this.status[cls]!++;
    let i = 0;
    while (i < DURATION_BUCKETS.length && seconds > DURATION_BUCKETS[i]!) i++;
    this.buckets[i]!++;
    this.durationSum += seconds;
  }
}

/** Wrap the app's listener with counting, hooks, metrics and the access log. */
export function instrument(app: RequestListener, stats: RequestStats, opts: InstrumentOptions): RequestListener {
  const { self, log, accessLog, detailed, onQuota, quota } = opts;
  const { pre_request: pre, post_request: post } = opts.hooks;
  const count = (): void => {
    if (++stats.requests === quota) onQuota?.();
  };
  if (!pre && !post && !accessLog && !detailed) {
    return (req, res) => {
      count();
      app(req, res);
    };
  }
  return (req: IncomingMessage, res: ServerResponse) => {
    count();
    stats.inflight++;
    const startedAt = Date.now();
    const t0 = process.hrtime.bigint();
    res.once('close', () => {
      stats.inflight--;
      const micros = Number(process.hrtime.bigint() - t0) / 1e3;
      if (detailed) stats.record(res.statusCode, micros / 1e6);
      accessLog?.write({ req, res, micros, startedAt });
      if (post) {
        try {
          post(self, req, res, micros / 1e3);
        } catch (err) {
          log.error({ err }, 'post_request hook failed');
        }
      }
    });
    if (pre) {
      try {
        pre(self, req);
      } catch (err) {
        log.error({ err }, 'pre_request hook failed');
      }
    }
    app(req, res);
  };
}
