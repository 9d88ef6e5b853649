/**
 * `tsgun status | reload | scale N | stop`: find the running master's control socket,
 * send one command, and report the result when it is done.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { Command, CommanderError } from 'commander';
import { loadConfigFile } from './config/files.js';
import { findDefaultConfig } from './config/files.js';
import { checkFileValues } from './config/resolve.js';
import { HELP_WIDTH } from './config/help.js';
import { ExitCode, TsgunError, type CliResult } from './errors.js';
import type { ArbiterSnapshot } from './master/snapshot.js';
import {
  checkedSocket,
  controlSocketPath,
  defaultSocketName,
  runtimeDir,
  type ControlReply,
  type ControlRequest,
} from './master/control.js';
import { readPid } from './master/pidfile.js';
import { isAlive } from './master/process-ops.js';

export const CONTROL_COMMANDS = ['status', 'reload', 'scale', 'stop'] as const;

/**
 * A live pid that is a tsgun master. A master that was SIGKILLed leaves its socket behind,
 * and its pid may since belong to any process; on Linux the process title says which is
 * which (where /proc cannot be read, a live pid has to do).
 */
function isMaster(pid: number): boolean {
  if (!isAlive(pid)) return false;
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'latin1').startsWith('tsgun: master');
  } catch {
    return true;
  }
}

interface Where {
  pid?: string;
  controlSocket?: string;
  config?: string;
}

function fail(message: string): never {
  throw new TsgunError('TSGUN_ERR_RUNTIME', message);
}

/** Find the control socket of the master meant by the options. */
async function locate(where: Where, cwd: string): Promise<string> {
  if (where.controlSocket) return path.resolve(cwd, where.controlSocket);
  let pidfile = where.pid ? path.resolve(cwd, where.pid) : null;
  let controlSocket: string | null = null;
  const configFile = where.config ? path.resolve(cwd, where.config) : findDefaultConfig(cwd);
  if (configFile && !pidfile) {
    const values = checkFileValues(await loadConfigFile(configFile), configFile);
    pidfile = typeof values.pidfile === 'string' ? path.resolve(cwd, values.pidfile) : null;
    controlSocket = typeof values.control_socket === 'string' ? path.resolve(cwd, values.control_socket) : null;
  }
  if (controlSocket) return controlSocket;
  if (pidfile) {
    const pid = readPid(pidfile);
    if (pid === null) fail(`no tsgun master is running: pidfile ${pidfile} is missing or empty`);
    if (!isAlive(pid)) fail(`no tsgun master is running: pidfile ${pidfile} names pid ${pid}, which is not running`);
    return controlSocketPath({ pidfile, control_socket: null }, pid);
  }
  const dir = runtimeDir({ pidfile: null });
  let names: string[] = [];
  try {
    names = readdirSync(dir).filter((n) => /^tsgun-\d+\.sock$/.test(n));
  } catch {
    // No runtime directory: nothing has run as this user.
  }
  const running = names
    .map((n) => Number(/\d+/.exec(n)![0]))
    .filter((pid) => isMaster(pid) && names.includes(defaultSocketName(pid)));
  if (running.length === 0)
    fail(
      `no tsgun master is running (none found in ${dir}); pass --pid PIDFILE or --control-socket PATH if it uses another place`,
    );
  if (running.length > 1)
    fail(
      `several tsgun masters are running (pids ${running.join(', ')}); choose one with --pid PIDFILE or --control-socket ${path.join(dir, defaultSocketName(running[0]!))}`,
    );
  return path.join(dir, defaultSocketName(running[0]!));
}

/** Send one request and read the one-line reply. */
export function send(wanted: string, request: ControlRequest): Promise<ControlReply> {
  let socketPath: string;
  let st;
  try {
    socketPath = checkedSocket(wanted);
  } catch (err) {
    return Promise.reject(err as Error);
  }
  try {
    st = statSync(socketPath);
  } catch {
    return Promise.reject(
      new TsgunError('TSGUN_ERR_RUNTIME', `no tsgun master is running: control socket ${socketPath} does not exist`),
    );
  }
  const uid = process.getuid?.();
  if (uid !== undefined && uid !== 0 && st.uid !== uid) {
    return Promise.reject(
      new TsgunError(
        'TSGUN_ERR_RUNTIME',
        `control socket ${socketPath} belongs to user id ${st.uid}; run tsgun as that user`,
      ),
    );
  }
  return new Promise((resolve, reject) => {
    const conn = net.connect(socketPath);
    let buffered = '';
    conn.setEncoding('utf8');
    conn.on('connect', () => conn.write(`${JSON.stringify(request)}\n`));
    conn.on('data', (chunk: string) => (buffered += chunk));
    conn.on('end', () => {
      try {
        resolve(JSON.parse(buffered) as ControlReply);
      } catch {
        reject(
          new TsgunError('TSGUN_ERR_RUNTIME', `the master at ${socketPath} closed the connection without an answer`),
        );
      }
    });
    conn.on('error', (err: NodeJS.ErrnoException) => {
      const why =
        err.code === 'ECONNREFUSED'
          ? 'nobody is accepting on it (stale socket; the master is gone)'
          : err.code === 'EACCES'
            ? 'permission denied; run tsgun as the user that started the master'
            : (err.code ?? err.message);
      reject(new TsgunError('TSGUN_ERR_RUNTIME', `cannot reach the master at ${socketPath}: ${why}`));
    });
  });
}

