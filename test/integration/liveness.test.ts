/**
 * Liveness (DESIGN.md, "Liveness", "Processes", "Exit statuses"), with real processes,
 * signals and HTTP: a worker stuck in a busy loop is killed after `timeout` with its stack
 * in the log and `worker_abort` run; a worker too slow to boot stops a first start with
 * exit 3, an app that cannot load with exit 4; after the first start, boot failures keep
 * the old workers serving and are retried with backoff; a worker over
 * `max_worker_memory` is replaced without failing a request; workers leave with a
 * SIGKILLed master.
 *
 * The app is test/fixtures/liveness/app.ts (`/`, `/spin`, `/hog`). Timing assertions
 * use the log lines' own timestamps: the machine running the tests may be busy.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { describe, test } from 'node:test';
import {
  alive,
  appDir,
  bootedPids,
  childPidsSync,
  FIXTURES,
  hit,
  linesSince,
  type LogLine,
  processesWithEnv,
  readIfExists,
  request,
  runTsgun,
  scratchDir,
  settle,
  sleep,
  Tsgun,
  waitFor,
} from '../helpers.js';

const DIR = path.join(FIXTURES, 'liveness');
const APP = 'app:app';
const APP_TS = readFileSync(path.join(DIR, 'app.ts'), 'utf8');
/** worker_abort and post_worker_init hooks that write files named by ABORT_FILE and READY_LOG. */
const HOOKS_CONF = path.join(DIR, 'hooks.conf.ts');
/** An app module with a syntax error, written over the scratch copy of the app. */
const SYNTAX_ERROR = "export const app = (req, res) => {\n  res.end('never';\n};\n";
const SYNTAX_MESSAGE = /app\.ts:2:\d+: ERROR: Expected "\)" but found ";"/;

type Timed = LogLine & { time: number };

/** How long the master waits for a stuck worker's stack (src/worker/watchdog-pipe.cts). */
const STACK_WAIT_MS = 1500;
/** Where `text` starts in a fixture's source, 1-based, as `line:column`. */
function positionOf(source: string, text: string): string {
  const lines = source.split('\n');
  const line = lines.findIndex((l) => l.includes(text));
  assert.ok(line >= 0, `${text} in the fixture`);
  return `${line + 1}:${lines[line]!.indexOf(text) + 1}`;
}
function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Send requests to `/` until worker `pid` answers one (the others may answer first). */
async function answeredBy(url: string, pid: number): Promise<void> {
  const seen = new Set<number>();
  for (let i = 0; i < 200; i++) {
    const by = await hit(url);
    if (by === pid) return;
    seen.add(by);
  }
  assert.fail(`worker ${pid} answered none of 200 requests (answered by ${[...seen].join(', ')})`);
}

/**
 * Requests to `/` one after another (`clients` at a time, on fresh or keep-alive
 * connections) until stopped or until `t` exits; any error or non-200 is a failure.
 * Records which worker answered, and when.
 */
function backgroundLoad(
  t: Tsgun,
  url: string,
  clients = 1,
  keepAlive = false,
): { stop: () => Promise<{ failures: string[]; answers: Array<{ pid: number; at: number }> }> } {
  let running = true;
  const failures: string[] = [];
  const answers: Array<{ pid: number; at: number }> = [];
  const target = new URL(url);
  const one = (agent: http.Agent | false): Promise<number> =>
    new Promise((resolve, reject) => {
      const req = http.get(
        { hostname: target.hostname, port: target.port, path: '/', agent, timeout: 15_000 },
        (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (body += c));
          res.on('end', () => {
            const m = /^ok (\d+)$/.exec(body);
            if (res.statusCode === 200 && m) resolve(Number(m[1]));
            else reject(new Error(`status ${res.statusCode} ${JSON.stringify(body)}`));
          });
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new Error('timed out after 15 s')));
      req.on('error', reject);
    });
  const done = Promise.all(
    Array.from({ length: clients }, async (_, client) => {
      const agent = keepAlive ? new http.Agent({ keepAlive: true, maxSockets: 1 }) : false;
      try {
        for (let n = 0; running && t.proc.exitCode === null && t.proc.signalCode === null; n++) {
          try {
            answers.push({ pid: await one(agent), at: Date.now() });
          } catch (err) {
            failures.push(`client ${client} request ${n} at ${new Date().toISOString()}: ${(err as Error).message}`);
          }
          await sleep(10 + Math.floor(Math.random() * 30));
        }
      } finally {
        if (agent) agent.destroy();
      }
    }),
  );
  return {
    stop: async () => {
      running = false;
      await done;
      return { failures, answers };
    },
  };
}

