/**
 * What a config file exports: `TsgunConfig`, any subset of the settings by their snake_case
 * names, each hook with its signature; `defineConfig` gives a config file's object that type.
 * run()'s options extend it, so it lives here rather than in the package entry that exports it.
 */
import type { HookName, Hooks } from '../hooks.js';
import type { ConfigFileKeys, Settings } from './settings.js';

/**
 * What a config file may write for a setting: its value, and the shorter forms the loader
 * also accepts (one string for a list, `'512MB'` for a size, `'022'` for a mask).
 */
type ConfigInput<K extends ConfigFileKeys> =
  | (K extends HookName ? Hooks[K] | null : Settings[K])
  | (Settings[K] extends string[] ? string : never)
  | (K extends 'max_worker_memory' | 'umask' ? string : never);

/** A config file's object: any subset of the settings, by their snake_case names. */
export type TsgunConfig = { [K in ConfigFileKeys]?: ConfigInput<K> };

/** Identity function that gives a config file's object its type. */
export function defineConfig(config: TsgunConfig): TsgunConfig {
  return config;
}
