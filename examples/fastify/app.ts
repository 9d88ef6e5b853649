/**
 * A Fastify app. tsgun awaits `app.ready()` in each worker, then routes requests
 * through it; do not call `app.listen()` yourself.
 *
 *   npx tsgun -b 127.0.0.1:8000 -w 2 examples/fastify/app:app
 */
import Fastify from 'fastify';

export const app = Fastify();

app.get('/', async (_request, reply) => {
  reply.type('text/plain');
  return `Hello from tsgun! Worker ${process.pid} served this with Fastify.\n`;
});

app.get<{ Params: { name: string } }>('/api/hello/:name', async (request) => {
  return { message: `Hello, ${request.params.name}!`, worker: process.pid };
});

app.get('/api/status', async () => ({
  status: 'ok',
  worker: process.pid,
  uptimeSeconds: Math.round(process.uptime()),
}));

// Fastify validates the body against the schema and answers 400 when it does not match.
app.post<{ Body: { a: number; b: number } }>(
  '/api/sum',
  {
    schema: {
      body: {
        type: 'object',
        required: ['a', 'b'],
        properties: { a: { type: 'number' }, b: { type: 'number' } },
      },
    },
  },
  async (request) => ({ sum: request.body.a + request.body.b, worker: process.pid }),
);
