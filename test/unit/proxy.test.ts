import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkPeerList, PeerList } from '../../src/worker/proxy.js';

describe('PeerList (forwarded_allow_ips, proxy_allow_ips)', () => {
  it('matches addresses, CIDR ranges and IPv4-mapped IPv6 peers', () => {
    const peers = new PeerList(['127.0.0.1, ::1', '10.0.0.0/8', '2001:db8::/32']);
    for (const a of ['127.0.0.1', '::ffff:127.0.0.1', '::1', '0:0:0:0:0:0:0:1', '10.200.3.4', '::ffff:10.1.1.1', '2001:db8:cafe::17']) assert.equal(peers.has(a), true, a);
    for (const a of ['127.0.0.2', '11.0.0.1', '::2', '2001:db9::1', 'unknown', '_hidden', '1.2.3.4.5', '127.000.0.1']) assert.equal(peers.has(a), false, a);
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
    for (const bad of ['1.2.3', 'localhost', '10.0.0.0/33', '10.0.0.0/abc', '10.0.0.0/8/1', '::1/129', 'zz::1', '10.0.0.0/']) {
      assert.equal(checkPeerList(['127.0.0.1', bad]), `${JSON.stringify(bad)} is not an IP address, a CIDR range, "*" or "unix"`, bad);
    }
    assert.equal(checkPeerList(['127.0.0.1,::1', '*', 'unix', '192.168.0.0/16']), null);
  });
});
