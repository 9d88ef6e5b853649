#!/usr/bin/env node
// Paired comparison: tsgun and Node's cluster module (or any of the servers below) under the
// same load AT THE SAME TIME, one wrk per server, all started together. On a shared machine
// with CPU steal, figures of one server measured one after another vary by ±20 %; measured
// side by side, every server sees the same noise, so the per-round ratio is stable. Reports,
// per workload, each server's medians and the median of the per-round ratios to the
// reference (cluster; else the second server listed).
//
//   node bench/paired.mjs [--servers tsgun,cluster] [--workloads hello,json,...]
//                         [--rounds 7] [--duration 5] [--warmup 1] [--no-write]
//
// Servers: tsgun, tsgun-fetch, tsgun-nobal, cluster, node; and, one process each on the same
// Hono app, tsgun-fetch-w1 (tsgun -w 1) and hono-node (@hono/node-server). Workloads
// (bench/run.mjs's): hello, json, json-close, stream, post, c1000. Writes
// bench/results/paired.md and paired.json unless --no-write. Needs a built tsgun (built here
// if dist/ is missing) and wrk (apt-get). Every server started here is stopped at the end, on
// error and on Ctrl-C.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { BENCH, ROOT, WORKLOADS, childrenOf, ensureWrk, fmtInt, freePort, gitRev, httpStatus, interrupted, log, median, onCleanup, pkgVersion, rel, runMain, setup, snapshotTsgun, spawnServer, stopGroup, tools, treeTicks, waitFor, wrk, wrkCommand, wrkVersion } from './lib.mjs';

