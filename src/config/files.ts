/**
 * Config file discovery and loading. Parsers are chosen from a table keyed by file
 * extension; script files are imported (TypeScript through tsx, no build step).
 */
import { existsSync, readFileSync } from 'node:fs';
import Module, { isBuiltin } from 'node:module';
import path from 'node:path';
import type { BuildOptions, Message, Plugin } from 'esbuild';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { describeError, TsgunError } from '../errors.js';

type Loader = (file: string) => Promise<unknown>;

const TS_EXTENSIONS = new Set(['.ts', '.mts', '.cts', '.tsx']);

export function isTypeScript(file: string): boolean {
  return TS_EXTENSIONS.has(path.extname(file));
}

let importCounter = 0;

/**
 * Compile a TypeScript config with esbuild's one-shot `buildSync`: its relative imports
 * are bundled in, packages stay imports. Unlike tsx's loader this leaves no esbuild
 * service process behind, so the master's only children stay its workers.
 * Nothing is written: the config may sit in a root-owned or read-only directory
 * (/etc/tsgun, a ConfigMap). An ES module is imported from a data: URL, with each package
 * import resolved beforehand from the config's directory (a data: URL resolves nothing);
 * CommonJS (.cts) is compiled as a module whose filename is the config's.
 */
let esbuild: Promise<typeof import('esbuild')> | null = null;

function loadEsbuild(): Promise<typeof import('esbuild')> {
  // Read once, when esbuild is first imported: without it, buildSync runs esbuild's
  // long-lived service from a worker thread.
  const saved = process.env.ESBUILD_WORKER_THREADS;
  process.env.ESBUILD_WORKER_THREADS = '0';
  esbuild ??= import('esbuild').finally(() => {
    if (saved === undefined) delete process.env.ESBUILD_WORKER_THREADS;
    else process.env.ESBUILD_WORKER_THREADS = saved;
  });
  return esbuild;
}

/** This package's entry: `import { defineConfig } from 'tsgun'` works wherever the config is (/etc/tsgun). */
const SELF = fileURLToPath(new URL('../index.js', import.meta.url));

/** Packages become absolute file: URLs, resolved as Node would from the config's directory. */
function packagesFrom(): Plugin {
  return {
    name: 'tsgun-packages',
    setup(build) {
      build.onResolve({ filter: /^[^./]|^\.[^./]|^\.\.[^/]/ }, async (args) => {
        // build.resolve() below comes back here: let esbuild resolve that one.
        if (args.pluginData === 'tsgun-packages') return undefined;
        if (isBuiltin(args.path)) return { path: args.path, external: true };
        if (args.path === 'tsgun') return { path: pathToFileURL(SELF).href, external: true };
        const found = await build.resolve(args.path, {
          kind: args.kind,
          resolveDir: args.resolveDir,
          pluginData: 'tsgun-packages',
        });
        if (found.errors.length > 0) {
          return {
            errors: [
              {
                text: `cannot find package ${JSON.stringify(args.path)} from ${args.resolveDir}; install it there, or in a directory above`,
              },
            ],
          };
        }
        return { path: pathToFileURL(found.path).href, external: true };
      });
    },
  };
}

async function importTypeScript(file: string): Promise<Record<string, unknown>> {
  const { buildSync, build, stop } = await loadEsbuild();
  const cjs = path.extname(file) === '.cts';
  const common: BuildOptions & { write: false } = {
    entryPoints: [file],
    bundle: true,
    platform: 'node',
    target: `node${process.versions.node.split('.')[0]}`,
    sourcemap: 'inline',
    write: false,
    logLevel: 'silent',
  };
  if (cjs) {
    const result = buildSync({ ...common, format: 'cjs', packages: 'external', alias: { tsgun: SELF } });
    const mod = new Module(file);
    mod.filename = file;
    mod.paths = (Module as unknown as { _nodeModulePaths(dir: string): string[] })._nodeModulePaths(path.dirname(file));
    (mod as unknown as { _compile(code: string, filename: string): void })._compile(result.outputFiles[0]!.text, file);
    return { default: mod.exports };
  }
  // Plugins need build(), which runs esbuild as a child process: stopped at once, so that the
  // master's only children stay its workers.
  const url = pathToFileURL(file).href;
  const meta = {
    'import.meta.url': JSON.stringify(url),
    'import.meta.filename': JSON.stringify(file),
    'import.meta.dirname': JSON.stringify(path.dirname(file)),
  };
  let result;
  try {
    result = await build({ ...common, format: 'esm', plugins: [packagesFrom()], define: meta });
  } catch (err) {
    const first = (err as { errors?: Message[] }).errors?.[0];
    if (!first) throw err;
    const where = first.location ? `${first.location.file}:${first.location.line}: ` : '';
    throw new Error(`${where}${first.text}`, { cause: err });
  } finally {
    await stop();
  }
  // sourceURL: stack traces name the config file rather than a data: URL (positions are the compiled code's).
  const code = `${result.outputFiles[0]!.text}\n// ${++importCounter}\n//# sourceURL=${file}`;
  return (await import(`data:text/javascript;base64,${Buffer.from(code).toString('base64')}`)) as Record<
    string,
    unknown
  >;
}

