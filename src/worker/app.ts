/**
 * Loading the app named by `MODULE:ATTR` and turning whatever shape it has into one Node
 * request listener.
 */
import http, { type IncomingMessage, type RequestListener, type ServerResponse } from 'node:http';
import type { Http2SecureServer } from 'node:http2';
import type https from 'node:https';
import { createRequire, register } from 'node:module';
import net from 'node:net';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { lookupAttr, parseAppSpec, resolveModule } from '../config/appspec.js';
import { isTypeScript } from '../config/files.js';
import type { Settings } from '../config/settings.js';
import { describeError, TsgunError } from '../errors.js';
import { registerDecoratorLoader } from './decorators.js';
import type { FetchHandler } from './fetch.js';

export type AppShape = 'koa' | 'fastify' | 'fetch-object' | 'node' | 'fetch' | 'server';

export type AppServer = http.Server | https.Server | Http2SecureServer;

export interface LoadedApp {
  shape: AppShape;
  listener: RequestListener;
  file: string;
  /** The server to serve: the worker's own, or the app's (exported, or listened while imported). */
  server: AppServer;
  /** How the app's server came in, for the log: null when it is the worker's own. */
  adopted: 'export' | 'listen' | null;
  /** The app's shutdown (its module's `close` export, a Nest app's or a Fastify instance's close()); null if none. */
  close: (() => Promise<void>) | null;
  /** What compiled the app's TypeScript, for the boot log: null for JavaScript. */
  typescript: string | null;
}

/** What a factory is called with. */
export interface AppContext {
  /** The worker's HTTP server, not yet listening: attach WebSocket servers to it. */
  server: AppServer;
}

let tsxRegistered: Promise<unknown> | null = null;

/**
 * tsx, with no esbuild process left running in the worker: its synchronous compiles (CommonJS,
 * on this thread) each run a one-shot esbuild rather than a service on a worker thread of
 * esbuild's own (ESBUILD_WORKER_THREADS, read once, when esbuild is first loaded, here and by
 * the loader thread that tsx starts); the service of its asynchronous compiles (ES modules, on
 * the loader thread) is stopped once loading pauses (esbuild-idle-hooks.ts).
 */
async function registerTsx(): Promise<void> {
  const saved = process.env.ESBUILD_WORKER_THREADS;
  process.env.ESBUILD_WORKER_THREADS = '0';
  try {
    await import('tsx');
  } finally {
    if (saved === undefined) delete process.env.ESBUILD_WORKER_THREADS;
    else process.env.ESBUILD_WORKER_THREADS = saved;
  }
  register(new URL('./esbuild-idle-hooks.js', import.meta.url));
}

/**
 * Register tsx's loader once, so TypeScript modules (and what they import) load without a build;
 * and SWC's on top when `file`'s tsconfig.json asks for decorator metadata. Says which compiles `file`.
 */
export async function registerTypeScript(file: string): Promise<string> {
  tsxRegistered ??= registerTsx();
  await tsxRegistered;
  const swc = registerDecoratorLoader(file);
  return swc ? `SWC (emitDecoratorMetadata in ${swc.tsconfig})` : 'tsx';
}

/** Import a module file, TypeScript included; failures become app-load errors. */
export async function importModule(file: string, what: string): Promise<Record<string, unknown>> {
  if (isTypeScript(file)) await registerTypeScript(file);
  try {
    return (await import(pathToFileURL(file).href)) as Record<string, unknown>;
  } catch (err) {
    const at = thrownAt(err);
    throw new TsgunError(
      'TSGUN_ERR_APP_LOAD',
      `${what} failed to load: ${describeError(err)}${at ? ` (at ${at})` : ''}`,
      { cause: err },
    );
  }
}

const OWN_DIR = fileURLToPath(new URL('..', import.meta.url));

