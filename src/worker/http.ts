/**
 * The built-in workers: `http` (HTTP/1.1, or HTTPS with certfile/keyfile) and `http2`
 * (HTTP/2 over TLS, HTTP/1.1 for clients that do not offer h2 by ALPN). One server per
 * inherited socket, the request limits and proxy handling of the HTTP settings, and the
 * drain that lets a worker leave without failing a request.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import net, { type Socket } from 'node:net';
import type { TLSSocket, TlsOptions } from 'node:tls';
import type { TsgunWorker, WorkerContext } from './interface.js';
import { clientOf, forwarded, kClient, kScheme, parseProxyHeader, PeerList, presentClient } from './proxy.js';

/** How long an idle keep-alive connection is given, once draining, to send one more request. */
const IDLE_GRACE_MS = 1000;

const kBusy = Symbol('tsgun.busy');
const kPeer = Symbol('tsgun.peer');
const kTrusted = Symbol('tsgun.trusted');
const kTls = Symbol('tsgun.tls');
const kPresented = Symbol('tsgun.presented');
/** The response in progress on an HTTP/1.1 connection (one at a time, even when pipelined). */
const kResponse = Symbol('tsgun.response');
/** On a raw socket that came with a PROXY header: the client it named (for the TLS socket over it). */
const kProxied = Symbol('tsgun.proxied');
type TrackedSocket = Socket & { [kBusy]: number; [kPeer]: string | undefined; [kTrusted]: boolean; [kTls]: boolean; [kPresented]?: boolean; [kResponse]?: ServerResponse | null };

type AnyServer = http.Server | https.Server | http2.Http2SecureServer;

function reply(res: ServerResponse, status: number, text: string): void {
  res.shouldKeepAlive = false;
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(text), connection: 'close' });
  res.end(text);
}

export class HttpWorker implements TsgunWorker {
  protected readonly servers: AnyServer[] = [];
  private readonly fronts: net.Server[] = [];
  private readonly conns = new Set<TrackedSocket>();
  /** TLS connections from accept until their handshake is done: a drain waits for them too. */
  private readonly handshaking = new Set<Socket>();
  private readonly sessions = new Set<http2.Http2Session>();
  private draining = false;
  private drained: (() => void) | null = null;
  private inflight = 0;
  private readonly s;
  private readonly keepAlive: boolean;
  private readonly forwardedFrom: PeerList;
  private readonly proxyFrom: PeerList | null;
  private readonly defaultHeaders: Array<[string, string]>;
  private readonly http2: boolean;

  constructor(protected readonly ctx: WorkerContext) {
    this.s = ctx.settings;
    this.keepAlive = this.s.keepalive > 0;
    this.forwardedFrom = new PeerList(this.s.forwarded_allow_ips);
    this.proxyFrom = this.s.proxy_protocol === 'off' ? null : new PeerList(this.s.proxy_allow_ips);
    this.http2 = this.s.worker_class === 'http2';
    this.defaultHeaders = this.s.headers.map((h) => {
      const colon = h.indexOf(':');
      return [h.slice(0, colon).trim(), h.slice(colon + 1).trim()];
    });
    if (this.s.server_header) this.defaultHeaders.unshift(['Server', 'tsgun']);
  }

  async start(): Promise<void> {
    const s = this.s;
    const tls: TlsOptions | null = this.ctx.tls ? { ...this.ctx.tls } : null;
    if (this.http2 && !tls) throw new Error('worker_class http2 serves HTTP/2 over TLS: give it --certfile and --keyfile');
    if (this.http2) tls!.ALPNProtocols = ['h2', 'http/1.1'];
    const common = {
      keepAliveTimeout: s.keepalive * 1000,
      // Node requires headersTimeout <= requestTimeout.
      headersTimeout: (s.request_timeout > 0 && (s.headers_timeout === 0 || s.headers_timeout > s.request_timeout) ? s.request_timeout : s.headers_timeout) * 1000,
      requestTimeout: s.request_timeout * 1000,
      // Node checks both timeouts on this interval; the default (30 s) is too coarse for short ones.
      connectionsCheckingInterval: Math.max(250, Math.min(5000, ((s.headers_timeout || 30) * 1000) / 4)),
      // The request line and the fields all count against Node's one header limit.
      maxHeaderSize: Math.max(16 * 1024, s.limit_request_line + s.limit_request_fields * (s.limit_request_field_size + 4) + 1024),
    };
    for (const socket of this.ctx.sockets) {
      let server: AnyServer;
      if (this.http2) {
        server = http2.createSecureServer({ ...tls, allowHTTP1: true }, this.handle as never);
        server.on('session', (session: http2.Http2Session) => {
          this.sessions.add(session);
          session.once('close', () => this.sessions.delete(session));
          if (this.draining) session.close();
        });
      } else if (tls) {
        server = https.createServer({ ...tls, ...common }, this.handle);
      } else {
        server = http.createServer(common, this.handle);
      }
      if (!this.http2) {
        const h1 = server as http.Server;
        h1.maxHeadersCount = s.limit_request_fields > 0 ? s.limit_request_fields + 1 : 2000;
        h1.on('clientError', this.clientError);
      }
      server.on(tls ? 'secureConnection' : 'connection', (sock: Socket) => this.track(sock, tls !== null));
      if (tls) server.on('connection', (raw: Socket) => this.handshake(raw));
      const listener = this.proxyFrom ? this.proxyFront(server, tls !== null) : server;
      if (s.worker_connections > 0) (listener as net.Server).maxConnections = s.worker_connections;
      await new Promise<void>((resolve, reject) => {
        listener.once('error', reject);
        const where = socket.reusePort ? { host: socket.reusePort.host, port: socket.reusePort.port, reusePort: true } : { fd: socket.fd };
        listener.listen({ ...where, backlog: s.backlog }, () => {
          listener.off('error', reject);
          resolve();
        });
      });
      this.servers.push(server);
      if (listener !== server) this.fronts.push(listener as net.Server);
    }
  }

