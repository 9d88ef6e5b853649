/**
 * The built-in workers: `http` (HTTP/1.1, or HTTPS with certfile/keyfile) and `http2`
 * (HTTP/2 over TLS, HTTP/1.1 for clients that do not offer h2 by ALPN). One server per
 * inherited socket, the request limits and proxy handling of the HTTP settings, and the
 * drain that lets a worker leave without failing a request.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type http2 from 'node:http2';
import type https from 'node:https';
import net, { type Socket } from 'node:net';
import { constants } from 'node:os';
import type { Server as TlsServer, TLSSocket, TlsOptions } from 'node:tls';
import type { Settings } from '../config/settings.js';
import { PeerList } from '../peers.js';
import { ConnectionTable } from './connections.js';
import type { StopOptions, TsgunWorker, WorkerContext } from './interface.js';
import { clientOf, forwarded, kClient, kScheme, parseProxyHeader, presentClient } from './proxy.js';
import { kSentStatus } from './sent-status.js';

const EALREADY = constants.errno.EALREADY;

/** How long a worker that sheds connections stops accepting, so that their clients reconnect elsewhere. */
const SHED_PAUSE_MS = 250;

/**
 * Stop or resume accepting on a listening socket without closing it. A listening socket that
 * a worker opened from an inherited fd is a libuv stream whose reading is its accepting:
 * readStop() takes the socket out of the worker's poll set (the kernel queue, shared with the
 * other workers, goes on filling) and readStart() puts it back. Where that is not so (a
 * reuse_port socket of the worker's own, a server without a handle), nothing is paused.
 */
function pauseAccepting(server: net.Server | AnyServer, pause: boolean): boolean {
  const handle = (server as unknown as { _handle?: { readStart?(): number; readStop?(): number } | null })._handle;
  if (!handle?.readStart || !handle.readStop) return false;
  if (!pause) return handle.readStart() === 0;
  // readStop() only acts on a handle marked as reading: readStart() marks it (a socket that
  // cannot be read this way, such as one the worker bound itself, refuses).
  const started = handle.readStart();
  if (started !== 0 && started !== -EALREADY) return false;
  return handle.readStop() === 0;
}

/** How long a connection ended at the drain's deadline is given to close before it is destroyed. */
const FINAL_GRACE_MS = 1000;

/** How long an idle keep-alive connection is given, once draining, to send one more request. */
const IDLE_GRACE_MS = 1000;

const kPeer = Symbol('tsgun.peer');
const kTrusted = Symbol('tsgun.trusted');
const kTls = Symbol('tsgun.tls');
const kPresented = Symbol('tsgun.presented');
/** Set once a draining worker has scheduled the connection's close. */
const kClosing = Symbol('tsgun.closing');
/** On an upgraded socket (shared with other parts of tsgun: keep the name). */
const kUpgraded = Symbol.for('tsgun.upgraded');
/** On an upgraded socket whose request asked for `Upgrade: websocket`. */
const kWebSocket = Symbol('tsgun.websocket');
/** On a raw socket that came with a PROXY header: the client it named (for the TLS socket over it). */
const kProxied = Symbol('tsgun.proxied');
/**
 * `_httpMessage` is Node's own record of the response in progress on an HTTP/1.1
 * connection (set from the moment the request is handed to the app until the response is
 * finished; pipelined requests queue behind it), read instead of counting requests per
 * connection on the request path.
 */
type TrackedSocket = Socket & {
  [kPeer]: string | undefined;
  [kTrusted]: boolean;
  [kTls]: boolean;
  [kPresented]?: boolean;
  [kClosing]?: boolean;
  [kUpgraded]?: boolean;
  [kWebSocket]?: boolean;
  _httpMessage?: ServerResponse | null;
};

