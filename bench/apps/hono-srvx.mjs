// The Hono app of hono.mjs served by srvx (a bench-only dependency in bench/package.json)
// in one process: PORT=8000 node bench/apps/hono-srvx.mjs
import { serve } from 'srvx';
import app from './hono.mjs';

serve({ fetch: app.fetch, port: Number(process.env.PORT ?? 8000), hostname: '127.0.0.1', silent: true });
process.on('SIGTERM', () => process.exit(0));
