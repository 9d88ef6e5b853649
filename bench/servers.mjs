// The servers bench/run.mjs and bench/memory.mjs start: tsgun, node:cluster, PM2, one bare
// node:http (or other single-process) server, and Gunicorn + UvicornWorker, each serving
// bench/apps/. Every one is stopped at the end, on error and on Ctrl-C (onCleanup).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import {
  ROOT,
  alive,
  childrenOf,
  freePort,
  httpStatus,
  log,
  onCleanup,
  run,
  signal,
  spawnServer,
  stopGroup,
  tools,
  waitFor,
} from './lib.mjs';

/**
 * The server classes, writing pidfiles and PM2 homes under `tmp` and PM2's output under
 * `logDir` (the calling benchmark's setup() directories). A server is `new Kind(def, round)`,
 * `def` one row of the benchmark's server table ({ id, workers, app, script, ... }).
 */
export function serverKinds({ tmp, logDir }) {
  class Server {
    constructor(def, round) {
      this.def = def;
      this.name = `r${round}-${def.id}`;
    }
    /** { master: pid|null, workers: [pid] }: the processes whose CPU and memory count. */
    procs() {
      const master = this.masterPid();
      return { master, workers: master ? childrenOf(master) : [] };
    }
    masterPid() {
      return this.proc?.child.pid ?? null;
    }
    async waitHttp() {
      await waitFor(`${this.name}: HTTP 200`, async () => {
        if (this.proc && this.proc.child.exitCode !== null)
          throw new Error(
            `${this.name} exited with ${this.proc.child.exitCode}: ${this.proc.text().trim().split('\n').slice(-3).join(' / ')}`,
          );
        return (await httpStatus(this.port)) === 200;
      });
    }
    async stop() {
      if (this.stopped) return;
      this.stopped = true;
      this.forget?.();
      if (this.proc) await stopGroup(this.proc.child.pid);
    }
  }

  class TsgunServer extends Server {
    args() {
      return ['-w', String(this.def.workers), '-b', '127.0.0.1:0', '-p', this.pidfile, this.def.app];
    }
    command() {
      return `node bin/tsgun ${this.args().join(' ').replace(this.pidfile, 'PIDFILE')}`;
    }
    async start() {
      this.pidfile = path.join(tmp, `${this.name}.pid`);
      this.proc = spawnServer(this.name, process.execPath, [tools.tsgun, ...this.args()]);
      this.forget = onCleanup(() => this.stop());
      const m = await waitFor(`${this.name}: Listening at`, () => {
        if (this.proc.child.exitCode !== null)
          throw new Error(`tsgun exited with ${this.proc.child.exitCode}: ${this.proc.text()}`);
        return /Listening at: http:\/\/127\.0\.0\.1:(\d+)/.exec(this.proc.text());
      });
      this.port = Number(m[1]);
      await waitFor(
        `${this.name}: ${this.def.workers} workers`,
        () => (this.proc.text().match(/Booting worker with pid/g) ?? []).length >= this.def.workers,
      );
      await this.waitHttp();
    }
    /** Request counts per worker pid, from `tsgun status --json`. */
    async status() {
      const r = await run(process.execPath, [tools.tsgun, 'status', '--json', '-p', this.pidfile], { cwd: ROOT });
      if (r.code !== 0) throw new Error(`tsgun status failed: ${r.stderr.trim()}`);
      const s = JSON.parse(r.stdout);
      return Object.fromEntries(s.workers.map((w) => [w.pid, w.stats?.requests ?? 0]));
    }
  }

  class ClusterServer extends Server {
    command() {
      return 'PORT=$PORT WORKERS=2 node bench/apps/cluster.mjs';
    }
    async start() {
      this.port = await freePort();
      this.proc = spawnServer(this.name, process.execPath, ['bench/apps/cluster.mjs'], {
        PORT: String(this.port),
        WORKERS: '2',
      });
      this.forget = onCleanup(() => this.stop());
      await this.waitHttp();
      await waitFor(`${this.name}: 2 workers`, () => childrenOf(this.proc.child.pid).length >= 2);
    }
  }

  /** One process, no master: `def.script` (bench/apps/node-http.mjs, hono-node-server.mjs...). */
  class SingleServer extends Server {
    command() {
      return `PORT=$PORT node ${this.def.script}`;
    }
    procs() {
      return { master: null, workers: this.proc ? [this.proc.child.pid] : [] };
    }
    async start() {
      this.port = await freePort();
      this.proc = spawnServer(this.name, process.execPath, [this.def.script], { PORT: String(this.port) });
      this.forget = onCleanup(() => this.stop());
      await this.waitHttp();
    }
  }

  class GunicornServer extends Server {
    args() {
      return [
        '-k',
        'uvicorn.workers.UvicornWorker',
        '-w',
        '2',
        '-b',
        `127.0.0.1:${this.port}`,
        '--chdir',
        'bench/apps',
        'suite_app:app',
      ];
    }
    command() {
      return `gunicorn ${this.args().join(' ').replace(String(this.port), '$PORT')}`;
    }
    async start() {
      this.port = await freePort();
      this.proc = spawnServer(this.name, tools.gunicorn.bin, this.args());
      this.forget = onCleanup(() => this.stop());
      await waitFor(`${this.name}: 2 workers`, () => {
        if (this.proc.child.exitCode !== null)
          throw new Error(`gunicorn exited with ${this.proc.child.exitCode}: ${this.proc.text()}`);
        return (this.proc.text().match(/Application startup complete/g) ?? []).length >= 2;
      });
      await this.waitHttp();
    }
  }

  /** PM2 cluster mode with a private PM2_HOME: its daemon (God) is the master; `pm2 kill` at the end. */
  class Pm2Server extends Server {
    command() {
      return 'PORT=$PORT pm2 start bench/apps/pm2-suite.cjs -i 2 --name suite';
    }
    async pm2(args, env = {}) {
      const r = await run(tools.pm2.bin, args, { cwd: ROOT, env: { ...process.env, PM2_HOME: this.home, ...env } });
      writeFileSync(
        path.join(logDir, `${this.name}.log`),
        `$ pm2 ${args.join(' ')} (exit ${r.code})\n${r.stdout}${r.stderr}\n`,
        { flag: 'a' },
      );
      if (r.code !== 0)
        throw new Error(
          `pm2 ${args.join(' ')} failed (exit ${r.code}): ${(r.stderr || r.stdout).trim().split('\n').pop()}`,
        );
      return r;
    }
    masterPid() {
      try {
        return Number(readFileSync(path.join(this.home, 'pm2.pid'), 'utf8').trim()) || null;
      } catch {
        return null;
      }
    }
    async start() {
      this.port = await freePort();
      this.home = mkdtempSync(path.join(tmp, 'pm2-'));
      this.forget = onCleanup(() => this.stop());
      await this.pm2(['start', 'bench/apps/pm2-suite.cjs', '-i', '2', '--name', 'suite'], { PORT: String(this.port) });
      await this.waitHttp();
      await waitFor(`${this.name}: 2 workers`, () => this.procs().workers.length >= 2);
    }
    async stop() {
      if (this.stopped) return;
      this.stopped = true;
      this.forget?.();
      const { master, workers } = this.procs();
      await this.pm2(['kill']).catch((err) => log(err.message));
      for (const pid of [master, ...workers]) if (pid && alive(pid)) signal(pid, 'SIGKILL');
      rmSync(this.home, { recursive: true, force: true });
    }
  }

  return { TsgunServer, ClusterServer, SingleServer, GunicornServer, Pm2Server };
}
