/**
 * The workers' identity and environment: `user` and `group` (as root), `umask`, `raw_env`
 * and `env_file`. Read from /proc and from what the app itself reports at `/info`.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { childPidsSync, FIXTURES, info, runTsgun, scratchDir, Tsgun, workerPidsByTitle } from '../helpers.js';

const DIR = path.join(FIXTURES, 'systemd');
const APP = 'app:app';
const NO_SYSTEMD = {
  NOTIFY_SOCKET: '',
  WATCHDOG_USEC: '',
  WATCHDOG_PID: '',
  LISTEN_FDS: '',
  LISTEN_PID: '',
  LISTEN_FDNAMES: '',
};
const NEEDS_ROOT =
  process.getuid?.() === 0 ? false : 'needs root (run the suite as root to check user/group switching)';

/** The `Uid:`, `Gid:`, `Groups:` and `Umask:` lines of /proc/PID/status. */
function procStatus(pid: number): { uid: number[]; gid: number[]; groups: number[]; umask: string } {
  const text = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name: string): string => new RegExp(`^${name}:\\s*(.*)$`, 'm').exec(text)?.[1]?.trim() ?? '';
  const ids = (name: string): number[] => field(name).split(/\s+/).filter(Boolean).map(Number);
  return { uid: ids('Uid'), gid: ids('Gid'), groups: ids('Groups'), umask: field('Umask') };
}

/** A free privileged port (600-999) on 127.0.0.1; only root can bind one. */
async function freePrivilegedPort(): Promise<number> {
  const start = 600 + Math.floor(Math.random() * 400);
  for (let i = 0; i < 400; i++) {
    const port = 600 + ((start - 600 + i) % 400);
    const free = await new Promise<boolean>((resolve) => {
      const server = net.createServer();
      server.once('error', () => resolve(false));
      server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
    });
    if (free) return port;
  }
  throw new Error('no free port in 600-999');
}

/** tsgun serving the app from DIR, stopped when the test ends. */
function serve(ctx: TestContext, args: readonly string[], env: NodeJS.ProcessEnv = {}): Tsgun {
  const t = new Tsgun([...args, APP], { cwd: DIR, env: { ...NO_SYSTEMD, ...env } });
  ctx.after(() => t.stop());
  return t;
}

