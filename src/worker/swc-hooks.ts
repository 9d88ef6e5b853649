/**
 * Module loader hooks (module.register, on the loader thread): the app's .ts/.tsx/.mts files,
 * outside node_modules, are compiled by SWC with legacy decorators and their design-time
 * metadata, as `tsc` with experimentalDecorators + emitDecoratorMetadata would.
 */
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

interface Swc {
  transform(source: string, options: Record<string, unknown>): Promise<{ code: string }>;
}

interface LoadContext {
  format?: string | null;
}

type NextLoad = (url: string, context: LoadContext) => Promise<{ format?: string | null; source?: unknown }>;

let swc: Swc;

export function initialize(data: { swc: string }): void {
  swc = createRequire(import.meta.url)(data.swc) as Swc;
}

const COMPILED = /\.(?:ts|tsx|mts)$/;

export async function load(url: string, context: LoadContext, nextLoad: NextLoad): Promise<unknown> {
  if (!url.startsWith('file:')) return nextLoad(url, context);
  const file = fileURLToPath(url);
  if (!COMPILED.test(file) || file.endsWith('.d.ts') || file.includes(`/node_modules/`)) return nextLoad(url, context);
  const { code } = await swc.transform(await readFile(file, 'utf8'), {
    filename: file,
    sourceMaps: 'inline',
    module: { type: 'es6' },
    jsc: {
      parser: { syntax: 'typescript', tsx: file.endsWith('.tsx'), decorators: true },
      transform: { legacyDecorator: true, decoratorMetadata: true },
      target: 'es2022',
      keepClassNames: true,
    },
  });
  return { format: 'module', source: code, shortCircuit: true };
}
