#!/usr/bin/env node
// Performance benchmark suite: the same workloads, in one run and in alternation, against
// tsgun (listener and fetch shapes), Node's cluster module, PM2 cluster mode, one bare
// node:http process and Gunicorn + Uvicorn; plus tsgun's fetch adapter against
// @hono/node-server and srvx in one process, start-to-first-response times, and CPU
// profiles of a tsgun worker. Writes docs/benchmarks.md.
//
//   node bench/run.mjs [--quick] [--runs N] [--duration S] [--servers a,b] [--workloads a,b]
//                      [--no-startup] [--no-profile] [--no-write] [--out FILE]
//
// --quick = 1 run of 3 s per workload (default: 3 runs of 6 s). Needs a built tsgun
// (`npx tsc -p tsconfig.build.json`; built here if dist/ is missing), wrk (apt-get), PM2
// and srvx (bench/package.json, `npm install --prefix bench`), and for the Python row
// Debian's gunicorn + python3-uvicorn (apt-get; skipped with a note when missing). Every
// server started here is stopped at the end, on error and on Ctrl-C.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  BENCH,
  ROOT,
  WORKLOADS,
  cpuTicks,
  ensureBenchDeps,
  ensureGunicorn,
  ensureWrk,
  fmtInt,
  freePort,
  gitRev,
  httpStatus,
  interrupted,
  log,
  median,
  onCleanup,
  pct,
  pkgVersion,
  rel,
  runMain,
  setup,
  sleep,
  snapshotTsgun,
  spawnServer,
  stopGroup,
  tools,
  waitFor,
  wrk,
  wrkCommand,
  wrkVersion,
} from './lib.mjs';
import { serverKinds } from './servers.mjs';
import { render as renderProfile, summarize as summarizeProfile } from './profile-summary.mjs';

const { values: opts } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    runs: { type: 'string' },
    duration: { type: 'string' },
    servers: { type: 'string' },
    workloads: { type: 'string' },
    'no-startup': { type: 'boolean', default: false },
    'no-profile': { type: 'boolean', default: false },
    'no-write': { type: 'boolean', default: false },
    out: { type: 'string', default: path.join(ROOT, 'docs', 'benchmarks.md') },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (opts.help) {
  process.stdout.write(
    readFileSync(fileURLToPath(import.meta.url), 'utf8')
      .split('\n')
      .slice(1, 16)
      .map((l) => l.replace(/^\/\/ ?/, ''))
      .join('\n') + '\n',
  );
  process.exit(0);
}
// -c1000 needs more than 1,024 descriptors in wrk and the servers: Node raises its own soft
// RLIMIT_NOFILE to the hard limit at startup, and everything started here inherits it.
const nofile = () =>
  Number(spawnSync('sh', ['-c', 'ulimit -n'], { encoding: 'utf8' }).stdout.trim().replace('unlimited', 'Infinity'));
const RUNS = Number(opts.runs ?? (opts.quick ? 1 : 3));
const DURATION = Number(opts.duration ?? (opts.quick ? 3 : 6));
const STARTUP_RUNS = 5;
if (!(RUNS >= 1) || !(DURATION >= 1)) {
  process.stderr.write('Error: --runs must be >= 1 and --duration >= 1 (seconds)\n');
  process.exit(2);
}
const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;
/** How long to wait after load for tsgun workers' stats to reach the master (beats are 1 s apart). */
const BEAT_WAIT_MS = 1300;

const { LOG_DIR, TMP } = setup({ logs: 'run-logs.tmp', tmpPrefix: 'tsgun-run-' });

const nowUs = () => Number(process.hrtime.bigint() / 1000n);

// ---- /proc ----------------------------------------------------------------------------------