/** file:line:column of the stack frame that threw, skipping Node's, tsx's and tsgun's own frames. */
function thrownAt(err: unknown): string | null {
  const stack = err instanceof Error && typeof err.stack === 'string' ? err.stack : '';
  for (const line of stack.split('\n')) {
    const m = /^\s+at (?:.*\()?((?:file:\/\/)?\/[^()]*?):(\d+):(\d+)\)?$/.exec(line);
    if (!m) continue;
    const file = m[1]!.startsWith('file://') ? fileURLToPath(m[1]!) : m[1]!;
    if (file.startsWith(OWN_DIR) || file.includes('/node_modules/tsx/')) continue;
    return `${file}:${m[2]}:${m[3]}`;
  }
  return null;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null;
}

type Detected =
  | { shape: 'koa' | 'fastify' | 'node'; listener: RequestListener }
  | { shape: 'fetch-object' | 'fetch'; handler: FetchHandler };

const SHAPES_HELP =
  'export an Express/Connect listener (req, res), a Koa app, a Fastify instance, an object with fetch(request), or a fetch handler (request) => Response';

function detect(app: unknown, iface: Settings['interface'], name: string): Detected {
  const kind = app === null ? 'null' : Array.isArray(app) ? 'an array' : typeof app;
  const wrong = (why: string): never => {
    throw new TsgunError('TSGUN_ERR_APP_LOAD', `app ${name} ${why}; ${SHAPES_HELP}`);
  };
  const o = app as Record<string, unknown>;
  if (iface !== 'fetch') {
    if (isObject(app) && typeof o.callback === 'function')
      return { shape: 'koa', listener: (o.callback as () => RequestListener).call(app) };
    if (
      (isObject(app) || typeof app === 'function') &&
      typeof o.routing === 'function' &&
      typeof o.ready === 'function'
    ) {
      return { shape: 'fastify', listener: o.routing as RequestListener };
    }
  }
  if (iface !== 'node' && isObject(app) && typeof o.fetch === 'function')
    return { shape: 'fetch-object', handler: (o.fetch as FetchHandler).bind(app) };
  if (typeof app === 'function') {
    if (iface === 'node' || (iface === 'auto' && app.length >= 2))
      return { shape: 'node', listener: app as RequestListener };
    return { shape: 'fetch', handler: app as FetchHandler };
  }
  return wrong(
    iface === 'auto'
      ? `is ${kind}, not an app`
      : `is ${kind}, not a ${iface === 'node' ? 'Node request listener' : 'fetch handler'} (--interface ${iface})`,
  );
}

interface NestApp {
  init(): Promise<unknown>;
  close(): Promise<unknown>;
  getHttpAdapter(): { getInstance(): unknown };
}

/** A Nest application object (NestFactory.create): served through its HTTP adapter's instance (Express, Fastify). */
function isNestApp(v: unknown): v is NestApp {
  return (
    isObject(v) &&
    typeof v.getHttpAdapter === 'function' &&
    typeof v.init === 'function' &&
    typeof v.close === 'function'
  );
}

/**
 * https.Server, for instanceof: node:https (and node:tls under it, about 1 MB) is loaded only when
 * a server is neither http.Server nor any other net.Server; one that is an https.Server was made
 * by an app that has loaded node:https already.
 */
function HttpsServer(): typeof https.Server {
  return (createRequire(import.meta.url)('node:https') as typeof https).Server;
}

function isHttpsServer(v: unknown): v is https.Server {
  return v instanceof net.Server && !(v instanceof http.Server) && v instanceof HttpsServer();
}

function isHttpServer(v: unknown): v is http.Server | https.Server {
  return v instanceof http.Server || isHttpsServer(v);
}

/** Where the app's server will be reachable: what its address() reports before the worker listens. */
function addressOf(label: string | undefined): net.AddressInfo | string | null {
  if (!label) return null;
  if (label.startsWith('unix:')) return label.slice(5);
  const url = new URL(label);
  const host = url.hostname.replace(/^\[|\]$/g, '');
  return { address: host, family: net.isIPv6(host) ? 'IPv6' : 'IPv4', port: Number(url.port) };
}

