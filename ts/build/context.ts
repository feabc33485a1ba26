/**
 * The build context as COPY and ADD see it: paths resolved inside the context (a symlink is
 * followed as if the context were the root, so `ln -s /etc/passwd x` or `../..` never reach
 * outside it), `.dockerignore` applied, globs matched as Go's filepath.Match (BuildKit's), and
 * the content of what a step brings in hashed for the cache: names, types, modes, sizes,
 * contents and link targets, never mtimes (a `touch` keeps the cache).
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BurrowError } from '../errors';

/** Says whether a context path (relative, `/`-separated) is left out by .dockerignore. */
export type IgnoreFn = (rel: string, isDir: boolean) => boolean;

export interface BuildContext {
  dir: string;
  ignored: IgnoreFn;
}

function inputError(msg: string, fix?: string): BurrowError {
  return new BurrowError('EBUILD_INPUT', msg, fix);
}

/**
 * Resolves `rel` inside `root` as a chroot would: `..` stops at the root, an absolute symlink
 * target starts again at the root. Returns the host path (which then has no symlink left on
 * its way) and the relative path it is; throws ENOENT-like errors as EBUILD_INPUT.
 */
export function resolveInRoot(root: string, rel: string, followLast = true): { host: string; rel: string } {
  const parts = rel.split('/').filter((p) => p && p !== '.');
  const out: string[] = [];
  let hops = 0;
  while (parts.length) {
    const p = parts.shift()!;
    if (p === '..') {
      out.pop();
      continue;
    }
    const cand = path.join(root, ...out, p);
    const st = fs.lstatSync(cand, { throwIfNoEntry: false });
    if (st?.isSymbolicLink() && (followLast || parts.length)) {
      if (++hops > 40) throw inputError(`too many levels of symbolic links in ${rel}`);
      const target = fs.readlinkSync(cand);
      if (target.startsWith('/')) out.length = 0;
      parts.unshift(...target.split('/').filter((x) => x && x !== '.'));
      continue;
    }
    out.push(p);
  }
  return { host: path.join(root, ...out), rel: out.join('/') };
}

