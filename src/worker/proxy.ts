/**
 * Clients behind a proxy: trusted `X-Forwarded-For` / `X-Forwarded-Proto` / `Forwarded`
 * headers, and the PROXY protocol (v1 text, v2 binary) in front of HTTP.
 */
import { isIP, type Socket } from 'node:net';
import type { PeerList } from '../peers.js';

export interface ForwardedInfo {
  client?: string;
  proto?: 'http' | 'https';
}

/** One hop a proxy recorded: the node it saw the request come from (an address, if it is one), and the scheme. */
interface Hop {
  node: string | undefined;
  proto: string | undefined;
}

/**
 * The client and scheme a trusted proxy reports, from the one header family that
 * `family` (the setting `forwarded_headers`) names: `forwarded` (RFC 7239) or
 * `x-forwarded`. The other family is client-controlled: nginx, for one, appends to
 * `X-Forwarded-For` and passes `Forwarded` through untouched. Each proxy adds the peer it
 * saw on the right, so hops are walked from the right, skipping `trusted` ones; the first
 * other one is the client, and the leftmost when every hop is trusted (as proxy-addr and
 * Uvicorn do). A hop that is not an address (`unknown`, `_hidden`, garbage) ends the walk
 * without a client: the caller keeps the peer. The caller has checked that the peer itself
 * is trusted.
 */
export function forwarded(headers: NodeJS.Dict<string | string[]>, family: string, trusted: PeerList): ForwardedInfo {
  const hops = family === 'forwarded' ? forwardedHops(joined(headers.forwarded)) : xForwardedHops(headers);
  if (hops.length === 0) return {};
  let i = hops.length - 1;
  let address = hostAddress(hops[i]!.node);
  while (i > 0 && address !== undefined && trusted.has(address)) address = hostAddress(hops[--i]!.node);
  const { proto } = hops[i]!;
  const out: ForwardedInfo = {};
  if (address !== undefined) out.client = address;
  const scheme = proto === undefined ? undefined : SCHEMES.get(proto.toLowerCase());
  if (scheme !== undefined) out.proto = scheme;
  return out;
}

/** Schemes a proxy may forward; some write the WebSocket scheme for an upgrade. */
const SCHEMES = new Map<string, 'http' | 'https'>([
  ['http', 'http'],
  ['https', 'https'],
  ['ws', 'http'],
  ['wss', 'https'],
]);

/** A header's lines joined in order (Node joins repeated lines with `, ` itself; HTTP/2 may give an array). */
const joined = (value: string | string[] | undefined): string | undefined =>
  Array.isArray(value) ? value.join(',') : value;

/** Comma-separated entries, trimmed, empty ones dropped (as proxy-addr does). */
const entries = (value: string | undefined): string[] =>
  value === undefined
    ? []
    : value
        .split(',')
        .map((e) => e.trim())
        .filter(Boolean);

/**
 * `X-Forwarded-For` hops, each with its `X-Forwarded-Proto` entry: the entry at the same
 * place counted from the right, or the only one when there is one (nginx's `$scheme`
 * overwrites the header, leaving one entry for any number of hops).
 */
function xForwardedHops(headers: NodeJS.Dict<string | string[]>): Hop[] {
  const fors = entries(joined(headers['x-forwarded-for']));
  const protos = entries(joined(headers['x-forwarded-proto']));
  const protoAt = (i: number): string | undefined =>
    protos.length === 1 ? protos[0] : protos[protos.length - fors.length + i];
  if (fors.length === 0) return protos.length === 1 ? [{ node: undefined, proto: protos[0] }] : [];
  return fors.map((node, i) => ({ node, proto: protoAt(i) }));
}

/**
 * The IP address in `entry`, or undefined: `192.0.2.43`, `192.0.2.43:47011`, `2001:db8::17`,
 * `[2001:db8::17]`, `[2001:db8::17]:4711` (RFC 7239 section 6; an obfuscated port such as
 * `:_p1` is allowed). `unknown`, `_hidden` and anything malformed are not addresses.
 */
