#!/usr/bin/env node
// Memory of a master and its workers, idle and under load: tsgun, Node's cluster module, PM2
// cluster mode and Gunicorn + UvicornWorker (2 workers each), and one bare node:http process
// (the floor of a Node worker), all on the same app (bench/apps/suite.mjs; suite_app.py for
// Gunicorn).
//
//   node bench/memory.mjs [--rounds 3] [--duration 8] [--servers tsgun,cluster,...] [--no-write]
//
// Each round starts every server in turn (the order rotating by round), warms it up (2 s of the
// json workload, so that every server has run its request path before it is called idle), lets
// it settle, samples every process 5 times 0.5 s apart (idle), then samples once a second
// under `wrk -t1 -c32` on /json for --duration seconds (load), and stops it. Per process: VmRSS,
// and USS (Private_Clean + Private_Dirty of /proc/PID/smaps_rollup: the memory only this
// process holds; RSS also counts the pages of the node binary and of libraries that every
// process running them shares). The table gives medians over samples, workers and rounds.
// Writes bench/results/memory.md and memory.json, and the memory section of
// docs/benchmarks.md (between its memory markers; bench/run.mjs keeps that section), unless
// --no-write. Needs a built tsgun (built here if dist/ is missing), wrk (apt-get), and for
// their rows PM2 (npm install --prefix bench) and Gunicorn + Uvicorn (apt-get).
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import {
  BENCH,
  ROOT,
  WORKLOADS,
  ensureBenchDeps,
  ensureGunicorn,
  ensureWrk,
  gitRev,
  interrupted,
  log,
  median,
  pkgVersion,
  rel,
  replaceMarkedSection,
  runMain,
  setup,
  sleep,
  snapshotTsgun,
  tools,
  wrk,
  wrkCommand,
  wrkVersion,
} from './lib.mjs';
import { serverKinds } from './servers.mjs';

const { values: opts } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    duration: { type: 'string', default: '8' },
    servers: { type: 'string', default: 'tsgun,cluster,pm2,gunicorn,node' },
    'no-write': { type: 'boolean', default: false },
  },
});
const ROUNDS = Number(opts.rounds);
const DURATION = Number(opts.duration);
if (!(ROUNDS >= 1) || !(DURATION >= 3)) {
  process.stderr.write('Error: --rounds must be >= 1 and --duration >= 3 (seconds)\n');
  process.exit(2);
}
const JSON_LOAD = WORKLOADS.find((w) => w.id === 'json');
const WARMUP_S = 2;
const SETTLE_MS = 3000;
const IDLE_SAMPLES = 5;
const OUT_MD = path.join(BENCH, 'results', 'memory.md');
const OUT_JSON = path.join(BENCH, 'results', 'memory.json');
const DOC = path.join(ROOT, 'docs', 'benchmarks.md');

const { LOG_DIR, TMP } = setup({ logs: 'memory-logs.tmp', tmpPrefix: 'tsgun-memory-' });

// ---- /proc ----------------------------------------------------------------------------------

/** { rss, uss } in bytes, or null once the process is gone. */
function memoryOf(pid) {
  try {
    const text = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
    const kb = (field) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN) * 1024;
    return { rss: kb('Rss'), uss: kb('Private_Clean') + kb('Private_Dirty') };
  } catch {
    return null;
  }
}

/** One sample of a server: its master's memory (null for one process) and each worker's. */
function sample(server) {
  const { master, workers } = server.procs();
  return { master: master ? memoryOf(master) : null, workers: workers.map(memoryOf).filter(Boolean) };
}

// ---- servers ------------------------------------------------------------------------------------

const APP = 'bench/apps/suite.mjs:default';

const { TsgunServer, ClusterServer, SingleServer, GunicornServer, Pm2Server } = serverKinds({
  tmp: TMP,
  logDir: LOG_DIR,
});

const SERVERS = [
  { id: 'tsgun', label: 'tsgun -w 2', kind: TsgunServer, workers: 2, app: APP },
  { id: 'cluster', label: 'node:cluster, 2 workers', kind: ClusterServer },
  { id: 'pm2', label: 'PM2 cluster, -i 2', kind: Pm2Server, needs: 'pm2' },
  { id: 'gunicorn', label: 'Gunicorn + UvicornWorker, -w 2', kind: GunicornServer, needs: 'gunicorn' },
  { id: 'node', label: 'node:http, 1 process (no master)', kind: SingleServer, script: 'bench/apps/node-http.mjs' },
];

// ---- measuring ----------------------------------------------------------------------------------

