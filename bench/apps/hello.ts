// A TypeScript app (types and all, no build step) for the start-to-first-response timing
// of bench/run.mjs: tsgun -w 2 bench/apps/hello.ts:default
import type { IncomingMessage, ServerResponse } from 'node:http';

interface Greeting {
  text: string;
  length: number;
}

const greeting: Greeting = { text: 'Hello, World!', length: 13 };

export default function app(_req: IncomingMessage, res: ServerResponse): void {
  res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'content-length': greeting.length });
  res.end(greeting.text);
}