/** What inspectHead() finds: nothing, a forwarding header and/or `Upgrade: websocket` (bits), or a limit exceeded. */
const HEAD_FORWARDED = 1;
const HEAD_WEBSOCKET = 8;
const HEAD_URI_TOO_LONG = 2;
const HEAD_TOO_MANY_FIELDS = 3;
const HEAD_FIELD_TOO_LARGE = 4;
const HEAD_DUPLICATE_HOST = 5;
const HEAD_ERRORS: Record<number, [number, string]> = {
  [HEAD_URI_TOO_LONG]: [414, 'Request-URI Too Long\n'],
  [HEAD_TOO_MANY_FIELDS]: [431, 'Too many header fields\n'],
  [HEAD_FIELD_TOO_LARGE]: [431, 'Header field too large\n'],
  [HEAD_DUPLICATE_HOST]: [400, 'Bad Request: more than one Host header\n'],
};
const FORWARDING = new Set(['x-forwarded-for', 'x-forwarded-proto', 'forwarded']);

type AnyServer = http.Server | https.Server | http2.Http2SecureServer;

type StoreHeader = (this: ServerResponse, firstLine: string, headers: unknown) => void;
/**
 * Node's `OutgoingMessage#_storeHeader(firstLine, headers)`, which turns the status line and
 * the headers into the head it writes (the same in Node 20 to 24). Absent, default headers
 * fall back to setHeader() on every request.
 */
const storeHeader = (http.ServerResponse.prototype as unknown as { _storeHeader?: StoreHeader })._storeHeader;

/** Did the app set this header? `headers` is what writeHead() hands on: Node's own map (lower-case keys), a plain object, or an array (flat or of pairs). */
function hasHeader(headers: unknown, lower: string): boolean {
  if (!headers) return false;
  const n = lower.length;
  if (Array.isArray(headers)) {
    const pairs = headers.length > 0 && Array.isArray(headers[0]);
    for (let i = 0; i < headers.length; i += pairs ? 1 : 2) {
      const name: unknown = pairs ? (headers[i] as unknown[])[0] : headers[i];
      if (typeof name === 'string' && name.length === n && name.toLowerCase() === lower) return true;
    }
    return false;
  }
  // Node's own map (after setHeader()) has no prototype and lower-case keys: one lookup.
  if (Object.getPrototypeOf(headers) === null) return (headers as Record<string, unknown>)[lower] !== undefined;
  for (const name in headers as object) if (name.length === n && name.toLowerCase() === lower) return true;
  return false;
}

/** The default headers of this process's HTTP/1.1 responses, as head lines. */
let defaultLines: Array<{ lower: string; line: string }> = [];
let defaultsInstalled = false;

/**
 * Write the default headers (`Server: tsgun`, `--header`) into every HTTP/1.1 response head
 * of this worker process, unless the app set them itself: one wrapper around Node's
 * `_storeHeader`, on ServerResponse.prototype. A subclass of ServerResponse would not do:
 * Express gives each response its own prototype, which inherits from ServerResponse.prototype,
 * not from the server's class. setHeader() on every request would cost more than the header:
 * it also sends the app's writeHead() down Node's slower path, which merges every one of its
 * headers through setHeader(). Returns false where Node has no `_storeHeader`.
 */
function installDefaultHeaders(defaults: ReadonlyArray<[string, string]>): boolean {
  if (!storeHeader) return false;
  defaultLines = defaults.map(([name, value]) => ({ lower: name.toLowerCase(), line: `${name}: ${value}\r\n` }));
  if (defaultsInstalled) return true;
  defaultsInstalled = true;
  const store = storeHeader;
  Object.defineProperty(http.ServerResponse.prototype, '_storeHeader', {
    value: function (this: ServerResponse, firstLine: string, headers: unknown): void {
      let head = firstLine;
      for (let i = 0; i < defaultLines.length; i++)
        if (!hasHeader(headers, defaultLines[i]!.lower)) head += defaultLines[i]!.line;
      store.call(this, head, headers);
    },
    writable: true,
    configurable: true,
  });
  return true;
}

function reply(res: ServerResponse, status: number, text: string): void {
  res.shouldKeepAlive = false;
  res.writeHead(status, {
    'content-type': 'text/plain; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    connection: 'close',
  });
  res.end(text);
}