/** Go's filepath.Match for one pattern against a whole `/`-separated path (`*` stops at `/`). */
export function globRegExp(pattern: string): RegExp {
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else if (c === '[') {
      const j = pattern.indexOf(']', i + 1);
      if (j < 0) {
        re += '\\[';
        continue;
      }
      let cls = pattern.slice(i + 1, j);
      if (cls.startsWith('^') || cls.startsWith('!')) cls = `^${cls.slice(1)}`;
      re += `[${cls.replace(/\\/g, '\\\\')}]`;
      i = j;
    } else if (c === '\\' && i + 1 < pattern.length) re += `\\${pattern[++i]!}`;
    else re += c.replace(/[.+^${}()|\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

const hasGlob = (s: string) => /[*?[]/.test(s);

/**
 * The context paths a COPY/ADD source names: itself, or every match of its glob (not ignored).
 * Missing: EBUILD_INPUT before any work, naming the source.
 */
export function matchSources(ctx: BuildContext, source: string): string[] {
  const clean = path.posix.normalize(`/${source}`).slice(1) || '.';
  if (clean === '..' || clean.startsWith('../')) throw inputError(`COPY source ${source} is outside the build context`);
  if (!hasGlob(clean)) {
    const r = resolveInRoot(ctx.dir, clean === '.' ? '' : clean);
    if (!fs.existsSync(r.host) || (r.rel && ctx.ignored(r.rel, fs.statSync(r.host).isDirectory()))) {
      throw inputError(`COPY failed: file not found in build context or excluded by .dockerignore: ${source}`, 'check the path (relative to the context directory) and .dockerignore');
    }
    return [clean === '.' ? '' : clean];
  }
  // Walk only as deep as the pattern has components.
  const comps = clean.split('/');
  let cur: string[] = [''];
  for (const [i, comp] of comps.entries()) {
    const next: string[] = [];
    for (const base of cur) {
      const host = resolveInRoot(ctx.dir, base).host;
      if (!hasGlob(comp)) {
        const rel = base ? `${base}/${comp}` : comp;
        if (fs.existsSync(resolveInRoot(ctx.dir, rel).host)) next.push(rel);
        continue;
      }
      let names: string[];
      try {
        names = fs.readdirSync(host).sort();
      } catch {
        continue;
      }
      const re = globRegExp(comp);
      for (const n of names) if (re.test(n)) next.push(base ? `${base}/${n}` : n);
    }
    cur = next.filter((rel) => {
      const st = fs.statSync(resolveInRoot(ctx.dir, rel).host, { throwIfNoEntry: false });
      return st && !ctx.ignored(rel, st.isDirectory() && i < comps.length) && (i === comps.length - 1 || st.isDirectory());
    });
  }
  if (!cur.length) throw inputError(`COPY failed: no source files were specified: ${source} matches nothing in the build context`);
  return cur;
}

/**
 * Hashes a context path's content (recursively for a directory) and lists what .dockerignore
 * leaves out under it (relative to it, for the packer's `exclude`).
 */
export function hashTree(ctx: BuildContext, rel: string, extra?: IgnoreFn): { digest: string; exclude: string[]; isDir: boolean } {
  const h = createHash('sha256');
  const exclude: string[] = [];
  const top = resolveInRoot(ctx.dir, rel).host;
  const st0 = fs.statSync(top);
  const one = (host: string, name: string, st: fs.Stats) => {
    h.update(`${name}\0${st.mode.toString(8)}\0`);
    if (st.isSymbolicLink()) h.update(`l:${fs.readlinkSync(host)}\0`);
    else if (st.isFile()) {
      h.update(`f:${st.size}\0`);
      h.update(fs.readFileSync(host));
    }
  };
  const walk = (hostDir: string, relDir: string, under: string) => {
    for (const n of fs.readdirSync(hostDir).sort()) {
      const host = path.join(hostDir, n);
      const st = fs.lstatSync(host);
      const r = relDir ? `${relDir}/${n}` : n;
      const u = under ? `${under}/${n}` : n;
      if (extra?.(u, st.isDirectory())) {
        // COPY --exclude: out, whatever .dockerignore says.
        exclude.push(u);
        continue;
      }
      if (ctx.ignored(r, st.isDirectory())) {
        exclude.push(u);
        // A directory left out may still hold `!` exceptions: look inside.
        if (st.isDirectory()) walkExceptions(host, r, u);
        continue;
      }
      one(host, u, st);
      if (st.isDirectory()) walk(host, r, u);
    }
  };
  // Inside an ignored directory only re-included paths count (they are then not excluded).
  const walkExceptions = (hostDir: string, relDir: string, under: string) => {
    for (const n of fs.readdirSync(hostDir).sort()) {
      const host = path.join(hostDir, n);
      const st = fs.lstatSync(host);
      const r = `${relDir}/${n}`;
      const u = `${under}/${n}`;
      if (!ctx.ignored(r, st.isDirectory())) {
        // Re-included: the packer must not skip it, nor its parents.
        for (let p = u; p.includes('/'); p = p.slice(0, p.lastIndexOf('/'))) {
          const i = exclude.indexOf(p.slice(0, p.lastIndexOf('/')));
          if (i >= 0) exclude.splice(i, 1);
        }
        one(host, u, st);
        if (st.isDirectory()) walk(host, r, u);
      } else {
        exclude.push(u);
        if (st.isDirectory()) walkExceptions(host, r, u);
      }
    }
  };
  if (st0.isDirectory()) walk(top, rel, '');
  else one(top, path.basename(rel), st0);
  return { digest: `sha256:${h.digest('hex')}`, exclude, isDir: st0.isDirectory() };
}
