/**
 * The fetch adapter: serves a Web-standard handler `(request) => Response` from Node's
 * http server. Request bodies stream in and response bodies stream out with
 * backpressure; nothing is buffered whole.
 */
import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';

/** What a fetch handler receives besides the request: Hono's node-server binding names. */
export interface FetchEnv {
  incoming: IncomingMessage;
  outgoing: ServerResponse;
}

export type FetchHandler = (request: Request, env: FetchEnv) => Response | Promise<Response>;

const NO_BODY = new Set(['GET', 'HEAD']);

function toRequest(req: IncomingMessage, res: ServerResponse, rootPath: string): Request {
  const host = req.headers.host ?? (req.headers[':authority'] as string | undefined) ?? `${req.socket.localAddress ?? 'localhost'}:${req.socket.localPort ?? ''}`;
  // TLS, or a trusted proxy's X-Forwarded-Proto, marks the socket encrypted.
  const scheme = (req.socket as { encrypted?: boolean }).encrypted ? 'https' : 'http';
  const url = new URL(rootPath + (req.url ?? '/'), `${scheme}://${host}`);
  const headers = new Headers();
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.charCodeAt(0) !== 58 /* ':' HTTP/2 pseudo-header */) headers.append(name, raw[i + 1]!);
  }
  const controller = new AbortController();
  res.once('close', () => {
    if (!res.writableFinished) controller.abort();
  });
  const init: RequestInit & { duplex?: 'half' } = { method: req.method, headers, signal: controller.signal };
  if (!NO_BODY.has(req.method ?? 'GET')) {
    init.body = Readable.toWeb(req) as ReadableStream<Uint8Array>;
    init.duplex = 'half';
  }
  const request = new Request(url, init);
  // The client address, where srvx and Bun-style handlers look for it.
  Object.defineProperty(request, 'ip', { value: req.socket.remoteAddress, enumerable: true });
  return request;
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
    Promise.resolve(result).then(
      (response) => {
        if (!(response instanceof Response)) {
          fail(res, new TypeError(`the fetch handler returned ${response === null ? 'null' : typeof response}, not a Response`), onError);
          return;
        }
        if (res.writableEnded) return;
        writeHead(res, response, req.httpVersionMajor === 2);
        if (response.body === null || req.method === 'HEAD') {
          void response.body?.cancel().catch(() => {});
          res.end();
          return;
        }
        pipeBody(res, response.body).catch((err: unknown) => fail(res, err, onError));
      },
      (err: unknown) => fail(res, err, onError),
    );
  };
}
