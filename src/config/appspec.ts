/** The APP argument: `MODULE[:ATTR]`, its module resolution and attribute lookup. */
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { TsgunError } from '../errors.js';

export interface AppSpec {
  /** As given, for logs and titles. */
  raw: string;
  module: string;
  /** Dotted path of the export; `default` when omitted. */
  attr: string[];
  /** `ATTR()`: call the attribute to get the app. */
  call: boolean;
}

export const MODULE_EXTENSIONS = ['.ts', '.mts', '.cts', '.js', '.mjs', '.cjs'];

export function parseAppSpec(raw: string): AppSpec {
  const spec = raw.trim();
  // A Windows drive letter is not a separator, but tsgun runs on POSIX only.
  const colon = spec.lastIndexOf(':');
  const module = colon < 0 ? spec : spec.slice(0, colon);
  let attr = colon < 0 ? 'default' : spec.slice(colon + 1);
  const form = 'expected MODULE[:ATTR], for example main:app, src/server.ts:default or main:createApp()';
  if (module === '') throw new TsgunError('TSGUN_ERR_APP_SPEC', `app ${JSON.stringify(raw)} has no module; ${form}`);
  // `main:app:x` is a mistake, not a module named `main:app`; a directory with a colon (`a:b/main`) still works.
  if (/:[\w$.()]*$/.test(module))
    throw new TsgunError('TSGUN_ERR_APP_SPEC', `app ${JSON.stringify(raw)} has more than one ':'; ${form}`);
  let call = false;
  if (attr.endsWith('()')) {
    call = true;
    attr = attr.slice(0, -2);
  } else if (attr.includes('(')) {
    throw new TsgunError(
      'TSGUN_ERR_APP_SPEC',
      `app ${JSON.stringify(raw)}: factories are called without arguments, as ATTR(); ${form}`,
    );
  }
  const parts = attr.split('.');
  if (parts.some((p) => !/^[A-Za-z_$][\w$]*$/.test(p))) {
    throw new TsgunError(
      'TSGUN_ERR_APP_SPEC',
      `app ${JSON.stringify(raw)}: ${JSON.stringify(attr)} is not an export name; ${form}`,
    );
  }
  return { raw: spec, module, attr: parts, call };
}

/**
 * Find the file for MODULE: the path itself if it names a file, else with each module
 * extension, else `MODULE/index.*`.
 */
export function resolveModule(
  module: string,
  dir: string,
  what: { label: string; fix: string } = { label: 'app module', fix: 'check the APP argument and --chdir' },
): string {
  const base = path.resolve(dir, module);
  const candidates = [
    base,
    ...MODULE_EXTENSIONS.map((e) => base + e),
    ...MODULE_EXTENSIONS.map((e) => path.join(base, `index${e}`)),
  ];
  for (const file of candidates) {
    if (existsSync(file) && statSync(file).isFile()) return file;
  }
  const tried = [`${module}{${MODULE_EXTENSIONS.join(',')}}`, `${module}/index.*`].join(', ');
  throw new TsgunError(
    'TSGUN_ERR_APP_LOAD',
    `cannot find ${what.label} ${JSON.stringify(module)} in ${dir} (tried ${tried}); ${what.fix}`,
  );
}

/** Follow the dotted attribute path in a module namespace. */
export function lookupAttr(mod: Record<string, unknown>, spec: AppSpec, file: string): unknown {
  let value: unknown = mod;
  for (let i = 0; i < spec.attr.length; i++) {
    const key = spec.attr[i]!;
    const holder = value as Record<string, unknown> | null | undefined;
    let next = holder === null || holder === undefined ? undefined : holder[key];
    // A CommonJS module's named exports may only be reachable through `default`.
    if (next === undefined && i === 0 && mod.default && typeof mod.default === 'object')
      next = (mod.default as Record<string, unknown>)[key];
    if (next === undefined) {
      const where = i === 0 ? `module ${file}` : `${spec.attr.slice(0, i).join('.')} in ${file}`;
      const keys =
        (holder && typeof holder === 'object') || typeof holder === 'function'
          ? Object.keys(holder as object).filter((k) => k !== '__esModule')
          : [];
      const listed = keys.length ? `its exports are: ${keys.join(', ')}` : 'it exports nothing';
      throw new TsgunError(
        'TSGUN_ERR_APP_LOAD',
        `${where} has no ${JSON.stringify(key)} (${listed}); name one of them as MODULE:ATTR`,
      );
    }
    value = next;
  }
  // A TypeScript or Babel module compiled to CommonJS exports `{ __esModule, default }`.
  const v = value as { __esModule?: unknown; default?: unknown } | null;
  if (
    spec.attr.length === 1 &&
    spec.attr[0] === 'default' &&
    v &&
    typeof v === 'object' &&
    v.__esModule &&
    v.default !== undefined
  )
    return v.default;
  return value;
}