/** Node's HTTP/1.1 server options from tsgun's settings. */
function serverOptions(s: Settings): http.ServerOptions {
  return {
    keepAliveTimeout: s.keepalive * 1000,
    // Node requires headersTimeout <= requestTimeout.
    headersTimeout:
      (s.request_timeout > 0 && (s.headers_timeout === 0 || s.headers_timeout > s.request_timeout)
        ? s.request_timeout
        : s.headers_timeout) * 1000,
    requestTimeout: s.request_timeout * 1000,
    // Node checks both timeouts on this interval: at most a second, so that they hold within a second.
    connectionsCheckingInterval: Math.max(250, Math.min(1000, ((s.headers_timeout || 30) * 1000) / 4)),
    // The request line and the fields all count against Node's one header limit.
    maxHeaderSize: Math.max(
      16 * 1024,
      s.limit_request_line + s.limit_request_fields * (s.limit_request_field_size + 4) + 1024,
    ),
  };
}

/** An app's own server gets tsgun's limits too; Node reads these fields per connection and on 'listening'. */
function applyServerOptions(server: http.Server, s: Settings): void {
  Object.assign(server, serverOptions(s));
}

/**
 * The worker's server, made before the app loads (the factory's `{ server }`), with no
 * request listener yet: HttpWorker#start() adds its own.
 */
export async function createServer(s: Settings, tls: TlsOptions | null): Promise<AnyServer> {
  if (s.worker_class === 'http2') {
    if (!tls) throw new Error('worker_class http2 serves HTTP/2 over TLS: give it --certfile and --keyfile');
    return (await import('node:http2')).createSecureServer({
      ...tls,
      ALPNProtocols: ['h2', 'http/1.1'],
      allowHTTP1: true,
    });
  }
  if (tls) return (await import('node:https')).createServer({ ...tls, ...serverOptions(s) });
  return http.createServer(serverOptions(s));
}

export class HttpWorker implements TsgunWorker {
  protected readonly servers: AnyServer[] = [];
  private readonly fronts: net.Server[] = [];
  private readonly conns = new Set<TrackedSocket>();
  /** Every accepted connection, for worker_connections and the first-byte deadline. */
  private readonly table: ConnectionTable;
  /** TLS connections from accept until their handshake is done: a drain waits for them too. */
  private readonly handshaking = new Set<Socket>();
  private readonly sessions = new Set<http2.Http2Session>();
  /** Upgraded connections (WebSockets and other protocols): out of the HTTP accounting. */
  private readonly upgrades = new Set<TrackedSocket>();
  /** Once draining and the app has run its shutdown: close upgraded connections as they come. */
  private closeUpgrades = false;
  /** The WebSocket close code a drain sends: 1012 when the worker is replaced, 1001 when it stops. */
  private closeCode = 1001;
  private draining = false;
  /** Answer every request with `Connection: close`: keepalive is 0, or the worker is draining. */
  private closeAfterResponse: boolean;
  /** Answer this many more requests with `Connection: close`: the master asked to shed connections. */
  private shedding = 0;
  private drained: (() => void) | null = null;
  private inflight = 0;
  private readonly s;
  private readonly listener: WorkerContext['listener'];
  private readonly limitLine: number;
  private readonly limitFields: number;
  private readonly limitField: number;
  private readonly limitConcurrency: number;
  private readonly dateHeader: boolean;
  private readonly forwardedFrom: PeerList;
  private readonly proxyFrom: PeerList | null;
  private readonly defaultHeaders: Array<[string, string]>;
  /** HTTP/1.1 responses get the default headers in their head (installDefaultHeaders); these requests set them one by one. */
  private readonly setDefaultsOn: 'none' | 'http2' | 'all';
  private readonly http2: boolean;

  constructor(protected readonly ctx: WorkerContext) {
    this.s = ctx.settings;
    this.closeAfterResponse = this.s.keepalive <= 0;
    this.table = new ConnectionTable(this.s.worker_connections, this.s.idle_connection_timeout * 1000, ctx.log);
    this.listener = ctx.listener;
    this.limitLine = this.s.limit_request_line;
    this.limitFields = this.s.limit_request_fields;
    this.limitField = this.s.limit_request_field_size;
    this.limitConcurrency = this.s.limit_concurrency;
    this.dateHeader = this.s.date_header;
    this.forwardedFrom = new PeerList(this.s.forwarded_allow_ips);
    this.proxyFrom = this.s.proxy_protocol === 'off' ? null : new PeerList(this.s.proxy_allow_ips);
    this.http2 = this.s.worker_class === 'http2';
    this.defaultHeaders = this.s.headers.map((h) => {
      const colon = h.indexOf(':');
      return [h.slice(0, colon).trim(), h.slice(colon + 1).trim()];
    });
    if (this.s.server_header) this.defaultHeaders.unshift(['Server', 'tsgun']);
    this.setDefaultsOn =
      this.defaultHeaders.length === 0 ? 'none' : installDefaultHeaders(this.defaultHeaders) ? 'http2' : 'all';
  }

