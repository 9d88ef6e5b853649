/**
 * An Express app, served by tsgun as a Node request listener:
 *
 *   npx tsgun -c conf.example.ts examples/express/app:app
 *
 * Every JSON reply names the worker that answered, so you can watch requests spread
 * across the pool.
 */
import express, { type NextFunction, type Request, type Response } from 'express';

export const app = express();
app.disable('x-powered-by');
app.use(express.json({ limit: '100kb' }));

app.get('/', (_req, res) => {
  res
    .type('text/plain')
    .send(
      `Hello from tsgun! Worker ${process.pid} served this with Express.\nTry /api/hello/you, /api/status, or POST JSON to /api/echo.\n`,
    );
});

app.get('/api/hello/:name', (req, res) => {
  res.json({ message: `Hello, ${req.params.name}!`, worker: process.pid });
});

app.get('/api/status', (_req, res) => {
  res.json({
    status: 'ok',
    worker: process.pid,
    uptimeSeconds: Math.round(process.uptime()),
    memoryMB: Math.round(process.memoryUsage().rss / 1e6),
  });
});

app.post('/api/echo', (req, res) => {
  res.status(201).json({ received: req.body as unknown, worker: process.pid });
});

app.use((_req, res) => {
  res.status(404).json({ error: 'not found' });
});

// Express recognises an error handler by its four parameters.
app.use((err: Error & { status?: number }, _req: Request, res: Response, _next: NextFunction) => {
  res.status(err.status ?? 500).json({ error: err.status ? err.message : 'internal error' });
});
