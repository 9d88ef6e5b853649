// The benchmark app for PM2 cluster mode: the same listener as json.mjs on node:http,
// listening on $PORT, with the graceful shutdown PM2's docs recommend (close the server
// on SIGINT, exit when it has closed).
'use strict';
/* global require */
// eslint-disable-next-line @typescript-eslint/no-require-imports
const http = require('node:http');

const items = Array.from({ length: 200 }, (_, i) => ({
  id: i,
  name: `item-${i}`,
  price: Math.round(i * 137.31) / 100,
  tags: ['alpha', 'beta', 'gamma'].slice(0, (i % 3) + 1),
  active: i % 2 === 0,
}));

const server = http.createServer((req, res) => {
  const body = JSON.stringify({ count: items.length, items });
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
});
server.keepAliveTimeout = 2000; // tsgun's and Gunicorn's default keep-alive is 2 s
server.listen(Number(process.env.PORT), '127.0.0.1');

process.on('SIGINT', () => {
  server.close(() => process.exit(0));
});
