/**
 * USR2 (src/master/reexec.ts) driven through fake ProcessOps: spawns are recorded, the new
 * master's exit is an event the test emits, and the pidfile is a real file in a temporary
 * directory. The real upgrade, with real masters and sockets, is in
 * test/integration/zero-downtime.test.ts and systemd.test.ts.
 */
import assert from 'node:assert/strict';
import type { ChildProcess, SpawnOptions } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import type { Logger } from '../../src/log.js';
import { Pidfile } from '../../src/master/pidfile.js';
import type { ProcessOps } from '../../src/master/process-ops.js';
import { PARENT_ENV, parentPid, Reexec, successorSpawn, type Self } from '../../src/master/reexec.js';
import { INHERITED_ENV, type BoundSocket } from '../../src/master/sockets.js';

const SELF: Self = {
  execPath: '/usr/bin/node',
  execArgv: ['--enable-source-maps'],
  script: '/opt/tsgun/bin/tsgun',
  env: { PATH: '/usr/bin', KEEP: 'yes' },
  pid: 777,
};

/** A ChildProcess as far as reexec uses one. */
class FakeChild extends EventEmitter {
  unrefed = false;
  constructor(readonly pid: number | undefined) {
    super();
  }
  unref(): void {
    this.unrefed = true;
  }
}

class FakeOps implements ProcessOps {
  readonly spawned: Array<{ file: string; args: readonly string[]; options: SpawnOptions; child: FakeChild }> = [];
  readonly running = new Set<number>();
  nextPid: number | undefined = 900;

  spawn(file: string, args: readonly string[], options: SpawnOptions): ChildProcess {
    const child = new FakeChild(this.nextPid);
    if (child.pid !== undefined) this.running.add(child.pid);
    this.spawned.push({ file, args, options, child });
    return child as unknown as ChildProcess;
  }
  kill(pid: number): void {
    this.running.delete(pid);
  }
  alive(pid: number): boolean {
    return this.running.has(pid);
  }
  /** The new master exits: gone from the process table, then its parent hears of it. */
  exit(child: FakeChild, code: number | null, signal: NodeJS.Signals | null = null): void {
    this.running.delete(child.pid!);
    child.emit('exit', code, signal);
  }
}

function fakeLog(): { log: Logger; lines: Array<[string, string]> } {
  const lines: Array<[string, string]> = [];
  const at = (level: string) => (msg: string) => lines.push([level, msg]);
  return { log: { info: at('info'), warn: at('warn'), error: at('error') } as unknown as Logger, lines };
}

function socket(fd: number, raw: string, systemd?: string): BoundSocket {
  return {
    fd,
    label: `http://${raw}`,
    spec: { kind: 'tcp', host: '127.0.0.1', port: 8000, raw },
    unixFile: null,
    ...(systemd ? { systemd } : {}),
  } as unknown as BoundSocket;
}

