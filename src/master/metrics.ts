/**
 * Prometheus metrics, served by the master at `/metrics` on `metrics_bind`. Built from
 * what workers report with their heartbeats: the master never touches the request path.
 */
import { unlinkSync } from 'node:fs';
import http from 'node:http';
import { parseBind } from '../config/bind.js';
import { TsgunError } from '../errors.js';
import { DURATION_BUCKETS, type WorkerStats } from '../ipc.js';
import type { Logger } from '../log.js';
import type { ArbiterSnapshot } from './snapshot.js';
import { shedOverload } from './guard.js';

const STATUS_CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx'];

class Exposition {
  private readonly lines: string[] = [];

  metric(name: string, type: 'counter' | 'gauge' | 'histogram', help: string): this {
    this.lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    return this;
  }

  sample(name: string, labels: Record<string, string | number>, value: number): this {
    const l = Object.entries(labels)
      .map(([k, v]) => `${k}="${String(v).replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`)
      .join(',');
    this.lines.push(`${name}${l ? `{${l}}` : ''} ${Number.isFinite(value) ? value : 0}`);
    return this;
  }

  toString(): string {
    return `${this.lines.join('\n')}\n`;
  }
}

/** The `/metrics` body for a snapshot of the arbiter. */
export function renderMetrics(s: ArbiterSnapshot): string {
  const e = new Exposition();
  const series: Array<[string, WorkerStats]> = [
    ...s.workers.map((w): [string, WorkerStats] => [String(w.id), w.stats]),
    ['retired', s.retired],
  ];

  e.metric(
    'tsgun_requests_total',
    'counter',
    'Requests served, by worker and response status class (exited workers are summed as worker="retired").',
  );
  for (const [worker, stats] of series) {
    STATUS_CLASSES.forEach((cls, i) => e.sample('tsgun_requests_total', { worker, status: cls }, stats.status[i] ?? 0));
  }

  e.metric('tsgun_request_duration_seconds', 'histogram', 'Time from request to the end of the response, all workers.');
  let cumulative = 0;
  DURATION_BUCKETS.forEach((le, i) => {
    cumulative += series.reduce((sum, [, st]) => sum + (st.buckets[i] ?? 0), 0);
    e.sample('tsgun_request_duration_seconds_bucket', { le: String(le) }, cumulative);
  });
  cumulative += series.reduce((sum, [, st]) => sum + (st.buckets[DURATION_BUCKETS.length] ?? 0), 0);
  e.sample('tsgun_request_duration_seconds_bucket', { le: '+Inf' }, cumulative);
  e.sample(
    'tsgun_request_duration_seconds_sum',
    {},
    series.reduce((sum, [, st]) => sum + st.durationSum, 0),
  );
  e.sample('tsgun_request_duration_seconds_count', {}, cumulative);

  const appErrorsHelp =
    'Errors the app threw or rejected with: in requests (each answered 500, or its connection cut) and outside them.';
  e.metric('tsgun_app_errors_total', 'counter', appErrorsHelp);
  for (const [worker, stats] of series) e.sample('tsgun_app_errors_total', { worker }, stats.appErrors);

  e.metric('tsgun_requests_in_flight', 'gauge', 'Requests being handled right now.');
  e.sample(
    'tsgun_requests_in_flight',
    {},
    s.workers.reduce((sum, w) => sum + w.stats.inflight, 0),
  );

  e.metric('tsgun_connections', 'gauge', 'Open client connections, by worker.');
  for (const w of s.workers) e.sample('tsgun_connections', { worker: w.id }, w.stats.connections);
  e.metric(
    'tsgun_upgraded_connections',
    'gauge',
    'Open upgraded connections (WebSockets), by worker; not counted in tsgun_connections.',
  );
  for (const w of s.workers) e.sample('tsgun_upgraded_connections', { worker: w.id }, w.stats.upgraded);

  e.metric('tsgun_workers', 'gauge', 'Worker processes by state.');
  for (const state of ['booting', 'ready', 'draining'])
    e.sample('tsgun_workers', { state }, s.workers.filter((w) => w.state === state).length);
  e.metric('tsgun_workers_target', 'gauge', 'The number of workers the master keeps running.');
  e.sample('tsgun_workers_target', {}, s.target);
  e.metric('tsgun_generation', 'gauge', 'The current worker generation (incremented by each reload).');
  e.sample('tsgun_generation', {}, s.generation);

  e.metric('tsgun_worker_restarts_total', 'counter', 'Workers replaced, by reason.');
  for (const reason of [
    'crash',
    'app-error',
    'timeout',
    'boot-timeout',
    'boot-failure',
    'memory',
    'max-requests',
    'reload',
    'scale',
  ] as const) {
    e.sample('tsgun_worker_restarts_total', { reason }, s.restarts[reason] ?? 0);
  }

  e.metric(
    'tsgun_worker_resident_memory_bytes',
    'gauge',
    'Resident memory of each worker (sampled every stats_interval).',
  );
  for (const w of s.workers) e.sample('tsgun_worker_resident_memory_bytes', { worker: w.id, pid: w.pid }, w.rss);
  e.metric(
    'tsgun_worker_cpu_percent',
    'gauge',
    'CPU use of each worker, percent of one core (sampled every stats_interval).',
  );
  for (const w of s.workers) e.sample('tsgun_worker_cpu_percent', { worker: w.id, pid: w.pid }, w.cpu);
  e.metric('tsgun_master_resident_memory_bytes', 'gauge', 'Resident memory of the master.');
  e.sample('tsgun_master_resident_memory_bytes', {}, s.rss);
  return e.toString();
}

export class MetricsServer {
  private constructor(
    private readonly server: http.Server,
    readonly label: string,
    private readonly unixPath: string | null,
  ) {}

  static async start(address: string, snapshot: () => ArbiterSnapshot, log: () => Logger): Promise<MetricsServer> {
    const spec = parseBind(address);
    if (spec.kind === 'fd')
      throw new TsgunError('TSGUN_ERR_CONFIG_VALUE', `metrics_bind ${address}: use HOST:PORT or unix:PATH`);
    // A scrape is one quick request: a connection that has not sent one within seconds is let go.
    const server = http.createServer(
      { headersTimeout: 10_000, requestTimeout: 10_000, connectionsCheckingInterval: 1_000 },
      (req, res) => {
        if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
          res.writeHead(404, { 'content-type': 'text/plain' }).end('tsgun serves metrics at /metrics\n');
          return;
        }
        res
          .writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' })
          .end(renderMetrics(snapshot()));
      },
    );
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) =>
        reject(
          new TsgunError(
            'TSGUN_ERR_BIND',
            `cannot serve metrics on ${address}: ${err.code ?? err.message}; choose another --metrics-bind`,
          ),
        ),
      );
      if (spec.kind === 'unix') server.listen(spec.path, () => resolve());
      else server.listen(spec.port, spec.host, () => resolve());
    });
    server.removeAllListeners('error');
    shedOverload(server, `metrics ${address}`, log);
    const where = server.address();
    const label =
      spec.kind === 'unix'
        ? `unix:${spec.path}`
        : typeof where === 'object' && where
          ? `http://${where.family === 'IPv6' ? `[${where.address}]` : where.address}:${where.port}/metrics`
          : address;
    return new MetricsServer(server, label, spec.kind === 'unix' ? spec.path : null);
  }

  close(): void {
    this.server.close();
    this.server.closeAllConnections();
    if (this.unixPath) {
      try {
        unlinkSync(this.unixPath);
      } catch {
        // Already gone.
      }
    }
  }
}
