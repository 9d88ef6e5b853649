import assert from 'node:assert/strict';
import { test } from 'node:test';
import { getSetting, SETTING_NAMES, defaultSettings } from '../../src/config/settings.js';
import { defineConfig } from '../../src/index.js';
import {
  bool,
  choice,
  hook,
  int,
  optionalString,
  seconds,
  size,
  string,
  strings,
  ValueProblem,
  type ValueType,
} from '../../src/config/types.js';

/** Assert that `fn` throws a ValueProblem whose message matches. */
function problem(fn: () => unknown, message: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof ValueProblem, `expected a ValueProblem, got ${String(err)}`);
    assert.match(err.message, message);
    return true;
  });
}

test('int: strings on the command line, numbers in files, within bounds', () => {
  const t = int(1, 10);
  assert.equal(t.placeholder, '<int>');
  assert.equal(t.expected, 'an integer from 1 to 10');
  assert.equal(t.fromString('5'), 5);
  assert.equal(t.fromString(' 7 '), 7);
  assert.equal(t.fromString('+3'), 3);
  assert.equal(t.fromString('10'), 10);
  assert.equal(t.fromConfig(1), 1);
  problem(() => t.fromString('0'), /^expected an integer from 1 to 10, got "0"$/);
  problem(() => t.fromString('11'), /got "11"/);
  problem(() => t.fromString('5.5'), /got "5\.5"/);
  problem(() => t.fromString('four'), /got "four"/);
  problem(() => t.fromString(''), /got ""/);
  problem(() => t.fromString('1e1'), /got "1e1"/);
  problem(() => t.fromConfig('5'), /got "5"/);
  problem(() => t.fromConfig(2.5), /got 2\.5$/);
  problem(() => t.fromConfig(null), /got null$/);
  problem(() => t.fromConfig(() => 1), /got a function$/);
  assert.equal(t.show(4), '4');
  assert.equal(int(0).expected, 'an integer >= 0');
  assert.equal(int(0).fromString('0'), 0);
  problem(() => int(0).fromString('-1'), /expected an integer >= 0/);
});

test('seconds: fractional, not negative, finite', () => {
  const t = seconds(0);
  assert.equal(t.placeholder, '<seconds>');
  assert.equal(t.fromString('1.5'), 1.5);
  assert.equal(t.fromString('0'), 0);
  assert.equal(t.fromString(' 30 '), 30);
  assert.equal(t.fromConfig(0.25), 0.25);
  problem(() => t.fromString('-1'), /^expected a number of seconds >= 0, got "-1"$/);
  problem(() => t.fromString(''), /got ""/);
  problem(() => t.fromString('ten'), /got "ten"/);
  problem(() => t.fromString('Infinity'), /got "Infinity"/);
  problem(() => t.fromConfig('30'), /got "30"/);
  problem(() => t.fromConfig(Number.NaN), /expected a number of seconds/);
  problem(() => seconds(1).fromConfig(0.5), /expected a number of seconds >= 1, got 0\.5/);
});

test('bool: a flag; words on the command line, booleans in files', () => {
  assert.equal(bool.flag, true);
  for (const yes of ['1', 'true', 'TRUE', 'yes', 'on', ' On ']) assert.equal(bool.fromString(yes), true, yes);
  for (const no of ['0', 'false', 'False', 'no', 'off']) assert.equal(bool.fromString(no), false, no);
  problem(() => bool.fromString('maybe'), /^expected true or false, got "maybe"$/);
  assert.equal(bool.fromConfig(true), true);
  assert.equal(bool.fromConfig(false), false);
  problem(() => bool.fromConfig('true'), /got "true"/);
  problem(() => bool.fromConfig(1), /got 1/);
  assert.equal(bool.show(true), 'true');
});

test('size: units, bytes, and 0/null for no limit', () => {
  const t = size();
  assert.equal(t.fromString('4096'), 4096);
  assert.equal(t.fromString('512MB'), 512e6);
  assert.equal(t.fromString('512mb'), 512e6);
  assert.equal(t.fromString('1.5GiB'), 1.5 * 1024 ** 3);
  assert.equal(t.fromString('2 kb'), 2000);
  assert.equal(t.fromString('1k'), 1000);
  assert.equal(t.fromString('3KiB'), 3072);
  assert.equal(t.fromString('1M'), 1e6);
  assert.equal(t.fromString('1MiB'), 1024 ** 2);
  assert.equal(t.fromString('1G'), 1e9);
  assert.equal(t.fromString('10b'), 10);
  assert.equal(t.fromString('0'), null);
  assert.equal(t.fromConfig(0), null);
  assert.equal(t.fromConfig(null), null);
  assert.equal(t.fromConfig(1024), 1024);
  assert.equal(t.fromConfig('1GB'), 1e9);
  problem(() => t.fromString('lots'), /^expected a size such as 512MB.*got "lots"$/);
  problem(() => t.fromString('5XB'), /got "5XB"/);
  problem(() => t.fromString('-5MB'), /got "-5MB"/);
  problem(() => t.fromString(''), /got ""/);
  problem(() => t.fromConfig(-1), /got -1/);
  problem(() => t.fromConfig(1.5), /got 1\.5/);
  problem(() => t.fromConfig(true), /got true/);
  assert.equal(t.show(null), 'null');
  assert.equal(t.show(2048), '2048');
});

