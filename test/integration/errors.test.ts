/**
 * Every mistake a user can make ends the same way: one `Error:` line on stderr, the
 * documented exit status, and nothing left behind (no process, no socket file, no
 * pidfile). Failures at first start end once, not in a fork loop.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { existsSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { test } from 'node:test';
import { childPidsSync, processesWithEnv, runTsgun, scratchDir } from '../helpers.js';

interface Expectation {
  status: number;
  /** The `Error:` line must match this. */
  message: RegExp;
  /** Bind a unix socket (and write a pidfile) too, to check both are cleaned up. */
  withFiles?: boolean;
  /** Longest acceptable run. */
  withinMs?: number;
  env?: NodeJS.ProcessEnv;
}

interface Outcome {
  stderr: string;
  stdout: string;
  errorLine: string;
  lines: Array<{ msg?: string; role?: string; time?: number; raw: string }>;
  ms: number;
}

/** Run tsgun with `args`, expecting it to fail as described, and check it left nothing behind. */
async function fails(args: readonly string[], want: Expectation): Promise<Outcome> {
  const dir = scratchDir();
  const sock = path.join(dir, 'tsgun.sock');
  const pidfile = path.join(dir, 'tsgun.pid');
  const mark = `TSGUN_TEST_MARK=${randomUUID()}`;
  const extra = want.withFiles ? ['-b', `unix:${sock}`, '-p', pidfile] : [];
  const started = Date.now();
  const run = await runTsgun([...extra, ...args], {
    env: { TSGUN_TEST_MARK: mark.split('=')[1], ...want.env },
    timeoutMs: 30_000,
  });
  const ms = Date.now() - started;
  const all = run.stderr.split('\n').filter(Boolean);
  const errorLines = all.filter((l) => l.startsWith('Error:'));
  assert.equal(errorLines.length, 1, `exactly one Error: line; stderr was:\n${run.stderr}`);
  const errorLine = errorLines[0]!;
  assert.match(errorLine, want.message);
  assert.equal(run.code, want.status, `exit status; stderr was:\n${run.stderr}`);
  assert.doesNotMatch(run.stderr, /^\s+at /m, 'no raw stack trace for a user error');
  assert.ok(!errorLine.includes('failed unexpectedly'), 'a user error is not reported as an internal failure');
  assert.deepEqual(childPidsSync(run.pid), [], 'no child of the master is left');
  assert.deepEqual(processesWithEnv(mark), [], 'no process started by this tsgun is left');
  assert.ok(!existsSync(sock), `socket file ${sock} removed`);
  assert.ok(!existsSync(pidfile), `pidfile ${pidfile} removed`);
  for (const m of run.stderr.matchAll(/"msg":"Control socket: ([^"]+)"/g))
    assert.ok(!existsSync(m[1]!), `control socket ${m[1]} removed`);
  if (want.withinMs !== undefined) assert.ok(ms < want.withinMs, `took ${ms} ms, expected under ${want.withinMs} ms`);
  const lines = all.map((raw) => {
    try {
      return { ...(JSON.parse(raw) as { msg?: string; role?: string; time?: number }), raw };
    } catch {
      return { raw };
    }
  });
  return { stderr: run.stderr, stdout: run.stdout, errorLine, lines, ms };
}

const count = (o: Outcome, re: RegExp): number => o.lines.filter((l) => re.test(l.msg ?? '')).length;

/**
 * A first-start failure with three workers ends once: one master start, no worker ready,
 * at most one exit per worker slot, and the master gone soon after the first worker
 * failed (a fork loop with backoff would take far longer). Timed from the log lines'
 * own timestamps, so a slow, busy machine that boots workers slowly does not matter.
 */
function assertNoForkLoop(o: Outcome): void {
  assert.equal(count(o, /^Starting tsgun/), 1, 'the master started once');
  assert.equal(count(o, /^Booting worker/), 0, 'no worker became ready');
  const exits = o.lines.filter((l) => /^Worker \(pid:\d+\) /.test(l.msg ?? ''));
  assert.ok(
    exits.length >= 1 && exits.length <= 3,
    `one exit per worker slot at most, saw ${exits.length}:\n${o.stderr}`,
  );
  const shutdown = o.lines.filter((l) => l.msg === 'Shutting down: Master');
  assert.equal(shutdown.length, 1);
  const afterFirstFailure = shutdown[0]!.time! - exits[0]!.time!;
  assert.ok(
    afterFirstFailure < 3000,
    `the master stopped ${afterFirstFailure} ms after the first worker failed:\n${o.stderr}`,
  );
}

const BROKEN = 'broken';
/** Generous: three workers compile TypeScript at once, and CI machines are busy. */
const FIRST_START_MS = 20_000;
const conf = (name: string): string => path.join(BROKEN, name);