async function measure(server) {
  await wrk(JSON_LOAD, server.port, WARMUP_S);
  await sleep(SETTLE_MS);
  const idle = [];
  for (let i = 0; i < IDLE_SAMPLES; i++) {
    idle.push(sample(server));
    await sleep(500);
  }
  const load = [];
  const result = await wrk(JSON_LOAD, server.port, DURATION, async (t0) => {
    // From the second second on, once a second, while wrk runs.
    for (let at = 2000; at < DURATION * 1000 - 500; at += 1000) {
      await sleep(Math.max(0, t0 + at - Date.now()));
      load.push(sample(server));
    }
    return [];
  });
  return { idle, load, rps: result.rps, failed: result.failed };
}

/** Medians (MB) over samples, then over processes and rounds, of one role and one field. */
function summarize(measurements, phase, role, field) {
  const values = [];
  for (const m of measurements) {
    const samples = m[phase];
    if (role === 'master') {
      values.push(median(samples.map((s) => s.master?.[field])));
    } else {
      const n = Math.max(0, ...samples.map((s) => s.workers.length));
      for (let i = 0; i < n; i++) values.push(median(samples.map((s) => s.workers[i]?.[field])));
    }
  }
  const mb = values.filter((v) => v != null).map((v) => v / 1048576);
  return { median: median(mb), min: mb.length ? Math.min(...mb) : null, max: mb.length ? Math.max(...mb) : null };
}

// ---- report ------------------------------------------------------------------------------------

const fmt = (s) => (s?.median == null ? '—' : s.median.toFixed(1));
const range = (s) => (s?.median == null ? '—' : `${s.median.toFixed(1)} (${s.min.toFixed(1)}–${s.max.toFixed(1)})`);

function targets(rows) {
  const by = Object.fromEntries(rows.map((r) => [r.id, r]));
  const out = [];
  const t = by.tsgun;
  if (!t) return out;
  if (by.node) {
    const limit = by.node.idle.workerRss.median + 5;
    out.push({
      target: 'tsgun worker RSS, idle ≤ bare node:http process + 5 MB',
      measured: `${fmt(t.idle.workerRss)} MB against ${fmt(by.node.idle.workerRss)} + 5 = ${limit.toFixed(1)} MB`,
      pass: t.idle.workerRss.median <= limit,
    });
  }
  if (by.cluster) {
    const ratio = t.load.workerRss.median / by.cluster.load.workerRss.median;
    out.push({
      target: "tsgun worker RSS under load within 10 % of a cluster worker's",
      measured: `${fmt(t.load.workerRss)} MB against ${fmt(by.cluster.load.workerRss)} MB (× ${ratio.toFixed(3)})`,
      pass: ratio <= 1.1,
    });
  }
  out.push({
    target: 'tsgun master RSS ≤ 40 MB (idle)',
    measured: `${fmt(t.idle.masterRss)} MB`,
    pass: t.idle.masterRss.median <= 40,
  });
  return out;
}

function report({ rows, meta, skipped }) {
  const out = [];
  out.push('## Memory: master and workers, idle and under load');
  out.push('');
  out.push(
    `Generated by \`node bench/memory.mjs\` (${meta.date}; ${meta.rounds} rounds; tsgun git ${meta.rev}). ${meta.machine}. Tools: ${meta.tools}.`,
  );
  out.push('');
  out.push(
    `Each server serves the same app (\`bench/apps/suite.mjs\`, \`suite_app.py\` for Gunicorn) with 2 workers. Idle: after ${WARMUP_S} s of the json workload and ${SETTLE_MS / 1000} s of rest, ${IDLE_SAMPLES} samples 0.5 s apart. ` +
      `Under load: once a second during \`${wrkCommand(JSON_LOAD, DURATION)}\`. Medians over samples, then over workers and rounds (worker range in parentheses). ` +
      'RSS counts the pages of the node (or python) binary and of shared libraries that every process running them shares; USS (Private_Clean + Private_Dirty of /proc/PID/smaps_rollup) is what each process holds alone: what one more worker costs. MB = 2^20 bytes.',
  );
  out.push('');
  out.push(
    '| server | master RSS idle | worker RSS idle | worker USS idle | master RSS load | worker RSS load | worker USS load | req/s (json) |',
  );
  out.push('|---|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of rows) {
    out.push(
      `| ${r.label} | ${fmt(r.idle.masterRss)} | ${range(r.idle.workerRss)} | ${fmt(r.idle.workerUss)} | ${fmt(r.load.masterRss)} | ${range(r.load.workerRss)} | ${fmt(r.load.workerUss)} | ${r.rps == null ? '—' : Math.round(r.rps).toLocaleString('en-US')} |`,
    );
  }
  for (const [id, why] of skipped)
    out.push(`| ${SERVERS.find((s) => s.id === id).label} | — | — | — | — | — | — | skipped: ${why} |`);
  out.push('');
  const list = targets(rows);
  if (list.length) {
    out.push('Targets (issue 21):');
    out.push('');
    out.push('| target | measured | |');
    out.push('|---|---|---|');
    for (const t of list) out.push(`| ${t.target} | ${t.measured} | ${t.pass ? 'pass' : '**fail**'} |`);
    out.push('');
  }
  out.push(
    'What a tsgun worker carries beyond a bare `node:http` process, part by part: `node bench/worker-parts.mjs` (docs/deploy.md, "Memory: what a master and a worker cost").',
  );
  return out.join('\n');
}

