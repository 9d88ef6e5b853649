#!/usr/bin/env node
// `--reload` benchmark (development mode): how long from saving a file to the new code being
// served, and what the watching master costs while nothing changes.
//
//   node bench/dev-reload.mjs [--edits 10] [--workers 1,2] [--idle 30] [--watch-dir DIR] [--no-baseline]
//   node bench/dev-reload.mjs --edits 0 --watch-dir DIR      # idle cost only
//
// 1. Save-to-serve: a TypeScript app (tsx, no build step) under `tsgun --reload -w N`; each
//    edit rewrites app.ts in place, then polls `/` every 10 ms (a fresh connection each time)
//    from the moment of the write until the new text is served. Reported per worker count:
//    median, min, max and quartiles of write -> first new response, and of the master's
//    `Detected change` log line -> first new response (the log line's own time). Failed
//    requests during the polling are counted. Each edit waits for the previous reload to
//    finish and the old workers to exit.
// 2. Idle cost: `tsgun --reload --reload-dir DIR -w 1` (default DIR: this repository, whose
//    node_modules is excluded by default), left alone for --idle seconds: the master's CPU
//    (utime+stime from /proc/PID/stat) as % of one core, its RSS, and the inotify watches it
//    holds; and the same without --reload, as a baseline.
//
// Needs a built tsgun (`npx tsc -p tsconfig.build.json`; built here if dist/ is missing).
// Prints a Markdown report (with `uptime`) to stdout and stops every process it started.
import { execFileSync, spawn } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const BENCH = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.dirname(BENCH);
const BIN = path.join(ROOT, 'bin', 'tsgun');

const { values: opts } = parseArgs({
  options: {
    edits: { type: 'string', default: '10' },
    workers: { type: 'string', default: '1,2' },
    idle: { type: 'string', default: '30' },
    'watch-dir': { type: 'string', default: ROOT },
    'no-baseline': { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (opts.help) {
  process.stdout.write(
    readFileSync(fileURLToPath(import.meta.url), 'utf8')
      .split('\n')
      .slice(1, 20)
      .map((l) => l.replace(/^\/\/ ?/, ''))
      .join('\n') + '\n',
  );
  process.exit(0);
}
const EDITS = Number(opts.edits);
const WORKERS = opts.workers.split(',').map(Number);
const IDLE_S = Number(opts.idle);
const WATCH_DIR = path.resolve(opts['watch-dir']);
if (!(EDITS >= 0) || !WORKERS.every((w) => Number.isInteger(w) && w >= 1) || !(IDLE_S >= 1)) {
  process.stderr.write(
    'Error: --edits must be >= 0 (0: idle cost only), --workers a list of counts >= 1, --idle >= 1 (seconds)\n',
  );
  process.exit(2);
}
const POLL_MS = 10;
const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
const TMP = mkdtempSync(path.join(os.tmpdir(), 'tsgun-bench-dev-reload-'));

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (msg) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);

// ---- processes --------------------------------------------------------------------------

const running = new Set();

/** Start tsgun; collects its JSON log lines (stderr) as they come. */
function tsgun(args, cwd) {
  const child = spawn(process.execPath, [BIN, ...args], {
    cwd,
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, TSGUN_CMD_ARGS: '', PORT: '', WEB_CONCURRENCY: '', NODE_NO_WARNINGS: '1' },
  });
  const server = { child, pid: child.pid, lines: [], stderr: '' };
  let partial = '';
  child.stderr.setEncoding('utf8').on('data', (chunk) => {
    server.stderr += chunk;
    const parts = (partial + chunk).split('\n');
    partial = parts.pop();
    for (const raw of parts) {
      try {
        server.lines.push(JSON.parse(raw));
      } catch {
        server.lines.push({ msg: raw });
      }
    }
  });
  server.exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
  running.add(server);
  return server;
}

async function waitFor(what, fn, timeoutMs = 60_000, everyMs = 20) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(everyMs);
  }
}

function lineAfter(server, from, re) {
  return server.lines.slice(from).find((l) => re.test(l.msg ?? ''));
}