export function hostAddress(entry: string | undefined): string | undefined {
  if (entry === undefined || isIP(entry)) return entry;
  const m = /^(?:\[([^\]]+)\]|([^:]+))(?::\d{1,5}|:_[\w.-]+)?$/.exec(entry);
  if (m?.[1] !== undefined) return isIP(m[1]) === 6 ? m[1] : undefined;
  return m?.[2] !== undefined && isIP(m[2]) === 4 ? m[2] : undefined;
}

/**
 * `Forwarded` hops (RFC 7239), a hop per element. An element that is not `name=value`
 * pairs with distinct names is a hop with no address and no scheme. Elements are split
 * from the right, like the walk: whatever a client wrote on the left (an unclosed quote
 * included) cannot change how the elements trusted proxies appended after it are read.
 */
function forwardedHops(value: string | undefined): Hop[] {
  if (value === undefined) return [];
  const malformed: Hop = { node: undefined, proto: undefined };
  return splitFromRight(value, ',')
    .filter((element) => element === null || element.trim() !== '')
    .map((element) => {
      if (element === null) return malformed;
      const pairs = new Map<string, string>();
      for (const pair of splitFromRight(element, ';')) {
        if (pair?.trim() === '') continue;
        const m = pair === null ? null : PAIR.exec(pair);
        if (!m || pairs.has(m[1]!.toLowerCase())) return malformed;
        pairs.set(m[1]!.toLowerCase(), m[2] ?? m[3]!.replace(/\\(.)/g, '$1'));
      }
      return { node: pairs.get('for'), proto: pairs.get('proto') };
    });
}

