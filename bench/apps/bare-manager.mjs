// The floor for bench/reload.mjs: the least a process manager can do to replace its workers
// the way tsgun does, so that the reload rows can be read against what replacing Node
// processes costs at all. It is not a product: no config, no logging beyond the lines the
// benchmark reads, no watchdog, no heartbeats, no hooks.
//
//   node bench/apps/bare-manager.mjs [WORKERS] [MAX_REQUESTS]   (HUP: replace every worker; TERM: stop)
//
// The master binds 127.0.0.1:0 and passes the socket to WORKERS bare node:http processes
// (fd 3, as tsgun does), each serving bench/apps/json.mjs. On HUP it starts one new worker,
// waits until it listens, drains one old worker while starting the next, and repeats until every worker is new; a
// HUP during a replacement runs after it. Draining is tsgun's: stop accepting, answer the
// requests in flight with `Connection: close`, close idle keep-alive connections. With
// MAX_REQUESTS, a worker that has served MAX_REQUESTS plus a random 0..MAX_REQUESTS/10 (tsgun's
// max_requests_jitter as bench/reload.mjs sets it) is replaced the same way: a new worker
// first, then the old one drains.
import { spawn } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';

if (process.env.BARE_MANAGER_WORKER) {
  const { default: app } = await import('./json.mjs');
  const max = Number(process.env.BARE_MANAGER_MAX_REQUESTS ?? 0);
  const quota = max > 0 ? max + Math.floor(Math.random() * (Math.round(max / 10) + 1)) : 0;
  let served = 0;
  let draining = false;
  const server = http.createServer((req, res) => {
    if (draining) res.shouldKeepAlive = false;
    if (++served === quota) process.send('quota');
    app(req, res);
  });
  server.listen({ fd: 3 }, () => process.send('ready'));
  process.on('message', (msg) => {
    if (msg !== 'stop' || draining) return;
    draining = true;
    server.close(() => process.exit(0));
    server.closeIdleConnections();
  });
  process.on('disconnect', () => process.exit(0));
} else {
  const count = Number(process.argv[2] ?? 2);
  const maxRequests = Number(process.argv[3] ?? 0);
  // Bound, not listening: a socket the master polled would hand it connections it never
  // serves. The workers listen on it (Node's cluster primary does the same in its
  // SCHED_NONE mode, and so does tsgun).
  const handle = net._createServerHandle('127.0.0.1', 0, 4);
  const bound = {};
  if (typeof handle === 'number' || handle.getsockname(bound)) throw new Error('cannot bind 127.0.0.1:0');
  const fd = handle.fd;
  process.stdout.write(`Listening at: http://127.0.0.1:${bound.port} (${process.pid})\n`);

  /** Start one worker; resolves with it once it listens. */
  const start = () =>
    new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [new URL(import.meta.url).pathname], {
        stdio: ['ignore', 'inherit', 'inherit', fd, 'ipc'],
        env: { ...process.env, BARE_MANAGER_WORKER: '1', BARE_MANAGER_MAX_REQUESTS: String(maxRequests) },
      });
      child.once('message', () => {
        process.stdout.write(`Booting worker with pid: ${child.pid}\n`);
        resolve(child);
        child.on('message', (msg) => msg === 'quota' && recycle(child));
      });
      child.once('exit', (code) => reject(new Error(`worker exited with ${code} before it listened`)));
    });
  const retire = (child) =>
    new Promise((resolve) => {
      child.once('exit', resolve);
      child.send('stop');
    });

  let workers = [];
  let replacing = Promise.resolve();
  let stopping = false;
  /** A new worker in old's place, listening before old starts to drain. */
  const replace = async (old) => {
    const fresh = await start();
    workers = workers.map((w) => (w === old ? fresh : w));
    void retire(old);
  };
  /** max-requests: this worker has served its quota; replace it as a HUP would, alone. */
  const recycle = (old) => {
    replacing = replacing.then(async () => {
      if (stopping || !workers.includes(old)) return;
      await replace(old);
      process.stdout.write(`Recycled worker ${old.pid}\n`);
    });
  };
  for (let i = 0; i < count; i++) workers.push(await start());
  process.stdout.write(`Ready: ${count} workers serving\n`);

  process.on('SIGHUP', () => {
    replacing = replacing.then(async () => {
      // As tsgun: the next new worker starts while this old one drains.
      for (const old of [...workers]) {
        if (stopping) return;
        await replace(old);
      }
      process.stdout.write('Reload complete\n');
    });
  });
  process.on('SIGTERM', async () => {
    stopping = true;
    await replacing;
    await Promise.all(workers.map(retire));
    process.exit(0);
  });
}
