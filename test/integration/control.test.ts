/**
 * Operating a running master (DESIGN.md, "Command line": `tsgun status | reload | scale |
 * stop`, and `--metrics-bind`): the commands against a real master over its control
 * socket, checked against /proc; the socket's permissions; the commands with no master;
 * the Prometheus text at /metrics, parsed line by line.
 *
 * The app is test/fixtures/liveness/app.ts: `/` answers `ok PID`, `/status?code=N`
 * answers status N.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import net from 'node:net';
import path from 'node:path';
import { describe, test } from 'node:test';
import {
  alive,
  settle,
  BIN,
  childPidsSync,
  FIXTURES,
  request,
  runTsgun,
  scratchDir,
  sleep,
  Tsgun,
  workerPidsByTitle,
} from '../helpers.js';

const DIR = path.join(FIXTURES, 'liveness');
const APP = 'app:app';

// ---- helpers ---------------------------------------------------------------------------

/** One request on a fresh connection to `path`; returns the status and the pid that answered. */
async function hit(url: string, pathname = '/'): Promise<{ status: number; pid: number }> {
  const reply = await request(url, { path: pathname });
  const m = /(\d+)$/.exec(reply.body);
  assert.ok(m, `unexpected body ${JSON.stringify(reply.body)}`);
  return { status: reply.status, pid: Number(m[1]) };
}

/** Run a control command (`tsgun status ...`) to completion. */
async function ctl(
  args: readonly string[],
  env: NodeJS.ProcessEnv = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const { code, stdout, stderr } = await runTsgun(args, { env, timeoutMs: 120_000 });
  return { code, stdout, stderr };
}

/** Run a control command that must succeed; returns its stdout. */
async function ok(args: readonly string[], env: NodeJS.ProcessEnv = {}): Promise<string> {
  const r = await ctl(args, env);
  assert.equal(r.code, 0, `tsgun ${args.join(' ')} failed (${r.code}):\n${r.stderr}`);
  assert.equal(r.stderr, '', `tsgun ${args.join(' ')} wrote to stderr`);
  return r.stdout;
}

/** Run a control command that must fail with exit 1 and one `Error:` line matching `re`. */
async function refused(args: readonly string[], re: RegExp, env: NodeJS.ProcessEnv = {}): Promise<string> {
  const r = await ctl(args, env);
  assert.equal(
    r.code,
    1,
    `tsgun ${args.join(' ')} exit status (stdout ${JSON.stringify(r.stdout)}, stderr ${JSON.stringify(r.stderr)})`,
  );
  assert.equal(r.stdout, '');
  assert.match(r.stderr, /^Error: [^\n]+\n$/, 'one Error: line');
  assert.match(r.stderr, re);
  return r.stderr;
}

/** The control socket path from the master's `Control socket:` line. */
async function controlSocketOf(t: Tsgun): Promise<string> {
  const line = await t.waitForLine(/^Control socket: /);
  return /^Control socket: (.*)$/.exec(line.msg!)![1]!;
}

interface StatusJson {
  pid: number;
  app: string;
  generation: number;
  target: number;
  reloading: boolean;
  sockets: string[];
  workers: Array<{
    id: number;
    pid: number;
    generation: number;
    state: string;
    stats: { requests: number; connections: number };
    cpu: number;
    rss: number;
  }>;
  retired: { requests: number };
  restarts: Record<string, number>;
}

async function statusJson(args: readonly string[], env: NodeJS.ProcessEnv = {}): Promise<StatusJson> {
  return JSON.parse(await ok(['status', '--json', ...args], env)) as StatusJson;
}

const served = (s: StatusJson): number => s.retired.requests + s.workers.reduce((n, w) => n + w.stats.requests, 0);

