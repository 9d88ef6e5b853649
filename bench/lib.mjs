// Helpers shared by bench/run.mjs and bench/reload.mjs: starting and stopping processes,
// waiting, the tools they need (wrk, a built tsgun, PM2, Gunicorn), running wrk, and
// cleaning up at exit. Importing this module does nothing by itself: `setup()` creates the
// run's directories and arms the Ctrl-C handlers.
import { execFile, spawn, spawnSync } from 'node:child_process';
import {
  closeSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
} from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const BENCH = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.dirname(BENCH);
export const rel = (p) => path.relative(ROOT, p) || '.';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export const log = (msg) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);

// ---- processes ----------------------------------------------------------------------------

export function run(cmd, args, options = {}) {
  return new Promise((resolve) => {
    execFile(cmd, args, { maxBuffer: 64 << 20, ...options }, (err, stdout, stderr) => {
      resolve({
        code: err ? (typeof err.code === 'number' ? err.code : 1) : 0,
        stdout: String(stdout),
        stderr: String(stderr),
      });
    });
  });
}

export function which(name) {
  const r = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : null;
}

async function aptInstall(packages) {
  if (!which('apt-get')) return false;
  log(`installing ${packages.join(' ')} with apt-get`);
  const sudo = process.getuid?.() === 0 ? [] : ['sudo', '-n'];
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const cmd = [...sudo, 'apt-get', 'install', '-y', ...packages];
  let r = await run(cmd[0], cmd.slice(1), { env });
  if (r.code !== 0) {
    const upd = [...sudo, 'apt-get', 'update'];
    await run(upd[0], upd.slice(1), { env });
    r = await run(cmd[0], cmd.slice(1), { env });
  }
  if (r.code !== 0) log(`apt-get install ${packages.join(' ')} failed: ${r.stderr.trim().split('\n').pop()}`);
  return r.code === 0;
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** One GET with a fresh connection: the status, or 0 on any error. */
export function httpStatus(port, timeoutMs = 2000) {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/', agent: false, timeout: timeoutMs }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
      res.on('error', () => resolve(0));
    });
    req.on('error', () => resolve(0));
    req.on('timeout', () => req.destroy());
  });
}

export async function waitFor(what, fn, timeoutMs = 30_000, everyMs = 50) {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
    await sleep(everyMs);
  }
}

export const alive = (pid) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return err.code === 'EPERM';
  }
};

export function signal(pid, sig) {
  try {
    process.kill(pid, sig);
    return true;
  } catch {
    return false;
  }
}

/**
 * TERM a process, or with `group` the process group it leads (detached: its pid), wait for
 * it to go, KILL it after `graceMs`. A group is KILLed in any case: whatever is left in it
 * (a worker that outlived its master) goes too.
 */
export async function terminate(pid, { graceMs = 15_000, group = false } = {}) {
  if (!pid || (!group && !alive(pid))) return;
  const target = group ? -pid : pid;
  signal(target, 'SIGTERM');
  const until = Date.now() + graceMs;
  while (alive(pid) && Date.now() < until) await sleep(50);
  const stuck = alive(pid);
  if (stuck) log(`pid ${pid} did not stop within ${graceMs / 1000} s; killing ${group ? 'its process group' : 'it'}`);
  if (stuck || group) signal(target, 'SIGKILL');
}

// ---- setup and cleanup --------------------------------------------------------------------

// Everything to undo at exit, newest first. Process groups from spawnServer() are also
// killed synchronously on 'exit', in case the harness dies before its async cleanup runs.
const cleanups = new Set();
const groups = new Set();
let logDir = null;
/** Set on the first Ctrl-C (or TERM, HUP): the benchmark stops where it is. Importers see it change (a live binding). */
export let interrupted = false;

/**
 * Start a benchmark run: empty `bench/results/<logs>` (the server logs, kept git-ignored for
 * looking into failures afterwards), make a temp dir (removed at exit), and stop every
 * server on Ctrl-C. Call it once, after the options are read.
 */
export function setup({ logs, tmpPrefix }) {
  logDir = path.join(BENCH, 'results', logs);
  rmSync(logDir, { recursive: true, force: true });
  mkdirSync(logDir, { recursive: true });
  const tmp = mkdtempSync(path.join(os.tmpdir(), tmpPrefix));
  // Registered first, so it runs last: the servers' files (a PM2 home) live in it.
  onCleanup(() => rmSync(tmp, { recursive: true, force: true }));
  process.on('exit', () => {
    for (const pid of groups) signal(-pid, 'SIGKILL');
  });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(sig, () => {
      if (interrupted) return;
      interrupted = true;
      log(`${sig}: stopping every server this benchmark started`);
      void cleanupAll().finally(() => process.exit(130));
    });
  }
  return { LOG_DIR: logDir, TMP: tmp };
}