  connections(): number {
    return this.conns.size;
  }

  /**
   * PROXY protocol: a plain TCP server accepts, reads the PROXY header (from allowed peers
   * only), and hands the rest of the stream to the HTTP server.
   */
  private proxyFront(server: AnyServer, tls: boolean): net.Server {
    const mode = this.s.proxy_protocol;
    const allowed = this.proxyFrom!;
    return net.createServer({ pauseOnConnect: false }, (sock) => {
      let buf = Buffer.alloc(0);
      const peer = sock.remoteAddress;
      const onData = (chunk: Buffer): void => {
        buf = Buffer.concat([buf, chunk]);
        const parsed = parseProxyHeader(buf);
        if (parsed.state === 'more') return;
        sock.off('data', onData);
        sock.pause();
        const trustedPeer = allowed.has(peer);
        const reject = (): void => void sock.destroy();
        if (parsed.state === 'error') return reject();
        if (parsed.state === 'done') {
          if (!trustedPeer || (mode === 'v1' && parsed.version !== 1) || (mode === 'v2' && parsed.version !== 2)) return reject();
          if (parsed.client) {
            presentClient(sock, parsed.client, undefined);
            (sock as Socket & { [kProxied]?: string })[kProxied] = parsed.client;
          }
          buf = buf.subarray(parsed.length);
        } else if (trustedPeer && mode !== 'auto') {
          return reject();
        }
        if (buf.length) sock.unshift(buf);
        server.emit('connection', sock);
        // TLS takes the unshifted bytes over by itself; resuming here would spill them past it.
        if (!tls) sock.resume();
      };
      sock.on('data', onData);
      sock.on('error', () => sock.destroy());
    });
  }

