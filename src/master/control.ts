/**
 * The control socket: a unix socket (mode 0600 from birth, in a directory no one else can
 * write to) on which `tsgun status | reload | scale | stop` talk to a running master. One
 * JSON request line, one JSON reply line, then the master closes the connection.
 */
import { chmodSync, lstatSync, mkdirSync, rmdirSync, statSync, unlinkSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { Settings } from '../config/settings.js';
import { TsgunError } from '../errors.js';
import type { Logger } from '../log.js';
import type { ArbiterSnapshot, CommandResult } from './snapshot.js';
import { shedOverload } from './guard.js';

export type ControlRequest =
  { cmd: 'status' } | { cmd: 'reload' } | { cmd: 'scale'; count: string } | { cmd: 'stop'; quick: boolean };

export interface ControlReply {
  ok: boolean;
  message: string;
  status?: ArbiterSnapshot;
}

/** What the control socket drives: the arbiter. */
export interface ControlTarget {
  snapshot(): ArbiterSnapshot;
  requestReload(): Promise<CommandResult>;
  requestScale(n: number): Promise<CommandResult>;
  requestStop(quick: boolean): void;
}

/** Where control sockets live when no path is configured. */
export function runtimeDir(settings: Pick<Settings, 'pidfile'>, env: NodeJS.ProcessEnv = process.env): string {
  if (settings.pidfile) return path.dirname(path.resolve(settings.pidfile));
  if (env.XDG_RUNTIME_DIR) return path.join(env.XDG_RUNTIME_DIR, 'tsgun');
  return path.join(os.tmpdir(), `tsgun-${process.getuid?.() ?? 'user'}`);
}

export function defaultSocketName(pid: number): string {
  return `tsgun-${pid}.sock`;
}

export function controlSocketPath(settings: Pick<Settings, 'pidfile' | 'control_socket'>, pid: number): string {
  return settings.control_socket
    ? path.resolve(settings.control_socket)
    : path.join(runtimeDir(settings), defaultSocketName(pid));
}

/** Parse `N`, `+N` or `-N` against the current count. */
export function scaleTarget(count: string, current: number): number | string {
  const m = /^([+-]?)(\d+)$/.exec(count.trim());
  if (!m) return `"${count}" is not a worker count; use N, +N or -N`;
  const n = Number(m[2]);
  const target = m[1] === '+' ? current + n : m[1] === '-' ? current - n : n;
  if (target < 1) return `cannot scale to ${target} workers; the minimum is 1 (WINCH stops all workers)`;
  if (target > 1024) return `cannot scale to ${target} workers; the maximum is 1024`;
  return target;
}

/**
 * The default directory must be ours alone: created 0700, or if it exists, owned by us
 * (else someone else could plant a socket there for our own `tsgun stop` to talk to), and
 * narrowed to 0700 if it was left wider.
 */
function secureDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = lstatSync(dir);
  const uid = process.getuid?.();
  if (!st.isDirectory() || (uid !== undefined && st.uid !== uid)) {
    throw new TsgunError(
      'TSGUN_ERR_BIND',
      `the control socket directory ${dir} is not a directory owned by this user (uid ${uid}); remove it or pass --control-socket`,
    );
  }
  if ((st.mode & 0o077) !== 0) chmodSync(dir, 0o700);
}

/**
 * Whether a socket can sit in `dir` itself: only its owner can enter it (0700), or it is
 * root's and nobody else can write to it (/run). Anywhere else (a shared /srv/run, /tmp)
 * others could rename the socket away or plant their own for our clients, so the socket
 * lives in a 0700 subdirectory named after it, `<wanted>.d/`. The rule reads only the
 * directory, so the master and every client place the socket alike.
 */
export function socketLocation(wanted: string): { dir: string; socket: string; own: boolean } {
  const dir = path.dirname(wanted);
  let closed = true;
  try {
    const st = statSync(dir);
    closed = (st.mode & 0o077) === 0 || ((st.mode & 0o022) === 0 && st.uid === 0);
  } catch {
    // Missing: creating the socket says so.
  }
  if (closed) return { dir, socket: wanted, own: false };
  const own = `${wanted}.d`;
  return { dir: own, socket: path.join(own, path.basename(wanted)), own: true };
}

/** What makes `dir` unfit to hold a control socket of this user's, or null. */
function dirProblem(dir: string, own: boolean): string | null {
  let st;
  try {
    st = own ? lstatSync(dir) : statSync(dir);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code ?? String(err);
  }
  const uid = process.getuid?.();
  if (!st.isDirectory()) return st.isSymbolicLink() ? 'a symbolic link' : 'not a directory';
  if (uid !== undefined && st.uid !== uid && st.uid !== 0) return `owned by user id ${st.uid}`;
  if (own && (st.mode & 0o077) !== 0) return `mode ${(st.mode & 0o7777).toString(8)}`;
  return null;
}