function setup(t: TestContext, over: { argv?: readonly string[] | null; parent?: number | null } = {}) {
  const dir = mkdtempSync(path.join(tmpdir(), 'tsgun-reexec-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'tsgun.pid');
  const pidfile = new Pidfile(file, SELF.pid);
  pidfile.create();
  const ops = new FakeOps();
  const { log, lines } = fakeLog();
  const argv = over.argv === undefined ? ['-w', '2', 'main:app'] : over.argv;
  const reexec = new Reexec({
    ops,
    log: () => log,
    argv,
    cwd: '/srv/app',
    parent: over.parent ?? null,
    self: () => SELF,
  });
  const sockets = [socket(11, '127.0.0.1:8000'), socket(12, 'unix:/run/app.sock')];
  const usr2 = (): void => reexec.start({ sockets, notifySocket: null, watchdogUsec: null }, pidfile);
  return { file, oldbin: `${file}.oldbin`, pidfile, ops, lines, reexec, usr2 };
}

const read = (file: string): string | null => (existsSync(file) ? readFileSync(file, 'utf8') : null);

test('USR2 moves the pidfile to PIDFILE.oldbin and starts the new master from the same command line, the sockets at fds 3 and up', (t) => {
  const s = setup(t);
  assert.equal(s.reexec.refusal(), null);
  s.usr2();
  assert.equal(read(s.file), null, 'the configured path is free for the new master');
  assert.equal(read(s.oldbin), '777\n', 'PIDFILE.oldbin names this master');
  assert.equal(s.pidfile.path, s.oldbin);
  assert.equal(s.ops.spawned.length, 1);
  const { file, args, options, child } = s.ops.spawned[0]!;
  assert.equal(file, '/usr/bin/node');
  assert.deepEqual(args, ['--enable-source-maps', '/opt/tsgun/bin/tsgun', '-w', '2', 'main:app']);
  assert.equal(options.cwd, '/srv/app');
  assert.equal(options.detached, true);
  assert.deepEqual(options.stdio, ['inherit', 'inherit', 'inherit', 11, 12]);
  const env = options.env!;
  assert.equal(env[PARENT_ENV], '777');
  assert.equal(env.KEEP, 'yes');
  assert.deepEqual(JSON.parse(env[INHERITED_ENV]!), [
    { fd: 3, raw: '127.0.0.1:8000', label: 'http://127.0.0.1:8000' },
    { fd: 4, raw: 'unix:/run/app.sock', label: 'http://unix:/run/app.sock' },
  ]);
  assert.equal(child.unrefed, true, 'this master can exit while the new one runs');
  assert.equal(parentPid(env), 777, 'the new master knows its parent');
});

test("while the new master runs, USR2 is refused and the service is the new master's; its exit puts the pidfile back", (t) => {
  const s = setup(t);
  s.usr2();
  const child = s.ops.spawned[0]!.child;
  assert.match(s.reexec.refusal()!, /^USR2 ignored: an upgrade is already in progress \(new master pid 900\)/);
  assert.equal(s.reexec.successorRunning(), true);
  assert.equal(s.reexec.sharesSockets(), true, 'unix socket files are left to the last master');

  s.ops.exit(child, 1);
  assert.equal(read(s.file), '777\n', 'the pidfile is back where it was configured');
  assert.equal(read(s.oldbin), null);
  assert.equal(s.pidfile.path, s.file);
  assert.equal(s.reexec.successorRunning(), false);
  assert.equal(s.reexec.sharesSockets(), false);
  assert.deepEqual(s.lines.at(-1), [
    'error',
    'The new master (pid 900) exited with code 1; this master goes on serving',
  ]);
  assert.equal(s.reexec.refusal(), null, 'a later USR2 may try again');
  s.ops.nextPid = 901;
  s.usr2();
  assert.equal(read(s.oldbin), '777\n');
  assert.equal(s.ops.spawned.length, 2);
});

test('a new master that has already written its own pidfile and exits without removing it: ours replaces it', (t) => {
  const s = setup(t);
  s.usr2();
  writeFileSync(s.file, '900\n');
  s.ops.exit(s.ops.spawned[0]!.child, null, 'SIGKILL');
  assert.equal(read(s.file), '777\n');
  assert.match(s.lines.at(-1)![1], /exited on SIGKILL/);
});

test('a new master that cannot be spawned (no pid, an error event) ends the upgrade and puts the pidfile back', (t) => {
  const s = setup(t);
  s.ops.nextPid = undefined;
  s.usr2();
  s.ops.spawned[0]!.child.emit('error', Object.assign(new Error('spawn EAGAIN'), { code: 'EAGAIN' }));
  assert.equal(read(s.file), '777\n');
  assert.equal(s.reexec.refusal(), null);
  assert.match(s.lines.at(-1)![1], /could not be started \(spawn EAGAIN\)/);
});

test('a pidfile removed by hand is logged, and the upgrade goes on without one', (t) => {
  const s = setup(t);
  unlinkSync(s.file);
  s.usr2();
  assert.equal(s.ops.spawned.length, 1);
  assert.ok(
    s.lines.some(([level, msg]) => level === 'error' && msg.startsWith('Error: cannot rename pidfile for the upgrade')),
  );
  s.ops.exit(s.ops.spawned[0]!.child, 0);
  assert.equal(read(s.file), null, 'nothing is created where there was nothing');
  assert.equal(read(s.oldbin), null);
});

test('a pidfile replaced by a link is not moved', (t) => {
  const s = setup(t);
  const elsewhere = path.join(path.dirname(s.file), 'elsewhere');
  writeFileSync(elsewhere, 'precious\n');
  unlinkSync(s.file);
  symlinkSync(elsewhere, s.file);
  assert.throws(() => s.pidfile.rename(s.oldbin), { code: 'TSGUN_ERR_PIDFILE' });
  assert.equal(read(s.oldbin), null);
  assert.equal(read(s.file), 'precious\n', 'the link is left as it was');
  assert.equal(s.pidfile.path, s.file);
});

test('a master started by USR2 refuses USR2 while the master that started it runs, and shares its sockets until then', (t) => {
  const s = setup(t, { parent: 555 });
  s.ops.running.add(555);
  assert.equal(s.reexec.refusal(), 'USR2 ignored: the previous master (pid 555) is still running; stop it first');
  assert.equal(s.reexec.sharesSockets(), true);
  s.ops.running.delete(555);
  assert.equal(s.reexec.refusal(), null);
  assert.equal(s.reexec.sharesSockets(), false);
});

test('under run() there is no command line to start again: USR2 is refused and nothing moves', (t) => {
  const s = setup(t, { argv: null });
  assert.match(s.reexec.refusal()!, /^USR2 ignored: tsgun was started by run\(\)/);
  assert.equal(read(s.file), '777\n');
});

test("sockets systemd passed are handed on in systemd's form, LISTEN_PID set by a shell to the new pid; the notify socket and watchdog go along", () => {
  const sockets = [socket(3, '127.0.0.1:8000', 'web'), socket(4, '127.0.0.1:8001', 'admin')];
  const { file, args, options } = successorSpawn(
    { argv: ['main:app'], cwd: '/srv', sockets, notifySocket: '/run/systemd/notify', watchdogUsec: 30_000_000 },
    SELF,
  );
  assert.equal(file, '/bin/sh');
  assert.deepEqual(args, [
    '-c',
    'LISTEN_PID=$$; export LISTEN_PID; exec "$@"',
    'sh',
    '/usr/bin/node',
    '--enable-source-maps',
    '/opt/tsgun/bin/tsgun',
    'main:app',
  ]);
  assert.deepEqual(options.stdio, ['inherit', 'inherit', 'inherit', 3, 4]);
  const env = options.env!;
  assert.equal(env.LISTEN_FDS, '2');
  assert.equal(env.LISTEN_FDNAMES, 'web:admin');
  assert.equal(env[INHERITED_ENV], undefined);
  assert.equal(env.NOTIFY_SOCKET, '/run/systemd/notify');
  assert.equal(env.WATCHDOG_USEC, '30000000');
});
