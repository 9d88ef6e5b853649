#!/usr/bin/env node
// Where a reload's throughput goes. bench/reload.mjs shows how many requests a tsgun serves
// while it is told to HUP four times in 12 s; this script shows what those reloads cost in
// CPU, which on a machine whose cores are busy is the same thing:
//
//   1. One tsgun (-w 2, the reload benchmark's app), phases alternating: a steady phase, a
//      phase with 4 HUPs; per phase, the CPU of the whole process tree (master, workers,
//      and the workers reaped during the phase) per request served.
//   2. A fresh process: one bare node:http process serving the same app, started cold and
//      loaded in 1 s slices; CPU per request in each slice (JIT and heap warm-up).
//   3. What one worker costs to start and stop, without load: 8 HUPs of an idle tsgun,
//      the CPU of everything it started, per worker; the same for the reload benchmark's
//      floor (bench/apps/bare-manager.mjs, bare node:http workers).
//
//   node bench/reload-cpu.mjs [--rounds 3] [--duration 12] [--parts 1,2,3] [--tsgun-args='-t 0']
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  ensureTsgun,
  ensureWrk,
  fmtInt,
  log,
  median,
  onCleanup,
  ROOT,
  runMain,
  setup,
  signal,
  sleep,
  terminate,
  tools,
  treeTicks,
  waitFor,
  wrk,
} from './lib.mjs';