/**
 * Run tsgun expecting it to stop by itself with `status` and one `Error:` line matching
 * `message`, leaving no process, socket file, control socket or pidfile behind.
 */
async function failsAtStart(
  args: readonly string[],
  status: number,
  message: RegExp,
  cwd: string,
): Promise<{ errorLine: string; lines: Timed[]; stderr: string }> {
  const dir = scratchDir();
  const sock = path.join(dir, 'app.sock');
  const control = path.join(dir, 'control.sock');
  const pidfile = path.join(dir, 'tsgun.pid');
  const mark = randomUUID();
  const run = await runTsgun(['-b', `unix:${sock}`, '--control-socket', control, '-p', pidfile, ...args], {
    cwd,
    env: { TSGUN_TEST_MARK: mark },
    timeoutMs: 90_000,
  });
  const errorLines = run.stderr.split('\n').filter((l) => l.startsWith('Error:'));
  assert.equal(errorLines.length, 1, `exactly one Error: line; stderr was:\n${run.stderr}`);
  assert.match(errorLines[0]!, message);
  assert.equal(run.code, status, `exit status; stderr was:\n${run.stderr}`);
  assert.deepEqual(childPidsSync(run.pid), [], 'no child of the master is left');
  assert.deepEqual(processesWithEnv(`TSGUN_TEST_MARK=${mark}`), [], 'no process started by this tsgun is left');
  for (const file of [sock, control, pidfile]) assert.ok(!existsSync(file), `${file} removed`);
  const lines = run.stderr
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((raw) => ({ ...(JSON.parse(raw) as object), raw }) as Timed);
  assert.equal(lines.filter((l) => /^Starting tsgun/.test(l.msg ?? '')).length, 1, 'the master started once');
  assert.equal(lines.filter((l) => /^Booting worker/.test(l.msg ?? '')).length, 0, 'no worker became ready');
  return { errorLine: errorLines[0]!, lines, stderr: run.stderr };
}

