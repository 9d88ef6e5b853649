/**
 * Source maps for the stack of a blocked worker (src/worker/source-map.cts), with maps esbuild
 * writes (tsx compiles with esbuild; bundlers and tsc write the same format): inline, as tsx
 * does, and in a .map file beside the script, as a build does. The stack taken from a real
 * blocked TypeScript worker is checked in test/integration/liveness.test.ts.
 */
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { transformSync } from 'esbuild';
import sourceMaps from '../../src/worker/source-map.cjs';
import { scratchDir } from '../helpers.js';

const { ScriptMap, sourceMappingUrl } = sourceMaps;

const TS = [
  '// a comment esbuild drops',
  'interface Item { a: number }',
  'export function spin(): void {',
  '  const item: Item = { a: 1 };',
  '  while (item.a) {}',
  '}',
  '',
].join('\n');
/** Where `while` is in TS (0-based), and where the compiled script puts it. */
const WHILE = { lineNumber: 4, columnNumber: 2 };

function compile(sourcemap: 'inline' | 'external', sourcefile: string): { code: string; map: string } {
  return transformSync(TS, { loader: 'ts', format: 'esm', minifyWhitespace: true, sourcemap, sourcefile });
}

function positionOf(code: string, text: string): { lineNumber: number; columnNumber: number } {
  const at = code.indexOf(text);
  assert.ok(at >= 0, `${text} in ${code}`);
  const before = code.slice(0, at).split('\n');
  return { lineNumber: before.length - 1, columnNumber: before.at(-1)!.length };
}

test('an inline map (as tsx writes it) takes a position in the compiled script back to the TypeScript line', () => {
  const { code } = compile('inline', '/srv/app/src/app.ts');
  const at = positionOf(code, 'while');
  assert.notDeepEqual(at, WHILE, 'the compiled script moved the loop');
  const esm = ScriptMap.of('file:///srv/app/src/app.ts', code);
  assert.ok(esm, 'the script has a map');
  assert.deepEqual(esm.original(at.lineNumber, at.columnNumber), { url: 'file:///srv/app/src/app.ts', ...WHILE });
  // CommonJS scripts are reported by path, and so are their sources.
  const cjs = ScriptMap.of('/srv/app/src/app.ts', code)!;
  assert.deepEqual(cjs.original(at.lineNumber, at.columnNumber), { url: '/srv/app/src/app.ts', ...WHILE });
});

test('a data: URL that is not base64 is read too', () => {
  const { code, map } = compile('external', 'app.ts');
  const script = `${code}//# sourceMappingURL=data:application/json;charset=utf-8,${encodeURIComponent(map)}\n`;
  const at = positionOf(script, 'while');
  assert.deepEqual(ScriptMap.of('file:///srv/app/app.ts', script)!.original(at.lineNumber, at.columnNumber), {
    url: 'file:///srv/app/app.ts',
    ...WHILE,
  });
});

test('a .map file beside a built script, with a sourceRoot, resolves its sources from where the map is', () => {
  const dir = scratchDir('tsgun-sourcemap-');
  mkdirSync(path.join(dir, 'dist', 'maps'), { recursive: true });
  const { code, map } = compile('external', 'app.ts');
  const payload = { ...(JSON.parse(map) as object), sourceRoot: '../../src' };
  writeFileSync(path.join(dir, 'dist', 'maps', 'app.js.map'), JSON.stringify(payload));
  const script = `${code}//# sourceMappingURL=maps/app.js.map\n`;
  const at = positionOf(script, 'while');
  const built = path.join(dir, 'dist', 'app.js');
  assert.deepEqual(ScriptMap.of(pathToFileURL(built).href, script)!.original(at.lineNumber, at.columnNumber), {
    url: pathToFileURL(path.join(dir, 'src', 'app.ts')).href,
    ...WHILE,
  });
  assert.deepEqual(ScriptMap.of(built, script)!.original(at.lineNumber, at.columnNumber), {
    url: path.join(dir, 'src', 'app.ts'),
    ...WHILE,
  });
});

test('a script without a map it can read keeps the positions V8 gave (null)', () => {
  const { code } = compile('external', 'app.ts');
  assert.equal(ScriptMap.of('file:///srv/app.js', code), null, 'no comment');
  assert.equal(
    ScriptMap.of('file:///srv/app.js', `${code}const s = "sourceMappingURL=x.map";\n`),
    null,
    'the words in a string are not the comment',
  );
  assert.equal(
    ScriptMap.of('file:///srv/app.js', `${code}//# sourceMappingURL=missing.js.map\n`),
    null,
    'a map file that is not there',
  );
  assert.equal(
    ScriptMap.of('file:///srv/app.js', `${code}//# sourceMappingURL=https://example.com/app.js.map\n`),
    null,
    'a map on the network is not fetched',
  );
  assert.equal(
    ScriptMap.of('file:///srv/app.js', `${code}//# sourceMappingURL=data:application/json;base64,bm90IGpzb24=\n`),
    null,
    'a map that is not JSON',
  );
  assert.equal(
    ScriptMap.of('node:internal/x', `${code}//# sourceMappingURL=x.map\n`),
    null,
    'a script that is not a file',
  );
});

test('sourceMappingUrl reads the last comment, in either of its two forms', () => {
  assert.equal(sourceMappingUrl('a()\n//# sourceMappingURL=a.js.map'), 'a.js.map');
  assert.equal(sourceMappingUrl('a()\n//@ sourceMappingURL=old.map\n'), 'old.map');
  assert.equal(sourceMappingUrl('//# sourceMappingURL=first.map\nb()\n//# sourceMappingURL=last.map\n'), 'last.map');
  assert.equal(sourceMappingUrl('a()'), null);
});
