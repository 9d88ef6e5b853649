// The performance suite's app in the fetch shape: a Hono app with the same routes as
// suite.mjs. tsgun loads it as bench/apps/hono.mjs:default (an object with fetch());
// hono-node-server.mjs and hono-srvx.mjs serve the same app in one process.
/* global ReadableStream */
import { Hono } from 'hono';
import { HELLO, items, STREAM_CHUNK, STREAM_CHUNKS } from './suite.mjs';

const chunk = new Uint8Array(STREAM_CHUNK).fill(0x78);

const app = new Hono();
app.get('/', (c) => c.text(HELLO));
app.get('/json', (c) => c.json({ count: items.length, items }));
app.get('/stream', () => {
  let left = STREAM_CHUNKS;
  const body = new ReadableStream({
    pull(controller) {
      controller.enqueue(chunk);
      if (--left === 0) controller.close();
    },
  });
  return new Response(body, {
    headers: { 'content-type': 'application/octet-stream', 'content-length': String(STREAM_CHUNK * STREAM_CHUNKS) },
  });
});
app.post('/echo', async (c) => {
  const body = await c.req.arrayBuffer();
  return c.body(body, 200, { 'content-type': c.req.header('content-type') ?? 'application/octet-stream' });
});

export default app;
