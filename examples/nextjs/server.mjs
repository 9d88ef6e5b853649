/**
 * A built Next.js app served by tsgun through a factory (one Next server per worker):
 *
 *   npm install && npx next build && npx tsgun -w 2 'server:create()'
 *
 * scripts/check-nextjs.sh in the tsgun repository runs exactly this and checks the replies.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import next from 'next';

const dir = path.dirname(fileURLToPath(import.meta.url));

export async function create() {
  const app = next({ dev: false, dir });
  await app.prepare();
  return app.getRequestHandler();
}
