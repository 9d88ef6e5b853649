/**
 * run(): tsgun served from a program (test/fixtures/runapi/driver.mjs imports `tsgun` as a
 * user's script does). The master runs in that program's process, so its pid is the
 * master's, its children are the workers, and the contract's signals reach it.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import {
  alive,
  exitedWithOutput,
  FIXTURES,
  hit,
  processesWithEnv,
  scratchDir,
  settle,
  waitFor,
  workerPidsByTitle,
} from '../helpers.js';

const DIR = path.join(FIXTURES, 'runapi');
const DRIVER = path.join(DIR, 'driver.mjs');

interface Said {
  ready?: string[];
  done?: string;
  value?: unknown;
  closed?: number;
  error?: { code: string; exitCode: number; message: string; typed: boolean };
}

/** The driver program, started with run()'s options; reads its JSON lines. */
class Program {
  readonly proc: ChildProcess;
  readonly said: Said[] = [];
  stderr = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** In the environment of the program and of every worker it starts, even after they are reparented. */
  readonly marker = `TSGUN_TEST_MARK=runapi-${process.pid}-${Math.random().toString(36).slice(2)}`;

  /** `options` as an object (sent as JSON), or as JavaScript source for options that hold functions. */
  constructor(t: TestContext, options: Record<string, unknown> | string) {
    // Run from elsewhere than the app's directory: `chdir` finds the app without moving the program.
    const args = typeof options === 'string' ? [options, '--js'] : [JSON.stringify(options)];
    this.proc = spawn(process.execPath, [DRIVER, ...args], {
      cwd: scratchDir(),
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { ...process.env, [this.marker.split('=')[0]!]: this.marker.split('=')[1] },
    });
    let partial = '';
    this.proc.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      const parts = (partial + chunk).split('\n');
      partial = parts.pop()!;
      for (const line of parts) this.said.push(JSON.parse(line) as Said);
    });
    this.proc.stderr!.setEncoding('utf8').on('data', (chunk: string) => (this.stderr += chunk));
    this.exited = exitedWithOutput(this.proc);
    t.after(() => {
      for (const pid of processesWithEnv(this.marker)) process.kill(pid, 'SIGKILL');
    });
  }

  get pid(): number {
    return this.proc.pid!;
  }

  async next<K extends keyof Said>(key: K, what = String(key)): Promise<Said> {
    const found = (): Said | undefined =>
      this.said.find((s) => s[key] !== undefined && (key !== 'done' || s.done === what));
    return waitFor(found, `the program's ${what}`, 30_000).catch((err: Error) => {
      throw new Error(`${err.message}\n--- said ---\n${JSON.stringify(this.said)}\n--- stderr ---\n${this.stderr}`);
    });
  }

  async command(line: string): Promise<Said> {
    this.proc.stdin!.write(`${line}\n`);
    const said = await this.next('done', line.split(' ')[0]);
    this.said.splice(this.said.indexOf(said), 1);
    return said;
  }
}

test('run() from a program: serve, scale(3), reload(), stop(); the program then ends by itself', async (t) => {
  const program = new Program(t, { app: 'app:app', chdir: DIR, bind: ['127.0.0.1:0'], workers: 2 });
  const { ready } = await program.next('ready');
  assert.equal(ready!.length, 1);
  assert.match(ready![0]!, /^http:\/\/127\.0\.0\.1:\d+$/);
  const url = ready![0]!;
  assert.match(program.stderr, new RegExp(`Listening at: ${url} \\(${program.pid}\\)`));
  const first = await settle(program.pid, 2, '2 workers');
  assert.ok(first.includes(await hit(url)), 'a worker of the program served the request');

  assert.deepEqual(await program.command('scale 3'), { done: 'scale', value: null });
  const three = workerPidsByTitle(program.pid);
  assert.equal(three.length, 3);

  assert.deepEqual(await program.command('reload'), { done: 'reload', value: null });
  const reloaded = await settle(program.pid, 3, '3 new workers');
  assert.ok(
    reloaded.every((pid) => !three.includes(pid)),
    'reload() replaced every worker',
  );
  assert.ok(reloaded.includes(await hit(url)));

  assert.deepEqual(await program.command('stop'), { done: 'stop', value: 0 });
  assert.deepEqual(await program.exited, { code: 0, signal: null });
  assert.deepEqual(program.said, [{ ready: [url] }, { closed: 0 }]);
  assert.ok(
    [...first, ...reloaded].every((pid) => !alive(pid)),
    'no worker is left',
  );
  assert.deepEqual(processesWithEnv(program.marker), []);
  await assert.rejects(hit(url), /ECONNREFUSED/);
});

