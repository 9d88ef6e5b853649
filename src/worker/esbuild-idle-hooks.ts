/**
 * Module loader hooks (module.register, on the loader thread) that compile nothing: they let
 * tsx's esbuild service go once loading is over. tsx compiles ES modules with esbuild's
 * asynchronous API, which runs an `esbuild --service` child process for the life of the
 * thread: on a cold cache, about 11 MB in every worker for as long as it lives. So, once no
 * module has been loaded for IDLE_MS, esbuild's stop() ends that child; a module loaded later
 * (a lazy import()) starts it again, and it is stopped again after that.
 */
import { createRequire } from 'node:module';

interface Esbuild {
  stop(): Promise<void> | void;
}

type NextLoad = (url: string, context: object) => Promise<unknown>;

/** Long enough that a boot's imports, one module after another, share one esbuild process. */
const IDLE_MS = 200;

/** The esbuild that tsx loads (resolved from tsx's own directory, as tsx resolves it). */
let esbuild: Esbuild | null = null;
let pending = 0;
let timer: NodeJS.Timeout | null = null;

export function initialize(): void {
  const require = createRequire(import.meta.url);
  esbuild = createRequire(require.resolve('tsx'))('esbuild') as Esbuild;
}

export async function load(url: string, context: object, nextLoad: NextLoad): Promise<unknown> {
  pending++;
  if (timer) clearTimeout(timer);
  try {
    return await nextLoad(url, context);
  } finally {
    if (--pending === 0) timer = setTimeout(() => void esbuild?.stop(), IDLE_MS);
  }
}