test('string and optionalString', () => {
  const s = string('<file>');
  assert.equal(s.placeholder, '<file>');
  assert.equal(s.fromString(' kept as is '), ' kept as is ');
  assert.equal(s.fromConfig('x'), 'x');
  problem(() => s.fromConfig(5), /^expected a string, got 5$/);
  assert.equal(s.show('a"b'), '"a\\"b"');

  const o = optionalString();
  assert.equal(o.fromString(''), null);
  assert.equal(o.fromString('x'), 'x');
  assert.equal(o.fromConfig(null), null);
  assert.equal(o.fromConfig(undefined), null);
  assert.equal(o.fromConfig(''), null);
  assert.equal(o.fromConfig('x'), 'x');
  problem(() => o.fromConfig(['x']), /^expected a string or null, got \["x"\]$/);
  assert.equal(o.show(null), 'null');
  assert.equal(o.show('x'), '"x"');
});

test('strings: repeatable; a string or a list in files; each item checked', () => {
  const t = strings('<address>');
  assert.equal(t.repeatable, true);
  assert.deepEqual(t.fromString('a'), ['a']);
  assert.deepEqual(t.fromConfig('a'), ['a']);
  assert.deepEqual(t.fromConfig(['a', 'b']), ['a', 'b']);
  assert.deepEqual(t.fromConfig([]), []);
  problem(() => t.fromConfig([1]), /^expected a string or a list of strings, got \[1\]$/);
  problem(() => t.fromConfig({ a: 1 }), /got \{"a":1\}/);
  assert.equal(t.show(['a', 'b']), '["a","b"]');
  const input = ['x'];
  assert.notEqual(t.fromConfig(input), input, "a copy, not the caller's array");

  const checked = strings('<KEY=VALUE>', (item) => {
    if (!item.includes('=')) throw new ValueProblem(`no = in ${item}`);
  });
  assert.deepEqual(checked.fromConfig(['A=1', 'B=2']), ['A=1', 'B=2']);
  problem(() => checked.fromConfig(['A=1', 'B']), /^no = in B$/);
  problem(() => checked.fromString('B'), /^no = in B$/);
});

test('choice: one of a fixed list', () => {
  const t = choice(['auto', 'node', 'fetch'] as const);
  assert.equal(t.placeholder, '<auto|node|fetch>');
  assert.equal(t.fromString(' node '), 'node');
  assert.equal(t.fromConfig('fetch'), 'fetch');
  problem(() => t.fromString('koa'), /^expected one of auto, node, fetch, got "koa"$/);
  problem(() => t.fromConfig('Node'), /got "Node"/);
  problem(() => t.fromConfig(1), /got 1/);
  assert.equal(t.show('auto'), 'auto');
});

test('hook: a function from a config file; never from the command line', () => {
  const t = hook<() => void>();
  function onStarting(): void {}
  assert.equal(t.fromConfig(onStarting), onStarting);
  assert.equal(t.fromConfig(null), null);
  assert.equal(t.fromConfig(undefined), null);
  problem(() => t.fromConfig('onStarting'), /^expected a function, got "onStarting"$/);
  problem(() => t.fromConfig({}), /got \{\}/);
  problem(() => t.fromString('x'), /hooks are set in a config file, not on the command line/);
  assert.equal(t.show(null), 'null');
  assert.equal(t.show(onStarting), '<function onStarting>');
  assert.equal(t.show((() => () => {})()), '<function anonymous>');
});

test("every setting's default is a value of its own type", () => {
  const defaults = defaultSettings() as Record<string, unknown>;
  for (const name of SETTING_NAMES) {
    const type = getSetting(name).type as ValueType<unknown>;
    assert.deepEqual(type.fromConfig(defaults[name]), defaults[name], `default of ${name}`);
  }
});

test('defaultSettings returns fresh arrays', () => {
  const a = defaultSettings();
  a.bind.push('0.0.0.0:1');
  assert.deepEqual(defaultSettings().bind, ['127.0.0.1:8000']);
});

test('defineConfig gives each hook its signature (checked by the typecheck of this file)', () => {
  const config = defineConfig({
    workers: 2,
    on_starting: (server) => server.log.info(`master ${server.pid}`),
    post_request: (worker, req, _res, ms) => worker.log.debug(`${req.url} ${ms}`),
    pre_fork: null,
  });
  // @ts-expect-error a hook with the wrong signature is refused
  defineConfig({ pre_request: (worker: number) => worker });
  // @ts-expect-error a hook is a function, not a string
  defineConfig({ on_exit: 'exit' });
  assert.equal(typeof config.on_starting, 'function');
});