export function onCleanup(fn) {
  cleanups.add(fn);
  return () => cleanups.delete(fn);
}

async function cleanupAll() {
  for (const fn of [...cleanups].reverse()) {
    cleanups.delete(fn);
    try {
      await fn();
    } catch (err) {
      log(`cleanup failed: ${err.message}`);
    }
  }
}

/** Run a benchmark's main(): a failure is logged (exit code 1), and everything it started is stopped. */
export async function runMain(main) {
  try {
    await main();
  } catch (err) {
    log(`failed: ${err.stack ?? err.message}`);
    process.exitCode = 1;
  } finally {
    await cleanupAll();
  }
}

/** Spawn a server in its own process group, logging to LOG_DIR/NAME.log. */
export function spawnServer(name, cmd, args, env = {}) {
  const logPath = path.join(logDir, `${name}.log`);
  const fd = openSync(logPath, 'a');
  const child = spawn(cmd, args, {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', fd, fd],
    detached: true,
  });
  closeSync(fd);
  groups.add(child.pid);
  return { child, logPath, text: () => (existsSync(logPath) ? readFileSync(logPath, 'utf8') : '') };
}

/** Stop a process group from spawnServer(): TERM, wait, KILL after `graceMs`. */
export async function stopGroup(pid, graceMs = 10_000) {
  if (!pid) return;
  await terminate(pid, { graceMs, group: true });
  groups.delete(pid);
}

// ---- tools --------------------------------------------------------------------------------

/** The tools found by the ensure* functions below, filled in by each script's main(). */
export const tools = {};

export async function ensureWrk() {
  let wrk = which('wrk');
  if (!wrk && (await aptInstall(['wrk']))) wrk = which('wrk');
  if (!wrk) throw new Error('wrk is not installed and apt-get could not install it; install wrk and run again');
  return wrk;
}

export const wrkVersion = () =>
  spawnSync(tools.wrk, ['--version'], { encoding: 'utf8' })
    .stdout.split('\n')[0]
    .replace(/ Copyright.*/, '')
    .trim();

