/**
 * `--reload`: watch the app's files with chokidar and, after a quiet `reload_delay`, ask
 * the arbiter for a reload. Excluded directories (node_modules, .git) are not even
 * traversed, so a large tree costs nothing while idle.
 */
import { accessSync, constants, statSync } from 'node:fs';
import path from 'node:path';
import type { FSWatcher } from 'chokidar';
import type { Settings } from '../config/settings.js';
import { TsgunError } from '../errors.js';
import type { Logger } from '../log.js';

/** Translate a glob (`*`, `**`, `?`, `{a,b}`) to a regular expression over `/`-separated paths. */
export function globToRegExp(glob: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*') {
      if (glob[i + 1] === '*') {
        // `**/` matches any number of directories, `**` at the end anything.
        const slash = glob[i + 2] === '/';
        re += slash ? '(?:.*/)?' : '.*';
        i += slash ? 2 : 1;
      } else {
        re += '[^/]*';
      }
    } else if (c === '?') re += '[^/]';
    else if (c === '{') {
      const end = glob.indexOf('}', i);
      if (end < 0) re += '\\{';
      else {
        re += `(?:${glob
          .slice(i + 1, end)
          .split(',')
          .map((p) => p.replace(/[.+^${}()|[\]\\*?]/g, '\\$&'))
          .join('|')})`;
        i = end;
      }
    } else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

interface Patterns {
  /** Patterns without a slash, tested against one path segment. */
  segment: RegExp[];
  /** Patterns with a slash, tested against the path and each of its tails. */
  path: RegExp[];
}

export function compilePatterns(globs: readonly string[]): Patterns {
  return {
    segment: globs.filter((g) => !g.includes('/')).map(globToRegExp),
    path: globs.filter((g) => g.includes('/')).map(globToRegExp),
  };
}

/**
 * Does a path relative to a watched dir match? Slash-free patterns (`*.ts`, `.*`,
 * `node_modules`) test the base name, or with `anySegment` every segment, so that an
 * excluded directory excludes what is inside it. Patterns with a slash
 * (`node_modules/**`) test the path and each tail of it, so they match at any depth.
 */
export function matches(rel: string, p: Patterns, anySegment: boolean): boolean {
  const parts = rel.split('/');
  const segments = anySegment ? parts : parts.slice(-1);
  if (p.segment.some((re) => segments.some((part) => re.test(part)))) return true;
  for (let i = 0; i < parts.length; i++) {
    const tail = parts.slice(i).join('/');
    if (p.path.some((re) => re.test(tail) || re.test(`${tail}/`))) return true;
  }
  return false;
}

export interface ReloaderOptions {
  settings: Pick<Settings, 'reload_dirs' | 'reload_include' | 'reload_exclude' | 'reload_delay' | 'reload_extra_files'>;
  /** The app module's directory: watched when `reload_dirs` is empty. */
  appDir: string;
  log: Logger;
  onChange: (file: string) => void;
}

export class Reloader {
  private readonly watcher: FSWatcher;
  private timer: NodeJS.Timeout | null = null;
  private changed: string[] = [];

  private constructor(watcher: FSWatcher) {
    this.watcher = watcher;
  }

  /** The directories to watch, checked: each must exist and be readable. */
  static dirs(settings: ReloaderOptions['settings'], appDir: string): string[] {
    const dirs = (settings.reload_dirs.length ? settings.reload_dirs : [appDir]).map((d) => path.resolve(d));
    for (const dir of dirs) {
      try {
        if (!statSync(dir).isDirectory()) throw Object.assign(new Error('not a directory'), { code: 'ENOTDIR' });
        accessSync(dir, constants.R_OK | constants.X_OK);
      } catch (err) {
        throw new TsgunError(
          'TSGUN_ERR_CONFIG_VALUE',
          `reload_dirs: cannot watch ${dir}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}; check --reload-dir`,
        );
      }
    }
    return dirs;
  }

  static async start(opts: ReloaderOptions): Promise<Reloader> {
    const { settings } = opts;
    const dirs = Reloader.dirs(settings, opts.appDir);
    const extra = settings.reload_extra_files.map((f) => path.resolve(f));
    const include = compilePatterns(settings.reload_include);
    const exclude = compilePatterns(settings.reload_exclude);
    const relative = (file: string): string | null => {
      for (const dir of dirs) {
        const rel = path.relative(dir, file);
        if (!rel.startsWith('..') && !path.isAbsolute(rel)) return rel.split(path.sep).join('/');
      }
      return null;
    };
    const ignored = (file: string, stats?: { isFile(): boolean; isDirectory(): boolean }): boolean => {
      if (extra.includes(file)) return false;
      const rel = relative(file);
      if (rel === null || rel === '') return false;
      if (matches(rel, exclude, true)) return true;
      // Directories are traversed unless excluded; files must also be included.
      return stats?.isFile() === true && !matches(rel, include, false);
    };
    // chokidar loads only when --reload is on.
    const { watch } = await import('chokidar');
    const watcher = watch([...dirs, ...extra], { ignoreInitial: true, ignored, persistent: true });
    const reloader = new Reloader(watcher);
    const fire = (file: string): void => {
      if (ignored(file, { isFile: () => true, isDirectory: () => false })) return;
      reloader.changed.push(file);
      if (reloader.timer) clearTimeout(reloader.timer);
      reloader.timer = setTimeout(() => {
        reloader.timer = null;
        const files = [...new Set(reloader.changed.splice(0))];
        opts.onChange(files.join(', '));
      }, settings.reload_delay * 1000);
    };
    watcher.on('change', fire).on('add', fire).on('unlink', fire);
    watcher.on('error', (err) => opts.log.warn({ err }, `file watcher error: ${String(err)}`));
    await new Promise<void>((resolve) => watcher.once('ready', () => resolve()));
    opts.log.info(`Watching for changes in ${dirs.join(', ')}${extra.length ? ` and ${extra.join(', ')}` : ''}`);
    return reloader;
  }

  async close(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    await this.watcher.close();
  }
}