/** The socket to talk to for `wanted`, once its directory is known to be root's or ours. */
export function checkedSocket(wanted: string): string {
  const where = socketLocation(wanted);
  const problem = dirProblem(where.dir, where.own);
  if (problem === null || problem === 'ENOENT') return where.socket;
  const why = `the control socket directory ${where.dir} is ${problem}: not one of root's or this user's (0700)`;
  throw new TsgunError('TSGUN_ERR_RUNTIME', `${why}; remove it, or run tsgun as its owner`);
}

/** Check the socket's directory; make the private subdirectory (or take a leftover one of ours). */
function prepareDir(where: { dir: string; own: boolean }): void {
  if (where.own) {
    try {
      mkdirSync(where.dir, { mode: 0o700 });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'EEXIST') {
        throw new TsgunError(
          'TSGUN_ERR_BIND',
          `cannot create the control socket directory ${where.dir}: ${code ?? String(err)}; choose another --control-socket`,
        );
      }
    }
  }
  const problem = dirProblem(where.dir, where.own);
  if (problem !== null && problem !== 'ENOENT') {
    const why = `the control socket directory ${where.dir} is ${problem}: not one of root's or this user's (0700)`;
    throw new TsgunError('TSGUN_ERR_BIND', `${why}; remove it or choose another --control-socket`);
  }
}

export class ControlServer {
  private readonly server: net.Server;

  private constructor(
    readonly path: string,
    server: net.Server,
    private readonly ownDir: string | null,
  ) {
    this.server = server;
  }

  static async start(wanted: string, target: ControlTarget, log: Logger, ownDir: boolean): Promise<ControlServer> {
    if (ownDir) secureDir(path.dirname(wanted));
    const where = socketLocation(wanted);
    prepareDir(where);
    const socketPath = where.socket;
    try {
      unlinkSync(socketPath);
    } catch {
      // Nothing stale to remove.
    }
    const server = net.createServer((conn) => handle(conn, target, log));
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) =>
        reject(
          new TsgunError(
            'TSGUN_ERR_BIND',
            `cannot create the control socket ${socketPath}: ${err.code ?? err.message}; choose another path with --control-socket`,
          ),
        ),
      );
      // The socket file is created inside listen(): with this umask it is 0600 from its first
      // moment, whatever --umask says, so nobody else can connect in between.
      const umask = process.umask(0o177);
      try {
        server.listen(socketPath, () => resolve());
      } finally {
        process.umask(umask);
      }
    });
    server.removeAllListeners('error');
    shedOverload(server, `control socket ${socketPath}`, () => log);
    return new ControlServer(socketPath, server, where.own ? where.dir : null);
  }

  close(): void {
    this.server.close();
    try {
      unlinkSync(this.path);
    } catch {
      // Already gone.
    }
    if (!this.ownDir) return;
    try {
      rmdirSync(this.ownDir);
    } catch {
      // Gone, or holding something else.
    }
  }
}

function handle(conn: net.Socket, target: ControlTarget, log: Logger): void {
  let buffered = '';
  conn.setEncoding('utf8');
  conn.on('error', () => {});
  conn.on('data', (chunk: string) => {
    buffered += chunk;
    const nl = buffered.indexOf('\n');
    if (nl < 0) {
      if (buffered.length > 64 * 1024) conn.destroy();
      return;
    }
    conn.removeAllListeners('data');
    let request: ControlRequest;
    try {
      request = JSON.parse(buffered.slice(0, nl)) as ControlRequest;
    } catch {
      conn.end(`${JSON.stringify({ ok: false, message: 'malformed request' })}\n`);
      return;
    }
    answer(request, target).then(
      (reply) => conn.end(`${JSON.stringify(reply)}\n`),
      (err: unknown) => {
        log.error({ err }, 'control command failed');
        conn.end(`${JSON.stringify({ ok: false, message: String(err) })}\n`);
      },
    );
  });
}

async function answer(request: ControlRequest, target: ControlTarget): Promise<ControlReply> {
  switch (request.cmd) {
    case 'status':
      return { ok: true, message: 'ok', status: target.snapshot() };
    case 'reload':
      return target.requestReload();
    case 'scale': {
      const n = scaleTarget(request.count, target.snapshot().target);
      if (typeof n === 'string') return { ok: false, message: n };
      return target.requestScale(n);
    }
    case 'stop':
      target.requestStop(request.quick);
      return { ok: true, message: request.quick ? 'stopping now' : 'stopping gracefully' };
    default:
      return { ok: false, message: `unknown command ${JSON.stringify((request as { cmd?: unknown }).cmd)}` };
  }
}