// ---- config and command line: status 2, before anything is bound ------------------------

test('a missing config file', async () => {
  await fails(['-c', conf('nope.yaml'), 'express-app:app'], {
    status: 2,
    withFiles: true,
    message: /^Error: config file .*nope\.yaml does not exist/,
  });
});

test('a YAML config with a syntax error', async () => {
  const o = await fails(['-c', conf('bad-syntax.yaml'), 'express-app:app'], {
    status: 2,
    withFiles: true,
    message: /^Error: cannot load config file .*bad-syntax\.yaml: .*line 2/,
  });
  assert.equal(count(o, /^Starting tsgun/), 0, 'nothing started');
});

test('a .ts config that throws', async () => {
  await fails(['-c', conf('throws.conf.ts'), 'express-app:app'], {
    status: 2,
    withFiles: true,
    message: /^Error: cannot load config file .*throws\.conf\.ts: .*config exploded on purpose/,
  });
});

test('an unknown config key names the nearest setting', async () => {
  await fails(['-c', conf('typo.yaml'), 'express-app:app'], {
    status: 2,
    withFiles: true,
    message: /^Error: config file .*typo\.yaml: unknown setting "wokers"; did you mean "workers"\?/,
  });
});

test('a config value of the wrong type', async () => {
  await fails(['-c', conf('wrong-type.yaml'), 'express-app:app'], {
    status: 2,
    withFiles: true,
    message: /^Error: config file .*wrong-type\.yaml: setting "workers" expected an integer .*got "four"/,
  });
});

test('a wrong type on the command line and in the environment', async () => {
  await fails(['-w', 'four', 'express-app:app'], {
    status: 2,
    withFiles: true,
    message: /^Error: .*-w, --workers.*'four'.*expected an integer/,
  });
  await fails(['express-app:app'], {
    status: 2,
    withFiles: true,
    env: { WEB_CONCURRENCY: 'lots' },
    message: /^Error: environment variable WEB_CONCURRENCY="lots" \(sets workers\): expected an integer/,
  });
});

test('an unknown command-line flag', async () => {
  await fails(['--wrokers', '2', 'express-app:app'], {
    status: 2,
    withFiles: true,
    message: /^Error: .*unknown option '--wrokers'.*--workers/,
  });
});

test('bad bind addresses', async () => {
  await fails(['-b', '127.0.0.1:99999', 'express-app:app'], {
    status: 2,
    withFiles: true,
    message: /^Error: .*cannot parse bind address "127\.0\.0\.1:99999": port 99999 is above 65535/,
  });
  await fails(['-b', '[::1', 'express-app:app'], {
    status: 2,
    withFiles: true,
    message: /^Error: .*cannot parse bind address "\[::1": missing "\]"/,
  });
});

test('a missing APP argument', async () => {
  await fails(['-b', '127.0.0.1:0'], {
    status: 2,
    withFiles: true,
    message: /^Error: no APP given; run tsgun \[options\] MODULE\[:ATTR\]/,
  });
});

test('a malformed APP argument', async () => {
  await fails([':app'], { status: 2, withFiles: true, message: /^Error: app ":app" has no module/ });
  await fails(['express-app:app(1)'], {
    status: 2,
    withFiles: true,
    message: /^Error: app "express-app:app\(1\)": factories are called without arguments/,
  });
  await fails(['express-app:9lives'], {
    status: 2,
    withFiles: true,
    message: /^Error: app "express-app:9lives": "9lives" is not an export name/,
  });
});

test('a second APP argument is a usage error', async () => {
  await fails(['express-app:app', 'other:app'], {
    status: 2,
    withFiles: true,
    message: /^Error: command line: too many arguments/,
  });
});

// ---- runtime: status 1 ------------------------------------------------------------------