test("run() takes the contract's signals: HUP reloads, TERM stops gracefully with status 0", async (t) => {
  const program = new Program(t, { app: 'app:app', chdir: DIR, bind: ['127.0.0.1:0'], workers: 1 });
  const url = (await program.next('ready')).ready![0]!;
  const [before] = await settle(program.pid, 1, 'one worker');
  program.proc.kill('SIGHUP');
  await waitFor(
    () => {
      const now = workerPidsByTitle(program.pid);
      return now.length === 1 && now[0] !== before && program.stderr.includes('Reload complete');
    },
    'the reload to complete',
    30_000,
  );
  assert.notEqual(await hit(url), before);
  program.proc.kill('SIGTERM');
  assert.deepEqual(await program.exited, { code: 0, signal: null });
  assert.deepEqual(program.said.at(-1), { closed: 0 });
  assert.deepEqual(processesWithEnv(program.marker), []);
});

/** run() with these options throws a TsgunError with this code and message, and the program ends with `exitCode`, leaving no worker. */
async function expectRejected(
  t: TestContext,
  options: ConstructorParameters<typeof Program>[1],
  code: string,
  exitCode: number,
  message: RegExp,
): Promise<void> {
  const program = new Program(t, options);
  const { error } = await program.next('error');
  assert.equal(error!.typed, true, 'a TsgunError');
  assert.equal(error!.code, code, error!.message);
  assert.equal(error!.exitCode, exitCode);
  assert.match(error!.message, message);
  assert.deepEqual(await program.exited, { code: exitCode, signal: null }, 'the program ended by itself');
  assert.deepEqual(processesWithEnv(program.marker), [], 'no worker is left');
}

test('run() throws TsgunErrors with their codes and exit statuses; nothing is left running', async (t) => {
  const cases: Array<[Record<string, unknown>, string, number, RegExp]> = [
    [
      { app: 'app:app', chdir: DIR, workerz: 2 },
      'TSGUN_ERR_CONFIG_KEY',
      2,
      /unknown setting "workerz"; did you mean "workers"\?/,
    ],
    [
      { app: 'app:app', chdir: DIR, workers: 'two' },
      'TSGUN_ERR_CONFIG_VALUE',
      2,
      /setting "workers" expected an integer/,
    ],
    [{ workers: 2 }, 'TSGUN_ERR_USAGE', 2, /run\(\) needs app/],
    [
      { app: 'app:app', check_config: true },
      'TSGUN_ERR_CONFIG_KEY',
      2,
      /check_config can only be given on the command line/,
    ],
    [{ app: 'app:nope', chdir: DIR, bind: ['127.0.0.1:0'] }, 'TSGUN_ERR_APP_LOAD', 4, /nope/],
    [
      { app: 'throws:app', chdir: DIR, bind: ['127.0.0.1:0'], workers: 2 },
      'TSGUN_ERR_APP_LOAD',
      4,
      /this app throws at import/,
    ],
  ];
  for (const [options, code, exitCode, message] of cases) await expectRejected(t, options, code, exitCode, message);
});

test('run() rejects a worker hook given as a function (workers cannot receive it) and a bind it cannot make', async (t) => {
  const busy = createServer();
  await new Promise<void>((r) => busy.listen(0, '127.0.0.1', r));
  t.after(() => busy.close());
  const port = (busy.address() as AddressInfo).port;
  const cases: Array<[string, string, number, RegExp]> = [
    [
      `{ app: 'app:app', chdir: ${JSON.stringify(DIR)}, post_fork: () => {} }`,
      'TSGUN_ERR_CONFIG_VALUE',
      2,
      /hook "post_fork" runs in the workers.*config file/,
    ],
    [
      `{ app: 'app:app', chdir: ${JSON.stringify(DIR)}, bind: ['127.0.0.1:${port}'] }`,
      'TSGUN_ERR_BIND',
      1,
      new RegExp(`127\\.0\\.0\\.1:${port}`),
    ],
  ];
  for (const [options, code, exitCode, message] of cases) await expectRejected(t, options, code, exitCode, message);
});
