/**
 * Deployments as docs/deploy.md and contrib/systemd/ describe them: a root-owned config read
 * by an unprivileged user, the shipped units on this machine's systemd, nginx on a unix
 * socket owned by --user/--group, --backlog as the kernel reports it, and the Error: lines
 * of deployment mistakes.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { BIN, FIXTURES, request, ROOT, runTsgun, scratchDir, Tsgun } from '../helpers.js';
import { docNginx, docTsgunArgs, NEEDS_NGINX, startNginx } from './nginx.shared.js';

const ROOT_ONLY = process.getuid?.() === 0 ? false : 'needs root (to run tsgun as another user)';
const has = (command: string): boolean => spawnSync('sh', ['-c', `command -v ${command}`]).status === 0;
const uidOf = (user: string): number | null => {
  const r = spawnSync('id', ['-u', user], { encoding: 'utf8' });
  return r.status === 0 ? Number(r.stdout.trim()) : null;
};
const NEEDS_WWW_DATA = ROOT_ONLY || (uidOf('www-data') === null ? 'no www-data user' : false);

/** A directory like /etc/tsgun: root-owned, 0755, under a 0755 parent any user can reach. */
function rootOwnedDir(): string {
  const dir = scratchDir('tsgun-deploy-');
  chmodSync(dir, 0o755);
  return dir;
}

