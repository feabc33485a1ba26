/**
 * The TOML subset burrow's config file is written in: `[table]` and `[dotted.table]` headers,
 * `key = value` with bare, quoted or dotted keys, and values that are strings (basic "…" with
 * escapes, literal '…'), integers, booleans and arrays of strings (over several lines, with a
 * trailing comma and comments). Anything else (floats, dates, inline tables, multi-line
 * strings, arrays of tables) is refused with the line it is on, never guessed at: a config that
 * parses differently from what the user meant is worse than one that does not parse.
 *
 * Written here rather than taken from npm: it is ~200 lines, `burrow run` must not load a
 * general parser on its hot path, and the project keeps its dependencies to commander.
 */

export type TomlValue = string | number | boolean | string[] | TomlTable;
export interface TomlTable {
  [key: string]: TomlValue;
}

/** A syntax error, with the 1-based line it was found on. */
export class TomlError extends Error {
  readonly line: number;
  constructor(line: number, message: string) {
    super(message);
    this.name = 'TomlError';
    this.line = line;
  }
}

/** Where each key was defined (`"storage.root"` → line), for errors found after parsing. */
export type KeyLines = Map<string, number>;

const BARE_KEY = /^[A-Za-z0-9_-]+/;

function isTable(v: TomlValue | undefined): v is TomlTable {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function parseToml(text: string): { value: TomlTable; lines: KeyLines } {
  const root: TomlTable = {};
  const lines: KeyLines = new Map();
  // Tables opened by a [header] (a second [same] header is an error, as in TOML).
  const declared = new Set<string>();
  let current = root;
  let currentPath: string[] = [];
  let pos = 0;
  let line = 1;

  const fail = (msg: string): never => {
    throw new TomlError(line, msg);
  };
  const peek = () => text[pos];
  const skipSpaces = () => {
    while (pos < text.length && (text[pos] === ' ' || text[pos] === '\t')) pos++;
  };
  const skipComment = () => {
    if (text[pos] === '#') while (pos < text.length && text[pos] !== '\n') pos++;
  };
  /** After a statement: only spaces and a comment may follow on the line. */
  const endOfLine = () => {
    skipSpaces();
    skipComment();
    if (pos < text.length) {
      if (text[pos] === '\r' && text[pos + 1] === '\n') pos++;
      if (text[pos] !== '\n') fail(`unexpected ${JSON.stringify(text[pos])} after the value (one key = value per line)`);
      pos++;
      line++;
    }
  };

  const basicString = (): string => {
    pos++; // opening "
    if (text.startsWith('""', pos)) fail('multi-line strings (""") are not supported; write the value on one line');
    let out = '';
    for (;;) {
      const c = text[pos];
      if (c === undefined || c === '\n') fail('unterminated string: a closing " is missing on this line');
      pos++;
      if (c === '"') return out;
      if (c !== '\\') {
        out += c;
        continue;
      }
      const e = text[pos++];
      const simple: Record<string, string> = { b: '\b', t: '\t', n: '\n', f: '\f', r: '\r', '"': '"', '\\': '\\' };
      if (e !== undefined && e in simple) out += simple[e];
      else if (e === 'u' || e === 'U') {
        const n = e === 'u' ? 4 : 8;
        const hex = text.slice(pos, pos + n);
        if (!new RegExp(`^[0-9A-Fa-f]{${n}}$`).test(hex)) fail(`invalid \\${e} escape: want ${n} hex digits`);
        const cp = parseInt(hex, 16);
        if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) fail(`invalid \\${e}${hex}: not a Unicode scalar value`);
        out += String.fromCodePoint(cp);
        pos += n;
      } else fail(`invalid escape \\${e ?? ''} in a string (use '…' for a literal backslash)`);
    }
  };

  const literalString = (): string => {
    pos++; // opening '
    if (text.startsWith("''", pos)) fail("multi-line strings (''') are not supported; write the value on one line");
    const end = text.indexOf("'", pos);
    const nl = text.indexOf('\n', pos);
    if (end < 0 || (nl >= 0 && nl < end)) fail("unterminated string: a closing ' is missing on this line");
    const s = text.slice(pos, end);
    pos = end + 1;
    return s;
  };

  const key = (): string => {
    const c = peek();
    if (c === '"') return basicString();
    if (c === "'") return literalString();
    const m = BARE_KEY.exec(text.slice(pos, pos + 256));
    if (!m) fail(c === undefined || c === '\n' ? 'a key is missing' : `invalid key starting at ${JSON.stringify(c)} (bare keys are A-Z a-z 0-9 _ -; quote others)`);
    pos += m![0].length;
    return m![0];
  };

  const dottedKey = (): string[] => {
    const parts = [key()];
    for (;;) {
      skipSpaces();
      if (peek() !== '.') return parts;
      pos++;
      skipSpaces();
      parts.push(key());
    }
  };

  /** Skips blank lines and comments inside an array. */
  const skipArrayGap = () => {
    for (;;) {
      skipSpaces();
      skipComment();
      if (text[pos] === '\r' && text[pos + 1] === '\n') pos++;
      if (text[pos] !== '\n') return;
      pos++;
      line++;
    }
  };

  const value = (): TomlValue => {
    const c = peek();
    if (c === '"') return basicString();
    if (c === "'") return literalString();
    if (c === '[') {
      pos++;
      const out: string[] = [];
      for (;;) {
        skipArrayGap();
        if (peek() === ']') {
          pos++;
          return out;
        }
        if (pos >= text.length) fail('unterminated array: a closing ] is missing');
        const v = value();
        if (typeof v !== 'string') fail('only arrays of strings are supported');
        out.push(v as string);
        skipArrayGap();
        if (peek() === ',') pos++;
        else if (peek() !== ']') fail(`expected , or ] in the array, found ${JSON.stringify(peek() ?? 'end of file')}`);
      }
    }
    if (c === '{') fail('inline tables are not supported; use a [table] section');
    const m = /^[^\s,\]#]+/.exec(text.slice(pos, pos + 256));
    if (!m) fail('a value is missing after =');
    const word = m![0];
    pos += word.length;
    if (word === 'true') return true;
    if (word === 'false') return false;
    if (/^[+-]?(0|[1-9](_?[0-9])*)$/.test(word)) {
      const n = Number(word.replace(/_/g, ''));
      if (!Number.isSafeInteger(n)) fail(`integer ${word} is too large`);
      return n;
    }
    if (/^0x[0-9A-Fa-f](_?[0-9A-Fa-f])*$|^0o[0-7](_?[0-7])*$|^0b[01](_?[01])*$/.test(word)) {
      const n = Number(word.replace(/_/g, ''));
      if (!Number.isSafeInteger(n)) fail(`integer ${word} is too large`);
      return n;
    }
    return fail(`invalid value ${JSON.stringify(word)}: strings must be quoted ("…" or '…'); numbers, true and false are bare`);
  };

  /** The table at `path` below `base`, created as needed; `what` names it for errors. */
  const descend = (base: TomlTable, path: string[], what: string): TomlTable => {
    let t = base;
    for (const k of path) {
      const next = t[k];
      if (next === undefined) t = t[k] = {};
      else if (isTable(next)) t = next;
      else fail(`${what}: ${k} is already a value, not a table`);
    }
    return t;
  };

  while (pos < text.length) {
    skipSpaces();
    const c = peek();
    if (c === '#' || c === '\n' || c === '\r' || c === undefined) {
      endOfLine();
      continue;
    }
    if (c === '[') {
      pos++;
      if (peek() === '[') fail('arrays of tables ([[…]]) are not supported');
      skipSpaces();
      const p = dottedKey();
      skipSpaces();
      if (peek() !== ']') fail('expected ] to close the table header');
      pos++;
      const name = p.join('.');
      if (declared.has(name)) fail(`table [${name}] is defined twice`);
      declared.add(name);
      current = descend(root, p, `[${name}]`);
      currentPath = p;
      lines.set(name, line);
      endOfLine();
      continue;
    }
    const k = dottedKey();
    skipSpaces();
    if (peek() !== '=') fail(`expected = after the key ${k.join('.')}`);
    pos++;
    skipSpaces();
    const startLine = line;
    const v = value();
    const parent = descend(current, k.slice(0, -1), k.join('.'));
    const last = k[k.length - 1]!;
    const full = [...currentPath, ...k].join('.');
    if (last in parent) {
      line = startLine;
      fail(`key ${full} is defined twice`);
    }
    parent[last] = v;
    lines.set(full, startLine);
    endOfLine();
  }
  return { value: root, lines };
}
