/**
 * Clients behind a proxy: trusted `X-Forwarded-For` / `X-Forwarded-Proto` / `Forwarded`
 * headers, and the PROXY protocol (v1 text, v2 binary) in front of HTTP.
 */
import { BlockList, isIP, type Socket } from 'node:net';

/** A set of peers: addresses, CIDR ranges, `*` (everyone) and `unix` (unix socket peers). */
export class PeerList {
  private readonly any: boolean;
  private readonly unix: boolean;
  private readonly list = new BlockList();

  constructor(entries: readonly string[]) {
    const items = entries.flatMap((e) => e.split(',')).map((e) => e.trim()).filter(Boolean);
    this.any = items.includes('*');
    this.unix = this.any || items.includes('unix');
    for (const item of items) {
      if (item === '*' || item === 'unix') continue;
      const [addr, bits, extra] = item.split('/');
      // BlockList validates the address itself (inet_pton), and without compiling Node's
      // IPv6 regular expression, which costs a new worker milliseconds at boot.
      try {
        if (extra !== undefined || (bits !== undefined && !/^\d+$/.test(bits))) throw new Error('bad prefix');
        if (bits === undefined) this.list.addAddress(addr!, familyOf(addr!));
        else this.list.addSubnet(addr!, Number(bits), familyOf(addr!));
      } catch {
        throw new Error(`${JSON.stringify(item)} is not an IP address, a CIDR range, "*" or "unix"`);
      }
    }
  }

  /**
   * Is this peer trusted? `undefined` is a unix socket peer. An IPv4-mapped IPv6 address
   * (`::ffff:10.0.0.1`) matches the IPv4 entries; anything that is not an address, none.
   */
  has(address: string | undefined): boolean {
    if (this.any) return true;
    if (!address) return this.unix;
    return this.list.check(address, familyOf(address));
  }
}

const familyOf = (address: string): 'ipv4' | 'ipv6' => (address.includes(':') ? 'ipv6' : 'ipv4');

/** Check a list of peers in a setting; returns a problem description, or null. */
export function checkPeerList(entries: readonly string[]): string | null {
  try {
    new PeerList(entries);
    return null;
  } catch (err) {
    return (err as Error).message;
  }
}

export interface ForwardedInfo {
  client?: string;
  proto?: string;
}

/**
 * The address in a `Forwarded: for=` node (RFC 7239 section 6): `192.0.2.43`,
 * `192.0.2.43:47011`, `[2001:db8:cafe::17]`, `[2001:db8:cafe::17]:4711`; anything else
 * (`unknown`, `_hidden`) is returned as is, and then is not an IP.
 */
function forwardedNode(value: string): string {
  if (value.startsWith('[')) {
    const end = value.indexOf(']');
    return end > 0 ? value.slice(1, end) : value;
  }
  const colon = value.lastIndexOf(':');
  return colon > 0 && isIP(value.slice(0, colon)) === 4 ? value.slice(0, colon) : value;
}

/** The client and scheme a trusted proxy reports: RFC 7239 `Forwarded` first, then `X-Forwarded-*`. */
export function forwarded(headers: NodeJS.Dict<string | string[]>): ForwardedInfo {
  const out: ForwardedInfo = {};
  const fwd = headers.forwarded;
  if (typeof fwd === 'string') {
    // The first element is the one nearest the client.
    for (const pair of fwd.split(',')[0]!.split(';')) {
      const eq = pair.indexOf('=');
      if (eq < 0) continue;
      const key = pair.slice(0, eq).trim().toLowerCase();
      const value = pair.slice(eq + 1).trim().replace(/^"|"$/g, '');
      if (key === 'for') out.client = forwardedNode(value);
      if (key === 'proto') out.proto = value.toLowerCase();
    }
  }
  const xff = headers['x-forwarded-for'];
  if (!out.client && xff) out.client = String(Array.isArray(xff) ? xff[0] : xff).split(',')[0]!.trim();
  const xfp = headers['x-forwarded-proto'];
  if (!out.proto && xfp) out.proto = String(Array.isArray(xfp) ? xfp[0] : xfp).split(',')[0]!.trim().toLowerCase();
  if (out.client !== undefined && !isIP(out.client)) delete out.client;
  if (out.proto !== undefined && out.proto !== 'http' && out.proto !== 'https') delete out.proto;
  return out;
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

/** Make a Node socket report the proxied client: `req.socket.remoteAddress`, `encrypted`. */
export function presentClient(socket: Socket, client: string | undefined, https: boolean | undefined): void {
  if (client !== undefined) {
    Object.defineProperty(socket, 'remoteAddress', { value: client, configurable: true });
    Object.defineProperty(socket, 'remoteFamily', { value: isIP(client) === 6 ? 'IPv6' : 'IPv4', configurable: true });
  }
  if (https !== undefined) Object.defineProperty(socket, 'encrypted', { value: https || undefined, configurable: true });
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
  if (words.slice(0, 5).every((w) => w === 0) && words[5] === 0xffff) return `::ffff:${words[6]! >> 8}.${words[6]! & 0xff}.${words[7]! >> 8}.${words[7]! & 0xff}`;
  let [best, bestLen] = [-1, 1];
  for (let i = 0; i < 8; ) {
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
  const couldBe = (sig: Buffer): boolean => buf.subarray(0, Math.min(buf.length, sig.length)).equals(sig.subarray(0, Math.min(buf.length, sig.length)));
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
      return { state: 'done', length, version: 2, client: Array.from(buf.subarray(16, 20)).join('.'), clientPort: buf.readUInt16BE(24) };
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
    if (parts.length !== 6 || (parts[1] !== 'TCP4' && parts[1] !== 'TCP6') || !isIP(parts[2]!)) return { state: 'error', reason: 'malformed PROXY v1 line' };
    return { state: 'done', length: end + 2, version: 1, client: parts[2]!, clientPort: Number(parts[4]) };
  }
  return { state: 'none' };
}
