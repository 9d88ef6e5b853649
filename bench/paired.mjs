#!/usr/bin/env node
// Paired comparison: tsgun and Node's cluster module (or any of the servers below) under the
// same load AT THE SAME TIME, one wrk per server, all started together. On a shared machine
// with CPU steal, figures of one server measured one after another vary by ±20 %; measured
// side by side, every server sees the same noise, so the per-round ratio is stable. Reports,
// per workload, each server's medians and the median of the per-round ratios to the
// reference (cluster; else the second server listed).
//
//   node bench/paired.mjs [--servers tsgun,cluster] [--workloads hello,json,...]
//                         [--workers 1,2,4] [--rounds 7] [--duration 5] [--warmup 1]
//                         [--out bench/results/paired.md] [--tsgun-root DIR] [--pin] [--no-write]
//
// Servers: tsgun, tsgun-fetch, tsgun-nobal, cluster (2 workers each, or each count of
// --workers in turn), node; tsgun-w1 (tsgun -w 1, against node: what a tsgun worker adds to
// a bare node:http process); and, one process each on the same Hono app, tsgun-fetch-w1
// (tsgun -w 1) and hono-node (@hono/node-server); node-front and node-loaded (node:http fed
// by a net.Server front as a tsgun worker is, then with a worker's modules loaded: where tsgun
// -w 1's cost beyond node goes, bench/apps/node-front.mjs). Workloads (bench/run.mjs's): hello, json,
// json-close, stream, post, c1000. Prints the targets of the servers given with pass or fail,
// from the same run. Writes --out (a .md, and a .json next to it) unless --no-write. Needs a
// built tsgun (built here if dist/ is missing; --tsgun-root runs another built checkout's) and
// wrk (apt-get). Every server started here is stopped at the end, on error and on Ctrl-C.
//
// --pin: server i (every thread of its process tree) and the wrk of server i+1 share one CPU
// (taskset), rotating by round, so that each server has one CPU beside one wrk, the same for
// all, rather than wherever the scheduler puts them: on a 2-core machine unpinned rounds are
// bimodal (a server's CPU per request near doubles in rounds where it shares a core with its
// own wrk), and one virtual CPU can be slower than the other for a while. At most as many
// servers as CPUs; each server then has one CPU, whatever its worker count.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  ROOT,
  WORKLOADS,
  childrenOf,
  ensureWrk,
  fmtInt,
  freePort,
  gitRev,
  httpStatus,
  interrupted,
  log,
  median,
  onCleanup,
  pkgVersion,
  rel,
  runMain,
  setup,
  snapshotTsgun,
  spawnServer,
  stopGroup,
  tools,
  treeTicks,
  waitFor,
  wrk,
  wrkCommand,
  wrkVersion,
} from './lib.mjs';

