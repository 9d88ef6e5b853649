/**
 * TypeScript that needs decorator metadata (NestJS, TypeORM, class-validator): tsx's esbuild
 * cannot emit `design:paramtypes`, so when the app's tsconfig.json sets
 * `emitDecoratorMetadata`, its .ts files are compiled by SWC in a module loader hook instead.
 * tsx stays registered underneath and still resolves specifiers (`./service.js` → service.ts).
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire, register } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { describeError, TsgunError } from '../errors.js';

export interface DecoratorConfig {
  /** The tsconfig.json nearest to the module. */
  tsconfig: string;
  emitDecoratorMetadata: boolean;
}

/** tsconfig.json allows comments and trailing commas; strings may hold either, so skip them whole. */
export function parseJsonc(text: string): unknown {
  let out = '';
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === '"') {
      const end = /"(?:[^"\\]|\\.)*"/y;
      end.lastIndex = i;
      const m = end.exec(text);
      if (!m) throw new SyntaxError('unterminated string');
      out += m[0];
      i += m[0].length - 1;
    } else if (c === '/' && text[i + 1] === '/') {
      while (i < text.length && text[i] !== '\n') i++;
      out += '\n';
    } else if (c === '/' && text[i + 1] === '*') {
      const close = text.indexOf('*/', i + 2);
      i = close < 0 ? text.length : close + 1;
    } else {
      out += c;
    }
  }
  return JSON.parse(out.replace(/,(\s*[}\]])/g, '$1'));
}

function readTsconfig(file: string, depth: number): Record<string, unknown> {
  let json: { extends?: unknown; compilerOptions?: Record<string, unknown> };
  try {
    json = parseJsonc(readFileSync(file, 'utf8')) as typeof json;
  } catch (err) {
    throw new TsgunError('TSGUN_ERR_APP_LOAD', `cannot read ${file}: ${describeError(err)}`, { cause: err });
  }
  const bases =
    typeof json.extends === 'string'
      ? [json.extends]
      : Array.isArray(json.extends)
        ? json.extends.filter((e) => typeof e === 'string')
        : [];
  let options: Record<string, unknown> = {};
  for (const base of depth < 8 ? bases : []) {
    const found = resolveExtends(base, file);
    if (found) options = { ...options, ...readTsconfig(found, depth + 1) };
  }
  return { ...options, ...json.compilerOptions };
}

/** `extends`: a path (with or without .json), or a package's tsconfig (`@tsconfig/node20/tsconfig.json`). */
function resolveExtends(base: string, from: string): string | null {
  if (base.startsWith('.') || path.isAbsolute(base)) {
    const file = path.resolve(path.dirname(from), base);
    return [file, `${file}.json`].find((f) => existsSync(f) && f.endsWith('.json')) ?? null;
  }
  const require = createRequire(from);
  for (const spec of [base, `${base}.json`, `${base}/tsconfig.json`]) {
    try {
      return require.resolve(spec);
    } catch {
      // try the next form
    }
  }
  return null;
}

/** The nearest tsconfig.json above `file` and whether it (or what it extends) asks for decorator metadata. */
export function decoratorConfig(file: string): DecoratorConfig | null {
  for (let dir = path.dirname(file); ; dir = path.dirname(dir)) {
    const tsconfig = path.join(dir, 'tsconfig.json');
    if (existsSync(tsconfig))
      return { tsconfig, emitDecoratorMetadata: readTsconfig(tsconfig, 0).emitDecoratorMetadata === true };
    if (path.dirname(dir) === dir) return null;
  }
}

/** @swc/core as the app would import it, else beside tsgun (an optional peer dependency). */
function findSwc(file: string, tsconfig: string): string {
  for (const from of [file, import.meta.filename]) {
    try {
      return createRequire(from).resolve('@swc/core');
    } catch {
      // not installed there
    }
  }
  throw new TsgunError(
    'TSGUN_ERR_APP_LOAD',
    `${tsconfig} sets emitDecoratorMetadata, which tsgun's default TypeScript loader (tsx) cannot emit; install SWC to load it: npm install @swc/core`,
  );
}

/**
 * The tsconfig that makes SWC compile `file` (one that asks for decorator metadata), else null:
 * tsx compiles it. The worker registers its loader from this; the master reads it before forking.
 */
export function swcConfig(file: string): DecoratorConfig | null {
  const config = decoratorConfig(file);
  return config?.emitDecoratorMetadata ? config : null;
}

let registered: DecoratorConfig | null = null;

/**
 * Compile the app's TypeScript with SWC from now on (once per process). Returns the config that
 * asked for it, or null when `file`'s tsconfig does not need decorator metadata.
 */
export function registerDecoratorLoader(file: string): DecoratorConfig | null {
  if (registered) return registered;
  const config = swcConfig(file);
  if (!config) return null;
  const swc = findSwc(file, config.tsconfig);
  // Registered after tsx, so its hooks run first: SWC compiles, tsx's resolve still finds files.
  register(new URL('./swc-hooks.js', import.meta.url), { parentURL: pathToFileURL(file), data: { swc } });
  registered = config;
  return config;
}
