// What a tsgun worker carries beyond a bare node:http server, part by part: each step runs in a
// fresh process (node --expose-gc) that starts a plain http server, then adds the step's part on
// top of the steps before it (the order a worker loads them), and reports VmRSS, USS and V8 heap
// used after a full GC. Differences between rows are the parts' costs.
//
//   npx tsc -p tsconfig.build.json && node bench/worker-parts.mjs [--runs 5]
//
// Medians of --runs processes per step. Prints a markdown table.
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const dist = (p) => pathToFileURL(path.join(ROOT, 'dist', p)).href;
const runs = Number(process.argv[process.argv.indexOf('--runs') + 1]) || 5;

// Each step: a label and the code added to the process (top-level await, ES module).
const STEPS = [
  ['bare node:http server', ''],
  ['+ pino (the package)', `await import('pino');`],
  [
    '+ tsgun logger (log.js, one pino instance)',
    `const { createLogger } = await import('${dist('log.js')}'); createLogger({ loglevel: 'info', log_format: 'json', errorlog: '/dev/null' });`,
  ],
  [
    '+ settings, IPC, errors, app spec (config/*)',
    `await import('${dist('ipc.js')}'); await import('${dist('config/appspec.js')}'); await import('${dist('config/files.js')}');`,
  ],
  [
    '+ app loader, http worker, request stats, tls (worker/*)',
    `await import('${dist('worker/app.js')}'); await import('${dist('worker/http.js')}'); await import('${dist('worker/requests.js')}'); await import('${dist('worker/tls.js')}');`,
  ],
  // The thread waits on its pipe to the master: here, one end of a loopback connection.
  [
    '+ watchdog thread',
    `const { Worker } = await import('node:worker_threads'); const net = await import('node:net'); const end = await new Promise((ok) => { const l = net.createServer(() => {}).listen(0, '127.0.0.1', () => { const c = net.connect(l.address().port, '127.0.0.1', () => ok(c)); }); }); new Worker(new URL('${dist('worker/watchdog-thread.cjs')}'), { workerData: { fd: end._handle.fd, pulse: new SharedArrayBuffer(16), pulseMs: 250, masterPid: process.ppid, errorLog: { file: null, pretty: false, worker: 1 } } }).unref();`,
  ],
  ['+ IPC channel (a child with an ipc pipe)', 'IPC'],
];

const PROBE = `
import http from 'node:http';
http.createServer((req, res) => res.end('hi')).listen(0, '127.0.0.1');
%CODE%
await new Promise((r) => setTimeout(r, 1500));
globalThis.gc(); globalThis.gc();
await new Promise((r) => setTimeout(r, 200));
const m = process.memoryUsage();
const smaps = (await import('node:fs')).readFileSync('/proc/self/smaps_rollup', 'utf8');
const kb = (f) => Number(smaps.split('\\n').find((l) => l.startsWith(f + ':')).split(/ +/)[1]) * 1024;
process.stdout.write(JSON.stringify({ rss: m.rss, uss: kb('Private_Clean') + kb('Private_Dirty'), heap: m.heapUsed }));
process.exit(0);
`;

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const MB = (b) => (b / 1048576).toFixed(1);

function measure(code, ipc) {
  const src = PROBE.replace('%CODE%', code);
  const args = ['--expose-gc', '--input-type=module', '-e', src];
  if (!ipc) return JSON.parse(execFileSync(process.execPath, args, { encoding: 'utf8' }));
  // With an IPC channel, as a worker has: spawn through a tiny parent that forks with 'ipc'.
  const parent = `const { spawn } = require('node:child_process'); const c = spawn(process.execPath, ${JSON.stringify(args)}, { stdio: ['ignore', 'pipe', 'inherit', 'ipc'] }); let o = ''; c.stdout.on('data', (d) => (o += d)); c.on('exit', () => { process.stdout.write(o); process.exit(0); });`;
  return JSON.parse(execFileSync(process.execPath, ['-e', parent], { encoding: 'utf8' }));
}

let code = '';
const rows = [];
let prev = null;
for (const [label, part] of STEPS) {
  const ipc = part === 'IPC';
  if (!ipc) code += `\n${part}`;
  const samples = Array.from({ length: runs }, () => measure(code, ipc || rows.some((r) => r.ipc)));
  const rss = median(samples.map((s) => s.rss));
  const uss = median(samples.map((s) => s.uss));
  const heap = median(samples.map((s) => s.heap));
  rows.push({
    label,
    rss,
    uss,
    heap,
    ipc,
    dRss: prev ? rss - prev.rss : null,
    dUss: prev ? uss - prev.uss : null,
    dHeap: prev ? heap - prev.heap : null,
  });
  prev = { rss, uss, heap };
}

const d = (v) => (v === null ? '' : MB(v));
console.log(
  `Node ${process.version}, median of ${runs} processes per row, after a full GC. USS: Private_Clean + Private_Dirty of /proc/self/smaps_rollup (RSS also counts pages of the node binary, shared by every node process).\n`,
);
console.log('| step | RSS MB | Δ RSS | USS MB | Δ USS | heap used MB | Δ heap |');
console.log('|---|---:|---:|---:|---:|---:|---:|');
for (const r of rows)
  console.log(
    `| ${r.label} | ${MB(r.rss)} | ${d(r.dRss)} | ${MB(r.uss)} | ${d(r.dUss)} | ${MB(r.heap)} | ${d(r.dHeap)} |`,
  );
