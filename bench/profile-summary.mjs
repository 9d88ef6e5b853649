#!/usr/bin/env node
// Summarize V8 .cpuprofile files (from `node --cpu-prof`): where the samples went, by
// category (tsgun's worker code, the app, Hono, undici's Request/Response/Headers, Node's
// internals, GC, ...) and by function (self time), and, for tsgun's own functions, self
// and inclusive time, mapped back to src/*.ts through dist/*.js.map.
//
//   node bench/profile-summary.mjs [--top 25] [--from US --to US] FILE.cpuprofile...
//
// Shares are of the non-idle samples (idle = the event loop waiting in epoll). --from and
// --to (CLOCK_MONOTONIC microseconds, the clock the profile's timestamps use) keep only
// the samples taken in that window: bench/run.mjs passes the wrk run's start and end so
// that booting the worker does not count.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = path.dirname(path.dirname(fileURLToPath(import.meta.url)));

// ---- source maps (dist/*.js -> src/*.ts) ------------------------------------------------

const B64 = Object.fromEntries(
  [...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'].map((c, i) => [c, i]),
);

function decodeVlq(segment) {
  const out = [];
  let value = 0;
  let shift = 0;
  for (const ch of segment) {
    const digit = B64[ch];
    value += (digit & 31) << shift;
    if (digit & 32) {
      shift += 5;
    } else {
      out.push(value & 1 ? -(value >>> 1) : value >>> 1);
      value = 0;
      shift = 0;
    }
  }
  return out;
}

const mapCache = new Map();
/** For a generated file, the source line of each generated line (first mapping on it), or null. */
function sourceLines(jsFile) {
  if (mapCache.has(jsFile)) return mapCache.get(jsFile);
  let result = null;
  try {
    const map = JSON.parse(readFileSync(`${jsFile}.map`, 'utf8'));
    const lines = [];
    let src = 0;
    let srcLine = 0;
    for (const line of map.mappings.split(';')) {
      let first = null;
      for (const seg of line.split(',')) {
        if (!seg) continue;
        const f = decodeVlq(seg);
        if (f.length >= 4) {
          src += f[1];
          srcLine += f[2];
          if (first === null) first = { source: src, line: srcLine };
        }
      }
      lines.push(first);
    }
    const dir = path.dirname(jsFile);
    // Relative to the directory holding dist/ (the repository, or bench/run.mjs's copy of it).
    const at = jsFile.lastIndexOf(`${path.sep}dist${path.sep}`);
    const base = at >= 0 ? jsFile.slice(0, at) : ROOT;
    result = {
      lines,
      sources: map.sources.map((s) => path.relative(base, path.resolve(dir, map.sourceRoot ?? '', s))),
    };
  } catch {
    result = null;
  }
  mapCache.set(jsFile, result);
  return result;
}

/** `src/worker/fetch.ts:27` for a frame in dist/, else the frame's own file:line. */
function location(url, lineNumber) {
  if (!url) return '';
  let file = url.startsWith('file://') ? fileURLToPath(url) : url;
  if (file.startsWith(ROOT + path.sep)) {
    const m = sourceLines(file);
    const hit = m?.lines[lineNumber];
    if (hit) return `${m.sources[hit.source]}:${hit.line + 1}`;
    file = path.relative(ROOT, file);
  }
  return `${file}:${lineNumber + 1}`;
}

// ---- categories ---------------------------------------------------------------------------

/** tsgun's compiled code: dist/ of the repository, or bench/run.mjs's copy of it in node_modules/.cache/tsgun-bench/. */
const isTsgunDist = (u) =>
  /\/dist\/.+\.js$/.test(u) && (!u.includes('/node_modules/') || u.includes('/node_modules/.cache/tsgun-bench/dist/'));
const isTsgunWorker = (u) => isTsgunDist(u) && /\/dist\/worker\/[^/]+\.js$/.test(u);

export const CATEGORIES = [
  ['tsgun worker (dist/worker/*.js)', isTsgunWorker],
  ['tsgun other (dist/*.js)', isTsgunDist],
  ['app (bench/apps)', (u) => u.includes('/bench/apps/')],
  ['hono', (u) => /\/node_modules\/hono\//.test(u)],
  ['@hono/node-server', (u) => u.includes('/node_modules/@hono/node-server/')],
  ['srvx', (u) => u.includes('/node_modules/srvx/')],
  ['pino', (u) => u.includes('/node_modules/pino') || u.includes('/node_modules/sonic-boom/')],
  ['other packages', (u) => u.includes('/node_modules/')],
  ['undici (Request/Response/Headers)', (u) => u.startsWith('node:internal/deps/undici')],
  ['web streams', (u) => u.startsWith('node:internal/webstreams')],
  ['node:http', (u) => /^node:(_http|internal\/http|http$)/.test(u)],
  [
    'node:stream / net',
    (u) => /^node:(internal\/streams|stream|net|internal\/stream_base_commons|internal\/net)/.test(u),
  ],
  ['node internals (other)', (u) => u.startsWith('node:')],
];

function categorize(node) {
  const { url, functionName } = node.callFrame;
  if (!url) {
    if (functionName === '(garbage collector)') return 'GC';
    if (functionName === '(program)') return '(program): native, outside JS';
    if (functionName === '(idle)') return '(idle)';
    return 'V8 builtins / native';
  }
  for (const [name, test] of CATEGORIES) if (test(url)) return name;
  return 'other JS';
}

// ---- summary ------------------------------------------------------------------------------

/**
 * Summarize one profile. Returns totals, categories, self time by function, and tsgun's
 * functions with self and inclusive counts. `window` = [fromUs, toUs] on the profile clock.
 */
const isAppCode = (u) =>
  u.includes('/bench/apps/') ||
  (u.includes('/node_modules/') && !isTsgunDist(u) && !/\/node_modules\/(pino|sonic-boom|thread-stream)/.test(u));

export function summarize(profile, { window = null, ownCode = isTsgunWorker, appCode = isAppCode } = {}) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const key = (n) => {
    const cf = n.callFrame;
    return `${cf.functionName || '(anonymous)'}\t${location(cf.url, cf.lineNumber)}\t${cf.url}`;
  };

  const self = new Map();
  const inclusive = new Map();
  const categories = new Map();
  // Attributed: samples whose innermost frame that is either tsgun's or the app's is tsgun's,
  // i.e. time spent in tsgun's functions and in what they call (Node, undici), not in the app.
  const attributed = new Map();
  let attributedTotal = 0;
  let total = 0;
  let idle = 0;
  let all = 0;
  let t = profile.startTime;
  for (let i = 0; i < profile.samples.length; i++) {
    t += profile.timeDeltas?.[i] ?? 0;
    if (window && (t < window[0] || t > window[1])) continue;
    all++;
    const node = byId.get(profile.samples[i]);
    if (node.callFrame.functionName === '(idle)') {
      idle++;
      continue;
    }
    total++;
    const k = key(node);
    self.set(k, (self.get(k) ?? 0) + 1);
    const cat = categorize(node);
    categories.set(cat, (categories.get(cat) ?? 0) + 1);
    // Inclusive: every distinct tsgun function on the stack counts this sample once.
    const seen = new Set();
    let decided = false;
    for (let id = node.id; id !== undefined; id = parent.get(id)) {
      const n = byId.get(id);
      if (!decided && appCode(n.callFrame.url)) decided = true;
      if (!ownCode(n.callFrame.url)) continue;
      if (!decided) {
        decided = true;
        const fk = key(n);
        const a = attributed.get(fk) ?? { n: 0, leaves: new Map() };
        a.n++;
        a.leaves.set(k, (a.leaves.get(k) ?? 0) + 1);
        attributed.set(fk, a);
        attributedTotal++;
      }
      const fk = key(n);
      if (seen.has(fk)) continue;
      seen.add(fk);
      inclusive.set(fk, (inclusive.get(fk) ?? 0) + 1);
    }
  }
  const split = (k) => {
    const [fn, loc, url] = k.split('\t');
    return { fn, loc, url };
  };
  const own = [...new Set([...inclusive.keys()])]
    .map((k) => ({ ...split(k), self: self.get(k) ?? 0, inclusive: inclusive.get(k) }))
    .sort((a, b) => b.inclusive - a.inclusive);
  return {
    samples: all,
    idle,
    total,
    categories: [...categories].map(([name, n]) => ({ name, n })).sort((a, b) => b.n - a.n),
    functions: [...self]
      .map(([k, n]) => ({
        ...split(k),
        n,
        category: categorize({ callFrame: { url: split(k).url, functionName: split(k).fn } }),
      }))
      .sort((a, b) => b.n - a.n),
    own,
    ownSelf: own.reduce((s, f) => s + f.self, 0),
    attributedTotal,
    attributed: [...attributed]
      .map(([k, a]) => ({
        ...split(k),
        n: a.n,
        leaves: [...a.leaves].map(([lk, n]) => ({ ...split(lk), n })).sort((x, y) => y.n - x.n),
      }))
      .sort((x, y) => y.n - x.n),
  };
}

const pct = (n, d) => (d ? `${((100 * n) / d).toFixed(1)} %` : '—');
const esc = (s) => String(s).replace(/\|/g, '\\|');

/** Markdown for one summary. */
export function render(sum, { top = 20, ownTop = 15 } = {}) {
  const out = [];
  out.push(
    `${sum.total.toLocaleString('en-US')} non-idle samples (of ${sum.samples.toLocaleString('en-US')}; ${pct(sum.idle, sum.samples)} idle). tsgun's worker code: self time **${pct(sum.ownSelf, sum.total)}**; attributed to it (its own code plus the Node/undici calls it makes, not the app's) **${pct(sum.attributedTotal, sum.total)}**.`,
  );
  out.push('');
  out.push('| category (self time) | samples | share |');
  out.push('|---|---:|---:|');
  for (const c of sum.categories) out.push(`| ${esc(c.name)} | ${c.n} | ${pct(c.n, sum.total)} |`);
  out.push('');
  out.push(`Top ${top} functions by self time:`);
  out.push('');
  out.push('| function | where | category | samples | share |');
  out.push('|---|---|---|---:|---:|');
  for (const f of sum.functions.slice(0, top))
    out.push(`| \`${esc(f.fn)}\` | ${esc(f.loc || '—')} | ${esc(f.category)} | ${f.n} | ${pct(f.n, sum.total)} |`);
  out.push('');
  out.push(`tsgun's worker functions (src/worker/*.ts), inclusive = samples with the function anywhere on the stack:`);
  out.push('');
  out.push('| function | where | self | self share | inclusive | inclusive share |');
  out.push('|---|---|---:|---:|---:|---:|');
  for (const f of sum.own.slice(0, ownTop))
    out.push(
      `| \`${esc(f.fn)}\` | ${esc(f.loc)} | ${f.self} | ${pct(f.self, sum.total)} | ${f.inclusive} | ${pct(f.inclusive, sum.total)} |`,
    );
  out.push('');
  out.push(
    "Attributed to tsgun (innermost frame that is tsgun's or the app's is tsgun's), by tsgun function, with the functions the samples were in:",
  );
  out.push('');
  out.push('| tsgun function | where | share | where those samples were (top 6) |');
  out.push('|---|---|---:|---|');
  for (const a of sum.attributed.slice(0, ownTop)) {
    out.push(
      `| \`${esc(a.fn)}\` | ${esc(a.loc)} | ${pct(a.n, sum.total)} | ${a.leaves
        .slice(0, 6)
        .map((l) => `${esc(l.fn)} ${pct(l.n, sum.total)}`)
        .join(', ')} |`,
    );
  }
  return out.join('\n');
}

// ---- CLI ----------------------------------------------------------------------------------

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      top: { type: 'string', default: '25' },
      from: { type: 'string' },
      to: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help || positionals.length === 0) {
    process.stdout.write(
      readFileSync(fileURLToPath(import.meta.url), 'utf8')
        .split('\n')
        .slice(1, 12)
        .map((l) => l.replace(/^\/\/ ?/, ''))
        .join('\n') + '\n',
    );
    process.exit(values.help ? 0 : 2);
  }
  const window = values.from || values.to ? [Number(values.from ?? 0), Number(values.to ?? Infinity)] : null;
  for (const file of positionals) {
    if (!existsSync(file)) {
      process.stderr.write(`Error: ${file} does not exist\n`);
      process.exitCode = 2;
      continue;
    }
    const sum = summarize(JSON.parse(readFileSync(file, 'utf8')), { window });
    process.stdout.write(`## ${file}\n\n${render(sum, { top: Number(values.top) })}\n\n`);
  }
}
