#!/usr/bin/env node
// Reload benchmark: the same tiny JSON app under sustained keep-alive load (wrk), while the
// process manager is told to replace its workers. For every row it reports the requests
// served, the requests that failed (wrk's socket errors + non-2xx/3xx responses), the
// throughput, and that throughput as a share of the same server's steady state, measured
// with the same wrk settings just before and just after (their mean, so that a machine
// getting busier or quieter during the run does not favour either side).
//
//   node bench/reload.mjs [--runs 3] [--rows 1,2,3,4,5,6,7,8,9,10] [--duration 12] [--out FILE] [--no-write]
//   node bench/reload.mjs --rows 11,12,13,14 [--scale-workers 8,16] [--scale-duration 120] [--scale-overlap]
//
// Rows 9 and 10 are WebSocket rows: WS_CLIENTS clients each send a message every 10 ms and
// check its echo (bench/ws-load.mjs) while the server is sent HUP x4; they count the
// messages sent, echoed and lost, the reconnects and the close codes the clients saw.
//
// Rows 11-14 (not run by default) are HUP x4 with many workers (--scale-workers A,B: 8 and
// 16): 11 and 12 with the default reload_batch, 13 and 14 with --reload-batch 1. Each HUP
// waits for the previous reload to complete (--scale-overlap: sent on time, superseding it).
// They report the throughput ratio and each reload's duration (the master's "Reload
// complete" line), and write bench/results/reload-scale.md when run alone, so rows 1-10's
// results stay.
//
// Needs a built tsgun (`npx tsc -p tsconfig.build.json`; built here if dist/ is missing),
// wrk (apt-get install wrk), PM2 (installed under bench/node_modules on first use) and,
// for the Gunicorn row, Debian's gunicorn + python3-uvicorn (apt-get; skipped if missing).
// Every server started here is stopped at the end, on error and on Ctrl-C.
import { spawn, spawnSync } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { wsLoad } from './ws-load.mjs';
import {
  BENCH,
  ROOT,
  ensureBenchDeps,
  ensureGunicorn,
  ensureTsgun,
  ensureUvicornWebsockets,
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
  rel,
  run,
  runMain,
  setup,
  signal,
  sleep,
  terminate,
  tools,
  waitFor,
  wrk,
  wrkCommand,
  wrkVersion,
} from './lib.mjs';