/** `name=token` or `name="quoted string"`; the token may hold `:` and `[]`, which RFC 7239 wants quoted. */
const PAIR = /^\s*([\w!#$%&'*+.^`|~-]+)=(?:([^\s";,\\]+)|"((?:[^"\\]|\\.)*)")\s*$/;

/**
 * `text` split at `sep` outside quoted strings, scanning from the right. A quote with an
 * odd run of backslashes before it is escaped. A part whose quote is never closed can only
 * be the leftmost one, and comes back as null.
 */
function splitFromRight(text: string, sep: string): Array<string | null> {
  const parts: Array<string | null> = [];
  let end = text.length;
  let quoted = false;
  for (let i = text.length - 1; i >= 0; i--) {
    const c = text[i];
    if (c === '"') {
      let slashes = 0;
      while (text[i - 1 - slashes] === '\\') slashes++;
      if (slashes % 2 === 0) quoted = !quoted;
    } else if (c === sep && !quoted) {
      parts.push(text.slice(i + 1, end));
      end = i;
    }
  }
  parts.push(quoted ? null : text.slice(0, end));
  return parts.reverse();
}

/** Per request: the client and scheme, when a trusted proxy or HTTP/2 needs them kept on the request. */
export const kClient = Symbol.for('tsgun.client');
export const kScheme = Symbol.for('tsgun.scheme');
type Marked = { [kClient]?: string; [kScheme]?: 'http' | 'https' };

/** The client address of a request: forwarded by a trusted proxy, or the socket's peer. */
export function clientOf(req: { socket?: { remoteAddress?: string } | null }): string | undefined {
  return (req as Marked)[kClient] ?? req.socket?.remoteAddress;
}

/** The scheme the client used: forwarded by a trusted proxy, or TLS or not. */
export function schemeOf(req: { socket?: { encrypted?: boolean } | null }): 'http' | 'https' {
  return (req as Marked)[kScheme] ?? (req.socket?.encrypted ? 'https' : 'http');
}

/**
 * Make a Node socket report the proxied client: `req.socket.remoteAddress`, `encrypted`.
 * `undefined` leaves the address as it is; `null` reports none, as a unix socket peer does.
 */
export function presentClient(socket: Socket, client: string | null | undefined, https: boolean | undefined): void {
  if (client !== undefined) {
    const family = client === null ? undefined : isIP(client) === 6 ? 'IPv6' : 'IPv4';
    Object.defineProperty(socket, 'remoteAddress', { value: client ?? undefined, configurable: true });
    Object.defineProperty(socket, 'remoteFamily', { value: family, configurable: true });
  }
  if (https !== undefined)
    Object.defineProperty(socket, 'encrypted', { value: https || undefined, configurable: true });
}

// ---- PROXY protocol ------------------------------------------------------------------

const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V1_PREFIX = Buffer.from('PROXY ');

export type ProxyMode = 'off' | 'v1' | 'v2' | 'auto';

export type ProxyParse =
  | { state: 'more' }
  | { state: 'none' }
  | { state: 'error'; reason: string }
  | { state: 'done'; length: number; version: 1 | 2; client?: string; clientPort?: number };

/** Eight 16-bit words as an IPv6 address in the form Node reports peers in (RFC 5952: longest zero run as `::`; IPv4-mapped as `::ffff:a.b.c.d`). */
function ipv6Text(words: readonly number[]): string {
  if (words.slice(0, 5).every((w) => w === 0) && words[5] === 0xffff)
    return `::ffff:${words[6]! >> 8}.${words[6]! & 0xff}.${words[7]! >> 8}.${words[7]! & 0xff}`;
  let [best, bestLen] = [-1, 1];
  for (let i = 0; i < 8;) {
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j > i ? j : i + 1;
  }
  const hex = (ws: readonly number[]): string => ws.map((w) => w.toString(16)).join(':');
  if (best < 0) return hex(words);
  return `${hex(words.slice(0, best))}::${hex(words.slice(best + bestLen))}`;
}

/**
 * Parse a PROXY header at the start of `buf`. `more`: not enough bytes yet; `none`: the
 * connection does not start with one.
 */
export function parseProxyHeader(buf: Buffer): ProxyParse {
  const couldBe = (sig: Buffer): boolean =>
    buf.subarray(0, Math.min(buf.length, sig.length)).equals(sig.subarray(0, Math.min(buf.length, sig.length)));
  if (couldBe(V2_SIGNATURE)) {
    if (buf.length < 16) return { state: 'more' };
    const verCmd = buf[12]!;
    if (verCmd >> 4 !== 2) return { state: 'error', reason: 'unsupported PROXY v2 version' };
    const length = 16 + buf.readUInt16BE(14);
    if (buf.length < length) return { state: 'more' };
    const command = verCmd & 0x0f; // 0 LOCAL, 1 PROXY
    const family = buf[13]! >> 4; // 1 INET, 2 INET6
    if (command === 0 || family === 0) return { state: 'done', length, version: 2 };
    if (family === 1 && length >= 16 + 12) {
      return {
        state: 'done',
        length,
        version: 2,
        client: Array.from(buf.subarray(16, 20)).join('.'),
        clientPort: buf.readUInt16BE(24),
      };
    }
    if (family === 2 && length >= 16 + 36) {
      const words: number[] = [];
      for (let i = 0; i < 16; i += 2) words.push(buf.readUInt16BE(16 + i));
      return { state: 'done', length, version: 2, client: ipv6Text(words), clientPort: buf.readUInt16BE(48) };
    }
    return { state: 'done', length, version: 2 };
  }
  if (couldBe(V1_PREFIX)) {
    const end = buf.indexOf('\r\n');
    if (end < 0) return buf.length > 107 ? { state: 'error', reason: 'PROXY v1 line too long' } : { state: 'more' };
    const parts = buf.subarray(0, end).toString('latin1').split(' ');
    if (parts[1] === 'UNKNOWN') return { state: 'done', length: end + 2, version: 1 };
    if (parts.length !== 6 || (parts[1] !== 'TCP4' && parts[1] !== 'TCP6') || !isIP(parts[2]!))
      return { state: 'error', reason: 'malformed PROXY v1 line' };
    return { state: 'done', length: end + 2, version: 1, client: parts[2]!, clientPort: Number(parts[4]) };
  }
  return { state: 'none' };
}
