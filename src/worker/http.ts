/**
 * The default `http` worker: one node:http server per inherited socket, and the drain
 * that lets a worker leave without failing a request.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import net, { type Socket } from 'node:net';
import type { TsgunWorker, WorkerContext } from './interface.js';

/** How long an idle keep-alive connection is given, once draining, to send one more request. */
const IDLE_GRACE_MS = 1000;

const kBusy = Symbol('tsgun.busy');
type TrackedSocket = Socket & { [kBusy]: number };

export class HttpWorker implements TsgunWorker {
  private readonly servers: http.Server[] = [];
  private readonly conns = new Set<TrackedSocket>();
  /** Responses not yet finished, so a drain can still turn them into `Connection: close`. */
  private readonly inFlight = new Set<ServerResponse>();
  private draining = false;
  private readonly keepAlive: boolean;
  private drained: (() => void) | null = null;

  constructor(private readonly ctx: WorkerContext) {
    this.keepAlive = ctx.settings.keepalive > 0;
  }

  async start(): Promise<void> {
    const { settings } = this.ctx;
    for (const socket of this.ctx.sockets) {
      const server = http.createServer({ keepAliveTimeout: settings.keepalive * 1000 }, this.handle);
      server.on('connection', this.track);
      server.on('clientError', (err: NodeJS.ErrnoException, sock: Socket) => {
        if (err.code === 'ECONNRESET' || !sock.writable) {
          sock.destroy();
          return;
        }
        sock.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
      });
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen({ fd: socket.fd, backlog: settings.backlog }, () => {
          server.off('error', reject);
          resolve();
        });
      });
      this.servers.push(server);
    }
  }

  connections(): number {
    return this.conns.size;
  }

  private readonly track = (socket: Socket): void => {
    const s = socket as TrackedSocket;
    // Node reads the peer address lazily and caches it; once the socket is closed it can no
    // longer be read, and an aborted request's access-log line would show "-" as the client.
    void s.remoteAddress;
    s[kBusy] = 0;
    this.conns.add(s);
    s.once('close', () => {
      this.conns.delete(s);
      if (this.draining && this.conns.size === 0) this.drained?.();
    });
    if (this.draining) this.closeWhenIdle(s);
  };

  private readonly handle = (req: IncomingMessage, res: ServerResponse): void => {
    const s = req.socket as TrackedSocket;
    s[kBusy]++;
    if (this.draining || !this.keepAlive) res.shouldKeepAlive = false;
    this.inFlight.add(res);
    res.once('close', () => {
      this.inFlight.delete(res);
      s[kBusy]--;
      if (this.draining) this.closeWhenIdle(s);
    });
    this.ctx.listener(req, res);
  };

  /**
   * Close a connection that has no request in flight, but only after a grace period: a
   * client may have sent its next request at this very instant, and closing now would
   * reset it. A request that arrives in the grace is served and answered with
   * `Connection: close`.
   */
  private closeWhenIdle(s: TrackedSocket): void {
    if (s[kBusy] > 0 || s.destroyed) return;
    setTimeout(() => {
      if (s[kBusy] === 0) s.destroy();
    }, IDLE_GRACE_MS).unref();
  }

  async stop(graceful: boolean): Promise<void> {
    this.draining = true;
    // A response already in progress whose headers are not out yet still gets to say
    // `Connection: close`, so its client does not send another request on it.
    for (const res of this.inFlight) if (!res.headersSent) res.shouldKeepAlive = false;
    for (const server of this.servers) {
      // http.Server#close() would also close idle keep-alive connections at once, racing
      // with requests already on their way; net.Server#close() only stops accepting.
      net.Server.prototype.close.call(server);
    }
    if (!graceful) {
      for (const s of this.conns) s.destroy();
      return;
    }
    if (this.conns.size === 0) return;
    const done = new Promise<void>((resolve) => (this.drained = resolve));
    for (const s of this.conns) this.closeWhenIdle(s);
    await done;
  }
}