async function ready(server) {
  await waitFor('Ready', () => {
    if (server.child.exitCode !== null) throw new Error(`tsgun exited ${server.child.exitCode}:\n${server.stderr}`);
    return lineAfter(server, 0, /^Ready: /);
  });
  return /^Listening at: (\S+)/.exec(lineAfter(server, 0, /^Listening at: /).msg)[1];
}

function childPids(pid) {
  const out = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const fields = statFields(Number(entry));
      if (Number(fields[1]) === pid && fields[0] !== 'Z') out.push(Number(entry));
    } catch {
      // Gone while we looked.
    }
  }
  return out.sort((a, b) => a - b);
}

/** /proc/PID/stat after the process title: the title may hold spaces and parentheses. */
function statFields(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

/** utime + stime in clock ticks (fields 14 and 15 of /proc/PID/stat). */
function cpuTicks(pid) {
  const f = statFields(pid);
  return Number(f[11]) + Number(f[12]);
}

function rssKiB(pid) {
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);
}

/** inotify watches held by the process (one `inotify wd:` line per watch in fdinfo). */
function inotifyWatches(pid) {
  let n = 0;
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      if (readlinkSync(`/proc/${pid}/fd/${fd}`) !== 'anon_inode:inotify') continue;
      n += readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8')
        .split('\n')
        .filter((l) => l.startsWith('inotify wd:')).length;
    } catch {
      // Closed while we looked.
    }
  }
  return n;
}

async function stop(server) {
  if (server.child.exitCode === null && server.child.signalCode === null) server.child.kill('SIGTERM');
  const timer = setTimeout(() => {
    for (const pid of childPids(server.pid)) tryKill(pid);
    tryKill(server.pid);
  }, 15_000);
  await server.exited;
  clearTimeout(timer);
  running.delete(server);
}

function tryKill(pid) {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // Gone already.
  }
}

function killAll() {
  for (const s of running) {
    for (const pid of childPids(s.pid)) tryKill(pid);
    tryKill(s.pid);
  }
  rmSync(TMP, { recursive: true, force: true });
}
process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.once(sig, () => process.exit(130));

// ---- HTTP -------------------------------------------------------------------------------

function get(url) {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false, timeout: 10_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

// ---- the app ----------------------------------------------------------------------------

const appSource = (version) => `// Written by bench/dev-reload.mjs; rewritten for each edit.
import type { IncomingMessage, ServerResponse } from 'node:http';

interface Reply {
  text: string;
}

const reply: Reply = { text: '${version}' };

export default function app(_req: IncomingMessage, res: ServerResponse): void {
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(reply.text) });
  res.end(reply.text);
}
`;

function appDir(name) {
  const dir = path.join(TMP, name);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'app.ts'), appSource('v0'));
  return dir;
}

// ---- 1. save to serve -------------------------------------------------------------------

async function saveToServe(workers) {
  const dir = appDir(`w${workers}`);
  const server = tsgun(['--reload', '-w', String(workers), '-b', '127.0.0.1:0', 'app'], dir);
  const url = await ready(server);
  const rows = [];
  try {
    for (let i = 1; i <= EDITS; i++) {
      const version = `v${i}`;
      const oldWorkers = childPids(server.pid);
      const mark = server.lines.length;
      let failed = 0;
      let requests = 0;
      const wrote = performance.now();
      const wroteWall = Date.now();
      writeFileSync(path.join(dir, 'app.ts'), appSource(version));
      let servedWall;
      for (;;) {
        const started = performance.now();
        requests++;
        try {
          const r = await get(url);
          if (r.status !== 200) failed++;
          else if (r.body === version) {
            servedWall = Date.now();
            break;
          }
        } catch {
          failed++;
        }
        if (performance.now() - wrote > 60_000) throw new Error(`edit ${i}: ${version} not served within 60 s`);
        await sleep(Math.max(0, POLL_MS - (performance.now() - started)));
      }
      const toServe = performance.now() - wrote;
      const detected = lineAfter(server, mark, /^Detected change in /);
      const complete = await waitFor('Reload complete', () => lineAfter(server, mark, /^Reload complete: /));
      // The next edit starts from a quiet state: old workers gone, nothing booting.
      await waitFor(
        'old workers to exit',
        () => oldWorkers.every((pid) => !childPids(server.pid).includes(pid)),
        60_000,
        50,
      );
      rows.push({
        edit: i,
        writeToServedMs: Math.round(toServe),
        detectedToServedMs: detected ? servedWall - detected.time : null,
        writeToDetectedMs: detected ? detected.time - wroteWall : null,
        reloadTookS: Number(/\(.*, ([\d.]+) s\)/.exec(complete.msg)?.[1] ?? NaN),
        requests,
        failed,
      });
      log(
        `-w ${workers} edit ${i}: served after ${Math.round(toServe)} ms (${rows.at(-1).detectedToServedMs} ms after "Detected change"), ${failed} failed of ${requests}`,
      );
      await sleep(1000);
    }
  } finally {
    await stop(server);
  }
  return rows;
}

