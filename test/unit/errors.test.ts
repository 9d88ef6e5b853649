import assert from 'node:assert/strict';
import { test } from 'node:test';
import { describeError, ERRORS, ExitCode, isTsgunError, TsgunError, type ErrorCode } from '../../src/errors.js';

test('exit statuses are the documented ones', () => {
  assert.deepEqual({ ...ExitCode }, { OK: 0, RUNTIME: 1, USAGE: 2, WORKER_BOOT: 3, APP_LOAD: 4 });
});

test('every error code has an exit status in 0..4, a stable name and a doc line', () => {
  const codes = Object.keys(ERRORS) as ErrorCode[];
  assert.ok(codes.length > 0);
  for (const code of codes) {
    const { exit, doc } = ERRORS[code];
    assert.ok(Number.isInteger(exit) && exit >= 0 && exit <= 4, `${code}: exit ${exit}`);
    assert.notEqual(exit, ExitCode.OK, `${code}: an error does not exit 0`);
    assert.match(code, /^TSGUN_ERR_[A-Z]+(_[A-Z]+)*$/);
    assert.ok(doc.trim().length > 0 && !doc.includes('\n'), `${code}: one doc line`);
  }
});

test('the error kinds map to the statuses DESIGN.md names', () => {
  const exit = (code: ErrorCode): number => ERRORS[code].exit;
  for (const code of [
    'TSGUN_ERR_USAGE',
    'TSGUN_ERR_CONFIG_FILE',
    'TSGUN_ERR_CONFIG_KEY',
    'TSGUN_ERR_CONFIG_VALUE',
    'TSGUN_ERR_APP_SPEC',
  ] as const)
    assert.equal(exit(code), 2, code);
  assert.equal(exit('TSGUN_ERR_BIND'), 1);
  assert.equal(exit('TSGUN_ERR_WORKER_BOOT'), 3);
  assert.equal(exit('TSGUN_ERR_WORKER_CLASS'), 3);
  assert.equal(exit('TSGUN_ERR_APP_LOAD'), 4);
});

test('TsgunError carries its code, exit status and cause', () => {
  const cause = new Error('root');
  const err = new TsgunError('TSGUN_ERR_CONFIG_KEY', 'unknown setting "x"', { cause });
  assert.ok(err instanceof Error);
  assert.ok(isTsgunError(err));
  assert.equal(err.name, 'TsgunError');
  assert.equal(err.code, 'TSGUN_ERR_CONFIG_KEY');
  assert.equal(err.exitCode, 2);
  assert.equal(err.message, 'unknown setting "x"');
  assert.equal(err.cause, cause);
  assert.equal(
    new TsgunError('TSGUN_ERR_APP_LOAD', 'm', { exitCode: ExitCode.RUNTIME }).exitCode,
    1,
    'the status can be overridden (--check-config)',
  );
  assert.equal(isTsgunError(new Error('plain')), false);
  assert.equal(isTsgunError('TSGUN_ERR_USAGE'), false);
});

test('describeError: one line for any thrown value', () => {
  assert.equal(describeError(new Error('boom')), 'boom');
  assert.equal(describeError(new TypeError('not a function')), 'TypeError: not a function');
  assert.equal(describeError(new Error('first line\n   second line\n\n')), 'first line second line');
  assert.equal(describeError('a string'), 'a string');
  assert.equal(describeError(42), '42');
  assert.equal(describeError(undefined), 'undefined');
  const syntax = new SyntaxError("Unexpected token ')'");
  syntax.stack = `file:///srv/app/main.ts:3\n  x = );\n      ^\n\nSyntaxError: Unexpected token ')'`;
  assert.equal(describeError(syntax), "SyntaxError: Unexpected token ')' (at /srv/app/main.ts:3)");
  const noLocation = new SyntaxError('bad');
  noLocation.stack = 'SyntaxError: bad\n    at x (y.js:1:1)';
  assert.equal(describeError(noLocation), 'SyntaxError: bad');
});