describe('user and group', { concurrency: 2 }, () => {
  test(
    'as root, -u nobody -g nogroup: the master binds a port below 1024, workers run as 65534:65534 and serve',
    { skip: NEEDS_ROOT },
    async (ctx) => {
      const port = await freePrivilegedPort();
      const t = serve(ctx, ['-w', '2', '-u', 'nobody', '-g', 'nogroup', '-b', `127.0.0.1:${port}`]);
      const url = await t.ready(2);
      assert.equal(url, `http://127.0.0.1:${port}`);
      assert.deepEqual(procStatus(t.pid).uid, [0, 0, 0, 0], 'the master stays root');
      const workers = workerPidsByTitle(t.pid);
      assert.equal(workers.length, 2);
      for (const pid of workers) {
        const s = procStatus(pid);
        assert.deepEqual(s.uid, [65534, 65534, 65534, 65534], `worker ${pid} Uid`);
        assert.deepEqual(s.gid, [65534, 65534, 65534, 65534], `worker ${pid} Gid`);
        assert.deepEqual(s.groups, [65534], `worker ${pid} keeps none of root's groups`);
      }
      const seen = await info(url);
      assert.ok(workers.includes(seen.pid));
      assert.deepEqual([seen.uid, seen.gid], [65534, 65534]);
    },
  );

  test(
    "as root, -u nobody alone: workers take nobody's primary group (65534), not root's group 0",
    { skip: NEEDS_ROOT },
    async (ctx) => {
      const t = serve(ctx, ['-w', '1', '-u', 'nobody', '-b', '127.0.0.1:0']);
      await t.ready(1);
      const [worker] = workerPidsByTitle(t.pid);
      const s = procStatus(worker!);
      assert.deepEqual(s.uid, [65534, 65534, 65534, 65534]);
      assert.deepEqual(
        s.gid,
        [65534, 65534, 65534, 65534],
        'Gid: the user\'s primary group (docs/settings.md, group: "Default: the user\'s primary group")',
      );
      assert.ok(!s.groups.includes(0), `no supplementary root group (Groups: ${s.groups.join(' ')})`);
    },
  );

  test(
    "as root, -u 12345 -g 12345: numeric ids with no passwd or group entry (a container's arbitrary uid) are used as given",
    { skip: NEEDS_ROOT },
    async (ctx) => {
      const unknown =
        spawnSync('getent', ['passwd', '12345']).status !== 0 && spawnSync('getent', ['group', '12345']).status !== 0;
      assert.ok(unknown, 'uid and gid 12345 have no entry on this machine');
      const t = serve(ctx, ['-w', '1', '-u', '12345', '-g', '12345', '-b', '127.0.0.1:0']);
      const url = await t.ready(1);
      const [worker] = workerPidsByTitle(t.pid);
      const s = procStatus(worker!);
      assert.deepEqual([s.uid, s.gid, s.groups], [[12345, 12345, 12345, 12345], [12345, 12345, 12345, 12345], [12345]]);
      const seen = await info(url);
      assert.deepEqual([seen.uid, seen.gid], [12345, 12345]);
    },
  );

  test(
    'a user or group that does not exist is an Error: line and exit 2, with nothing left running',
    { skip: NEEDS_ROOT },
    async () => {
      const sock = path.join(scratchDir('tsgun-identity-'), 'never.sock');
      for (const args of [
        ['-u', 'tsgun-no-such-user'],
        ['-g', 'tsgun-no-such-group'],
      ]) {
        const r = await runTsgun([...args, '-b', `unix:${sock}`, APP], { cwd: DIR, env: NO_SYSTEMD });
        assert.equal(r.code, 2, r.stderr);
        const errors = r.stderr.split('\n').filter((l) => l.startsWith('Error:'));
        assert.equal(errors.length, 1, r.stderr);
        assert.match(errors[0]!, new RegExp(args[1]!));
        assert.equal(childPidsSync(r.pid).length, 0);
        assert.equal(existsSync(sock), false);
      }
    },
  );
});

describe('umask and environment', { concurrency: 2 }, () => {
  for (const { umask, mode, proc } of [
    { umask: '007', mode: 0o770, proc: '0007' },
    { umask: '077', mode: 0o700, proc: '0077' },
  ]) {
    test(`-m ${umask} gives the unix socket file mode ${mode.toString(8)}, and the workers umask ${proc}`, async (ctx) => {
      const sock = path.join(scratchDir('tsgun-identity-'), `umask-${umask}.sock`);
      const t = serve(ctx, ['-w', '1', '-m', umask, '-b', `unix:${sock}`]);
      await t.ready(1);
      const st = statSync(sock);
      assert.ok(st.isSocket());
      assert.equal((st.mode & 0o777).toString(8), mode.toString(8), `-m ${umask}`);
      const [worker] = workerPidsByTitle(t.pid);
      assert.equal(procStatus(worker!).umask, proc);
      assert.equal((await info('http://localhost/', { socketPath: sock })).pid, worker);
    });
  }

  test("-e A=1 --env-file FILE: the app sees the file's values (comments skipped, quotes removed), and -e wins", async (ctx) => {
    const file = path.join(scratchDir('tsgun-identity-'), 'app.env');
    writeFileSync(file, ['# a comment', 'A=from-file', 'B=2', 'C="a quoted value # not a comment"', ''].join('\n'));
    const t = serve(ctx, ['-w', '1', '-b', '127.0.0.1:0', '-e', 'A=1', '--env-file', file], { A: '', B: '', C: '' });
    const seen = await info(await t.ready(1));
    assert.deepEqual([seen.env.A, seen.env.B, seen.env.C], ['1', '2', 'a quoted value # not a comment']);
  });
});