const { values: opts } = parseArgs({
  options: {
    servers: { type: 'string', default: 'tsgun,cluster' },
    workloads: { type: 'string', default: 'hello,json,json-close,stream,post,c1000' },
    rounds: { type: 'string', default: '7' },
    duration: { type: 'string', default: '5' },
    warmup: { type: 'string', default: '1' },
    'no-write': { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (opts.help) {
  const lines = readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n').slice(1);
  const header = lines.slice(0, lines.findIndex((l) => !l.startsWith('//')));
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
const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;
const OUT_MD = path.join(BENCH, 'results', 'paired.md');
const OUT_JSON = path.join(BENCH, 'results', 'paired.json');

// ---- workloads: bench/run.mjs's (not imported: importing run.mjs runs it) -------------------

// ---- /proc ----------------------------------------------------------------------------------

/**
 * CPU ms a tree spent between two treeTicks() samples: every process alive at the end, from 0
 * if it started in between. Processes reaped in between are lost (the servers keep theirs).
 */
const treeCpuMs = (before, after) => (Object.entries(after).reduce((s, [pid, t]) => s + t - (before[pid] ?? 0), 0) * 1000) / CLK_TCK;

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
    this.proc = spawnServer(this.id, ...this.spawnArgs());
    this.forget = onCleanup(() => this.stop());
    await this.ready();
    await waitFor(`${this.id}: HTTP 200`, async () => {
      this.checkAlive();
      return (await httpStatus(this.port, 1000)) === 200;
    }, START_MS);
  }
  checkAlive() {
    if (this.proc.child.exitCode !== null) throw new Error(`${this.id} exited with ${this.proc.child.exitCode}: ${this.proc.text().trim().split('\n').slice(-3).join(' / ')}`);
  }
  async ready() {}
  /** The pid whose process tree counts: the process we spawned. */
  get pid() {
    return this.proc.child.pid;
  }
  ticks() {
    return treeTicks(this.pid);
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
    await waitFor(`${this.id}: Listening at`, () => {
      this.checkAlive();
      return this.proc.text().includes(`Listening at: http://127.0.0.1:${this.port}`);
    }, START_MS);
    await waitFor(`${this.id}: ${this.workers} worker(s) booted`, () => (this.proc.text().match(/Booting worker with pid/g) ?? []).length >= this.workers, START_MS);
  }
}

class ClusterServer extends Server {
  command() {
    return 'PORT=$PORT WORKERS=2 node bench/apps/cluster.mjs';
  }
  spawnArgs() {
    return [process.execPath, ['bench/apps/cluster.mjs'], { PORT: String(this.port), WORKERS: '2' }];
  }
  async ready() {
    // HTTP 200 proves one worker; wait for both to be forked too.
    await waitFor(`${this.id}: 2 workers forked`, () => {
      this.checkAlive();
      return childrenOf(this.pid).length >= 2;
    }, START_MS);
  }
}

class SingleServer extends Server {
  command() {
    return `PORT=$PORT node ${this.def.script}`;
  }
  spawnArgs() {
    return [process.execPath, [this.def.script], { PORT: String(this.port) }];
  }
}

// The same ids, apps and commands as bench/run.mjs.
const SERVERS = [
  { id: 'tsgun', label: 'tsgun -w 2, listener', kind: TsgunServer, app: 'bench/apps/suite.mjs:default' },
  { id: 'tsgun-fetch', label: 'tsgun -w 2, fetch (Hono)', kind: TsgunServer, app: 'bench/apps/hono.mjs:default' },
  // What connection balancing costs or gains, next to the default.
  { id: 'tsgun-nobal', label: 'tsgun -w 2 --no-balance-connections, listener', kind: TsgunServer, app: 'bench/apps/suite.mjs:default', args: ['--no-balance-connections'] },
  { id: 'cluster', label: 'node:cluster RR, 2 workers', kind: ClusterServer },
  { id: 'node', label: 'node:http, 1 process', kind: SingleServer, script: 'bench/apps/node-http.mjs' },
  // The fetch adapter against the public one, one process each, on the same Hono app.
  { id: 'tsgun-fetch-w1', label: 'tsgun -w 1, fetch (Hono)', kind: TsgunServer, app: 'bench/apps/hono.mjs:default', workers: 1 },
  { id: 'hono-node', label: '@hono/node-server, 1 process', kind: SingleServer, script: 'bench/apps/hono-node-server.mjs' },
];

// ---- measurement ----------------------------------------------------------------------------

/**
 * One round: one wrk per server, all spawned in the same tick, with every server's process
 * tree CPU sampled just before and just after. `first` rotates which wrk is spawned first.
 * A server whose wrk failed gets { error }.
 */
async function round(servers, w, seconds, first = 0) {
  const order = [...servers.slice(first), ...servers.slice(0, first)];
  const load = os.loadavg()[0];
  const machine0 = cpuTimes();
  const ticks0 = new Map(servers.map((s) => [s, s.ticks()]));
  const settled = await Promise.allSettled(order.map((s) => wrk(w, s.port, seconds)));
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

/** Per-round ratios of server `id` to the reference: req/s, p99, CPU per request. */
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
    if (ref && s.id !== ref) {
      const rs = rounds.map((r) => ratios(r, s.id, ref)).filter(Boolean);
      const rps = rs.map((x) => x.rps).filter((x) => x != null);
      per[s.id].ratio = {
        rps: median(rps),
        rpsMin: rps.length ? Math.min(...rps) : null,
        rpsMax: rps.length ? Math.max(...rps) : null,
        p99: median(rs.map((x) => x.p99)),
        cpuPerReq: median(rs.map((x) => x.cpuPerReq)),
      };
    }
  }
  return per;
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
      out.push(`| ${w.id} | ${s.id} | ${fmtInt(x.rps)} | ${fmt(x.p99, 1)} | ${fmt(x.cpuPerReq, 0)} | ${fmtInt(x.errors)}${failed} | ${r ? fmt(r.rps, 2) : s.id === ref ? '(ref)' : '—'} | ${r ? `${fmt(r.rpsMin, 2)}–${fmt(r.rpsMax, 2)}` : ''} | ${r ? fmt(r.p99, 2) : ''} | ${r ? fmt(r.cpuPerReq, 2) : ''} |`);
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

function report({ results, servers, ref, meta }) {
  const cmd = ['node bench/paired.mjs'];
  if (opts.servers !== 'tsgun,cluster') cmd.push(`--servers ${opts.servers}`);
  if (opts.workloads !== 'hello,json,json-close,stream,post,c1000') cmd.push(`--workloads ${opts.workloads}`);
  if (ROUNDS !== 7) cmd.push(`--rounds ${ROUNDS}`);
  if (DURATION !== 5) cmd.push(`--duration ${DURATION}`);
  if (WARMUP !== 1) cmd.push(`--warmup ${WARMUP}`);
  const out = [
    '# Paired comparison',
    '',
    `Generated by \`${cmd.join(' ')}\` on ${meta.started} UTC.`,
    '',
    `- Machine: ${meta.machine}; open files (ulimit -n): ${meta.nofile}`,
    `- Load average before: ${meta.loadBefore}; after: ${meta.loadAfter}; CPU steal during the run: ${meta.steal == null ? '—' : `${(meta.steal * 100).toFixed(0)} %`}`,
    `- Versions: ${meta.versions.join('; ')}`,
    `- Every server started once and kept for all rounds; per workload a ${WARMUP} s warm-up, then ${ROUNDS} round(s) of ${DURATION} s, all servers loaded at the same time (one wrk each)`,
    '',
    summaryTable(results, servers, ref),
    '',
    `**req/s, p99, CPU µs/req**: medians over the rounds of each server's own figures. **errors**: wrk's socket errors (connect + read + write + timeout) + responses with status > 399, all rounds. **CPU µs/req**: utime + stime of the server's whole process tree (from /proc, over the round) ÷ the requests wrk counted.${ref ? ` **÷ ${ref}**: the median (and the range) of the per-round ratios to ${ref}, measured in the same round — the figures to compare; for p99 and CPU/req below 1 is better.` : ''}`,
    '',
    'Reading the numbers: all servers and all wrks share the machine\'s CPUs, so absolute figures are lower than each server alone, and a server that needs less CPU per request can serve more of the shared load. The per-round ratio removes what the servers share (CPU steal, other work on the machine); it does not remove what they compete for.',
    '',
    '## Commands',
    '',
    'Servers (PORT: a free port chosen by the script):',
    '',
    ...servers.map((s) => `- \`${s.id}\` (${s.def.label}): \`${s.command()}\``),
    '',
    'Load (one wrk per server per round, all spawned together):',
    '',
    ...results.map(({ workload: w }) => `- \`${w.id}\` (${w.title}): \`${wrkCommand(w, DURATION)}\``),
    '',
    '## Per round',
    '',
    '**load**: the 1-minute load average when the round started; **steal**, **idle**: shares of the machine\'s CPU time during the round (/proc/stat).',
    '',
  ];
  for (const res of results) {
    out.push(`### ${res.workload.id}: ${res.workload.title}`, '', roundsTable(res, servers, ref), '');
  }
  return out.join('\n');
}

// ---- main -----------------------------------------------------------------------------------

async function main() {
  const want = opts.servers.split(',').filter(Boolean);
  const unknownServers = want.filter((id) => !SERVERS.some((s) => s.id === id));
  const wantW = opts.workloads.split(',').filter(Boolean);
  const unknownWorkloads = wantW.filter((id) => !WORKLOADS.some((w) => w.id === id));
  if (unknownServers.length || unknownWorkloads.length || want.length === 0 || wantW.length === 0) {
    throw new Error(`unknown or missing --servers/--workloads: ${[...unknownServers, ...unknownWorkloads].join(', ') || '(empty)'}; servers: ${SERVERS.map((s) => s.id).join(', ')}; workloads: ${WORKLOADS.map((w) => w.id).join(', ')}`);
  }
  // In the order given: the first is the one compared, the reference is cluster or the second.
  const defs = [...new Set(want)].map((id) => SERVERS.find((s) => s.id === id));
  const workloads = [...new Set(wantW)].map((id) => WORKLOADS.find((w) => w.id === id));
  const ref = defs.some((d) => d.id === 'cluster') ? 'cluster' : (defs[1]?.id ?? null);

  setup({ logs: 'paired-logs.tmp', tmpPrefix: 'tsgun-paired-' });
  tools.wrk = await ensureWrk();
  if (defs.some((d) => d.kind === TsgunServer)) tools.tsgun = await snapshotTsgun();

  const meta = {
    started: new Date().toISOString().slice(0, 16).replace('T', ' '),
    machine: `${os.cpus().length} CPUs (nproc ${spawnSync('nproc', { encoding: 'utf8' }).stdout.trim()}), ${os.cpus()[0]?.model ?? 'unknown CPU'}, ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB, ${os.type()} ${os.release()}`,
    nofile: spawnSync('sh', ['-c', 'ulimit -n'], { encoding: 'utf8' }).stdout.trim(),
    loadBefore: os.loadavg().map((x) => x.toFixed(2)).join(' '),
    versions: [
      `node ${process.version}`,
      `tsgun ${pkgVersion(ROOT)} (git ${gitRev()}${tools.tsgunBuilt ? `; dist/ built ${tools.tsgunBuilt} UTC, run from a copy made at the start` : ''})`,
      wrkVersion(),
      ...(defs.some((d) => d.app?.startsWith('bench/apps/hono') || d.id === 'hono-node') ? [`hono ${pkgVersion(path.join(ROOT, 'node_modules', 'hono'))}`] : []),
      ...(defs.some((d) => d.id === 'hono-node') ? [`@hono/node-server ${pkgVersion(path.join(ROOT, 'node_modules', '@hono', 'node-server'))}`] : []),
    ],
  };

  const servers = defs.map((d) => new d.kind(d));
  log(`starting ${servers.map((s) => s.id).join(', ')}; load average ${meta.loadBefore}`);
  for (const s of servers) {
    await s.start();
    log(`  ${s.id}: port ${s.port}, pid ${s.pid}`);
  }

  const results = [];
  const machine0 = cpuTimes();
  for (const w of workloads) {
    if (interrupted) return;
    if (WARMUP > 0) {
      const warm = await round(servers, w, WARMUP);
      for (const [id, x] of Object.entries(warm.servers)) if (x.error) log(`warm-up ${w.id} ${id}: ${x.error}`);
    }
    const rounds = [];
    for (let i = 0; i < ROUNDS; i++) {
      if (interrupted) return;
      // Spawn order rotates, so that no server's wrk is always the first to connect.
      const r = await round(servers, w, DURATION, i % servers.length);
      if (interrupted) return; // its wrks were killed: nothing to log
      rounds.push(r);
      const parts = servers.map((s) => {
        const x = r.servers[s.id];
        return x.error ? `${s.id} error: ${x.error}` : `${s.id} ${fmtInt(x.rps)} req/s p99 ${fmt(x.p99, 1)} ms ${fmt(x.cpuPerReq, 0)} µs/req${x.errors ? ` errors ${x.errors}` : ''}`;
      });
      const ratio = ref ? servers.filter((s) => s.id !== ref).map((s) => `${s.id}/${ref} ${fmt(ratios(r, s.id, ref)?.rps, 2)}`) : [];
      log(`${w.id.padEnd(10)} ${i + 1}/${ROUNDS}  load ${r.load.toFixed(2)} steal ${Math.round((r.steal ?? 0) * 100)} %  ${parts.join(' | ')}${ratio.length ? `  => ${ratio.join(' ')}` : ''}`);
    }
    results.push({ workload: w, rounds, summary: summarize(rounds, servers, ref) });
  }
  meta.steal = share(machine0, cpuTimes(), 'steal');
  meta.loadAfter = os.loadavg().map((x) => x.toFixed(2)).join(' ');

  process.stdout.write(`\n${summaryTable(results, servers, ref)}\n\n`);
  if (!opts['no-write']) {
    mkdirSync(path.dirname(OUT_MD), { recursive: true });
    writeFileSync(OUT_MD, report({ results, servers, ref, meta }));
    const json = {
      meta,
      rounds: ROUNDS,
      duration: DURATION,
      warmup: WARMUP,
      reference: ref,
      servers: servers.map((s) => ({ id: s.id, label: s.def.label, command: s.command() })),
      workloads: results.map(({ workload: w, rounds, summary }) => ({ id: w.id, title: w.title, wrk: wrkCommand(w, DURATION), summary, rounds })),
    };
    writeFileSync(OUT_JSON, JSON.stringify(json, null, 2) + '\n');
    log(`wrote ${rel(OUT_MD)} and ${rel(OUT_JSON)}; server logs in bench/results/paired-logs.tmp/`);
  }
}

await runMain(main);