// ---- main ---------------------------------------------------------------------------------------

async function main() {
  const wanted = new Set(opts.servers.split(','));
  tools.wrk = await ensureWrk();
  tools.tsgun = await snapshotTsgun();
  const skipped = [];
  let servers = SERVERS.filter((s) => wanted.has(s.id));
  if (servers.some((s) => s.needs === 'pm2')) {
    const deps = await ensureBenchDeps();
    if (deps.pm2.bin) tools.pm2 = deps.pm2;
    else skipped.push(['pm2', deps.pm2.why]);
  }
  if (servers.some((s) => s.needs === 'gunicorn')) {
    const g = await ensureGunicorn();
    if (g.bin) tools.gunicorn = g;
    else skipped.push(['gunicorn', g.why]);
  }
  servers = servers.filter((s) => !skipped.some(([id]) => id === s.id));
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  const meta = {
    date: new Date().toISOString().slice(0, 16).replace('T', ' ') + ' UTC',
    rev: gitRev(),
    rounds: ROUNDS,
    machine: `${os.cpus().length} × ${cpu}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, Linux ${os.release()}, Node ${process.version}; load average ${os
      .loadavg()
      .map((x) => x.toFixed(2))
      .join(' ')} at the start`,
    tools: [
      wrkVersion(),
      `tsgun ${pkgVersion(ROOT)}`,
      tools.pm2 ? `PM2 ${tools.pm2.version}` : null,
      tools.gunicorn
        ? `Gunicorn ${tools.gunicorn.gunicornVersion} + Uvicorn ${tools.gunicorn.uvicornVersion} (${tools.gunicorn.loop}, ${tools.gunicorn.parser})`
        : null,
    ]
      .filter(Boolean)
      .join(', '),
  };
  const measurements = Object.fromEntries(servers.map((s) => [s.id, []]));
  for (let round = 1; round <= ROUNDS && !interrupted; round++) {
    const order = servers.map((_, i) => servers[(i + round - 1) % servers.length]);
    for (const def of order) {
      if (interrupted) break;
      const server = new def.kind(def, round);
      try {
        log(`round ${round}: ${def.id}`);
        await server.start();
        measurements[def.id].push(await measure(server));
      } finally {
        await server.stop();
      }
    }
  }
  const rows = servers.map((def) => {
    const m = measurements[def.id];
    const part = (phase) => ({
      masterRss: summarize(m, phase, 'master', 'rss'),
      workerRss: summarize(m, phase, 'worker', 'rss'),
      workerUss: summarize(m, phase, 'worker', 'uss'),
    });
    return {
      id: def.id,
      label: def.label,
      command: new def.kind(def, 0).command(),
      idle: part('idle'),
      load: part('load'),
      rps: median(m.map((x) => x.rps)),
      failed: m.reduce((n, x) => n + x.failed, 0),
    };
  });
  const md = report({ rows, meta, skipped });
  process.stdout.write(`${md}\n`);
  if (opts['no-write']) return;
  mkdirSync(path.dirname(OUT_MD), { recursive: true });
  writeFileSync(OUT_MD, `${md}\n\nCommands: ${rows.map((r) => `\`${r.command}\``).join(', ')}.\n`);
  writeFileSync(OUT_JSON, `${JSON.stringify({ meta, rows, measurements }, null, 1)}\n`);
  if (existsSync(DOC)) writeFileSync(DOC, replaceMarkedSection(readFileSync(DOC, 'utf8'), 'memory', md));
  log(`wrote ${rel(OUT_MD)}, ${rel(OUT_JSON)} and the memory section of ${rel(DOC)}; server logs in ${rel(LOG_DIR)}`);
}

await runMain(main);