// ---- 2. idle cost -----------------------------------------------------------------------

async function idle(withReload) {
  const dir = appDir(withReload ? 'idle-reload' : 'idle-plain');
  const args = withReload ? ['--reload', '--reload-dir', WATCH_DIR] : [];
  const started = performance.now();
  const server = tsgun([...args, '-w', '1', '-b', '127.0.0.1:0', 'app'], dir);
  await ready(server);
  const startupS = (performance.now() - started) / 1000;
  try {
    await sleep(3000); // Past the first worker's boot and the first stats samples.
    // One CPU sample a second, so that seconds around a reload (someone else saving a file
    // in the watched tree) can be left out of the idle figure.
    const samples = [];
    const t0 = performance.now();
    let last = { wall: Date.now(), ticks: cpuTicks(server.pid) };
    while (performance.now() - t0 < IDLE_S * 1000) {
      await sleep(1000);
      const now = { wall: Date.now(), ticks: cpuTicks(server.pid) };
      samples.push({ from: last.wall, to: now.wall, ticks: now.ticks - last.ticks });
      last = now;
    }
    const seconds = (performance.now() - t0) / 1000;
    const ticks = samples.reduce((n, x) => n + x.ticks, 0);
    const reloads = server.lines.filter((l) => /^Detected change in /.test(l.msg ?? ''));
    // A reload keeps the master busy from the change (reload_delay before the log line) until the new worker is ready.
    const busy = (x) => reloads.some((l) => x.to > l.time - 1_000 && x.from < l.time + 10_000);
    const quiet = samples.filter((x) => !busy(x));
    const quietSeconds = quiet.reduce((n, x) => n + (x.to - x.from) / 1000, 0);
    const quietTicks = quiet.reduce((n, x) => n + x.ticks, 0);
    return {
      reload: withReload,
      cpuPercent: (ticks / CLK_TCK / seconds) * 100,
      ticks,
      seconds,
      quietCpuPercent: quietSeconds > 0 ? (quietTicks / CLK_TCK / quietSeconds) * 100 : null,
      quietTicks,
      quietSeconds,
      rssMiB: rssKiB(server.pid) / 1024,
      inotifyWatches: inotifyWatches(server.pid),
      startupS,
      watching: lineAfter(server, 0, /^Watching for changes in /)?.msg ?? null,
      // Files changed in the watched tree meanwhile (someone else's edit, a build).
      reloadsDuringIdle: reloads.map((l) => l.msg),
    };
  } finally {
    await stop(server);
  }
}

// ---- report -----------------------------------------------------------------------------

function quantile(sorted, q) {
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

function summary(values) {
  const v = values.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return 'n/a';
  const r = (x) => Math.round(x);
  return `${r(quantile(v, 0.5))} ms (min ${r(v[0])}, p25 ${r(quantile(v, 0.25))}, p75 ${r(quantile(v, 0.75))}, max ${r(v.at(-1))})`;
}

if (!existsSync(path.join(ROOT, 'dist', 'master', 'arbiter.js'))) {
  log('dist/ missing: building');
  execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: ROOT, stdio: 'inherit' });
}

