/**
 * The workers' environment as a value: the environment tsgun started with, plus `env_file`,
 * plus `raw_env`. Computed afresh at start and on each HUP, so a key removed from either is
 * gone from the next workers (Gunicorn restores its original environment the same way),
 * rather than left behind in a `process.env` that is only ever written.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseEnv } from 'node:util';
import { describeError, TsgunError } from '../errors.js';
import type { Settings } from './settings.js';

export type Environment = Record<string, string>;

/** `base` (the environment tsgun started with) plus `env_file` (relative to `cwd`) plus `raw_env`. */
export function environmentFor(
  settings: Pick<Settings, 'env_file' | 'raw_env'>,
  base: NodeJS.ProcessEnv,
  cwd: string,
): Environment {
  const env: Environment = {};
  for (const [key, value] of Object.entries(base)) if (value !== undefined) env[key] = value;
  if (settings.env_file) {
    const file = path.resolve(cwd, settings.env_file);
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      const why = (err as NodeJS.ErrnoException).code ?? describeError(err);
      throw new TsgunError('TSGUN_ERR_CONFIG_VALUE', `env_file: cannot read ${file}: ${why}; check --env-file`);
    }
    for (const [key, value] of Object.entries(parseEnv(text))) if (value !== undefined) env[key] = value;
  }
  for (const pair of settings.raw_env) {
    const eq = pair.indexOf('=');
    env[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return env;
}

/** Bring `target` (the command's own `process.env`) from `previous` to `next`, touching only the keys that differ. */
export function updateEnvironment(target: NodeJS.ProcessEnv, previous: Environment, next: Environment): void {
  for (const key of new Set([...Object.keys(previous), ...Object.keys(next)])) {
    if (previous[key] === next[key]) continue;
    if (next[key] === undefined) delete target[key];
    else target[key] = next[key];
  }
}