/**
 * While the app module is imported (and its factory runs), the first HTTP(S) server that
 * calls listen() is adopted instead of bound: the call succeeds at once (its callback runs,
 * address() reports tsgun's socket) and the worker serves that server on its own sockets.
 * Returns a function that ends the interception and gives the server adopted, if any.
 */
function interceptListen(own: AppServer, label: string | undefined): () => http.Server | https.Server | null {
  const listen = net.Server.prototype.listen;
  let adopted: http.Server | https.Server | null = null;
  net.Server.prototype.listen = function (this: net.Server, ...args: unknown[]) {
    if (adopted !== null || !isHttpServer(this) || (this as unknown) === own) return listen.apply(this, args as never);
    adopted = this;
    const last = args.at(-1);
    Object.defineProperty(this, 'address', { value: () => addressOf(label), configurable: true, writable: true });
    if (typeof last === 'function') process.nextTick(() => (last as () => void).call(this));
    return this;
  } as typeof listen;
  return () => {
    net.Server.prototype.listen = listen;
    return adopted;
  };
}

/** A server's 'request' listeners, taken off it and called as one. */
function takeRequestListeners(
  server: AppServer,
  placeholder: RequestListener,
  app: RequestListener | null,
): RequestListener {
  const listeners = server.listeners('request') as RequestListener[];
  server.removeAllListeners('request');
  if (listeners.length === 1 && listeners[0] === placeholder && app) return app;
  if (listeners.length === 0)
    return (
      app ?? ((_req, res) => res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('Not Found\n'))
    );
  if (listeners.length === 1) return listeners[0]!;
  return function (this: unknown, req: IncomingMessage, res: ServerResponse) {
    for (const l of listeners) l.call(server, req, res);
  };
}

