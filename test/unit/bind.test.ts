import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseBind } from '../../src/config/bind.js';

const FORMS = 'expected HOST:PORT, :PORT, [IPV6]:PORT, tcp://HOST:PORT, unix:PATH or fd://N';

test('HOST:PORT', () => {
  assert.deepEqual(parseBind('127.0.0.1:8000'), { kind: 'tcp', host: '127.0.0.1', port: 8000, raw: '127.0.0.1:8000' });
  assert.deepEqual(parseBind('localhost:80'), { kind: 'tcp', host: 'localhost', port: 80, raw: 'localhost:80' });
  assert.deepEqual(parseBind('api.example.com:443'), {
    kind: 'tcp',
    host: 'api.example.com',
    port: 443,
    raw: 'api.example.com:443',
  });
});

test('port 0 (ephemeral) and 65535 are valid ports', () => {
  assert.equal((parseBind('127.0.0.1:0') as { port: number }).port, 0);
  assert.equal((parseBind('127.0.0.1:65535') as { port: number }).port, 65535);
});

test(':PORT means every IPv4 interface', () => {
  assert.deepEqual(parseBind(':9000'), { kind: 'tcp', host: '0.0.0.0', port: 9000, raw: ':9000' });
});

test('[IPV6]:PORT', () => {
  assert.deepEqual(parseBind('[::1]:8000'), { kind: 'tcp', host: '::1', port: 8000, raw: '[::1]:8000' });
  assert.deepEqual(parseBind('[::]:80'), { kind: 'tcp', host: '::', port: 80, raw: '[::]:80' });
  assert.deepEqual(parseBind('[2001:db8::1]:8443'), {
    kind: 'tcp',
    host: '2001:db8::1',
    port: 8443,
    raw: '[2001:db8::1]:8443',
  });
});

test('tcp://HOST:PORT, with a trailing slash tolerated', () => {
  assert.deepEqual(parseBind('tcp://127.0.0.1:8000'), {
    kind: 'tcp',
    host: '127.0.0.1',
    port: 8000,
    raw: 'tcp://127.0.0.1:8000',
  });
  assert.deepEqual(parseBind('tcp://[::1]:8000'), { kind: 'tcp', host: '::1', port: 8000, raw: 'tcp://[::1]:8000' });
  assert.deepEqual(parseBind('tcp://:8000/'), { kind: 'tcp', host: '0.0.0.0', port: 8000, raw: 'tcp://:8000/' });
});

test('a bare host gets port 8000, as in Gunicorn', () => {
  assert.deepEqual(parseBind('localhost'), { kind: 'tcp', host: 'localhost', port: 8000, raw: 'localhost' });
  assert.deepEqual(parseBind('tcp://10.0.0.1'), { kind: 'tcp', host: '10.0.0.1', port: 8000, raw: 'tcp://10.0.0.1' });
});

test('unix:PATH, absolute, relative, and unix:///PATH', () => {
  assert.deepEqual(parseBind('unix:/run/app.sock'), { kind: 'unix', path: '/run/app.sock', raw: 'unix:/run/app.sock' });
  assert.deepEqual(parseBind('unix:app.sock'), { kind: 'unix', path: 'app.sock', raw: 'unix:app.sock' });
  assert.deepEqual(parseBind('unix:///run/app.sock'), {
    kind: 'unix',
    path: '/run/app.sock',
    raw: 'unix:///run/app.sock',
  });
});

test('fd://N', () => {
  assert.deepEqual(parseBind('fd://3'), { kind: 'fd', fd: 3, raw: 'fd://3' });
  assert.deepEqual(parseBind('fd://0'), { kind: 'fd', fd: 0, raw: 'fd://0' });
});

test('surrounding whitespace is ignored', () => {
  assert.deepEqual(parseBind('  127.0.0.1:8000\n'), {
    kind: 'tcp',
    host: '127.0.0.1',
    port: 8000,
    raw: '127.0.0.1:8000',
  });
});

const BAD: Array<[string, RegExp]> = [
  ['', /: it is empty;/],
  ['   ', /: it is empty;/],
  ['unix:', /the socket path is empty/],
  ['fd://', /"" is not a file descriptor number/],
  ['fd://three', /"three" is not a file descriptor number/],
  ['fd://-1', /"-1" is not a file descriptor number/],
  ['http://127.0.0.1:80', /unknown scheme "http"/],
  ['tcp://udp://x:1', /unknown scheme "udp"/],
  ['[::1', /missing "\]" after the IPv6 address/],
  ['[::1]', /missing ":PORT" after the IPv6 address/],
  ['[::1]8000', /missing ":PORT" after the IPv6 address/],
  ['[127.0.0.1]:80', /"127\.0\.0\.1" is not an IPv6 address/],
  ['[nonsense]:80', /"nonsense" is not an IPv6 address/],
  ['::1:8000', /an IPv6 address must be written in brackets, as \[::1\]:8000/],
  ['127.0.0.1:99999', /port 99999 is above 65535/],
  ['127.0.0.1:65536', /port 65536 is above 65535/],
  ['127.0.0.1:', /port "" is not a number/],
  ['127.0.0.1:http', /port "http" is not a number/],
  ['127.0.0.1:-1', /port "-1" is not a number/],
  ['127.0.0.1:80.5', /port "80\.5" is not a number/],
  ['bad host:80', /"bad host" is not a host name or address/],
  ['under_score:80', /"under_score" is not a host name or address/],
  ['no/slash', /missing ":PORT"/],
];

test('every malformed address is rejected with the reason and the accepted forms', () => {
  for (const [raw, why] of BAD) {
    assert.throws(
      () => parseBind(raw),
      (err: Error) => {
        assert.ok(
          err.message.startsWith(`cannot parse bind address ${JSON.stringify(raw)}: `),
          `${JSON.stringify(raw)}: ${err.message}`,
        );
        assert.match(err.message, why, `${JSON.stringify(raw)}`);
        assert.ok(err.message.endsWith(`; ${FORMS}`), err.message);
        return true;
      },
      `${JSON.stringify(raw)} should be rejected`,
    );
  }
});
