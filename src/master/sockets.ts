/**
 * Listening sockets. The master binds but never listens or polls: a socket the master
 * polled would hand it connections it never serves. Workers receive each socket's fd
 * and call listen() on it themselves, the way Node's own cluster primary prepares a
 * shared handle for its workers.
 */
import { lookup } from 'node:dns/promises';
import { existsSync, lchownSync, lstatSync, statSync, unlinkSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { getSystemErrorName } from 'node:util';
import { parseBind, type BindSpec } from '../config/bind.js';
import { TsgunError } from '../errors.js';
import type { Logger } from '../log.js';
import type { SocketInfo } from '../ipc.js';
import { unixSocketPath, type ActivatedSocket } from './systemd.js';

/** The libuv handle behind a net.Server (Node's internal TCP or Pipe wrap). */
interface ServerHandle {
  readonly fd: number;
  getsockname?(out: { address?: string; port?: number; family?: string }): number;
  close(): void;
}

type CreateServerHandle = (
  address: string | null,
  port: number | null,
  addressType: number | null,
  fd?: number,
  flags?: number,
) => ServerHandle | number;
// net._createServerHandle is what Node's cluster primary uses to bind a shared handle without listening.
const createServerHandle = (net as unknown as { _createServerHandle: CreateServerHandle })._createServerHandle;

export interface BoundSocket extends SocketInfo {
  spec: BindSpec;
  handle: ServerHandle;
  /** A unix socket file this master created, with its inode, removed at close if unchanged. */
  unixFile: { path: string; ino: number } | null;
  /** The name systemd gave a socket it passed (socket activation); such sockets are never unlinked. */
  systemd?: string;
}

function bindError(spec: BindSpec, code: number): TsgunError {
  const name = getSystemErrorName(code);
  const what = spec.kind === 'fd' ? `file descriptor ${spec.fd}` : spec.raw;
  if (spec.kind === 'unix') {
    const dir = path.dirname(path.resolve(spec.path));
    const unixAdvice: Record<string, string> = {
      EACCES: `is in ${dir}, where tsgun (uid ${process.getuid?.()}) may not create files; choose a writable directory, or create this one for tsgun's user (systemd: RuntimeDirectory=)`,
      ENOENT: `is in ${dir}, which does not exist; create it (systemd: RuntimeDirectory=) or choose another path`,
      ENOTDIR: `is in ${dir}, which is not a directory; choose another path`,
      EROFS: `is in ${dir}, on a read-only file system; choose a writable directory such as /run or /tmp`,
    };
    // libuv reports a missing directory as EACCES.
    const reported = name === 'EACCES' && !existsSync(dir) ? 'ENOENT' : name;
    const hint = unixAdvice[reported];
    if (hint) return new TsgunError('TSGUN_ERR_BIND', `cannot bind ${what}: ${reported}, it ${hint}`);
  }
  const advice: Record<string, string> = {
    EADDRINUSE: 'is already in use; stop the other server or choose another address with --bind',
    EACCES:
      'needs more privilege; ports below 1024 need root (tsgun drops privileges in workers with --user) or CAP_NET_BIND_SERVICE',
    EADDRNOTAVAIL: 'is not an address of this machine; check --bind',
    EINVAL: 'is not a socket tsgun can listen on',
    EBADF: 'is not an open file descriptor',
    ENOENT: 'is in a directory that does not exist',
    EAFNOSUPPORT: 'uses an address family this machine does not support',
  };
  return new TsgunError('TSGUN_ERR_BIND', `cannot bind ${what}: ${name}, it ${advice[name] ?? 'cannot be bound'}`);
}

function tcpLabel(address: string, port: number, family: string | number | undefined): string {
  return family === 'IPv6' || family === 6 ? `http://[${address}]:${port}` : `http://${address}:${port}`;
}

/** Is somebody accepting on this unix socket file? */
function unixSocketLive(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.connect(path);
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
}

async function prepareUnixPath(spec: Extract<BindSpec, { kind: 'unix' }>): Promise<void> {
  let st;
  try {
    st = lstatSync(spec.path);
  } catch {
    return;
  }
  if (!st.isSocket())
    throw new TsgunError(
      'TSGUN_ERR_BIND',
      `cannot bind ${spec.raw}: ${spec.path} exists and is not a socket; remove it or choose another path`,
    );
  if (await unixSocketLive(spec.path))
    throw new TsgunError(
      'TSGUN_ERR_BIND',
      `cannot bind ${spec.raw}: another server is accepting on ${spec.path}; stop it or choose another path`,
    );
  unlinkSync(spec.path);
}

async function bindOnce(spec: BindSpec, reusePort: boolean, owner: SocketOwner | null): Promise<BoundSocket | number> {
  if (spec.kind === 'unix') {
    await prepareUnixPath(spec);
    const handle = createServerHandle(spec.path, -1, -1);
    if (typeof handle === 'number') return handle;
    // As Gunicorn does: the socket belongs to the workers' user and group, so a proxy in that
    // group (nginx as www-data) can connect. Its mode is the umask's, set when it was created.
    if (owner) {
      try {
        lchownSync(spec.path, owner.uid, owner.gid);
      } catch (err) {
        handle.close();
        const code = (err as NodeJS.ErrnoException).code ?? String(err);
        throw new TsgunError(
          'TSGUN_ERR_BIND',
          `cannot bind ${spec.raw}: cannot give the socket to uid ${owner.uid}, gid ${owner.gid} (--user/--group): ${code}`,
        );
      }
    }
    return {
      spec,
      handle,
      fd: handle.fd,
      label: `unix:${spec.path}`,
      unixFile: { path: spec.path, ino: statSync(spec.path).ino },
    };
  }
  if (spec.kind === 'fd') {
    const handle = createServerHandle(null, null, null, spec.fd);
    if (typeof handle === 'number') return handle;
    const out: { address?: string; port?: number; family?: string } = {};
    const err = handle.getsockname?.(out) ?? 0;
    const label =
      handle.getsockname && !err && out.address ? tcpLabel(out.address, out.port!, out.family) : `unix:fd://${spec.fd}`;
    return { spec, handle, fd: handle.fd, label, unixFile: null };
  }
  let address = spec.host;
  let family = net.isIP(address);
  if (family === 0) {
    try {
      const found = await lookup(address);
      [address, family] = [found.address, found.family];
    } catch {
      throw new TsgunError(
        'TSGUN_ERR_BIND',
        `cannot bind ${spec.raw}: host ${JSON.stringify(spec.host)} does not resolve; use an IP address or a name in /etc/hosts`,
      );
    }
  }
  const handle = createServerHandle(address, spec.port, family, undefined, reusePort ? UV_TCP_REUSEPORT : 0);
  if (typeof handle === 'number') return handle;
  // libuv defers EADDRINUSE from bind() to listen(); getsockname() reports it now.
  const out: { address?: string; port?: number; family?: string } = {};
  const err = handle.getsockname!(out);
  if (err) {
    handle.close();
    return err;
  }
  const reuse = reusePort ? { reusePort: { host: out.address!, port: out.port! } } : {};
  return {
    spec,
    handle,
    fd: handle.fd,
    label: tcpLabel(out.address!, out.port!, out.family),
    unixFile: null,
    ...reuse,
  };
}

/**
 * USR2 hands the listening sockets to the new master as inherited fds, listed in this
 * environment variable as JSON `[{ fd, raw, label }]` (raw: the bind address as configured).
 */
export const INHERITED_ENV = 'TSGUN_LISTEN_FDS';

interface InheritedSocket {
  fd: number;
  raw: string;
  label: string;
}

/** Describe sockets for a child that receives them at stdio slots `firstFd`, `firstFd + 1`, ... */
export function describeInherited(sockets: readonly BoundSocket[], firstFd: number): string {
  return JSON.stringify(sockets.map((s, i): InheritedSocket => ({ fd: firstFd + i, raw: s.spec.raw, label: s.label })));
}

/** Wrap a socket fd this process inherited (from a USR2 predecessor). */
function adopt(inherited: InheritedSocket): BoundSocket {
  const spec = parseBind(inherited.raw);
  const handle = createServerHandle(null, null, null, inherited.fd);
  if (typeof handle === 'number')
    throw bindError({ kind: 'fd', fd: inherited.fd, raw: `fd://${inherited.fd}` }, handle);
  let unixFile: BoundSocket['unixFile'] = null;
  if (spec.kind === 'unix') {
    try {
      unixFile = { path: spec.path, ino: statSync(spec.path).ino };
    } catch {
      // The file was removed; the socket still works for whoever holds it.
    }
  }
  return { spec, handle, fd: handle.fd, label: inherited.label, unixFile };
}

/** Wrap the sockets systemd passed (LISTEN_FDS). They replace `bind`, and stay systemd's: never unlinked. */
export function adoptActivated(activated: readonly ActivatedSocket[]): BoundSocket[] {
  return activated.map((a) => {
    const spec: BindSpec = { kind: 'fd', fd: a.fd, raw: `fd://${a.fd}` };
    const handle = createServerHandle(null, null, null, a.fd);
    if (typeof handle === 'number') throw bindError(spec, handle);
    const out: { address?: string; port?: number; family?: string } = {};
    const tcp = handle.getsockname !== undefined && handle.getsockname(out) === 0 && out.address !== undefined;
    const unixPath = tcp ? null : unixSocketPath(a.fd);
    const label = tcp ? tcpLabel(out.address!, out.port!, out.family) : `unix:${unixPath ?? `fd://${a.fd}`}`;
    return { spec, handle, fd: handle.fd, label, unixFile: null, systemd: a.name };
  });
}

/** The sockets a USR2 predecessor passed down, if any. */
export function inheritedSockets(env: NodeJS.ProcessEnv): BoundSocket[] {
  const raw = env[INHERITED_ENV];
  if (!raw) return [];
  return (JSON.parse(raw) as InheritedSocket[]).map(adopt);
}

/** Node >= 22.12 binds and listens with SO_REUSEPORT (libuv's UV_TCP_REUSEPORT). */
export const REUSE_PORT_SUPPORTED = ((): boolean => {
  const [major = 0, minor = 0] = process.versions.node.split('.').map(Number);
  return major > 22 || (major === 22 && minor >= 12);
})();
const UV_TCP_REUSEPORT = 2;

/** Who unix socket files are given to: the workers' --user and --group. */
export interface SocketOwner {
  uid: number;
  gid: number;
}

export interface BindOptions {
  log: Logger;
  /** Owner of the unix socket files bound now (null: left to the master's user). */
  owner?: SocketOwner | null;
  /** Bind TCP sockets with SO_REUSEPORT, so workers can open their own on the same port. */
  reusePort?: boolean;
  /** Sockets already open (a reload's current ones, a predecessor's), reused for the same address. */
  reuse?: readonly BoundSocket[];
  /** Attempts for an address in use (Gunicorn tries 5 times, a second apart). */
  attempts?: number;
  retryDelayMs?: number;
}

/** Bind every address, or none: on failure the ones already bound are closed. */
export async function bindAll(addresses: readonly string[], opts: BindOptions): Promise<BoundSocket[]> {
  const attempts = opts.attempts ?? 5;
  const bound: BoundSocket[] = [];
  const reusable = new Map((opts.reuse ?? []).map((s) => [s.spec.raw, s]));
  const fresh: BoundSocket[] = [];
  try {
    for (const raw of addresses) {
      const spec = parseBind(raw);
      const existing = reusable.get(spec.raw);
      if (existing) {
        reusable.delete(spec.raw);
        bound.push(existing);
        continue;
      }
      for (let attempt = 1; ; attempt++) {
        const result = await bindOnce(spec, opts.reusePort === true && REUSE_PORT_SUPPORTED, opts.owner ?? null);
        if (typeof result !== 'number') {
          bound.push(result);
          fresh.push(result);
          break;
        }
        if (getSystemErrorName(result) !== 'EADDRINUSE' || attempt >= attempts) throw bindError(spec, result);
        opts.log.error(`Connection in use: ${spec.raw}; retrying in ${(opts.retryDelayMs ?? 1000) / 1000} s`);
        await new Promise((r) => setTimeout(r, opts.retryDelayMs ?? 1000));
      }
    }
  } catch (err) {
    closeAll(fresh);
    throw err;
  }
  return bound;
}

/** Close the master's handles and remove the unix socket files it created (if still its own). */
export function closeAll(sockets: readonly BoundSocket[], { unlink = true } = {}): void {
  for (const s of sockets) {
    if (s.unixFile) {
      // libuv unlinks a bound pipe's path when its handle closes, whoever's file it is by
      // then. A file shared with another master, or replaced since, must outlive us: leave
      // the handle to the exit of this process.
      let ours = false;
      try {
        ours = statSync(s.unixFile.path).ino === s.unixFile.ino;
      } catch {
        // Gone already.
      }
      if (!unlink || !ours) continue;
    }
    s.handle.close();
    if (unlink && s.unixFile) {
      try {
        if (statSync(s.unixFile.path).ino === s.unixFile.ino) unlinkSync(s.unixFile.path);
      } catch {
        // Already gone.
      }
    }
  }
}
