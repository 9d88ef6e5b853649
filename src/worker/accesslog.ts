/**
 * The access log: Gunicorn's format atoms (`%(h)s %(r)s ...`) or `json`, one line per
 * request, written through an asynchronous pino destination so that logging never
 * blocks the request path.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ServerResponse as ServerResponseClass } from 'node:http';
import { Http2ServerResponse } from 'node:http2';
import type { Socket } from 'node:net';
import pino from 'pino';
import { clientOf } from './proxy.js';
import { sentStatus } from './sent-status.js';

export interface AccessEntry {
  req: IncomingMessage;
  res: ServerResponse;
  /** Request duration in microseconds. */
  micros: number;
  /** When the request started, in ms since the epoch. */
  startedAt: number;
  /** A request the parser rejected: its first line as received (escaped), or `-`. */
  requestLine?: string;
}

type Atom = (e: AccessEntry) => string;

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
let dateCache = { second: -1, text: '' };

/** `[20/Nov/2026:23:28:21 +0000]`, computed once per second. */
function clfDate(ms: number): string {
  const second = Math.floor(ms / 1000);
  if (second !== dateCache.second) {
    const d = new Date(ms);
    const pad = (n: number): string => String(n).padStart(2, '0');
    const off = -d.getTimezoneOffset();
    const tz = `${off >= 0 ? '+' : '-'}${pad(Math.floor(Math.abs(off) / 60))}${pad(Math.abs(off) % 60)}`;
    dateCache = {
      second,
      text: `[${pad(d.getDate())}/${MONTHS[d.getMonth()]}/${d.getFullYear()}:${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())} ${tz}]`,
    };
  }
  return dateCache.text;
}

const kBytes = Symbol('tsgun.bytes');
/**
 * `_hasBody` is node:http's own flag: false for HEAD, 204, 304 and 1xx, whose bodies it
 * drops. HTTP/2 compatibility responses have no such flag, but have `req`.
 */
type Counted = ServerResponse & { [kBytes]?: number; _hasBody?: boolean };

function sendsBody(res: Counted): boolean {
  if (res._hasBody !== undefined) return res._hasBody;
  const status = res.statusCode;
  return res.req?.method !== 'HEAD' && status >= 200 && status !== 204 && status !== 304;
}

