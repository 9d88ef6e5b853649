/**
 * The fetch adapter: serves a Web-standard handler `(request) => Response` from Node's
 * http server. Request bodies stream in and response bodies stream out with
 * backpressure; nothing is buffered whole.
 */
import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import { clientOf, schemeOf } from './proxy.js';
import { lightParts } from './response.js';

/** What a fetch handler receives besides the request: Hono's node-server binding names. */
export interface FetchEnv {
  incoming: IncomingMessage;
  outgoing: ServerResponse;
}

export type FetchHandler = (request: Request, env: FetchEnv) => Response | Promise<Response>;

const NO_BODY = new Set(['GET', 'HEAD']);

const kIncoming = Symbol('tsgun.incoming');
const kOutgoing = Symbol('tsgun.outgoing');
const kUrl = Symbol('tsgun.url');
const kHeaders = Symbol('tsgun.headers');
const kReal = Symbol('tsgun.request');
/** Set once the body was read straight from Node's request stream (arrayBuffer(), text(), json(), bytes()). */
const kConsumed = Symbol('tsgun.consumed');

interface LazyRequest {
  [kIncoming]: IncomingMessage;
  [kOutgoing]: ServerResponse;
  [kUrl]: string;
  [kHeaders]?: Headers;
  [kReal]?: Request;
  [kConsumed]?: boolean;
}

const EMPTY = Buffer.alloc(0);
const utf8 = new TextDecoder();

const unusable = (): TypeError => new TypeError('Body is unusable: Body has already been read');

/**
 * The whole body, read straight from Node's request stream: what arrayBuffer(), text(),
 * json() and bytes() need, without undici's web stream in between (which costs several
 * times the read itself on a 64 KiB body).
 */
function readBody(lazy: LazyRequest): Promise<Buffer> {
  const req = lazy[kIncoming];
  // GET and HEAD requests have no body (null, in fetch's terms): it reads as empty, every time.
  if (NO_BODY.has(req.method ?? 'GET')) return Promise.resolve(EMPTY);
  if (lazy[kConsumed] || req.readableDidRead) return Promise.reject(unusable());
  lazy[kConsumed] = true;
  if (req.readableEnded) return Promise.resolve(EMPTY);
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const onData = (chunk: Buffer): void => void chunks.push(chunk);
    const settle = (): void => {
      req.off('data', onData).off('end', onEnd).off('error', onError).off('close', onClose);
    };
    const onEnd = (): void => {
      settle();
      resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks));
    };
    const onError = (err: Error): void => {
      settle();
      reject(err);
    };
    const onClose = (): void => {
      if (req.readableEnded) return onEnd();
      onError(new Error('the client closed the connection before the whole request body arrived'));
    };
    req.on('data', onData).on('end', onEnd).on('error', onError).on('close', onClose);
  });
}

/** A Buffer's bytes as an ArrayBuffer of their own (a Buffer may be a view into a shared pool). */
function ownBytes(buf: Buffer): ArrayBuffer {
  return buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength) as ArrayBuffer;
}

function headersOf(req: IncomingMessage): Headers {
  const headers = new Headers();
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.charCodeAt(0) !== 58 /* ':' HTTP/2 pseudo-header */) headers.append(name, raw[i + 1]!);
  }
  return headers;
}

/** The undici Request behind a lazy one, made on first use of the body, the signal, clone(), ... */
function realRequest(lazy: LazyRequest): Request {
  if (lazy[kReal]) return lazy[kReal];
  const req = lazy[kIncoming];
  const res = lazy[kOutgoing];
  const controller = new AbortController();
  res.once('close', () => {
    if (!res.writableFinished) controller.abort();
  });
  const init: RequestInit & { duplex?: 'half' } = {
    method: req.method,
    headers: lazy[kHeaders] ?? headersOf(req),
    signal: controller.signal,
  };
  // A body already read by the fast path is gone from Node's stream: the Request has none.
  if (!NO_BODY.has(req.method ?? 'GET') && !lazy[kConsumed]) {
    init.body = Readable.toWeb(req) as ReadableStream<Uint8Array>;
    init.duplex = 'half';
  }
  lazy[kReal] = new Request(lazy[kUrl], init);
  return lazy[kReal];
}