test('a port in use: tsgun retries, then fails with status 1', async (ctx) => {
  const blocker = net.createServer();
  ctx.after(() => blocker.close());
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
  const { port } = blocker.address() as net.AddressInfo;
  const o = await fails(['-w', '3', '-b', `127.0.0.1:${port}`, 'express-app:app'], {
    status: 1,
    withFiles: true,
    withinMs: 15_000,
    message: new RegExp(`^Error: cannot bind 127\\.0\\.0\\.1:${port}: EADDRINUSE`),
  });
  assert.ok(count(o, /^Connection in use: /) >= 2, `it retried:\n${o.stderr}`);
  assert.equal(count(o, /^Booting worker/), 0);
  assert.equal(count(o, /^Worker \(pid/), 0, 'no worker was started');
});

// ---- the app fails to load at first start: status 4, once --------------------------------

test('a missing app module', async () => {
  await fails(['-w', '3', `${BROKEN}/no-such-module:app`], {
    status: 4,
    withFiles: true,
    withinMs: FIRST_START_MS,
    message: /^Error: cannot find app module "broken\/no-such-module" in .*fixtures/,
  });
});

test("a missing attribute lists the module's exports", async () => {
  const o = await fails(['-w', '3', `${BROKEN}/number-app:server`], {
    status: 4,
    withFiles: true,
    withinMs: FIRST_START_MS,
    message: /^Error: module .*number-app\.ts has no "server" \(its exports are: app, other\)/,
  });
  assertNoForkLoop(o);
});

test('an app that throws at import', async () => {
  const o = await fails(['-w', '3', `${BROKEN}/import-throws:app`], {
    status: 4,
    withFiles: true,
    withinMs: FIRST_START_MS,
    message: /^Error: .*import-throws\.ts failed to load: .*app import exploded on purpose/,
  });
  assertNoForkLoop(o);
});

test('an app with a syntax error', async () => {
  const o = await fails(['-w', '3', `${BROKEN}/syntax-error:app`], {
    status: 4,
    withFiles: true,
    withinMs: FIRST_START_MS,
    message: /^Error: .*syntax-error\.ts failed to load: .*syntax-error\.ts:3/,
  });
  assertNoForkLoop(o);
});

test('an app of no known shape', async () => {
  const o = await fails(['-w', '3', `${BROKEN}/number-app:app`], {
    status: 4,
    withFiles: true,
    withinMs: FIRST_START_MS,
    message: /^Error: app "broken\/number-app:app" is number, not an app; export /,
  });
  assertNoForkLoop(o);
});

test('a factory that throws', async () => {
  const o = await fails(['-w', '3', `${BROKEN}/factory-throws:createApp()`], {
    status: 4,
    withFiles: true,
    withinMs: FIRST_START_MS,
    message: /^Error: app factory "broken\/factory-throws:createApp\(\)" threw: .*factory exploded on purpose/,
  });
  assertNoForkLoop(o);
});

// ---- a worker fails to boot at first start: status 3, once -------------------------------

test('a worker class that does not implement the interface', async () => {
  const o = await fails(['-w', '3', '-k', `${BROKEN}/not-a-worker:NotAWorker`, 'express-app:app'], {
    status: 3,
    withFiles: true,
    withinMs: FIRST_START_MS,
    message: /^Error: worker class broken\/not-a-worker:NotAWorker: .*start\(\) and stop\(\)/,
  });
  assertNoForkLoop(o);
});

test('a worker class module that throws at import', async () => {
  const o = await fails(['-w', '3', '-k', `${BROKEN}/worker-throws:Worker`, 'express-app:app'], {
    status: 3,
    withFiles: true,
    withinMs: FIRST_START_MS,
    message: /^Error: worker class broken\/worker-throws:Worker: .*worker module exploded on purpose/,
  });
  assertNoForkLoop(o);
});

test('a worker class module that does not exist', async () => {
  const o = await fails(['-w', '3', '-k', `${BROKEN}/no-such-worker:Worker`, 'express-app:app'], {
    status: 3,
    withFiles: true,
    withinMs: FIRST_START_MS,
    message: /^Error: worker class broken\/no-such-worker:Worker: .*"broken\/no-such-worker"/,
  });
  assertNoForkLoop(o);
});

// ---- --check-config ------------------------------------------------------------------------

test('--check-config with a good app prints OK and exits 0', async () => {
  const dir = scratchDir();
  const file = path.join(dir, 'good.yaml');
  writeFileSync(file, 'workers: 2\n');
  const mark = randomUUID();
  const run = await runTsgun(['--check-config', '-c', file, 'express-app:app'], { env: { TSGUN_TEST_MARK: mark } });
  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stdout, /^OK: config .*good\.yaml; app express-app:app is a node app from .*express-app\.ts\n$/);
  assert.doesNotMatch(run.stderr, /^Error:/m);
  assert.doesNotMatch(run.stderr, /Listening at:/, 'nothing is bound');
  assert.deepEqual(processesWithEnv(`TSGUN_TEST_MARK=${mark}`), []);
});

test('--check-config with a bad app or a bad config exits 1', async () => {
  const o = await fails(['--check-config', `${BROKEN}/number-app:app`], {
    status: 1,
    withFiles: true,
    message: /^Error: app "broken\/number-app:app" is number, not an app/,
  });
  assert.equal(o.stdout, '');
  await fails(['--check-config', `${BROKEN}/import-throws:app`], {
    status: 1,
    message: /app import exploded on purpose/,
  });
  await fails(['--check-config', '-c', conf('typo.yaml'), 'express-app:app'], {
    status: 1,
    message: /unknown setting "wokers"; did you mean "workers"\?/,
  });
});
