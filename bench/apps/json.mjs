// The benchmark app for tsgun: a Node request listener that serializes a JSON document of
// 200 items on every request. Same document as json.cjs (PM2) and json_app.py (Gunicorn).
const items = Array.from({ length: 200 }, (_, i) => ({
  id: i,
  name: `item-${i}`,
  price: Math.round(i * 137.31) / 100,
  tags: ['alpha', 'beta', 'gamma'].slice(0, (i % 3) + 1),
  active: i % 2 === 0,
}));

export default function app(req, res) {
  const body = JSON.stringify({ count: items.length, items });
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}
