/**
 * Loading the app named by `MODULE:ATTR` and turning whatever shape it has into one Node
 * request listener.
 */
import type { RequestListener } from 'node:http';
import { pathToFileURL } from 'node:url';
import { lookupAttr, parseAppSpec, resolveModule } from '../config/appspec.js';
import { isTypeScript } from '../config/files.js';
import type { Settings } from '../config/settings.js';
import { describeError, TsgunError } from '../errors.js';
import type { FetchHandler } from './fetch.js';

export type AppShape = 'koa' | 'fastify' | 'fetch-object' | 'node' | 'fetch';

export interface LoadedApp {
  shape: AppShape;
  listener: RequestListener;
  file: string;
}

let tsxRegistered: Promise<unknown> | null = null;

/** Register tsx's loader once, so TypeScript modules (and what they import) load without a build. */
export function registerTypeScript(): Promise<unknown> {
  tsxRegistered ??= import('tsx');
  return tsxRegistered;
}

/** Import a module file, TypeScript included; failures become app-load errors. */
export async function importModule(file: string, what: string): Promise<Record<string, unknown>> {
  try {
    if (isTypeScript(file)) await registerTypeScript();
    return (await import(pathToFileURL(file).href)) as Record<string, unknown>;
  } catch (err) {
    throw new TsgunError('TSGUN_ERR_APP_LOAD', `${what} failed to load: ${describeError(err)}`, { cause: err });
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null;
}

type Detected = { shape: 'koa' | 'fastify' | 'node'; listener: RequestListener } | { shape: 'fetch-object' | 'fetch'; handler: FetchHandler };

const SHAPES_HELP = 'export an Express/Connect listener (req, res), a Koa app, a Fastify instance, an object with fetch(request), or a fetch handler (request) => Response';

function detect(app: unknown, iface: Settings['interface'], name: string): Detected {
  const kind = app === null ? 'null' : Array.isArray(app) ? 'an array' : typeof app;
  const wrong = (why: string): never => {
    throw new TsgunError('TSGUN_ERR_APP_LOAD', `app ${name} ${why}; ${SHAPES_HELP}`);
  };
  const o = app as Record<string, unknown>;
  if (iface !== 'fetch') {
    if (isObject(app) && typeof o.callback === 'function') return { shape: 'koa', listener: (o.callback as () => RequestListener).call(app) };
    if ((isObject(app) || typeof app === 'function') && typeof o.routing === 'function' && typeof o.ready === 'function') {
      return { shape: 'fastify', listener: o.routing as RequestListener };
    }
  }
  if (iface !== 'node' && isObject(app) && typeof o.fetch === 'function') return { shape: 'fetch-object', handler: (o.fetch as FetchHandler).bind(app) };
  if (typeof app === 'function') {
    if (iface === 'node' || (iface === 'auto' && app.length >= 2)) return { shape: 'node', listener: app as RequestListener };
    return { shape: 'fetch', handler: app as FetchHandler };
  }
  return wrong(iface === 'auto' ? `is ${kind}, not an app` : `is ${kind}, not a ${iface === 'node' ? 'Node request listener' : 'fetch handler'} (--interface ${iface})`);
}

/** Load the app and adapt it to a Node request listener. */
export async function loadApp(spec: string, settings: Pick<Settings, 'chdir' | 'factory' | 'interface' | 'root_path'>, opts: { onError: (err: unknown) => void; lightResponse?: boolean }): Promise<LoadedApp> {
  const app = parseAppSpec(spec);
  const file = resolveModule(app.module, settings.chdir ?? process.cwd());
  const mod = await importModule(file, `app module ${file}`);
  let value = lookupAttr(mod, app, file);
  const name = `${JSON.stringify(spec)}`;
  if (app.call || settings.factory) {
    if (typeof value !== 'function') throw new TsgunError('TSGUN_ERR_APP_LOAD', `app ${name} is ${typeof value}, not a factory function; drop "()" and --factory, or export a function that returns the app`);
    try {
      value = await (value as () => unknown)();
    } catch (err) {
      throw new TsgunError('TSGUN_ERR_APP_LOAD', `app factory ${name} threw: ${describeError(err)}`, { cause: err });
    }
  }
  const detected = detect(value, settings.interface, name);
  if (detected.shape === 'fastify') {
    try {
      await (value as { ready(): Promise<unknown> }).ready();
    } catch (err) {
      throw new TsgunError('TSGUN_ERR_APP_LOAD', `Fastify app ${name} failed in ready(): ${describeError(err)}`, { cause: err });
    }
  }
  if ('listener' in detected) return { shape: detected.shape, listener: detected.listener, file };
  // The fetch adapter, and undici's Request and Response behind it, load only for fetch handlers.
  const [{ fetchListener }, { installLightResponse }] = await Promise.all([import('./fetch.js'), import('./response.js')]);
  if (opts.lightResponse) installLightResponse();
  return { shape: detected.shape, listener: fetchListener(detected.handler, { rootPath: settings.root_path.replace(/\/$/, ''), onError: opts.onError }), file };
}