/** The `tsgun status` table: its header line and its rows as cells. */
function parseTable(text: string): { head: string; listening: string; rows: Array<Record<string, string>> } {
  const lines = text.split('\n');
  assert.equal(lines.at(-1), '', 'ends with a newline');
  const [head, listening, blank, columns, ...rest] = lines.slice(0, -1);
  assert.equal(blank, '', `a blank line after the header:\n${text}`);
  const names = columns!.split(/ {2,}/);
  assert.deepEqual(names, ['ROLE', 'PID', 'GEN', 'STATE', 'UPTIME', 'REQUESTS', 'CONNS', 'UPGRADED', 'CPU%', 'RSS']);
  const rows = rest.map((line) => {
    const cells = line.split(/ {2,}/);
    assert.equal(cells.length, names.length, `one cell per column: ${JSON.stringify(line)}`);
    return Object.fromEntries(names.map((n, i) => [n, cells[i]!]));
  });
  return { head: head!, listening: listening!, rows };
}

// ---- Prometheus text format ------------------------------------------------------------

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

interface Family {
  name: string;
  type: string;
  help: string;
  samples: Sample[];
}

/**
 * Parse the Prometheus text exposition format (0.0.4) strictly: every line is `# HELP`,
 * `# TYPE` or a sample `name{label="value",...} number`; each family's HELP and TYPE come
 * before its samples, which are contiguous; no series appears twice; a histogram's
 * buckets are cumulative, in increasing `le`, end in +Inf, and +Inf equals `_count`.
 */
function parseMetrics(text: string): Map<string, Family> {
  assert.ok(text.endsWith('\n'), 'ends with a newline');
  const families = new Map<string, Family>();
  const seen = new Set<string>();
  let current: Family | null = null;
  // HELP seen, TYPE not yet (a property, so that the assertions do not narrow it for good).
  const pending: { help: { name: string; help: string } | null } = { help: null };
  const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*';
  for (const [i, line] of text.slice(0, -1).split('\n').entries()) {
    const where = `line ${i + 1}: ${JSON.stringify(line)}`;
    let m: RegExpExecArray | null;
    if ((m = new RegExp(`^# HELP (${NAME}) (.+)$`).exec(line))) {
      assert.ok(!families.has(m[1]!) && !pending.help, `${where}: HELP once per family, then its TYPE`);
      pending.help = { name: m[1]!, help: m[2]! };
    } else if ((m = new RegExp(`^# TYPE (${NAME}) (counter|gauge|histogram|summary|untyped)$`).exec(line))) {
      assert.equal(pending.help?.name, m[1], `${where}: TYPE follows the family's HELP`);
      current = { name: m[1]!, type: m[2]!, help: pending.help!.help, samples: [] };
      families.set(current.name, current);
      pending.help = null;
    } else if ((m = new RegExp(`^(${NAME})(?:\\{(.*)\\})? (\\S+)$`).exec(line))) {
      const [, name, rawLabels, rawValue] = m as unknown as [string, string, string | undefined, string];
      assert.ok(current && !pending.help, `${where}: a sample before its family's HELP and TYPE`);
      const suffixes =
        current.type === 'histogram'
          ? ['_bucket', '_sum', '_count']
          : current.type === 'summary'
            ? ['', '_sum', '_count']
            : [''];
      assert.ok(
        suffixes.some((s) => name === `${current!.name}${s}`),
        `${where}: a sample of ${name} inside family ${current.name}`,
      );
      const labels: Record<string, string> = {};
      if (rawLabels !== undefined) {
        const pair = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)/y;
        for (pair.lastIndex = 0; pair.lastIndex < rawLabels.length;) {
          const p = pair.exec(rawLabels);
          assert.ok(p, `${where}: malformed labels at ${JSON.stringify(rawLabels.slice(pair.lastIndex))}`);
          assert.ok(!(p[1]! in labels), `${where}: label ${p[1]} twice`);
          labels[p[1]!] = p[2]!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
          if (p[3] === '') break;
        }
      }
      assert.match(
        rawValue,
        /^([+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?|[+-]Inf|NaN)$/,
        `${where}: the value is a number`,
      );
      const value = rawValue === '+Inf' ? Infinity : rawValue === '-Inf' ? -Infinity : Number(rawValue);
      const key = `${name}${JSON.stringify(Object.entries(labels).sort())}`;
      assert.ok(!seen.has(key), `${where}: the same series twice`);
      seen.add(key);
      current.samples.push({ name, labels, value });
    } else {
      assert.fail(`${where}: neither a comment nor a sample`);
    }
  }
  assert.equal(pending.help, null, 'no HELP without its TYPE at the end');
  for (const f of families.values()) {
    if (f.type === 'counter') assert.match(f.name, /_total$/, `counter ${f.name} is named *_total`);
    if (f.type !== 'histogram') continue;
    const buckets = f.samples.filter((s) => s.name === `${f.name}_bucket`);
    const count = f.samples.find((s) => s.name === `${f.name}_count`);
    assert.ok(count && f.samples.some((s) => s.name === `${f.name}_sum`), `${f.name} has _sum and _count`);
    assert.ok(buckets.length > 0 && buckets.at(-1)!.labels.le === '+Inf', `${f.name}'s last bucket is le="+Inf"`);
    for (let i = 1; i < buckets.length; i++) {
      const [a, b] = [buckets[i - 1]!, buckets[i]!];
      assert.ok(
        Number(b.labels.le === '+Inf' ? Infinity : b.labels.le) > Number(a.labels.le),
        `${f.name}: le increases (${a.labels.le} then ${b.labels.le})`,
      );
      assert.ok(
        b.value >= a.value,
        `${f.name}: buckets are cumulative (${a.labels.le}: ${a.value}, ${b.labels.le}: ${b.value})`,
      );
    }
    assert.equal(buckets.at(-1)!.value, count.value, `${f.name}: the +Inf bucket equals _count`);
  }
  return families;
}

