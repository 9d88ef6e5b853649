/**
 * USR2, the binary upgrade, as Gunicorn's `reexec`: start a new master from this master's
 * command line and hand it the listening sockets as inherited fds. Both serve until the
 * operator sends TERM to the old one; nothing here stops this master.
 *
 * The pidfile moves aside to `PIDFILE.oldbin` so that the new master can write its own, and
 * moves back if the new master exits (it failed to start, or was stopped) while this one
 * serves on. OS access goes through ProcessOps, so unit tests drive all of it without forking.
 */
import type { ChildProcess, SpawnOptions, StdioOptions } from 'node:child_process';
import type { Logger } from '../log.js';
import type { Pidfile } from './pidfile.js';
import type { ProcessOps } from './process-ops.js';
import { describeInherited, INHERITED_ENV, type BoundSocket } from './sockets.js';

/** Set in a master started by USR2: the pid of the master that started it. */
export const PARENT_ENV = 'TSGUN_PARENT_PID';

/** What the pidfile is renamed to during an upgrade: `PIDFILE.oldbin`. */
export const OLDBIN_SUFFIX = '.oldbin';

/** The pid of the master that started this one by USR2, from this process's environment. */
export function parentPid(env: NodeJS.ProcessEnv): number | null {
  const pid = Number(env[PARENT_ENV]);
  return Number.isInteger(pid) && pid > 0 ? pid : null;
}

/** What the new master is started with. */
export interface Handover {
  /** The command line after the script, as this master was started with it, and its directory. */
  argv: readonly string[];
  cwd: string;
  sockets: readonly BoundSocket[];
  /** systemd's notify socket and watchdog interval, which the master took out of its environment. */
  notifySocket: string | null;
  watchdogUsec: number | null;
}

/** This process, which the new master repeats: its node, node flags, script, environment and pid. */
export interface Self {
  execPath: string;
  execArgv: readonly string[];
  script: string;
  env: NodeJS.ProcessEnv;
  pid: number;
}

function currentProcess(): Self {
  return {
    execPath: process.execPath,
    execArgv: process.execArgv,
    script: process.argv[1]!,
    env: process.env,
    pid: process.pid,
  };
}

/**
 * The spawn that starts the new master. The sockets take the stdio slots after the standard
 * streams, in order: where the new master's INHERITED_ENV says they are, and where systemd's
 * LISTEN_FDS puts them (SD_LISTEN_FDS_START is 3).
 */
export function successorSpawn(
  h: Handover,
  self: Self = currentProcess(),
): { file: string; args: string[]; options: SpawnOptions } {
  const streams = ['inherit', 'inherit', 'inherit'] as const;
  const stdio: StdioOptions = [...streams, ...h.sockets.map((s) => s.fd)];
  const command = [self.execPath, ...self.execArgv, self.script, ...h.argv];
  const env: NodeJS.ProcessEnv = { ...self.env, [PARENT_ENV]: String(self.pid) };
  if (h.notifySocket) env.NOTIFY_SOCKET = h.notifySocket;
  if (h.watchdogUsec) env.WATCHDOG_USEC = String(h.watchdogUsec);
  const options: SpawnOptions = { cwd: h.cwd, stdio, env, detached: true };
  const fromSystemd = h.sockets.length > 0 && h.sockets.every((s) => s.systemd !== undefined);
  if (!fromSystemd) {
    env[INHERITED_ENV] = describeInherited(h.sockets, streams.length);
    return { file: command[0]!, args: command.slice(1), options };
  }
  // Hand systemd's sockets on in systemd's own form. LISTEN_PID must be the new
  // process's pid, known only after the fork: a shell sets it to its own $$ and execs.
  env.LISTEN_FDS = String(h.sockets.length);
  env.LISTEN_FDNAMES = h.sockets.map((s) => s.systemd).join(':');
  return { file: '/bin/sh', args: ['-c', 'LISTEN_PID=$$; export LISTEN_PID; exec "$@"', 'sh', ...command], options };
}

export interface ReexecOptions {
  ops: ProcessOps;
  log: () => Logger;
  /** The command line after the script and the directory tsgun was started in; argv is null under run(). */
  argv: readonly string[] | null;
  cwd: string;
  /** The master that started this one by USR2, if any (parentPid()). */
  parent: number | null;
  self?: () => Self;
}

/** A master's part in upgrades: the new master it started, and the old one that started it. */
export class Reexec {
  /** The new master, while it runs. */
  private successor: ChildProcess | null = null;
  readonly parent: number | null;

  constructor(private readonly opts: ReexecOptions) {
    this.parent = opts.parent;
  }

  private get ops(): ProcessOps {
    return this.opts.ops;
  }

  private get log(): Logger {
    return this.opts.log();
  }

  private self(): Self {
    return (this.opts.self ?? currentProcess)();
  }

  /** Why a USR2 now is ignored, or null when an upgrade may start. */
  refusal(): string | null {
    if (!this.opts.argv)
      return 'USR2 ignored: tsgun was started by run() in a program, which has no command line to start again';
    if (this.successor) return `USR2 ignored: an upgrade is already in progress (new master pid ${this.successor.pid})`;
    if (this.parent !== null && this.ops.alive(this.parent))
      return `USR2 ignored: the previous master (pid ${this.parent}) is still running; stop it first`;
    return null;
  }

  /** Start the new master (after refusal() said yes); the pidfile becomes `PIDFILE.oldbin` until that master exits. */
  start(passed: Omit<Handover, 'argv' | 'cwd'>, pidfile: Pidfile | null): void {
    if (pidfile) {
      try {
        pidfile.rename(`${pidfile.configured}${OLDBIN_SUFFIX}`);
      } catch (err) {
        this.log.error(`Error: cannot rename pidfile for the upgrade: ${(err as Error).message}`);
      }
    }
    const { file, args, options } = successorSpawn(
      { ...passed, argv: this.opts.argv ?? [], cwd: this.opts.cwd },
      this.self(),
    );
    const child = this.ops.spawn(file, args, options);
    child.unref();
    this.successor = child;
    const ended = (what: string): void => {
      if (this.successor !== child) return;
      this.successor = null;
      this.log.error(`${what}; this master goes on serving`);
      try {
        pidfile?.restore();
      } catch {
        // The pidfile was moved or removed by hand.
      }
    };
    // A spawn that fails (EAGAIN) emits 'error' and no 'exit'.
    child.on('error', (err) => {
      if (!child.pid) ended(`The new master could not be started (${err.message})`);
    });
    child.once('exit', (code, signal) =>
      ended(`The new master (pid ${child.pid}) exited ${signal ? `on ${signal}` : `with code ${code}`}`),
    );
    this.log.info(
      `Upgrading: started a new master (pid ${child.pid}); send TERM to this one (pid ${this.self().pid}) when the new one serves`,
    );
  }

  /** Is the new master this one started still running? Then the service is its, not this master's. */
  successorRunning(): boolean {
    return this.successor !== null && this.successor.pid !== undefined && this.ops.alive(this.successor.pid);
  }

  /** Is another master (new or old) on these sockets still running? Unix socket files are the last one's to remove. */
  sharesSockets(): boolean {
    return this.successorRunning() || (this.parent !== null && this.ops.alive(this.parent));
  }
}
