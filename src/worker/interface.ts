/**
 * The worker interface: what `worker_class` names. tsgun's own `http` worker implements
 * it, and so can a user's class (`-k ./my-worker.ts:MyWorker`) to serve with another server.
 */
import type { IncomingMessage, RequestListener, Server as HttpServer, ServerResponse } from 'node:http';
import type { Http2SecureServer } from 'node:http2';
import type { Server as HttpsServer } from 'node:https';
import type { Socket } from 'node:net';
import type { TlsOptions } from 'node:tls';
import type { Settings } from '../config/settings.js';
import type { SocketInfo } from '../ipc.js';
import type { Logger } from '../log.js';

export interface WorkerContext {
  /** The app as a Node request listener, with tsgun's accounting, hooks and access log around it. */
  readonly listener: RequestListener;
  /** The listening sockets inherited from the master: call `server.listen({ fd })` on each. */
  readonly sockets: readonly SocketInfo[];
  readonly settings: Readonly<Settings>;
  readonly log: Logger;
  /** TLS options from certfile/keyfile/ca_certs/cert_reqs/ciphers after the ssl_context hook; null for plain HTTP. */
  readonly tls: TlsOptions | null;
  /**
   * Record a request that the worker answers itself, without the app (a 400, 414, 431 or a
   * 503 from limit_concurrency): written to the access log and counted once `res` closes.
   */
  readonly rejected?: (req: IncomingMessage, res: ServerResponse) => void;
  /**
   * Record a request that Node's parser rejected before there was a request object (400, 408,
   * 431): what is known of it, the peer and the bytes the parser failed on.
   */
  readonly unparsed?: (socket: Socket, status: number, rawPacket: Buffer | null) => void;
  /**
   * The app's server: the one tsgun made for this worker (the factory's `{ server }`) or the
   * app's own (exported, or listened while imported). Its 'request' listeners are taken into
   * `listener`; its 'upgrade' listeners are the app's. Serve it on `sockets`, not its own port.
   */
  readonly server?: HttpServer | HttpsServer | Http2SecureServer;
  /**
   * Optional, for `balance_connections`: call it on every new HTTP connection, once it is
   * counted by `connections()`, so that tsgun reports a burst of them to the master at once.
   * Given to tsgun's own worker class only, when the setting is on; a worker class of the
   * app's own has its connection count polled instead.
   */
  readonly connected?: () => void;
}

/** How a graceful stop goes. */
export interface StopOptions {
  /** The worker is being replaced (reload, max_requests, memory, scale): WebSockets get 1012, not 1001. */
  replaced?: boolean;
  /** When to end what is still open (ms since the epoch); graceful_timeout from now by default. */
  deadline?: number;
  /** Settles once the app has run its own shutdown: WebSockets are closed after it. */
  appClosed?: Promise<void>;
}

export interface TsgunWorker {
  /** Start accepting on every socket; resolve once all are listening. */
  start(): Promise<void>;
  /**
   * Stop. Graceful: stop accepting, let in-flight requests finish, close keep-alive
   * connections after their current response; resolve when no connection is left.
   * Not graceful: close everything now.
   */
  stop(graceful: boolean, opts?: StopOptions): Promise<void>;
  /** Open HTTP connections, for status reports (upgraded ones not included). */
  connections(): number;
  /** Optional: open upgraded connections (WebSockets), for status reports. */
  upgraded?(): number;
  /**
   * Optional: this worker holds more than its share of the connections; close `count` of
   * them after their current response, so their clients reconnect elsewhere (`balance_connections`).
   */
  shed?(count: number): void;
}

export type TsgunWorkerClass = new (context: WorkerContext) => TsgunWorker;