async function scrape(url: string): Promise<{ text: string; families: Map<string, Family> }> {
  const reply = await request(url);
  assert.equal(reply.status, 200);
  assert.match(String(reply.headers['content-type']), /^text\/plain; version=0\.0\.4/);
  return { text: reply.body, families: parseMetrics(reply.body) };
}

/** The samples named `name` (a family's, or a histogram's `_bucket`, `_sum`, `_count`) with these labels. */
function samples(families: Map<string, Family>, name: string, labels: Record<string, string> = {}): Sample[] {
  const family = families.get(name) ?? families.get(name.replace(/_(bucket|sum|count)$/, ''));
  assert.ok(family, `family ${name} is exposed`);
  return family.samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
}

const sum = (list: Sample[]): number => list.reduce((n, s) => n + s.value, 0);

function value(families: Map<string, Family>, name: string, labels: Record<string, string> = {}): number {
  const found = samples(families, name, labels);
  assert.equal(found.length, 1, `one ${name} sample with ${JSON.stringify(labels)}`);
  return found[0]!.value;
}

// ---- tests -----------------------------------------------------------------------------

// Two at a time: most of each test is waiting for workers to boot and drain.
describe('control commands and metrics', { concurrency: 2 }, () => {
  test('tsgun status and status --json show the master, its workers (as /proc lists them) and the requests they served', async (ctx) => {
    const dir = scratchDir();
    const pidfile = path.join(dir, 'tsgun.pid');
    const t = new Tsgun(['-w', '2', '-b', '127.0.0.1:0', '-p', pidfile, '--stats-interval', '1', APP], { cwd: DIR });
    ctx.after(() => t.kill());
    const url = await t.ready(2);
    const workers = await settle(t.pid, 2, 'start');
    const socket = await controlSocketOf(t);
    assert.equal(socket, path.join(dir, `tsgun-${t.pid}.sock`), "the control socket is in the pidfile's directory");
    assert.equal(statSync(socket).mode & 0o777, 0o600);

    const K = 7;
    for (let i = 0; i < K; i++) assert.equal((await hit(url)).status, 200);
    // Counters come with heartbeats, at most a second behind (more on a busy machine): poll.
    let json = await statusJson(['-p', pidfile]);
    for (const deadline = Date.now() + 15_000; served(json) < K && Date.now() < deadline; await sleep(200))
      json = await statusJson(['-p', pidfile]);
    assert.equal(json.pid, t.pid);
    assert.equal(json.app, APP);
    assert.equal(json.generation, 1);
    assert.equal(json.target, 2);
    assert.equal(json.reloading, false);
    assert.deepEqual(json.sockets, [url]);
    assert.deepEqual(
      json.workers.map((w) => w.pid).sort((a, b) => a - b),
      workers,
      'the workers are the children /proc lists',
    );
    assert.deepEqual(childPidsSync(t.pid), workers);
    for (const w of json.workers) {
      assert.equal(w.state, 'ready');
      assert.equal(w.generation, 1);
    }
    assert.equal(
      served(json),
      K,
      `the requests served add up to ${K}: ${JSON.stringify(json.workers.map((w) => w.stats))}`,
    );
    assert.equal(json.retired.requests, 0);
    assert.deepEqual(json.restarts, {});

    // The table says the same; RSS needs a usage sample (every second here).
    let table = parseTable(await ok(['status', '-p', pidfile]));
    for (
      const deadline = Date.now() + 10_000;
      table.rows.some((r) => r.RSS === '-') && Date.now() < deadline;
      await sleep(300)
    )
      table = parseTable(await ok(['status', '-p', pidfile]));
    ctx.diagnostic(`tsgun status:\n${await ok(['status', '-p', pidfile])}`);
    assert.match(
      table.head,
      new RegExp(
        `^tsgun \\d+\\.\\d+\\.\\d+\\S* master ${t.pid} \\[${APP}\\]: up \\d+s, generation 1, 2/2 workers ready$`,
      ),
    );
    assert.equal(table.listening, `listening at ${url}`);
    const [master, ...rows] = table.rows;
    assert.deepEqual(
      { ...master, UPTIME: '', 'CPU%': '', RSS: '' },
      {
        ROLE: 'master',
        PID: String(t.pid),
        GEN: '1',
        STATE: 'running',
        UPTIME: '',
        REQUESTS: String(K),
        CONNS: '-',
        UPGRADED: '-',
        'CPU%': '',
        RSS: '',
      },
    );
    assert.deepEqual(
      rows.map((r) => Number(r.PID)).sort((a, b) => a - b),
      workers,
    );
    assert.equal(
      rows.reduce((n, r) => n + Number(r.REQUESTS), 0),
      K,
    );
    for (const r of [master!, ...rows]) {
      assert.match(r.UPTIME!, /^\d+s$/);
      assert.match(r['CPU%']!, /^\d+\.\d$/);
      assert.match(r.RSS!, /^\d+\.\d MiB$/);
      assert.ok(parseFloat(r.RSS!) > 10, `a node process uses more than 10 MiB (${r.RSS})`);
    }
    for (const r of rows) assert.deepEqual([r.ROLE, r.GEN, r.STATE, r.CONNS], ['worker', '1', 'ready', '0']);

    assert.equal((await t.stop()).code, 0);
    assert.ok(!existsSync(socket), 'the control socket is removed at exit');
  });

  test('tsgun scale N, +N and -N change the number of workers and wait for it; scale 0 is refused; reload reports the new generation or why it failed; stop waits for the master', async (ctx) => {
    const dir = scratchDir('tsgun-control-');
    copyFileSync(path.join(DIR, 'app.ts'), path.join(dir, 'app.ts'));
    const pidfile = path.join(dir, 'tsgun.pid');
    const t = new Tsgun(['-w', '2', '-b', '127.0.0.1:0', '-p', pidfile, APP], { cwd: dir });
    ctx.after(() => t.kill());
    const url = await t.ready(2);
    const first = await settle(t.pid, 2, 'start');
    const socket = await controlSocketOf(t);
    const at = ['-p', pidfile];

    assert.equal(await ok(['scale', '4', ...at]), 'scaled to 4 workers\n');
    // The command returned once all four were ready: they are there now.
    const four = workerPidsByTitle(t.pid);
    assert.equal(four.length, 4, `four workers when scale returns: ${four}`);
    assert.ok(
      first.every((p) => four.includes(p)),
      'scaling up keeps the workers there were',
    );
    assert.equal((await statusJson(at)).workers.filter((w) => w.state === 'ready').length, 4);

    assert.equal(await ok(['scale', '2', ...at]), 'scaled to 2 workers\n');
    const two = workerPidsByTitle(t.pid);
    assert.equal(two.length, 2, `two workers when scale returns: ${two}`);
    assert.ok(
      two.every((p) => four.includes(p)),
      'scaling down starts no worker',
    );
    assert.equal(t.grep(/^Retiring worker \(pid:\d+, generation 1\): scale down$/).length, 2);

    assert.equal(await ok(['scale', '+1', '--control-socket', socket]), 'scaled to 3 workers\n');
    assert.equal(workerPidsByTitle(t.pid).length, 3);
    assert.equal(await ok(['scale', '-1', '--control-socket', socket]), 'scaled to 2 workers\n');
    const before = await settle(t.pid, 2, 'after scale -1');

    await refused(['scale', '0', ...at], /^Error: cannot scale to 0 workers; the minimum is 1/);
    await refused(['scale', '-5', ...at], /^Error: cannot scale to -3 workers; the minimum is 1/);
    await refused(['scale', 'many', ...at], /^Error: "many" is not a worker count; use N, \+N or -N/);
    assert.equal((await statusJson(at)).target, 2, 'a refused scale changes nothing');

    // reload waits for the new generation.
    const reloaded = await ok(['reload', ...at]);
    assert.match(reloaded, /^reloaded: generation 2 ready with 2 workers in \d+\.\d\d s\n$/);
    const after = await settle(t.pid, 2, 'after reload');
    assert.deepEqual(
      after.filter((p) => before.includes(p)),
      [],
      'every worker was replaced',
    );
    const s = await statusJson(at);
    assert.equal(s.generation, 2);
    assert.deepEqual(
      s.workers.map((w) => [w.generation, w.state]),
      [
        [2, 'ready'],
        [2, 'ready'],
      ],
    );
    assert.ok(after.includes((await hit(url)).pid));

    // A reload that cannot boot the app fails with the reason; generation 2 keeps serving.
    const good = readFileSync(path.join(dir, 'app.ts'));
    writeFileSync(path.join(dir, 'app.ts'), "export const app = (req, res) => {\n  res.end('never';\n};\n");
    const why = await refused(['reload', ...at], /^Error: reload failed: .*; generation 2 keeps serving\n$/);
    assert.match(why, /Expected "\)" but found ";"/);
    assert.deepEqual(await settle(t.pid, 2, 'after the failed reload'), after);
    writeFileSync(path.join(dir, 'app.ts'), good);

    // stop returns once the master has exited.
    assert.equal(await ok(['stop', ...at]), `stopped (master pid ${t.pid})\n`);
    assert.ok(!alive(t.pid), 'the master is gone when stop returns');
    assert.deepEqual((await t.exited).code, 0);
    for (const p of after) assert.ok(!alive(p), `worker ${p} is gone`);
    assert.ok(!existsSync(pidfile), 'the pidfile is removed');
    assert.ok(!existsSync(socket), 'the control socket is removed');
    await refused(['status', ...at], /^Error: no tsgun master is running: pidfile .* is missing or empty/);
  });

  test('tsgun COMMAND --help prints the usage and options of that command, exit 0', async () => {
    for (const [command, expected] of [
      ['status', [/^Usage: tsgun status \[options\]$/m, /--json/]],
      ['scale', [/^Usage: tsgun scale \[options\] <count>$/m]],
      ['stop', [/^Usage: tsgun stop \[options\]$/m, /--quick/, /--timeout <seconds>/]],
    ] as const) {
      const run = await runTsgun([command, '--help'], { cwd: DIR });
      assert.equal(run.code, 0, run.stderr);
      for (const re of expected) assert.match(run.stdout, re, `${command} --help:\n${run.stdout}`);
    }
  });

  test('with neither pidfile nor --control-socket the socket is in $XDG_RUNTIME_DIR/tsgun (0700), mode 0600, and the commands find it; without a master they fail with Error:', async (ctx) => {
    const xdg = path.join(scratchDir(), 'run');
    const env = { XDG_RUNTIME_DIR: xdg };
    await refused(['status'], new RegExp(`^Error: no tsgun master is running \\(none found in ${xdg}/tsgun\\)`), env);

    const t = new Tsgun(['-w', '1', '-b', '127.0.0.1:0', APP], { cwd: DIR, env });
    ctx.after(() => t.kill());
    await t.ready(1);
    const socket = await controlSocketOf(t);
    assert.equal(socket, path.join(xdg, 'tsgun', `tsgun-${t.pid}.sock`));
    const st = statSync(socket);
    assert.ok(st.isSocket());
    assert.equal(st.mode & 0o777, 0o600, `socket mode ${(st.mode & 0o777).toString(8)}`);
    assert.equal(
      statSync(path.dirname(socket)).mode & 0o777,
      0o700,
      `directory mode ${(statSync(path.dirname(socket)).mode & 0o777).toString(8)}`,
    );

    assert.equal((await statusJson([], env)).pid, t.pid, 'status finds the master without being told where');
    // A socket left by a SIGKILLed master whose pid now belongs to another process (this test's) is not a master.
    const stale = net.createServer().listen(path.join(xdg, 'tsgun', `tsgun-${process.pid}.sock`));
    await once(stale, 'listening');
    assert.equal((await statusJson([], env)).pid, t.pid, 'a stale socket with a reused pid is passed over');
    stale.close();

    // Two masters in the same place: the commands ask which one.
    const second = new Tsgun(['-w', '1', '-b', '127.0.0.1:0', APP], { cwd: DIR, env });
    ctx.after(() => second.kill());
    await second.ready(1);
    const several = await refused(
      ['status'],
      /^Error: several tsgun masters are running \(pids \d+, \d+\); choose one with --pid PIDFILE or --control-socket /,
      env,
    );
    const named = /pids (\d+), (\d+)/.exec(several)!.slice(1).map(Number);
    assert.deepEqual(
      named.sort((a, b) => a - b),
      [t.pid, second.pid].sort((a, b) => a - b),
      'the error names both masters',
    );
    assert.equal((await statusJson(['--control-socket', await controlSocketOf(second)])).pid, second.pid);
    assert.equal((await second.stop()).code, 0);
    assert.equal(await ok(['stop', '--quick'], env), `stopped (master pid ${t.pid})\n`);
    assert.equal((await t.exited).code, 0);
    assert.ok(!existsSync(socket));
    await refused(['status'], /^Error: no tsgun master is running \(none found in /, env);
    await refused(['stop'], /^Error: no tsgun master is running \(none found in /, env);
    await refused(
      ['status', '--control-socket', socket],
      /^Error: no tsgun master is running: control socket .* does not exist/,
    );
  });

  test('an existing default runtime directory of ours that others can write to is made 0700 before the socket goes in', async (ctx) => {
    const xdg = scratchDir();
    const runtime = path.join(xdg, 'tsgun');
    mkdirSync(runtime, { mode: 0o777 });
    chmodSync(runtime, 0o777);
    const t = new Tsgun(['-w', '1', '-b', '127.0.0.1:0', APP], { cwd: DIR, env: { XDG_RUNTIME_DIR: xdg } });
    ctx.after(() => t.kill());
    await t.ready(1);
    assert.equal(await controlSocketOf(t), path.join(runtime, `tsgun-${t.pid}.sock`));
    assert.equal(
      statSync(runtime).mode & 0o777,
      0o700,
      `the runtime directory is left ${(statSync(runtime).mode & 0o777).toString(8)}: others can remove or replace the socket`,
    );
  });

  const nobodyCanRunNode =
    process.getuid?.() === 0 &&
    spawnSync(process.execPath, ['-e', '0'], { uid: 65534, gid: 65534, cwd: '/' }).status === 0;
  test(
    'a control socket that belongs to another user is refused (the command runs as nobody)',
    { skip: nobodyCanRunNode ? false : 'needs root, and a node binary that the nobody user can run' },
    async (ctx) => {
      const dir = scratchDir();
      // The scratch directory is 0700; nobody must be able to reach the socket to stat it.
      chmodSync(dir, 0o755);
      const socket = path.join(dir, 'control.sock');
      const t = new Tsgun(['-w', '1', '-b', '127.0.0.1:0', '--control-socket', socket, APP], { cwd: DIR });
      ctx.after(() => t.kill());
      await t.ready(1);
      assert.equal(statSync(socket).mode & 0o777, 0o600);
      const run = spawnSync(process.execPath, [BIN, 'status', '--control-socket', socket], {
        uid: 65534,
        gid: 65534,
        cwd: '/',
        encoding: 'utf8',
        timeout: 60_000,
        env: { PATH: process.env.PATH },
      });
      assert.equal(run.status, 1, run.stderr);
      assert.equal(run.stdout, '');
      assert.match(
        run.stderr,
        new RegExp(`^Error: control socket ${socket} belongs to user id 0; run tsgun as that user\\n$`),
      );
      assert.equal((await statusJson(['--control-socket', socket])).pid, t.pid, 'its owner can use it');
      assert.equal((await t.stop()).code, 0);
    },
  );

  test('/metrics is valid Prometheus text; requests are counted by status class, and survive a reload in the retired series', async (ctx) => {
    const t = new Tsgun(
      ['-w', '2', '-b', '127.0.0.1:0', '--metrics-bind', '127.0.0.1:0', '--stats-interval', '1', APP],
      { cwd: DIR },
    );
    ctx.after(() => t.kill());
    const url = await t.ready(2);
    const workers = await settle(t.pid, 2, 'start');
    const metricsUrl = /^Metrics at: (http:\/\/127\.0\.0\.1:\d+\/metrics)$/.exec(
      (await t.waitForLine(/^Metrics at: /)).msg!,
    )?.[1];
    assert.ok(metricsUrl, 'the master logs where metrics are');
    assert.equal((await request(metricsUrl.replace(/\/metrics$/, '/other'))).status, 404);

    let { families } = await scrape(metricsUrl);
    assert.equal(sum(samples(families, 'tsgun_requests_total')), 0);
    assert.equal(value(families, 'tsgun_workers', { state: 'ready' }), 2);
    assert.equal(value(families, 'tsgun_workers_target'), 2);
    assert.equal(value(families, 'tsgun_generation'), 1);
    for (const name of [
      'tsgun_requests_total',
      'tsgun_request_duration_seconds',
      'tsgun_requests_in_flight',
      'tsgun_connections',
      'tsgun_workers',
      'tsgun_workers_target',
      'tsgun_generation',
      'tsgun_worker_restarts_total',
      'tsgun_worker_resident_memory_bytes',
      'tsgun_worker_cpu_percent',
      'tsgun_master_resident_memory_bytes',
    ]) {
      assert.ok(families.has(name), `${name} is exposed`);
    }
    assert.equal(families.get('tsgun_request_duration_seconds')!.type, 'histogram');
    assert.equal(families.get('tsgun_requests_total')!.type, 'counter');

    // 7 OK, 2 not found: K = 9.
    for (let i = 0; i < 7; i++) assert.equal((await hit(url)).status, 200);
    for (let i = 0; i < 2; i++) assert.equal((await hit(url, '/status?code=404')).status, 404);
    const K = 9;
    let text = '';
    for (const deadline = Date.now() + 15_000; ; await sleep(200)) {
      ({ text, families } = await scrape(metricsUrl));
      if (sum(samples(families, 'tsgun_requests_total')) >= K || Date.now() > deadline) break;
    }
    ctx.diagnostic(`/metrics after ${K} requests:\n${text}`);
    assert.equal(sum(samples(families, 'tsgun_requests_total')), K);
    assert.equal(sum(samples(families, 'tsgun_requests_total', { status: '2xx' })), 7);
    assert.equal(sum(samples(families, 'tsgun_requests_total', { status: '4xx' })), 2);
    assert.equal(value(families, 'tsgun_request_duration_seconds_count'), K);
    assert.ok(value(families, 'tsgun_request_duration_seconds_sum') > 0);
    const series = new Set(samples(families, 'tsgun_requests_total').map((s) => s.labels.worker));
    assert.deepEqual([...series].sort(), ['1', '2', 'retired']);
    assert.equal(sum(samples(families, 'tsgun_requests_total', { worker: 'retired' })), 0);
    assert.equal(value(families, 'tsgun_requests_in_flight'), 0);
    assert.deepEqual(
      samples(families, 'tsgun_worker_resident_memory_bytes')
        .map((s) => Number(s.labels.pid))
        .sort((a, b) => a - b),
      workers,
    );
    for (const s of samples(families, 'tsgun_worker_resident_memory_bytes'))
      assert.ok(s.value > 10 * 1024 * 1024, `worker RSS sampled (${s.value})`);
    assert.ok(value(families, 'tsgun_master_resident_memory_bytes') > 10 * 1024 * 1024);

    // HUP: new workers, and the old ones' counts move to worker="retired".
    const mark = t.lines.length;
    t.signal('SIGHUP');
    await t.waitForLine(/^Reload complete: generation 2 ready/, 60_000, mark);
    const after = await settle(t.pid, 2, 'after the reload');
    assert.deepEqual(
      after.filter((p) => workers.includes(p)),
      [],
    );
    ({ text, families } = await scrape(metricsUrl));
    assert.equal(value(families, 'tsgun_generation'), 2);
    assert.equal(value(families, 'tsgun_worker_restarts_total', { reason: 'reload' }), 2);
    assert.equal(sum(samples(families, 'tsgun_worker_restarts_total')), 2, 'no restart for another reason');
    assert.equal(sum(samples(families, 'tsgun_requests_total')), K, `the counts survive the reload:\n${text}`);
    assert.equal(sum(samples(families, 'tsgun_requests_total', { worker: 'retired' })), K, 'in the retired series');
    assert.equal(sum(samples(families, 'tsgun_requests_total', { worker: 'retired', status: '2xx' })), 7);
    assert.equal(value(families, 'tsgun_request_duration_seconds_count'), K);
    assert.deepEqual(
      new Set(samples(families, 'tsgun_requests_total').map((s) => s.labels.worker)),
      new Set(['3', '4', 'retired']),
    );

    // And they keep counting.
    await hit(url);
    for (const deadline = Date.now() + 15_000; ; await sleep(200)) {
      ({ families } = await scrape(metricsUrl));
      if (sum(samples(families, 'tsgun_requests_total')) >= K + 1 || Date.now() > deadline) break;
    }
    assert.equal(sum(samples(families, 'tsgun_requests_total')), K + 1);
    assert.equal((await t.stop()).code, 0);
  });
});