const { values: opts } = parseArgs({
  options: {
    servers: { type: 'string', default: 'tsgun,cluster' },
    workloads: { type: 'string', default: 'hello,json,json-close,stream,post,c1000' },
    rounds: { type: 'string', default: '7' },
    duration: { type: 'string', default: '5' },
    warmup: { type: 'string', default: '1' },
    workers: { type: 'string', default: '' },
    out: { type: 'string', default: path.join('bench', 'results', 'paired.md') },
    'tsgun-root': { type: 'string', default: '' },
    pin: { type: 'boolean', default: false },
    'no-write': { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (opts.help) {
  const lines = readFileSync(fileURLToPath(import.meta.url), 'utf8')
    .split('\n')
    .slice(1);
  const header = lines.slice(
    0,
    lines.findIndex((l) => !l.startsWith('//')),
  );
  process.stdout.write(header.map((l) => l.replace(/^\/\/ ?/, '')).join('\n') + '\n');
  process.exit(0);
}
const ROUNDS = Number(opts.rounds);
const DURATION = Number(opts.duration);
const WARMUP = Number(opts.warmup);
if (!(ROUNDS >= 1) || !(DURATION >= 1) || !(WARMUP >= 0)) {
  process.stderr.write('Error: --rounds must be >= 1, --duration >= 1 (seconds), --warmup >= 0\n');
  process.exit(2);
}
const COUNTS = opts.workers ? opts.workers.split(',').map(Number) : [null];
if (COUNTS.some((n) => n !== null && !(Number.isInteger(n) && n >= 1))) {
  process.stderr.write('Error: --workers takes worker counts, such as 1,2,4\n');
  process.exit(2);
}
const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;
const OUT_MD = path.resolve(ROOT, opts.out);
const OUT_JSON = OUT_MD.replace(/\.md$/, '') + '.json';

// ---- workloads: bench/run.mjs's (not imported: importing run.mjs runs it) -------------------

// ---- /proc ----------------------------------------------------------------------------------

/**
 * CPU ms a tree spent between two treeTicks() samples: every process alive at the end, from 0
 * if it started in between. Processes reaped in between are lost (the servers keep theirs).
 */
const treeCpuMs = (before, after) =>
  (Object.entries(after).reduce((s, [pid, t]) => s + t - (before[pid] ?? 0), 0) * 1000) / CLK_TCK;

/** The machine's aggregate CPU counters (/proc/stat's "cpu" line), for the steal share of a round. */
function cpuTimes() {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal (guest time is already in user/nice).
  return { total: f.slice(0, 8).reduce((a, b) => a + b, 0), steal: f[7] ?? 0, idle: f[3] + (f[4] ?? 0) };
}
const share = (a, b, key) => (b.total > a.total ? (b[key] - a[key]) / (b.total - a.total) : null);

// ---- tsgun ----------------------------------------------------------------------------------

// ---- servers --------------------------------------------------------------------------------

const START_MS = 30_000;

/** One server: a process group from spawnServer(), started once and kept for every round. */
class Server {
  constructor(def) {
    this.def = def;
    this.id = def.id;
  }
  async start() {
    this.port = await freePort();
    const [cmd, args, env] = this.spawnArgs();
    this.proc = spawnServer(this.id, cmd, args, env);
    this.forget = onCleanup(() => this.stop());
    await this.ready();
    await waitFor(
      `${this.id}: HTTP 200`,
      async () => {
        this.checkAlive();
        return (await httpStatus(this.port, 1000)) === 200;
      },
      START_MS,
    );
  }
  checkAlive() {
    if (this.proc.child.exitCode !== null)
      throw new Error(
        `${this.id} exited with ${this.proc.child.exitCode}: ${this.proc.text().trim().split('\n').slice(-3).join(' / ')}`,
      );
  }
  async ready() {}
  /** The pid whose process tree counts: the process we spawned. */
  get pid() {
    return this.proc.child.pid;
  }
  ticks() {
    return treeTicks(this.pid);
  }
  /** --pin: every thread of every process of the server's tree onto one CPU. */
  pin(cpu) {
    for (const pid of Object.keys(treeTicks(this.pid)))
      spawnSync('taskset', ['-a', '-p', '-c', String(cpu), pid], { stdio: 'ignore' });
  }
  async stop() {
    if (this.stopped || !this.proc) return;
    this.stopped = true;
    this.forget?.();
    await stopGroup(this.pid);
  }
}

class TsgunServer extends Server {
  get workers() {
    return this.def.workers ?? 2;
  }
  args() {
    return ['-w', String(this.workers), '-b', `127.0.0.1:${this.port}`, ...(this.def.args ?? []), this.def.app];
  }
  command() {
    return `bin/tsgun ${this.args().join(' ').replace(`:${this.port}`, ':$PORT')}`;
  }
  spawnArgs() {
    return [process.execPath, [tools.tsgun, ...this.args()]];
  }
  async ready() {
    await waitFor(
      `${this.id}: Listening at`,
      () => {
        this.checkAlive();
        return this.proc.text().includes(`Listening at: http://127.0.0.1:${this.port}`);
      },
      START_MS,
    );
    await waitFor(
      `${this.id}: ${this.workers} worker(s) booted`,
      () => (this.proc.text().match(/Booting worker with pid/g) ?? []).length >= this.workers,
      START_MS,
    );
  }
}

class ClusterServer extends Server {
  get workers() {
    return this.def.workers ?? 2;
  }
  command() {
    return `PORT=$PORT WORKERS=${this.workers} node bench/apps/cluster.mjs`;
  }
  spawnArgs() {
    return [process.execPath, ['bench/apps/cluster.mjs'], { PORT: String(this.port), WORKERS: String(this.workers) }];
  }
  async ready() {
    // HTTP 200 proves one worker; wait for all to be forked too.
    await waitFor(
      `${this.id}: ${this.workers} workers forked`,
      () => {
        this.checkAlive();
        return childrenOf(this.pid).length >= this.workers;
      },
      START_MS,
    );
  }
}

class SingleServer extends Server {
  command() {
    const env = Object.entries(this.def.env ?? {})
      .map(([k, v]) => `${k}=${v} `)
      .join('');
    return `PORT=$PORT ${env}node ${this.def.script}`;
  }
  spawnArgs() {
    return [process.execPath, [this.def.script], { PORT: String(this.port), ...this.def.env }];
  }
}

// The same ids, apps and commands as bench/run.mjs. `scales`: --workers sets its worker count.
const SERVERS = [
  { id: 'tsgun', label: 'tsgun -w N, listener', kind: TsgunServer, app: 'bench/apps/suite.mjs:default', scales: true },
  {
    id: 'tsgun-fetch',
    label: 'tsgun -w N, fetch (Hono)',
    kind: TsgunServer,
    app: 'bench/apps/hono.mjs:default',
    scales: true,
  },
  // What connection balancing costs or gains, next to the default.
  {
    id: 'tsgun-nobal',
    label: 'tsgun -w N --no-balance-connections, listener',
    kind: TsgunServer,
    app: 'bench/apps/suite.mjs:default',
    args: ['--no-balance-connections'],
    scales: true,
  },
  { id: 'cluster', label: 'node:cluster RR, N workers', kind: ClusterServer, scales: true },
  { id: 'node', label: 'node:http, 1 process', kind: SingleServer, script: 'bench/apps/node-http.mjs' },
  // What a tsgun worker adds to a bare node:http process on the same listener (compare with node).
  { id: 'tsgun-w1', label: 'tsgun -w 1, listener', kind: TsgunServer, app: 'bench/apps/suite.mjs:default', workers: 1 },
  // The fetch adapter against the public one, one process each, on the same Hono app.
  {
    id: 'tsgun-fetch-w1',
    label: 'tsgun -w 1, fetch (Hono)',
    kind: TsgunServer,
    app: 'bench/apps/hono.mjs:default',
    workers: 1,
  },
  {
    id: 'hono-node',
    label: '@hono/node-server, 1 process',
    kind: SingleServer,
    script: 'bench/apps/hono-node-server.mjs',
  },
  // Where tsgun -w 1's cost beyond node goes: node:http fed by a front as a worker is (against
  // node), then with a worker's modules loaded too (against node, or tsgun-w1 against it).
  {
    id: 'node-front',
    label: 'node:http behind a net.Server front, 1 process',
    kind: SingleServer,
    script: 'bench/apps/node-front.mjs',
  },
  {
    id: 'node-loaded',
    label: "node-front with tsgun's worker modules and pino loaded, 1 process",
    kind: SingleServer,
    script: 'bench/apps/node-front.mjs',
    env: { NODE_LOADED: '1' },
  },
];

// ---- measurement ----------------------------------------------------------------------------

/**
 * One round: one wrk per server, all spawned in the same tick, with every server's process
 * tree CPU sampled just before and just after. `first` rotates which wrk is spawned first.
 * A server whose wrk failed gets { error }.
 */
async function round(servers, w, seconds, first = 0) {
  const order = [...servers.slice(first), ...servers.slice(0, first)];
  if (opts.pin) {
    // Server i and the wrk of server i+1 on CPU (i + first): each server has a CPU of its own
    // beside one wrk, and the CPUs rotate by round, since one virtual CPU can be slower than
    // another for a while (a busy neighbour on the host).
    servers.forEach((s, i) => {
      s.pin((i + first) % servers.length);
      s.wrkCpu = (i + 1 + first) % servers.length;
    });
  }
  const load = os.loadavg()[0];
  const machine0 = cpuTimes();
  const ticks0 = new Map(servers.map((s) => [s, s.ticks()]));
  const settled = await Promise.allSettled(order.map((s) => wrk(w, s.port, seconds, null, s.wrkCpu)));
  const machine1 = cpuTimes();
  const out = { load, steal: share(machine0, machine1, 'steal'), idle: share(machine0, machine1, 'idle'), servers: {} };
  for (const [i, s] of order.entries()) {
    const cpuMs = treeCpuMs(ticks0.get(s), s.ticks());
    const r = settled[i];
    if (r.status === 'rejected') {
      out.servers[s.id] = { error: r.reason.message.split('\n')[0] };
      continue;
    }
    const x = r.value;
    out.servers[s.id] = {
      requests: x.requests,
      rps: x.rps,
      p50: x.p50_us / 1000,
      p99: x.p99_us / 1000,
      errors: x.failed,
      errorKinds: { connect: x.connect, read: x.read, write: x.write, timeout: x.timeout, status: x.status },
      cpuMs,
      cpuPerReq: x.requests ? (cpuMs * 1000) / x.requests : null, // µs
    };
  }
  return out;
}

/** Per-round ratios of server `id` to another (`ref`): req/s, p99, CPU per request. */
function ratios(r, id, ref) {
  const a = r.servers[id];
  const b = r.servers[ref];
  if (!a || !b || a.error || b.error) return null;
  const q = (x, y) => (x != null && y ? x / y : null);
  return { rps: q(a.rps, b.rps), p99: q(a.p99, b.p99), cpuPerReq: q(a.cpuPerReq, b.cpuPerReq) };
}

function summarize(rounds, servers, ref) {
  const per = {};
  for (const s of servers) {
    const ok = rounds.map((r) => r.servers[s.id]).filter((x) => x && !x.error);
    per[s.id] = {
      rounds: ok.length,
      failedRounds: rounds.length - ok.length,
      rps: median(ok.map((x) => x.rps)),
      p50: median(ok.map((x) => x.p50)),
      p99: median(ok.map((x) => x.p99)),
      cpuPerReq: median(ok.map((x) => x.cpuPerReq)),
      errors: ok.reduce((n, x) => n + x.errors, 0),
    };
    if (ref && s.id !== ref) per[s.id].ratio = pairRatio(rounds, s.id, ref);
  }
  return per;
}

/**
 * With --pin, the ratios of two consecutive rounds (the servers on swapped CPUs) as one: their
 * geometric mean, in which what one CPU does to whichever server it holds cancels out. With two
 * servers, rounds 1+2, 3+4, ...; a last odd round is left out.
 */
function pinnedPairs(rs) {
  const out = [];
  const g = (a, b) => (a != null && b != null ? Math.sqrt(a * b) : null);
  for (let i = 0; i + 1 < rs.length; i += 2) {
    const [a, b] = [rs[i], rs[i + 1]];
    if (a && b) out.push({ rps: g(a.rps, b.rps), p99: g(a.p99, b.p99), cpuPerReq: g(a.cpuPerReq, b.cpuPerReq) });
  }
  return out;
}

/**
 * The medians (and the req/s range) of the per-round ratios of `id` to `other`, over the rounds
 * where both ran; with --pin and two servers, of the rotation pairs' ratios (pinnedPairs()).
 */
function pairRatio(rounds, id, other) {
  const each = rounds.map((r) => ratios(r, id, other));
  const rs =
    opts.pin && rounds[0] && Object.keys(rounds[0].servers).length === 2 ? pinnedPairs(each) : each.filter(Boolean);
  const rps = rs.map((x) => x.rps).filter((x) => x != null);
  return {
    rps: median(rps),
    rpsMin: rps.length ? Math.min(...rps) : null,
    rpsMax: rps.length ? Math.max(...rps) : null,
    p99: median(rs.map((x) => x.p99)),
    cpuPerReq: median(rs.map((x) => x.cpuPerReq)),
  };
}

// ---- targets --------------------------------------------------------------------------------

/** Workloads over keep-alive connections: the ones the ≥ 0.97 / CPU / p99 targets are for. */
const KEEPALIVE = new Set(['hello', 'json', 'stream', 'post', 'c1000']);

/**
 * The targets (issues 21 and the Performance issue) that the servers and workloads of this run
 * can judge, each with its figure and pass or fail: medians of per-round ratios, so one run
 * says it. tsgun ÷ cluster: req/s ≥ 0.97, CPU/req ≤ 1.03 and p99 ≤ 1.10 on every keep-alive
 * workload, req/s ≥ 1.3 with a new connection per request; tsgun -w 1 ÷ bare node:http:
 * req/s ≥ 0.97 and CPU/req ≤ 1.03; the fetch shape ≥ 0.85 of the listener shape (json).
 */
function targets(results, ids) {
  const rows = [];
  const has = (...xs) => xs.every((x) => ids.includes(x));
  const check = (pair, w, measure, figure, op, bound) => {
    const pass = figure == null ? null : op === '≥' ? figure >= bound : figure <= bound;
    rows.push({ pair, workload: w, measure, figure, target: `${op} ${bound.toFixed(2)}`, pass });
  };
  for (const { workload: w, rounds } of results) {
    if (has('tsgun', 'cluster')) {
      const r = pairRatio(rounds, 'tsgun', 'cluster');
      if (KEEPALIVE.has(w.id)) {
        check('tsgun ÷ cluster', w.id, 'req/s', r.rps, '≥', 0.97);
        check('tsgun ÷ cluster', w.id, 'CPU/req', r.cpuPerReq, '≤', 1.03);
        check('tsgun ÷ cluster', w.id, 'p99', r.p99, '≤', 1.1);
      } else if (w.id === 'json-close') {
        check('tsgun ÷ cluster', w.id, 'req/s', r.rps, '≥', 1.3);
      }
    }
    if (has('tsgun-w1', 'node')) {
      const r = pairRatio(rounds, 'tsgun-w1', 'node');
      check('tsgun -w 1 ÷ node:http', w.id, 'req/s', r.rps, '≥', 0.97);
      check('tsgun -w 1 ÷ node:http', w.id, 'CPU/req', r.cpuPerReq, '≤', 1.03);
    }
    if (w.id === 'json') {
      if (has('tsgun-fetch', 'tsgun'))
        check('tsgun fetch ÷ listener', w.id, 'req/s', pairRatio(rounds, 'tsgun-fetch', 'tsgun').rps, '≥', 0.85);
      if (has('tsgun-fetch-w1', 'tsgun-w1'))
        check(
          'tsgun -w 1 fetch ÷ listener',
          w.id,
          'req/s',
          pairRatio(rounds, 'tsgun-fetch-w1', 'tsgun-w1').rps,
          '≥',
          0.85,
        );
    }
  }
  return rows;
}

const passText = (x) => (x === null ? '—' : x ? 'pass' : '**fail**');

function targetsTable(rows) {
  if (rows.length === 0) return '(no target applies to these servers and workloads)';
  return [
    '| pair | workload | measure | median of per-round ratios | target | result |',
    '|---|---|---|---:|---|---|',
    ...rows.map(
      (t) => `| ${t.pair} | ${t.workload} | ${t.measure} | ${fmt(t.figure, 3)} | ${t.target} | ${passText(t.pass)} |`,
    ),
  ].join('\n');
}

/** tsgun ÷ cluster at each worker count (--workers), one row per count and workload. */
function byWorkersTable(runs) {
  const out = [
    '| workers | workload | tsgun req/s | cluster req/s | tsgun ÷ cluster req/s (median) | (min–max) | CPU/req ratio | p99 ratio |',
    '|---:|---|---:|---:|---:|---:|---:|---:|',
  ];
  for (const { workers, results } of runs) {
    for (const { workload: w, rounds, summary } of results) {
      const r = pairRatio(rounds, 'tsgun', 'cluster');
      out.push(
        `| ${workers} | ${w.id} | ${fmtInt(summary.tsgun?.rps)} | ${fmtInt(summary.cluster?.rps)} | ${fmt(r.rps, 3)} | ${fmt(r.rpsMin, 2)}–${fmt(r.rpsMax, 2)} | ${fmt(r.cpuPerReq, 3)} | ${fmt(r.p99, 2)} |`,
      );
    }
  }
  return out.join('\n');
}

// ---- report ---------------------------------------------------------------------------------

const fmt = (n, d = 1) => (n == null ? '—' : n.toFixed(d));

function summaryTable(results, servers, ref) {
  const vs = ref ? ` ÷ ${ref}` : '';
  const out = [
    `| workload | server | req/s | p99 ms | CPU µs/req | errors | req/s${vs} (median) | req/s${vs} (min–max) | p99${vs} | CPU/req${vs} |`,
    '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const { workload: w, summary } of results) {
    for (const s of servers) {
      const x = summary[s.id];
      const r = x.ratio;
      const failed = x.failedRounds ? ` (${x.failedRounds} round(s) failed)` : '';
      out.push(
        `| ${w.id} | ${s.id} | ${fmtInt(x.rps)} | ${fmt(x.p99, 1)} | ${fmt(x.cpuPerReq, 0)} | ${fmtInt(x.errors)}${failed} | ${r ? fmt(r.rps, 2) : s.id === ref ? '(ref)' : '—'} | ${r ? `${fmt(r.rpsMin, 2)}–${fmt(r.rpsMax, 2)}` : ''} | ${r ? fmt(r.p99, 2) : ''} | ${r ? fmt(r.cpuPerReq, 2) : ''} |`,
      );
    }
  }
  return out.join('\n');
}

function roundsTable({ rounds }, servers, ref) {
  const others = servers.filter((s) => s.id !== ref);
  const out = [
    `| round | load | steal | idle | ${servers.map((s) => `${s.id} req/s`).join(' | ')} | ${servers.map((s) => `${s.id} p99 ms`).join(' | ')} | ${servers.map((s) => `${s.id} CPU µs/req`).join(' | ')} |${ref ? ` ${others.map((s) => `${s.id} ÷ ${ref} req/s`).join(' | ')} |` : ''}`,
    `|---:|---:|---:|---:|${servers.map(() => '---:').join('|')}|${servers.map(() => '---:').join('|')}|${servers.map(() => '---:').join('|')}|${ref ? `${others.map(() => '---:').join('|')}|` : ''}`,
  ];
  const cell = (r, s, f) => (r.servers[s.id]?.error ? 'error' : f(r.servers[s.id]));
  for (const [i, r] of rounds.entries()) {
    const pctOf = (x) => (x == null ? '—' : `${Math.round(x * 100)} %`);
    out.push(
      `| ${i + 1} | ${r.load.toFixed(2)} | ${pctOf(r.steal)} | ${pctOf(r.idle)} | ${servers.map((s) => cell(r, s, (x) => fmtInt(x.rps))).join(' | ')} | ${servers.map((s) => cell(r, s, (x) => fmt(x.p99, 1))).join(' | ')} | ${servers.map((s) => cell(r, s, (x) => fmt(x.cpuPerReq, 0))).join(' | ')} |${ref ? ` ${others.map((s) => fmt(ratios(r, s.id, ref)?.rps, 2)).join(' | ')} |` : ''}`,
    );
  }
  return out.join('\n');
}

function commandLine() {
  const cmd = ['node bench/paired.mjs'];
  if (opts.servers !== 'tsgun,cluster') cmd.push(`--servers ${opts.servers}`);
  if (opts.workloads !== 'hello,json,json-close,stream,post,c1000') cmd.push(`--workloads ${opts.workloads}`);
  if (opts.workers) cmd.push(`--workers ${opts.workers}`);
  if (ROUNDS !== 7) cmd.push(`--rounds ${ROUNDS}`);
  if (DURATION !== 5) cmd.push(`--duration ${DURATION}`);
  if (WARMUP !== 1) cmd.push(`--warmup ${WARMUP}`);
  if (opts.pin) cmd.push('--pin');
  if (opts.out !== path.join('bench', 'results', 'paired.md')) cmd.push(`--out ${opts.out}`);
  if (opts['tsgun-root']) cmd.push(`--tsgun-root ${opts['tsgun-root']}`);
  return cmd.join(' ');
}

const countTitle = (workers) => (workers == null ? '' : ` — ${workers} worker(s)`);

function report({ runs, ref, meta }) {
  const servers = runs[0].servers;
  const out = [
    '# Paired comparison',
    '',
    `Generated by \`${commandLine()}\` on ${meta.started} UTC.`,
    '',
    `- Machine: ${meta.machine}; open files (ulimit -n): ${meta.nofile}`,
    `- Load average before: ${meta.loadBefore}; after: ${meta.loadAfter}; CPU steal during the run: ${meta.steal == null ? '—' : `${(meta.steal * 100).toFixed(0)} %`}`,
    `- Versions: ${meta.versions.join('; ')}`,
    `- Every server started once${runs.length > 1 ? ' per worker count' : ''} and kept for all rounds; per workload a ${WARMUP} s warm-up, then ${ROUNDS} round(s) of ${DURATION} s, all servers loaded at the same time (one wrk each)${opts.pin ? '; pinned (--pin): server i and the wrk of server i+1 on CPU i + round, rotating (taskset); with two servers the ratios are medians over pairs of rounds (the geometric mean of each pair, which cancels a CPU slower than the other)' : ''}`,
    '',
  ];
  if (runs.length > 1 && servers.some((s) => s.id === 'tsgun') && servers.some((s) => s.id === 'cluster')) {
    out.push('## Throughput by worker count', '', byWorkersTable(runs), '');
  }
  for (const { workers, results, servers: ss } of runs) {
    out.push(
      `## Targets${countTitle(workers)}`,
      '',
      targetsTable(
        targets(
          results,
          ss.map((s) => s.id),
        ),
      ),
      '',
    );
  }
  for (const { workers, results, servers: ss } of runs) {
    out.push(`## Summary${countTitle(workers)}`, '', summaryTable(results, ss, ref), '');
  }
  out.push(
    `**req/s, p99, CPU µs/req**: medians over the rounds of each server's own figures. **errors**: wrk's socket errors (connect + read + write + timeout) + responses with status > 399, all rounds. **CPU µs/req**: utime + stime of the server's whole process tree (from /proc, over the round) ÷ the requests wrk counted.${ref ? ` **÷ ${ref}**: the median (and the range) of the per-round ratios to ${ref}, measured in the same round — the figures to compare; for p99 and CPU/req below 1 is better.` : ''} **Targets**: the same medians of per-round ratios, for the pairs the issue states targets for.`,
    '',
    "Reading the numbers: all servers and all wrks share the machine's CPUs, so absolute figures are lower than each server alone, and a server that needs less CPU per request can serve more of the shared load. The per-round ratio removes what the servers share (CPU steal, other work on the machine); it does not remove what they compete for.",
    '',
    '## Commands',
    '',
    'Servers (PORT: a free port chosen by the script):',
    '',
    ...runs.flatMap(({ servers: ss }) =>
      ss.map((s) => `- \`${s.id}\` (${s.def.label.replace('N', String(s.workers ?? 'N'))}): \`${s.command()}\``),
    ),
    '',
    'Load (one wrk per server per round, all spawned together):',
    '',
    ...runs[0].results.map(({ workload: w }) => `- \`${w.id}\` (${w.title}): \`${wrkCommand(w, DURATION)}\``),
    '',
    '## Per round',
    '',
    "**load**: the 1-minute load average when the round started; **steal**, **idle**: shares of the machine's CPU time during the round (/proc/stat).",
    '',
  );
  for (const { workers, results, servers: ss } of runs) {
    for (const res of results)
      out.push(
        `### ${res.workload.id}: ${res.workload.title}${countTitle(workers)}`,
        '',
        roundsTable(res, ss, ref),
        '',
      );
  }
  return out.join('\n');
}

// ---- main -----------------------------------------------------------------------------------

/** Start the servers, run every workload's rounds against them all at once, stop them. */
async function measure(defs, workloads, ref) {
  const servers = defs.map((d) => new d.kind(d));
  const cpus = os.availableParallelism?.() ?? os.cpus().length;
  if (opts.pin && servers.length > cpus)
    throw new Error(`--pin: ${servers.length} servers need as many CPUs; this machine has ${cpus}`);
  log(
    `starting ${servers.map((s) => `${s.id}${s.workers ? ` (${s.workers} worker(s))` : ''}`).join(', ')}; load average ${os
      .loadavg()
      .map((x) => x.toFixed(2))
      .join(' ')}`,
  );
  try {
    for (const s of servers) {
      await s.start();
      log(`  ${s.id}: port ${s.port}, pid ${s.pid}`);
    }
    const results = [];
    for (const w of workloads) {
      if (interrupted) return null;
      if (WARMUP > 0) {
        const warm = await round(servers, w, WARMUP);
        for (const [id, x] of Object.entries(warm.servers)) if (x.error) log(`warm-up ${w.id} ${id}: ${x.error}`);
      }
      const rounds = [];
      for (let i = 0; i < ROUNDS; i++) {
        if (interrupted) return null;
        // Spawn order rotates, so that no server's wrk is always the first to connect.
        const r = await round(servers, w, DURATION, i % servers.length);
        if (interrupted) return null; // its wrks were killed: nothing to log
        rounds.push(r);
        const parts = servers.map((s) => {
          const x = r.servers[s.id];
          return x.error
            ? `${s.id} error: ${x.error}`
            : `${s.id} ${fmtInt(x.rps)} req/s p99 ${fmt(x.p99, 1)} ms ${fmt(x.cpuPerReq, 0)} µs/req${x.errors ? ` errors ${x.errors}` : ''}`;
        });
        const ratio = ref
          ? servers.filter((s) => s.id !== ref).map((s) => `${s.id}/${ref} ${fmt(ratios(r, s.id, ref)?.rps, 2)}`)
          : [];
        log(
          `${w.id.padEnd(10)} ${i + 1}/${ROUNDS}  load ${r.load.toFixed(2)} steal ${Math.round((r.steal ?? 0) * 100)} %  ${parts.join(' | ')}${ratio.length ? `  => ${ratio.join(' ')}` : ''}`,
        );
      }
      results.push({ workload: w, rounds, summary: summarize(rounds, servers, ref) });
    }
    return { servers, results };
  } finally {
    for (const s of servers) await s.stop();
  }
}

async function main() {
  const want = opts.servers.split(',').filter(Boolean);
  const unknownServers = want.filter((id) => !SERVERS.some((s) => s.id === id));
  const wantW = opts.workloads.split(',').filter(Boolean);
  const unknownWorkloads = wantW.filter((id) => !WORKLOADS.some((w) => w.id === id));
  if (unknownServers.length || unknownWorkloads.length || want.length === 0 || wantW.length === 0) {
    throw new Error(
      `unknown or missing --servers/--workloads: ${[...unknownServers, ...unknownWorkloads].join(', ') || '(empty)'}; servers: ${SERVERS.map((s) => s.id).join(', ')}; workloads: ${WORKLOADS.map((w) => w.id).join(', ')}`,
    );
  }
  // In the order given: the first is the one compared, the reference is cluster or the second.
  const defs = [...new Set(want)].map((id) => SERVERS.find((s) => s.id === id));
  const workloads = [...new Set(wantW)].map((id) => WORKLOADS.find((w) => w.id === id));
  const ref = defs.some((d) => d.id === 'cluster') ? 'cluster' : (defs[1]?.id ?? null);

  setup({ logs: 'paired-logs.tmp', tmpPrefix: 'tsgun-paired-' });
  tools.wrk = await ensureWrk();
  const tsgunRoot = opts['tsgun-root'] ? path.resolve(opts['tsgun-root']) : ROOT;
  if (defs.some((d) => d.kind === TsgunServer)) tools.tsgun = await snapshotTsgun(tsgunRoot);

  const meta = {
    started: new Date().toISOString().slice(0, 16).replace('T', ' '),
    machine: `${os.cpus().length} CPUs (nproc ${spawnSync('nproc', { encoding: 'utf8' }).stdout.trim()}), ${os.cpus()[0]?.model ?? 'unknown CPU'}, ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB, ${os.type()} ${os.release()}`,
    nofile: spawnSync('sh', ['-c', 'ulimit -n'], { encoding: 'utf8' }).stdout.trim(),
    loadBefore: os
      .loadavg()
      .map((x) => x.toFixed(2))
      .join(' '),
    versions: [
      `node ${process.version}`,
      `tsgun ${pkgVersion(tsgunRoot)} (git ${gitRev(tsgunRoot)}${tsgunRoot !== ROOT ? `, from ${tsgunRoot}` : ''}${tools.tsgunBuilt ? `; dist/ built ${tools.tsgunBuilt} UTC, run from a copy made at the start` : ''})`,
      wrkVersion(),
      ...(defs.some((d) => d.app?.startsWith('bench/apps/hono') || d.id === 'hono-node')
        ? [`hono ${pkgVersion(path.join(ROOT, 'node_modules', 'hono'))}`]
        : []),
      ...(defs.some((d) => d.id === 'hono-node')
        ? [`@hono/node-server ${pkgVersion(path.join(ROOT, 'node_modules', '@hono', 'node-server'))}`]
        : []),
    ],
  };

  const runs = [];
  const machine0 = cpuTimes();
  for (const workers of COUNTS) {
    const run = await measure(
      workers == null ? defs : defs.map((d) => (d.scales ? { ...d, workers } : d)),
      workloads,
      ref,
    );
    if (!run) return;
    runs.push({ workers, ...run });
  }
  meta.steal = share(machine0, cpuTimes(), 'steal');
  meta.loadAfter = os
    .loadavg()
    .map((x) => x.toFixed(2))
    .join(' ');

  for (const { workers, servers, results } of runs) {
    process.stdout.write(
      `\n${workers == null ? '' : `${workers} worker(s)\n\n`}${summaryTable(results, servers, ref)}\n\n${targetsTable(
        targets(
          results,
          servers.map((s) => s.id),
        ),
      )}\n`,
    );
  }
  if (runs.length > 1 && defs.some((d) => d.id === 'tsgun') && defs.some((d) => d.id === 'cluster'))
    process.stdout.write(`\n${byWorkersTable(runs)}\n`);
  process.stdout.write('\n');
  if (!opts['no-write']) {
    mkdirSync(path.dirname(OUT_MD), { recursive: true });
    writeFileSync(OUT_MD, report({ runs, ref, meta }));
    const json = {
      meta,
      command: commandLine(),
      rounds: ROUNDS,
      duration: DURATION,
      warmup: WARMUP,
      reference: ref,
      runs: runs.map(({ workers, servers, results }) => ({
        workers,
        servers: servers.map((s) => ({ id: s.id, label: s.def.label, command: s.command() })),
        targets: targets(
          results,
          servers.map((s) => s.id),
        ),
        workloads: results.map(({ workload: w, rounds, summary }) => ({
          id: w.id,
          title: w.title,
          wrk: wrkCommand(w, DURATION),
          summary,
          rounds,
        })),
      })),
    };
    writeFileSync(OUT_JSON, JSON.stringify(json, null, 2) + '\n');
    log(`wrote ${rel(OUT_MD)} and ${rel(OUT_JSON)}; server logs in bench/results/paired-logs.tmp/`);
  }
}

await runMain(main);
