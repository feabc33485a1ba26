/**
 * The YAML that CDI spec files are written in, and no more: block mappings and sequences (a
 * sequence under a key indented or not, as go-yaml and sigs.k8s.io/yaml write them), `- key:`
 * items, plain, single- and double-quoted scalars, one-line flow collections (`[]`, `[a, b]`,
 * `{}`), comments and a leading `---`. Plain scalars that are integers, floats, true/false or
 * null become those (YAML 1.2's core schema); `0.5.0` stays a string.
 *
 * Why not a YAML library: the one the project could take (js-yaml, the only one in the lockfile)
 * is 138 KB, a seventh of the CLI's bundle, for files of a few dozen lines, and its source breaks
 * the bundle's ASCII rule (String.raw, scripts/bundle.mjs). What is refused here (anchors,
 * aliases, tags, block scalars `|` `>`, multi-line plain scalars, several documents) no CDI
 * generator writes; it is an error naming the line, never a silent misreading.
 */

export class YamlError extends Error {
  constructor(
    readonly line: number,
    message: string,
  ) {
    super(`line ${line}: ${message}`);
  }
}

export type YamlValue = string | number | boolean | null | YamlValue[] | { [k: string]: YamlValue };

interface Line {
  indent: number;
  text: string;
  no: number;
}

