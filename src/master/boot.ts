/**
 * What a worker is started with: its boot record (ipc.ts's `WorkerBoot`, in its environment),
 * the rest of its environment, and its stdout and stderr.
 */
import { openSync } from 'node:fs';
import type { ResolvedConfig } from '../config/resolve.js';
import type { Settings } from '../config/settings.js';
import { WORKER_HOOKS } from '../hooks.js';
import type { Privileges, WorkerBoot, WorkerFds } from '../ipc.js';
import type { Logger } from '../log.js';
import { PARENT_ENV } from './reexec.js';
import { INHERITED_ENV, type BoundSocket } from './sockets.js';

/** What the master takes from its environment for itself: workers never see these. */
const MASTER_ONLY_ENV = [
  'NOTIFY_SOCKET',
  'WATCHDOG_USEC',
  'WATCHDOG_PID',
  'LISTEN_PID',
  'LISTEN_FDS',
  'LISTEN_FDNAMES',
  INHERITED_ENV,
  PARENT_ENV,
];

/** The workers' environment, from the resolved config's (the original environment plus env_file and raw_env). */
export function workerEnv(resolved: ResolvedConfig): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...(resolved.env ?? process.env) };
  for (const key of MASTER_ONLY_ENV) delete env[key];
  return env;
}

/** A worker's boot record: the settings without their functions, which the worker imports from the config file by name. */
export function bootRecord(w: {
  id: number;
  generation: number;
  app: string;
  settings: Settings;
  configFile: string | null;
  privileges: Privileges | null;
  sockets: readonly BoundSocket[];
  fds: WorkerFds;
}): WorkerBoot {
  const settings = Object.fromEntries(
    Object.entries(w.settings).map(([k, v]) => [k, typeof v === 'function' ? null : v]),
  ) as Settings;
  const hooks = WORKER_HOOKS.filter((h) => typeof w.settings[h] === 'function');
  return {
    id: w.id,
    generation: w.generation,
    masterPid: process.pid,
    app: w.app,
    settings,
    configFile: w.configFile,
    hooks,
    sockets: w.sockets.map((s, i) => ({
      fd: w.fds.sockets[i]!,
      label: s.label,
      ...(s.reusePort ? { reusePort: s.reusePort } : {}),
    })),
    privileges: w.privileges,
    watchdogFd: w.fds.watchdog,
    tlsFd: w.fds.tls,
  };
}

/** A worker's stdout and stderr: under capture_output the error log file, opened per worker to follow a rotated log. */
export function workerOutput(settings: Pick<Settings, 'capture_output' | 'errorlog'>, log: Logger): 'inherit' | number {
  if (!settings.capture_output || settings.errorlog === '-') return 'inherit';
  try {
    return openSync(settings.errorlog, 'a');
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code ?? String(err);
    log.warn(
      `capture_output: cannot open ${settings.errorlog} (${why}); the worker keeps the master's stdout and stderr`,
    );
    return 'inherit';
  }
}