const { values: opts } = parseArgs({
  options: {
    runs: { type: 'string', default: '3' },
    rows: { type: 'string', default: '1,2,3,4,5,6,7,8,9,10' },
    'ws-clients': { type: 'string', default: '50' },
    duration: { type: 'string', default: '12' },
    warmup: { type: 'string', default: '3' },
    'max-requests': { type: 'string', default: 'auto' },
    'scale-workers': { type: 'string', default: '8,16' },
    'scale-duration': { type: 'string', default: '120' },
    'scale-overlap': { type: 'boolean', default: false },
    out: { type: 'string' },
    'no-write': { type: 'boolean', default: false },
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
const RUNS = Number(opts.runs);
const DURATION = Number(opts.duration);
const WARMUP = Number(opts.warmup);
const SELECTED = new Set(opts.rows.split(',').map(Number));
// Rows 11-14: HUP x4 with SCALE_WORKERS[0] and [1] workers, over a SCALE_DURATION s phase
// (long enough for four reloads of 16 workers with the default batch on 2 shared cores, where
// one takes 25-35 s under load; 12 s on a 16-core machine). Without SCALE_OVERLAP a HUP waits
// for the previous reload to complete, so that each duration is one reload's; with it, HUPs
// go out on time and a later one supersedes a reload in progress (as in rows 1 and 7).
const SCALE_WORKERS = opts['scale-workers'].split(',').map(Number);
const SCALE_DURATION = Number(opts['scale-duration']);
const SCALE_OVERLAP = opts['scale-overlap'];
const SCALE_ROWS = [11, 12, 13, 14];
if (
  !(RUNS >= 1) ||
  !(DURATION >= 4) ||
  !(WARMUP >= 0) ||
  !(SCALE_DURATION >= 4) ||
  SCALE_WORKERS.length !== 2 ||
  !SCALE_WORKERS.every((w) => Number.isInteger(w) && w >= 1)
) {
  process.stderr.write(
    'Error: --runs must be >= 1, --duration and --scale-duration >= 4 (seconds), --warmup >= 0, --scale-workers two counts A,B\n',
  );
  process.exit(2);
}
// Rows 11-14 alone write their own file, so that running them leaves rows 1-10's results as they are.
const OUT =
  opts.out ??
  path.join(BENCH, 'results', [...SELECTED].every((id) => SCALE_ROWS.includes(id)) ? 'reload-scale.md' : 'reload.md');
// Every phase's load (wrk -t1, bench/wrk-summary.lua): 32 keep-alive connections on GET /.
const LOAD = { conns: 32, path: '/' };
const WORKERS = 2;
// The WebSocket rows' load: this many clients, each sending a message every WS_INTERVAL_MS.
const WS_CLIENTS = Number(opts['ws-clients']);
const WS_INTERVAL_MS = 10;
// Row 4's --max-requests N (jitter N/10): low enough that every worker is recycled about
// RECYCLES_WANTED times in the phase, judged from the steady state just measured (so the
// row means the same on a fast and a slow machine): 4 per worker, 8 in all, as many
// replacements as row 1's four HUPs of two workers, so that the two rows compare.
const RECYCLES_WANTED = 4;
function maxRequestsFor(steady) {
  if (opts['max-requests'] !== 'auto') return Number(opts['max-requests']);
  // Replacing workers costs some throughput: assume the phase serves 85 % of the steady state.
  const perWorker = (steady.requests * 0.85) / WORKERS;
  return Math.max(200, Math.floor(perWorker / RECYCLES_WANTED / 100) * 100);
}

// Logs of every server started, kept (git-ignored) for looking into failures afterwards.
const { LOG_DIR, TMP } = setup({ logs: 'reload-logs.tmp', tmpPrefix: 'tsgun-bench-' });

// ---- small helpers ----------------------------------------------------------------------

/** How long a server may take to start: each of listening, workers booted, HTTP 200. */
const START_MS = 20_000;
const waitServing = (name, port) =>
  waitFor(`${name}: HTTP 200`, async () => (await httpStatus(port, 1000)) === 200, START_MS);

/** A unique name for each server instance: its log file and pidfile. */
let instances = 0;
const instanceName = (name) => `${String(++instances).padStart(2, '0')}-${name}`;

/** A server's log file (new for each instance), read by byte offset so that each phase counts its own lines. */
class LogFile {
  constructor(name) {
    this.path = path.join(LOG_DIR, `${name}.log`);
    this.fd = openSync(this.path, 'wx');
  }
  size() {
    return existsSync(this.path) ? statSync(this.path).size : 0;
  }
  text(from = 0) {
    return readFileSync(this.path).subarray(from).toString('utf8');
  }
  count(re, from = 0) {
    return this.text(from)
      .split('\n')
      .filter((l) => re.test(l)).length;
  }
  close() {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }
}

// ---- wrk --------------------------------------------------------------------------------

/** Run wrk with LOAD; `during(t0)` runs alongside it (the reload schedule), t0 being wrk's start. */
async function wrkPhase(port, seconds, during = null) {
  const load = os.loadavg()[0];
  const { out, ...r } = await wrk(LOAD, port, seconds, during);
  // Cross-check the script's numbers against wrk's own report.
  const total = /(\d+) requests in/.exec(out);
  if (!total || Number(total[1]) !== r.requests) throw new Error(`wrk output and summary disagree:\n${out}`);
  return { ...r, load, raw: out.replace(/^WRK_SUMMARY .*\n/m, '') };
}

/**
 * Timed actions during the measured phase: each `[atMs, label, fn]` runs at atMs after wrk
 * started (or as soon as the previous action finished, if that was later); fn gets `{ t0 }`.
 */
function schedule(steps) {
  return async (t0) => {
    const events = [];
    for (const [at, label, fn] of steps) {
      const wait = t0 + at - Date.now();
      if (wait > 0) await sleep(wait);
      const start = Date.now() - t0;
      let note = '';
      try {
        note = (await fn({ t0 })) ?? '';
      } catch (err) {
        note = `FAILED: ${err.message}`;
      }
      events.push({ at: start, took: Date.now() - t0 - start, label, note });
    }
    return events;
  };
}

// ---- servers ----------------------------------------------------------------------------

/** A master process started here with its output in a log file; HUP reloads it, TERM stops it. */
class LoggedMaster {
  constructor(name) {
    this.name = instanceName(name);
    this.log = new LogFile(this.name);
  }
  launch(file, args) {
    this.child = spawn(file, args, { cwd: ROOT, stdio: ['ignore', this.log.fd, this.log.fd], detached: true });
    this.pid = this.child.pid;
    this.forget = onCleanup(() => this.stop());
  }
  /** Wait for `test` on the log, failing at once if the process exits. */
  waitLog(what, test) {
    return waitFor(
      `${this.name}: ${what}`,
      () => {
        if (this.child.exitCode !== null)
          throw new Error(`${this.name} exited with ${this.child.exitCode}:\n${this.log.text()}`);
        return test(this.log.text());
      },
      START_MS,
    );
  }
  mark() {
    return this.log.size();
  }
  hup() {
    signal(this.pid, 'SIGHUP');
  }
  /** The processes stop() ends: the one started here. */
  stopPids() {
    return [this.pid];
  }
  async stop() {
    if (this.stopped) return;
    this.stopped = true;
    this.forget?.();
    for (const pid of this.stopPids()) await terminate(pid);
    this.log.close();
  }
}

/** One tsgun master (plus, after USR2, its successor), started from bin/tsgun. */
class Tsgun extends LoggedMaster {
  constructor(name, extraArgs = [], app = 'bench/apps/json.mjs:default', workers = WORKERS) {
    super(name);
    this.pidfile = path.join(TMP, `${this.name}.pid`);
    this.workers = workers;
    this.args = ['-w', String(workers), '-b', '127.0.0.1:0', '-p', this.pidfile, ...extraArgs, app];
    this.pids = new Set();
  }
  command() {
    return `bin/tsgun ${this.args.join(' ').replace(this.pidfile, 'PIDFILE')}`;
  }
  async start() {
    this.launch(tools.tsgun, this.args);
    this.pids.add(this.pid);
    this.exited = new Promise((resolve) => this.child.once('exit', (code, sig) => resolve({ code, sig })));
    this.port = Number(
      (await this.waitLog('Listening at', (text) => /Listening at: http:\/\/127\.0\.0\.1:(\d+)/.exec(text)))[1],
    );
    await this.waitLog(
      `${this.workers} workers booted`,
      () => this.log.count(/Booting worker with pid/) >= this.workers,
    );
    // Many workers on few cores boot for a while: measure once all of them serve.
    if (this.workers > WORKERS) await this.waitLog('Ready: line', (text) => /Ready: \d+ workers/.test(text));
    await waitServing(this.name, this.port);
    return this;
  }
  master() {
    try {
      return Number(readFileSync(this.pidfile, 'utf8').trim()) || this.pid;
    } catch {
      return this.pid;
    }
  }
  hup() {
    signal(this.master(), 'SIGHUP');
  }
  stopPids() {
    // The master started by USR2 is not our child: find it in the pidfile.
    return new Set([...this.pids, this.master()]);
  }
  events(from) {
    const lines = this.log.text(from).split('\n');
    const n = (re) => lines.filter((l) => re.test(l)).length;
    const reasons = {};
    for (const l of lines) {
      const m = /Retiring worker \(pid:\d+, generation \d+\): ([^"]+)"/.exec(l);
      if (m) reasons[m[1]] = (reasons[m[1]] ?? 0) + 1;
    }
    // "Reload complete: generation G ready (W workers, T s)": T counts from the HUP that
    // started the reload (from the first one, when later HUPs superseded it).
    const durations = lines
      .map((l) => /Reload complete: generation \d+ ready \(\d+ workers, ([\d.]+) s\)/.exec(l))
      .filter(Boolean)
      .map((m) => Number(m[1]));
    return {
      booted: n(/Booting worker with pid/),
      retired: reasons,
      reloads: n(/Reload complete: generation \d+ ready/),
      durations,
      superseded: n(/is superseded by generation/),
      killed: n(/did not stop within|WORKER TIMEOUT/),
      errors: lines.filter((l) => /"level":"(error|fatal)"|"level":5\d|"level":6\d/.test(l)).length,
    };
  }
  /** After the phase: wait (up to `ms`) until the newest generation started since `from` is ready, so the steady state after is steady. */
  async settle(from, ms = 180_000) {
    const started = [...this.log.text(from).matchAll(/Reloading: starting generation (\d+)/g)].map((m) => Number(m[1]));
    if (started.length === 0) return;
    const newest = Math.max(...started);
    await waitFor(
      `${this.name}: generation ${newest} ready`,
      () => new RegExp(`Reload complete: generation ${newest} ready|reload failed`).test(this.log.text(from)),
      ms,
      200,
    );
  }
}

/** PM2 in cluster mode, with its own PM2_HOME. */
class Pm2 {
  constructor(name) {
    this.name = instanceName(name);
    this.home = mkdtempSync(path.join(TMP, 'pm2-home-'));
    this.env = { ...process.env, PM2_HOME: this.home };
    this.log = new LogFile(this.name);
  }
  command() {
    return `PORT=$PORT pm2 start bench/apps/json.cjs -i ${WORKERS} --name app`;
  }
  async pm2(args, env = this.env) {
    const r = await run(tools.pm2.bin, args, { cwd: ROOT, env });
    writeFileSync(this.log.path, `$ pm2 ${args.join(' ')} (exit ${r.code})\n${r.stdout}${r.stderr}\n`, { flag: 'a' });
    if (r.code !== 0)
      throw new Error(`pm2 ${args.join(' ')} failed (exit ${r.code}): ${r.stderr.trim() || r.stdout.trim()}`);
    return r;
  }
  async start() {
    this.port = await freePort();
    this.forget = onCleanup(() => this.stop());
    await this.pm2(['start', 'bench/apps/json.cjs', '-i', String(WORKERS), '--name', 'app'], {
      ...this.env,
      PORT: String(this.port),
    });
    await waitServing(this.name, this.port);
    return this;
  }
  mark() {
    return 0;
  }
  async reload() {
    const t = Date.now();
    await this.pm2(['reload', 'app']);
    return `${((Date.now() - t) / 1000).toFixed(1)} s`;
  }
  async stop() {
    if (this.stopped) return;
    this.stopped = true;
    this.forget?.();
    const daemon = Number(
      existsSync(path.join(this.home, 'pm2.pid')) ? readFileSync(path.join(this.home, 'pm2.pid'), 'utf8') : 0,
    );
    await this.pm2(['kill']).catch((err) => log(err.message));
    if (daemon) await terminate(daemon, { graceMs: 5000 });
    // Copy PM2's own log and the apps' logs next to ours, then drop its home.
    for (const f of ['pm2.log'])
      if (existsSync(path.join(this.home, f)))
        writeFileSync(this.log.path, readFileSync(path.join(this.home, f)), { flag: 'a' });
    rmSync(this.home, { recursive: true, force: true });
    this.log.close();
  }
  events() {
    return {};
  }
}

/** Gunicorn with the uvicorn worker, from Debian's packages. */
class Gunicorn extends LoggedMaster {
  constructor(name, extraArgs = [], app = 'json_app:app') {
    super(name);
    this.extraArgs = extraArgs;
    this.app = app;
  }
  args() {
    return [
      '-k',
      'uvicorn.workers.UvicornWorker',
      '-w',
      String(WORKERS),
      '-b',
      `127.0.0.1:${this.port}`,
      '--chdir',
      'bench/apps',
      ...this.extraArgs,
      this.app,
    ];
  }
  command() {
    return `gunicorn ${this.args().join(' ').replace(String(this.port), '$PORT')}`;
  }
  async start() {
    this.port = await freePort();
    this.launch(tools.gunicorn.bin, this.args());
    await this.waitLog(
      `${WORKERS} workers booted`,
      (text) => (text.match(/Application startup complete/g) ?? []).length >= WORKERS,
    );
    await waitServing(this.name, this.port);
    return this;
  }
  events(from) {
    const text = this.log.text(from);
    return {
      booted: (text.match(/Booting worker with pid/g) ?? []).length,
      exited: (text.match(/Worker exiting/g) ?? []).length,
    };
  }
}

/**
 * The floor: bench/apps/bare-manager.mjs, bare node:http workers replaced the way tsgun
 * replaces its own, with nothing else. What any process manager pays to replace Node
 * processes on this machine.
 */
class BareManager extends LoggedMaster {
  /** maxRequests: replace each worker after that many requests (plus up to a tenth more). */
  constructor(name, maxRequests = 0) {
    super(name);
    this.args = [String(WORKERS), ...(maxRequests > 0 ? [String(maxRequests)] : [])];
  }
  command() {
    return `node bench/apps/bare-manager.mjs ${this.args.join(' ')}`;
  }
  async start() {
    this.launch(process.execPath, ['bench/apps/bare-manager.mjs', ...this.args]);
    this.port = Number(
      (await this.waitLog('Listening at', (text) => /Listening at: http:\/\/127\.0\.0\.1:(\d+)/.exec(text)))[1],
    );
    await this.waitLog(`${WORKERS} workers ready`, (text) => /Ready: /.test(text));
    await waitServing(this.name, this.port);
    return this;
  }
  events(from) {
    const text = this.log.text(from);
    const count = (re) => (text.match(re) ?? []).length;
    return {
      booted: count(/Booting worker with pid/g),
      reloads: count(/Reload complete/g),
      recycled: count(/Recycled worker/g),
    };
  }
}

// ---- rows -------------------------------------------------------------------------------

const at = (s) => Math.round(s * 1000);
/** n actions spread evenly over the phase: at (i + 0.5) * duration / n seconds. */
const spread = (n) => Array.from({ length: n }, (_, i) => at(((i + 0.5) * DURATION) / n));
/** n actions a quarter of the phase apart from 1 s in: the last one has as long to finish as the others. */
const spreadFromStart = (n, seconds) => Array.from({ length: n }, (_, i) => at(1 + (i * (seconds - 1)) / n));

/** Four HUPs spread over the phase (rows 1, 6 and 7). */
const HUP_X4 = { action: 'kill -HUP x4', steps: (s) => spread(4).map((t, i) => [t, `HUP #${i + 1}`, () => s.hup()]) };
/** What rows 1 and 7 report: the reloads that completed within the phase. */
const RELOADS_DONE = {
  summary: (e) => `${e.reloads} of 4 reloads complete within the phase, ${e.booted} workers started`,
  short: ['reloads complete (of 4 sent)', (e) => `${e.reloads}`],
};

const ROWS = [
  { id: 1, server: 'tsgun', make: () => new Tsgun('tsgun-hup'), ...HUP_X4, ...RELOADS_DONE },
  {
    id: 2,
    server: 'tsgun',
    // Scale out, then back: TTIN starts a third worker, TTOU drains the oldest. (The other
    // order, TTOU first, spends half the phase with one worker, and so measures what one
    // worker can serve rather than what scaling costs.)
    action: 'kill -TTIN / -TTOU x3 each',
    make: () => new Tsgun('tsgun-ttin-ttou'),
    steps: (s) =>
      spread(6).map((t, i) => [
        t,
        i % 2 === 0 ? 'TTIN' : 'TTOU',
        () => {
          signal(s.master(), i % 2 === 0 ? 'SIGTTIN' : 'SIGTTOU');
        },
      ]),
    summary: (e) => `${e.retired['scale down'] ?? 0} workers retired, ${e.booted} started and ready`,
    short: ['workers retired + started', (e) => `${e.retired['scale down'] ?? 0}+${e.booted}`],
  },
  {
    id: 3,
    server: 'tsgun',
    action: 'USR2, then TERM old master',
    make: () => new Tsgun('tsgun-usr2'),
    steps: (s) => [
      [
        at(2),
        'USR2',
        async () => {
          const old = s.master();
          const from = s.mark();
          signal(old, 'SIGUSR2');
          const successor = await waitFor(
            'the new master in the pidfile',
            () => (s.master() !== old ? s.master() : null),
            10_000,
          );
          s.pids.add(successor);
          await waitFor(
            "the new master's workers",
            () => s.log.count(/Booting worker with pid/, from) >= WORKERS,
            15_000,
          );
          return `new master ${successor} ready`;
        },
      ],
      [
        at(Math.min(5, DURATION / 2)),
        'TERM old master',
        async () => {
          signal(s.pid, 'SIGTERM');
          const r = await s.exited;
          return `old master exited ${r.sig ?? r.code}`;
        },
      ],
    ],
    summary: (e, ev) => `${ev.map((x) => `${x.label} at ${(x.at / 1000).toFixed(1)} s: ${x.note}`).join('; ')}`,
    short: [
      'new master ready, old master exited 0',
      (e, ev) =>
        ev.length === 2 && /ready$/.test(ev[0].note) && ev[1].note === 'old master exited 0'
          ? 'yes'
          : ev.map((x) => x.note).join(', '),
    ],
  },
  {
    id: 4,
    server: 'tsgun',
    action: '--max-requests N --max-requests-jitter N/10',
    // Steady state: plain tsgun (a max-requests server recycles all the time).
    make: () => new Tsgun('tsgun-max-requests-baseline'),
    baseline: 'a plain tsgun',
    makeMain: (steady) => {
      const n = maxRequestsFor(steady);
      return new Tsgun('tsgun-max-requests', [
        '--max-requests',
        String(n),
        '--max-requests-jitter',
        String(Math.round(n / 10)),
      ]);
    },
    steps: () => [],
    summary: (e, ev, server) =>
      `${e.retired['max-requests'] ?? 0} workers recycled (${server.args.slice(6, 10).join(' ')})`,
    short: ['workers recycled (at N)', (e, ev, server) => `${e.retired['max-requests'] ?? 0} (${server.args[7]})`],
  },
  {
    id: 5,
    server: 'PM2 cluster',
    action: 'pm2 reload app x4',
    needs: 'pm2',
    make: () => new Pm2('pm2'),
    steps: (s) => spread(4).map((t, i) => [t, `pm2 reload #${i + 1}`, () => s.reload()]),
    summary: (e, ev) => `reloads took ${ev.map((x) => x.note).join(', ')}`,
    short: ['slowest `pm2 reload`', (e, ev) => `${Math.max(...ev.map((x) => parseFloat(x.note) || 0)).toFixed(1)} s`],
  },
  {
    id: 6,
    server: 'Gunicorn + Uvicorn',
    needs: 'gunicorn',
    make: () => new Gunicorn('gunicorn'),
    ...HUP_X4,
    summary: (e) => `${e.booted} workers started, ${e.exited} exited`,
    short: ['workers started', (e) => `${e.booted}`],
  },
  {
    id: 7,
    server: 'floor: bare node:http workers',
    make: () => new BareManager('bare-manager'),
    ...HUP_X4,
    ...RELOADS_DONE,
  },
  {
    id: 8,
    server: 'floor: bare node:http workers',
    action: 'max-requests N, jitter N/10 (as row 4)',
    // Row 4 without tsgun: what recycling Node processes this often costs at all.
    make: () => new BareManager('bare-manager-max-requests-baseline'),
    baseline: 'the same bare manager without N',
    makeMain: (steady) => new BareManager('bare-manager-max-requests', maxRequestsFor(steady)),
    steps: () => [],
    summary: (e, ev, server) => `${e.recycled} workers recycled (N = ${server.args[1]})`,
    short: ['workers recycled (at N)', (e, ev, server) => `${e.recycled} (${server.args[1]})`],
  },
  {
    id: 9,
    server: 'tsgun',
    kind: 'ws',
    // graceful_timeout 2: the clients never close by themselves, so each drain ends at its deadline.
    make: () => new Tsgun('tsgun-ws-hup', ['--graceful-timeout', '2'], 'bench/apps/ws-echo.mjs:create()'),
    ...HUP_X4,
    ...RELOADS_DONE,
  },
  {
    id: 10,
    server: 'Gunicorn + Uvicorn',
    kind: 'ws',
    needs: 'gunicorn',
    make: () => new Gunicorn('gunicorn-ws', ['--graceful-timeout', '2'], 'ws_app:app'),
    ...HUP_X4,
    summary: (e) => `${e.booted} workers started, ${e.exited} exited`,
    short: ['workers started', (e) => `${e.booted}`],
  },
  // Rows 11-14: HUP x4 with many workers sharing the machine's cores, default reload_batch
  // (a quarter of the workers) and reload_batch 1 (one at a time, as before batches).
  ...[
    [11, SCALE_WORKERS[0], 0],
    [12, SCALE_WORKERS[1], 0],
    [13, SCALE_WORKERS[0], 1],
    [14, SCALE_WORKERS[1], 1],
  ].map(([id, workers, batch]) => scaleRow(id, workers, batch)),
];

/** A row of HUP x4 under load with `workers` workers and `--reload-batch batch` (0: the default). */
function scaleRow(id, workers, batch) {
  const effective = batch || Math.max(1, Math.floor(workers / 4));
  return {
    id,
    server: `tsgun -w ${workers}`,
    kind: 'scale',
    workers,
    batch: batch ? `${batch}` : `${effective} (default)`,
    duration: SCALE_DURATION,
    action: `kill -HUP x4, reload_batch ${batch ? batch : `${effective} (default)`}`,
    make: () =>
      new Tsgun(
        `tsgun-w${workers}-hup-b${batch || 'default'}`,
        batch ? ['--reload-batch', String(batch)] : [],
        undefined,
        workers,
      ),
    steps: (s) => spreadFromStart(4, SCALE_DURATION).map((t, i) => [t, `HUP #${i + 1}`, (c) => hupScale(s, c.t0)]),
    summary: (e) =>
      `${e.hups} HUPs sent, ${e.reloads} reloads complete within the phase (${e.superseded} superseded), ${e.booted} workers started; reload durations ${e.durations.map((d) => `${d} s`).join(', ') || 'none'}`,
    short: ['reloads complete within the phase / HUPs sent', (e) => `${e.reloads}/${e.hups}`],
  };
}

/**
 * One HUP of rows 11-14. Without SCALE_OVERLAP: not sent once the phase is over, and waits
 * (until the phase ends at most) for the reload it started to complete.
 */
async function hupScale(server, t0) {
  const end = t0 + SCALE_DURATION * 1000;
  if (!SCALE_OVERLAP && Date.now() > end - 1000) return 'not sent: the phase is over';
  const from = server.mark();
  server.hup();
  if (SCALE_OVERLAP) return 'sent';
  while (Date.now() < end) {
    const m = /Reload complete: generation \d+ ready \(\d+ workers, ([\d.]+) s\)|reload failed/.exec(
      server.log.text(from),
    );
    if (m) return m[1] ? `complete in ${m[1]} s` : 'reload failed';
    await sleep(100);
  }
  return 'sent; still running at the end of the phase';
}

/** A WebSocket row: WS_CLIENTS echo clients through the row's steps; no wrk. */
async function measureWsRow(row, runNo) {
  const tag = `run ${runNo} row ${row.id}`;
  const server = row.make();
  try {
    await server.start();
    log(
      `${tag}: ${row.server} — ${WS_CLIENTS} WebSocket clients, one message each per ${WS_INTERVAL_MS} ms, ${row.action ?? HUP_X4.action}, ${DURATION} s`,
    );
    const from = server.mark();
    const ws = await wsLoad(server.port, {
      clients: WS_CLIENTS,
      intervalMs: WS_INTERVAL_MS,
      seconds: DURATION,
      during: schedule(row.steps(server)),
    });
    const ev = server.events(from);
    const note = row.summary(ev, ws.events, server);
    const result = {
      row: row.id,
      run: runNo,
      kind: 'ws',
      ws,
      events: ev,
      note,
      short: row.short[1](ev, ws.events, server),
      commands: [server.command()],
      log: rel(server.log.path),
    };
    const codes =
      Object.entries(ws.closeCodes)
        .map(([c, n]) => `${c} x${n}`)
        .join(', ') || 'none';
    log(
      `${tag}: ${fmtInt(ws.sent)} sent, ${fmtInt(ws.echoed)} echoed, ${ws.lost} lost, ${ws.reconnects} reconnects, ${ws.failedConnects} failed connects, close codes ${codes}; ${note}`,
    );
    return result;
  } finally {
    await server.stop();
  }
}

async function measureRow(row, runNo) {
  if (row.kind === 'ws') return measureWsRow(row, runNo);
  const tag = `run ${runNo} row ${row.id}`;
  let server = row.make();
  /** Rows with makeMain (4, 8): the plain server of the steady state, kept (idle) while the max-requests one runs. */
  let baseline = null;
  try {
    await server.start();
    const commands = [server.command()];
    log(`${tag}: ${row.server} — warm-up ${WARMUP} s, steady state ${DURATION} s`);
    if (WARMUP > 0) await wrkPhase(server.port, WARMUP);
    const steady = await wrkPhase(server.port, DURATION);
    if (row.makeMain) {
      baseline = server;
      server = row.makeMain(steady);
      await server.start();
      commands.push(server.command());
      if (WARMUP > 0) await wrkPhase(server.port, WARMUP);
    }
    const seconds = row.duration ?? DURATION;
    log(`${tag}: ${row.server} — ${row.action}, ${seconds} s`);
    const from = server.mark();
    const loaded = await wrkPhase(server.port, seconds, schedule(row.steps(server)));
    const ev = server.events(from);
    if (row.kind === 'scale') {
      // A reload still running at the end of the phase: let it finish (its duration counts
      // among the durations, not among the reloads complete within the phase).
      await server.settle(from);
      ev.durations = server.events(from).durations;
      ev.hups = loaded.events.filter((x) => !/^not sent/.test(x.note)).length;
    }
    const note = row.summary(ev, loaded.events, server);
    const short = row.short[1](ev, loaded.events, server);
    const logPath = rel(server.log.path);
    // The steady state again, after: on the same server, or (rows 4, 8) on the plain one that
    // measured it before (a new plain server instead made the two steady states differ by up
    // to half, as new servers on this machine do, and the row's ratio with them).
    if (baseline) {
      await server.stop();
      [server, baseline] = [baseline, null];
    }
    await waitServing(server.name, server.port);
    log(`${tag}: ${row.server} — steady state again, ${DURATION} s`);
    const after = await wrkPhase(server.port, DURATION);
    const steadyRps = (steady.rps + after.rps) / 2;
    const result = {
      row: row.id,
      run: runNo,
      steady,
      after,
      steadyRps,
      loaded,
      ratio: loaded.rps / steadyRps,
      events: ev,
      note,
      short,
      commands,
      log: logPath,
    };
    log(
      `${tag}: ${fmtInt(loaded.requests)} requests, ${loaded.failed} failed, ${fmtInt(loaded.rps)} req/s vs ${fmtInt(steadyRps)} steady (${fmtInt(steady.rps)} before, ${fmtInt(after.rps)} after: ${pct(result.ratio)}); ${note}`,
    );
    if (loaded.failed > 0 || steady.failed > 0 || after.failed > 0)
      log(
        `${tag}: failures — ${failBreakdown(loaded)} (steady before: ${failBreakdown(steady)}; after: ${failBreakdown(after)}); server log: ${logPath}`,
      );
    return result;
  } finally {
    await server.stop();
    await baseline?.stop();
  }
}

// ---- report -----------------------------------------------------------------------------

const failBreakdown = (w) =>
  `connect ${w.connect}, read ${w.read}, write ${w.write}, timeout ${w.timeout}, non-2xx/3xx ${w.status}`;

function wsTable(results, rows) {
  const out = [];
  out.push(
    `| # | server | action | messages sent | echoed | lost | lost per run | reconnects | failed connects | close codes seen (all runs) | what happened, per run |`,
  );
  out.push(`|---|---|---|---:|---:|---:|---|---:|---:|---|---|`);
  for (const row of rows) {
    const rs = results.filter((r) => r.row === row.id);
    if (row.skipped) {
      out.push(`| ${row.id} | ${row.server} | ${row.action} | — | — | — | — | — | — | — | skipped: ${row.skipped} |`);
      continue;
    }
    const ok = rs.filter((r) => !r.error);
    if (ok.length === 0) continue;
    const m = (f) => fmtInt(median(ok.map((r) => f(r.ws))));
    const codes = {};
    for (const r of ok) for (const [c, n] of Object.entries(r.ws.closeCodes)) codes[c] = (codes[c] ?? 0) + n;
    const happened = `${row.short[0]}: ${rs.map((r) => (r.error ? 'error' : r.short)).join(' / ')}`;
    out.push(
      `| ${row.id} | ${row.server} | ${row.action} | ${m((w) => w.sent)} | ${m((w) => w.echoed)} | ${m((w) => w.lost)} | ${rs.map((r) => (r.error ? 'error' : String(r.ws.lost))).join(' / ')} | ${m((w) => w.reconnects)} | ${m((w) => w.failedConnects)} | ${
        Object.entries(codes)
          .map(([c, n]) => `${c} x${n}`)
          .join(', ') || 'none'
      } | ${happened.replace(/\|/g, '\\|')} |`,
    );
  }
  return out.join('\n');
}

/** Rows 11-14: ratio and reload durations; no absolute rate (the workers share the cores). */
function scaleTable(results, rows) {
  const out = [];
  out.push(
    `| # | server | reload_batch | action | failed | failed per run | ratio (HUP phase ÷ steady) | ratio per run | reloads complete within the phase / HUPs sent, per run | reload duration, median | reload duration, max | reload durations per run (s) |`,
  );
  out.push(`|---|---|---|---|---:|---|---:|---|---|---:|---:|---|`);
  for (const row of rows.filter((r) => r.kind === 'scale')) {
    const rs = results.filter((r) => r.row === row.id);
    if (rs.length === 0) continue;
    const ok = rs.filter((r) => !r.error);
    const perRun = (f) => rs.map((r) => (r.error ? 'error' : f(r))).join(' / ');
    const durations = ok.flatMap((r) => r.events.durations);
    const s = (d) => (d == null ? '—' : `${d.toFixed(1)} s`);
    out.push(
      `| ${row.id} | ${row.server} | ${row.batch} | kill -HUP x4 in ${row.duration} s | ${ok.length ? fmtInt(median(ok.map((r) => r.loaded.failed))) : '—'} | ${perRun((r) => String(r.loaded.failed))} | ${ok.length ? pct(median(ok.map((r) => r.ratio))) : '—'} | ${perRun((r) => pct(r.ratio))} | ${perRun((r) => `${r.events.reloads}/${r.events.hups}`)} | ${s(median(durations))} | ${s(durations.length ? Math.max(...durations) : null)} | ${perRun((r) => r.events.durations.join(', ') || 'none')} |`,
    );
  }
  return out.join('\n');
}

function table(results, rows) {
  const out = [];
  out.push(
    `| # | server | action | requests | failed | failed per run | req/s | steady req/s | ratio | what happened, per run |`,
  );
  out.push(`|---|---|---|---:|---:|---|---:|---:|---:|---|`);
  for (const row of rows) {
    const rs = results.filter((r) => r.row === row.id);
    if (row.skipped) {
      out.push(`| ${row.id} | ${row.server} | ${row.action} | — | — | — | — | — | — | skipped: ${row.skipped} |`);
      continue;
    }
    if (rs.length === 0 || row.kind === 'ws' || row.kind === 'scale') continue;
    const failedPerRun = rs.map((r) => (r.error ? 'error' : String(r.loaded.failed))).join(' / ');
    const ok = rs.filter((r) => !r.error);
    if (ok.length === 0) {
      out.push(
        `| ${row.id} | ${row.server} | ${row.action} | — | — | ${failedPerRun} | — | — | — | ${rs[rs.length - 1].error} |`,
      );
      continue;
    }
    const happened = `${row.short[0]}: ${rs.map((r) => (r.error ? 'error' : r.short)).join(' / ')}`;
    out.push(
      `| ${row.id} | ${row.server} | ${row.action} | ${fmtInt(median(ok.map((r) => r.loaded.requests)))} | ${fmtInt(median(ok.map((r) => r.loaded.failed)))} | ${failedPerRun} | ${fmtInt(median(ok.map((r) => r.loaded.rps)))} | ${fmtInt(median(ok.map((r) => r.steadyRps)))} | ${pct(median(ok.map((r) => r.ratio)))} | ${happened.replace(/\|/g, '\\|')} |`,
    );
  }
  return out.join('\n');
}

function details(results) {
  const out = [];
  out.push(
    `| run | # | phase | load | requests | req/s | connect | read | write | timeout | non-2xx/3xx | p50 ms | p99 ms | max ms | what happened |`,
  );
  out.push(`|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|`);
  for (const r of results) {
    if (r.kind === 'ws') continue;
    if (r.error) {
      out.push(
        `| ${r.run} | ${r.row} | error | | | | | | | | | | | | ${r.error.replace(/\|/g, '\\|').split('\n')[0]} |`,
      );
      continue;
    }
    for (const [phase, w] of [
      ['steady before', r.steady],
      ['reloads', r.loaded],
      ['steady after', r.after],
    ]) {
      out.push(
        `| ${r.run} | ${r.row} | ${phase} | ${w.load.toFixed(1)} | ${fmtInt(w.requests)} | ${fmtInt(w.rps)} | ${w.connect} | ${w.read} | ${w.write} | ${w.timeout} | ${w.status} | ${(w.p50_us / 1000).toFixed(1)} | ${(w.p99_us / 1000).toFixed(1)} | ${(w.max_us / 1000).toFixed(0)} | ${phase !== 'reloads' ? '' : r.note.replace(/\|/g, '\\|')} |`,
      );
    }
  }
  return out.join('\n');
}

function distStamp() {
  try {
    return statSync(path.join(ROOT, 'dist', 'worker', 'main.js'))
      .mtime.toISOString()
      .slice(0, 19)
      .replace('T', ' ');
  } catch {
    return 'missing';
  }
}

// ---- main -------------------------------------------------------------------------------

async function main() {
  tools.wrk = await ensureWrk();
  tools.tsgun = await ensureTsgun();
  const rows = ROWS.filter((r) => SELECTED.has(r.id));
  if (rows.some((r) => r.needs === 'pm2')) {
    tools.pm2 = (await ensureBenchDeps()).pm2;
    if (!tools.pm2.bin) rows.find((r) => r.needs === 'pm2').skipped = tools.pm2.why;
  }
  if (rows.some((r) => r.needs === 'gunicorn')) {
    tools.gunicorn = await ensureGunicorn();
    for (const row of rows.filter((r) => r.needs === 'gunicorn')) {
      if (!tools.gunicorn.bin) row.skipped = tools.gunicorn.why;
      else if (row.kind === 'ws' && !(tools.gunicorn.websockets ??= await ensureUvicornWebsockets(tools.gunicorn))) {
        row.skipped =
          'uvicorn has no WebSocket library (apt-get install -y python3-websockets failed or was not possible)';
      }
      if (row.skipped) log(`skipping row ${row.id}: ${row.skipped}`);
    }
  }
  const tsgunVersion = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')).version;
  const started = new Date();
  const revBefore = gitRev();
  const distBefore = distStamp();
  const loadBefore = os
    .loadavg()
    .map((x) => x.toFixed(2))
    .join(' ');

  const results = [];
  for (let run = 1; run <= RUNS; run++) {
    // Alternate the order between runs so that no row always runs first or last.
    const order = rows.filter((r) => !r.skipped);
    if (run % 2 === 0) order.reverse();
    for (const row of order) {
      try {
        results.push(await measureRow(row, run));
      } catch (err) {
        if (interrupted) return;
        log(`run ${run} row ${row.id} failed: ${err.stack ?? err.message}`);
        results.push({ row: row.id, run, error: err.message.split('\n')[0] });
      }
    }
  }

  const wsRows = rows.filter((r) => r.kind === 'ws');
  const scaleRows = rows.filter((r) => r.kind === 'scale');
  const scaleNote = `Rows ${scaleRows.map((r) => r.id).join(', ')}: ${SCALE_WORKERS.join(' and ')} workers on ${os.cpus().length} CPUs, sharing them with each other and wrk, so no absolute rate is reported here (the per-run table has the req/s). **ratio** = req/s during the ${SCALE_DURATION} s phase with up to four HUPs (planned ${describeSteps(scaleRows[0] ?? scaleRow(0, 1, 0)).replace(/HUP #\d /g, '')}${SCALE_OVERLAP ? ', each sent on time, a later one superseding a reload in progress' : ''}) ÷ the same server's steady req/s (mean of before and after). **reload duration** = T in the master's \`Reload complete: generation G ready (W workers, T s)\` line: from the HUP that started the reload (the first one, when a later HUP superseded it) until \`workers\` workers of the newest generation are ready and no other is left; a reload still running when the phase ends is waited for, and its duration counted here but not among the reloads complete within the phase.`;
  const summary =
    (rows.some((r) => r.kind !== 'ws' && r.kind !== 'scale') ? table(results, rows) : '') +
    (scaleRows.length
      ? `${rows.some((r) => r.kind !== 'scale') ? '\n\n' : ''}${scaleNote}\n\n${scaleTable(results, rows)}`
      : '') +
    (wsRows.some((r) => results.some((x) => x.row === r.id) || r.skipped)
      ? `\n\nWebSocket rows: ${WS_CLIENTS} clients, each sending a numbered message every ${WS_INTERVAL_MS} ms and checking its echo (bench/ws-load.mjs); a client whose connection closes counts its unanswered messages as lost and reconnects at once.\n\n${wsTable(results, rows)}`
      : '');
  const revAfter = gitRev();
  const distAfter = distStamp();
  const perRow = rows.map((row) => {
    const ok = results.filter((r) => r.row === row.id && !r.error);
    const steps = (i) => [...new Set(ok.map((r) => r.commands[i]).filter(Boolean))].map((c) => `\`${c}\``).join(' or ');
    const cmds =
      ok.length === 0
        ? '(not run)'
        : ok[0].commands.length > 1
          ? `${steps(0)} for the steady state, then ${steps(1)}`
          : steps(0);
    return `- **row ${row.id}** — ${row.skipped ? `skipped: ${row.skipped}` : `${cmds}\n  - during the phase: ${describeSteps(row)}`}`;
  });
  const machine = `${os.cpus().length} CPUs (nproc ${spawnSync('nproc', { encoding: 'utf8' }).stdout.trim()}), ${os.cpus()[0]?.model ?? 'unknown CPU'}, ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB, ${os.type()} ${os.release()}`;
  const versions = [
    `node ${process.version}`,
    `tsgun ${tsgunVersion} (git ${revBefore}${revAfter !== revBefore ? `, ${revAfter} at the end` : ''}; dist/ built ${distBefore}${distAfter !== distBefore ? `, REBUILT during the run at ${distAfter}` : ''})`,
    wrkVersion(),
    tools.pm2?.version ? `pm2 ${tools.pm2.version}` : null,
    tools.gunicorn?.bin
      ? `gunicorn ${tools.gunicorn.gunicornVersion}, uvicorn ${tools.gunicorn.uvicornVersion} (${tools.gunicorn.python})${tools.gunicorn.websockets ? `, websockets ${tools.gunicorn.websockets}` : ''}`
      : null,
  ].filter(Boolean);

  const md = `# Reload benchmark

Generated by \`node bench/reload.mjs --runs ${RUNS}${opts.rows !== '1,2,3,4,5,6,7,8,9,10' ? ` --rows ${opts.rows}` : ''}${DURATION !== 12 ? ` --duration ${DURATION}` : ''}${scaleRows.length && opts['scale-workers'] !== '8,16' ? ` --scale-workers ${opts['scale-workers']}` : ''}${scaleRows.length && SCALE_DURATION !== 120 ? ` --scale-duration ${SCALE_DURATION}` : ''}${scaleRows.length && SCALE_OVERLAP ? ' --scale-overlap' : ''}${opts.out ? ` --out ${rel(OUT)}` : ''}\` on ${started.toISOString().slice(0, 16).replace('T', ' ')} UTC.

- Machine: ${machine}; load average before the run: ${loadBefore}
- Versions: ${versions.join('; ')}
- Load: \`${wrkCommand(LOAD, DURATION)}\` for every phase${scaleRows.length ? ` (rows ${scaleRows.map((r) => r.id).join(', ')}: \`-d${SCALE_DURATION}s\` for the phase with HUPs)` : ''}, after a ${WARMUP} s warm-up
- ${scaleRows.length === rows.length ? `${SCALE_WORKERS.join(' or ')} workers (see each row)` : `${WORKERS} workers everywhere${scaleRows.length ? ` but rows ${scaleRows.map((r) => r.id).join(', ')}` : ''}`}; app: a 200-item JSON document serialized per request (bench/apps/)
- ${RUNS} run(s); rows alternate order between runs; medians shown

${summary}

**failed** = wrk socket errors (connect + read + write + timeout) + non-2xx/3xx responses, during the
phase with reloads. **ratio** = req/s with reloads ÷ **steady req/s**, the mean of the
same server's steady state (same settings, no signals) measured just before and just after
the phase with reloads, so that a machine getting busier or quieter during a row does not
favour either side.

Commands (PORT: a free port; PIDFILE: in a temp dir), and what is done during the wrk phase (${DURATION} s${scaleRows.length ? `; ${SCALE_DURATION} s for rows ${scaleRows.map((r) => r.id).join(', ')}` : ''}):
${perRow.join('\n')}

## Per run

**load** is the machine's 1-minute load average when the phase started (${os.cpus().length} CPUs): above
${os.cpus().length}, other processes were competing with the servers and wrk for the CPUs.

${details(results)}
`;
  process.stdout.write(`\n${summary}\n\n${details(results)}\n`);
  if (!opts['no-write']) {
    mkdirSync(path.dirname(OUT), { recursive: true });
    writeFileSync(OUT, md);
    writeFileSync(
      OUT.replace(/\.md$/, '') + '.json',
      JSON.stringify(
        {
          started,
          machine,
          versions,
          results: results.map(({ loaded, steady, after, ...r }) => ({
            ...r,
            loaded: loaded && { ...loaded, raw: undefined },
            steady: steady && { ...steady, raw: undefined },
            after: after && { ...after, raw: undefined },
          })),
        },
        null,
        2,
      ) + '\n',
    );
    log(`wrote ${rel(OUT)}; server logs in ${rel(LOG_DIR)}`);
  }
}

function describeSteps(row) {
  if (row.skipped) return 'skipped';
  const fake = { hup() {}, master: () => 0, mark: () => 0, reload() {}, pids: new Set(), log: {} };
  const steps = row.steps(fake);
  if (steps.length === 0) {
    const n =
      opts['max-requests'] === 'auto'
        ? `N chosen from the steady state so that each worker is recycled about ${RECYCLES_WANTED} times`
        : `N = ${opts['max-requests']}`;
    return `no signals: workers recycle themselves after N to N + N/10 requests (${n}); steady state from ${row.baseline}, measured just before and again just after (kept idle in between)`;
  }
  const later =
    row.id === 3
      ? " (or once the new master's workers are up, if later)"
      : row.kind === 'scale' && !SCALE_OVERLAP
        ? ' (each, or once the previous reload is complete if that is later; none in the last second)'
        : '';
  return steps.map(([t, label]) => `${label} at ${(t / 1000).toFixed(1)} s`).join(', ') + later;
}

await runMain(main);
