/**
 * Precedence, lowest first: defaults < config file < environment (PORT, WEB_CONCURRENCY,
 * then TSGUN_CMD_ARGS) < command line. Every value keeps the name of the layer it came
 * from, for `--print-config`.
 */
import type { TlsMaterial } from '../worker/tls.js';
import path from 'node:path';
import { TsgunError } from '../errors.js';
import { WORKER_HOOKS } from '../hooks.js';
import type { Privileges } from '../ipc.js';
import { parseArgs, splitArgs } from './cli.js';
import { findDefaultConfig, loadConfigFile } from './files.js';
import { defaultSettings, getSetting, SETTING_NAMES, type SettingName, type Settings } from './settings.js';
import { ValueProblem } from './types.js';

export interface ResolvedConfig {
  settings: Settings;
  /** Where each value came from: `default`, `file <path>`, `env <VAR>`, `command line`. */
  sources: Record<SettingName, string>;
  /** Absolute path of the config file in use, if any. */
  configFile: string | null;
  /** The APP argument, if given. */
  app: string | null;
  /** `user`/`group` resolved to ids (by the command, before the master starts). */
  privileges?: Privileges | null;
  /** The certificate, key and CA files' contents, read by the command (before the master starts). */
  tls?: TlsMaterial | null;
  /** The workers' environment: the master's original one plus `env_file` and `raw_env` (see config/environment.ts). */
  env?: Record<string, string>;
}

export interface ResolveInput {
  argv: readonly string[];
  env: Readonly<Record<string, string | undefined>>;
  cwd: string;
  version: string;
}

/** Levenshtein distance, for "did you mean" suggestions. */
function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return row[b.length]!;
}

export function nearestSetting(key: string): SettingName | null {
  const normal = key.toLowerCase().replace(/-/g, '_');
  let best: SettingName | null = null;
  let bestScore = Infinity;
  for (const name of SETTING_NAMES) {
    const d = distance(normal, name);
    if (d < bestScore) [best, bestScore] = [name, d];
  }
  return bestScore <= Math.max(2, Math.floor(normal.length / 3)) ? best : null;
}

/** Validate a config file's raw object (or run()'s options: `where` names them) into setting values. */
export function checkFileValues(
  raw: Record<string, unknown>,
  file: string,
  where = `config file ${file}`,
): Partial<Record<SettingName, unknown>> {
  const values: Partial<Record<SettingName, unknown>> = {};
  for (const [key, value] of Object.entries(raw)) {
    const name = key as SettingName;
    const s = SETTING_NAMES.includes(name) ? getSetting(name) : null;
    if (!s || s.cliOnly) {
      const near = s ? null : nearestSetting(key);
      const hint = s
        ? `${key} can only be given on the command line`
        : near
          ? `did you mean "${near}"?`
          : 'see docs/settings.md for the keys';
      throw new TsgunError('TSGUN_ERR_CONFIG_KEY', `${where}: unknown setting "${key}"; ${hint}`);
    }
    try {
      values[name] = s.type.fromConfig(value);
    } catch (err) {
      if (!(err instanceof ValueProblem)) throw err;
      throw new TsgunError('TSGUN_ERR_CONFIG_VALUE', `${where}: setting "${key}" ${err.message}`);
    }
  }
  return values;
}

function envValues(env: ResolveInput['env']): Array<[string, Partial<Record<SettingName, unknown>>]> {
  const layers: Array<[string, Partial<Record<SettingName, unknown>>]> = [];
  for (const name of SETTING_NAMES) {
    const s = getSetting(name);
    const raw = s.env ? env[s.env] : undefined;
    if (!s.env || raw === undefined || raw.trim() === '') continue;
    try {
      const value = s.fromEnv ? s.type.fromConfig(s.fromEnv(raw.trim())) : s.type.fromString(raw);
      layers.push([`env ${s.env}`, { [name]: value }]);
    } catch (err) {
      if (!(err instanceof ValueProblem)) throw err;
      throw new TsgunError(
        'TSGUN_ERR_CONFIG_VALUE',
        `environment variable ${s.env}=${JSON.stringify(raw)} (sets ${name}): ${err.message}`,
      );
    }
  }
  return layers;
}