  async start(): Promise<void> {
    const s = this.s;
    const server = this.ctx.server ?? (await createServer(s, this.ctx.tls));
    // An app's own server is checked against the settings where it is loaded (an https.Server serves TLS even without certfile).
    // A tls.Server (https, http2) has setSecureContext(); asked this way, node:tls loads only where TLS is served.
    const tls = typeof (server as Partial<Pick<TlsServer, 'setSecureContext'>>).setSecureContext === 'function';
    if (!this.http2) applyServerOptions(server as http.Server, s);
    if (this.http2) {
      server.on('session', (session: http2.Http2Session) => {
        this.sessions.add(session);
        session.once('close', () => this.sessions.delete(session));
        if (this.draining) session.close();
      });
    } else {
      const h1 = server as http.Server;
      h1.maxHeadersCount = s.limit_request_fields > 0 ? s.limit_request_fields + 1 : 2000;
      h1.on('clientError', this.clientError);
      this.watchUpgrades(h1);
    }
    server.on('request', this.handle as never);
    server.on(tls ? 'secureConnection' : 'connection', (sock: Socket) => this.track(sock, tls));
    if (tls) server.on('connection', (raw: Socket) => this.handshake(raw));
    this.servers.push(server);
    // One server for the app, fed by a front per inherited socket: the app's server is the
    // one its WebSocket libraries attached to, and a server listens on one socket only.
    for (const socket of this.ctx.sockets) {
      const front = this.proxyFrom
        ? this.proxyFront(server, tls)
        : net.createServer({ allowHalfOpen: !tls, noDelay: true }, (sock) => server.emit('connection', sock));
      // Not maxConnections, which refuses at accept: the table makes room first (connections.ts).
      front.on('connection', (raw: Socket) => this.table.admit(raw, this.proxyFrom !== null, tls));
      await new Promise<void>((resolve, reject) => {
        front.once('error', reject);
        const where = socket.reusePort
          ? { host: socket.reusePort.host, port: socket.reusePort.port, reusePort: true }
          : { fd: socket.fd };
        // The backlog as an argument: Node 20 ignores `backlog` in the options of listen({ fd }).
        front.listen(where, s.backlog, () => {
          front.off('error', reject);
          resolve();
        });
      });
      // An accept that fails (out of file descriptors) is an 'error' on the listening socket.
      front.on('error', (err: NodeJS.ErrnoException) => this.table.acceptFailed(err));
      this.fronts.push(front);
    }
    this.table.measure();
    const first = this.fronts[0];
    Object.defineProperty(server, 'address', {
      value: () => first?.address() ?? null,
      configurable: true,
      writable: true,
    });
    Object.defineProperty(server, 'listening', { get: () => !this.draining, configurable: true });
    // 'listening' starts Node's request and headers timeout checks (and tells the app's own listeners).
    server.emit('listening');
  }

  upgraded(): number {
    return this.upgrades.size;
  }

