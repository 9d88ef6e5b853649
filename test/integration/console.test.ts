/**
 * The console a PM2 or Uvicorn user expects (issue 20, item 4): `--help` and `tsgun help`,
 * `status --watch` and `reload` driven in a pseudo-terminal (util-linux `script`), colour and
 * the Ctrl+C hint on a terminal, the loading/loaded lines, and capture_output.
 *
 * The app is test/fixtures/console/app.ts: it prints a stdout and a stderr line at import,
 * and waits SLOW_IMPORT_MS before exporting `app`.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { BIN, FIXTURES, runTsgun, scratchDir, Tsgun } from '../helpers.js';

const DIR = path.join(FIXTURES, 'console');
const APP = 'app:app';
const ESC = '\x1b';

const quote = (word: string): string => `'${word.replace(/'/g, `'\\''`)}'`;

/** tsgun with its stdin, stdout and stderr on a pseudo-terminal, as someone typing it would have them. */
class Pty {
  readonly proc: ChildProcess;
  output = '';
  readonly exited: Promise<number | null>;

  constructor(args: readonly string[], env: NodeJS.ProcessEnv = {}) {
    // `exec`: script runs the command through $SHELL -c; dash (Debian's /bin/sh, used when SHELL
    // is unset) would stay as tsgun's parent, take the Ctrl+C itself and exit 130.
    const command = `exec ${[process.execPath, BIN, ...args].map(quote).join(' ')}`;
    const base: NodeJS.ProcessEnv = { ...process.env, TSGUN_CMD_ARGS: '', PORT: '', WEB_CONCURRENCY: '' };
    delete base.NO_COLOR;
    delete base.FORCE_COLOR;
    this.proc = spawn('script', ['-qfec', command, '/dev/null'], {
      cwd: DIR,
      env: { ...base, ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.proc.stdout!.setEncoding('utf8').on('data', (chunk: string) => (this.output += chunk));
    this.proc.stderr!.resume();
    this.exited = new Promise((resolve) => this.proc.on('exit', (code) => resolve(code)));
  }

  async until(check: () => boolean, what: string, ms = 30_000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!check()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; the terminal shows:\n${this.output}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Type Ctrl+C: the terminal sends SIGINT to what runs in it. */
  interrupt(): void {
    this.proc.stdin!.write('\x03');
  }

  async exit(ms = 20_000): Promise<number | null> {
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), ms);
    const code = await this.exited;
    clearTimeout(timer);
    return code;
  }
}

function startMaster(args: readonly string[] = [], env: NodeJS.ProcessEnv = {}): { t: Tsgun; socket: string } {
  const socket = path.join(scratchDir(), 'ctl.sock');
  const t = new Tsgun(['-b', '127.0.0.1:0', '--control-socket', socket, ...args, APP], { cwd: DIR, env });
  return { t, socket };
}

function readLog(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

const tables = (screen: string): number => screen.split(/^ROLE +PID +GEN +STATE +UPTIME +REQUESTS +REQ\/S/m).length - 1;

describe('help', () => {
  test('--help: grouped by section, the subcommands listed, every line within 100 columns; `tsgun help` is the same text', async () => {
    const run = await runTsgun(['--help'], { cwd: DIR });
    assert.equal(run.code, 0, run.stderr);
    const long = run.stdout.split('\n').filter((l) => l.length > 100);
    assert.deepEqual(long, [], 'lines over 100 columns');
    for (const heading of [
      'Commands (for a running master):',
      'Config:',
      'Server socket:',
      'Worker processes:',
      'Logging:',
      'HTTP:',
      'TLS:',
    ]) {
      assert.match(run.stdout, new RegExp(`^${heading.replace(/[()]/g, '\\$&')}$`, 'm'));
    }
    for (const command of ['status', 'reload', 'scale', 'stop', 'help'])
      assert.match(run.stdout, new RegExp(`^  ${command}\\b.* {2,}\\S`, 'm'));
    assert.match(run.stdout, /^Logging:\n(?:.*\n)*? {2}--capture-output +Send the app's stdout and stderr/m);
    const viaHelp = await runTsgun(['help'], { cwd: DIR });
    assert.equal(viaHelp.code, 0, viaHelp.stderr);
    assert.equal(viaHelp.stdout, run.stdout);
  });

  test('tsgun help COMMAND and COMMAND --help list the options that find the master; an unknown one is one Error: line, exit 2', async () => {
    for (const command of ['status', 'reload', 'scale', 'stop']) {
      for (const args of [
        ['help', command],
        [command, '--help'],
      ]) {
        const run = await runTsgun(args, { cwd: DIR });
        assert.equal(run.code, 0, run.stderr);
        assert.match(run.stdout, new RegExp(`^Usage: tsgun ${command} \\[options\\]`, 'm'));
        for (const flag of [/^ {2}-p, --pid <file>/m, /^ {2}--control-socket <path>/m, /^ {2}-c, --config <file>/m])
          assert.match(run.stdout, flag, `${args.join(' ')}:\n${run.stdout}`);
      }
    }
    const status = await runTsgun(['help', 'status'], { cwd: DIR });
    assert.match(status.stdout, /^ {2}--json/m);
    assert.match(status.stdout, /^ {2}--watch/m);
    const both = await runTsgun(['status', '--json', '--watch'], { cwd: DIR });
    assert.equal(both.code, 2);
    assert.match(both.stderr, /^Error: status takes --json or --watch, not both\n$/);
    const bad = await runTsgun(['help', 'nonsense'], { cwd: DIR });
    assert.equal(bad.code, 2);
    assert.match(
      bad.stderr,
      /^Error: tsgun help takes one of status, reload, scale, stop, help, not "nonsense"; see tsgun --help\n$/,
    );
  });
});

describe('a terminal', () => {
  test('status --watch redraws the table every second (REQ/S, totals) and exits 0 when the master exits', async (t) => {
    const { t: master, socket } = startMaster(['-w', '2']);
    t.after(() => master.kill());
    await master.ready(2);
    const watch = new Pty(['status', '--watch', '--control-socket', socket]);
    t.after(() => watch.proc.kill('SIGKILL'));
    await watch.until(() => tables(watch.output) >= 2, 'two tables');
    assert.match(watch.output, /^worker +\d+ +1 +ready +\d+s +\d+ +\d+\.\d +\d+ +\d+ +\d+\.\d/m);
    assert.match(watch.output, /^total +2 workers /m);
    assert.ok(watch.output.includes(`${ESC}[H${ESC}[2J`), 'the screen is cleared before each table');
    await master.stop();
    assert.equal(await watch.exit(), 0);
    assert.match(watch.output, new RegExp(`the master \\(pid ${master.pid}\\) has exited; stopped watching`));
  });

  test('status --watch exits 0 on Ctrl+C, leaving the master running', async (t) => {
    const { t: master, socket } = startMaster();
    t.after(() => master.kill());
    await master.ready(1);
    const watch = new Pty(['status', '--watch', '--control-socket', socket]);
    t.after(() => watch.proc.kill('SIGKILL'));
    await watch.until(() => tables(watch.output) >= 1, 'a table');
    watch.interrupt();
    assert.equal(await watch.exit(), 0);
    assert.equal(master.proc.exitCode, null, 'the master still runs');
  });

  test('reload on a terminal reports the new workers as they become ready; in a pipe it prints only the result', async (t) => {
    const { t: master, socket } = startMaster(['-w', '2'], { SLOW_IMPORT_MS: '1500' });
    t.after(() => master.kill());
    await master.ready(2);
    const reload = new Pty(['reload', '--control-socket', socket]);
    t.after(() => reload.proc.kill('SIGKILL'));
    assert.equal(await reload.exit(60_000), 0, reload.output);
    const counts = [...reload.output.matchAll(/^(\d)\/2 new workers ready\r?$/gm)].map((m) => Number(m[1]));
    assert.ok(counts.length >= 2, `progress lines:\n${reload.output}`);
    assert.equal(counts.at(-1), 2);
    assert.deepEqual(counts, [...counts].sort(), 'the count only grows');
    assert.match(reload.output, /^reloaded: generation 2 ready with 2 workers/m);
    const piped = await runTsgun(['reload', '--control-socket', socket], { cwd: DIR, timeoutMs: 60_000 });
    assert.equal(piped.code, 0, piped.stderr);
    assert.equal(piped.stderr, '');
    assert.match(piped.stdout, /^reloaded: generation 3 ready with 2 workers in \d+\.\d\d s\n$/);
  });

  test('the log is coloured on a terminal with "Press Ctrl+C to quit"; NO_COLOR turns colour off; FORCE_COLOR colours a pipe', async (t) => {
    const server = new Pty(['-b', '127.0.0.1:0', APP]);
    t.after(() => server.proc.kill('SIGKILL'));
    await server.until(() => /Booting worker with pid/.test(server.output), 'a booted worker');
    assert.match(server.output, new RegExp(`${ESC}\\[32m\\[INFO\\]${ESC}\\[0m Listening at: `));
    assert.match(server.output, /\[INFO\].* Press Ctrl\+C to quit/);
    server.interrupt();
    assert.equal(await server.exit(), 0);

    const plain = new Pty(['-b', '127.0.0.1:0', APP], { NO_COLOR: '1' });
    t.after(() => plain.proc.kill('SIGKILL'));
    await plain.until(() => /Booting worker with pid/.test(plain.output), 'a booted worker');
    assert.ok(!plain.output.includes(ESC), 'no escape sequences');
    assert.match(plain.output, /^\[[^\]]+\] \[\d+\] \[INFO\] Listening at: /m);
    plain.interrupt();
    assert.equal(await plain.exit(), 0);

    const forced = new Tsgun(['-b', '127.0.0.1:0', '--log-format', 'pretty', APP], {
      cwd: DIR,
      env: { FORCE_COLOR: '1' },
    });
    t.after(() => forced.kill());
    await forced.until(() => forced.stderr.includes('Booting worker'), 'a booted worker');
    assert.ok(forced.stderr.includes(`${ESC}[32m[INFO]${ESC}[0m Listening at: `));
    assert.ok(!forced.stderr.includes('Press Ctrl+C'), 'no hint without a terminal');
    await forced.stop();
  });
});

describe('logs', () => {
  test('a worker logs when it starts loading the app and when it has loaded it, with the time taken', async (t) => {
    const { t: master } = startMaster([], { SLOW_IMPORT_MS: '1200' });
    t.after(() => master.kill());
    await master.ready(1);
    const loading = master.grep(/^Loading app /);
    const loaded = master.grep(/^Loaded app /);
    assert.equal(loading.length, 1);
    assert.equal(loading[0]!.msg, `Loading app ${APP}`);
    assert.equal(loaded.length, 1);
    const m = /^Loaded app app:app \(node, from .*app\.ts; TypeScript compiled by tsx\) in (\d+\.\d\d) s$/.exec(
      loaded[0]!.msg!,
    );
    assert.ok(m, loaded[0]!.msg);
    assert.ok(Number(m[1]) >= 1.2, `took ${m[1]} s for a 1.2 s import`);
    assert.ok(master.lines.indexOf(loading[0]!) < master.lines.indexOf(loaded[0]!));
  });

  test("capture_output: the app's stdout and stderr go to the error log file; without it they do not", async (t) => {
    const dir = scratchDir();
    const captured = path.join(dir, 'captured.log');
    const a = startMaster(['--error-logfile', captured, '--capture-output']);
    t.after(() => a.t.kill());
    const log = (): string => readLog(captured);
    await a.t.until(() => /Booting worker with pid/.test(log()), 'a booted worker in the log file');
    assert.match(log(), /^app stdout line from \d+$/m);
    assert.match(log(), /^app stderr line from \d+$/m);
    assert.equal(a.t.stdout, '');
    await a.t.stop();

    const plain = path.join(dir, 'plain.log');
    const b = startMaster(['--error-logfile', plain]);
    t.after(() => b.t.kill());
    await b.t.until(() => /Booting worker with pid/.test(readLog(plain)), 'a booted worker in the log file');
    assert.doesNotMatch(readLog(plain), /app (stdout|stderr) line/);
    assert.match(b.t.stdout, /^app stdout line from \d+$/m);
    await b.t.stop();
  });
});