function duration(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

const mib = (n: number): string => (n > 0 ? `${(n / 1024 / 1024).toFixed(1)} MiB` : '-');

/**
 * The `tsgun status` table. With `rates` (requests per second by pid, from two samples), as
 * `status --watch` shows it: a REQ/S column and a totals row.
 */
export function formatStatus(s: ArbiterSnapshot, now = Date.now(), rates?: ReadonlyMap<number, number>): string {
  const ready = s.workers.filter((w) => w.state === 'ready').length;
  const head =
    `tsgun ${s.version} master ${s.pid} [${s.app}]: up ${duration(now - s.startedAt)}, generation ${s.generation}${s.reloading ? ' (reloading)' : ''}, ${ready}/${s.target} workers ready\n` +
    `listening at ${s.sockets.join(', ')}\n\n`;
  const rate = (n: number | undefined): string[] => (rates ? [n === undefined ? '-' : n.toFixed(1)] : []);
  const rows: string[][] = [
    [
      'ROLE',
      'PID',
      'GEN',
      'STATE',
      'UPTIME',
      'REQUESTS',
      ...rate(undefined).map(() => 'REQ/S'),
      'CONNS',
      'UPGRADED',
      'CPU%',
      'RSS',
    ],
  ];
  const served = s.retired.requests + s.workers.reduce((n, w) => n + w.stats.requests, 0);
  const up = duration(now - s.startedAt);
  rows.push([
    'master',
    String(s.pid),
    String(s.generation),
    s.reloading ? 'reloading' : 'running',
    up,
    String(served),
    ...rate(undefined),
    '-',
    '-',
    s.cpu.toFixed(1),
    mib(s.rss),
  ]);
  for (const w of s.workers) {
    const { requests, connections, upgraded } = w.stats;
    rows.push([
      'worker',
      String(w.pid),
      String(w.generation),
      w.state,
      duration(now - w.spawnedAt),
      String(requests),
      ...rate(rates?.get(w.pid)),
      String(connections),
      String(upgraded),
      w.cpu.toFixed(1),
      mib(w.rss),
    ]);
  }
  if (rates) {
    const sum = (f: (w: ArbiterSnapshot['workers'][number]) => number): number =>
      s.workers.reduce((n, w) => n + f(w), 0);
    const perSecond = [...rates.values()].reduce((a, b) => a + b, 0);
    rows.push([
      'total',
      '',
      '',
      `${s.workers.length} workers`,
      '',
      String(served),
      perSecond.toFixed(1),
      String(sum((w) => w.stats.connections)),
      String(sum((w) => w.stats.upgraded)),
      (s.cpu + sum((w) => w.cpu)).toFixed(1),
      mib(s.rss + sum((w) => w.rss)),
    ]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return (
    head +
    rows
      .map((r) =>
        r
          .map((c, i) => c.padEnd(widths[i]!))
          .join('  ')
          .trimEnd(),
      )
      .join('\n') +
    '\n'
  );
}

async function waitForExit(pid: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (!isAlive(pid)) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return !isAlive(pid);
}

/** Where a control command writes while it runs (the live table, reload progress): the terminal, normally. */
export interface ControlConsole {
  write(text: string): void;
  progress(text: string): void;
  /** Whether progress is shown: only on a terminal, so a script reads one result line. */
  readonly interactive: boolean;
  /** Resolves on Ctrl-C. */
  interrupted(): Promise<void>;
}

const processConsole: ControlConsole = {
  write: (text) => void process.stdout.write(text),
  progress: (text) => void process.stderr.write(text),
  get interactive() {
    return process.stderr.isTTY === true;
  },
  interrupted: () => new Promise((resolve) => process.once('SIGINT', () => resolve())),
};

/** `status --watch`: the table, redrawn every second, until Ctrl-C or the master exits. */
async function watch(socket: string, out: ControlConsole, everyMs = 1000): Promise<CliResult> {
  let stop = false;
  const interrupted = out.interrupted().then(() => void (stop = true));
  let previous: { at: number; requests: Map<number, number> } | null = null;
  let pid = 0;
  const clear = process.stdout.isTTY ? '\x1b[H\x1b[2J' : '';
  while (!stop) {
    let reply: ControlReply;
    try {
      reply = await send(socket, { cmd: 'status' });
    } catch {
      return { code: ExitCode.OK, output: `\nthe master${pid ? ` (pid ${pid})` : ''} has exited; stopped watching\n` };
    }
    if (!reply.status) fail(reply.message);
    const now = Date.now();
    pid = reply.status.pid;
    const requests = new Map(reply.status.workers.map((w) => [w.pid, w.stats.requests]));
    const rates = new Map<number, number>();
    for (const [p, n] of requests) {
      const before = previous?.requests.get(p);
      if (previous && before !== undefined) rates.set(p, ((n - before) * 1000) / Math.max(1, now - previous.at));
    }
    previous = { at: now, requests };
    out.write(
      `${clear}${formatStatus(reply.status, now, rates)}\n(refreshed every ${everyMs / 1000} s; Ctrl+C to quit)\n`,
    );
    await Promise.race([new Promise((r) => setTimeout(r, everyMs)), interrupted]);
  }
  return { code: ExitCode.OK };
}

/** Send `reload`; on a terminal, say how many workers of the new generation are ready meanwhile. */
async function reloadWithProgress(socket: string, out: ControlConsole): Promise<ControlReply> {
  if (!out.interactive) return send(socket, { cmd: 'reload' });
  const before = (await send(socket, { cmd: 'status' })).status?.generation ?? 0;
  let done = false;
  let shown = '';
  const show = (ready: number, target: number): void => {
    const line = `${ready}/${target} new workers ready`;
    if (line !== shown) out.progress(`${line}\n`);
    shown = line;
  };
  const reply = send(socket, { cmd: 'reload' }).finally(() => (done = true));
  const poll = async (): Promise<void> => {
    const s = (await send(socket, { cmd: 'status' }).catch(() => null))?.status;
    if (s) show(s.workers.filter((w) => w.generation > before && w.state === 'ready').length, s.target);
  };
  while (!done) {
    await Promise.race([reply.catch(() => {}), new Promise((r) => setTimeout(r, 200))]);
    if (!done) await poll();
  }
  const result = await reply;
  if (result.ok) await poll();
  return result;
}

/** Run a control subcommand; argv starts with the subcommand name. */
export async function runControl(
  argv: readonly string[],
  cwd: string,
  out: ControlConsole = processConsole,
): Promise<CliResult> {
  // The help of the command asked about (`tsgun status --help`), as commander writes it.
  let help = '';
  const program = new Command('tsgun')
    .exitOverride()
    .configureOutput({ writeOut: (text) => (help += text), writeErr: () => {} })
    .configureHelp({ helpWidth: HELP_WIDTH });
  let result: CliResult = { code: ExitCode.OK };
  let where: Where = {};
  // Each command takes the options that find the master, so its --help lists them.
  const command = (name: string, description: string): Command =>
    program
      .command(name)
      .description(description)
      .option('-p, --pid <file>', 'the pidfile of the master')
      .option('--control-socket <path>', 'the control socket of the master')
      .option('-c, --config <file>', 'the config file the master runs with (for its pidfile or control_socket)')
      .hook('preAction', (_, action) => void (where = action.opts<Where>()));
  command('status', 'show the master and its workers')
    .option('--json', 'print JSON')
    .option(
      '--watch',
      'redraw the table every second (with requests per second and totals) until Ctrl+C or the master exits',
    )
    .action(async (opts: { json?: boolean; watch?: boolean }) => {
      if (opts.json && opts.watch) throw new TsgunError('TSGUN_ERR_USAGE', 'status takes --json or --watch, not both');
      const socket = await locate(where, cwd);
      if (opts.watch) {
        result = await watch(socket, out);
        return;
      }
      const reply = await send(socket, { cmd: 'status' });
      if (!reply.status) fail(reply.message);
      result = {
        code: ExitCode.OK,
        output: opts.json ? `${JSON.stringify(reply.status, null, 2)}\n` : formatStatus(reply.status),
      };
    });
  command('reload', 'reload as HUP does, and wait for the new generation (on a terminal, showing its progress)').action(
    async () => {
      const reply = await reloadWithProgress(await locate(where, cwd), out);
      if (!reply.ok) fail(reply.message);
      result = { code: ExitCode.OK, output: `${reply.message}\n` };
    },
  );
  command('scale', 'set the number of workers: N, +N or -N')
    .argument('<count>')
    .action(async (count: string) => {
      const reply = await send(await locate(where, cwd), { cmd: 'scale', count });
      if (!reply.ok) fail(reply.message);
      result = { code: ExitCode.OK, output: `${reply.message}\n` };
    });
  command('stop', 'stop the master (gracefully, or at once with --quick)')
    .option('--quick', 'stop at once, as INT does')
    .option('--timeout <seconds>', 'how long to wait for the master to exit', '120')
    .action(async (opts: { quick?: boolean; timeout: string }) => {
      const socket = await locate(where, cwd);
      const status = await send(socket, { cmd: 'status' });
      const reply = await send(socket, { cmd: 'stop', quick: opts.quick === true });
      if (!reply.ok) fail(reply.message);
      const pid = status.status?.pid;
      if (pid && !(await waitForExit(pid, Number(opts.timeout) * 1000)))
        fail(`the master (pid ${pid}) is still running after ${opts.timeout} s`);
      result = { code: ExitCode.OK, output: `stopped (master pid ${pid})\n` };
    });
  try {
    await program.parseAsync([...argv], { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.help')
        return { code: ExitCode.OK, output: help || program.helpInformation() };
      throw new TsgunError('TSGUN_ERR_USAGE', `${err.message.replace(/^error: /, '')}; see tsgun ${argv[0]} --help`);
    }
    throw err;
  }
  return result;
}
