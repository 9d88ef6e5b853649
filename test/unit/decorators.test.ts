/** Which tsconfig.json asks for decorator metadata: the nearest one, its `extends` chain, JSONC syntax. */
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { decoratorConfig, parseJsonc } from '../../src/worker/decorators.js';
import { scratchDir } from '../helpers.js';

test('parseJsonc: comments and trailing commas, but not inside strings', () => {
  const text = '{\n  // a comment\n  "a": "http://x/*y*/", /* block */ "b": [1, 2,],\n}';
  assert.deepEqual(parseJsonc(text), { a: 'http://x/*y*/', b: [1, 2] });
});

test('decoratorConfig: the nearest tsconfig.json, following relative and package extends', () => {
  const root = scratchDir('tsgun-decorators-');
  const write = (file: string, body: string) => {
    mkdirSync(path.dirname(path.join(root, file)), { recursive: true });
    writeFileSync(path.join(root, file), body);
  };
  write('node_modules/@acme/tsconfig/nest.json', '{ "compilerOptions": { "emitDecoratorMetadata": true } }');
  write('base.json', '{ "extends": "@acme/tsconfig/nest.json", /* JSONC */ }');
  write('api/tsconfig.json', '{ "extends": "../base", "compilerOptions": { "strict": true } }');
  write('api/src/main.ts', '');
  write('web/tsconfig.json', '{ "extends": "../base.json", "compilerOptions": { "emitDecoratorMetadata": false } }');
  write('web/main.ts', '');
  write('plain/main.ts', '');

  assert.deepEqual(decoratorConfig(path.join(root, 'api/src/main.ts')), {
    tsconfig: path.join(root, 'api/tsconfig.json'),
    emitDecoratorMetadata: true,
  });
  assert.equal(decoratorConfig(path.join(root, 'web/main.ts'))?.emitDecoratorMetadata, false);
  // No tsconfig.json in the scratch directory or above it (a temp dir): nothing asks for metadata.
  assert.notEqual(decoratorConfig(path.join(root, 'plain/main.ts'))?.emitDecoratorMetadata, true);
});
