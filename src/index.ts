/**
 * The public API of the `tsgun` package: `defineConfig` for typed config files, and the
 * types of hooks and of the worker interface.
 */
import type { ConfigFileKeys, Settings } from './config/settings.js';

/** A config file's object: any subset of the settings, by their snake_case names. */
export type TsgunConfig = Partial<Pick<Settings, ConfigFileKeys>>;

/** Identity function that gives a config file's object its type. */
export function defineConfig(config: TsgunConfig): TsgunConfig {
  return config;
}

export type { Settings } from './config/settings.js';
export type { Hooks, HookName, ServerInfo, WorkerInfo, WorkerSelf, WorkerState } from './hooks.js';
export type { TsgunWorker, TsgunWorkerClass, WorkerContext } from './worker/interface.js';
export type { FetchEnv, FetchHandler } from './worker/fetch.js';
export type { SocketInfo } from './ipc.js';