/** `tsgun ARGS` run as `user` (runuser), to completion. */
function runAs(
  user: string,
  args: readonly string[],
  cwd: string,
): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync('runuser', ['-u', user, '--', process.execPath, BIN, ...args], {
    cwd,
    encoding: 'utf8',
    timeout: 60_000,
    env: { ...process.env, TSGUN_CMD_ARGS: '', PORT: '', WEB_CONCURRENCY: '' },
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The listening socket's backlog as `ss` shows it (Send-Q of a LISTEN row). */
function ssBacklog(args: string[], local: string): number | null {
  const out = execFileSync('ss', args, { encoding: 'utf8' });
  for (const line of out.split('\n')) {
    const cols = line.trim().split(/\s+/);
    if (cols.includes(local)) return Number(cols[cols.indexOf('LISTEN') + 2]);
  }
  return null;
}

describe('deployments as documented', { concurrency: 1 }, () => {
  test(
    'a TypeScript config in a root-owned 0755 directory loads as nobody, and nothing is written beside it',
    { skip: ROOT_ONLY },
    () => {
      const dir = rootOwnedDir();
      writeFileSync(path.join(dir, 'helper.ts'), 'export const workers = (): number => 3;\n');
      writeFileSync(
        path.join(dir, 'conf.ts'),
        [
          "import { defineConfig } from 'tsgun';",
          "import { workers } from './helper';",
          'const here: string = import.meta.dirname;',
          'export default defineConfig({ workers: workers(), proc_name: `conf in ${here}` });',
          '',
        ].join('\n'),
      );
      const before = readdirSync(dir).sort();
      const printed = runAs('nobody', ['-c', path.join(dir, 'conf.ts'), '--print-config', 'express-app:app'], FIXTURES);
      assert.equal(printed.status, 0, printed.stderr);
      assert.match(printed.stdout, /^workers\s+= 3\s/m, 'the relative import was bundled in');
      assert.match(
        printed.stdout,
        new RegExp(`^proc_name\\s+= "conf in ${dir}"`, 'm'),
        "import.meta.dirname is the config's directory",
      );
      const checked = runAs('nobody', ['-c', path.join(dir, 'conf.ts'), '--check-config', 'express-app:app'], FIXTURES);
      assert.equal(checked.status, 0, checked.stderr);
      assert.match(checked.stdout, /^OK: config /);
      assert.deepEqual(readdirSync(dir).sort(), before, 'no compiled file is left (or tried) beside the config');
    },
  );

  test(
    "the shipped systemd units pass systemd-analyze verify on this machine's systemd",
    { skip: has('systemd-analyze') ? false : 'systemd-analyze is not installed' },
    () => {
      const dir = scratchDir('tsgun-units-');
      for (const unit of ['tsgun.service', 'tsgun.socket'])
        copyFileSync(path.join(ROOT, 'contrib', 'systemd', unit), path.join(dir, unit));
      const r = spawnSync(
        'systemd-analyze',
        ['verify', path.join(dir, 'tsgun.service'), path.join(dir, 'tsgun.socket')],
        { encoding: 'utf8', cwd: dir },
      );
      const version = execFileSync('systemd-analyze', ['--version'], { encoding: 'utf8' }).split('\n')[0];
      assert.equal(r.status, 0, `${version}\n${r.stderr}`);
      // verify reports an unknown value (Type=notify-reload before systemd 253) as a warning, with status 0.
      assert.equal(r.stderr.trim(), '', `${version} warns about the units:\n${r.stderr}`);
    },
  );

  test(
    'nginx (as www-data) reaches the unix socket of tsgun -u www-data -g www-data -m 007 on the first try',
    { skip: NEEDS_NGINX || NEEDS_WWW_DATA },
    async (t) => {
      const dir = rootOwnedDir();
      const sock = path.join(dir, 'tsgun.sock');
      const tsgun = new Tsgun([...docTsgunArgs('docs/deploy.md', sock), '-u', 'www-data', '-g', 'www-data', 'app'], {
        cwd: path.join(FIXTURES, 'nginx'),
      });
      t.after(() => tsgun.stop());
      await tsgun.ready(1);
      const st = statSync(sock);
      const wwwData = uidOf('www-data')!;
      assert.deepEqual(
        { uid: st.uid, gid: st.gid, mode: (st.mode & 0o777).toString(8) },
        { uid: wwwData, gid: wwwData, mode: '770' },
      );
      const nginx = await startNginx(t, (port) => docNginx('docs/deploy.md', sock, port), { user: 'www-data' });
      const reply = await request(`${nginx.url}/first`);
      assert.equal(reply.status, 200, reply.body);
    },
  );

  test(
    '--backlog 7 is the backlog ss reports, for TCP and unix sockets',
    { skip: has('ss') ? false : 'ss is not installed' },
    async (t) => {
      const sock = path.join(scratchDir(), 'tsgun.sock');
      const tsgun = new Tsgun(['--backlog', '7', '-b', '127.0.0.1:0', '-b', `unix:${sock}`, 'express-app:app']);
      t.after(() => tsgun.stop());
      const [url] = await tsgun.listening(2);
      await tsgun.ready(1, 2);
      const tcp = new URL(url!).host;
      assert.equal(ssBacklog(['-ltn'], tcp), 7);
      assert.equal(ssBacklog(['-lx'], sock), 7);
    },
  );

  test(
    'a unix socket in a missing or unwritable directory: the Error: line speaks of the directory',
    { skip: ROOT_ONLY },
    async () => {
      const missing = path.join(scratchDir(), 'no-such-dir', 'tsgun.sock');
      const r = await runTsgun(['-b', `unix:${missing}`, 'express-app:app']);
      assert.equal(r.code, 1, r.stderr);
      assert.match(
        r.stderr,
        /^Error: cannot bind unix:.*: ENOENT, it is in .*no-such-dir, which does not exist; create it/m,
      );
      assert.doesNotMatch(r.stderr, /port/);

      const dir = rootOwnedDir();
      mkdirSync(path.join(dir, 'run'), { mode: 0o755 });
      const denied = runAs(
        'nobody',
        ['-b', `unix:${path.join(dir, 'run', 'tsgun.sock')}`, 'express-app:app'],
        FIXTURES,
      );
      assert.equal(denied.status, 1, denied.stderr);
      assert.match(
        denied.stderr,
        /^Error: cannot bind unix:.*: EACCES, it is in .*\/run, where tsgun \(uid \d+\) may not create files/m,
      );
      assert.doesNotMatch(denied.stderr, /port/);
      assert.equal(denied.stderr.split('\n').filter((l) => l.startsWith('Error:')).length, 1, denied.stderr);
    },
  );

  test('MODULE:ATTR:x is an app-spec error (exit 2), not a missing module', async () => {
    const r = await runTsgun(['express-app:app:x']);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /^Error: app "express-app:app:x" has more than one ':'; expected MODULE\[:ATTR\]/);
  });

  test('an app that throws at import: the Error: line shows the file and line where it was thrown', async () => {
    const r = await runTsgun([`${path.join(FIXTURES, 'broken', 'import-throws')}:app`]);
    assert.equal(r.code, 4, r.stderr);
    const errors = r.stderr.split('\n').filter((l) => l.startsWith('Error:'));
    assert.equal(errors.length, 1, r.stderr);
    assert.match(errors[0]!, /app import exploded on purpose \(at .*\/broken\/import-throws\.ts:2:7\)$/);
  });
});
