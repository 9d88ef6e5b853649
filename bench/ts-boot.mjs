// What "one worker warms the compile cache" costs and saves: a TypeScript app's start, from
// spawning tsgun to `Ready: N workers serving`, and the CPU the master, the workers and their
// esbuild children spent by then, on a cold tsx cache (a fresh TMPDIR per run) and on a warm one.
// Cases alternate run by run; medians of --runs.
//
//   node bench/ts-boot.mjs [--roots DIR,DIR] [--workers 4] [--runs 7] [--modules 1,200]
//
// --roots: built tsgun checkouts to compare (default: this one), e.g. one built before the change.
// --modules: the app's size: 1 is bench/apps/hello.ts; more is a generated app of that many
// TypeScript modules (each a few interfaces, a class and functions) imported by one entry.
import { spawn } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const args = process.argv.slice(2);
const opt = (name, fallback) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : fallback;
};
const roots = opt('roots', ROOT)
  .split(',')
  .map((r) => path.resolve(r));
const workers = Number(opt('workers', '4'));
const runs = Number(opt('runs', '7'));
const sizes = opt('modules', '1,200').split(',').map(Number);
const TICK = 100; // clock ticks per second (getconf CLK_TCK)

const scratch = mkdtempSync(path.join(os.tmpdir(), 'tsgun-ts-boot-'));
process.on('exit', () => rmSync(scratch, { recursive: true, force: true }));

/** An app of `n` TypeScript modules; 1 is bench/apps/hello.ts. Returns its APP argument and directory. */
function makeApp(n) {
  const dir = path.join(scratch, `app-${n}`);
  mkdirSync(dir, { recursive: true });
  if (n === 1) {
    cpSync(path.join(ROOT, 'bench/apps/hello.ts'), path.join(dir, 'main.ts'));
  } else {
    const mods = Array.from({ length: n }, (_, i) => i);
    for (const i of mods) {
      writeFileSync(
        path.join(dir, `m${i}.ts`),
        `export interface In${i} { id: number; name: string; tags: readonly string[] }\n` +
          `export type Out${i} = { ok: boolean; value: In${i} | null };\n` +
          `export enum Kind${i} { A = 'a', B = 'b' }\n` +
          `export class Store${i}<T extends In${i}> {\n  private readonly items = new Map<number, T>();\n` +
          `  put(item: T): Out${i} { this.items.set(item.id, item); return { ok: true, value: item }; }\n` +
          `  get(id: number): Out${i} { const v = this.items.get(id) ?? null; return { ok: v !== null, value: v }; }\n}\n` +
          `export function f${i}(x: number, kind: Kind${i} = Kind${i}.A): string { return \`\${kind}:\${x * ${i + 1}}\`; }\n`,
      );
    }
    writeFileSync(
      path.join(dir, 'main.ts'),
      mods.map((i) => `import { f${i} } from './m${i}.js';`).join('\n') +
        `\nimport type { IncomingMessage, ServerResponse } from 'node:http';\n` +
        `const all: Array<(x: number) => string> = [${mods.map((i) => `f${i}`).join(', ')}];\n` +
        `export default function app(_req: IncomingMessage, res: ServerResponse): void { res.end(String(all.length)); }\n`,
    );
  }
  writeFileSync(path.join(dir, 'package.json'), '{ "type": "module" }\n');
  return dir;
}

function cpuSeconds(pid) {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    // utime, stime, cutime, cstime: fields 14-17 (the reaped children's too).
    return (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / TICK;
  } catch {
    return 0;
  }
}

function children(pid) {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

const tree = (pid) => [pid, ...children(pid).flatMap(tree)];

/** One start: seconds to `Ready:`, and the CPU seconds spent by then (a second later, once esbuild's service stopped). */
function start(root, dir, tmp) {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const p = spawn(
      process.execPath,
      [path.join(root, 'bin/tsgun'), '-w', String(workers), '-b', '127.0.0.1:0', 'main:default'],
      {
        cwd: dir,
        env: { ...process.env, TMPDIR: tmp, TSGUN_CMD_ARGS: '', WEB_CONCURRENCY: '', PORT: '' },
        stdio: ['ignore', 'ignore', 'pipe'],
      },
    );
    let out = '';
    let ready = null;
    const timer = setTimeout(() => {
      p.kill('SIGKILL');
      reject(new Error(`no Ready line in 120 s:\n${out}`));
    }, 120_000);
    p.stderr.setEncoding('utf8').on('data', (chunk) => {
      out += chunk;
      if (ready === null && /Ready: \d+ workers serving/.test(out)) {
        ready = Number(process.hrtime.bigint() - t0) / 1e9;
        setTimeout(() => {
          const cpu = tree(p.pid).reduce((sum, pid) => sum + cpuSeconds(pid), 0);
          p.kill('SIGTERM');
          p.once('exit', () => {
            clearTimeout(timer);
            resolve({ ready, cpu });
          });
        }, 1000);
      }
    });
    p.once('exit', (code) => {
      if (ready === null) {
        clearTimeout(timer);
        reject(new Error(`tsgun exited (${code}) before Ready:\n${out}`));
      }
    });
  });
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

console.log(`tsgun -w ${workers}, ${runs} runs per case, ${os.cpus().length} CPUs, Node ${process.version}\n`);
console.log('| app | cache | tsgun | Ready (median) | all runs | CPU by Ready + 1 s (median) |');
console.log('|---|---|---|---:|---|---:|');
for (const n of sizes) {
  const dir = makeApp(n);
  const warm = mkdtempSync(path.join(scratch, 'warm-'));
  await start(roots[0], dir, warm);
  for (const cache of ['cold', 'warm']) {
    const results = roots.map(() => []);
    for (let r = 0; r < runs; r++) {
      for (let i = 0; i < roots.length; i++) {
        const tmp = cache === 'warm' ? warm : mkdtempSync(path.join(scratch, 'cold-'));
        results[i].push(
          await start(roots[i], dir, tmp).catch((err) => {
            // Another tsgun user on the machine may stop it (pkill): one more try.
            console.error(`retrying once: ${err.message.split('\n')[0]}`);
            return start(roots[i], dir, cache === 'warm' ? warm : mkdtempSync(path.join(scratch, 'cold-')));
          }),
        );
        if (cache === 'cold') rmSync(tmp, { recursive: true, force: true });
      }
    }
    for (let i = 0; i < roots.length; i++) {
      const ready = results[i].map((x) => x.ready);
      const cpu = results[i].map((x) => x.cpu);
      const app = n === 1 ? 'hello.ts' : `${n} modules`;
      console.log(
        `| ${app} | ${cache} | ${roots[i]} | ${median(ready).toFixed(3)} s | ${ready.map((x) => x.toFixed(2)).join(' / ')} | ${median(cpu).toFixed(2)} s |`,
      );
    }
  }
}
