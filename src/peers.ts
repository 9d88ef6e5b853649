/**
 * Trusted peers (`forwarded_allow_ips`, `proxy_allow_ips`): parsed once in the settings
 * registry to check them, and by each worker to decide whom to believe.
 */
import { BlockList } from 'node:net';

/** A set of peers: addresses, CIDR ranges, `*` (everyone) and `unix` (unix socket peers). */
export class PeerList {
  private readonly any: boolean;
  private readonly unix: boolean;
  private readonly list = new BlockList();
  private readonly seen = new Map<string, boolean>();

  constructor(entries: readonly string[]) {
    const items = entries
      .flatMap((e) => e.split(','))
      .map((e) => e.trim())
      .filter(Boolean);
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
    let trusted = this.seen.get(address);
    if (trusted === undefined) {
      // BlockList.check builds a native SocketAddress per call (microseconds); forwarded
      // headers ask about the same few proxies and clients on every request.
      if (this.seen.size >= SEEN_MAX) this.seen.clear();
      trusted = this.list.check(address, familyOf(address));
      this.seen.set(address, trusted);
    }
    return trusted;
  }
}

const SEEN_MAX = 4096;

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