/**
 * Requests handed to fetch handlers: `instanceof Request`, with `method`, `url`, `headers`
 * and `ip` answered from Node's request directly. Building an undici Request (with the
 * AbortSignal that follows the client) costs more than many handlers do in all; it is
 * built only when a handler touches what needs it.
 */
const LAZY_PROTO: object = (() => {
  const proto = Object.create(Request.prototype) as Record<PropertyKey, unknown>;
  for (const key of Reflect.ownKeys(Request.prototype)) {
    if (key === 'constructor' || key === 'method' || key === 'url' || key === 'headers') continue;
    const d = Object.getOwnPropertyDescriptor(Request.prototype, key)!;
    if (d.get)
      Object.defineProperty(proto, key, {
        get: function (this: LazyRequest) {
          return (realRequest(this) as unknown as Record<PropertyKey, unknown>)[key];
        },
        configurable: true,
      });
    else if (typeof d.value === 'function')
      Object.defineProperty(proto, key, {
        value: function (this: LazyRequest, ...args: unknown[]) {
          const real = realRequest(this) as unknown as Record<PropertyKey, (...a: unknown[]) => unknown>;
          return real[key]!(...args);
        },
        configurable: true,
        writable: true,
      });
  }
  Object.defineProperties(proto, {
    method: {
      get(this: LazyRequest) {
        return this[kIncoming].method;
      },
    },
    url: {
      get(this: LazyRequest) {
        return this[kUrl];
      },
    },
    headers: {
      get(this: LazyRequest) {
        return this[kReal]?.headers ?? (this[kHeaders] ??= headersOf(this[kIncoming]));
      },
    },
    // The client address, where srvx and Bun-style handlers look for it.
    ip: {
      get(this: LazyRequest) {
        return clientOf(this[kIncoming]);
      },
      enumerable: true,
    },
    bodyUsed: {
      get(this: LazyRequest) {
        return this[kReal]?.bodyUsed ?? this[kConsumed] === true;
      },
    },
    arrayBuffer: {
      value(this: LazyRequest) {
        return this[kReal] ? this[kReal].arrayBuffer() : readBody(this).then(ownBytes);
      },
      writable: true,
      configurable: true,
    },
    text: {
      value(this: LazyRequest) {
        return this[kReal] ? this[kReal].text() : readBody(this).then((b) => utf8.decode(b));
      },
      writable: true,
      configurable: true,
    },
    json: {
      value(this: LazyRequest) {
        return this[kReal] ? this[kReal].json() : readBody(this).then((b) => JSON.parse(utf8.decode(b)) as unknown);
      },
      writable: true,
      configurable: true,
    },
    // After the fast path, what would read the body again must fail as a used body does.
    clone: {
      value(this: LazyRequest) {
        if (this[kConsumed]) throw unusable();
        return realRequest(this).clone();
      },
      writable: true,
      configurable: true,
    },
    formData: {
      value(this: LazyRequest) {
        return this[kConsumed] ? Promise.reject(unusable()) : realRequest(this).formData();
      },
      writable: true,
      configurable: true,
    },
    blob: {
      value(this: LazyRequest) {
        return this[kConsumed] ? Promise.reject(unusable()) : realRequest(this).blob();
      },
      writable: true,
      configurable: true,
    },
  });
  if ('bytes' in Request.prototype) {
    Object.defineProperty(proto, 'bytes', {
      value(this: LazyRequest) {
        return this[kReal]
          ? (this[kReal] as unknown as { bytes(): Promise<Uint8Array> }).bytes()
          : readBody(this).then((b) => new Uint8Array(ownBytes(b)));
      },
      writable: true,
      configurable: true,
    });
  }
  return proto;
})();

