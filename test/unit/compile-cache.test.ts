/** Which generations warm tsx's compile cache with one worker first (src/master/compile-cache.ts). */
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { warmsCompileCache } from '../../src/master/compile-cache.js';
import { scratchDir } from '../helpers.js';

test('warmsCompileCache: TypeScript that tsx compiles, as the worker resolves the app and its worker class', () => {
  const root = scratchDir('tsgun-compile-cache-');
  const write = (file: string, body = ''): void => {
    mkdirSync(path.dirname(path.join(root, file)), { recursive: true });
    writeFileSync(path.join(root, file), body);
  };
  write('main.ts');
  write('plain.js');
  write('worker.ts');
  write('nest/tsconfig.json', '{ "compilerOptions": { "emitDecoratorMetadata": true } }');
  write('nest/main.ts');
  const http = { worker_class: 'http', chdir: root };

  assert.equal(warmsCompileCache('main:app', http, {}), true, 'main finds main.ts');
  assert.equal(warmsCompileCache('plain:app', http, {}), false, 'JavaScript compiles nothing');
  assert.equal(warmsCompileCache('main:app', http, { TSX_DISABLE_CACHE: '1' }), false, 'tsx keeps no cache on disk');
  assert.equal(
    warmsCompileCache('nest/main:app', http, {}),
    false,
    'SWC compiles it, in each worker, with no shared cache',
  );
  assert.equal(warmsCompileCache('missing:app', http, {}), false, 'the worker reports a module it cannot find');
  assert.equal(
    warmsCompileCache('plain:app', { worker_class: 'worker:Custom', chdir: root }, {}),
    true,
    'a TypeScript worker class compiles too',
  );
  assert.equal(warmsCompileCache('plain:app', { worker_class: 'http2', chdir: root }, {}), false);
});
