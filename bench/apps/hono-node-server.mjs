// The Hono app of hono.mjs served by @hono/node-server in one process: PORT=8000 node bench/apps/hono-node-server.mjs
import { serve } from '@hono/node-server';
import app from './hono.mjs';

serve({ fetch: app.fetch, port: Number(process.env.PORT ?? 8000), hostname: '127.0.0.1' });
process.on('SIGTERM', () => process.exit(0));