const PLAIN_HOST = /^[A-Za-z0-9.-]+(?::\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](?::\d{1,5})?$/;

/** The Host header (`:authority` in HTTP/2), read from the raw list: `req.headers` is built on first use, and many handlers never ask. */
function hostOf(req: IncomingMessage): string | undefined {
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if ((name.length === 4 && name.toLowerCase() === 'host') || name === ':authority') return raw[i + 1];
  }
  return undefined;
}

function toRequest(req: IncomingMessage, res: ServerResponse, rootPath: string): Request {
  const host = hostOf(req) ?? `${req.socket.localAddress ?? 'localhost'}:${req.socket.localPort ?? ''}`;
  const scheme = schemeOf(req as { socket: { encrypted?: boolean } });
  const path = rootPath + (req.url ?? '/');
  // The common case needs no URL parser; anything unusual goes through one (and may be a 400).
  const url =
    path.charCodeAt(0) === 47 /* / */ && PLAIN_HOST.test(host)
      ? `${scheme}://${host}${path}`
      : new URL(path, `${scheme}://${host}`).href;
  const lazy = Object.create(LAZY_PROTO) as LazyRequest;
  lazy[kIncoming] = req;
  lazy[kOutgoing] = res;
  lazy[kUrl] = url;
  return lazy as unknown as Request;
}

function writeHead(res: ServerResponse, response: Response, http2: boolean): void {
  // setHeader, not writeHead(status, [name, value, ...]): once a header is already set on
  // `res` (the worker's default headers), Node 20's writeHead applies the array's pairs
  // one by one with setHeader, so of two Set-Cookie lines only the last survived.
  for (const [name, value] of response.headers) {
    if (name !== 'set-cookie') res.setHeader(name, value);
  }
  const cookies = response.headers.getSetCookie();
  if (cookies.length > 0) res.setHeader('set-cookie', cookies);
  if (response.statusText && !http2) res.statusMessage = response.statusText;
  res.writeHead(response.status);
}

/**
 * Write a light response (see response.ts): status, headers and a string or bytes body, in
 * one go. On HTTP/1.1, with nothing set on `res` before (the usual case: the worker's default
 * headers go into the head by themselves), the headers go to writeHead() as one flat list,
 * which Node writes as they are; setHeader() would validate, lower-case and store each one
 * first, which costs about as much as the rest of a small response.
 */
function writeLight(
  res: ServerResponse,
  parts: NonNullable<ReturnType<typeof lightParts>>,
  head: boolean,
  http2: boolean,
): void {
  const { headers, body } = parts;
  // 204 and 304 carry no body and no Content-Length (RFC 9110 8.6); HTTP/2 resets a stream whose length header disagrees with its data.
  const bodiless = parts.status === 204 || parts.status === 304;
  const flat: string[] | null = !http2 && res.getHeaderNames().length === 0 ? [] : null;
  /** One header onto the response: into the flat list, or set on `res` (Set-Cookie lines added, not replaced). */
  const put = (name: string, value: string): void => {
    if (flat) flat.push(name, value);
    else if (name.length === 10 && name.toLowerCase() === 'set-cookie') res.appendHeader('set-cookie', value);
    else res.setHeader(name, value);
  };
  let type = false;
  /** One of the app's headers: its Content-Length is ours to set, its Content-Type is noted. */
  const set = (name: string, value: string): void => {
    // content-length (14), content-type (12): only names of those lengths need comparing.
    if (name.length === 14 || name.length === 12) {
      const lower = name.toLowerCase();
      if (lower === 'content-length') return;
      if (lower === 'content-type') type = true;
    }
    put(name, value);
  };
  if (headers instanceof Headers) {
    for (const [name, value] of headers) if (name !== 'set-cookie') set(name, value);
    for (const cookie of headers.getSetCookie()) put('set-cookie', cookie);
  } else if (Array.isArray(headers)) {
    for (const [name, value] of headers as Array<[string, string]>) set(name, value);
  } else if (headers) {
    for (const name in headers) set(name, (headers as Record<string, string>)[name]!);
  }
  if (!type && typeof body === 'string') put('content-type', 'text/plain;charset=UTF-8');
  if (!bodiless)
    put(
      'content-length',
      String(body === null ? 0 : typeof body === 'string' ? Buffer.byteLength(body) : body.byteLength),
    );
  if (parts.statusText && !http2) res.statusMessage = parts.statusText;
  if (flat) res.writeHead(parts.status, flat);
  else res.writeHead(parts.status);
  if (head || body === null || bodiless) res.end();
  else res.end(body);
}

