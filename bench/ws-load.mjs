// WebSocket load for bench/reload.mjs (rows 9 and 10): N clients, each sending a numbered
// message every INTERVAL ms on its own connection and checking the echo. A client whose
// connection closes counts the messages still unanswered on it as lost, records the close
// code, and reconnects at once (then every 100 ms while the server refuses), as a browser
// client with a reconnecting library does. Runs in this process, with the `ws` client.
import WebSocket from 'ws';

const RECONNECT_MS = 100;

/**
 * Drive `clients` WebSocket clients against ws://127.0.0.1:port/ for `seconds`, running
 * `during(t0)` alongside (the reload schedule). Returns the counts and `events` (what
 * `during` returned).
 */
export async function wsLoad(port, { clients, intervalMs, seconds, during = null }) {
  const totals = { sent: 0, echoed: 0, lost: 0, reconnects: 0, failedConnects: 0, wrongEcho: 0, closeCodes: {} };
  let running = true;
  const all = [];

  function client(id) {
    let seq = 0;
    let ws = null;
    let timer = null;
    let pending = new Set();
    const connect = (isReconnect) => {
      if (!running) return;
      const sock = new WebSocket(`ws://127.0.0.1:${port}/`);
      ws = sock;
      let opened = false;
      sock.on('open', () => {
        opened = true;
        if (isReconnect) totals.reconnects++;
        timer = setInterval(() => {
          if (!running || sock.readyState !== WebSocket.OPEN) return;
          const n = ++seq;
          pending.add(n);
          totals.sent++;
          sock.send(`${id}:${n}`);
        }, intervalMs);
      });
      sock.on('message', (data) => {
        const n = Number(String(data).split(':')[1]);
        if (pending.delete(n)) totals.echoed++;
        else totals.wrongEcho++;
      });
      sock.on('error', () => {});
      sock.on('close', (code) => {
        clearInterval(timer);
        if (!running) return;
        if (!opened) totals.failedConnects++;
        else {
          totals.closeCodes[code] = (totals.closeCodes[code] ?? 0) + 1;
          totals.lost += pending.size;
        }
        pending = new Set();
        setTimeout(() => connect(true), opened ? 0 : RECONNECT_MS);
      });
    };
    connect(false);
    return {
      /** Stop sending, wait for the last echoes, then count what is still unanswered as lost. */
      async finish() {
        clearInterval(timer);
        const until = Date.now() + 2000;
        while (pending.size > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
        totals.lost += pending.size;
        pending.clear();
        ws?.terminate();
      },
    };
  }

  const t0 = Date.now();
  for (let i = 0; i < clients; i++) all.push(client(i));
  const events = during ? during(t0) : Promise.resolve([]);
  await new Promise((r) => setTimeout(r, seconds * 1000));
  running = false;
  await Promise.all(all.map((c) => c.finish()));
  const took = (Date.now() - t0) / 1000;
  return { ...totals, seconds: took, events: await events };
}
