/** Parsing of bind addresses (DESIGN.md, "Bind addresses"). Pure: no sockets here. */
import { isIP } from 'node:net';

export type BindSpec =
  | { kind: 'tcp'; host: string; port: number; raw: string }
  | { kind: 'unix'; path: string; raw: string }
  | { kind: 'fd'; fd: number; raw: string };

const FORMS = 'HOST:PORT, :PORT, [IPV6]:PORT, tcp://HOST:PORT, unix:PATH or fd://N';

function bad(raw: string, why: string): never {
  throw new Error(`cannot parse bind address ${JSON.stringify(raw)}: ${why}; expected ${FORMS}`);
}

function parsePort(raw: string, port: string): number {
  if (!/^\d+$/.test(port)) bad(raw, `port ${JSON.stringify(port)} is not a number`);
  const n = Number(port);
  if (n > 65535) bad(raw, `port ${n} is above 65535`);
  return n;
}

export function parseBind(raw: string): BindSpec {
  const spec = raw.trim();
  if (spec === '') bad(raw, 'it is empty');
  if (spec.startsWith('unix:')) {
    const path = spec.slice('unix:'.length).replace(/^\/\/(?=\/)/, '');
    if (path === '') bad(raw, 'the socket path is empty');
    return { kind: 'unix', path, raw: spec };
  }
  if (spec.startsWith('fd://')) {
    const fd = spec.slice('fd://'.length);
    if (!/^\d+$/.test(fd)) bad(raw, `${JSON.stringify(fd)} is not a file descriptor number`);
    return { kind: 'fd', fd: Number(fd), raw: spec };
  }
  let rest = spec.startsWith('tcp://') ? spec.slice('tcp://'.length) : spec;
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(rest)) bad(raw, `unknown scheme ${JSON.stringify(rest.split(':')[0])}`);
  rest = rest.replace(/\/$/, '');
  if (rest.startsWith('[')) {
    const end = rest.indexOf(']');
    if (end < 0) bad(raw, 'missing "]" after the IPv6 address');
    const host = rest.slice(1, end);
    if (isIP(host) !== 6) bad(raw, `${JSON.stringify(host)} is not an IPv6 address`);
    const after = rest.slice(end + 1);
    if (!after.startsWith(':')) bad(raw, 'missing ":PORT" after the IPv6 address');
    return { kind: 'tcp', host, port: parsePort(raw, after.slice(1)), raw: spec };
  }
  const colon = rest.lastIndexOf(':');
  if (colon < 0) {
    // Gunicorn accepts a bare host and uses port 8000.
    if (!/^[A-Za-z0-9.-]+$/.test(rest)) bad(raw, 'missing ":PORT"');
    return { kind: 'tcp', host: rest, port: 8000, raw: spec };
  }
  const host = rest.slice(0, colon);
  if (host.includes(':')) bad(raw, 'an IPv6 address must be written in brackets, as [::1]:8000');
  if (host !== '' && !/^[A-Za-z0-9.-]+$/.test(host)) bad(raw, `${JSON.stringify(host)} is not a host name or address`);
  return { kind: 'tcp', host: host === '' ? '0.0.0.0' : host, port: parsePort(raw, rest.slice(colon + 1)), raw: spec };
}