  private readonly clientError = (err: NodeJS.ErrnoException, sock: Socket): void => {
    if (err.code === 'ECONNRESET' || !sock.writable) {
      sock.destroy();
      return;
    }
    const status =
      err.code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large' : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' || err.code === 'HPE_HEADERS_TIMEOUT' ? '408 Request Timeout' : '400 Bad Request';
    sock.end(`HTTP/1.1 ${status}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
  };

  private handshake(raw: Socket): void {
    this.handshaking.add(raw);
    raw.once('close', () => {
      this.handshaking.delete(raw);
      this.checkDrained();
    });
  }

  private checkDrained(): void {
    if (this.draining && this.conns.size === 0 && this.handshaking.size === 0) this.drained?.();
  }

  private track(socket: Socket, tls: boolean): void {
    const s = socket as TrackedSocket;
    if (tls) {
      // A TLS socket reports its own peer: the client a PROXY header named is on the raw socket below.
      const raw = (s as unknown as { _handle?: { _parentWrap?: Socket & { [kProxied]?: string } } })._handle?._parentWrap;
      if (raw) this.handshaking.delete(raw);
      if (raw?.[kProxied]) presentClient(s, raw[kProxied], true);
    }
    s[kBusy] = 0;
    s[kPeer] = s.remoteAddress;
    s[kTrusted] = this.forwardedFrom.has(s.remoteAddress);
    s[kTls] = tls;
    this.conns.add(s);
    s.once('close', () => {
      this.conns.delete(s);
      this.checkDrained();
    });
    if (this.draining) this.closeWhenIdle(s);
  }

  /** Limits checked once the request head is parsed: 414 and 431, as Gunicorn answers. */
  private tooLarge(req: IncomingMessage): [number, string] | null {
    const { limit_request_line: line, limit_request_fields: fields, limit_request_field_size: field } = this.s;
    if (line > 0 && (req.method?.length ?? 0) + (req.url?.length ?? 0) + 10 > line) return [414, 'Request-URI Too Long'];
    const raw = req.rawHeaders;
    if (fields > 0 && raw.length / 2 > fields) return [431, 'Too many header fields'];
    if (field > 0) {
      for (let i = 0; i < raw.length; i += 2) if (raw[i]!.length + raw[i + 1]!.length + 2 > field) return [431, 'Header field too large'];
    }
    return null;
  }

  private readonly handle = (req: IncomingMessage, res: ServerResponse): void => {
    // HTTP/2 streams share a session; the session, not a socket, is what drains them.
    const s = req.httpVersionMajor === 2 ? null : (req.socket as TrackedSocket);
    if (s) {
      s[kBusy]++;
      s[kResponse] = res;
    }
    this.inflight++;
    res.once('close', () => {
      this.inflight--;
      if (s) {
        if (s[kResponse] === res) s[kResponse] = null;
        s[kBusy]--;
        if (this.draining) this.closeWhenIdle(s);
      }
    });
    if (s && (this.draining || !this.keepAlive)) res.shouldKeepAlive = false;
    const limit = this.tooLarge(req);
    if (limit) return reply(res, limit[0], `${limit[1]}\n`);
    if (this.s.limit_concurrency > 0 && this.inflight > this.s.limit_concurrency) {
      res.setHeader('retry-after', '1');
      return reply(res, 503, 'Service Unavailable: too many requests in flight\n');
    }
    if (s) {
      if (s[kTrusted]) this.applyForwarded(req, s);
    } else {
      this.markHttp2Client(req);
    }
    if (!this.s.date_header) res.sendDate = false;
    for (const [name, value] of this.defaultHeaders) res.setHeader(name, value);
    this.ctx.listener(req, res);
  };

  /**
   * HTTP/2: streams share one socket view, so the client goes on each request instead
   * (read by fetch handlers and the access log): the session's peer, or what a trusted
   * proxy forwarded.
   */
  private markHttp2Client(req: IncomingMessage): void {
    const marked = req as IncomingMessage & { [kClient]?: string; [kScheme]?: 'http' | 'https' };
    const peer = clientOf(req);
    marked[kClient] = peer;
    if (!this.forwardedFrom.has(peer)) return;
    const h = req.headers;
    if (h['x-forwarded-for'] === undefined && h['x-forwarded-proto'] === undefined && h.forwarded === undefined) return;
    const fwd = forwarded(h);
    if (fwd.client) marked[kClient] = fwd.client;
    if (fwd.proto) marked[kScheme] = fwd.proto === 'https' ? 'https' : 'http';
  }

  /** From a trusted proxy, show the app the client and scheme it forwarded (per request: proxies reuse connections). */
  private applyForwarded(req: IncomingMessage, s: TrackedSocket): void {
    const h = req.headers;
    if (h['x-forwarded-for'] === undefined && h['x-forwarded-proto'] === undefined && h.forwarded === undefined) {
      if (s[kPresented]) presentClient(s, s[kPeer], s[kTls]);
      s[kPresented] = false;
      return;
    }
    const fwd = forwarded(h);
    presentClient(s, fwd.client ?? s[kPeer], fwd.proto ? fwd.proto === 'https' : s[kTls]);
    s[kPresented] = true;
  }

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
    for (const s of this.conns) {
      const res = s[kResponse];
      if (res && !res.headersSent) res.shouldKeepAlive = false;
    }
    for (const server of [...this.fronts, ...this.servers]) {
      // http.Server#close() would also close idle keep-alive connections at once, racing
      // with requests already on their way; net.Server#close() only stops accepting.
      net.Server.prototype.close.call(server);
    }
    // HTTP/2: GOAWAY lets open streams finish and tells the client to go elsewhere.
    for (const session of this.sessions) session.close();
    if (!graceful) {
      for (const s of [...this.conns, ...this.handshaking]) s.destroy();
      return;
    }
    if (this.conns.size === 0 && this.handshaking.size === 0) return;
    const done = new Promise<void>((resolve) => (this.drained = resolve));
    for (const s of this.conns) if (!this.http2 || !(s as unknown as TLSSocket).alpnProtocol || (s as unknown as TLSSocket).alpnProtocol === 'http/1.1') this.closeWhenIdle(s);
    await done;
  }
}
