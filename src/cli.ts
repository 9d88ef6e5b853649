/**
 * `tsgun [options] APP`: resolve the config, then print it, check it, or run the master.
 * Returns what to print and the exit status; `bin/tsgun` prints and exits.
 */
import { execFileSync } from 'node:child_process';
import { createServer } from 'node:http';
import { statSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { parseAppSpec, resolveModule } from './config/appspec.js';
import { InfoRequested } from './config/cli.js';
import { environmentFor, updateEnvironment } from './config/environment.js';
import { formatHelp } from './config/help.js';
import { formatConfig, resolveConfig, type ResolvedConfig } from './config/resolve.js';
import { describeError, ExitCode, isTsgunError, TsgunError, type CliResult } from './errors.js';
import type { Privileges } from './ipc.js';
import { createLogger } from './log.js';
import { Arbiter } from './master/arbiter.js';
import { loadApp } from './worker/app.js';
import { readTlsFiles } from './worker/tls.js';
import { CONTROL_COMMANDS, runControl } from './control-client.js';

export const VERSION = (createRequire(import.meta.url)('../package.json') as { version: string }).version;

/**
 * Resolve `user` and `group` to ids, once, in the master: workers only switch to them.
 * Without `group`, the user's primary group; a numeric uid with no passwd entry (an
 * arbitrary container uid) keeps the master's group and gets no supplementary groups.
 */
function resolvePrivileges(settings: ResolvedConfig['settings']): Privileges | null {
  const { user, group } = settings;
  if (!user && !group) return null;
  const query = (command: string, args: string[]): string | null => {
    try {
      return execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    } catch {
      return null;
    }
  };
  const missing = (what: string, value: string): never => {
    throw new TsgunError(
      'TSGUN_ERR_CONFIG_VALUE',
      `${what} ${JSON.stringify(value)} does not exist on this machine; check --${what}`,
    );
  };
  let uid = process.getuid!();
  let gid = process.getgid!();
  let initgroups: string | null = null;
  if (user) {
    const passwd = query('getent', ['passwd', user]);
    if (passwd) {
      const fields = passwd.split(':');
      [initgroups, uid, gid] = [fields[0]!, Number(fields[2]), Number(fields[3])];
    } else if (/^\d+$/.test(user)) {
      uid = Number(user);
    } else {
      missing('user', user);
    }
  }
  if (group) {
    const entry = query('getent', ['group', group]);
    if (entry) gid = Number(entry.split(':')[2]);
    else if (/^\d+$/.test(group)) gid = Number(group);
    else missing('group', group);
  }
  const me = process.getuid!();
  if (me !== 0 && (uid !== me || gid !== process.getgid!())) {
    throw new TsgunError(
      'TSGUN_ERR_CONFIG_VALUE',
      `--user/--group need tsgun to be started as root (it runs as uid ${me}); drop them or start tsgun as root`,
    );
  }
  return { uid, gid, initgroups: me === 0 ? initgroups : null };
}

/**
 * Apply `umask` and `chdir` to this process (`chdir` only when `changeDir`: run() leaves its
 * caller's directory alone), resolve `user`/`group`, read the TLS files, and compute the
 * workers' environment from `base` before the app is looked for.
 */
export function applyEnvironment(
  resolved: ResolvedConfig,
  cwd: string,
  base: NodeJS.ProcessEnv,
  changeDir = true,
): void {
  const { settings } = resolved;
  if (settings.umask !== null) process.umask(settings.umask);
  resolved.privileges = resolvePrivileges(settings);
  resolved.env = environmentFor(settings, base, cwd);
  // Read before any privilege is dropped: workers get the contents, and a bad file is an Error: line now.
  resolved.tls = readTlsFiles(settings);
  if (settings.worker_class === 'http2' && !settings.certfile)
    throw new TsgunError(
      'TSGUN_ERR_CONFIG_VALUE',
      'worker_class http2 serves HTTP/2 over TLS: give it --certfile and --keyfile',
    );
  if (settings.chdir) {
    const dir = path.resolve(cwd, settings.chdir);
    try {
      if (changeDir) process.chdir(dir);
      else if (!statSync(dir).isDirectory()) throw Object.assign(new Error('not a directory'), { code: 'ENOTDIR' });
    } catch (err) {
      throw new TsgunError(
        'TSGUN_ERR_CONFIG_VALUE',
        `chdir: cannot change to ${dir}: ${(err as NodeJS.ErrnoException).code ?? describeError(err)}; check --chdir`,
      );
    }
    settings.chdir = dir;
  }
}

async function checkConfig(resolved: ResolvedConfig, app: string): Promise<CliResult> {
  try {
    const loaded = await loadApp(app, resolved.settings, { onError: () => {}, server: createServer() });
    const from = resolved.configFile ? `config ${resolved.configFile}` : 'no config file';
    return { code: ExitCode.OK, output: `OK: ${from}; app ${app} is a ${loaded.shape} app from ${loaded.file}\n` };
  } catch (err) {
    throw asCheckFailure(err);
  }
}

function asCheckFailure(err: unknown): unknown {
  return isTsgunError(err)
    ? new TsgunError(err.code, err.message, { cause: err.cause, exitCode: ExitCode.RUNTIME })
    : err;
}

/** `tsgun help [command]`: the whole help, or one command's. */
function help(args: readonly string[], cwd: string): Promise<CliResult> | CliResult {
  const [command, ...extra] = args;
  if (command === undefined || ['help', '--help', '-h'].includes(command))
    return { code: ExitCode.OK, output: formatHelp() };
  if (extra.length === 0 && (CONTROL_COMMANDS as readonly string[]).includes(command))
    return runControl([command, '--help'], cwd);
  const known = [...CONTROL_COMMANDS, 'help'].join(', ');
  throw new TsgunError(
    'TSGUN_ERR_USAGE',
    `tsgun help takes one of ${known}, not ${JSON.stringify(args.join(' '))}; see tsgun --help`,
  );
}

export async function main(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): Promise<CliResult> {
  const cwd = process.cwd();
  if ((CONTROL_COMMANDS as readonly string[]).includes(argv[0] ?? '')) return runControl(argv, cwd);
  if (argv[0] === 'help') return help(argv.slice(1), cwd);
  let resolved: ResolvedConfig;
  try {
    resolved = await resolveConfig({ argv, env, cwd, version: VERSION });
  } catch (err) {
    if (err instanceof InfoRequested) return { code: ExitCode.OK, output: err.output };
    // --check-config reports every failure with exit status 1.
    throw argv.includes('--check-config') ? asCheckFailure(err) : err;
  }
  if (resolved.settings.print_config) return { code: ExitCode.OK, output: formatConfig(resolved) };

  const app = resolved.app;
  if (!app)
    throw new TsgunError(
      'TSGUN_ERR_USAGE',
      'no APP given; run tsgun [options] MODULE[:ATTR], for example tsgun main:app (see tsgun --help)',
    );
  const spec = parseAppSpec(app);
  // The master's own environment follows the workers' (its hooks, --check-config's app, a USR2 successor).
  const base = { ...process.env };
  let applied = base as Record<string, string>;
  const apply = (r: ResolvedConfig): void => {
    applyEnvironment(r, cwd, base);
    updateEnvironment(process.env, applied, r.env!);
    applied = r.env!;
  };
  try {
    apply(resolved);
  } catch (err) {
    throw resolved.settings.check_config ? asCheckFailure(err) : err;
  }
  if (resolved.settings.check_config) return checkConfig(resolved, app);
  resolveModule(spec.module, resolved.settings.chdir ?? process.cwd());

  const logs = createLogger(resolved.settings, { role: 'master' });
  const reresolve = async (): Promise<ResolvedConfig> => {
    const again = await resolveConfig({ argv, env: process.env, cwd, version: VERSION });
    apply(again);
    return again;
  };
  const arbiter = new Arbiter({ resolved, app, logs, version: VERSION, reresolve, argv, cwd });
  try {
    return { code: await arbiter.run() };
  } finally {
    logs.flush();
  }
}