// Two at a time: most of each test is waiting for workers to boot, block or drain.
describe('liveness', { concurrency: 2 }, () => {
  // ---- timeout -----------------------------------------------------------------------

  test('a worker stuck in `while (true) {}` is killed after --timeout with its stack logged and worker_abort run; the other worker keeps answering', async (ctx) => {
    const dir = scratchDir('tsgun-liveness-');
    const abortFile = path.join(dir, 'abort.json');
    const spinMark = path.join(dir, 'spin');
    const t = new Tsgun(['-c', HOOKS_CONF, '-w', '2', '-t', '2', '-b', '127.0.0.1:0', APP], {
      cwd: DIR,
      env: { ABORT_FILE: abortFile, SPIN_MARK: spinMark },
    });
    ctx.after(() => t.kill());
    const url = await t.ready(2);
    const before = await settle(t.pid, 2, 'start');
    const mark = t.lines.length;

    const sentAt = Date.now();
    const spin = request(url, { path: '/spin', timeoutMs: 120_000 }).then(
      (r) => `answered ${r.status} ${r.body}`,
      (err: Error) => `failed: ${err.message}`,
    );
    // The app writes `PID TIME` just before it spins.
    const [stuck, spunAt] = (
      await waitFor(() => readIfExists(spinMark).trim(), 'the /spin request to reach a worker', 30_000)
    )
      .split(' ')
      .map(Number) as [number, number];
    assert.ok(before.includes(stuck), `a worker spins (${stuck} in ${before})`);
    const other = before.find((p) => p !== stuck)!;

    // A stuck worker accepts nothing: every request goes to the other one, until the replacement is up.
    const load = backgroundLoad(t, url);
    const timeout = (await t.waitForLine(/^WORKER TIMEOUT/, 60_000, mark)) as Timed;
    const killed = (await t.waitForLine(
      new RegExp(`^Worker \\(pid:${stuck}\\) was sent SIGKILL$`),
      30_000,
      mark,
    )) as Timed;
    await waitFor(() => !alive(stuck), `stuck worker ${stuck} to be gone`, 10_000);
    const booted = await t.waitForLine(/^Booting worker with pid: \d+$/, 60_000, mark);
    const replacement = Number(/pid: (\d+)/.exec(booted.msg!)![1]);
    const after = await settle(t.pid, 2, 'after the replacement', 60_000);
    assert.deepEqual(
      after,
      [other, replacement].sort((a, b) => a - b),
      'the other worker stays and one new worker joins it',
    );
    await answeredBy(url, replacement);
    const result = await load.stop();
    assert.deepEqual(bootedPids(t, mark), [replacement], 'one replacement booted');
    assert.deepEqual(
      result.failures,
      [],
      `failed requests while a worker was stuck:\n${result.failures.join('\n')}\n--- log ---\n${t.stderr}`,
    );
    const duringBlock = result.answers.filter((a) => a.at <= killed.time);
    assert.ok(duringBlock.length > 0, 'requests were answered while the worker was stuck');
    assert.deepEqual(
      [...new Set(duringBlock.map((a) => a.pid))],
      [other],
      'only the other worker answered while one was stuck',
    );
    for (const a of result.answers) assert.ok(a.pid === other || a.pid === replacement, `answered by ${a.pid}`);
    assert.match(await spin, /^failed: /, 'the stuck request gets no answer: its connection is reset');

    // The log line: who, how long.
    const m = new RegExp(
      `^WORKER TIMEOUT \\(pid:${stuck}\\): no heartbeat for (\\d+\\.\\d) s \\(timeout 2 s\\); (blocked at:\\n|no stack available$)`,
    ).exec(timeout.msg!);
    assert.ok(m, `the WORKER TIMEOUT line names the worker and the timeout: ${timeout.msg}`);
    assert.ok(Number(m[1]) >= 2, `silent for at least the timeout (${m[1]} s)`);
    assert.equal(timeout.level, 'error');
    assert.equal(linesSince(t, mark, /^WORKER TIMEOUT/).length, 1, 'one timeout');

    // Timing, from the log's own clock: logged within timeout + 1.5 s of the request, killed at
    // once. The master logs the line after waiting (up to 1 s) for the stack: when it gave up
    // (the bug below), that wait is not the detection's.
    const stackMissing = m[2] !== 'blocked at:\n';
    const noticed = timeout.time - sentAt - (stackMissing ? STACK_WAIT_MS : 0);
    ctx.diagnostic(
      `WORKER TIMEOUT ${timeout.time - sentAt} ms after the request (spin from +${spunAt - sentAt} ms), SIGKILL ${killed.time - timeout.time} ms later${stackMissing ? '; no stack' : ''}`,
    );
    assert.ok(
      noticed <= 3500,
      `WORKER TIMEOUT logged ${timeout.time - sentAt} ms after the request was sent (spin started at +${spunAt - sentAt} ms); expected <= 3500 ms`,
    );
    // Its last heartbeat may have come up to a beat interval (500 ms) before the spin, and later on a busy machine.
    assert.ok(
      timeout.time >= spunAt + 1000,
      `not before the worker was silent long enough (${timeout.time - spunAt} ms after it started spinning)`,
    );
    assert.ok(
      killed.time - timeout.time <= 1000,
      `killed ${killed.time - timeout.time} ms after the WORKER TIMEOUT line`,
    );

    // Where it was stuck, and worker_abort run in it. On a busy machine the watchdog can take
    // longer than the master waits for it: see the many-scripts test below.
    await ctx.test('the line shows the busy loop, and worker_abort ran in the paused worker', {}, () => {
      assert.ok(
        !stackMissing,
        `no stack in the WORKER TIMEOUT line: ${timeout.msg}\n--- log ---\n${t.stderr}\n--- worker_abort wrote ---\n${readIfExists(abortFile)}`,
      );
      const frames = timeout.msg!.split('\n').slice(1);
      // Lines of app.ts, not of tsx's compiled output (one line): positions go through the source map.
      const appUrl = escape(`file://${path.join(DIR, 'app.ts')}`);
      assert.match(
        frames[0]!,
        new RegExp(`^ {4}at spinForever \\(${appUrl}:${positionOf(APP_TS, 'while (true) {}').split(':')[0]}:\\d+\\)$`),
        `the top frame is the busy loop, at its line in app.ts:\n${timeout.msg}`,
      );
      assert.ok(
        frames.some((f) => new RegExp(`^ {4}at app \\(${appUrl}:${positionOf(APP_TS, 'spinForever();')}\\)$`).test(f)),
        `the app's handler is on the stack, at its call of spinForever in app.ts:\n${timeout.msg}`,
      );
      const abort = JSON.parse(readIfExists(abortFile) || 'null') as {
        pid: number;
        processPid: number;
        time: number;
        stack: string;
      } | null;
      assert.ok(abort, `worker_abort wrote ${abortFile}`);
      assert.equal(abort.pid, stuck);
      assert.equal(abort.processPid, stuck);
      assert.match(
        abort.stack,
        /\n\s+at spinForever \(.*app\.ts:\d+:\d+\)/,
        `worker_abort ran inside the busy loop:\n${abort.stack}`,
      );
      assert.ok(
        abort.time >= spunAt && abort.time <= timeout.time,
        'worker_abort ran between the block and the WORKER TIMEOUT line',
      );
    });
    assert.equal((await t.stop()).code, 0);
  });

  // ---- app load failure --------------------------------------------------------------

  test('an app with a syntax error stops a fresh tsgun with exit 4 and the syntax error, once', async () => {
    const dir = appDir(path.join(DIR, 'app.ts'));
    writeFileSync(path.join(dir, 'app.ts'), SYNTAX_ERROR);
    const { errorLine, lines, stderr } = await failsAtStart(
      ['-w', '2', APP],
      4,
      /^Error: app module .*\/app\.ts failed to load: /,
      dir,
    );
    assert.match(errorLine, SYNTAX_MESSAGE);
    assert.ok(errorLine.includes(path.join(dir, 'app.ts')), `names the file: ${errorLine}`);
    const exits = lines.filter((l) => /^Worker \(pid:\d+\) /.test(l.msg ?? ''));
    assert.ok(exits.length >= 1 && exits.length <= 2, `one exit per worker slot at most, not a fork loop:\n${stderr}`);
    assert.deepEqual(
      lines.filter((l) => /^Restarting the worker/.test(l.msg ?? '')),
      [],
      'no restart at first start',
    );
  });

  // ---- boot failures after the first start -------------------------------------------

  test('a syntax error before HUP keeps the old generation serving; a killed worker is then retried with backoff until the file is fixed', async (ctx) => {
    const dir = appDir(path.join(DIR, 'app.ts'));
    const appFile = path.join(dir, 'app.ts');
    const good = readFileSync(appFile);
    const t = new Tsgun(['-w', '2', '-b', '127.0.0.1:0', APP], { cwd: dir });
    ctx.after(() => t.kill());
    const url = await t.ready(2);
    const before = await settle(t.pid, 2, 'start');

    // HUP with a broken app: the new generation cannot boot; generation 1 keeps serving.
    writeFileSync(appFile, SYNTAX_ERROR);
    let mark = t.lines.length;
    t.signal('SIGHUP');
    const failed = await t.waitForLine(/reload failed/, 60_000, mark);
    assert.match(failed.msg!, /^Error: reload failed: .*; generation 1 keeps serving$/);
    assert.match(failed.msg!, SYNTAX_MESSAGE);
    assert.equal(failed.level, 'error');
    assert.deepEqual(linesSince(t, mark, /^Reload complete/), []);
    assert.deepEqual(await settle(t.pid, 2, 'after the failed reload'), before, 'the same workers, and only they');
    for (let i = 0; i < 4; i++) assert.ok(before.includes(await hit(url)));

    // Kill one old worker that has served (so its own death is no crash loop: docs/reload.md):
    // its replacement loads the broken file too, and is retried with backoff.
    const [victim, survivor] = before as [number, number];
    for (let i = 0; i < 200 && (await hit(url)) !== victim; i++);
    await sleep(1500); // a heartbeat brings the master the victim's request count
    const load = backgroundLoad(t, url);
    mark = t.lines.length;
    process.kill(victim, 'SIGKILL');
    const restarts = await t.until(
      () => {
        const found = linesSince(t, mark, /^Restarting the worker in [\d.]+ s \(attempt \d+, boot failed: /);
        return found.length >= 3 ? found : null;
      },
      'three boot failures retried with backoff',
      120_000,
    );
    const attempts = linesSince(t, mark, /^Restarting the worker in /).map((l) => {
      const m = /^Restarting the worker in ([\d.]+) s \(attempt (\d+)(, boot failed: (.*))?\)$/.exec(l.msg!);
      assert.ok(m, `a restart line: ${l.msg}`);
      return { delay: Number(m[1]), attempt: Number(m[2]), bootFailed: m[4] ?? null, level: l.level };
    });
    assert.ok(
      attempts.some((a) => a.attempt === 2 && a.bootFailed !== null),
      `attempt 2 was a boot failure:\n${attempts.map((a) => JSON.stringify(a)).join('\n')}`,
    );
    for (let i = 1; i < attempts.length; i++) {
      assert.equal(attempts[i]!.attempt, attempts[i - 1]!.attempt + 1, 'attempts are numbered one by one');
      assert.equal(attempts[i]!.delay, Math.min(30, attempts[i - 1]!.delay * 2), 'each delay doubles the last');
    }
    for (const r of restarts) {
      assert.match(r.msg!, SYNTAX_MESSAGE, 'each retry says why the boot failed');
      assert.equal(r.level, 'warn');
    }
    assert.deepEqual(bootedPids(t, mark), [], 'no replacement became ready');
    assert.deepEqual(linesSince(t, mark, /reload failed/), [], 'a restart is not a reload');

    // Fixed: the next attempt boots.
    writeFileSync(appFile, good);
    const fixedAt = t.lines.length;
    const booted = await t.waitForLine(/^Booting worker with pid: \d+$/, 90_000, fixedAt);
    const replacement = Number(/pid: (\d+)/.exec(booted.msg!)![1]);
    const after = await settle(t.pid, 2, 'after the fix', 60_000);
    assert.deepEqual(
      after,
      [survivor, replacement].sort((a, b) => a - b),
    );
    await answeredBy(url, replacement);
    const result = await load.stop();
    assert.deepEqual(result.failures, [], `failed requests:\n${result.failures.join('\n')}\n--- log ---\n${t.stderr}`);
    const beforeFix = result.answers.filter((a) => a.at < (booted as Timed).time);
    assert.ok(beforeFix.length > 0, 'requests were answered while the replacement could not boot');
    assert.deepEqual([...new Set(beforeFix.map((a) => a.pid))], [survivor], 'the surviving worker answered them all');
    assert.equal((await t.stop()).code, 0);
  });

  test('after the first start, a worker that does not boot within --boot-timeout is killed and retried with backoff; tsgun keeps serving', async (ctx) => {
    const flag = path.join(scratchDir(), 'slow');
    // A boot_timeout that a busy machine's normal boot stays well within; the slow boot takes a minute.
    const t = new Tsgun(['-w', '2', '-b', '127.0.0.1:0', '--boot-timeout', '8', 'slow-boot-timer:app'], {
      cwd: DIR,
      env: { SLOW_BOOT_FLAG: flag, SLOW_BOOT_MS: '60000' },
    });
    ctx.after(() => t.kill());
    const url = await t.ready(2);
    const [victim, survivor] = (await settle(t.pid, 2, 'start')) as [number, number];
    const load = backgroundLoad(t, url);
    writeFileSync(flag, '');
    const mark = t.lines.length;
    process.kill(victim, 'SIGKILL');
    const retries = await t.until(
      () => {
        const found = linesSince(
          t,
          mark,
          /^Restarting the worker in [\d.]+ s \(attempt \d+, boot failed: a worker did not boot within boot_timeout \(8 s\)/,
        );
        return found.length >= 2 ? found : null;
      },
      'two boot timeouts retried with backoff',
      120_000,
    );
    const delays = retries.map((l) => Number(/in ([\d.]+) s/.exec(l.msg!)![1]));
    assert.equal(delays[1], delays[0]! * 2, `the delay doubles (${delays})`);
    const timedOut = linesSince(t, mark, /^Worker \(pid:\d+\) did not boot within boot_timeout \(8 s\)/);
    assert.ok(timedOut.length >= 2, 'each slow worker was killed for its boot timeout');
    for (const l of timedOut) assert.ok(!alive(Number(/pid:(\d+)/.exec(l.msg!)![1])), `${l.msg} is gone`);

    // Fast again: the next attempt boots.
    rmSync(flag);
    const booted = await t.waitForLine(/^Booting worker with pid: \d+$/, 90_000, mark);
    const replacement = Number(/pid: (\d+)/.exec(booted.msg!)![1]);
    assert.deepEqual(
      await settle(t.pid, 2, 'after the fix', 60_000),
      [survivor, replacement].sort((a, b) => a - b),
    );
    await answeredBy(url, replacement);
    const result = await load.stop();
    assert.deepEqual(result.failures, [], `failed requests:\n${result.failures.join('\n')}`);
    assert.deepEqual(
      [...new Set(result.answers.filter((a) => a.at < (booted as Timed).time).map((a) => a.pid))],
      [survivor],
      'the survivor served alone meanwhile',
    );
    assert.equal(t.proc.exitCode, null, 'tsgun did not exit');
    assert.equal((await t.stop()).code, 0);
  });

  // ---- max_worker_memory -------------------------------------------------------------

  test('a worker over --max-worker-memory is replaced, the new one ready before the old one retires, without a failed request', async (ctx) => {
    const readyLog = path.join(scratchDir(), 'ready.log');
    const t = new Tsgun(
      ['-c', HOOKS_CONF, '-w', '2', '-b', '127.0.0.1:0', '--max-worker-memory', '200MB', '--stats-interval', '1', APP],
      { cwd: DIR, env: { READY_LOG: readyLog } },
    );
    ctx.after(() => t.kill());
    const url = await t.ready(2);
    const before = await settle(t.pid, 2, 'start');
    // Two keep-alive clients and one that opens a connection per request.
    const keepAlive = backgroundLoad(t, url, 2, true);
    const fresh = backgroundLoad(t, url, 1, false);
    await sleep(500);
    const mark = t.lines.length;
    const hog = await request(url, { path: '/hog?mb=150', timeoutMs: 60_000 });
    assert.equal(hog.status, 200, hog.body);
    const hogPid = Number(/^held 150 (\d+)$/.exec(hog.body)?.[1]);
    assert.ok(before.includes(hogPid), `a worker holds 150 MiB (${hog.body})`);

    // 200MB is 200e6 bytes.
    const over = (await t.waitForLine(
      new RegExp(
        `^Worker \\(pid:${hogPid}\\) uses [\\d.]+ MiB, over max_worker_memory \\(190\\.7 MiB\\); replacing it$`,
      ),
      30_000,
      mark,
    )) as Timed;
    assert.equal(over.level, 'warn');
    assert.ok(Number(/uses ([\d.]+) MiB/.exec(over.msg!)![1]) > 190.7);
    const retiring = (await t.waitForLine(
      new RegExp(`^Retiring worker \\(pid:${hogPid}, generation 1\\): memory$`),
      60_000,
      mark,
    )) as Timed;
    const booted = await t.waitForLine(/^Booting worker with pid: \d+$/, 30_000, mark);
    const replacement = Number(/pid: (\d+)/.exec(booted.msg!)![1]);
    await waitFor(() => !alive(hogPid), `worker ${hogPid} to exit`, 30_000);
    const after = await settle(t.pid, 2, 'after the replacement', 30_000);
    assert.deepEqual(
      after,
      before.map((p) => (p === hogPid ? replacement : p)).sort((a, b) => a - b),
    );
    await answeredBy(url, replacement);
    const results = [await keepAlive.stop(), await fresh.stop()];
    const failures = results.flatMap((r) => r.failures);
    assert.deepEqual(failures, [], `failed requests:\n${failures.join('\n')}\n--- log ---\n${t.stderr}`);
    const answers = results.flatMap((r) => r.answers);
    assert.ok(
      answers.some((a) => a.pid === hogPid && a.at > over.time),
      'the hog worker kept serving after it was found over the limit',
    );
    assert.ok(
      answers.some((a) => a.pid === replacement),
      'the replacement served the load',
    );

    // Spawn before retire: post_worker_init, which runs just before a worker reports
    // ready, ran in the replacement after the master found the hog and before it retired it.
    const readyAt = new Map(
      readIfExists(readyLog)
        .trim()
        .split('\n')
        .map((l) => l.split(' ').map(Number) as [number, number]),
    );
    const replacementReady = readyAt.get(replacement);
    assert.ok(replacementReady !== undefined, `the replacement ran post_worker_init (${readIfExists(readyLog)})`);
    assert.ok(
      over.time <= replacementReady && replacementReady <= retiring.time,
      `found over the limit at ${over.time}, replacement ready at ${replacementReady}, old worker retired at ${retiring.time}`,
    );
    assert.equal(linesSince(t, mark, /^Worker \(pid:\d+\) uses /).length, 1, 'replaced once');
    assert.deepEqual(bootedPids(t, mark), [replacement], 'one replacement');

    const control = /^Control socket: (.*)$/.exec(t.grep(/^Control socket: /)[0]!.msg!)![1]!;
    const status = JSON.parse((await runTsgun(['status', '--json', '--control-socket', control])).stdout) as {
      restarts: Record<string, number>;
    };
    assert.deepEqual(status.restarts, { memory: 1 }, 'counted as a memory restart');
    assert.equal((await t.stop()).code, 0);
  });

  // ---- boot_timeout ------------------------------------------------------------------

  // Where the boot was stuck: a boot waiting on a timer has no stack, and the master is told
  // so within a pulse of the watchdog thread (250 ms). A busy loop has one: the thread, asked
  // while the loop has been silent for less than its blocked threshold (1 s), waits for the
  // silence to end or become a block. Both apps get 4 s, so that even a loaded machine has
  // reached the timer or the loop by then (rather than still loading the module: at 2 s, a
  // suite run 6 files at a time once saw a stack in tsx's compiler).
  for (const [what, module, seconds, where] of [
    ['awaits a 10 s timer', 'slow-boot-timer', 4, /; no stack available$/],
    ['busy-waits 10 s', 'slow-boot-busy', 4, /; blocked at:\n {4}at .*\/slow-boot-busy\.ts:\d+:\d+\)/],
  ] as const) {
    test(`an app that ${what} at import stops a first start after --boot-timeout ${seconds} with exit 3, leaving nothing running; the log says where it was stuck`, async () => {
      const message = new RegExp(
        `^Error: a worker did not boot within boot_timeout \\(${seconds} s\\); if the app is just slow to start, raise --boot-timeout$`,
      );
      const { lines, stderr } = await failsAtStart(
        ['-w', '2', '--boot-timeout', String(seconds), `${module}:app`],
        3,
        message,
        DIR,
      );
      const started = lines.find((l) => /^Starting tsgun/.test(l.msg ?? ''))!;
      const timedOut = lines.filter((l) =>
        new RegExp(`^Worker \\(pid:\\d+\\) did not boot within boot_timeout \\(${seconds} s\\)`).test(l.msg ?? ''),
      );
      assert.ok(timedOut.length >= 1 && timedOut.length <= 2, `one boot timeout per worker slot at most:\n${stderr}`);
      assert.ok(
        timedOut[0]!.time - started.time >= seconds * 1000,
        `no worker was killed before boot_timeout (${timedOut[0]!.time - started.time} ms after the start)`,
      );
      assert.equal(timedOut[0]!.level, 'error');
      assert.match(timedOut[0]!.msg!, where);
      const shutdown = lines.find((l) => l.msg === 'Shutting down: Master');
      assert.ok(shutdown, 'the master shut down');
      // Far from the app's 10 s: the master did not wait for the app to finish booting.
      assert.ok(shutdown.time - started.time < 9000, `stopped ${shutdown.time - started.time} ms after the start`);
    });
  }

  test('an idle worker wakes no thread but its main one: the watchdog thread waits on its pipe', async (ctx) => {
    const t = new Tsgun(['-w', '1', '-b', '127.0.0.1:0', APP], { cwd: DIR });
    ctx.after(() => t.kill());
    const url = await t.ready();
    const [pid] = await settle(t.pid, 1, 'start');
    await hit(url);
    await sleep(500);
    /** Context switches of each thread but the main one: a thread that sleeps on a timer wakes on each. */
    const switches = (): Map<string, number> =>
      new Map(
        readdirSync(`/proc/${pid}/task`)
          .filter((tid) => tid !== String(pid))
          .map((tid) => {
            const status = readIfExists(`/proc/${pid}/task/${tid}/status`);
            const n = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? 0);
            return [tid, n('voluntary_ctxt_switches') + n('nonvoluntary_ctxt_switches')];
          }),
      );
    const before = switches();
    await sleep(4000);
    const woke = [...switches()]
      .filter(([tid, n]) => n - (before.get(tid) ?? 0) > 0)
      .map(([tid, n]) => `${tid}: ${n - (before.get(tid) ?? 0)}`);
    // A thread polling 4 times a second (as the watchdog thread did) wakes 16 times in 4 s, one
    // polling every second 4 times. V8's GC helper threads may each wake once for an idle-time
    // task (CI saw two of them, once each): a wake or three is not a poll.
    assert.ok(!woke.some((w) => Number(w.split(': ')[1]) > 3), `threads that woke in 4 s idle: ${woke.join(', ')}`);
  });

  // ---- the master dies ---------------------------------------------------------------

  test('idle workers of a SIGKILLed master are gone within 1.5 s; the control commands then say no master runs', async (ctx) => {
    const dir = scratchDir();
    const pidfile = path.join(dir, 'tsgun.pid');
    const control = path.join(dir, 'control.sock');
    const t = new Tsgun(['-w', '3', '-b', '127.0.0.1:0', '-p', pidfile, '--control-socket', control, APP], {
      cwd: DIR,
    });
    ctx.after(() => t.kill());
    const url = await t.ready(3);
    const workers = await settle(t.pid, 3, 'start');
    for (let i = 0; i < 3; i++) assert.ok(workers.includes(await hit(url)));
    await sleep(300);

    const killedAt = Date.now();
    process.kill(t.pid, 'SIGKILL');
    let goneAt = 0;
    await waitFor(() => workers.every((p) => !alive(p)) && (goneAt = Date.now()), 'the workers to exit', 15_000);
    assert.ok(goneAt - killedAt <= 1500, `workers gone ${goneAt - killedAt} ms after the master was killed`);
    assert.equal((await t.exited).signal, 'SIGKILL');

    // The pidfile and the socket file outlive a SIGKILL; the commands see through them.
    assert.ok(existsSync(pidfile) && existsSync(control));
    const stalePid = await runTsgun(['status', '-p', pidfile]);
    assert.equal(stalePid.code, 1, stalePid.stderr);
    assert.match(
      stalePid.stderr,
      new RegExp(`^Error: no tsgun master is running: pidfile ${pidfile} names pid ${t.pid}, which is not running\\n$`),
    );
    const staleSocket = await runTsgun(['status', '--control-socket', control]);
    assert.equal(staleSocket.code, 1, staleSocket.stderr);
    assert.match(
      staleSocket.stderr,
      /^Error: cannot reach the master at .*control\.sock: nobody is accepting on it \(stale socket; the master is gone\)\n$/,
    );
  });
  // ---- timeout in a large app --------------------------------------------------------

  test('a stuck worker of an app with 100,000 scripts loaded is killed and replaced, with its stack when the watchdog gets it in time', async (ctx) => {
    const dir = scratchDir('tsgun-liveness-');
    const abortFile = path.join(dir, 'abort.json');
    const spinMark = path.join(dir, 'spin');
    const t = new Tsgun(['-c', HOOKS_CONF, '-w', '1', '-t', '2', '-b', '127.0.0.1:0', 'many-scripts:app'], {
      cwd: DIR,
      env: { ABORT_FILE: abortFile, SPIN_MARK: spinMark },
    });
    ctx.after(() => t.kill());
    const url = await t.ready(1);
    const mark = t.lines.length;
    void request(url, { path: '/spin', timeoutMs: 120_000 }).catch(() => {});
    const stuck = Number(
      (await waitFor(() => readIfExists(spinMark).trim(), 'the /spin request to reach the worker', 30_000)).split(
        ' ',
      )[0],
    );
    const timeout = await t.waitForLine(/^WORKER TIMEOUT/, 60_000, mark);
    // Enabling the debugger in an app this size can take longer than the master waits on a
    // loaded machine; then the line says so, and the worker is killed all the same.
    assert.match(
      timeout.msg!,
      new RegExp(
        `^WORKER TIMEOUT \\(pid:${stuck}\\): no heartbeat for [\\d.]+ s \\(timeout 2 s\\); (blocked at:\\n {4}at spinForever \\(|no stack available$)`,
      ),
    );
    if (/blocked at:/.test(timeout.msg!))
      assert.ok(readIfExists(abortFile).includes(`"pid":${stuck}`), 'worker_abort ran');
    await t.waitForLine(new RegExp(`^Worker \\(pid:${stuck}\\) was sent SIGKILL`), 30_000, mark);
    let answered = false;
    for (const deadline = Date.now() + 60_000; !answered && Date.now() < deadline; await sleep(200)) {
      answered = (await request(url, { timeoutMs: 5000 }).catch(() => null))?.status === 200;
    }
    assert.ok(answered, 'a replacement answers');
    assert.equal(alive(stuck), false);
    assert.equal((await t.stop()).code, 0);
  });
});
