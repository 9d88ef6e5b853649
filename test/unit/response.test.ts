import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LightResponse, lightParts } from '../../src/worker/response.js';

const NativeResponse = globalThis.Response;

test('a light response is a Response and keeps a string body plain', async () => {
  const r = new LightResponse('hello', { status: 201, headers: { 'x-a': '1' } });
  assert.ok(r instanceof NativeResponse);
  assert.equal(r.status, 201);
  assert.equal(r.ok, true);
  const parts = lightParts(r);
  assert.deepEqual(parts && { status: parts.status, body: parts.body }, { status: 201, body: 'hello' });
  assert.equal(Object.prototype.toString.call(r), '[object Response]');
});

test('headers set after construction reach the adapter, with the default content-type', () => {
  const r = new LightResponse('x');
  r.headers.set('x-late', 'yes');
  const parts = lightParts(r)!;
  const h = parts.headers as Headers;
  assert.equal(h.get('x-late'), 'yes');
  assert.equal(h.get('content-type'), 'text/plain;charset=UTF-8');
});

test('reading the body turns it into a real undici Response', async () => {
  const r = new LightResponse('payload', { status: 404, statusText: 'Nope' });
  assert.equal(await r.text(), 'payload');
  assert.equal(lightParts(r), null, 'no longer light once its body was used');
  assert.equal(r.status, 404);
  assert.equal(r.statusText, 'Nope');
  assert.equal(r.bodyUsed, true);
});

test('clone, arrayBuffer and json work like the native ones', async () => {
  const r = new LightResponse('{"a":1}', { headers: { 'content-type': 'application/json' } });
  const c = r.clone();
  assert.deepEqual(await c.json(), { a: 1 });
  assert.equal(new TextDecoder().decode(await r.arrayBuffer()), '{"a":1}');
});

test('Response.json stays light and sets the JSON content type', () => {
  const r = (LightResponse as unknown as typeof NativeResponse).json({ ok: true }, { status: 202 });
  const parts = lightParts(r)!;
  assert.equal(parts.status, 202);
  assert.equal(parts.body, '{"ok":true}');
  assert.equal((parts.headers as Headers).get('content-type'), 'application/json');
});

test('stream bodies and invalid statuses go straight to undici', () => {
  const stream = new ReadableStream({ start: (c) => c.close() });
  assert.equal(lightParts(new LightResponse(stream)), null);
  assert.throws(() => new LightResponse('x', { status: 99 }), RangeError);
  assert.throws(() => new LightResponse('x', { status: 204 }), TypeError, 'a body with a null-body status');
  assert.ok(new LightResponse(null, { status: 204 }));
});

test('Response.error and Response.redirect still work', () => {
  const L = LightResponse as unknown as typeof NativeResponse;
  assert.equal(L.redirect('http://example.com/', 302).status, 302);
  assert.equal(L.error().type, 'error');
});
