/**
 * `.dockerignore` with Docker's semantics (moby/patternmatcher and its ignorefile reader, which
 * BuildKit's context transfer uses): patterns are filepath.Clean'd with a leading `/` dropped,
 * `*` and `?` stay inside one path element, `**` spans any number of them, `[...]` is a class,
 * `\` quotes the next character, a pattern that matches a directory excludes everything under
 * it, and `!pattern` re-includes, the LAST matching pattern deciding.
 *
 * Which file: `<Dockerfile name>.dockerignore` beside the Dockerfile first (BuildKit's
 * per-Dockerfile ignore file), then the context's `.dockerignore`, then `.containerignore`
 * (podman and buildah's name).
 */

import fs from 'node:fs/promises';
import path from 'node:path';
import { BurrowError } from '../errors';

/** Reads an ignore file's text into patterns (moby's ignorefile.ReadAll). */
export function parseIgnoreFile(text: string): string[] {
  const out: string[] = [];
  const lines = text.replace(/^\uFEFF/, '').split('\n');
  for (let raw of lines) {
    if (raw.endsWith('\r')) raw = raw.slice(0, -1);
    // A comment only when # is the very first character (no trimming before this check).
    if (raw.startsWith('#')) continue;
    let p = raw.trim();
    if (p === '') continue;
    const invert = p.startsWith('!');
    if (invert) p = p.slice(1).trim();
    if (p.length > 0) {
      p = cleanPath(p);
      if (p.length > 1 && p.startsWith('/')) p = p.slice(1);
    }
    out.push(invert ? '!' + p : p);
  }
  return out;
}

/**
 * The ignore patterns for a build: from `<Dockerfile>.dockerignore` next to the Dockerfile if it
 * exists, else `.dockerignore`, else `.containerignore` in the context; [] when there is none.
 * `dockerfilePath` is the Dockerfile as given (absolute, or relative to the context).
 */
export async function readIgnorePatterns(contextDir: string, dockerfilePath?: string): Promise<string[]> {
  const found = await findIgnoreFile(contextDir, dockerfilePath);
  return found ? found.patterns : [];
}

/** Like readIgnorePatterns, and says which file the patterns came from (for messages). */
export async function findIgnoreFile(contextDir: string, dockerfilePath?: string): Promise<{ file: string; patterns: string[] } | undefined> {
  const candidates: string[] = [];
  if (dockerfilePath) {
    const df = path.resolve(contextDir, dockerfilePath);
    candidates.push(`${df}.dockerignore`);
  }
  candidates.push(path.join(contextDir, '.dockerignore'), path.join(contextDir, '.containerignore'));
  for (const file of candidates) {
    let text: string;
    try {
      text = await fs.readFile(file, 'utf8');
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') continue;
      throw new BurrowError('EBUILD_INPUT', `cannot read the ignore file ${file}: ${(e as Error).message}`);
    }
    return { file, patterns: parseIgnoreFile(text) };
  }
  return undefined;
}

interface Pattern {
  /** As cleaned, without the `!`. */
  text: string;
  exclusion: boolean;
  re: Compiled;
  /** Path elements of the pattern, for mayIncludeUnder. */
  dirs: string[];
}

export class IgnoreMatcher {
  private readonly patterns: Pattern[];
  /** Whether any `!` pattern exists (else an excluded directory can be skipped whole). */
  readonly hasExclusions: boolean;

  constructor(patterns: readonly string[]) {
    this.patterns = [];
    for (let p of patterns) {
      p = p.trim();
      if (p === '') continue;
      p = cleanPath(p);
      let exclusion = false;
      if (p.startsWith('!')) {
        if (p.length === 1) throw new BurrowError('EBUILD_INPUT', 'illegal exclusion pattern: "!" in the ignore file', 'write !PATTERN, or remove the line');
        exclusion = true;
        p = p.slice(1);
      }
      const bad = globSyntaxError(p);
      if (bad) throw new BurrowError('EBUILD_INPUT', `syntax error in the ignore file's pattern ${exclusion ? '!' : ''}${p}: ${bad}`, 'fix or remove the pattern (.dockerignore uses Go filepath.Match syntax: * ? [a-z] and \\ to quote)');
      this.patterns.push({ text: p, exclusion, re: compile(p), dirs: p.split('/') });
    }
    this.hasExclusions = this.patterns.some((p) => p.exclusion);
  }

