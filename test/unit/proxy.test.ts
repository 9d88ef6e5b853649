import assert from 'node:assert/strict';
import { isIP } from 'node:net';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { checkPeerList, PeerList } from '../../src/peers.js';
import { forwarded, type ForwardedInfo, hostAddress } from '../../src/worker/proxy.js';

describe('PeerList (forwarded_allow_ips, proxy_allow_ips)', () => {
  it('matches addresses, CIDR ranges and IPv4-mapped IPv6 peers', () => {
    const peers = new PeerList(['127.0.0.1, ::1', '10.0.0.0/8', '2001:db8::/32']);
    for (const a of [
      '127.0.0.1',
      '::ffff:127.0.0.1',
      '::1',
      '0:0:0:0:0:0:0:1',
      '10.200.3.4',
      '::ffff:10.1.1.1',
      '2001:db8:cafe::17',
    ])
      assert.equal(peers.has(a), true, a);
    for (const a of ['127.0.0.2', '11.0.0.1', '::2', '2001:db9::1', 'unknown', '_hidden', '1.2.3.4.5', '127.000.0.1'])
      assert.equal(peers.has(a), false, a);
    assert.equal(peers.has(undefined), false, 'a unix socket peer needs "unix"');
  });

  it('"*" trusts everyone, "unix" trusts unix socket peers only', () => {
    assert.equal(new PeerList(['*']).has('203.0.113.9'), true);
    assert.equal(new PeerList(['*']).has(undefined), true);
    const unix = new PeerList(['unix']);
    assert.equal(unix.has(undefined), true);
    assert.equal(unix.has('127.0.0.1'), false);
  });

  it('names the entry that is not an address or a range', () => {
    for (const bad of [
      '1.2.3',
      'localhost',
      '10.0.0.0/33',
      '10.0.0.0/abc',
      '10.0.0.0/8/1',
      '::1/129',
      'zz::1',
      '10.0.0.0/',
    ]) {
      assert.equal(
        checkPeerList(['127.0.0.1', bad]),
        `${JSON.stringify(bad)} is not an IP address, a CIDR range, "*" or "unix"`,
        bad,
      );
    }
    assert.equal(checkPeerList(['127.0.0.1,::1', '*', 'unix', '192.168.0.0/16']), null);
  });
});

