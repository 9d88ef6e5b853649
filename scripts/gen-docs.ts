/**
 * `npm run docs`: writes docs/settings.md and docs/errors.md from the settings registry
 * and the error table. The rendering lives in src/config/docs.ts, where a test checks
 * that the committed pages match it.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { renderErrorsDoc, renderSettingsDoc } from '../src/config/docs.js';

const docs = path.join(path.dirname(path.dirname(fileURLToPath(import.meta.url))), 'docs');
mkdirSync(docs, { recursive: true });
for (const [file, text] of [
  ['settings.md', renderSettingsDoc()],
  ['errors.md', renderErrorsDoc()],
] as const) {
  writeFileSync(path.join(docs, file), text);
  console.log(`wrote docs/${file}`);
}