const uptimeBefore = execFileSync('uptime', { encoding: 'utf8' }).trim();
const edits = {};
for (const w of EDITS > 0 ? WORKERS : []) {
  log(`save-to-serve, -w ${w}, ${EDITS} edits`);
  edits[w] = await saveToServe(w);
}
const uptimeMid = execFileSync('uptime', { encoding: 'utf8' }).trim();
log(`idle cost with --reload --reload-dir ${WATCH_DIR}, ${IDLE_S} s`);
const idleRows = [await idle(true)];
if (!opts['no-baseline']) {
  log(`idle cost without --reload, ${IDLE_S} s`);
  idleRows.push(await idle(false));
}
const uptimeAfter = execFileSync('uptime', { encoding: 'utf8' }).trim();

const out = [];
out.push('# tsgun --reload: save-to-serve and idle cost', '');
out.push(
  `- machine: ${os.cpus().length} x ${os.cpus()[0]?.model ?? '?'}, ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB; Node ${process.version}; ${os.platform()} ${os.release()}`,
);
out.push(
  `- command: \`node bench/dev-reload.mjs --edits ${EDITS} --workers ${WORKERS.join(',')} --idle ${IDLE_S} --watch-dir ${WATCH_DIR}\``,
);
out.push(
  `- uptime at start: \`${uptimeBefore}\``,
  `- uptime before the idle runs: \`${uptimeMid}\``,
  `- uptime at end: \`${uptimeAfter}\``,
  '',
);
if (EDITS > 0) {
  out.push(
    '## Save to serve',
    '',
    `TypeScript app (\`app.ts\`, through tsx), \`tsgun --reload -w N -b 127.0.0.1:0 app\`; ${EDITS} edits each; poll every ${POLL_MS} ms from the write.`,
    '',
  );
  out.push(
    '| workers | write -> first new response | "Detected change" -> first new response | write -> "Detected change" | reload complete (log) | failed requests |',
    '|---|---|---|---|---|---|',
  );
  for (const w of WORKERS) {
    const rows = edits[w];
    const took = rows.map((r) => r.reloadTookS * 1000);
    out.push(
      `| ${w} | ${summary(rows.map((r) => r.writeToServedMs))} | ${summary(rows.map((r) => r.detectedToServedMs))} | ${summary(rows.map((r) => r.writeToDetectedMs))} | ${summary(took)} | ${rows.reduce((n, r) => n + r.failed, 0)} of ${rows.reduce((n, r) => n + r.requests, 0)} |`,
    );
  }
}
out.push(
  '',
  '## Idle master',
  '',
  `\`-w 1\`, left alone ${IDLE_S} s after Ready (+3 s), sampled every second; CPU = (utime+stime) of the master / wall time, % of one core (1 tick = ${1000 / CLK_TCK} ms). A file saved in the watched tree by someone else starts a reload; the seconds from 1 s before its \`Detected change\` line to 10 s after are left out of the second column.`,
  '',
);
out.push(
  '| mode | master CPU, whole window | master CPU, seconds away from reloads | master RSS | inotify watches | start to Ready | reloads while idle |',
  '|---|---|---|---|---|---|---|',
);
for (const r of idleRows) {
  const mode = r.reload ? `\`--reload --reload-dir ${WATCH_DIR}\`` : 'no --reload';
  const quiet =
    r.quietCpuPercent === null
      ? 'n/a'
      : `${r.quietCpuPercent.toFixed(3)} % (${r.quietTicks} ticks in ${r.quietSeconds.toFixed(1)} s)`;
  out.push(
    `| ${mode} | ${r.cpuPercent.toFixed(3)} % (${r.ticks} ticks in ${r.seconds.toFixed(1)} s) | ${quiet} | ${r.rssMiB.toFixed(1)} MiB | ${r.inotifyWatches} | ${r.startupS.toFixed(2)} s | ${r.reloadsDuringIdle.length} |`,
  );
}
out.push(
  '',
  '<details><summary>raw</summary>',
  '',
  '```json',
  JSON.stringify({ edits, idle: idleRows }, null, 1),
  '```',
  '</details>',
  '',
);
process.stdout.write(`${out.join('\n')}\n`);
process.exit(0);
