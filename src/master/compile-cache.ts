/**
 * Whether a generation's workers compile TypeScript into tsx's shared cache, decided in the
 * master before the generation's first fork, the way the worker decides it when it imports
 * (src/worker/app.ts): a .ts/.mts/.cts/.tsx module is compiled by tsx, unless its tsconfig asks
 * for decorator metadata (SWC then, decorators.ts).
 *
 * tsx keeps what esbuild compiled on disk (os.tmpdir()/tsx-<uid>, keyed by the source and the
 * options, the file's path among them), so a worker that starts after another has loaded the
 * app reads compiled code and runs no esbuild. The pool plan boots one worker of such a
 * generation first (pool.ts). SWC compiles in the worker's own process and keeps no such
 * cache: booting its workers one after another would only slow them down.
 */
import { parseAppSpec, resolveModule } from '../config/appspec.js';
import { isTypeScript } from '../config/files.js';
import type { Settings } from '../config/settings.js';
import { swcConfig } from '../worker/decorators.js';

/** The modules a worker imports at boot: a custom worker class's, and the app's. */
function bootModules(app: string, settings: Pick<Settings, 'worker_class'>): string[] {
  const builtin = settings.worker_class === 'http' || settings.worker_class === 'http2';
  return builtin ? [app] : [settings.worker_class, app];
}

function compiledByTsx(spec: string, dir: string): boolean {
  try {
    const file = resolveModule(parseAppSpec(spec).module, dir);
    return isTypeScript(file) && swcConfig(file) === null;
  } catch {
    // A module that cannot be found or a tsconfig that cannot be read: the worker says why.
    return false;
  }
}

/** Does a worker started with these settings and environment compile into tsx's disk cache? */
export function warmsCompileCache(
  app: string,
  settings: Pick<Settings, 'worker_class' | 'chdir'>,
  env: NodeJS.ProcessEnv,
): boolean {
  // tsx keeps its cache in memory only, per process, with this set.
  if (env.TSX_DISABLE_CACHE) return false;
  const dir = settings.chdir ?? process.cwd();
  return bootModules(app, settings).some((spec) => compiledByTsx(spec, dir));
}
