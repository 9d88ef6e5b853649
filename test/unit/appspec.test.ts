import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { lookupAttr, parseAppSpec, resolveModule } from '../../src/config/appspec.js';
import { ExitCode, TsgunError } from '../../src/errors.js';

test('MODULE alone means the default export', () => {
  assert.deepEqual(parseAppSpec('main'), { raw: 'main', module: 'main', attr: ['default'], call: false });
});

test('MODULE:ATTR, dotted ATTR, and path-like modules', () => {
  assert.deepEqual(parseAppSpec('main:app'), { raw: 'main:app', module: 'main', attr: ['app'], call: false });
  assert.deepEqual(parseAppSpec('main:server.handler'), {
    raw: 'main:server.handler',
    module: 'main',
    attr: ['server', 'handler'],
    call: false,
  });
  assert.deepEqual(parseAppSpec('src/app:default'), {
    raw: 'src/app:default',
    module: 'src/app',
    attr: ['default'],
    call: false,
  });
  assert.deepEqual(parseAppSpec('./src/app.ts:app'), {
    raw: './src/app.ts:app',
    module: './src/app.ts',
    attr: ['app'],
    call: false,
  });
  assert.deepEqual(parseAppSpec('main:$app'), { raw: 'main:$app', module: 'main', attr: ['$app'], call: false });
  assert.deepEqual(parseAppSpec('main:_app2'), { raw: 'main:_app2', module: 'main', attr: ['_app2'], call: false });
});

test('ATTR() is a factory call', () => {
  assert.deepEqual(parseAppSpec('main:createApp()'), {
    raw: 'main:createApp()',
    module: 'main',
    attr: ['createApp'],
    call: true,
  });
  assert.deepEqual(parseAppSpec('main:factories.web()'), {
    raw: 'main:factories.web()',
    module: 'main',
    attr: ['factories', 'web'],
    call: true,
  });
});

test('the last colon separates MODULE from ATTR (a directory may have a colon); whitespace is trimmed', () => {
  assert.deepEqual(parseAppSpec('a:b/main:c'), { raw: 'a:b/main:c', module: 'a:b/main', attr: ['c'], call: false });
  assert.deepEqual(parseAppSpec('  main:app \n'), { raw: 'main:app', module: 'main', attr: ['app'], call: false });
});

test('malformed APP arguments are usage errors (exit 2) naming the expected form', () => {
  const bad: Array<[string, RegExp]> = [
    ['', /has no module/],
    [':app', /has no module/],
    ['main:', /"" is not an export name/],
    ['main:()', /"" is not an export name/],
    ['main:app(1)', /factories are called without arguments, as ATTR\(\)/],
    ['main:app(', /factories are called without arguments/],
    ['main:9lives', /"9lives" is not an export name/],
    ['main:a..b', /"a\.\.b" is not an export name/],
    ['main:a-b', /"a-b" is not an export name/],
    ['main:.app', /"\.app" is not an export name/],
    ['main:app:x', /has more than one ':'/],
    ['main:create():x', /has more than one ':'/],
  ];
  for (const [raw, why] of bad) {
    assert.throws(
      () => parseAppSpec(raw),
      (err: unknown) => {
        assert.ok(err instanceof TsgunError, `${raw}: ${String(err)}`);
        assert.equal(err.code, 'TSGUN_ERR_APP_SPEC');
        assert.equal(err.exitCode, ExitCode.USAGE);
        assert.ok(err.message.startsWith(`app ${JSON.stringify(raw)}`), err.message);
        assert.match(err.message, why);
        assert.match(err.message, /expected MODULE\[:ATTR\]/);
        return true;
      },
      `${JSON.stringify(raw)} should be rejected`,
    );
  }
});

const dir = mkdtempSync(path.join(os.tmpdir(), 'tsgun-appspec-'));
after(() => rmSync(dir, { recursive: true, force: true }));
function touch(rel: string): string {
  const file = path.join(dir, rel);
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, '');
  return file;
}

test('resolveModule: the file itself, then each extension in order, then MODULE/index.*', () => {
  const ts = touch('main.ts');
  touch('main.js');
  const mjs = touch('only.mjs');
  const cjs = touch('legacy.cjs');
  const idx = touch('pkg/index.js');
  const idxTs = touch('tspkg/index.ts');
  const nested = touch('src/app.mts');
  assert.equal(resolveModule('main', dir), ts, '.ts before .js');
  assert.equal(resolveModule('main.js', dir), path.join(dir, 'main.js'), 'an exact file name wins');
  assert.equal(resolveModule('./main.ts', dir), ts);
  assert.equal(resolveModule(ts, '/somewhere/else'), ts, 'an absolute path ignores the directory');
  assert.equal(resolveModule('only', dir), mjs);
  assert.equal(resolveModule('legacy', dir), cjs);
  assert.equal(resolveModule('pkg', dir), idx, 'a directory is not a file: its index is');
  assert.equal(resolveModule('tspkg', dir), idxTs);
  assert.equal(resolveModule('src/app', dir), nested);
});

test('resolveModule: a missing module is an app-load error (exit 4) saying what was tried', () => {
  assert.throws(
    () => resolveModule('nope', dir),
    (err: unknown) => {
      assert.ok(err instanceof TsgunError);
      assert.equal(err.code, 'TSGUN_ERR_APP_LOAD');
      assert.equal(err.exitCode, ExitCode.APP_LOAD);
      assert.match(err.message, /^cannot find app module "nope" in /);
      assert.ok(err.message.includes(dir));
      assert.match(err.message, /tried nope\{\.ts,\.mts,\.cts,\.js,\.mjs,\.cjs\}, nope\/index\.\*/);
      assert.match(err.message, /check the APP argument and --chdir$/);
      return true;
    },
  );
});

test('lookupAttr follows dotted paths', () => {
  const handler = (): void => {};
  const mod = { app: 1, server: { handler }, default: 'd' };
  assert.equal(lookupAttr(mod, parseAppSpec('m:app'), 'm.ts'), 1);
  assert.equal(lookupAttr(mod, parseAppSpec('m:server.handler'), 'm.ts'), handler);
  assert.equal(lookupAttr(mod, parseAppSpec('m'), 'm.ts'), 'd');
});

test('lookupAttr finds a CommonJS named export through default', () => {
  const mod = { default: { app: 'cjs-app', __esModule: true } };
  assert.equal(lookupAttr(mod, parseAppSpec('m:app'), 'm.cjs'), 'cjs-app');
});

test('lookupAttr: a missing attribute lists what the module does export', () => {
  const check = (mod: Record<string, unknown>, spec: string, message: RegExp): void => {
    assert.throws(
      () => lookupAttr(mod, parseAppSpec(spec), '/app/m.ts'),
      (err: unknown) => {
        assert.ok(err instanceof TsgunError);
        assert.equal(err.code, 'TSGUN_ERR_APP_LOAD');
        assert.match(err.message, message);
        assert.match(err.message, /name one of them as MODULE:ATTR$/);
        return true;
      },
    );
  };
  check({ app: 1, other: 2 }, 'm:server', /^module \/app\/m\.ts has no "server" \(its exports are: app, other\)/);
  check({}, 'm:app', /^module \/app\/m\.ts has no "app" \(it exports nothing\)/);
  check(
    { server: { start: 1, stop: 2 } },
    'm:server.handler',
    /^server in \/app\/m\.ts has no "handler" \(its exports are: start, stop\)/,
  );
  check({ default: { __esModule: true, app: 1 } }, 'm:web', /has no "web"/);
});