/**
 * Import a script afresh: a reload must see the file as it is now, not the cached
 * module. TypeScript is compiled anew each time; JavaScript gets a unique query string.
 */
export async function importFresh(file: string): Promise<Record<string, unknown>> {
  if (isTypeScript(file)) return importTypeScript(file);
  const url = pathToFileURL(file);
  url.search = `tsgun=${++importCounter}`;
  return (await import(url.href)) as Record<string, unknown>;
}

async function loadScript(file: string): Promise<unknown> {
  const mod = await importFresh(file);
  // A CommonJS module's exports arrive as `default`; an ES module's default export too.
  let value = mod.default;
  // tsx wraps a TypeScript file compiled to CommonJS once more.
  if (value && typeof value === 'object' && 'default' in value && Object.keys(value).length === 1)
    value = (value as { default: unknown }).default;
  if (value === undefined) throw new Error('it has no default export; write `export default defineConfig({ ... })`');
  return value;
}

/** yaml is imported only for YAML files: it is a good part of a worker's start-up otherwise. */
async function loadYaml(file: string): Promise<unknown> {
  const { parse } = await import('yaml');
  return parse(readFileSync(file, 'utf8')) ?? {};
}

const LOADERS: Record<string, Loader> = {
  '.ts': loadScript,
  '.mts': loadScript,
  '.cts': loadScript,
  '.js': loadScript,
  '.mjs': loadScript,
  '.cjs': loadScript,
  '.yaml': loadYaml,
  '.yml': loadYaml,
  '.json': async (file) => JSON.parse(readFileSync(file, 'utf8')),
};

export const CONFIG_EXTENSIONS = Object.keys(LOADERS);

/** The implicit config file names, in the order they are looked for. */
export const DEFAULT_CONFIG_NAMES = ['.ts', '.mts', '.js', '.mjs', '.cjs', '.yaml', '.yml', '.json'].map(
  (ext) => `tsgun.conf${ext}`,
);

/** `./tsgun.conf.*` in `dir`, if there is one. */
export function findDefaultConfig(dir: string): string | null {
  for (const name of DEFAULT_CONFIG_NAMES) {
    const file = path.join(dir, name);
    if (existsSync(file)) return file;
  }
  return null;
}

/** Load a config file into a plain object of raw (unvalidated) values. */
export async function loadConfigFile(file: string): Promise<Record<string, unknown>> {
  const ext = path.extname(file);
  const loader = LOADERS[ext];
  if (!loader) {
    throw new TsgunError(
      'TSGUN_ERR_CONFIG_FILE',
      `config file ${file} has an unsupported extension ${JSON.stringify(ext)}; use one of ${CONFIG_EXTENSIONS.join(' ')}`,
    );
  }
  if (!existsSync(file)) {
    throw new TsgunError(
      'TSGUN_ERR_CONFIG_FILE',
      `config file ${file} does not exist; check the path given to -c/--config`,
    );
  }
  let value: unknown;
  try {
    value = await loader(file);
  } catch (err) {
    throw new TsgunError('TSGUN_ERR_CONFIG_FILE', `cannot load config file ${file}: ${describeError(err)}`, {
      cause: err,
    });
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new TsgunError(
      'TSGUN_ERR_CONFIG_FILE',
      `config file ${file} must hold an object of settings (keys such as bind, workers), not ${Array.isArray(value) ? 'an array' : typeof value}`,
    );
  }
  return value as Record<string, unknown>;
}
