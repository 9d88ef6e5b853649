/**
 * Type tests of the public API's run() (checked by `npm run typecheck`; the @ts-expect-error
 * lines fail it if they stop being errors), and what the package exports at run time.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as tsgun from '../../src/index.js';
import { run, TsgunError, type ErrorCode, type RunOptions, type TsgunServer } from '../../src/index.js';

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
const is = <T extends true>(): T => true as T;

// Options: app, any config-file key with its config-file forms, and a config file; nothing else.
const options: RunOptions = {
  app: 'main:app',
  bind: ['127.0.0.1:0'],
  workers: 2,
  raw_env: 'A=1',
  config: 'tsgun.conf.ts',
};
void options;
const hooks: RunOptions = { app: 'main:app', when_ready: (server) => server.log.info(String(server.pid)) };
void hooks;
// @ts-expect-error app is required
const noApp: RunOptions = { workers: 2 };
// @ts-expect-error an unknown key
const misspelt: RunOptions = { app: 'main:app', workerz: 2 };
// @ts-expect-error a wrong type
const wrong: RunOptions = { app: 'main:app', workers: 'two' };
// @ts-expect-error check_config is the command line's
const cliOnly: RunOptions = { app: 'main:app', check_config: true };
void [noApp, misspelt, wrong, cliOnly];

// The server: urls, promises, closed's exit status.
is<Equal<ReturnType<typeof run>, Promise<TsgunServer>>>();
is<Equal<TsgunServer['urls'], readonly string[]>>();
is<Equal<ReturnType<TsgunServer['reload']>, Promise<void>>>();
is<Equal<Parameters<TsgunServer['scale']>, [workers: number]>>();
is<Equal<ReturnType<TsgunServer['stop']>, Promise<number>>>();
is<Equal<Parameters<TsgunServer['stop']>, [options?: { quick?: boolean }]>>();
is<Equal<TsgunServer['closed'], Promise<number>>>();
is<Equal<TsgunError['code'], ErrorCode>>();

test('the package exports run, defineConfig and the error types at run time', () => {
  assert.deepEqual(Object.keys(tsgun).sort(), ['ExitCode', 'TsgunError', 'defineConfig', 'isTsgunError', 'run']);
  assert.equal(typeof tsgun.run, 'function');
  assert.ok(tsgun.isTsgunError(new TsgunError('TSGUN_ERR_USAGE', 'x')));
});

test('run() rejects bad options with a TsgunError before anything starts', async () => {
  // @ts-expect-error not an options object
  await assert.rejects(run(null), (err: unknown) => err instanceof TsgunError && err.code === 'TSGUN_ERR_USAGE');
  await assert.rejects(
    run({ app: 'main:app', workers: 0 }),
    (err: unknown) =>
      err instanceof TsgunError && err.code === 'TSGUN_ERR_CONFIG_VALUE' && /setting "workers"/.test(err.message),
  );
});
