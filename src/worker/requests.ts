/**
 * What a worker does around each request: count it (for max_requests, status and
 * metrics), run pre_request / post_request, write the access log, and turn what the app
 * throws or rejects with into a 500 for that request alone. The plain path, with none of
 * the options on, is one increment, a try and a call.
 */
import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import type { Hooks, WorkerSelf } from '../hooks.js';
import { DURATION_BUCKETS, type WorkerStats } from '../ipc.js';
import type { Logger } from '../log.js';
import type { AccessLog } from './accesslog.js';
import type { WorkerContext } from './interface.js';
import { sentStatus } from './sent-status.js';

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
  /** Told of every error the app throws or rejects with while it handles a request (to log and count it). */
  onError: (err: unknown, req: IncomingMessage) => void;
}

export class RequestStats {
  requests = 0;
  inflight = 0;
  readonly status = [0, 0, 0, 0, 0];
  readonly buckets = new Array<number>(DURATION_BUCKETS.length + 1).fill(0);
  durationSum = 0;
  appErrors = 0;

  snapshot(connections: number, upgraded: number): WorkerStats {
    const { requests, inflight, durationSum, appErrors } = this;
    return {
      requests,
      connections,
      upgraded,
      inflight,
      status: [...this.status],
      buckets: [...this.buckets],
      durationSum,
      appErrors,
    };
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

/**
 * The app failed this request: a 500 if nothing of the response is out yet, else the
 * connection is cut (a truncated response must not look complete); other requests go on.
 */
function failed(err: unknown, req: IncomingMessage, res: ServerResponse, onError: InstrumentOptions['onError']): void {
  onError(err, req);
  if (res.writableEnded) return;
  if (res.headersSent) return void res.destroy();
  try {
    for (const name of res.getHeaderNames()) res.removeHeader(name);
    res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8', 'content-length': '21' });
    res.end('Internal Server Error');
  } catch {
    res.destroy();
  }
}

/** Call the app: a throw, or a promise it returns that rejects, fails only this request. */
function guard(app: RequestListener, onError: InstrumentOptions['onError']): RequestListener {
  return (req, res) => {
    try {
      const result = app(req, res) as unknown;
      if (result !== undefined && typeof (result as PromiseLike<unknown> | null)?.then === 'function') {
        (result as PromiseLike<unknown>).then(undefined, (err: unknown) => failed(err, req, res, onError));
      }
    } catch (err) {
      failed(err, req, res, onError);
    }
  };
}

/** Wrap the app's listener with counting, hooks, metrics, the access log and its error guard. */
export function instrument(listener: RequestListener, stats: RequestStats, opts: InstrumentOptions): RequestListener {
  const { self, log, accessLog, detailed, onQuota, quota } = opts;
  const { pre_request: pre, post_request: post } = opts.hooks;
  const app = guard(listener, opts.onError);
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
      if (detailed) stats.record(sentStatus(res), micros / 1e6);
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

/**
 * Requests the worker answers itself (rejected by a limit, or by Node's parser) are logged and
 * counted by status like any other, but are not requests of the app (max_requests, hooks).
 */
export function rejections(
  stats: RequestStats,
  opts: Pick<InstrumentOptions, 'accessLog' | 'detailed'>,
): Pick<WorkerContext, 'rejected' | 'unparsed'> {
  const { accessLog, detailed } = opts;
  if (!accessLog && !detailed) return {};
  return {
    rejected: (req, res) => {
      const startedAt = Date.now();
      const t0 = process.hrtime.bigint();
      res.once('close', () => {
        const micros = Number(process.hrtime.bigint() - t0) / 1e3;
        if (detailed) stats.record(res.statusCode, micros / 1e6);
        accessLog?.write({ req, res, micros, startedAt });
      });
    },
    unparsed: (socket, status, rawPacket) => {
      if (detailed) stats.record(status, 0);
      accessLog?.unparsed(socket, status, rawPacket);
    },
  };
}
