// Node's own cluster module in round-robin mode (the primary accepts every connection and
// passes it to a worker over IPC), serving the listener of suite.mjs:
//   PORT=8000 WORKERS=2 node bench/apps/cluster.mjs
import cluster from 'node:cluster';
import http from 'node:http';
import app from './suite.mjs';

cluster.schedulingPolicy = cluster.SCHED_RR;
const port = Number(process.env.PORT ?? 8000);

if (cluster.isPrimary) {
  const n = Number(process.env.WORKERS ?? 2);
  for (let i = 0; i < n; i++) cluster.fork();
  const stop = () => {
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGTERM');
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
} else {
  http.createServer(app).listen(port, '127.0.0.1');
}
