/**
 * A Hono app: an object with `fetch(request)`, served by tsgun's fetch adapter. The
 * default export is the app, so the APP argument needs no `:ATTR`.
 *
 *   npx tsgun -b 127.0.0.1:8000 -w 2 examples/hono/app
 */
import { Hono } from 'hono';

const app = new Hono();

app.get('/', (c) => c.text(`Hello from tsgun! Worker ${process.pid} served this with Hono.\n`));

app.get('/api/hello/:name', (c) => c.json({ message: `Hello, ${c.req.param('name')}!`, worker: process.pid }));

app.get('/api/status', (c) =>
  c.json({ status: 'ok', worker: process.pid, uptimeSeconds: Math.round(process.uptime()) }),
);

app.post('/api/echo', async (c) => {
  const body: unknown = await c.req.json().catch(() => null);
  if (body === null) return c.json({ error: 'send a JSON body' }, 400);
  return c.json({ received: body, worker: process.pid }, 201);
});

app.notFound((c) => c.json({ error: 'not found' }, 404));

export default app;
