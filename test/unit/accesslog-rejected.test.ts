/**
 * Access log entries for requests Node's parser rejected (accesslog.ts, unparsedEntry): the
 * request line as received, escaped so that a client cannot forge log lines or fields.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import { getSetting } from '../../src/config/settings.js';
import { compileFormat, jsonEntry, unparsedEntry } from '../../src/worker/accesslog.js';
import { presentClient } from '../../src/worker/proxy.js';

const clf = compileFormat(getSetting('access_log_format').default as string);
const socket = new net.Socket();
// The peer as a PROXY header would name it (a socket that never connected has none).
presentClient(socket, '192.0.2.7', false);

test('a request line is logged as received, its method, path and protocol known', () => {
  const line = clf(unparsedEntry(socket, 400, Buffer.from('GET /a?b=1 HTTP/1.1\r\nHost: x\r\n\r\n')));
  assert.match(line, /^192\.0\.2\.7 - - \[.+\] "GET \/a\?b=1 HTTP\/1\.1" 400 - "-" "-"$/);
  const json = JSON.parse(jsonEntry(unparsedEntry(socket, 431, Buffer.from('GET /a?b=1 HTTP/1.1\r\n')))) as Record<
    string,
    unknown
  >;
  assert.deepEqual([json.method, json.path, json.query, json.status], ['GET', '/a', 'b=1', 431]);
});

test('quotes, control bytes and newlines are escaped; no bytes give `-`', () => {
  const line = clf(unparsedEntry(socket, 400, Buffer.from('BAD "x"\x1b[31m\n127.0.0.1 forged')));
  assert.match(line, /"BAD \\x22x\\x22\\x1b\[31m" 400 /);
  assert.equal(line.includes('\n'), false);
  assert.match(clf(unparsedEntry(socket, 408, null)), /"-" 408 /);
});