export async function resolveConfig(input: ResolveInput): Promise<ResolvedConfig> {
  const cli = parseArgs(input.argv, input.version);
  const cmdArgs = input.env.TSGUN_CMD_ARGS
    ? parseArgs(splitArgs(input.env.TSGUN_CMD_ARGS), input.version, 'TSGUN_CMD_ARGS')
    : null;

  const explicit = (cli.values.config ?? cmdArgs?.values.config ?? null) as string | null;
  const configFile = explicit ? path.resolve(input.cwd, explicit) : findDefaultConfig(input.cwd);

  const layers: Array<[string, Partial<Record<SettingName, unknown>>]> = [];
  if (configFile) layers.push([`file ${configFile}`, checkFileValues(await loadConfigFile(configFile), configFile)]);
  layers.push(...envValues(input.env));
  if (cmdArgs) layers.push(['env TSGUN_CMD_ARGS', cmdArgs.values]);
  layers.push(['command line', cli.values]);

  const { settings, sources } = layered(layers, configFile);
  return { settings, sources, configFile, app: cli.app ?? cmdArgs?.app ?? null };
}

/** The defaults with each layer on top, lowest first, and where each value came from. */
function layered(
  layers: Array<[string, Partial<Record<SettingName, unknown>>]>,
  configFile: string | null,
): Pick<ResolvedConfig, 'settings' | 'sources'> {
  const settings = defaultSettings() as Record<SettingName, unknown>;
  const sources = Object.fromEntries(SETTING_NAMES.map((n) => [n, 'default'])) as Record<SettingName, string>;
  for (const [source, values] of layers) {
    for (const [name, value] of Object.entries(values) as Array<[SettingName, unknown]>) {
      settings[name] = value;
      sources[name] = source;
    }
  }
  settings.config = configFile;
  return { settings: settings as Settings, sources };
}

/**
 * run()'s settings: defaults < the config file named by `config` (no other is looked for) <
 * the options. The environment and the command line of the calling process are not read.
 */
export async function resolveOptions(options: Record<string, unknown>, cwd: string): Promise<ResolvedConfig> {
  const { app, config, ...keys } = options;
  if (typeof app !== 'string' || app === '') {
    throw new TsgunError(
      'TSGUN_ERR_USAGE',
      `run() needs app: 'MODULE[:ATTR]', for example run({ app: 'main:app' }); got ${JSON.stringify(app) ?? 'nothing'}`,
    );
  }
  if (config !== undefined && config !== null && typeof config !== 'string') {
    throw new TsgunError(
      'TSGUN_ERR_CONFIG_VALUE',
      `run() options: setting "config" expected a file path, got ${JSON.stringify(config)}`,
    );
  }
  const inWorkers = WORKER_HOOKS.find((name) => typeof keys[name] === 'function');
  if (inWorkers) {
    throw new TsgunError(
      'TSGUN_ERR_CONFIG_VALUE',
      `run() options: hook "${inWorkers}" runs in the workers, which cannot be handed a function; put it in a config file and pass config: 'FILE'`,
    );
  }
  const configFile = config ? path.resolve(cwd, config) : null;
  const layers: Array<[string, Partial<Record<SettingName, unknown>>]> = [];
  if (configFile) layers.push([`file ${configFile}`, checkFileValues(await loadConfigFile(configFile), configFile)]);
  layers.push(['run() options', checkFileValues(keys, 'run()', 'run() options')]);
  const { settings, sources } = layered(layers, configFile);
  return { settings, sources, configFile, app };
}

/** The `--print-config` report: every setting, its value and its source. */
export function formatConfig(resolved: ResolvedConfig): string {
  const width = Math.max(...SETTING_NAMES.map((n) => n.length));
  const lines = SETTING_NAMES.map((name) => {
    const value = getSetting(name).type.show(resolved.settings[name] as never);
    return `${name.padEnd(width)} = ${value}  (${resolved.sources[name]})`;
  });
  return `${lines.join('\n')}\n`;
}
