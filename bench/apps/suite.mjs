// The performance suite's app as a plain Node request listener `(req, res)`: the app tsgun
// loads (bench/apps/suite.mjs:default), and the one node:cluster, PM2 and the bare
// node:http process serve. The same routes exist in hono.mjs (fetch shape) and
// suite_app.py (ASGI):
//   GET  /        a tiny text response
//   GET  /json    a 200-item JSON document serialized per request (the reload benchmark's)
//   GET  /stream  1 MiB streamed in 64 KiB chunks, with backpressure
//   POST /echo    the request body echoed back
export const HELLO = 'Hello, World!';
export const STREAM_CHUNK = 64 * 1024;
export const STREAM_CHUNKS = 16;

export const items = Array.from({ length: 200 }, (_, i) => ({
  id: i,
  name: `item-${i}`,
  price: Math.round(i * 137.31) / 100,
  tags: ['alpha', 'beta', 'gamma'].slice(0, (i % 3) + 1),
  active: i % 2 === 0,
}));

const chunk = Buffer.alloc(STREAM_CHUNK, 'x');

function stream(res) {
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': STREAM_CHUNK * STREAM_CHUNKS });
  let left = STREAM_CHUNKS;
  const more = () => {
    while (left > 0) {
      left--;
      if (left === 0) return void res.end(chunk);
      if (!res.write(chunk)) return void res.once('drain', more);
    }
  };
  res.on('close', () => (left = 0));
  more();
}

function echo(req, res) {
  const parts = [];
  req.on('data', (c) => parts.push(c));
  req.on('end', () => {
    const body = Buffer.concat(parts);
    res.writeHead(200, {
      'content-type': req.headers['content-type'] ?? 'application/octet-stream',
      'content-length': body.length,
    });
    res.end(body);
  });
}

export default function app(req, res) {
  switch (req.url) {
    case '/': {
      res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'content-length': HELLO.length });
      res.end(HELLO);
      return;
    }
    case '/json': {
      const body = JSON.stringify({ count: items.length, items });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
      return;
    }
    case '/stream':
      return stream(res);
    case '/echo':
      if (req.method === 'POST') return echo(req, res);
      break;
  }
  res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8', 'content-length': 10 });
  res.end('Not Found\n');
}
