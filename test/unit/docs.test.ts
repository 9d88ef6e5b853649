import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { renderErrorsDoc, renderSettingsDoc } from '../../src/config/docs.js';
import { getSetting, SETTING_NAMES, type SettingName } from '../../src/config/settings.js';
import { ERRORS } from '../../src/errors.js';
import { WORKER_HOOKS } from '../../src/hooks.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

function committed(file: string): string {
  try {
    return readFileSync(path.join(ROOT, 'docs', file), 'utf8');
  } catch {
    return '';
  }
}

function hookSettings(): string[] {
  return SETTING_NAMES.filter((name) => getSetting(name).section === 'Server hooks');
}

/** The member names of `interface Hooks` in src/hooks.ts (an interface leaves nothing at run time). */
function hooksInterfaceKeys(): string[] {
  const source = readFileSync(path.join(ROOT, 'src', 'hooks.ts'), 'utf8');
  const body = /export interface Hooks \{([\s\S]*?)\n\}/.exec(source)?.[1];
  assert.ok(body, 'src/hooks.ts has no `export interface Hooks { ... }`');
  return [...body.matchAll(/^\s*(\w+)\??:/gm)].map((m) => m[1]!);
}

test('docs/settings.md is what the generator writes', () => {
  assert.ok(
    committed('settings.md') === renderSettingsDoc(),
    'docs/settings.md is out of date with src/config/settings.ts; run npm run docs',
  );
});

test('docs/errors.md is what the generator writes', () => {
  assert.ok(
    committed('errors.md') === renderErrorsDoc(),
    'docs/errors.md is out of date with src/errors.ts; run npm run docs',
  );
});

test('generated pages say so in their first line', () => {
  for (const text of [renderSettingsDoc(), renderErrorsDoc()]) {
    assert.match(text.split('\n', 1)[0]!, /^<!-- Generated .*`npm run docs`/);
  }
});

test('every setting has a one-line description', () => {
  for (const name of SETTING_NAMES) {
    const { short } = getSetting(name);
    assert.ok(short.trim().length > 0, `setting ${name} has no short description`);
    assert.ok(!short.includes('\n'), `setting ${name}: its short description must be one line`);
  }
});

test('every setting appears in docs/settings.md, every error code in docs/errors.md', () => {
  const settings = renderSettingsDoc();
  for (const name of SETTING_NAMES)
    assert.ok(settings.includes(`\n### ${name}\n`), `docs/settings.md has no heading for ${name}`);
  const errors = renderErrorsDoc();
  for (const code of Object.keys(ERRORS))
    assert.ok(errors.includes(`\`${code}\``), `docs/errors.md does not list ${code}`);
});

test('the Server hooks section and the Hooks interface name the same hooks', () => {
  assert.deepEqual([...hookSettings()].sort(), [...hooksInterfaceKeys()].sort());
});

test('worker-side hooks are documented as running in the worker', () => {
  for (const name of hookSettings()) {
    const inWorker = (WORKER_HOOKS as readonly string[]).includes(name);
    assert.match(
      getSetting(name as SettingName).doc ?? '',
      inWorker ? /Runs in the worker/ : /Runs in the master/,
      `hook ${name}`,
    );
  }
});
