/**
 * A worker's connection table. `worker_connections` is counted here rather than by Node's
 * `server.maxConnections`, which refuses every connection past the limit at accept: a worker
 * held at its limit by connections that send nothing, or by idle keep-alive ones, would then
 * lock every new client out. At the limit, the table makes room instead, closing idle
 * connections oldest first (as nginx reuses its idle keep-alive connections when it runs out),
 * and refuses a new connection only when every one it holds is busy. It also closes
 * connections that have not sent their first byte within `idle_connection_timeout`.
 *
 * The file descriptor limit (ulimit -n) is a second limit of the same kind: a worker out of
 * descriptors cannot accept, and libuv then drops the waiting connections without telling
 * Node. So the table also makes room before the descriptors run out, and says so.
 */
import { readdirSync, readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import type { Logger } from '../log.js';

/** Set by the worker's WebSocket support on a socket that an upgrade took over: never evicted. */
export const kUpgraded = Symbol.for('tsgun.upgraded');
const kEntry = Symbol('tsgun.connection');

/** How often at most a worker warns that it refuses or drops connections. */
const WARN_EVERY_MS = 10_000;

/** This process's file descriptor limit (Linux, /proc/self/limits); null where unknown or unlimited. */
function descriptorLimit(): number | null {
  try {
    const m = /^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/**
 * How many connections the descriptors left allow: the limit, less those open now (the
 * listening sockets, the IPC channel, the app's files), less a reserve for what the app opens
 * later. Infinity where unknown.
 */
function descriptorRoom(): number {
  const limit = descriptorLimit();
  if (limit === null) return Infinity;
  try {
    return Math.max(1, limit - readdirSync('/proc/self/fd').length - Math.max(16, Math.ceil(limit / 20)));
  } catch {
    return Infinity;
  }
}

interface Entry {
  /** The accepted socket: its bytesRead tells a silent connection (over TLS, the handshake counts). */
  readonly raw: Socket;
  /** The socket the HTTP server reads: `raw`, or the TLS socket over it once its handshake is done. */
  http: Socket | null;
  /** When it was accepted (ms). */
  readonly at: number;
  /** It has had at least one request. */
  served: boolean;
  /** When it was last used, on the table's own clock (admit and each request tick it): the least recently used goes first. */
  used: number;
  /** Still sending its PROXY protocol header. */
  opening: boolean;
}

type HttpSocket = Socket & {
  [kUpgraded]?: boolean;
  [kEntry]?: Entry;
  /** Node's parser, detached (null) once an upgrade took the socket over. */
  parser?: unknown;
  /** Node's response in progress on the connection (see http.ts). */
  _httpMessage?: unknown;
};

export class ConnectionTable {
  /**
   * In order of accept. Which one was used least recently is in each entry (`used`), not in
   * this order: moving an entry to the end on every request cost a Map delete and insert per
   * request, and the order is read only when the table is full.
   */
  private readonly entries = new Map<Socket, Entry>();
  /** Ticks on every admit and request: `used` of the entries. */
  private clock = 0;
  /** Entries not yet seen to have sent a byte, in order of accept. */
  private readonly fresh = new Set<Entry>();
  /** Sweeps `fresh` while it holds entries; none runs while every connection has sent something. */
  private sweeper: NodeJS.Timeout | null = null;
  private readonly warned = new Map<string, { at: number; count: number }>();
  /** How many connections the file descriptors allow (see measure). */
  private fdRoom = Infinity;

  /**
   * @param limit most connections (0: no limit)
   * @param firstByteMs how long a new connection has to send its first byte (0: no limit)
   */
  constructor(
    private readonly limit: number,
    private readonly firstByteMs: number,
    private readonly log: Logger,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  /** Count the descriptors left, once the worker is listening (before, its sockets are not open). */
  measure(): void {
    this.fdRoom = descriptorRoom();
  }

  /**
   * A connection was accepted. At the limit, close the least recently used idle connection
   * to make room for it; with none idle, close the new one.
   * @param opening it starts with a PROXY protocol header
   * @param tls the HTTP server will read it through a TLS socket (see `secured`)
   */
  admit(raw: Socket, opening: boolean, tls: boolean): void {
    const full = this.limit > 0 && this.entries.size >= this.limit;
    if (!full && this.entries.size >= this.fdRoom) {
      this.warn(
        'fds',
        `file descriptors running out (${this.fdRoom} connections open): closing idle connections, or refusing new ones; raise ulimit -n`,
      );
    }
    if ((full || this.entries.size >= this.fdRoom) && !this.evictIdle()) {
      if (full)
        this.warn(
          'limit',
          `worker_connections (${this.limit}) reached and every connection is busy: refusing new connections`,
        );
      raw.destroy();
      return;
    }
    const entry: Entry = { raw, http: tls ? null : raw, at: Date.now(), served: false, used: ++this.clock, opening };
    (raw as HttpSocket)[kEntry] = entry;
    this.entries.set(raw, entry);
    if (this.firstByteMs > 0) {
      this.fresh.add(entry);
      this.sweeper ??= setInterval(() => this.sweep(), Math.max(100, Math.min(1000, this.firstByteMs / 4))).unref();
    }
    raw.once('close', () => {
      this.entries.delete(raw);
      this.fresh.delete(entry);
    });
  }

  /** The PROXY header is in: the connection is the HTTP server's now. */
  opened(raw: Socket): void {
    const entry = (raw as HttpSocket)[kEntry];
    if (entry) entry.opening = false;
  }

  /** The TLS handshake over `raw` is done; `socket` is what the HTTP server reads. */
  secured(raw: Socket, socket: Socket): void {
    const entry = (raw as HttpSocket)[kEntry];
    if (!entry) return;
    entry.http = socket;
    (socket as HttpSocket)[kEntry] = entry;
  }

  /** A request arrived on this (HTTP/1.1) socket: it is the most recently used now. Per request: two stores. */
  used(socket: Socket): void {
    const entry = (socket as HttpSocket)[kEntry];
    if (!entry) return;
    entry.served = true;
    entry.used = ++this.clock;
  }

  /**
   * The listening socket failed to accept (EMFILE, ENFILE: out of file descriptors). The
   * kernel's queue is dropped by libuv meanwhile; closing an idle connection frees a
   * descriptor for the next client.
   */
  acceptFailed(err: NodeJS.ErrnoException): void {
    if (err.code === 'EMFILE' || err.code === 'ENFILE') {
      this.warn('fds', `accept failed (${err.code}: out of file descriptors): dropping connections; raise ulimit -n`);
      this.evictIdle();
      return;
    }
    this.warn(`accept ${err.code ?? err.message}`, `accept failed: ${err.message}`);
  }

  /**
   * Idle: it has sent nothing yet (or only part of its PROXY header), or it has been served and
   * waits for its next request with no response in progress. Never: a connection that a
   * WebSocket (or any upgrade) took over, a request in flight, a TLS handshake, an HTTP/2 session.
   */
  private idle(entry: Entry): boolean {
    if (entry.raw.bytesRead === 0 || entry.opening) return true;
    const s = entry.http as HttpSocket | null;
    if (!s || !entry.served || s[kUpgraded]) return false;
    return s.parser != null && !s._httpMessage;
  }

  /** Close the least recently used idle connection: one pass over the table, only when it is full. */
  private evictIdle(): boolean {
    let oldest: Entry | null = null;
    for (const entry of this.entries.values()) {
      if ((oldest === null || entry.used < oldest.used) && this.idle(entry)) oldest = entry;
    }
    if (!oldest) return false;
    this.log.debug(`Closing an idle connection from ${oldest.raw.remoteAddress} to make room for a new one`);
    this.entries.delete(oldest.raw);
    this.fresh.delete(oldest);
    oldest.raw.destroy();
    return true;
  }

  /** Close connections that have sent nothing within firstByteMs of their accept. */
  private sweep(): void {
    if (this.fresh.size === 0) {
      clearInterval(this.sweeper!);
      this.sweeper = null;
      return;
    }
    const before = Date.now() - this.firstByteMs;
    for (const entry of this.fresh) {
      if (entry.raw.bytesRead > 0) {
        this.fresh.delete(entry);
        continue;
      }
      // In order of accept: the rest are younger.
      if (entry.at > before) return;
      this.log.debug(
        `Closing a connection from ${entry.raw.remoteAddress} that sent nothing in ${this.firstByteMs / 1000} s`,
      );
      this.fresh.delete(entry);
      entry.raw.destroy();
    }
  }

  /** Log a warning once per WARN_EVERY_MS for each kind, with how many happened meanwhile. */
  private warn(kind: string, message: string): void {
    const now = Date.now();
    const last = this.warned.get(kind);
    if (last && now - last.at < WARN_EVERY_MS) {
      last.count++;
      return;
    }
    const more = last && last.count > 0 ? ` (${last.count} more since the last warning)` : '';
    this.warned.set(kind, { at: now, count: 0 });
    this.log.warn(`${message}${more}`);
  }
}
