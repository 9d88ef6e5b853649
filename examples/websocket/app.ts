/**
 * A chat room over WebSockets (`ws`), with a page to try it and a server-sent events feed.
 * The factory receives the worker's server and attaches the WebSocket server to it; the
 * `close` export runs when the worker drains (HUP, TERM, max-requests), before tsgun sends
 * each remaining client its close frame (1012 on reload, so clients reconnect; 1001 on stop).
 *
 *   ./bin/tsgun -w 2 'examples/websocket/app:create()'
 *   open http://127.0.0.1:8000/ in two tabs, or: npx wscat -c ws://127.0.0.1:8000/chat
 *
 * Each worker has its own room: clients on different workers do not see each other's
 * messages. A real chat shares them through Redis or Postgres LISTEN/NOTIFY.
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { WebSocket, WebSocketServer } from 'ws';

const PAGE = `<!doctype html><meta charset="utf-8"><title>tsgun chat</title>
<pre id="log"></pre><input id="msg" placeholder="say something" autofocus>
<script>
  const log = (t) => (document.getElementById('log').textContent += t + '\\n');
  let ws;
  function open() {
    ws = new WebSocket(location.origin.replace(/^http/, 'ws') + '/chat');
    ws.onmessage = (e) => log(e.data);
    // 1012 (service restart): the worker is being replaced; come back to the new one.
    ws.onclose = (e) => { log('-- closed ' + e.code + ' ' + e.reason); if (e.code === 1012) setTimeout(open, 200); };
  }
  open();
  document.getElementById('msg').onkeydown = (e) => { if (e.key === 'Enter') { ws.send(e.target.value); e.target.value = ''; } };
</script>`;

let wss: WebSocketServer | null = null;

export function create({ server }: { server: Server }): (req: IncomingMessage, res: ServerResponse) => void {
  wss = new WebSocketServer({ server, path: '/chat' });
  wss.on('connection', (ws) => {
    ws.send(`welcome to worker ${process.pid}`);
    ws.on('message', (data) => {
      for (const peer of wss!.clients) if (peer.readyState === WebSocket.OPEN) peer.send(String(data));
    });
  });
  return (req, res) => {
    if (req.url === '/events') {
      // Server-sent events: on a drain the stream gets until graceful_timeout, then tsgun ends it cleanly.
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store' });
      const timer = setInterval(() => res.write(`data: ${new Date().toISOString()} from ${process.pid}\n\n`), 1000);
      res.on('close', () => clearInterval(timer));
      return;
    }
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(PAGE);
  };
}

/** The app's shutdown: awaited (up to graceful_timeout) before tsgun closes what is left. */
export async function close(): Promise<void> {
  for (const ws of wss?.clients ?? []) ws.send(`worker ${process.pid} is leaving`);
}