  /** Whether nothing is ignored at all. */
  get empty(): boolean {
    return this.patterns.length === 0;
  }

  /**
   * Whether `relPath` (relative to the context, `/`-separated) is excluded: by a pattern
   * matching it or one of its parent directories, the last matching pattern deciding
   * (patternmatcher's MatchesOrParentMatches). `isDir` is accepted for the walker's convenience;
   * Docker's patterns do not distinguish directories (`dir/` is cleaned to `dir`).
   */
  excluded(relPath: string, _isDir = false): boolean {
    const file = cleanPath(relPath);
    if (file === '.' || file === '') return false;
    const parent = dirname(file);
    const parentDirs = parent.split('/');
    let matched = false;
    for (const p of this.patterns) {
      // An inclusion cannot change an already excluded path and an exclusion an included one.
      if (p.exclusion !== matched) continue;
      let match = p.re.test(file);
      if (!match && parent !== '.') {
        for (let i = 0; i < parentDirs.length && !match; i++) match = p.re.test(parentDirs.slice(0, i + 1).join('/'));
      }
      if (match) matched = !p.exclusion;
    }
    return matched;
  }

  /**
   * Whether something under the directory `relDir` can be included. False only when `relDir`
   * is excluded and no `!` pattern can match a path inside it, so the context walker may skip
   * the whole directory; true is always safe (the walker then asks `excluded` per entry).
   */
  mayIncludeUnder(relDir: string): boolean {
    if (!this.excluded(relDir, true)) return true;
    if (!this.hasExclusions) return false;
    const dirs = cleanPath(relDir).split('/');
    return this.patterns.some((p) => p.exclusion && couldMatchUnder(p.dirs, dirs));
  }
}

/**
 * Whether a pattern's elements can match some path strictly under `dirs`, or `dirs` itself or an
 * ancestor (which re-includes all of it). Conservative: `**` anywhere can match anything.
 */
function couldMatchUnder(pattern: string[], dirs: string[]): boolean {
  for (let i = 0; i < pattern.length; i++) {
    const seg = pattern[i]!;
    if (seg.includes('**')) return true;
    if (i >= dirs.length) return true; // the pattern goes deeper than the directory
    if (!compileElement(seg).test(dirs[i]!)) return false;
  }
  // The whole pattern matched `dirs` or one of its ancestors: everything under it is re-included.
  return true;
}

/** Go's path.Clean for `/` paths (what filepath.Clean does on Linux). */
export function cleanPath(p: string): string {
  if (p === '') return '.';
  const rooted = p.startsWith('/');
  const out: string[] = [];
  for (const part of p.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (out.length > 0 && out[out.length - 1] !== '..') out.pop();
      else if (!rooted) out.push('..');
      continue;
    }
    out.push(part);
  }
  const s = (rooted ? '/' : '') + out.join('/');
  return s === '' ? '.' : s;
}

function dirname(p: string): string {
  const i = p.lastIndexOf('/');
  if (i < 0) return '.';
  if (i === 0) return '/';
  return p.slice(0, i);
}

/**
 * What Go's filepath.Match rejects (patternmatcher checks every pattern with it): an unclosed or
 * empty `[`, a range with `-` or `]` unquoted at an end, a `\\` with nothing after it.
 * Undefined when the pattern is well formed.
 */