  /**
   * Upgraded connections leave the HTTP accounting (timeouts, connection counts, drain of
   * keep-alive connections) for their own: a marker runs before the app's 'upgrade'
   * listeners, and answers 426 when the app has none left (a library that closed).
   */
  private watchUpgrades(server: http.Server): void {
    const mark = (req: IncomingMessage, socket: Socket): void => {
      const s = socket as TrackedSocket;
      if (server.listenerCount('upgrade') === 1) {
        socket.end('HTTP/1.1 426 Upgrade Required\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
        return;
      }
      // The app's WebSocket server reads the client from the socket, as a request does.
      if (s[kTrusted]) this.applyForwarded(req, s, true);
      s[kUpgraded] = true;
      s[kWebSocket] = /^websocket$/i.test(req.headers.upgrade ?? '');
      s.setTimeout(0);
      this.conns.delete(s);
      this.upgrades.add(s);
      s.once('close', () => {
        this.upgrades.delete(s);
        this.checkDrained();
      });
      if (this.draining && this.closeUpgrades) setImmediate(() => this.closeUpgraded(s));
    };
    const ensure = (): void => {
      if (!server.listeners('upgrade').includes(mark)) server.prependListener('upgrade', mark);
    };
    if (server.listenerCount('upgrade') > 0) ensure();
    server.on('newListener', (event: string | symbol) => {
      if (event === 'upgrade') setImmediate(ensure);
    });
  }

  connections(): number {
    return this.conns.size;
  }

  /**
   * The master saw this worker holding more than its share of the connections: answer the
   * next `count` requests with `Connection: close`, and stop accepting for a moment, so that
   * those clients reconnect to another worker rather than racing back here.
   */
  shed(count: number): void {
    this.shedding = Math.max(0, Math.min(count, this.conns.size));
    if (this.shedding === 0 || this.draining) return;
    const paused = [...this.fronts, ...this.servers].filter((server) => pauseAccepting(server, true));
    if (paused.length === 0) return;
    setTimeout(() => {
      if (!this.draining) for (const server of paused) pauseAccepting(server, false);
    }, SHED_PAUSE_MS).unref();
  }

  /**
   * PROXY protocol: a plain TCP server accepts, reads the PROXY header (from allowed peers
   * only), and hands the rest of the stream to the HTTP server. The header has its own
   * deadline (proxy_protocol_timeout): the HTTP server's timeouts start only after it.
   */
  private proxyFront(server: AnyServer, tls: boolean): net.Server {
    const mode = this.s.proxy_protocol;
    const allowed = this.proxyFrom!;
    const deadlineMs = this.s.proxy_protocol_timeout * 1000;
    return net.createServer({ pauseOnConnect: false }, (sock) => {
      let buf = Buffer.alloc(0);
      const peer = sock.remoteAddress;
      const timer = deadlineMs > 0 ? setTimeout(() => this.proxyTimedOut(sock), deadlineMs).unref() : null;
      const onData = (chunk: Buffer): void => {
        buf = Buffer.concat([buf, chunk]);
        const parsed = parseProxyHeader(buf);
        if (parsed.state === 'more') return;
        if (timer) clearTimeout(timer);
        sock.off('data', onData);
        sock.pause();
        const trustedPeer = allowed.has(peer);
        const reject = (): void => void sock.destroy();
        if (parsed.state === 'error') return reject();
        if (parsed.state === 'done') {
          if (!trustedPeer || (mode === 'v1' && parsed.version !== 1) || (mode === 'v2' && parsed.version !== 2))
            return reject();
          if (parsed.client) {
            presentClient(sock, parsed.client, undefined);
            (sock as Socket & { [kProxied]?: string })[kProxied] = parsed.client;
          }
          buf = buf.subarray(parsed.length);
        } else if (trustedPeer && mode !== 'auto') {
          return reject();
        }
        if (buf.length) sock.unshift(buf);
        this.table.opened(sock);
        server.emit('connection', sock);
        // TLS takes the unshifted bytes over by itself; resuming here would spill them past it.
        if (!tls) sock.resume();
      };
      sock.on('data', onData);
      sock.on('error', () => sock.destroy());
      if (timer) sock.once('close', () => clearTimeout(timer));
    });
  }

  private proxyTimedOut(sock: Socket): void {
    this.ctx.log.debug(
      `Closing a connection from ${sock.remoteAddress} that sent no whole PROXY header in ${this.s.proxy_protocol_timeout} s`,
    );
    sock.destroy();
  }

  /**
   * Node's parser failed (a malformed request, a header overflow, a timeout): answer with the
   * status, and have it logged. A request whose body failed after the app got it (bad chunk
   * size, unknown transfer coding) is logged by its own response, with the status sent here.
   */
  private readonly clientError = (err: NodeJS.ErrnoException & { rawPacket?: Buffer }, sock: Socket): void => {
    const res = (sock as TrackedSocket)._httpMessage;
    if (err.code === 'ECONNRESET' || !sock.writable || res?.headersSent) {
      sock.destroy();
      return;
    }
    const status =
      err.code === 'HPE_HEADER_OVERFLOW'
        ? 431
        : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' || err.code === 'HPE_HEADERS_TIMEOUT'
          ? 408
          : 400;
    if (res) (res as ServerResponse & { [kSentStatus]?: number })[kSentStatus] = status;
    else this.ctx.unparsed?.(sock, status, err.rawPacket ?? null);
    sock.end(`HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
  };

  private handshake(raw: Socket): void {
    this.handshaking.add(raw);
    raw.once('close', () => {
      this.handshaking.delete(raw);
      this.checkDrained();
    });
  }

  private checkDrained(): void {
    if (this.draining && this.conns.size === 0 && this.handshaking.size === 0 && this.upgrades.size === 0)
      this.drained?.();
  }

  private track(socket: Socket, tls: boolean): void {
    const s = socket as TrackedSocket;
    if (tls) {
      // A TLS socket reports its own peer: the client a PROXY header named is on the raw socket below.
      const raw = (s as unknown as { _handle?: { _parentWrap?: Socket & { [kProxied]?: string } } })._handle
        ?._parentWrap;
      if (raw) {
        this.handshaking.delete(raw);
        this.table.secured(raw, s);
      }
      if (raw?.[kProxied]) presentClient(s, raw[kProxied], true);
    }
    s[kPeer] = s.remoteAddress;
    s[kTrusted] = this.forwardedFrom.has(s.remoteAddress);
    s[kTls] = tls;
    this.conns.add(s);
    s.once('close', () => {
      this.conns.delete(s);
      this.checkDrained();
    });
    if (this.draining) this.closeWhenIdle(s);
    else this.ctx.connected?.();
  }

  /**
   * One pass over the request head, without building `req.headers` (Node builds it lazily,
   * and many apps never ask): the limits Gunicorn answers with 414 and 431, a duplicate Host,
   * and whether a forwarding header is present.
   */
  private inspectHead(req: IncomingMessage): number {
    const { limitLine, limitFields, limitField } = this;
    if (limitLine > 0 && (req.method?.length ?? 0) + (req.url?.length ?? 0) + 10 > limitLine) return HEAD_URI_TOO_LONG;
    const raw = req.rawHeaders;
    if (limitFields > 0 && raw.length / 2 > limitFields) return HEAD_TOO_MANY_FIELDS;
    let found = 0;
    let hosts = 0;
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i]!;
      if (limitField > 0 && name.length + raw[i + 1]!.length + 2 > limitField) return HEAD_FIELD_TOO_LARGE;
      // x-forwarded-for (15), x-forwarded-proto (17), forwarded (9): compare only names of those lengths.
      const n = name.length;
      // RFC 9112 §3.2: a request with more than one Host field is answered 400.
      if (n === 4 && name.toLowerCase() === 'host' && ++hosts > 1) return HEAD_DUPLICATE_HOST;
      if ((found & HEAD_FORWARDED) === 0 && (n === 15 || n === 17 || n === 9) && FORWARDING.has(name.toLowerCase()))
        found |= HEAD_FORWARDED;
      else if (n === 7 && name.toLowerCase() === 'upgrade' && raw[i + 1]!.toLowerCase() === 'websocket')
        found |= HEAD_WEBSOCKET;
    }
    return found;
  }

  /**
   * Every request passes here before the app sees it, so it does as little as it can: no
   * listener on the response (unless limit_concurrency needs the in-flight count), no
   * `req.headers` (unless a trusted proxy forwarded something).
   */
  private readonly handle = (req: IncomingMessage, res: ServerResponse): void => {
    // HTTP/2 streams share a session; the session, not a socket, is what drains them.
    const h1 = req.httpVersionMajor !== 2;
    if (h1) {
      this.table.used(req.socket);
      if (this.closeAfterResponse || this.shedding > 0) {
        if (!this.closeAfterResponse) this.shedding--;
        res.shouldKeepAlive = false;
      }
    }
    if (this.limitConcurrency > 0) {
      this.inflight++;
      res.on('close', this.responseClosed);
      if (this.inflight > this.limitConcurrency) {
        res.setHeader('retry-after', '1');
        this.ctx.rejected?.(req, res);
        return reply(res, 503, 'Service Unavailable: too many requests in flight\n');
      }
    }
    const head = this.inspectHead(req);
    // The limits' answers (2 to 5) come alone; the flags (forwarding 1, websocket 8) may combine.
    if (head > HEAD_FORWARDED && head < HEAD_WEBSOCKET) {
      this.ctx.rejected?.(req, res);
      return reply(res, HEAD_ERRORS[head]![0], HEAD_ERRORS[head]![1]);
    }
    // Node hands an upgrade to 'request' only when nothing listens for 'upgrade': no WebSocket library is attached.
    if (head & HEAD_WEBSOCKET && h1)
      return reply(res, 426, 'Upgrade Required: this app has no WebSocket server attached to its server\n');
    if (h1) {
      const s = req.socket as TrackedSocket;
      if (s[kTrusted]) this.applyForwarded(req, s, (head & HEAD_FORWARDED) !== 0);
    } else {
      this.markHttp2Client(req);
    }
    if (!this.dateHeader) res.sendDate = false;
    if (this.setDefaultsOn === 'all' || (this.setDefaultsOn === 'http2' && !h1)) {
      for (const [name, value] of this.defaultHeaders) res.setHeader(name, value);
    }
    this.listener(req, res);
  };

  private readonly responseClosed = (): void => {
    this.inflight--;
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
    const fwd = forwarded(h, this.s.forwarded_headers, this.forwardedFrom);
    if (fwd.client) marked[kClient] = fwd.client;
    if (fwd.proto) marked[kScheme] = fwd.proto === 'https' ? 'https' : 'http';
  }

  /**
   * From a trusted proxy, show the app the client and scheme it forwarded. Per request:
   * proxies reuse a connection for many clients, so a request that forwards no client
   * shows the peer again (`null` for a unix socket peer), never the previous request's.
   */
  private applyForwarded(req: IncomingMessage, s: TrackedSocket, present: boolean): void {
    if (!present) {
      if (s[kPresented]) presentClient(s, s[kPeer] ?? null, s[kTls]);
      s[kPresented] = false;
      return;
    }
    const fwd = forwarded(req.headers, this.s.forwarded_headers, this.forwardedFrom);
    presentClient(s, fwd.client ?? s[kPeer] ?? null, fwd.proto ? fwd.proto === 'https' : s[kTls]);
    s[kPresented] = true;
  }

  /**
   * Close a keep-alive connection once it is idle, but only after a grace period: a client
   * may have sent its next request at this very instant, and closing now would reset it. A
   * request that arrives in the grace is served with `Connection: close` (Node then closes
   * the connection itself); a response still being written when draining began gets a grace
   * of its own once it is finished.
   */
  private closeWhenIdle(s: TrackedSocket): void {
    if (s.destroyed || s[kClosing]) return;
    s[kClosing] = true;
    const res = s._httpMessage;
    if (res) {
      // Its headers are out, with keep-alive: wait for it, then give the client its grace.
      res.once('finish', () => setTimeout(() => this.closeIfIdle(s), IDLE_GRACE_MS).unref());
      return;
    }
    setTimeout(() => this.closeIfIdle(s), IDLE_GRACE_MS).unref();
  }

  private closeIfIdle(s: TrackedSocket): void {
    if (s.destroyed || s[kUpgraded]) return;
    // Busy: that request was answered with `Connection: close`, or (pipelined before the
    // drain) its response is still to come; look again after another grace.
    if (s._httpMessage) return void setTimeout(() => this.closeIfIdle(s), IDLE_GRACE_MS).unref();
    s.destroy();
  }

  /**
   * Drain, as Uvicorn's shutdown: (1) stop accepting; (2) let in-flight requests finish and
   * close keep-alive connections after their response; (3) once the app has run its own
   * shutdown (`appClosed`), send each WebSocket its close frame (they never end by
   * themselves); (4) at the deadline, end what is left cleanly: a streaming response gets its
   * last chunk, any other upgraded connection a FIN.
   */
  async stop(graceful: boolean, opts: StopOptions = {}): Promise<void> {
    this.draining = true;
    this.closeAfterResponse = true;
    this.closeCode = opts.replaced ? 1012 : 1001;
    // A response already in progress whose headers are not out yet still gets to say
    // `Connection: close`, so its client does not send another request on it.
    for (const s of this.conns) {
      const res = s._httpMessage;
      if (res && !res.headersSent) res.shouldKeepAlive = false;
    }
    // http.Server#close() would also close idle keep-alive connections at once, racing
    // with requests already on their way; closing the fronts only stops accepting.
    for (const front of this.fronts) front.close();
    // HTTP/2: GOAWAY lets open streams finish and tells the client to go elsewhere.
    for (const session of this.sessions) session.close();
    if (!graceful) {
      for (const s of [...this.conns, ...this.handshaking, ...this.upgrades]) s.destroy();
      return;
    }
    void (opts.appClosed ?? Promise.resolve()).then(() => {
      this.closeUpgrades = true;
      for (const s of this.upgrades) if (s[kWebSocket]) this.closeUpgraded(s);
    });
    if (this.conns.size === 0 && this.handshaking.size === 0 && this.upgrades.size === 0) return;
    const done = new Promise<void>((resolve) => (this.drained = resolve));
    for (const s of this.conns)
      if (
        !this.http2 ||
        !(s as unknown as TLSSocket).alpnProtocol ||
        (s as unknown as TLSSocket).alpnProtocol === 'http/1.1'
      )
        this.closeWhenIdle(s);
    const deadline = opts.deadline ?? Date.now() + this.s.graceful_timeout * 1000;
    const timer = setTimeout(() => this.closeRemaining(), Math.max(0, deadline - Date.now()));
    await done;
    clearTimeout(timer);
  }

  /** The drain's deadline: end every connection left, cleanly where tsgun can, and destroy what is still open a moment later. */
  private closeRemaining(): void {
    for (const s of this.conns) {
      const res = s._httpMessage;
      if (res && res.headersSent && !res.writableEnded) {
        // The app may go on writing to a response ended under it: that error is expected.
        res.on('error', () => {});
        res.end();
      } else if (!res) {
        s.destroy();
      }
    }
    for (const s of this.upgrades) this.closeUpgraded(s, true);
    for (const session of this.sessions) session.destroy();
    for (const s of this.handshaking) s.destroy();
    setTimeout(() => {
      for (const s of [...this.conns, ...this.upgrades]) s.destroy();
    }, FINAL_GRACE_MS).unref();
  }

  /**
   * Close an upgraded connection: a WebSocket gets a close frame (then a FIN), written only
   * once the socket has flushed what the app wrote, so that it lands between frames; any
   * other protocol, or a socket that does not flush in time, gets a FIN alone.
   */
  private closeUpgraded(s: TrackedSocket, now = false): void {
    if (s.destroyed || (s[kClosing] && !now)) return;
    s[kClosing] = true;
    let done = false;
    const finish = (frame: boolean): void => {
      if (done || s.destroyed) return;
      done = true;
      if (frame) s.write(closeFrame(this.closeCode));
      s.end();
      setTimeout(() => s.destroy(), FINAL_GRACE_MS).unref();
    };
    // No bytes out yet: the app has not answered the handshake, so there is no stream to frame.
    if (!s[kWebSocket] || s.bytesWritten === 0) return finish(false);
    const since = Date.now();
    const poll = (): void => {
      if (s.writableLength === 0) finish(true);
      else if (Date.now() - since > FINAL_GRACE_MS) finish(false);
      else setTimeout(poll, 20).unref();
    };
    poll();
  }
}

/** An unmasked close frame (server to client) with its code and the reason registered for it. */
function closeFrame(code: number): Buffer {
  const reason = Buffer.from(code === 1012 ? 'service restart' : 'going away');
  return Buffer.concat([Buffer.from([0x88, 2 + reason.length, code >> 8, code & 0xff]), reason]);
}
