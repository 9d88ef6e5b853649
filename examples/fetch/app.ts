/**
 * A plain Web-standard fetch handler, no framework: `(request) => Response`. tsgun
 * streams request bodies in and response bodies out.
 *
 *   npx tsgun -b 127.0.0.1:8000 -w 2 examples/fetch/app
 *   curl -N http://127.0.0.1:8000/stream      # one line every 200 ms
 *   curl --data-binary @big.file http://127.0.0.1:8000/count
 */

const json = (value: unknown, status = 200): Response => Response.json(value, { status });

/** Ten lines, one every 200 ms: each reaches the client as it is written. */
function countdown(): Response {
  const encoder = new TextEncoder();
  let n = 10;
  let timer: ReturnType<typeof setInterval> | undefined;
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      timer = setInterval(() => {
        controller.enqueue(encoder.encode(`${n} (worker ${process.pid})\n`));
        if (--n === 0) {
          clearInterval(timer);
          controller.close();
        }
      }, 200);
    },
    // The client went away: stop producing.
    cancel() {
      clearInterval(timer);
    },
  });
  return new Response(body, { headers: { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' } });
}

/** Read the request body as it arrives and report its size, without holding it in memory. */
async function count(request: Request): Promise<Response> {
  let bytes = 0;
  if (request.body) {
    for await (const chunk of request.body) bytes += chunk.byteLength;
  }
  return json({ bytes, worker: process.pid });
}

export default async function handler(request: Request): Promise<Response> {
  const { pathname } = new URL(request.url);
  if (request.method === 'GET' && pathname === '/') {
    return new Response(
      `Hello from tsgun! Worker ${process.pid} served this with a plain fetch handler.\nTry /stream (curl -N) or POST a body to /count.\n`,
      {
        headers: { 'content-type': 'text/plain; charset=utf-8' },
      },
    );
  }
  const hello = /^\/api\/hello\/([^/]+)$/.exec(pathname);
  if (request.method === 'GET' && hello) {
    let name: string;
    try {
      name = decodeURIComponent(hello[1]!);
    } catch {
      return json({ error: 'malformed name' }, 400);
    }
    return json({ message: `Hello, ${name}!`, worker: process.pid });
  }
  if (request.method === 'GET' && pathname === '/api/status')
    return json({ status: 'ok', worker: process.pid, uptimeSeconds: Math.round(process.uptime()) });
  if (request.method === 'GET' && pathname === '/stream') return countdown();
  if (request.method === 'POST' && pathname === '/count') return count(request);
  return json({ error: 'not found' }, 404);
}