describe('forwarded(): the client and scheme behind trusted proxies', () => {
  // As forwarded_allow_ips: nginx on this host, and a load balancer range in front of it.
  const trusted = new PeerList(['127.0.0.1', '::1', '10.0.0.0/8', '2001:db8:ffff::/48']);
  const xff = (value: string | string[], proto?: string | string[]): ForwardedInfo =>
    forwarded(
      { 'x-forwarded-for': value, ...(proto === undefined ? {} : { 'x-forwarded-proto': proto }) },
      'x-forwarded',
      trusted,
    );
  const rfc = (value: string | string[]): ForwardedInfo => forwarded({ forwarded: value }, 'forwarded', trusted);

  it('X-Forwarded-For: the first untrusted address from the right; spoofed entries on its left are ignored', () => {
    assert.deepEqual(xff('6.6.6.6, 203.0.113.9'), { client: '203.0.113.9' });
    assert.deepEqual(
      xff('6.6.6.6, 203.0.113.9, 10.0.0.2, 127.0.0.1'),
      { client: '203.0.113.9' },
      'trusted hops are skipped',
    );
    assert.deepEqual(xff('203.0.113.9'), { client: '203.0.113.9' });
    assert.deepEqual(xff('10.0.0.3, 10.0.0.2'), { client: '10.0.0.3' }, 'every entry trusted: the leftmost');
    assert.deepEqual(
      xff('  6.6.6.6 ,203.0.113.9  ,\t10.1.1.1 '),
      { client: '203.0.113.9' },
      'spaces and tabs around entries',
    );
    assert.deepEqual(xff('6.6.6.6,, 203.0.113.9,'), { client: '203.0.113.9' }, 'empty entries are dropped');
    assert.deepEqual(
      xff(['6.6.6.6, 1.1.1.1', '203.0.113.9, 10.0.0.1']),
      { client: '203.0.113.9' },
      'header lines in order',
    );
    assert.deepEqual(xff(''), {});
  });

  it('X-Forwarded-For: IPv6 with and without brackets, ports, IPv4-mapped trusted peers', () => {
    assert.deepEqual(xff('6.6.6.6, 2001:db8:cafe::17, ::1'), { client: '2001:db8:cafe::17' });
    assert.deepEqual(xff('[2001:db8:cafe::17]'), { client: '2001:db8:cafe::17' });
    assert.deepEqual(xff('6.6.6.6, [2001:db8:cafe::17]:4711, [2001:db8:ffff::1]:443'), { client: '2001:db8:cafe::17' });
    assert.deepEqual(xff('203.0.113.9:51000, 10.0.0.1:80'), { client: '203.0.113.9' });
    assert.deepEqual(
      xff('203.0.113.9, ::ffff:10.0.0.1'),
      { client: '203.0.113.9' },
      'an IPv4-mapped address matches the IPv4 range',
    );
    assert.deepEqual(xff('6.6.6.6, ::ffff:203.0.113.9'), { client: '::ffff:203.0.113.9' });
  });

  it('X-Forwarded-For: an untrusted entry that is not an address ends the walk without a client (the peer is kept)', () => {
    for (const bad of [
      'unknown',
      '_hidden',
      'localhost',
      '1.2.3.4.5',
      '203.0.113.9:99999999',
      '203.0.113.9:',
      '[2001:db8::1',
      '[1.2.3.4]',
      '2001:db8::1:80:x',
      '1.2.3.4 5.6.7.8',
    ]) {
      assert.deepEqual(xff(`203.0.113.7, ${bad}, 10.0.0.1`), {}, bad);
    }
    assert.deepEqual(
      xff('garbage, 203.0.113.9'),
      { client: '203.0.113.9' },
      'garbage left of the client is never read',
    );
  });

  it("X-Forwarded-Proto: the entry at the client's place from the right, or the only entry", () => {
    assert.deepEqual(xff('203.0.113.9, 10.0.0.2', 'https, http'), { client: '203.0.113.9', proto: 'https' });
    assert.deepEqual(xff('6.6.6.6, 203.0.113.9, 10.0.0.2', 'http, https, http'), {
      client: '203.0.113.9',
      proto: 'https',
    });
    assert.deepEqual(
      xff('203.0.113.9, 10.0.0.2', 'HTTPS'),
      { client: '203.0.113.9', proto: 'https' },
      'one entry applies as is',
    );
    assert.deepEqual(
      xff('6.6.6.6, 203.0.113.9', ['https', 'http']),
      { client: '203.0.113.9', proto: 'http' },
      'a spoofed line on the left',
    );
    assert.deepEqual(
      xff('6.6.6.6, 203.0.113.9, 10.0.0.2', 'https, http'),
      { client: '203.0.113.9', proto: 'https' },
      'counted from the right',
    );
    assert.deepEqual(
      xff('203.0.113.9, 10.0.0.2, 10.0.0.3', 'https, http'),
      { client: '203.0.113.9' },
      "no entry at the client's place",
    );
    assert.deepEqual(
      forwarded({ 'x-forwarded-proto': 'https' }, 'x-forwarded', trusted),
      { proto: 'https' },
      'X-Forwarded-Proto alone',
    );
    assert.deepEqual(
      xff('203.0.113.9', 'wss'),
      { client: '203.0.113.9', proto: 'https' },
      'the WebSocket schemes count as their HTTP ones',
    );
    assert.deepEqual(xff('203.0.113.9', 'ws'), { client: '203.0.113.9', proto: 'http' });
    for (const other of ['ftp', '__proto__', 'constructor', ''])
      assert.deepEqual(xff('203.0.113.9', other), { client: '203.0.113.9' }, other);
  });

  it('Forwarded (RFC 7239): the same walk over for= nodes, with proto= of the chosen element', () => {
    assert.deepEqual(rfc('for=7.7.7.7;proto=https, for=203.0.113.9;proto=http'), {
      client: '203.0.113.9',
      proto: 'http',
    });
    assert.deepEqual(rfc('for=203.0.113.9;proto=https, for=10.0.0.2;proto=http'), {
      client: '203.0.113.9',
      proto: 'https',
    });
    assert.deepEqual(
      rfc('for=10.0.0.3;proto=https, for=10.0.0.2'),
      { client: '10.0.0.3', proto: 'https' },
      'every node trusted: the leftmost',
    );
    assert.deepEqual(rfc(['for=7.7.7.7', 'for=203.0.113.9']), { client: '203.0.113.9' }, 'header lines in order');
    assert.deepEqual(
      rfc('For=203.0.113.9;PROTO=HTTPS;by=10.0.0.2;host=example.com'),
      { client: '203.0.113.9', proto: 'https' },
      'names are case-insensitive',
    );
    assert.deepEqual(
      rfc(' for=6.6.6.6 ,  for=203.0.113.9 ; proto=https '),
      { client: '203.0.113.9', proto: 'https' },
      'spaces around pairs and elements',
    );
  });

  it('Forwarded: IPv6 in brackets and quotes, ports (also obfuscated), quoted strings holding separators', () => {
    for (const node of [
      '"[2001:db8:cafe::17]"',
      '"[2001:db8:cafe::17]:4711"',
      '[2001:db8:cafe::17]:4711',
      '"[2001:db8:cafe::17]:_p1"',
      '"2001:db8:cafe::17"',
    ]) {
      assert.deepEqual(rfc(`for=6.6.6.6, for=${node}, for="[::1]:80"`), { client: '2001:db8:cafe::17' }, node);
    }
    for (const node of [
      '"203.0.113.9:47011"',
      '203.0.113.9:47011',
      '"203.0.113.9:_gazonk"',
      '"203.0.113.9"',
      '"203.0\\.113.9"',
    ]) {
      assert.deepEqual(rfc(`for=${node}`), { client: '203.0.113.9' }, node);
    }
    assert.deepEqual(
      rfc('for="6.6.6.6, for=10.0.0.1;proto=https", for=203.0.113.9'),
      { client: '203.0.113.9' },
      'a comma inside quotes splits nothing',
    );
    assert.deepEqual(rfc('for=203.0.113.9;host="a;b,c"'), { client: '203.0.113.9' });
  });

  it('Forwarded: obfuscated, unknown and malformed nodes end the walk without a client', () => {
    assert.deepEqual(rfc('for=203.0.113.9, for=_hidden'), {}, 'an obfuscated node the proxy wrote');
    assert.deepEqual(
      rfc('for=203.0.113.9, for=unknown;proto=https'),
      { proto: 'https' },
      'the trusted proxy still vouches for the scheme',
    );
    assert.deepEqual(rfc('for=203.0.113.9, proto=https'), { proto: 'https' }, 'an element without for=');
    for (const bad of [
      'garbage',
      'for=1.2.3.4;for=5.6.7.8',
      'for',
      'for=',
      'for = 1.2.3.4',
      'for="1.2.3.4"x',
      'for=a"b"',
      'for=1.2.3.4\\',
    ]) {
      assert.deepEqual(rfc(`for=203.0.113.7, ${bad}`), {}, bad);
    }
    assert.deepEqual(
      rfc('for="6.6.6.6, for=203.0.113.9;proto=https'),
      { client: '203.0.113.9', proto: 'https' },
      'an unclosed quote on the left',
    );
    assert.deepEqual(rfc('for="203.0.113.9'), {});
    assert.deepEqual(rfc(''), {});
  });

  it('honours only the chosen family: the other is ignored', () => {
    const both = { 'x-forwarded-for': '6.6.6.6', 'x-forwarded-proto': 'http', forwarded: 'for=7.7.7.7;proto=https' };
    assert.deepEqual(forwarded(both, 'x-forwarded', trusted), { client: '6.6.6.6', proto: 'http' });
    assert.deepEqual(forwarded(both, 'forwarded', trusted), { client: '7.7.7.7', proto: 'https' });
    assert.deepEqual(forwarded({ forwarded: 'for=7.7.7.7;proto=https' }, 'x-forwarded', trusted), {});
    assert.deepEqual(
      forwarded({ 'x-forwarded-for': '6.6.6.6', 'x-forwarded-proto': 'https' }, 'forwarded', trusted),
      {},
    );
  });

  it('hostAddress: the address in an entry, or nothing', () => {
    assert.equal(hostAddress('[::1]:8080'), '::1');
    assert.equal(hostAddress('::1'), '::1');
    assert.equal(hostAddress('192.0.2.1:_x'), '192.0.2.1');
    for (const bad of ['', '[]', '[::1]x', '::1:80]', 'unknown', '_hidden', '192.0.2.1:-1', '[192.0.2.1]:80'])
      assert.equal(hostAddress(bad), undefined, bad);
  });
});

