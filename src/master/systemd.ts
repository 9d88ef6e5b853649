/**
 * systemd integration: the notify protocol (READY, RELOADING, STOPPING, STATUS, MAINPID,
 * WATCHDOG) and socket activation (LISTEN_FDS).
 *
 * Node has no unix datagram sockets, and a native addon would need a compiler on the
 * user's machine; the `systemd-notify` tool ships with systemd wherever NOTIFY_SOCKET
 * can be set. Its limits, handled here: messages come from the tool's pid, so the unit
 * needs `NotifyAccess=all` (contrib/systemd/tsgun.service sets it; a USR2 successor needs
 * it anyway); the tool waits until systemd has read each message (its default barrier), so
 * it is never mistaken for a stranger; and calls are serialized so messages keep their order.
 */
import { spawn } from 'node:child_process';
import { readFileSync, readlinkSync } from 'node:fs';
import type { Logger } from '../log.js';

export type NotifyFields = Record<string, string | number>;

export class Notifier {
  private chain: Promise<void> = Promise.resolve();
  private warned = false;
  private watchdog: NodeJS.Timeout | null = null;

  private constructor(
    readonly socket: string,
    private readonly log: Logger,
    private readonly command: string,
  ) {}

  /**
   * A notifier if systemd asked for one. Takes NOTIFY_SOCKET and the watchdog variables out
   * of the environment, so that workers and the app do not inherit them.
   */
  static fromEnv(env: NodeJS.ProcessEnv, log: Logger): { notifier: Notifier | null; watchdogUsec: number | null } {
    const socket = env.NOTIFY_SOCKET;
    const usec = Number(env.WATCHDOG_USEC);
    const watchdogPid = Number(env.WATCHDOG_PID);
    delete env.NOTIFY_SOCKET;
    delete env.WATCHDOG_USEC;
    delete env.WATCHDOG_PID;
    const watchdogUsec = usec > 0 && (!watchdogPid || watchdogPid === process.pid) ? usec : null;
    return {
      notifier: socket ? new Notifier(socket, log, env.TSGUN_SYSTEMD_NOTIFY ?? 'systemd-notify') : null,
      watchdogUsec,
    };
  }

  /** Send one message (fields joined by newlines), after any earlier ones. */
  notify(fields: NotifyFields): Promise<void> {
    const args = Object.entries(fields).map(([k, v]) => `${k}=${String(v).replace(/\n/g, ' ')}`);
    // A message that cannot be sent (no descriptors for the child) must not stop the later ones.
    this.chain = this.chain
      .then(() => this.send(args))
      .catch((err: unknown) => this.log.warn({ err }, `cannot notify systemd: ${String(err)}`));
    return this.chain;
  }

  private send(args: string[]): Promise<void> {
    return new Promise((resolve) => {
      const child = spawn(this.command, args, {
        env: { ...process.env, NOTIFY_SOCKET: this.socket },
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let stderr = '';
      child.stderr?.setEncoding('utf8').on('data', (c: string) => (stderr += c));
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      child.once('error', (err: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        if (!this.warned) {
          this.warned = true;
          this.log.warn(
            `NOTIFY_SOCKET is set but ${this.command} cannot run (${err.code ?? err.message}); install systemd's systemd-notify, or use Type=simple`,
          );
        }
        resolve();
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        if (code !== 0) this.log.warn(`${this.command} ${args.join(' ')} failed (exit ${code}): ${stderr.trim()}`);
        resolve();
      });
    });
  }

  /** WATCHDOG=1 at half the interval systemd asked for, from the master's event loop. */
  startWatchdog(usec: number): void {
    const ms = Math.max(100, usec / 2000);
    this.watchdog = setInterval(() => void this.notify({ WATCHDOG: 1 }), ms);
    this.log.info(`systemd watchdog: pinging every ${(ms / 1000).toFixed(2)} s`);
  }

  /** Wait for queued messages (before exit). */
  async close(): Promise<void> {
    if (this.watchdog) clearInterval(this.watchdog);
    await this.chain;
  }
}

/** CLOCK_MONOTONIC in microseconds, as RELOADING=1 wants it (libuv's hrtime is that clock). */
export function monotonicUsec(): string {
  return String(process.hrtime.bigint() / 1000n);
}

/** A socket systemd passed (socket activation). */
export interface ActivatedSocket {
  fd: number;
  name: string;
}

export const SD_LISTEN_FDS_START = 3;

/** The sockets systemd passed to this process, if any; clears LISTEN_* so workers do not see them. */
export function activatedSockets(env: NodeJS.ProcessEnv): ActivatedSocket[] {
  const pid = Number(env.LISTEN_PID);
  const count = Number(env.LISTEN_FDS);
  const names = (env.LISTEN_FDNAMES ?? '').split(':');
  delete env.LISTEN_PID;
  delete env.LISTEN_FDS;
  delete env.LISTEN_FDNAMES;
  if (pid !== process.pid || !Number.isInteger(count) || count <= 0) return [];
  return Array.from({ length: count }, (_, i) => ({ fd: SD_LISTEN_FDS_START + i, name: names[i] || 'unknown' }));
}

/** The path of a unix socket fd, found through /proc (Node's pipe handles have no getsockname). */
export function unixSocketPath(fd: number): string | null {
  try {
    const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/self/fd/${fd}`));
    if (!m) return null;
    for (const line of readFileSync('/proc/net/unix', 'utf8').split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols[6] === m[1]) return cols[7] ?? null;
    }
  } catch {
    // No /proc: not Linux, or a restricted container.
  }
  return null;
}