async function pipeBody(res: ServerResponse, body: ReadableStream<Uint8Array>): Promise<void> {
  const reader = body.getReader();
  const closed = (): boolean => res.destroyed;
  const onClose = (): void => void reader.cancel().catch(() => {});
  res.once('close', onClose);
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done || closed()) break;
      if (!res.write(value)) {
        await new Promise<void>((resolve) => {
          const go = (): void => {
            res.off('drain', go);
            res.off('close', go);
            resolve();
          };
          res.on('drain', go);
          res.on('close', go);
        });
      }
    }
  } finally {
    res.off('close', onClose);
  }
  if (!closed()) res.end();
}

function fail(res: ServerResponse, err: unknown, onError: (err: unknown) => void): void {
  onError(err);
  if (!res.headersSent) {
    res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8', 'content-length': '21' });
    res.end('Internal Server Error');
  } else {
    res.destroy(err instanceof Error ? err : new Error(String(err)));
  }
}

export interface FetchOptions {
  /** `root_path`: the prefix the app is mounted under, put back in front of the path. */
  rootPath: string;
  /** Called with what the handler threw or rejected with; the client gets a 500. */
  onError: (err: unknown) => void;
}

export function fetchListener(handler: FetchHandler, { rootPath, onError }: FetchOptions): RequestListener {
  return (req, res) => {
    let request: Request;
    try {
      request = toRequest(req, res, rootPath);
    } catch {
      res.writeHead(400, { 'content-type': 'text/plain; charset=utf-8', connection: 'close' });
      res.end('Bad Request');
      return;
    }
    let result: Response | Promise<Response>;
    try {
      result = handler(request, { incoming: req, outgoing: res });
    } catch (err) {
      fail(res, err, onError);
      return;
    }
    // A handler that answers at once is answered at once: no promise, no closures.
    if (result instanceof Response) return respond(req, res, result, onError);
    Promise.resolve(result).then(
      (response) => respond(req, res, response, onError),
      (err: unknown) => fail(res, err, onError),
    );
  };
}

function respond(req: IncomingMessage, res: ServerResponse, response: unknown, onError: (err: unknown) => void): void {
  try {
    write(req, res, response, onError);
  } catch (err) {
    // A header Node refuses, say: a 500 (or a closed connection, if the head is out), not a crashed worker.
    fail(res, err, onError);
  }
}

function write(req: IncomingMessage, res: ServerResponse, response: unknown, onError: (err: unknown) => void): void {
  if (!(response instanceof Response)) {
    fail(
      res,
      new TypeError(`the fetch handler returned ${response === null ? 'null' : typeof response}, not a Response`),
      onError,
    );
    return;
  }
  if (res.writableEnded) return;
  const light = lightParts(response);
  if (light) return writeLight(res, light, req.method === 'HEAD', req.httpVersionMajor === 2);
  writeHead(res, response, req.httpVersionMajor === 2);
  if (response.body === null || req.method === 'HEAD') {
    void response.body?.cancel().catch(() => {});
    res.end();
    return;
  }
  pipeBody(res, response.body).catch((err: unknown) => fail(res, err, onError));
}
