// The WebSocket benchmark app for tsgun (bench/reload.mjs rows 9 and 10): a `ws` server
// attached to the worker's own HTTP server through the factory context, echoing every
// message; plain HTTP requests get 200 (the readiness probe).
import { WebSocketServer } from 'ws';

export function create({ server }) {
  const wss = new WebSocketServer({ server });
  wss.on('connection', (ws) => ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary })));
  return (req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('ok\n');
  };
}
