/**
 * A lighter `Response` for fetch-handler workers. `new Response('text', init)` in undici
 * builds a transferable ReadableStream for every body, which costs more than most
 * handlers do in all. In a worker serving a fetch handler, the global `Response` becomes
 * this class: `instanceof Response` holds, a string or bytes body is kept as it is, and the
 * fetch adapter writes it to the socket directly. Anything else (a stream body, reading the
 * body, clone()) makes the real undici Response on the spot and delegates to it.
 * @hono/node-server does the same by default.
 */

const NativeResponse = globalThis.Response;

const kBody = Symbol('tsgun.body');
const kInit = Symbol('tsgun.init');
const kHeaders = Symbol('tsgun.headers');
const kReal = Symbol('tsgun.response');

type Plain = string | Uint8Array | null;

interface Light {
  [kBody]: Plain;
  [kInit]: ResponseInit | undefined;
  [kHeaders]?: Headers;
  [kReal]?: Response;
}

function isPlain(body: unknown): body is Plain {
  return body === null || body === undefined || typeof body === 'string' || body instanceof Uint8Array;
}

function real(r: Light): Response {
  if (!r[kReal]) {
    const init = r[kInit];
    r[kReal] = new NativeResponse(
      r[kBody],
      r[kHeaders] ? { status: init?.status, statusText: init?.statusText, headers: r[kHeaders] } : init,
    );
  }
  return r[kReal];
}

/** The parts the adapter needs, if the response is still light (its body not yet a stream). */
export function lightParts(
  response: Response,
): { status: number; statusText: string; headers: ResponseInit['headers']; body: Plain } | null {
  const r = response as unknown as Light;
  if (!(kBody in r) || r[kReal]) return null;
  const init = r[kInit];
  return {
    status: init?.status ?? 200,
    statusText: init?.statusText ?? '',
    headers: r[kHeaders] ?? init?.headers,
    body: r[kBody] ?? null,
  };
}

/** An ArrayBuffer or any typed array/DataView body, as a byte view (a string or Uint8Array is kept as it is). */
function asBytes(body: unknown): unknown {
  if (body instanceof ArrayBuffer) return new Uint8Array(body);
  if (ArrayBuffer.isView(body) && !(body instanceof Uint8Array))
    return new Uint8Array(body.buffer, body.byteOffset, body.byteLength);
  return body;
}

export const LightResponse = function Response(
  this: Light,
  given?: ConstructorParameters<typeof globalThis.Response>[0],
  init?: ResponseInit,
) {
  const body = asBytes(given) as ConstructorParameters<typeof globalThis.Response>[0];
  const status = init?.status;
  // A null-body status (204, 205, 304) with a body is undici's TypeError to throw.
  const nullBodyStatus = status === 204 || status === 205 || status === 304;
  if (
    isPlain(body) &&
    (status === undefined || (Number.isInteger(status) && status >= 200 && status <= 599)) &&
    !(nullBodyStatus && body !== null && body !== undefined)
  ) {
    this[kBody] = body ?? null;
    this[kInit] = init;
  } else {
    // Not light: let undici build it now, so it also throws what undici throws.
    (this as Light)[kReal] = new NativeResponse(body, init);
    this[kBody] = null;
  }
} as unknown as typeof globalThis.Response;

(() => {
  const proto = Object.create(NativeResponse.prototype) as Record<PropertyKey, unknown>;
  for (const key of Reflect.ownKeys(NativeResponse.prototype)) {
    if (key === 'constructor') continue;
    const d = Object.getOwnPropertyDescriptor(NativeResponse.prototype, key)!;
    if (d.get)
      Object.defineProperty(proto, key, {
        get: function (this: Light) {
          return (real(this) as unknown as Record<PropertyKey, unknown>)[key];
        },
        configurable: true,
      });
    else if (typeof d.value === 'function')
      Object.defineProperty(proto, key, {
        value: function (this: Light, ...args: unknown[]) {
          return (real(this) as unknown as Record<PropertyKey, (...a: unknown[]) => unknown>)[key]!(...args);
        },
        configurable: true,
        writable: true,
      });
  }
  Object.defineProperties(proto, {
    constructor: { value: LightResponse, writable: true, configurable: true },
    status: {
      get(this: Light) {
        return this[kReal]?.status ?? this[kInit]?.status ?? 200;
      },
    },
    ok: {
      get(this: Light) {
        const s = this[kReal]?.status ?? this[kInit]?.status ?? 200;
        return s >= 200 && s < 300;
      },
    },
    statusText: {
      get(this: Light) {
        return this[kReal]?.statusText ?? this[kInit]?.statusText ?? '';
      },
    },
    // Middleware (Hono's among them) sets headers on a response after it is made.
    headers: {
      get(this: Light) {
        if (this[kReal]) return this[kReal].headers;
        if (!this[kHeaders]) {
          const h = new Headers(this[kInit]?.headers);
          const body = this[kBody];
          if (typeof body === 'string' && !h.has('content-type')) h.set('content-type', 'text/plain;charset=UTF-8');
          this[kHeaders] = h;
        }
        return this[kHeaders];
      },
    },
  });
  LightResponse.prototype = proto as unknown as Response;
  Object.setPrototypeOf(LightResponse, NativeResponse);
  // Static helpers: json() stays light; error() and redirect() are rare, so native.
  Object.defineProperty(LightResponse, 'json', {
    value: (data: unknown, init?: ResponseInit) => {
      const headers = new Headers(init?.headers);
      if (!headers.has('content-type')) headers.set('content-type', 'application/json');
      return new LightResponse(JSON.stringify(data), { ...init, headers });
    },
    configurable: true,
    writable: true,
  });
})();

let installed = false;

/** Make `Response` in this worker the light one (fetch-handler apps only). */
export function installLightResponse(): void {
  if (installed) return;
  installed = true;
  Object.defineProperty(globalThis, 'Response', { value: LightResponse, writable: true, configurable: true });
}