function chunkLength(chunk: unknown, encoding?: unknown): number {
  if (typeof chunk === 'string')
    return Buffer.byteLength(chunk, typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8');
  if (chunk instanceof Uint8Array) return chunk.byteLength;
  return 0;
}

let counting = false;

/**
 * Count body bytes on every response, once per process (a prototype patch, not a closure
 * per request): node:http responses, and HTTP/2 ones (the http2 worker class).
 */
function countBodyBytes(): void {
  if (counting) return;
  counting = true;
  patchWrites(ServerResponseClass.prototype);
  patchWrites(Http2ServerResponse.prototype);
}

function patchWrites(prototype: object): void {
  const proto = prototype as {
    write: (this: Counted, chunk: unknown, ...rest: unknown[]) => boolean;
    end: (this: Counted, chunk?: unknown, ...rest: unknown[]) => Counted;
  };
  const { write, end } = proto;
  // Counted after the call: the first write sends the headers, and only then does Node know
  // the response has no body. Writes after end() send nothing.
  proto.write = function (chunk, ...rest) {
    const open = !this.writableEnded;
    const ok = write.call(this, chunk, ...rest);
    if (open && sendsBody(this)) this[kBytes] = (this[kBytes] ?? 0) + chunkLength(chunk, rest[0]);
    return ok;
  };
  proto.end = function (chunk, ...rest) {
    const open = !this.writableEnded;
    const before = this[kBytes];
    const result = end.call(this, chunk, ...rest);
    // HTTP/2's end() hands its chunk to this.write(), which has counted it already.
    const counted = this[kBytes] !== before;
    if (open && !counted && sendsBody(this) && chunk !== undefined && typeof chunk !== 'function')
      this[kBytes] = (this[kBytes] ?? 0) + chunkLength(chunk, rest[0]);
    return result;
  };
}

function bytesSent(res: ServerResponse): number {
  return (res as Counted)[kBytes] ?? 0;
}

function header(v: string | string[] | number | undefined): string {
  if (v === undefined) return '-';
  return Array.isArray(v) ? v.join(', ') : String(v);
}

/**
 * A response header as sent. Headers set with setHeader() are still on the response;
 * headers handed to writeHead() (as many apps, and the fetch adapter, give them) are only
 * in the head Node wrote, `_header` (HTTP/1.1).
 */
function sentHeader(res: ServerResponse, lower: string): string | string[] | number | undefined {
  const set = res.getHeader(lower);
  if (set !== undefined) return set;
  const head = (res as { _header?: unknown })._header;
  if (typeof head !== 'string') return undefined;
  const found: string[] = [];
  // Line 0 is the status line.
  for (const line of head.split('\r\n').slice(1)) {
    const colon = line.indexOf(':');
    if (colon === lower.length && line.slice(0, colon).toLowerCase() === lower)
      found.push(line.slice(colon + 1).trim());
  }
  return found.length === 0 ? undefined : found.length === 1 ? found[0] : found;
}

function user(req: IncomingMessage): string {
  const auth = req.headers.authorization;
  if (!auth || !auth.startsWith('Basic ')) return '-';
  const decoded = Buffer.from(auth.slice(6), 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  return colon > 0 ? decoded.slice(0, colon) : '-';
}

function path(req: IncomingMessage): string {
  if (req.url === undefined) return '-';
  const url = req.url;
  const q = url.indexOf('?');
  return q < 0 ? url : url.slice(0, q);
}

function query(req: IncomingMessage): string {
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  return q < 0 ? '' : url.slice(q + 1);
}

const protocol = (req: IncomingMessage): string => (req.httpVersion ? `HTTP/${req.httpVersion}` : '-');

/** The client address: the socket's peer, or the client a trusted proxy forwarded (see proxy.ts). */
export const clientAddress = (req: IncomingMessage): string => clientOf(req) ?? '-';

const ATOMS: Record<string, Atom> = {
  h: (e) => clientAddress(e.req),
  l: () => '-',
  u: (e) => user(e.req),
  t: (e) => clfDate(e.startedAt),
  r: (e) => e.requestLine ?? `${e.req.method} ${e.req.url} ${protocol(e.req)}`,
  m: (e) => e.req.method ?? '-',
  U: (e) => path(e.req),
  q: (e) => query(e.req),
  H: (e) => protocol(e.req),
  s: (e) => String(sentStatus(e.res)),
  B: (e) => String(bytesSent(e.res)),
  b: (e) => String(bytesSent(e.res) || '-'),
  f: (e) => header(e.req.headers.referer),
  a: (e) => header(e.req.headers['user-agent']),
  T: (e) => String(Math.floor(e.micros / 1e6)),
  M: (e) => String(Math.round(e.micros / 1e3)),
  D: (e) => String(Math.round(e.micros)),
  L: (e) => (e.micros / 1e6).toFixed(6),
  p: () => `<${process.pid}>`,
};

/** Compile a Gunicorn-style format into a function from entry to line. */
export function compileFormat(format: string): (e: AccessEntry) => string {
  const parts: Array<string | Atom> = [];
  const re = /%\(([^)]+)\)s/g;
  let last = 0;
  for (let m = re.exec(format); m; m = re.exec(format)) {
    parts.push(format.slice(last, m.index));
    const name = m[1]!;
    const braced = /^\{(.+)\}([ioe])$/.exec(name);
    if (braced) {
      const key = braced[1]!.toLowerCase();
      const rawKey = braced[1]!;
      if (braced[2] === 'i') parts.push((e) => header(e.req.headers[key]));
      else if (braced[2] === 'o') parts.push((e) => header(sentHeader(e.res, key)));
      else parts.push(() => process.env[rawKey] ?? '-');
    } else {
      parts.push(ATOMS[name] ?? ((): string => '-'));
    }
    last = re.lastIndex;
  }
  parts.push(format.slice(last));
  const compiled = parts.filter((p) => p !== '');
  return (e) => {
    let line = '';
    for (const p of compiled) line += typeof p === 'string' ? p : p(e);
    return line;
  };
}

/** The `json` access log format: the same information as the atoms, one object per line. */
export function jsonEntry(e: AccessEntry): string {
  return JSON.stringify({
    time: new Date(e.startedAt).toISOString(),
    remote_addr: clientAddress(e.req),
    user: user(e.req),
    method: e.req.method,
    path: path(e.req),
    query: query(e.req),
    protocol: protocol(e.req),
    status: sentStatus(e.res),
    bytes: bytesSent(e.res),
    referer: e.req.headers.referer ?? null,
    user_agent: e.req.headers['user-agent'] ?? null,
    duration_ms: Math.round(e.micros) / 1000,
    pid: process.pid,
  });
}

/** Printable ASCII only, and no quote (the request line is quoted): the rest as `\xNN`. */
function escape(text: string): string {
  return text.replace(/[^\x20-\x21\x23-\x7e]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

const LINE_MAX = 256;
const REQUEST_LINE = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+) (\S+) HTTP\/(\d\.\d)$/;

/**
 * An entry for a request Node's parser rejected, from what is known: the peer, the status,
 * and the first line of the bytes it failed on (the request line, when it is one).
 */
export function unparsedEntry(socket: Socket, status: number, rawPacket: Buffer | null): AccessEntry {
  let requestLine = '-';
  let method: string | undefined;
  let url: string | undefined;
  let httpVersion: string | undefined;
  if (rawPacket && rawPacket.length > 0) {
    let end = rawPacket.indexOf(10);
    if (end < 0 || end > LINE_MAX) end = Math.min(rawPacket.length, LINE_MAX);
    const line = rawPacket.subarray(0, end).toString('latin1').replace(/\r$/, '');
    requestLine = escape(line) || '-';
    const m = REQUEST_LINE.exec(line);
    if (m) [, method, url, httpVersion] = m.map(escape);
  }
  const req = { socket, headers: {}, method, url, httpVersion } as unknown as IncomingMessage;
  const res = { statusCode: status, getHeader: () => undefined } as unknown as ServerResponse;
  return { req, res, micros: 0, startedAt: Date.now(), requestLine };
}

export interface AccessLog {
  write(e: AccessEntry): void;
  /** Log a request Node's parser rejected (see unparsedEntry). */
  unparsed(socket: Socket, status: number, rawPacket: Buffer | null): void;
  reopen(): void;
  flush(): void;
}

export function createAccessLog(file: string, format: string): AccessLog {
  countBodyBytes();
  const dest = pino.destination({ dest: file === '-' ? 1 : file, sync: false, mkdir: true, append: true });
  const render = format === 'json' ? jsonEntry : compileFormat(format);
  return {
    write: (e) => void dest.write(`${render(e)}\n`),
    unparsed: (socket, status, rawPacket) => void dest.write(`${render(unparsedEntry(socket, status, rawPacket))}\n`),
    reopen: () => {
      if (file !== '-') dest.reopen();
    },
    flush: () => {
      try {
        dest.flushSync();
      } catch {
        // Not ready yet (the file is still opening); nothing to flush.
      }
    },
  };
}
