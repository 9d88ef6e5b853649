/**
 * Shared by the nginx tests (nginx*.test.ts): a real nginx started with the nginx block
 * and the tsgun command line that README.md and docs/deploy.md give, word for word but
 * for the socket path, the `listen` line and the number of workers, so the docs and the
 * tests cannot drift apart.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { TestContext } from 'node:test';
import { FIXTURES, freePort, readIfExists, ROOT, scratchDir, sleep, Tsgun } from '../helpers.js';

/** Debian puts nginx in /usr/sbin, which is not on every user's PATH. */
export const NGINX = [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/usr/local/sbin', '/usr/local/nginx/sbin']
  .map((dir) => path.join(dir, 'nginx'))
  .find((file) => {
    try {
      accessSync(file, constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });

export const NEEDS_NGINX = NGINX ? false : "nginx is not installed (.ci/run installs Debian's nginx package)";

/** The docs that show an nginx config, relative to the repository root. */
export const DOCS = ['README.md', 'docs/deploy.md'] as const;

/** The first fenced block of `lang` in `file` (after `heading`, if given). */
function fence(file: string, lang: string, heading?: string): string {
  let text = readFileSync(path.join(ROOT, file), 'utf8');
  if (heading !== undefined) text = text.slice(text.indexOf(heading));
  const m = new RegExp('```' + lang + '\\n([\\s\\S]*?)```').exec(text);
  if (!m) throw new Error(`no \`\`\`${lang} block in ${file}`);
  return m[1]!;
}

/** The place in each doc where its nginx example is. */
const HEADINGS: Record<(typeof DOCS)[number], string> = {
  'README.md': '**nginx in front**',
  'docs/deploy.md': '## nginx in front',
};

/**
 * The tsgun arguments a doc's `tsgun ... app:app` line gives, with the socket path
 * changed and one worker: `-b unix:SOCK -m 007 --forwarded-allow-ips unix ...`.
 */
export function docTsgunArgs(doc: (typeof DOCS)[number], sock: string): string[] {
  const line = fence(doc, 'sh', HEADINGS[doc])
    .split('\n')
    .find((l) => l.startsWith('tsgun '));
  if (!line) throw new Error(`no tsgun command line in ${doc}`);
  const args = line.split(/\s+/).slice(1, -1);
  return args.map((a, i) => (a.startsWith('unix:') ? `unix:${sock}` : args[i - 1] === '-w' ? '1' : a));
}

/** A doc's nginx block, pointed at `sock` and listening on 127.0.0.1:`port`. */
export function docNginx(doc: (typeof DOCS)[number], sock: string, port: number): string {
  const block = fence(doc, 'nginx', HEADINGS[doc]);
  if (!block.includes('unix:/run/tsgun/tsgun.sock') || !/^\s*listen [^;]+;$/m.test(block))
    throw new Error(`unexpected nginx block in ${doc}`);
  return block
    .replace('unix:/run/tsgun/tsgun.sock', `unix:${sock}`)
    .replace(/^(\s*)listen [^;]+;$/m, `$1listen 127.0.0.1:${port};`);
}

export interface Nginx {
  proc: ChildProcess;
  port: number;
  url: string;
  /** nginx's access log, error log (for failure messages). */
  dir: string;
}

/**
 * nginx in the foreground with `http` holding `conf(port)`, every file it writes in a
 * scratch directory, stopped when the test ends. As root, its workers run as root too
 * (tsgun's socket is `srwxrwx---` owned by the user tsgun runs as), or as `opts.user`.
 */
export async function startNginx(
  t: TestContext,
  conf: (port: number) => string,
  opts: { user?: string } = {},
): Promise<Nginx> {
  const dir = scratchDir('tsgun-nginx-');
  const port = await freePort();
  const root = process.getuid?.() === 0;
  const config = [
    'daemon off;',
    'worker_processes 1;',
    root ? `user ${opts.user ?? 'root'};` : '',
    `pid ${dir}/nginx.pid;`,
    `error_log ${dir}/error.log info;`,
    'events { worker_connections 256; }',
    'http {',
    `    access_log ${dir}/access.log;`,
    ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((kind) => `    ${kind}_temp_path ${dir}/${kind}_temp;`),
    conf(port),
    '}',
  ].join('\n');
  writeFileSync(path.join(dir, 'nginx.conf'), config);
  const proc = spawn(NGINX!, ['-p', `${dir}/`, '-c', `${dir}/nginx.conf`, '-e', `${dir}/error.log`], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  proc.stderr!.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  t.after(async () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
    await Promise.race([exited, sleep(5000)]);
    proc.kill('SIGKILL');
  });
  const deadline = Date.now() + 10_000;
  for (;;) {
    const up = await new Promise<boolean>((resolve) => {
      const c = net.connect({ host: '127.0.0.1', port }, () => {
        c.end();
        resolve(true);
      });
      c.once('error', () => resolve(false));
    });
    if (up) break;
    if (proc.exitCode !== null || Date.now() > deadline) {
      throw new Error(
        `nginx did not start:\n${stderr}\n${readIfExists(path.join(dir, 'error.log'))}\n--- nginx.conf ---\n${config}`,
      );
    }
    await sleep(50);
  }
  return { proc, port, url: `http://127.0.0.1:${port}`, dir };
}

/** tsgun on a unix socket in a scratch directory, started as `doc` says, serving a fixture in test/fixtures/nginx/. */
export async function startTsgun(
  t: TestContext,
  doc: (typeof DOCS)[number],
  extra: readonly string[],
  app: string,
): Promise<{ tsgun: Tsgun; sock: string }> {
  const sock = path.join(scratchDir(), 'tsgun.sock');
  const tsgun = new Tsgun([...docTsgunArgs(doc, sock), ...extra, app], { cwd: path.join(FIXTURES, 'nginx') });
  t.after(async () => {
    await tsgun.stop();
  });
  await tsgun.ready(1);
  return { tsgun, sock };
}
