/**
 * `run()`: tsgun as a library. The master runs in the calling process, as `uvicorn.run()`
 * does: hooks given as functions work, `process.pid` is the master's pid, and the signals
 * of the contract (TERM, INT, HUP, TTIN, ...) reach it; only USR2, which starts the command
 * line again, has nothing to start and is ignored. Nothing here exits the process: errors
 * are thrown as TsgunErrors, and the exit status the command would have is `closed`'s value.
 */
import { parseAppSpec, resolveModule } from './config/appspec.js';
import type { TsgunConfig } from './config/define.js';
import { resolveOptions, type ResolvedConfig } from './config/resolve.js';
import { applyEnvironment, VERSION } from './cli.js';
import { ExitCode, isTsgunError, TsgunError } from './errors.js';
import { createLogger } from './log.js';
import { Arbiter } from './master/arbiter.js';
import { scaleTarget } from './master/control.js';

/** run()'s options: the app, and any config-file key (the options win over the file's values). */
export interface RunOptions extends TsgunConfig {
  /** `MODULE[:ATTR]`, as on the command line. */
  app: string;
  /** A config file to read first (`.ts`, `.js`, `.yaml`, ...); no `tsgun.conf.*` is looked for otherwise. */
  config?: string;
}

/** A running tsgun, as run() resolves it once the first generation of workers is ready. */
export interface TsgunServer {
  /** The addresses the master listens at, as its `Listening at:` lines give them (`http://127.0.0.1:43125`, `unix:/path`). */
  readonly urls: readonly string[];
  /** Reload as HUP does (config file re-read, new generation); resolves once it is ready, rejects with why not. */
  reload(): Promise<void>;
  /** Set the number of workers; resolves once that many are ready and any surplus has left. */
  scale(workers: number): Promise<void>;
  /** Stop gracefully as TERM does (`quick: true`: as INT does); resolves with the exit status. */
  stop(options?: { quick?: boolean }): Promise<number>;
  /** Resolves with the exit status once the master has stopped, whatever stopped it (stop(), a signal, a failure). */
  readonly closed: Promise<number>;
}

/**
 * Serve `app` with a master and its workers in this process. Resolves once the first
 * generation is ready; rejects with a TsgunError (its `code` one of `TSGUN_ERR_*`, its
 * `exitCode` what the command would exit with) when the options, the config or the app fail.
 */
export async function run(options: RunOptions): Promise<TsgunServer> {
  const cwd = process.cwd();
  const base = { ...process.env };
  const resolve = async (): Promise<ResolvedConfig> => {
    const resolved = await resolveOptions({ ...options }, cwd);
    applyEnvironment(resolved, cwd, base, false);
    return resolved;
  };
  if (options === null || typeof options !== 'object') {
    throw new TsgunError('TSGUN_ERR_USAGE', "run() takes an options object, for example run({ app: 'main:app' })");
  }
  const resolved = await resolve();
  const app = resolved.app!;
  resolveModule(parseAppSpec(app).module, resolved.settings.chdir ?? cwd);

  const logs = createLogger(resolved.settings, { role: 'master' });
  let ready!: () => void;
  const isReady = new Promise<void>((r) => (ready = r));
  const arbiter = new Arbiter({
    resolved,
    app,
    logs,
    version: VERSION,
    reresolve: resolve,
    argv: null,
    cwd,
    onReady: () => ready(),
  });
  let stopped = false;
  const running = arbiter.run().finally(() => {
    stopped = true;
    logs.flush();
  });
  const closed = running.catch((err: unknown) => (isTsgunError(err) ? err.exitCode : ExitCode.RUNTIME));
  // Before ready, a failure (a socket that cannot be bound, an app that cannot boot) is run()'s.
  const early = running.then((code) => {
    throw new TsgunError(
      'TSGUN_ERR_RUNTIME',
      `tsgun stopped (exit status ${code}) before its first workers were ready`,
    );
  });
  early.catch(() => {});
  await Promise.race([isReady, early]);

  const live = (what: string): void => {
    if (stopped) throw new TsgunError('TSGUN_ERR_RUNTIME', `cannot ${what}: tsgun has stopped`);
  };
  const settle = async (result: Promise<{ ok: boolean; message: string }>): Promise<void> => {
    const { ok, message } = await result;
    if (!ok) throw new TsgunError('TSGUN_ERR_RUNTIME', message);
  };
  return {
    urls: arbiter.snapshot().sockets,
    async reload() {
      live('reload');
      await settle(arbiter.requestReload());
    },
    async scale(workers: number) {
      live('scale');
      const target = scaleTarget(String(workers), arbiter.snapshot().target);
      if (typeof target === 'string') throw new TsgunError('TSGUN_ERR_USAGE', `scale(${workers}): ${target}`);
      await settle(arbiter.requestScale(target));
    },
    stop(opts = {}) {
      if (!stopped) arbiter.requestStop(opts.quick === true);
      return closed;
    },
    closed,
  };
}