const { values: opts } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    duration: { type: 'string', default: '12' },
    parts: { type: 'string', default: '1,2,3' },
    'tsgun-args': { type: 'string', default: '' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (opts.help) {
  process.stdout.write(
    readFileSync(fileURLToPath(import.meta.url), 'utf8')
      .split('\n')
      .slice(1, 15)
      .map((l) => l.replace(/^\/\/ ?/, ''))
      .join('\n') + '\n',
  );
  process.exit(0);
}
const ROUNDS = Number(opts.rounds);
const DURATION = Number(opts.duration);
const PARTS = new Set(opts.parts.split(',').map(Number));
/** Extra tsgun arguments, to compare settings (`--tsgun-args='-t 0'`: no watchdog thread). */
const TSGUN_ARGS = opts['tsgun-args'].split(' ').filter(Boolean);
if (!(ROUNDS >= 1) || !(DURATION >= 4)) {
  process.stderr.write('Error: --rounds must be >= 1 and --duration >= 4 (seconds)\n');
  process.exit(2);
}
const LOAD = { conns: 32, path: '/' };
const APP = 'bench/apps/json.mjs:default';
const { LOG_DIR, TMP } = setup({ logs: 'reload-cpu-logs.tmp', tmpPrefix: 'tsgun-reload-cpu-' });
const TICK_S = 0.01; // USER_HZ is 100 on Linux

// ---- /proc ------------------------------------------------------------------------------

/**
 * CPU seconds of a process tree: every live process under `root`, plus the children each has
 * reaped (the workers a reload retired).
 */
const treeCpu = (root) => Object.values(treeTicks(root, { reaped: true })).reduce((a, b) => a + b, 0) * TICK_S;

// ---- servers ----------------------------------------------------------------------------

let started = 0;
/**
 * Start a server that prints `Listening at: http://127.0.0.1:PORT` and `Ready: 2 workers`
 * (tsgun, and the reload benchmark's floor); its output goes to a log file when it stops.
 */
async function startServer(name, file, args) {
  const logPath = path.join(LOG_DIR, `${name}-${++started}.log`);
  let out = '';
  const child = spawn(file, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  const forget = onCleanup(() => terminate(child.pid));
  const m = await waitFor(`${name}: Listening at`, () => /Listening at: http:\/\/127\.0\.0\.1:(\d+)/.exec(out), 20_000);
  await waitFor(`${name}: 2 workers ready`, () => /Ready: 2 workers/.test(out), 20_000);
  return {
    pid: child.pid,
    port: Number(m[1]),
    async stop() {
      forget();
      await terminate(child.pid);
      writeFileSync(logPath, out);
    },
  };
}

const startTsgun = (extra = []) =>
  startServer('tsgun', tools.tsgun, ['-w', '2', '-b', '127.0.0.1:0', ...TSGUN_ARGS, ...extra, APP]);
/** The reload benchmark's floor (bench/apps/bare-manager.mjs): bare node:http workers, replaced on HUP. */
const startFloor = () => startServer('floor', process.execPath, ['bench/apps/bare-manager.mjs', '2']);

// ---- part 1: steady vs 4 HUPs -------------------------------------------------------------

async function steadyVsHup() {
  const server = await startTsgun();
  try {
    await wrk(LOAD, server.port, 3);
    const phases = { steady: [], hup: [] };
    for (let round = 1; round <= ROUNDS; round++) {
      for (const phase of round % 2 ? ['steady', 'hup'] : ['hup', 'steady']) {
        const cpu0 = treeCpu(server.pid);
        const hups = async (t0) => {
          if (phase !== 'hup') return [];
          for (let i = 0; i < 4; i++) {
            const wait = t0 + ((i + 0.5) * DURATION * 1000) / 4 - Date.now();
            if (wait > 0) await sleep(wait);
            signal(server.pid, 'SIGHUP');
          }
          return [];
        };
        const w = await wrk(LOAD, server.port, DURATION, hups);
        await sleep(500); // the last retired worker exits and is reaped
        const cpu = treeCpu(server.pid) - cpu0;
        const r = { rps: w.rps, cpuPerReq: (cpu / w.requests) * 1e6, cores: cpu / DURATION, failed: w.failed };
        phases[phase].push(r);
        log(
          `round ${round} ${phase}: ${fmtInt(r.rps)} req/s, ${r.cpuPerReq.toFixed(1)} µs CPU/request, ${r.cores.toFixed(2)} cores, ${r.failed} failed`,
        );
        await sleep(2000);
      }
    }
    const m = (p, k) => median(phases[p].map((r) => r[k]));
    const ratios = phases.hup.map((h, i) => h.cpuPerReq / phases.steady[i].cpuPerReq);
    return [
      '## 1. Steady state vs 4 HUPs, whole process tree',
      '',
      `\`tsgun -w 2 ${APP}\`, \`wrk -t1 -c32 -d${DURATION}s\` per phase, ${ROUNDS} round(s), phases alternating; medians.`,
      '',
      '| phase | req/s | CPU µs/request | cores used | failed |',
      '|---|---:|---:|---:|---:|',
      `| steady | ${fmtInt(m('steady', 'rps'))} | ${m('steady', 'cpuPerReq').toFixed(1)} | ${m('steady', 'cores').toFixed(2)} | ${phases.steady.reduce((n, r) => n + r.failed, 0)} |`,
      `| 4 HUPs | ${fmtInt(m('hup', 'rps'))} | ${m('hup', 'cpuPerReq').toFixed(1)} | ${m('hup', 'cores').toFixed(2)} | ${phases.hup.reduce((n, r) => n + r.failed, 0)} |`,
      '',
      `CPU per request with HUPs ÷ steady, per round: ${ratios.map((r) => r.toFixed(2)).join(', ')} (median ${median(ratios).toFixed(2)}).`,
      'With the cores busy (cores used ≈ the same in both phases), throughput falls by about that ratio.',
    ];
  } finally {
    await server.stop();
  }
}

// ---- part 2: a fresh process, 1 s slices --------------------------------------------------

const SRV = `import http from 'node:http';
import app from ${JSON.stringify(path.join(ROOT, 'bench/apps/json.mjs'))};
const s = http.createServer(app).listen(0, '127.0.0.1', () => console.log(s.address().port));`;

async function freshProcess() {
  const file = path.join(TMP, 'fresh-server.mjs');
  writeFileSync(file, SRV);
  const SLICES = 8;
  const rows = [];
  for (let round = 1; round <= Math.max(ROUNDS, 3); round++) {
    const child = spawn(process.execPath, [file], { stdio: ['ignore', 'pipe', 'inherit'] });
    const forget = onCleanup(() => child.kill('SIGKILL'));
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    const port = Number((await waitFor('fresh server port', () => /^(\d+)/m.exec(out), 10_000))[1]);
    const slices = [];
    for (let i = 0; i < SLICES; i++) {
      const cpu0 = treeCpu(child.pid);
      const w = await wrk({ conns: 16, path: '/' }, port, 1);
      slices.push(((treeCpu(child.pid) - cpu0) / w.requests) * 1e6);
    }
    child.kill('SIGTERM');
    forget();
    rows.push(slices);
    log(`fresh process ${round}: CPU µs/request per 1 s slice: ${slices.map((x) => x.toFixed(0)).join(' ')}`);
  }
  const med = Array.from({ length: SLICES }, (_, i) => median(rows.map((r) => r[i])));
  const warm = median(med.slice(-3));
  return [
    '## 2. A fresh node:http process (no tsgun), the same app, 1 s slices from cold',
    '',
    "`wrk -t1 -c16 -d1s` repeatedly against one new process; CPU µs per request in each second (median over rounds), and as a multiple of the last three seconds':",
    '',
    `| second | ${med.map((_, i) => i + 1).join(' | ')} |`,
    `|---|${med.map(() => '---:').join('|')}|`,
    `| CPU µs/request | ${med.map((x) => x.toFixed(0)).join(' | ')} |`,
    `| × warm | ${med.map((x) => (x / warm).toFixed(2)).join(' | ')} |`,
  ];
}

// ---- part 3: what a worker costs to start and stop -----------------------------------------

async function workerCost() {
  const HUPS = 8;
  const rows = { tsgun: [], floor: [] };
  for (let round = 1; round <= Math.max(ROUNDS, 3); round++) {
    for (const kind of ['tsgun', 'floor']) {
      const server = kind === 'tsgun' ? await startTsgun() : await startFloor();
      await sleep(500);
      const base = treeCpu(server.pid);
      for (let i = 0; i < HUPS; i++) {
        signal(server.pid, 'SIGHUP');
        await sleep(1500);
      }
      await sleep(500);
      const perWorker = ((treeCpu(server.pid) - base) / (HUPS * 2)) * 1000;
      await server.stop();
      rows[kind].push(perWorker);
      log(
        `idle reloads ${round}, ${kind}: ${perWorker.toFixed(0)} ms CPU per worker started and retired (master's share included)`,
      );
    }
  }
  const line = (xs) =>
    `**${median(xs).toFixed(0)} ms** per worker (median; per round ${xs.map((x) => x.toFixed(0)).join(', ')})`;
  return [
    '## 3. What one worker costs, idle',
    '',
    `${HUPS} HUPs of an idle server with 2 workers: the CPU of the whole tree (master, new workers, reaped old ones) ÷ workers replaced.`,
    '',
    `- \`tsgun -w 2${TSGUN_ARGS.length ? ` ${TSGUN_ARGS.join(' ')}` : ''}\`: ${line(rows.tsgun)}`,
    `- the floor, \`node bench/apps/bare-manager.mjs 2\` (bare node:http workers): ${line(rows.floor)}`,
  ];
}

async function main() {
  tools.wrk = await ensureWrk();
  tools.tsgun = await ensureTsgun();
  const loadBefore = os
    .loadavg()
    .map((x) => x.toFixed(2))
    .join(' ');
  const out = [
    `# Reload CPU (bench/reload-cpu.mjs)`,
    '',
    `${os.cpus().length} CPUs, ${os.cpus()[0]?.model ?? ''}; node ${process.version}; load average before: ${loadBefore}`,
    '',
  ];
  if (PARTS.has(1)) out.push(...(await steadyVsHup()), '');
  if (PARTS.has(2)) out.push(...(await freshProcess()), '');
  if (PARTS.has(3)) out.push(...(await workerCost()), '');
  process.stdout.write(`\n${out.join('\n')}\n`);
}

await runMain(main);