function globSyntaxError(pattern: string): string | undefined {
  const c = Array.from(pattern);
  const esc = (i: number): [number, string] | undefined => {
    // One character of a class, quoted or not; undefined for what Go calls ErrBadPattern.
    let ch = c[i];
    if (ch === undefined || ch === '-' || ch === ']') return undefined;
    if (ch === '\\') {
      i++;
      ch = c[i];
      if (ch === undefined) return undefined;
    }
    return [i + 1, ch];
  };
  for (let i = 0; i < c.length; i++) {
    const ch = c[i]!;
    if (ch === '\\') {
      if (i + 1 >= c.length) return 'a \\ at the end quotes nothing';
      i++;
    } else if (ch === '[') {
      i++;
      if (c[i] === '^') i++;
      let n = 0;
      for (;;) {
        if (i >= c.length) return 'a [ without its ]';
        if (c[i] === ']' && n > 0) break;
        const lo = esc(i);
        if (!lo) return `a bad character class at ${c[i] ?? 'the end'}`;
        i = lo[0];
        if (c[i] === '-') {
          const hi = esc(i + 1);
          if (!hi) return 'a bad range in a character class';
          i = hi[0];
        }
        n++;
      }
    }
  }
  return undefined;
}

/** A compiled pattern: patternmatcher's match types (the regexp is the general case). */
interface Compiled {
  test(path: string): boolean;
}

/**
 * A pattern as patternmatcher compiles it: `*` anything but `/`, `?` one character but `/`, `**`
 * any number of elements, `\` quoting the next character, `[` `]` passed to the regexp as they
 * are (so `[^a]` negates and `[!a]` is the class of ! and a, as in Docker), and `.+()|{}$`
 * quoted. A leading `**` with nothing special after it matches by suffix, a trailing one by
 * prefix, as patternmatcher does.
 */
function compile(pattern: string): Compiled {
  const chars = Array.from(pattern);
  let re = '^';
  let type: 'exact' | 'prefix' | 'suffix' | 'regexp' = 'exact';
  for (let i = 0, k = 0; i < chars.length; i++, k++) {
    const ch = chars[i]!;
    if (ch === '*') {
      if (chars[i + 1] === '*') {
        i++;
        // `**/` is `**`: eat the slash.
        if (chars[i + 1] === '/') i++;
        if (i + 1 >= chars.length) {
          if (type === 'exact') type = 'prefix';
          else {
            re += '.*';
            type = 'regexp';
          }
        } else {
          re += '(.*/)?';
          type = 'regexp';
        }
        if (k === 0) type = 'suffix';
      } else {
        re += '[^/]*';
        type = 'regexp';
      }
    } else if (ch === '?') {
      re += '[^/]';
      type = 'regexp';
    } else if ('.+()|{}$'.includes(ch)) {
      re += '\\' + ch;
    } else if (ch === '\\') {
      if (i + 1 < chars.length) {
        re += '\\' + chars[++i]!;
        type = 'regexp';
      } else re += '\\\\';
    } else if (ch === '[' || ch === ']') {
      re += ch;
      type = 'regexp';
    } else re += ch;
  }
  switch (type) {
    case 'exact':
      return { test: (p) => p === pattern };
    case 'prefix': {
      const prefix = pattern.slice(0, -2);
      return { test: (p) => p.startsWith(prefix) };
    }
    case 'suffix': {
      const suffix = pattern.slice(2);
      return { test: (p) => p.endsWith(suffix) || (suffix.startsWith('/') && p === suffix.slice(1)) };
    }
    default: {
      let rx: RegExp;
      try {
        rx = new RegExp(re + '$', 'u');
      } catch {
        try {
          rx = new RegExp(re + '$');
        } catch (e) {
          throw new BurrowError('EBUILD_INPUT', `bad pattern in the ignore file: ${pattern}: ${(e as Error).message}`);
        }
      }
      return rx;
    }
  }
}

/** One path element of a pattern, for mayIncludeUnder (no `**` in it). */
function compileElement(seg: string): Compiled {
  return compile(seg);
}
