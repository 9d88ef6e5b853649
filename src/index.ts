/**
 * The public API of the `tsgun` package: `run()` to serve an app from a program,
 * `defineConfig` for typed config files, the errors both throw, and the types of hooks
 * and of the worker interface.
 */
import type { RunOptions, TsgunServer } from './run.js';

export { defineConfig, type TsgunConfig } from './config/define.js';

/**
 * Serve `app` with a master and its workers in this process; resolves once the first generation
 * is ready (see docs/api.md). Loaded on first use: a config file that imports `defineConfig`
 * (and is compiled with this module bundled in) does not load the master.
 */
export async function run(options: RunOptions): Promise<TsgunServer> {
  const { run: start } = await import('./run.js');
  return start(options);
}

export type { RunOptions, TsgunServer } from './run.js';
export { TsgunError, isTsgunError, ExitCode, type ErrorCode } from './errors.js';
export type { Settings } from './config/settings.js';
export type { Hooks, HookName, ServerInfo, WorkerInfo, WorkerSelf, WorkerState } from './hooks.js';
export type { StopOptions, TsgunWorker, TsgunWorkerClass, WorkerContext } from './worker/interface.js';
export type { AppContext } from './worker/app.js';
export type { FetchEnv, FetchHandler } from './worker/fetch.js';
export type { SocketInfo } from './ipc.js';
