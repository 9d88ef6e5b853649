/**
 * Where a blocked worker's stack frames are in the code its developer wrote. The inspector
 * gives each paused frame its position in the script V8 runs: for a TypeScript app that is
 * tsx's compiled output (all on one line), for a built app its bundle. Mapped through the
 * script's source map (the `sourceMappingURL` comment at its end: inline, as tsx writes it, or
 * a `.map` file beside it, as tsc and bundlers do), the WORKER TIMEOUT line names `app.ts:18:3`
 * rather than `app.ts:2:855`, as Node's own stack traces do with `--enable-source-maps`.
 *
 * Used by the watchdog thread (watchdog-thread.cts) while the main thread is paused, hence
 * CommonJS and synchronous reads: nothing here waits on the main thread's event loop.
 */
import fs = require('node:fs');
import nodeModule = require('node:module');
import nodeUrl = require('node:url');

/** A position in a script or a source: 0-based line and column, as the inspector gives them. */
interface Position {
  url: string;
  lineNumber: number;
  columnNumber: number;
}

/** A map file larger than this is not read: a stack must not wait on (or hold) a huge file. */
const MAX_MAP_FILE_BYTES = 64 * 1024 * 1024;

interface Payload {
  sources?: string[];
  sourceRoot?: string;
}

/** What the script names after its last `sourceMappingURL=`, or null. */
function sourceMappingUrl(source: string): string | null {
  const at = source.lastIndexOf('sourceMappingURL=');
  if (at < 4) return null;
  const lead = source.slice(at - 4, at);
  if (lead !== '//# ' && lead !== '//@ ') return null;
  const value = /^[^\s'"]+/.exec(source.slice(at + 'sourceMappingURL='.length));
  return value ? value[0] : null;
}

/** A script URL as the inspector reports it (a file: URL for ES modules, a path for CommonJS) as a URL. */
function asUrl(scriptUrl: string): URL | null {
  try {
    return scriptUrl.startsWith('/') ? nodeUrl.pathToFileURL(scriptUrl) : new URL(scriptUrl);
  } catch {
    return null;
  }
}

/** A data: URL's JSON, or a file's, read with a size limit; null when it cannot be read. */
function readPayload(ref: string, base: URL): { payload: Payload; at: URL } | null {
  try {
    const data = /^data:application\/json(;[^,]*)?,/.exec(ref);
    if (data) {
      const body = ref.slice(data[0].length);
      const text = data[1]?.includes(';base64')
        ? Buffer.from(body, 'base64').toString('utf8')
        : decodeURIComponent(body);
      return { payload: JSON.parse(text) as Payload, at: base };
    }
    const at = new URL(ref, base);
    if (at.protocol !== 'file:') return null;
    const file = nodeUrl.fileURLToPath(at);
    if (fs.statSync(file).size > MAX_MAP_FILE_BYTES) return null;
    return { payload: JSON.parse(fs.readFileSync(file, 'utf8')) as Payload, at };
  } catch {
    return null;
  }
}

/** A script's source map, ready to look positions up in. */
class ScriptMap {
  private constructor(
    private readonly map: nodeModule.SourceMap,
    /** Where the map's relative sources are resolved from: its sourceRoot against its own URL. */
    private readonly root: URL,
    /** Report sources as paths (the script was reported as one: CommonJS) rather than file: URLs. */
    private readonly asPath: boolean,
  ) {}

  /** The source map of a script (its URL as the inspector reports it, and its source), or null when it has none that can be read. */
  static of(scriptUrl: string, source: string): ScriptMap | null {
    const ref = sourceMappingUrl(source);
    const base = asUrl(scriptUrl);
    if (!ref || !base) return null;
    const read = readPayload(ref, base);
    if (!read || !Array.isArray(read.payload.sources)) return null;
    try {
      const map = new nodeModule.SourceMap(read.payload as nodeModule.SourceMapPayload);
      const sourceRoot = read.payload.sourceRoot ? read.payload.sourceRoot.replace(/\/?$/, '/') : '';
      return new ScriptMap(map, new URL(sourceRoot, read.at), scriptUrl.startsWith('/'));
    } catch {
      return null;
    }
  }

  /** Where a position of the script comes from, or null when the map says nothing of it. */
  original(lineNumber: number, columnNumber: number): Position | null {
    const entry = this.map.findEntry(lineNumber, columnNumber) as Partial<nodeModule.SourceMapping>;
    if (
      typeof entry.originalSource !== 'string' ||
      typeof entry.originalLine !== 'number' ||
      typeof entry.originalColumn !== 'number'
    )
      return null;
    let url: string;
    try {
      const resolved = new URL(entry.originalSource, this.root);
      url = this.asPath && resolved.protocol === 'file:' ? nodeUrl.fileURLToPath(resolved) : resolved.href;
    } catch {
      url = entry.originalSource;
    }
    return { url, lineNumber: entry.originalLine, columnNumber: entry.originalColumn };
  }
}

const sourceMaps = { ScriptMap, sourceMappingUrl };
export = sourceMaps;