describe('forwarded(): property: a client cannot choose what a trusted proxy reports', () => {
  const trusted = new PeerList(['127.0.0.1', '::1', '10.0.0.0/8']);
  const client = fc.oneof(fc.ipV4(), fc.ipV6()).filter((a) => isIP(a) !== 0 && !trusted.has(a));
  // What the client sends: any text, absent, or lines of comma lists of anything.
  const spoofed = fc.option(
    fc.oneof(
      fc.string(),
      fc.string({ unit: 'binary-ascii' }),
      fc.array(fc.string(), { maxLength: 4 }).map((a) => a.join(', ')),
    ),
  );
  const proxies = fc.array(
    fc.ipV4().map((a) => `10.${a.split('.').slice(1).join('.')}`),
    { maxLength: 3 },
  );
  const scheme = fc.constantFrom('http' as const, 'https' as const);
  const append = (header: string | null, entry: string): string => (header === null ? entry : `${header}, ${entry}`);

  it('X-Forwarded-For / -Proto: the client and scheme the first proxy appended, behind any number of trusted proxies', () => {
    fc.assert(
      fc.property(spoofed, spoofed, client, scheme, proxies, (forFromClient, protoFromClient, real, proto, hops) => {
        // Each proxy appends the peer it saw and its scheme; the first saw the real client.
        let xffHeader = append(forFromClient, real);
        let xfpHeader = append(protoFromClient, proto);
        for (const hop of hops) {
          xffHeader = append(xffHeader, hop);
          xfpHeader = append(xfpHeader, 'http');
        }
        // The client's own entries shift nothing: the scheme is counted from the right too.
        assert.deepEqual(
          forwarded({ 'x-forwarded-for': xffHeader, 'x-forwarded-proto': xfpHeader }, 'x-forwarded', trusted),
          { client: real, proto },
        );
      }),
      { numRuns: 2000 },
    );
  });

  it('Forwarded: the node the first proxy appended, IPv6 bracketed and quoted, behind any number of trusted proxies', () => {
    fc.assert(
      fc.property(spoofed, client, scheme, proxies, fc.boolean(), (fromClient, real, proto, hops, port) => {
        const node = isIP(real) === 6 ? `"[${real}]${port ? ':4711' : ''}"` : port ? `"${real}:4711"` : real;
        let header = append(fromClient, `for=${node};proto=${proto}`);
        for (const hop of hops) header = append(header, `for=${hop};proto=http`);
        assert.deepEqual(forwarded({ forwarded: header }, 'forwarded', trusted), { client: real, proto });
      }),
      { numRuns: 2000 },
    );
  });
});