function rssBytes(pid) {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

// ---- tools ------------------------------------------------------------------------------------

// ---- wrk ----------------------------------------------------------------------------------------

// ---- servers ------------------------------------------------------------------------------------

const APP_NODE = 'bench/apps/suite.mjs:default';
const APP_FETCH = 'bench/apps/hono.mjs:default';

const { TsgunServer, ClusterServer, SingleServer, GunicornServer, Pm2Server } = serverKinds({
  tmp: TMP,
  logDir: LOG_DIR,
});

const SERVERS = [
  { id: 'tsgun', label: 'tsgun -w 2, listener', kind: TsgunServer, workers: 2, app: APP_NODE, group: 'main' },
  {
    id: 'tsgun-fetch',
    label: 'tsgun -w 2, fetch (Hono)',
    kind: TsgunServer,
    workers: 2,
    app: APP_FETCH,
    group: 'main',
  },
  { id: 'cluster', label: 'node:cluster RR, 2 workers', kind: ClusterServer, group: 'main' },
  { id: 'pm2', label: 'PM2 cluster, 2 instances', kind: Pm2Server, group: 'main', needs: 'pm2' },
  { id: 'node', label: 'node:http, 1 process', kind: SingleServer, script: 'bench/apps/node-http.mjs', group: 'main' },
  { id: 'gunicorn', label: 'Gunicorn + Uvicorn, 2 workers', kind: GunicornServer, group: 'main', needs: 'gunicorn' },
  {
    id: 'tsgun-w4',
    label: 'tsgun -w 4, listener',
    kind: TsgunServer,
    workers: 4,
    app: APP_NODE,
    group: 'fairness',
    workloads: ['hello', 'json', 'json-close'],
  },
  { id: 'tsgun-w1', label: 'tsgun -w 1, listener', kind: TsgunServer, workers: 1, app: APP_NODE, group: 'single' },
  {
    id: 'tsgun-fetch-w1',
    label: 'tsgun -w 1, fetch (Hono)',
    kind: TsgunServer,
    workers: 1,
    app: APP_FETCH,
    group: 'single',
  },
  {
    id: 'hono-node',
    label: '@hono/node-server, 1 process',
    kind: SingleServer,
    script: 'bench/apps/hono-node-server.mjs',
    group: 'single',
  },
  {
    id: 'srvx',
    label: 'srvx, 1 process',
    kind: SingleServer,
    script: 'bench/apps/hono-srvx.mjs',
    group: 'single',
    needs: 'srvx',
  },
];

// ---- measurement --------------------------------------------------------------------------------

function sampleCpu(procs) {
  const t = {};
  for (const pid of [procs.master, ...procs.workers]) if (pid) t[pid] = cpuTicks(pid);
  return t;
}

/** One wrk run against one server, with CPU, memory and (tsgun) per-worker request counts. */
async function measure(server, w, rep) {
  const isTsgun = server instanceof TsgunServer;
  const before = isTsgun ? await server.status() : null;
  const procs = server.procs();
  const cpu0 = sampleCpu(procs);
  const t0 = Date.now();
  const r = await wrk(w, server.port, DURATION);
  const wall = (Date.now() - t0) / 1000;
  const after0 = server.procs();
  const cpu1 = sampleCpu(after0);
  const delta = (pid) => (cpu0[pid] != null && cpu1[pid] != null ? ((cpu1[pid] - cpu0[pid]) * 1000) / CLK_TCK : null);
  const cpu = {
    master: procs.master ? delta(procs.master) : null,
    workers: procs.workers.map(delta),
  };
  cpu.total = (cpu.master ?? 0) + cpu.workers.reduce((s, x) => s + (x ?? 0), 0);
  const changed = after0.workers.join(',') !== procs.workers.join(',');
  const rss = { master: procs.master ? rssBytes(procs.master) : null, workers: after0.workers.map(rssBytes) };
  let split = null;
  if (isTsgun) {
    await sleep(BEAT_WAIT_MS);
    const after = await server.status();
    split = Object.keys(after).map((pid) => (after[pid] ?? 0) - (before[pid] ?? 0));
  }
  return {
    rep,
    server: server.def.id,
    workload: w.id,
    rps: r.rps,
    requests: r.requests,
    p50: r.p50_us / 1000,
    p99: r.p99_us / 1000,
    max: r.max_us / 1000,
    errors: r.failed,
    errorKinds: { connect: r.connect, read: r.read, write: r.write, timeout: r.timeout, status: r.status },
    wall,
    cpu,
    cpuPerReq: r.requests ? (cpu.total * 1000) / r.requests : null, // µs
    workersChanged: changed,
    rss,
    split,
  };
}

// ---- start-to-first-response ------------------------------------------------------------------

async function startupOnce(kind, app) {
  const port = await freePort();
  const name = `startup-${kind}-${port}`;
  const t0 = process.hrtime.bigint();
  const epoch0 = Date.now();
  const proc =
    kind === 'cluster'
      ? spawnServer(name, process.execPath, ['bench/apps/cluster.mjs'], { PORT: String(port), WORKERS: '2' })
      : spawnServer(name, process.execPath, [tools.tsgun, '-w', '2', '-b', `127.0.0.1:${port}`, app]);
  const forget = onCleanup(() => stopGroup(proc.child.pid));
  try {
    let status = 0;
    const until = Date.now() + 30_000;
    // A tight loop: a refused connection comes back at once and is retried at once.
    while (status !== 200) {
      if (proc.child.exitCode !== null)
        throw new Error(`${kind} exited with ${proc.child.exitCode}: ${proc.text().trim().split('\n').pop()}`);
      if (Date.now() > until) throw new Error(`${kind}: no 200 within 30 s`);
      status = await httpStatus(port, 10_000);
    }
    const firstMs = Number(process.hrtime.bigint() - t0) / 1e6;
    let readyMs = null;
    let masterMs = null;
    if (kind !== 'cluster') {
      const line = await waitFor(
        'Ready line',
        () =>
          proc
            .text()
            .split('\n')
            .find((l) => l.includes('Ready: ')),
        10_000,
      ).catch(() => null);
      if (line) readyMs = JSON.parse(line).time - epoch0;
      const first = proc
        .text()
        .split('\n')
        .find((l) => l.includes('Starting tsgun'));
      if (first) masterMs = JSON.parse(first).time - epoch0;
    }
    return { firstMs, readyMs, masterMs };
  } finally {
    await stopGroup(proc.child.pid);
    forget();
  }
}

async function measureStartup() {
  const cases = [
    { id: 'js', label: 'tsgun -w 2, JavaScript app (bench/apps/suite.mjs)', kind: 'tsgun', app: APP_NODE },
    {
      id: 'ts',
      label: 'tsgun -w 2, TypeScript app (bench/apps/hello.ts)',
      kind: 'tsgun',
      app: 'bench/apps/hello.ts:default',
    },
    {
      id: 'cluster',
      label: 'node:cluster, 2 workers (bench/apps/cluster.mjs), for reference',
      kind: 'cluster',
      app: null,
    },
  ];
  const results = Object.fromEntries(cases.map((c) => [c.id, []]));
  for (let i = 0; i < STARTUP_RUNS; i++) {
    for (const c of cases) {
      if (interrupted) throw new Error('interrupted');
      try {
        results[c.id].push(await startupOnce(c.kind, c.app));
      } catch (err) {
        if (interrupted) throw err;
        log(`startup ${c.id}: ${err.message}`);
        results[c.id].push({ error: err.message });
      }
    }
  }
  return cases.map((c) => ({ ...c, runs: results[c.id] }));
}

// ---- profiles ------------------------------------------------------------------------------------

async function profileOnce(label, app, w) {
  const dir = mkdtempSync(path.join(TMP, 'prof-'));
  const name = `profile-${label.replace(/\W+/g, '-')}`;
  const proc = spawnServer(name, process.execPath, [
    '--cpu-prof',
    '--cpu-prof-dir',
    dir,
    tools.tsgun,
    '-w',
    '1',
    '-b',
    '127.0.0.1:0',
    app,
  ]);
  const forget = onCleanup(() => stopGroup(proc.child.pid));
  try {
    const m = await waitFor(`${name}: Listening at`, () =>
      /Listening at: http:\/\/127\.0\.0\.1:(\d+)/.exec(proc.text()),
    );
    const port = Number(m[1]);
    await waitFor(`${name}: worker`, () => /Booting worker with pid: (\d+)/.exec(proc.text()));
    const workerPid = Number(/Booting worker with pid: (\d+)/.exec(proc.text())[1]);
    await wrk(w, port, 1); // warm-up, outside the window
    const from = nowUs();
    const r = await wrk(w, port, DURATION);
    const to = nowUs();
    // TERM: master and worker exit normally, and V8 writes their profiles.
    await stopGroup(proc.child.pid, 15_000);
    const file = readdirSync(dir).find((f) => f.includes(`.${workerPid}.0.`) && f.endsWith('.cpuprofile'));
    if (!file) throw new Error(`no .cpuprofile for worker ${workerPid} in ${dir}`);
    const keep = path.join(LOG_DIR, `${name}.worker.cpuprofile`);
    writeFileSync(keep, readFileSync(path.join(dir, file)));
    const summary = summarizeProfile(JSON.parse(readFileSync(keep, 'utf8')), { window: [from, to] });
    return {
      label,
      app,
      workload: w.id,
      rps: r.rps,
      file: rel(keep),
      window: [from, to],
      summary,
      command: `node --cpu-prof --cpu-prof-dir DIR bin/tsgun -w 1 -b 127.0.0.1:0 ${app}`,
    };
  } finally {
    await stopGroup(proc.child.pid);
    forget();
  }
}

async function measureProfiles() {
  const W = Object.fromEntries(WORKLOADS.map((w) => [w.id, w]));
  const cases = [
    ['listener, json', APP_NODE, W.json],
    ['fetch (Hono), json', APP_FETCH, W.json],
    ['fetch (Hono), hello', APP_FETCH, W.hello],
    ['fetch (Hono), POST 64 KiB echo', APP_FETCH, W.post],
  ];
  const out = [];
  for (const [label, app, w] of cases) {
    if (interrupted) throw new Error('interrupted');
    try {
      log(`profile: ${label}`);
      out.push(await profileOnce(label, app, w));
    } catch (err) {
      if (interrupted) throw err;
      log(`profile ${label} failed: ${err.message}`);
      out.push({ label, app, workload: w.id, error: err.message });
    }
  }
  return out;
}

// ---- statistics and report ---------------------------------------------------------------------

const fmt = (n, d = 1) => (n == null ? '—' : n.toFixed(d));
const mib = (b) => (b == null ? '—' : (b / 2 ** 20).toFixed(1));
const esc = (s) => String(s).replace(/\|/g, '\\|');

/** Per (server, workload): medians over the runs. */
function aggregate(results) {
  const cells = new Map();
  for (const r of results) {
    const k = `${r.server}|${r.workload}`;
    if (!cells.has(k)) cells.set(k, []);
    cells.get(k).push(r);
  }
  const agg = new Map();
  for (const [k, rs] of cells) {
    const ok = rs.filter((r) => !r.error);
    const splitDev = ok.filter((r) => r.split).map((r) => splitDeviation(r.split));
    agg.set(k, {
      runs: rs,
      ok,
      rps: median(ok.map((r) => r.rps)),
      p50: median(ok.map((r) => r.p50)),
      p99: median(ok.map((r) => r.p99)),
      errors: ok.reduce((s, r) => s + r.errors, 0),
      errorKinds: ok.reduce((acc, r) => {
        for (const [k, v] of Object.entries(r.errorKinds)) if (v) acc[k] = (acc[k] ?? 0) + v;
        return acc;
      }, {}),
      cpuPerReq: median(ok.map((r) => r.cpuPerReq)),
      masterShare: median(
        ok.filter((r) => r.cpu.master != null && r.cpu.total > 0).map((r) => r.cpu.master / r.cpu.total),
      ),
      masterMs: median(ok.map((r) => r.cpu.master)),
      masterCorePct: median(ok.filter((r) => r.cpu.master != null).map((r) => r.cpu.master / 1000 / r.wall)),
      splitDev: median(splitDev),
      splitWorst: splitDev.length ? Math.max(...splitDev) : null,
      splits: ok.filter((r) => r.split).map((r) => r.split),
      masterRss: Math.max(0, ...ok.map((r) => r.rss.master ?? 0)) || null,
      workerRss: ok.length ? ok[ok.length - 1].rss.workers : [],
      workerRssMax: Math.max(0, ...ok.flatMap((r) => r.rss.workers.filter((x) => x != null))) || null,
      errorText: rs.find((r) => r.error)?.error,
    });
  }
  return agg;
}

/** Largest relative distance of a worker's share from an even split: max |n_i / (total/N) - 1|. */
function splitDeviation(split) {
  const total = split.reduce((s, x) => s + x, 0);
  if (!total) return null;
  const even = total / split.length;
  return Math.max(...split.map((x) => Math.abs(x / even - 1)));
}

function machineInfo() {
  const free = spawnSync('free', ['-h'], { encoding: 'utf8' }).stdout.trimEnd();
  const nproc = spawnSync('nproc', { encoding: 'utf8' }).stdout.trim();
  return { nproc, free, cpu: os.cpus()[0]?.model ?? 'unknown CPU', kernel: `${os.type()} ${os.release()}` };
}

/** Where report() leaves room for the marked sections of the file it replaces. */
const MARKED_HERE = '<!-- marked sections -->';

/**
 * The report with the marked sections (`<!-- NAME:start -->` … `<!-- NAME:end -->`) of the
 * file it replaces put back where report() left room: other benchmarks write them, and a
 * regeneration of the rest must not drop them.
 */
function keepMarked(md, file) {
  let old = '';
  try {
    old = readFileSync(file, 'utf8');
  } catch {
    // No file yet: nothing to keep.
  }
  const blocks = old.match(/<!-- ([\w-]+):start -->[\s\S]*?<!-- \1:end -->\n?/g) ?? [];
  return md.replace(`${MARKED_HERE}\n`, blocks.map((b) => (b.endsWith('\n') ? b : `${b}\n`) + '\n').join(''));
}

function report({ agg, servers, workloads, startup, profiles, meta, skipped }) {
  const A = (s, w) => agg.get(`${s}|${w}`);
  const has = (s, w) => A(s, w)?.rps != null;
  const out = [];
  const invocation = `node bench/run.mjs${process.argv.slice(2).length ? ' ' + process.argv.slice(2).join(' ') : ''}`;
  out.push(
    `_Generated by \`node bench/run.mjs\` (this run: \`${invocation}\`, ${meta.started} UTC). Do not edit by hand: run it again._`,
  );
  out.push('');
  out.push('# Benchmarks');
  out.push('');
  out.push(
    "Throughput, latency and cost of tsgun against Node's `cluster` module (round-robin), PM2 cluster mode, one bare `node:http` process and Gunicorn + Uvicorn, measured in one run with the servers in alternation. How to run it and what each workload does: [bench/README.md](../bench/README.md).",
  );
  out.push('');
  out.push('## Machine and versions');
  out.push('');
  out.push(`- \`nproc\`: ${meta.machine.nproc} (${meta.machine.cpu}); ${meta.machine.kernel}`);
  out.push(
    `- Load average (1, 5, 15 min): ${meta.loadBefore} at the start, ${meta.loadAfter} at the end; 1-minute load at the start of each run: ${(meta.loadPerRun ?? []).join(', ')}${Number(meta.loadBefore.split(' ')[0]) > 1.5 ? ' — **the machine was busy with other work during this run**: absolute numbers are noisy, compare the ratios (servers alternate, so each one sees the same load)' : ''}`,
  );
  out.push(`- ${meta.versions.join('; ')}`);
  out.push(
    `- ${RUNS} run(s) × ${DURATION} s per workload and server; medians shown. wrk runs on the same ${meta.machine.nproc} cores as the servers. Open-file limit (\`ulimit -n\`, inherited by wrk and the servers): ${nofile()}.`,
  );
  out.push('');
  out.push('`free -h`:');
  out.push('');
  out.push('```');
  out.push(meta.machine.free);
  out.push('```');
  out.push('');

  // ---- targets
  // Sections written by other benchmarks (bench/paired.mjs's targets as paired medians,
  // bench/memory.mjs's tables) go here, kept from the file this run replaces.
  out.push(MARKED_HERE);
  out.push('## Targets (from the Performance issue)');
  out.push('');
  out.push(
    "From this run's figures, measured one server after another; the same targets as medians of paired rounds, which a noisy machine moves far less, are in the section above when bench/paired.mjs has written it.",
  );
  out.push('');
  out.push('| target | measured | result |');
  out.push('|---|---|---|');
  for (const t of targets({ A, has, workloads, startup }))
    out.push(`| ${t.target} | ${t.measured} | ${t.pass == null ? 'not measured' : t.pass ? '**pass**' : '**FAIL**'} |`);
  out.push('');

  // ---- main table
  out.push('## Throughput and latency');
  out.push('');
  out.push(
    "Requests/s (median), the ratio to `node:cluster` on the same workload, wrk's p50/p99 latency, and server CPU per request (utime + stime of the master/primary and every worker, from `/proc/PID/stat`, ÷ requests). Errors = wrk socket errors (connect, read, write, timeout: no response within the 2 s wrk allows) + non-2xx responses, summed over the runs.",
  );
  out.push('');
  out.push('| workload | server | req/s | vs cluster | p50 ms | p99 ms | CPU µs/req | errors | req/s per run |');
  out.push('|---|---|---:|---:|---:|---:|---:|---:|---|');
  for (const w of workloads) {
    const base = A('cluster', w.id)?.rps;
    for (const s of servers) {
      const a = A(s.id, w.id);
      if (!a) continue;
      if (a.rps == null) {
        out.push(`| ${w.title} | ${s.label} | — | — | — | — | — | — | error: ${esc(a.errorText ?? '')} |`);
        continue;
      }
      out.push(
        `| ${w.title} | ${s.label} | ${fmtInt(a.rps)} | ${base ? (a.rps / base).toFixed(2) : '—'} | ${fmt(a.p50, 2)} | ${fmt(a.p99, 2)} | ${fmt(a.cpuPerReq, 0)} | ${a.errors}${
          a.errors
            ? ` (${Object.entries(a.errorKinds)
                .map(([k, v]) => `${k === 'status' ? 'non-2xx' : k} ${v}`)
                .join(', ')})`
            : ''
        } | ${a.runs.map((r) => (r.error ? 'error' : fmtInt(r.rps))).join(' / ')} |`,
      );
    }
  }
  for (const [id, why] of skipped)
    out.push(`| all | ${SERVERS.find((s) => s.id === id).label} | — | — | — | — | — | — | skipped: ${esc(why)} |`);
  out.push('');

  // ---- ratio matrix
  const mainServers = servers.filter((s) => s.group === 'main');
  out.push('### Ratio to node:cluster at a glance');
  out.push('');
  out.push(`| workload | ${mainServers.map((s) => s.label).join(' | ')} |`);
  out.push(`|---|${mainServers.map(() => '---:').join('|')}|`);
  for (const w of workloads) {
    const base = A('cluster', w.id)?.rps;
    out.push(
      `| ${w.title} | ${mainServers.map((s) => (has(s.id, w.id) && base ? (A(s.id, w.id).rps / base).toFixed(2) : '—')).join(' | ')} |`,
    );
  }
  out.push('');

  // ---- tsgun details
  const tsgunServers = servers.filter((s) => s.kind === TsgunServer);
  out.push('## tsgun: fairness, master cost, memory');
  out.push('');
  out.push(
    "Per-worker request split from `tsgun status --json` (each worker's `stats.requests` before and after the run), its largest distance from an even split, the master's CPU time during the run (utime + stime delta) as a share of the whole server's CPU and of one core, and resident memory (VmRSS) after the run.",
  );
  out.push('');
  out.push(
    '| server | workload | split (last run) | off even (median / worst) | master CPU ms | master share of server CPU | master, % of a core | master RSS MiB | worker RSS MiB |',
  );
  out.push('|---|---|---|---:|---:|---:|---:|---:|---|');
  for (const s of tsgunServers) {
    for (const w of workloads) {
      const a = A(s.id, w.id);
      if (!a?.rps) continue;
      const split = a.splits[a.splits.length - 1];
      const total = split ? split.reduce((x, y) => x + y, 0) : 0;
      out.push(
        `| ${s.label} | ${w.title} | ${split ? split.map((n) => `${fmtInt(n)} (${pct(n / total, 0)})`).join(' / ') : '—'} | ${pct(a.splitDev, 0)} / ${pct(a.splitWorst, 0)} | ${fmt(a.masterMs, 0)} | ${pct(a.masterShare, 2)} | ${pct(a.masterCorePct, 2)} | ${mib(a.masterRss)} | ${a.workerRss.map(mib).join(' / ')} |`,
      );
    }
  }
  out.push('');
  out.push('### Who does the accepting: master/primary CPU under load');
  out.push('');
  out.push(
    "The master (tsgun), primary (node:cluster), God daemon (PM2) or arbiter (Gunicorn) as a share of the server's CPU. In node:cluster round-robin and PM2 the primary accepts every connection and hands it to a worker over IPC; tsgun's and Gunicorn's workers accept on the shared socket themselves.",
  );
  out.push('');
  const withMaster = mainServers.filter((s) => s.kind !== SingleServer);
  out.push(`| workload | ${withMaster.map((s) => s.label).join(' | ')} |`);
  out.push(`|---|${withMaster.map(() => '---:').join('|')}|`);
  for (const w of workloads)
    out.push(
      `| ${w.title} | ${withMaster.map((s) => (A(s.id, w.id)?.masterShare != null ? pct(A(s.id, w.id).masterShare, 1) : '—')).join(' | ')} |`,
    );
  out.push('');

  // ---- fetch adapter
  const single = servers.filter((s) => s.group === 'single' || s.id === 'node');
  out.push('## The fetch adapter, one process');
  out.push('');
  out.push(
    "The same Hono app (bench/apps/hono.mjs) behind tsgun's fetch adapter (`tsgun -w 1`), `@hono/node-server` and srvx, each one process; the listener app under `tsgun -w 1` and bare `node:http` for the cost of the shape itself. Ratios are to `@hono/node-server`.",
  );
  out.push('');
  out.push(`| workload | ${single.map((s) => s.label).join(' | ')} |`);
  out.push(`|---|${single.map(() => '---:').join('|')}|`);
  for (const w of workloads) {
    const base = A('hono-node', w.id)?.rps;
    out.push(
      `| ${w.title} | ${single.map((s) => (has(s.id, w.id) ? `${fmtInt(A(s.id, w.id).rps)}${base ? ` (${(A(s.id, w.id).rps / base).toFixed(2)})` : ''}` : '—')).join(' | ')} |`,
    );
  }
  out.push('');

  // ---- startup
  if (startup) {
    out.push('## Start to first response');
    out.push('');
    out.push(
      `From spawning the server to the first 200 on a fixed free port, polled with a tight loop of fresh HTTP connections (a refused connection is retried at once); median of ${STARTUP_RUNS}, cases alternating. "master running" and "all workers ready" are the times of tsgun's \`Starting tsgun\` and \`Ready: 2 workers serving\` log lines (ms clock of the log, from the spawn).`,
    );
    out.push('');
    out.push(
      '| server and app | first 200 (median) | all runs | master running: `Starting tsgun` logged (median) | all workers ready (median) |',
    );
    out.push('|---|---:|---|---:|---:|');
    for (const c of startup) {
      const ok = c.runs.filter((r) => !r.error);
      out.push(
        `| ${c.label} | ${fmt(median(ok.map((r) => r.firstMs)) / 1000, 3)} s | ${c.runs.map((r) => (r.error ? 'error' : (r.firstMs / 1000).toFixed(3))).join(' / ')} | ${ok.some((r) => r.masterMs != null) ? `${fmt(median(ok.map((r) => r.masterMs)) / 1000, 3)} s` : '—'} | ${ok.some((r) => r.readyMs != null) ? `${fmt(median(ok.map((r) => r.readyMs)) / 1000, 3)} s` : '—'} |`,
      );
    }
    out.push('');
  }

  // ---- profiles
  if (profiles) {
    out.push('## Where a tsgun worker spends its time');
    out.push('');
    out.push(
      `\`node --cpu-prof bin/tsgun -w 1 ...\` (workers inherit the master's execArgv), ${DURATION} s of wrk after a 1 s warm-up; only the samples taken during the measured run count (\`bench/profile-summary.mjs --from --to\`). Self time is where the sampled instruction was; inclusive is every sample with the function anywhere on its stack. tsgun's code is src/worker/*.ts (dist/worker/*.js, lines mapped back through the source maps).`,
    );
    out.push('');
    for (const p of profiles) {
      out.push(`### ${p.label}`);
      out.push('');
      if (p.error) {
        out.push(`error: ${p.error}`);
        out.push('');
        continue;
      }
      out.push(
        `\`${p.command}\`, ${wrkCommand(
          WORKLOADS.find((w) => w.id === p.workload),
          DURATION,
        )}: ${fmtInt(p.rps)} req/s under the profiler. Again: \`node bench/profile-summary.mjs --from ${p.window[0]} --to ${p.window[1]} ${p.file}\` (kept until the next run).`,
      );
      out.push('');
      out.push(renderProfile(p.summary, { top: 15, ownTop: 10 }));
      out.push('');
    }
  }

  // ---- commands
  out.push('## Exact commands');
  out.push('');
  out.push(
    'Servers (PORT: a free port chosen by the script; tsgun binds port 0 and the script reads the `Listening at:` line):',
  );
  out.push('');
  for (const s of servers) out.push(`- ${s.label}: \`${meta.commands[s.id] ?? '—'}\``);
  out.push('');
  out.push('Load (the same for every server, one after another, the server order rotating by workload and run):');
  out.push('');
  for (const w of workloads) out.push(`- ${w.title}: \`${wrkCommand(w, DURATION)}\``);
  out.push('');
  out.push(
    `Before measuring, every server gets 1 s of each workload (except -c1000) as warm-up. Server logs of the last run: \`${rel(LOG_DIR)}/\` (git-ignored); raw numbers: \`bench/results/benchmarks.json\`.`,
  );
  out.push('');
  return out.join('\n');
}

function targets({ A, has, workloads, startup }) {
  const list = [];
  const ratio = (w) => (has('tsgun', w) && has('cluster', w) ? A('tsgun', w).rps / A('cluster', w).rps : null);
  const keepAlive = workloads.filter((w) => w.id !== 'json-close');
  const ratios = keepAlive.map((w) => [w, ratio(w.id)]).filter(([, r]) => r != null);
  if (ratios.length) {
    list.push({
      target: 'tsgun / cluster req/s ≥ 1.0 on every workload',
      measured: ratios.map(([w, r]) => `${w.id} ${r.toFixed(2)}`).join(', '),
      pass: ratios.every(([, r]) => r >= 1.0),
    });
  }
  const close = ratio('json-close');
  if (close != null)
    list.push({
      target: 'tsgun / cluster req/s ≥ 1.3 with a new connection per request',
      measured: `json-close ${close.toFixed(2)}`,
      pass: close >= 1.3,
    });
  const p99 = workloads
    .filter((w) => has('tsgun', w.id) && has('cluster', w.id))
    .map((w) => [w, A('tsgun', w.id).p99, A('cluster', w.id).p99]);
  if (p99.length)
    list.push({
      target: 'p99 latency no worse than cluster',
      measured: p99.map(([w, a, b]) => `${w.id} ${a.toFixed(1)} vs ${b.toFixed(1)} ms`).join(', '),
      pass: p99.every(([, a, b]) => a <= b),
    });
  const cpu = workloads
    .filter((w) => A('tsgun', w.id)?.cpuPerReq != null && A('cluster', w.id)?.cpuPerReq != null)
    .map((w) => [w, A('tsgun', w.id).cpuPerReq, A('cluster', w.id).cpuPerReq]);
  if (cpu.length)
    list.push({
      target: "server CPU per request ≤ cluster's",
      measured: cpu.map(([w, a, b]) => `${w.id} ${a.toFixed(0)} vs ${b.toFixed(0)} µs`).join(', '),
      pass: cpu.every(([, a, b]) => a <= b),
    });
  if (has('tsgun', 'json') && has('tsgun-fetch', 'json')) {
    const r = A('tsgun-fetch', 'json').rps / A('tsgun', 'json').rps;
    list.push({
      target: 'fetch shape within 15 % of listener shape on json (tsgun -w 2)',
      measured: `${fmtInt(A('tsgun-fetch', 'json').rps)} vs ${fmtInt(A('tsgun', 'json').rps)} req/s = ${r.toFixed(2)}${has('tsgun-fetch-w1', 'json') && has('tsgun-w1', 'json') ? `; at -w 1: ${(A('tsgun-fetch-w1', 'json').rps / A('tsgun-w1', 'json').rps).toFixed(2)}` : ''}`,
      pass: r >= 0.85,
    });
  }
  for (const [id, n] of [
    ['tsgun', 2],
    ['tsgun-w4', 4],
  ]) {
    const devs = workloads.filter((w) => A(id, w.id)?.splitDev != null).map((w) => [w, A(id, w.id).splitDev]);
    if (devs.length)
      list.push({
        target: `per-worker split within 20 % of even, ${n} workers`,
        measured:
          devs.map(([w, d]) => `${w.id} ${pct(d, 0)}`).join(', ') +
          ' (median over runs of the largest distance from even)',
        pass: devs.every(([, d]) => d <= 0.2),
      });
  }
  const master = workloads
    .filter((w) => A('tsgun', w.id)?.masterShare != null)
    .map((w) => [w, A('tsgun', w.id).masterShare]);
  if (master.length) {
    const runs = workloads.flatMap((w) => A('tsgun', w.id)?.ok ?? []);
    const overall = runs.reduce((s, r) => s + (r.cpu.master ?? 0), 0) / runs.reduce((s, r) => s + r.cpu.total, 0);
    list.push({
      target: 'master CPU < 1 % of total during load',
      measured: `${master.map(([w, s]) => `${w.id} ${pct(s, 2)}`).join(', ')}; all runs together ${pct(overall, 2)} (tsgun -w 2, listener; /proc ticks are 10 ms)`,
      pass: master.every(([, s]) => s < 0.01),
    });
  }
  const rss = Math.max(
    0,
    ...['tsgun', 'tsgun-fetch', 'tsgun-w4'].flatMap((id) => workloads.map((w) => A(id, w.id)?.masterRss ?? 0)),
  );
  if (rss)
    list.push({
      target: 'master RSS < 60 MB',
      measured: `${(rss / 1e6).toFixed(1)} MB (${mib(rss)} MiB), the largest seen after any run`,
      pass: rss < 60e6,
    });
  const js = startup?.find((c) => c.id === 'js');
  if (js) {
    const m = median(js.runs.filter((r) => !r.error).map((r) => r.firstMs));
    list.push({
      target: 'start to first response < 0.5 s, JS app, 2 workers',
      measured: m == null ? 'error' : `${(m / 1000).toFixed(3)} s (median of ${js.runs.length})`,
      pass: m == null ? false : m < 500,
    });
  }
  return list;
}

/** JSON with one line per array element at the top level's arrays: diffable, not 10,000 lines. */
function compactJson(obj) {
  const parts = Object.entries(obj).map(([k, v]) => {
    const body = Array.isArray(v)
      ? `[\n${v.map((x) => `    ${JSON.stringify(x)}`).join(',\n')}\n  ]`
      : JSON.stringify(v);
    return `  ${JSON.stringify(k)}: ${body}`;
  });
  return `{\n${parts.join(',\n')}\n}\n`;
}

// ---- main -------------------------------------------------------------------------------------

async function main() {
  tools.wrk = await ensureWrk();
  tools.tsgun = await snapshotTsgun();
  Object.assign(tools, await ensureBenchDeps());
  const wantServers = opts.servers ? new Set(opts.servers.split(',')) : null;
  const wantWorkloads = opts.workloads ? new Set(opts.workloads.split(',')) : null;
  let servers = SERVERS.filter((s) => !wantServers || wantServers.has(s.id));
  const workloads = WORKLOADS.filter((w) => !wantWorkloads || wantWorkloads.has(w.id));
  if (servers.some((s) => s.needs === 'gunicorn')) tools.gunicorn = await ensureGunicorn();
  const skipped = [];
  servers = servers.filter((s) => {
    const why =
      s.needs === 'pm2'
        ? tools.pm2.why
        : s.needs === 'srvx'
          ? tools.srvx.why
          : s.needs === 'gunicorn'
            ? tools.gunicorn?.why
            : null;
    if (s.needs && why) {
      log(`skipping ${s.label}: ${why}`);
      skipped.push([s.id, why]);
      return false;
    }
    return true;
  });

  const meta = {
    started: new Date().toISOString().slice(0, 16).replace('T', ' '),
    loadBefore: os
      .loadavg()
      .map((x) => x.toFixed(2))
      .join(' '),
    machine: machineInfo(),
    commands: {},
    versions: [
      `node ${process.version}`,
      `tsgun ${pkgVersion(ROOT)} (git ${gitRev()}; dist/ built ${tools.tsgunBuilt} UTC, run from a copy made at the start)`,
      wrkVersion(),
      tools.pm2?.version ? `pm2 ${tools.pm2.version}` : 'pm2: not installed',
      tools.gunicorn?.bin
        ? `gunicorn ${tools.gunicorn.gunicornVersion} + uvicorn ${tools.gunicorn.uvicornVersion} (${tools.gunicorn.loop}, ${tools.gunicorn.parser}; ${tools.gunicorn.python})`
        : 'gunicorn: not available',
      `hono ${pkgVersion(path.join(ROOT, 'node_modules', 'hono'))}`,
      `@hono/node-server ${pkgVersion(path.join(ROOT, 'node_modules', '@hono', 'node-server'))}`,
      tools.srvx?.version ? `srvx ${tools.srvx.version}` : 'srvx: not installed',
    ],
  };
  log(
    `load average ${meta.loadBefore}; ${RUNS} run(s) x ${DURATION} s; servers: ${servers.map((s) => s.id).join(', ')}`,
  );

  let startup = null;
  if (!opts['no-startup']) {
    log('start-to-first-response timings');
    startup = await measureStartup();
    for (const c of startup)
      log(`  ${c.id}: ${c.runs.map((r) => (r.error ? 'error' : (r.firstMs / 1000).toFixed(3))).join(' ')} s`);
  }

  const results = [];
  for (let rep = 1; rep <= RUNS; rep++) {
    (meta.loadPerRun ??= []).push(os.loadavg()[0].toFixed(2));
    log(`run ${rep}/${RUNS} (load average ${os.loadavg()[0].toFixed(2)}): starting ${servers.length} servers`);
    const live = [];
    try {
      for (const def of servers) {
        if (interrupted) return;
        const s = new def.kind(def, rep);
        try {
          await s.start();
          live.push(s);
          meta.commands[def.id] ??= s.command();
        } catch (err) {
          if (interrupted) return;
          log(`run ${rep}: ${def.id} failed to start: ${err.message}`);
          await s.stop();
          for (const w of workloads)
            results.push({
              rep,
              server: def.id,
              workload: w.id,
              error: `failed to start: ${err.message.split('\n')[0]}`,
            });
        }
      }
      log(`run ${rep}: warm-up`);
      for (const s of live) {
        for (const w of workloads) {
          if (interrupted) return;
          if (w.conns > 100 || (s.def.workloads && !s.def.workloads.includes(w.id))) continue;
          await wrk(w, s.port, 1).catch((err) => log(`warm-up ${s.def.id} ${w.id}: ${err.message}`));
        }
      }
      await sleep(BEAT_WAIT_MS);
      for (const [wi, w] of workloads.entries()) {
        const these = live.filter((s) => !s.def.workloads || s.def.workloads.includes(w.id));
        const shift = (wi + rep - 1) % Math.max(1, these.length);
        const order = [...these.slice(shift), ...these.slice(0, shift)];
        for (const s of order) {
          if (interrupted) return;
          try {
            const r = await measure(s, w, rep);
            results.push(r);
            log(
              `run ${rep} ${w.id.padEnd(10)} ${s.def.id.padEnd(14)} ${fmtInt(r.rps).padStart(7)} req/s  p99 ${fmt(r.p99, 1).padStart(6)} ms  cpu ${fmt(r.cpuPerReq, 0).padStart(4)} µs/req${r.errors ? `  errors ${r.errors}` : ''}${r.split ? `  split ${r.split.join('/')}` : ''}${r.cpu.master != null ? `  master ${pct(r.cpu.master / r.cpu.total, 2)}` : ''}`,
            );
          } catch (err) {
            if (interrupted) return;
            log(`run ${rep} ${w.id} ${s.def.id} failed: ${err.message}`);
            results.push({ rep, server: s.def.id, workload: w.id, error: err.message.split('\n')[0] });
          }
        }
      }
    } finally {
      for (const s of live.reverse()) await s.stop();
    }
  }

  let profiles = null;
  if (!opts['no-profile']) profiles = await measureProfiles();

  meta.loadAfter = os
    .loadavg()
    .map((x) => x.toFixed(2))
    .join(' ');
  const agg = aggregate(results);
  const md = keepMarked(report({ agg, servers, workloads, startup, profiles, meta, skipped }), opts.out);
  if (opts['no-write']) {
    process.stdout.write(md + '\n');
  } else {
    mkdirSync(path.dirname(opts.out), { recursive: true });
    writeFileSync(opts.out, md);
    mkdirSync(path.join(BENCH, 'results'), { recursive: true });
    const compactProfiles = profiles?.map(({ summary, ...p }) => ({
      ...p,
      summary: summary && {
        ...summary,
        functions: summary.functions.slice(0, 30),
        own: summary.own.slice(0, 15),
        attributed: summary.attributed.slice(0, 10).map((a) => ({ ...a, leaves: a.leaves.slice(0, 6) })),
      },
    }));
    writeFileSync(
      path.join(BENCH, 'results', 'benchmarks.json'),
      compactJson({ meta, runs: RUNS, duration: DURATION, startup, results, profiles: compactProfiles }),
    );
    log(`wrote ${rel(opts.out)} and bench/results/benchmarks.json; server logs in ${rel(LOG_DIR)}`);
  }
}

await runMain(main);
