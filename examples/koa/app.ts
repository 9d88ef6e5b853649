/**
 * A Koa app, served by tsgun through `app.callback()`:
 *
 *   npx tsgun -b 127.0.0.1:8000 -w 2 examples/koa/app:app
 */
import Koa from 'koa';

export const app = new Koa();

// Time every request and report it in a header, the classic Koa middleware.
app.use(async (ctx, next) => {
  const started = process.hrtime.bigint();
  await next();
  ctx.set('Server-Timing', `app;dur=${Number(process.hrtime.bigint() - started) / 1e6}`);
});

app.use(async (ctx, next) => {
  if (ctx.method !== 'GET') return next();
  if (ctx.path === '/') {
    ctx.body = `Hello from tsgun! Worker ${process.pid} served this with Koa.\n`;
    return;
  }
  const hello = /^\/api\/hello\/([^/]+)$/.exec(ctx.path);
  if (hello) {
    // ctx.throw() turns into a 400 reply; a malformed %-escape would otherwise be a 500.
    const name = (() => {
      try {
        return decodeURIComponent(hello[1]!);
      } catch {
        return ctx.throw(400, 'malformed name');
      }
    })();
    ctx.body = { message: `Hello, ${name}!`, worker: process.pid };
    return;
  }
  if (ctx.path === '/api/status') {
    ctx.body = { status: 'ok', worker: process.pid, uptimeSeconds: Math.round(process.uptime()) };
    return;
  }
  return next();
});

app.use((ctx) => {
  ctx.status = 404;
  ctx.body = { error: 'not found' };
});