/** Load the app and adapt it to a Node request listener. */
export async function loadApp(
  spec: string,
  settings: Pick<Settings, 'chdir' | 'factory' | 'interface' | 'root_path'>,
  opts: { onError: (err: unknown) => void; lightResponse?: boolean; server: AppServer; address?: string },
): Promise<LoadedApp> {
  const app = parseAppSpec(spec);
  const file = resolveModule(app.module, settings.chdir ?? process.cwd());
  const own = opts.server;
  // Whatever the app attaches to the worker's server (Socket.IO wraps the 'request' listeners
  // it finds) reaches the app's listener through this one, known once the app is loaded.
  let appListener: RequestListener | null = null;
  const placeholder: RequestListener = (req, res) => appListener!(req, res);
  own.on('request', placeholder);
  const adoption = interceptListen(own, opts.address);
  let mod: Record<string, unknown>;
  let value: unknown;
  let listened: http.Server | https.Server | null = null;
  const name = `${JSON.stringify(spec)}`;
  try {
    mod = await importModule(file, `app module ${file}`);
    try {
      value = lookupAttr(mod, app, file);
    } catch (err) {
      // `tsgun server.js`: a module that listens needs no export.
      if (app.raw !== app.module || app.call || settings.factory) throw err;
    }
    if (app.call || settings.factory) {
      if (typeof value !== 'function')
        throw new TsgunError(
          'TSGUN_ERR_APP_LOAD',
          `app ${name} is ${typeof value}, not a factory function; drop "()" and --factory, or export a function that returns the app`,
        );
      try {
        value = await (value as (context: AppContext) => unknown)({ server: own });
      } catch (err) {
        throw new TsgunError('TSGUN_ERR_APP_LOAD', `app factory ${name} threw: ${describeError(err)}`, { cause: err });
      }
    }
  } finally {
    listened = adoption();
  }
  let nestClose: (() => unknown) | null = null;
  if (isNestApp(value)) {
    const nest = value;
    try {
      await nest.init();
    } catch (err) {
      throw new TsgunError('TSGUN_ERR_APP_LOAD', `Nest app ${name} failed in init(): ${describeError(err)}`, {
        cause: err,
      });
    }
    nestClose = () => nest.close();
    value = nest.getHttpAdapter().getInstance();
  }
  const typescript = isTypeScript(file) ? await registerTypeScript(file) : null;
  const moduleClose = typeof mod.close === 'function' && mod.close !== value ? (mod.close as () => unknown) : null;
  if (listened || isHttpServer(value)) {
    const server = (listened ?? value) as http.Server | https.Server;
    if (!listened && server.listening)
      throw new TsgunError(
        'TSGUN_ERR_APP_LOAD',
        `app ${name} is a server that is already listening; export it before calling listen(), or let tsgun adopt the listen() call`,
      );
    checkServerKind(server, own, name);
    own.removeListener('request', placeholder);
    return {
      shape: 'server',
      listener: takeRequestListeners(server, placeholder, null),
      file,
      server,
      adopted: listened ? 'listen' : 'export',
      close: closeOf(moduleClose, nestClose),
      typescript,
    };
  }
  if (value === undefined) lookupAttr(mod, app, file);
  const detected = detect(value, settings.interface, name);
  if (detected.shape === 'fastify') {
    try {
      await (value as { ready(): Promise<unknown> }).ready();
    } catch (err) {
      throw new TsgunError('TSGUN_ERR_APP_LOAD', `Fastify app ${name} failed in ready(): ${describeError(err)}`, {
        cause: err,
      });
    }
  }
  let appClose = nestClose;
  if (detected.shape === 'fastify') {
    const fastify = value as { server?: http.Server; close(): unknown };
    // A Nest app's close() closes its Fastify instance itself.
    appClose ??= () => fastify.close();
    // Its upgrade listeners (@fastify/websocket) are on the server Fastify made for itself.
    const theirs = fastify.server;
    if (theirs && theirs !== own && theirs.listenerCount('upgrade') > 0)
      own.on('upgrade', (...args) => theirs.emit('upgrade', ...args));
  }
  if ('listener' in detected) {
    appListener = detected.listener;
  } else {
    // The fetch adapter, and undici's Request and Response behind it, load only for fetch handlers.
    const [{ fetchListener }, { installLightResponse }] = await Promise.all([
      import('./fetch.js'),
      import('./response.js'),
    ]);
    if (opts.lightResponse) installLightResponse();
    appListener = fetchListener(detected.handler, {
      rootPath: settings.root_path.replace(/\/$/, ''),
      onError: opts.onError,
    });
  }
  return {
    shape: detected.shape,
    listener: takeRequestListeners(own, placeholder, appListener),
    file,
    server: own,
    adopted: null,
    close: closeOf(moduleClose, appClose),
    typescript,
  };
}

/** The app's own server must speak what tsgun is set up for: TLS with certfile, HTTP/1.1 unless worker_class is http2. */
function checkServerKind(theirs: http.Server | https.Server, own: AppServer, name: string): void {
  const fix = 'serve the app itself (export it, or call a factory) so that tsgun makes the server';
  if (!isHttpServer(own)) {
    throw new TsgunError(
      'TSGUN_ERR_APP_LOAD',
      `app ${name} brings its own HTTP/1.1 server, which worker_class http2 cannot serve; use worker_class http, or ${fix}`,
    );
  }
  if (isHttpsServer(own) && !isHttpsServer(theirs)) {
    throw new TsgunError(
      'TSGUN_ERR_APP_LOAD',
      `app ${name} brings its own plain http.Server but certfile/keyfile are set; make it with https.createServer(options, app), drop --certfile, or ${fix}`,
    );
  }
}

/** The app's shutdown: a Nest app's or Fastify instance's close() (their shutdown hooks), then the module's `close` export. */
function closeOf(moduleClose: (() => unknown) | null, appClose: (() => unknown) | null): (() => Promise<void>) | null {
  if (!moduleClose && !appClose) return null;
  return async () => {
    await appClose?.();
    await moduleClose?.();
  };
}
