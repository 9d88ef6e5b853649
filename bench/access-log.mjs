#!/usr/bin/env node
// Access log cost: requests/s of the same app under tsgun with the access log off and on
// (written to a file), measured in alternation with the same wrk settings, and the ratio.
//
//   node bench/access-log.mjs [--runs 3] [--duration 5] [--workers 1] [--format FMT]
//
// Each server gets `--runs` wrk runs of `--duration` seconds (`wrk -t1 -c32`), in the
// order off, on, on, off, off, on, ... so that a drift in the machine's load hits both
// alike; the medians are compared. `--format` is the access log format (default:
// Gunicorn's default line; `json` for JSON lines). Needs a built tsgun
// (`npx tsc -p tsconfig.build.json`) and wrk (/usr/bin/wrk). Both servers are stopped at
// the end, on error and on Ctrl-C.
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const BENCH = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.dirname(BENCH);
const TSGUN = path.join(ROOT, 'bin', 'tsgun');
const APP = 'bench/apps/json.mjs:default';
const WRK = existsSync('/usr/bin/wrk') ? '/usr/bin/wrk' : 'wrk';
const WRK_LUA = path.join(BENCH, 'wrk-summary.lua');

const { values: opts } = parseArgs({
  options: {
    runs: { type: 'string', default: '3' },
    duration: { type: 'string', default: '5' },
    workers: { type: 'string', default: '1' },
    format: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (opts.help) {
  process.stdout.write(
    readFileSync(fileURLToPath(import.meta.url), 'utf8')
      .split('\n')
      .slice(1, 12)
      .map((l) => l.replace(/^\/\/ ?/, ''))
      .join('\n') + '\n',
  );
  process.exit(0);
}
const RUNS = Number(opts.runs);
const DURATION = Number(opts.duration);
const WORKERS = Number(opts.workers);
if (!(RUNS >= 1) || !(DURATION >= 1) || !(WORKERS >= 1)) {
  process.stderr.write('Error: --runs, --duration (seconds) and --workers must be >= 1\n');
  process.exit(2);
}
if (!existsSync(path.join(ROOT, 'dist', 'cli.js'))) {
  process.stderr.write('Error: tsgun is not built; run `npx tsc -p tsconfig.build.json` first\n');
  process.exit(2);
}

const TMP = mkdtempSync(path.join(os.tmpdir(), 'tsgun-bench-accesslog-'));
const ACCESS_LOG = path.join(TMP, 'access.log');
const log = (msg) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

// ---- servers ------------------------------------------------------------------------------

const servers = [];

/** Start tsgun on a free port; resolves once its workers are up, with its URL. */
function startTsgun(name, extra) {
  return new Promise((resolve, reject) => {
    const args = [TSGUN, '-b', '127.0.0.1:0', '-w', String(WORKERS), ...extra, APP];
    const proc = spawn(process.execPath, args, {
      cwd: ROOT,
      env: { ...process.env, TSGUN_CMD_ARGS: '', PORT: '', WEB_CONCURRENCY: '' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    const server = { name, proc, url: null, stderr: '' };
    servers.push(server);
    let booted = 0;
    const timer = setTimeout(() => reject(new Error(`${name}: not ready within 30 s\n${server.stderr}`)), 30_000);
    proc.stderr.setEncoding('utf8').on('data', (chunk) => {
      server.stderr = (server.stderr + chunk).slice(-20_000);
      server.url ??= /Listening at: (http:\/\/[\d.]+:\d+)/.exec(server.stderr)?.[1] ?? null;
      booted = (server.stderr.match(/Booting worker with pid/g) ?? []).length;
      if (server.url && booted >= WORKERS) {
        clearTimeout(timer);
        resolve(server);
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${name}: tsgun exited (${code})\n${server.stderr}`));
    });
  });
}

async function stopAll() {
  await Promise.all(
    servers.map(
      ({ proc }) =>
        new Promise((resolve) => {
          if (proc.exitCode !== null || proc.signalCode !== null) return resolve();
          const kill = setTimeout(() => proc.kill('SIGKILL'), 10_000);
          proc.once('exit', () => {
            clearTimeout(kill);
            resolve();
          });
          proc.kill('SIGTERM');
        }),
    ),
  );
}

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.once(sig, () => {
    void stopAll().finally(() => {
      rmSync(TMP, { recursive: true, force: true });
      process.exit(130);
    });
  });
}

// ---- wrk ------------------------------------------------------------------------------------

function wrk(url, seconds) {
  return new Promise((resolve, reject) => {
    execFile(
      WRK,
      ['-t1', '-c32', `-d${seconds}s`, '-s', WRK_LUA, `${url}/`],
      { maxBuffer: 1 << 20 },
      (err, stdout, stderr) => {
        if (err) return reject(new Error(`wrk failed: ${err.message}\n${stderr}`));
        const line = /WRK_SUMMARY (\{.*\})/.exec(stdout);
        if (!line) return reject(new Error(`no WRK_SUMMARY line in wrk's output:\n${stdout}`));
        const s = JSON.parse(line[1]);
        const errors = s.connect + s.read + s.write + s.status + s.timeout;
        resolve({ rps: s.requests / (s.duration_us / 1e6), requests: s.requests, errors, p99ms: s.p99_us / 1000 });
      },
    );
  });
}

// ---- main -----------------------------------------------------------------------------------

async function main() {
  const format = opts.format ? ['--access-logformat', opts.format] : [];
  log(
    `starting tsgun twice (-w ${WORKERS}, ${APP}): access log off, and on to ${ACCESS_LOG}${opts.format ? ` (format ${opts.format})` : ''}`,
  );
  const [off, on] = await Promise.all([
    startTsgun('off', []),
    startTsgun('on', ['--access-logfile', ACCESS_LOG, ...format]),
  ]);
  // Warm-up (JIT, connection setup); its requests are in the access log too.
  await wrk(off.url, 1);
  const warmRequests = (await wrk(on.url, 1)).requests;

  const results = { off: [], on: [] };
  for (let i = 0; i < RUNS; i++) {
    const order = i % 2 === 0 ? [off, on] : [on, off];
    for (const s of order) {
      const r = await wrk(s.url, DURATION);
      results[s.name].push(r);
      log(
        `run ${i + 1}/${RUNS} ${s.name.padEnd(3)} ${r.rps.toFixed(0).padStart(7)} req/s  p99 ${r.p99ms.toFixed(1)} ms  errors ${r.errors}`,
      );
    }
  }
  await stopAll();

  // Every request the "on" server served is one line in the file (flushed at exit). wrk
  // does not count the requests still in flight when a run ends (up to -c per run).
  const logged = readFileSync(ACCESS_LOG, 'utf8').split('\n').length - 1 - warmRequests;
  const served = results.on.reduce((n, r) => n + r.requests, 0);
  const [mOff, mOn] = [median(results.off.map((r) => r.rps)), median(results.on.map((r) => r.rps))];
  const errors = [...results.off, ...results.on].reduce((n, r) => n + r.errors, 0);
  const load = os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');
  const out = [
    `access log benchmark: tsgun -w ${WORKERS} ${APP}, wrk -t1 -c32 -d${DURATION}s, ${RUNS} runs each, alternating`,
    `machine: ${os.cpus().length} x ${os.cpus()[0]?.model ?? 'cpu'}, node ${process.version}, load average ${load}`,
    `access log off: median ${mOff.toFixed(0)} req/s  (runs: ${results.off.map((r) => r.rps.toFixed(0)).join(', ')})`,
    `access log on:  median ${mOn.toFixed(0)} req/s  (runs: ${results.on.map((r) => r.rps.toFixed(0)).join(', ')})  format: ${opts.format ?? 'default'}`,
    `ratio on/off: ${((mOn / mOff) * 100).toFixed(1)} %`,
    `log file: ${logged} lines for ${served} requests wrk counted with it on (${(statSync(ACCESS_LOG).size / 1e6).toFixed(1)} MB in all); wrk errors: ${errors}`,
  ];
  process.stdout.write(`${out.join('\n')}\n`);
  if (logged < served) log(`warning: ${served - logged} request(s) missing from the access log`);
}

main()
  .catch(async (err) => {
    process.stderr.write(`Error: ${err.message}\n`);
    process.exitCode = 1;
    await stopAll();
  })
  .finally(() => rmSync(TMP, { recursive: true, force: true }));