/** Text without a trailing comment (a `#` after whitespace, outside quotes). */
function stripComment(s: string): string {
  let q: string | undefined;
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (q) {
      if (c === '\\' && q === '"') i++;
      else if (c === q) q = undefined;
    } else if (c === '"' || c === "'") {
      if (i === 0 || /[\s:,[{-]/.test(s[i - 1]!)) q = c;
    } else if (c === '#' && (i === 0 || /\s/.test(s[i - 1]!))) return s.slice(0, i).trimEnd();
  }
  return s.trimEnd();
}

function lines(text: string): Line[] {
  const out: Line[] = [];
  let docs = 0;
  const raw = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  for (let i = 0; i < raw.length; i++) {
    const no = i + 1;
    const r = raw[i]!;
    const lead = /^[ \t]*/.exec(r)![0];
    if (lead.includes('\t') && r.trim()) throw new YamlError(no, 'a tab in indentation (YAML indents with spaces)');
    const t = stripComment(r.slice(lead.length));
    if (!t) continue;
    if (lead.length === 0 && (t === '---' || t.startsWith('--- '))) {
      if (++docs > 1 || out.length) throw new YamlError(no, 'more than one document: a CDI spec file holds one');
      if (t.slice(3).trim()) throw new YamlError(no, 'content after ---: put it on the next line');
      continue;
    }
    if (lead.length === 0 && t === '...') break;
    if (lead.length === 0 && t.startsWith('%')) throw new YamlError(no, 'directives (%YAML, %TAG) are not read');
    out.push({ indent: lead.length, text: t, no });
  }
  return out;
}

const isItem = (t: string) => t === '-' || t.startsWith('- ');

/** The index of a mapping's `:` (followed by a space or the end), outside quotes and brackets; -1 if none. */
function colonAt(t: string): number {
  let q: string | undefined;
  let depth = 0;
  for (let i = 0; i < t.length; i++) {
    const c = t[i]!;
    if (q) {
      if (c === '\\' && q === '"') i++;
      else if (c === q) q = undefined;
    } else if ((c === '"' || c === "'") && (i === 0 || /[\s:,[{]/.test(t[i - 1]!))) q = c;
    else if (c === '[' || c === '{') depth++;
    else if (c === ']' || c === '}') depth--;
    else if (c === ':' && depth === 0 && (i === t.length - 1 || t[i + 1] === ' ')) return i;
  }
  return -1;
}

export function parseYaml(text: string): YamlValue {
  const ls = lines(text);
  if (!ls.length) return null;
  const first = ls[0]!;
  const [v, next] = block(ls, 0, first.indent);
  if (next < ls.length) throw new YamlError(ls[next]!.no, `unexpected indentation or content: ${ls[next]!.text}`);
  return v;
}

function block(ls: Line[], i: number, indent: number): [YamlValue, number] {
  const l = ls[i]!;
  if (isItem(l.text)) return seq(ls, i, indent);
  if (colonAt(l.text) >= 0) return map(ls, i, indent);
  const v = scalar(l.text, l.no);
  return [v, i + 1];
}

/** The rest of a `- ` item or of a line as a nested block starting on that line. */
function inline(ls: Line[], i: number, offset: number): number {
  const l = ls[i]!;
  const rest = l.text.slice(offset);
  const pad = rest.length - rest.trimStart().length;
  ls[i] = { indent: l.indent + offset + pad, text: rest.trimStart(), no: l.no };
  return ls[i].indent;
}

function seq(ls: Line[], i: number, indent: number): [YamlValue[], number] {
  const out: YamlValue[] = [];
  while (i < ls.length && ls[i]!.indent === indent && isItem(ls[i]!.text)) {
    const l = ls[i]!;
    const rest = l.text.slice(1).trim();
    if (!rest) {
      const n = ls[i + 1];
      if (n && n.indent > indent) {
        const [v, next] = block(ls, i + 1, n.indent);
        out.push(v);
        i = next;
      } else {
        out.push(null);
        i++;
      }
    } else if (isItem(rest) || (colonAt(rest) >= 0 && !/^[[{]/.test(rest))) {
      // `- key: value` (a mapping) or `- - x` (a sequence) starting on the item's line.
      const inner = inline(ls, i, 1);
      const [v, next] = block(ls, i, inner);
      out.push(v);
      i = next;
    } else {
      out.push(scalar(rest, l.no));
      i++;
    }
  }
  if (i < ls.length && ls[i]!.indent > indent) throw new YamlError(ls[i]!.no, `unexpected indentation: ${ls[i]!.text}`);
  return [out, i];
}

function map(ls: Line[], i: number, indent: number): [{ [k: string]: YamlValue }, number] {
  const out: { [k: string]: YamlValue } = {};
  while (i < ls.length && ls[i]!.indent === indent && !isItem(ls[i]!.text)) {
    const l = ls[i]!;
    const c = colonAt(l.text);
    if (c < 0) throw new YamlError(l.no, `expected KEY: VALUE, got ${l.text}`);
    const rawKey = l.text.slice(0, c).trim();
    const key = /^["']/.test(rawKey) ? quoted(rawKey, l.no) : rawKey;
    if (!key) throw new YamlError(l.no, 'an empty key');
    if (Object.prototype.hasOwnProperty.call(out, key)) throw new YamlError(l.no, `key ${key} appears twice`);
    const rest = l.text.slice(c + 1).trim();
    const n = ls[i + 1];
    if (rest) {
      out[key] = scalar(rest, l.no);
      i++;
    } else if (n && n.indent > indent) {
      [out[key], i] = block(ls, i + 1, n.indent);
    } else if (n && n.indent === indent && isItem(n.text)) {
      // A sequence under a key at the key's own indentation (sigs.k8s.io/yaml writes these).
      [out[key], i] = seq(ls, i + 1, indent);
    } else {
      out[key] = null;
      i++;
    }
  }
  if (i < ls.length && ls[i]!.indent > indent) throw new YamlError(ls[i]!.no, `unexpected indentation: ${ls[i]!.text}`);
  return [out, i];
}

function plain(s: string, no: number): YamlValue {
  if (s === '' || s === '~' || /^(null|Null|NULL)$/.test(s)) return null;
  if (/^(true|True|TRUE)$/.test(s)) return true;
  if (/^(false|False|FALSE)$/.test(s)) return false;
  if (/^[-+]?\d+$/.test(s)) return Number(s);
  if (/^0o[0-7]+$/.test(s)) return parseInt(s.slice(2), 8);
  if (/^0x[0-9a-fA-F]+$/.test(s)) return parseInt(s.slice(2), 16);
  if (/^[-+]?(\d+\.\d*|\.\d+|\d+)([eE][-+]?\d+)?$/.test(s)) return Number(s);
  if (/^[&*!|>]/.test(s)) throw new YamlError(no, `${s[0] === '&' || s[0] === '*' ? 'anchors and aliases' : s[0] === '!' ? 'tags' : 'block scalars (| and >)'} are not read in a CDI spec: write the value out`);
  if (/^[@`]/.test(s)) throw new YamlError(no, `a plain value cannot start with ${s[0]}: quote it`);
  return s;
}

function quoted(s: string, no: number): string {
  if (s[0] === "'") {
    if (!s.endsWith("'") || s.length < 2) throw new YamlError(no, `unterminated quote: ${s}`);
    return s.slice(1, -1).replace(/''/g, "'");
  }
  try {
    return JSON.parse(s) as string;
  } catch {
    throw new YamlError(no, `bad double-quoted string: ${s}`);
  }
}

function scalar(s: string, no: number): YamlValue {
  if (s[0] === '[' || s[0] === '{') {
    const [v, end] = flow(s, 0, no);
    if (s.slice(end).trim()) throw new YamlError(no, `text after a flow collection: ${s.slice(end)}`);
    return v;
  }
  if (s[0] === '"' || s[0] === "'") return quoted(s, no);
  return plain(s, no);
}

/** A one-line flow collection or scalar at `p`: the value and the index after it. */
function flow(s: string, p: number, no: number): [YamlValue, number] {
  const ws = (q: number) => {
    while (s[q] === ' ') q++;
    return q;
  };
  p = ws(p);
  const open = s[p];
  if (open === '[' || open === '{') {
    const close = open === '[' ? ']' : '}';
    const arr: YamlValue[] = [];
    const obj: { [k: string]: YamlValue } = {};
    p = ws(p + 1);
    while (s[p] !== close) {
      if (p >= s.length) throw new YamlError(no, `unterminated ${open}: ${s}`);
      if (open === '[') {
        const [v, q] = flow(s, p, no);
        arr.push(v);
        p = ws(q);
      } else {
        const [k, q] = flow(s, p, no);
        if (typeof k === 'object' && k !== null) throw new YamlError(no, `a key that is a collection in ${s}`);
        p = ws(q);
        if (s[p] !== ':') throw new YamlError(no, `expected : in ${s}`);
        const [v, r] = flow(s, p + 1, no);
        obj[String(k)] = v;
        p = ws(r);
      }
      if (s[p] === ',') p = ws(p + 1);
      else if (p >= s.length) throw new YamlError(no, `unterminated ${open}: ${s}`);
      else if (s[p] !== close) throw new YamlError(no, `expected , or ${close} in ${s}`);
    }
    return [open === '[' ? arr : obj, p + 1];
  }
  if (open === '"' || open === "'") {
    let q = p + 1;
    for (; q < s.length; q++) {
      if (open === '"' && s[q] === '\\') q++;
      else if (s[q] === open) {
        if (open === "'" && s[q + 1] === "'") q++;
        else break;
      }
    }
    return [quoted(s.slice(p, q + 1), no), q + 1];
  }
  let q = p;
  while (q < s.length && !',]}'.includes(s[q]!) && !(s[q] === ':' && (s[q + 1] === ' ' || ',]}'.includes(s[q + 1] ?? '')))) q++;
  return [plain(s.slice(p, q).trim(), no), q];
}