/** bin/tsgun, with dist/ built first if it is missing. */
export async function ensureTsgun() {
  if (!existsSync(path.join(ROOT, 'dist', 'cli.js'))) {
    log('dist/ is missing: building tsgun (npx tsc -p tsconfig.build.json)');
    const r = await run('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: ROOT });
    if (r.code !== 0) throw new Error(`tsgun build failed:\n${r.stdout}${r.stderr}`);
  }
  return path.join(ROOT, 'bin', 'tsgun');
}

export const pkgVersion = (dir) => {
  try {
    return JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')).version;
  } catch {
    return null;
  }
};

/** PM2 and srvx: bench-only dependencies in bench/package.json. Each: its version, or why it is missing. */
export async function ensureBenchDeps() {
  const pm2Bin = path.join(BENCH, 'node_modules', '.bin', 'pm2');
  const srvxDir = path.join(BENCH, 'node_modules', 'srvx');
  let why = null;
  if (!existsSync(pm2Bin) || !existsSync(srvxDir)) {
    log('installing bench dependencies (npm install --prefix bench): pm2, srvx');
    const r = await run('npm', ['install', '--prefix', BENCH, '--no-audit', '--no-fund'], { cwd: ROOT });
    if (r.code !== 0) why = `npm install --prefix bench failed: ${r.stderr.trim().split('\n').pop()}`;
  }
  return {
    pm2: existsSync(pm2Bin)
      ? { bin: pm2Bin, version: pkgVersion(path.join(BENCH, 'node_modules', 'pm2')) }
      : { bin: null, why: why ?? 'pm2 is not installed under bench/node_modules' },
    srvx: existsSync(srvxDir)
      ? { version: pkgVersion(srvxDir) }
      : { version: null, why: why ?? 'srvx is not installed under bench/node_modules' },
  };
}

/** Debian's gunicorn and its uvicorn worker: the gunicorn script and the interpreter it runs on. */
export async function ensureGunicorn() {
  // The gunicorn on PATH (which may be a pyenv shim or a venv's), else Debian's.
  const find = () => {
    for (const bin of new Set([which('gunicorn'), '/usr/bin/gunicorn'])) {
      if (!bin || !existsSync(bin)) continue;
      const shebang = readFileSync(bin, 'utf8').split('\n')[0];
      const python = shebang.startsWith('#!') ? shebang.slice(2).trim().split(/\s+/) : ['python3'];
      const probe = spawnSync(
        python[0],
        [
          ...python.slice(1),
          '-c',
          'import gunicorn, uvicorn, uvicorn.workers, importlib.util as u; print(gunicorn.__version__, uvicorn.__version__, "uvloop" if u.find_spec("uvloop") else "asyncio", "httptools" if u.find_spec("httptools") else "h11")',
        ],
        { encoding: 'utf8' },
      );
      if (probe.status !== 0) continue;
      const [gunicornVersion, uvicornVersion, loop, parser] = probe.stdout.trim().split(' ');
      return { bin, python: python.join(' '), gunicornVersion, uvicornVersion, loop, parser };
    }
    return null;
  };
  let found = find();
  if (!found && (await aptInstall(['gunicorn', 'python3-uvicorn']))) found = find();
  return (
    found ?? {
      bin: null,
      why: 'gunicorn with the uvicorn worker is not available (apt-get install -y gunicorn python3-uvicorn failed or was not possible)',
    }
  );
}

/** Uvicorn's WebSocket support (the `websockets` library) for gunicorn's interpreter: its version, or null. */
export async function ensureUvicornWebsockets(gunicorn) {
  const [python, ...pre] = gunicorn.python.split(' ');
  const probe = () =>
    spawnSync(python, [...pre, '-c', 'import websockets; print(websockets.__version__)'], { encoding: 'utf8' });
  let r = probe();
  if (r.status !== 0 && (await aptInstall(['python3-websockets']))) r = probe();
  return r.status === 0 ? r.stdout.trim() : null;
}

// ---- wrk ----------------------------------------------------------------------------------

const WRK_SUMMARY = path.join(BENCH, 'wrk-summary.lua');

/**
 * wrk's arguments for a load `w`: { conns, path, headers?, script? }. The script must print
 * wrk-summary.lua's WRK_SUMMARY line (the default does).
 */
export function wrkArgs(w, port, seconds) {
  const args = ['-t1', `-c${w.conns}`, `-d${seconds}s`, '--latency', '-s', w.script ?? WRK_SUMMARY];
  for (const h of w.headers ?? []) args.push('-H', h);
  args.push(`http://127.0.0.1:${port}${w.path}`);
  return args;
}

/** The wrk command line for the report, with the port as $PORT and paths relative to the repository. */
export const wrkCommand = (w, seconds) =>
  `wrk ${wrkArgs(w, '$PORT', seconds)
    .map((a) => (a.includes(' ') ? `'${a}'` : a))
    .join(' ')
    .replace(ROOT + '/', '')}`;

/**
 * Run wrk; `during(t0)` runs alongside it (a reload schedule), t0 being wrk's start. The
 * WRK_SUMMARY numbers, plus `failed` (socket errors + non-2xx/3xx), `rps`, what `during`
 * returned as `events`, and wrk's whole output as `out`.
 */
export async function wrk(w, port, seconds, during = null, cpu = null) {
  const args = wrkArgs(w, port, seconds);
  const child =
    cpu == null
      ? spawn(tools.wrk, args, { stdio: ['ignore', 'pipe', 'pipe'] })
      : spawn('taskset', ['-c', String(cpu), tools.wrk, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const t0 = Date.now();
  const forget = onCleanup(() => child.kill('SIGKILL'));
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const driving = during ? during(t0) : Promise.resolve([]);
  const [code, events] = await Promise.all([exited, driving]);
  forget();
  const line = out.split('\n').find((l) => l.startsWith('WRK_SUMMARY '));
  if (code !== 0 || !line)
    throw new Error(`wrk failed (exit ${code}): ${out.trim().split('\n').slice(-3).join(' / ')}`);
  const s = JSON.parse(line.slice('WRK_SUMMARY '.length));
  const failed = s.connect + s.read + s.write + s.timeout + s.status;
  return { ...s, failed, rps: s.requests / (s.duration_us / 1e6), events, out };
}

// ---- report -------------------------------------------------------------------------------

/** The median of the finite numbers in `xs`; null if there are none. */
export const median = (xs) => {
  const s = xs.filter((x) => x != null && Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return null;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
export const fmtInt = (n) => (n == null ? '—' : Math.round(n).toLocaleString('en-US'));
export const pct = (r, d = 1) => (r == null ? '—' : `${(r * 100).toFixed(d)} %`);

export function gitRev(root = ROOT) {
  const r = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8' });
  const dirty =
    spawnSync('git', ['status', '--porcelain', '--', 'src', 'bin'], { cwd: root, encoding: 'utf8' }).stdout.trim() !==
    '';
  return r.status === 0 ? `${r.stdout.trim()}${dirty ? ' + uncommitted changes in src/ or bin/' : ''}` : 'unknown';
}

// ---- /proc ------------------------------------------------------------------------------------

/** Direct children of a process, from /proc/PID/task/TID/children. */
export function childrenOf(pid) {
  const out = new Set();
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      const text = readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim();
      for (const c of text.split(/\s+/)) if (c) out.add(Number(c));
    }
  } catch {
    // gone
  }
  return [...out];
}

/**
 * utime + stime of a process, in clock ticks (its own threads; with `reaped`, also the
 * children it has waited for: a master's retired workers). null once it is gone.
 */
export function cpuTicks(pid, { reaped = false } = {}) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // After the last ')' (the command name may hold spaces and parentheses) comes field 3.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(rest[11]) + Number(rest[12]) + (reaped ? Number(rest[13]) + Number(rest[14]) : 0);
  } catch {
    return null;
  }
}
/** { pid: ticks } for a process and all its descendants. */
export function treeTicks(root, options = {}) {
  const out = {};
  const todo = [root];
  while (todo.length) {
    const pid = todo.pop();
    const t = cpuTicks(pid, options);
    if (t == null) continue;
    out[pid] = t;
    todo.push(...childrenOf(pid));
  }
  return out;
}

// ---- workloads --------------------------------------------------------------------------------

export const WRK_POST = path.join(BENCH, 'wrk-post.lua');

/** The workloads of bench/run.mjs and bench/paired.mjs: wrk's path, connections, headers, script. */
export const WORKLOADS = [
  { id: 'hello', title: 'hello (tiny text)', path: '/', conns: 32 },
  { id: 'json', title: 'json (200 items)', path: '/json', conns: 32 },
  {
    id: 'json-close',
    title: 'json, new connection per request',
    path: '/json',
    conns: 32,
    headers: ['Connection: close'],
  },
  { id: 'stream', title: '1 MiB streamed (64 KiB chunks)', path: '/stream', conns: 32 },
  { id: 'post', title: 'POST 64 KiB body, echoed', path: '/echo', conns: 32, script: WRK_POST },
  { id: 'c1000', title: 'hello, 1,000 keep-alive connections', path: '/', conns: 1000 },
];

// ---- tsgun --------------------------------------------------------------------------------------

/**
 * A built tsgun, copied (bin/, dist/ and package.json) to node_modules/.cache/tsgun-bench/
 * at the start: every server of the run then runs the same code, even if dist/ is rebuilt
 * while the benchmark runs. Node resolves tsgun's dependencies from the copy up to the
 * repository's node_modules. `root`: another checkout to run (built), to compare its code
 * under this checkout's benchmark.
 */
export async function snapshotTsgun(root = ROOT) {
  if (root === ROOT) await ensureTsgun();
  else if (!existsSync(path.join(root, 'dist', 'cli.js')))
    throw new Error(`${root} has no dist/: build it first (npx tsc -p tsconfig.build.json)`);
  // Not while a build is writing dist/.
  await waitFor(
    'no tsc build running',
    () => spawnSync('pgrep', ['-f', 'tsc -p tsconfig.build.json'], { encoding: 'utf8' }).stdout.trim() === '',
    120_000,
    500,
  );
  // Under node_modules/.cache so that packages resolve from the repository's node_modules
  // (not bench/node_modules, whose older commander comes with PM2).
  const snap = path.join(ROOT, 'node_modules', '.cache', 'tsgun-bench');
  rmSync(snap, { recursive: true, force: true });
  for (const part of ['bin', 'dist', 'package.json'])
    if (existsSync(path.join(root, part))) cpSync(path.join(root, part), path.join(snap, part), { recursive: true });
  tools.tsgunBuilt = statSync(path.join(root, 'dist', 'cli.js'))
    .mtime.toISOString()
    .slice(0, 16)
    .replace('T', ' ');
  return path.join(snap, 'bin', 'tsgun');
}

// ---- docs/benchmarks.md sections ----------------------------------------------------------------

const markers = (name) => [`<!-- ${name}:start -->`, `<!-- ${name}:end -->`];

/** The text between `<!-- NAME:start -->` and `<!-- NAME:end -->`, markers included; null if absent. */
export function markedSection(text, name) {
  const [start, end] = markers(name);
  const i = text.indexOf(start);
  const j = text.indexOf(end, i);
  return i >= 0 && j > i ? text.slice(i, j + end.length) : null;
}

/** `text` with NAME's section holding `body` (appended, with its markers, if it has none). */
export function replaceMarkedSection(text, name, body) {
  const [start, end] = markers(name);
  const section = `${start}\n${body.trim()}\n${end}`;
  const old = markedSection(text, name);
  return old ? text.replace(old, () => section) : `${text.trimEnd()}\n\n${section}\n`;
}
